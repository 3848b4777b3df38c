//! The explainer: relevance from the output back to the input, layer by layer.

use lrp_core::simd::{share_or_zero, stabilised as stab};
use lrp_core::{CoreError, Network, Trace};
use ndarray::{ArrayD, ArrayView2, ArrayViewD, Axis, Ix2, Ix4, IxDyn, Zip};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::error::{Result, RulesError};
use crate::linear::LinearMap;
use crate::plan::{Form, Maps, Plan, PlanKind, Prepared, Step};
use crate::rule::Rule;
use crate::spec::{Attribution, Spec};

/// [`Explainer::explain`] runs large batches in blocks whose forward trace holds about this many floats (2 MiB, a
/// core's L2 cache on this project's machine: 19 CNN samples a block), or four times the network's parameters if
/// that is more. With the convolutions direct, most of the rest of a run writes and reads whole layer values: blocks
/// of 8 MiB were 2.2% slower (CNN ε and `epsilon-gamma-box`, paired), blocks of 1 MiB 1.6% slower. Every block reads
/// all the weights again (a GEMM packs them): a network whose weights outweigh its values (the MLP: 235,146
/// parameters, 2,346 values a sample) ran 6% slower split into blocks of 2 MiB than in one.
const TRACE_BLOCK_FLOATS: usize = 1 << 19;

/// The stabiliser of every rule but epsilon.
pub const STABILIZER: f32 = 1e-6;

/// Which class to explain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The predicted class (largest logit, first on ties).
    Predicted,
    /// The same class for every sample.
    Class(usize),
    /// One class per sample (e.g. the labels).
    PerSample(Vec<usize>),
}

impl Target {
    /// The class of each sample, checked against the logits `[N, K]`.
    pub fn resolve(&self, logits: ArrayView2<f32>) -> Result<Vec<usize>> {
        let (n, k) = logits.dim();
        let out: Vec<usize> = match self {
            Target::Predicted => lrp_core::train::argmax_rows(logits.into_dyn()),
            Target::Class(c) => vec![*c; n],
            Target::PerSample(v) => {
                if v.len() != n {
                    return Err(RulesError::Target(format!("{} targets for {n} samples", v.len())));
                }
                v.clone()
            }
        };
        if let Some((i, c)) = out.iter().enumerate().find(|(_, c)| **c >= k) {
            return Err(RulesError::Target(format!(
                "class {c} (sample {i}) is out of range: the model has {k} classes (0 to {})",
                k - 1
            )));
        }
        Ok(out)
    }
}

/// The result of explaining a batch.
#[derive(Clone, Debug)]
pub struct Explanation {
    /// Relevance of every input feature, shaped like the input (`[N, …]`).
    pub relevance: ArrayD<f32>,
    /// The network output `[N, K]`.
    pub logits: ArrayD<f32>,
    /// The explained class of each sample.
    pub targets: Vec<usize>,
    /// LRP only: `layer_sums[i][n]` is sample `n`'s relevance summed over the input of layer `i`;
    /// the last entry is the explained logit. Empty for gradient-based attributions and from an explainer made
    /// [`Explainer::without_layer_sums`].
    pub layer_sums: Vec<Vec<f32>>,
    /// The relevance at the values asked for with [`Explainer::explain_keeping`], `(value, [N, …value shape])`,
    /// in the order asked; empty otherwise.
    pub kept: Vec<(usize, ArrayD<f32>)>,
}

impl Explanation {
    /// The explained logit of each sample.
    pub fn explained_logits(&self) -> Vec<f32> {
        let l = self
            .logits
            .view()
            .into_dimensionality::<Ix2>()
            .expect("logits are [N, K]");
        self.targets.iter().enumerate().map(|(n, &t)| l[[n, t]]).collect()
    }
}

/// Explains batches for one network under one plan. Cheap to share across threads.
#[derive(Clone, Debug)]
pub struct Explainer<'n> {
    net: &'n Network,
    plan: Plan,
    /// Whether explanations carry each value's relevance sum ([`Explanation::layer_sums`]).
    layer_sums: bool,
}

impl<'n> Explainer<'n> {
    /// Resolves `spec` against `net`.
    pub fn new(net: &'n Network, spec: &Spec) -> Result<Self> {
        Ok(Explainer {
            net,
            plan: Plan::resolve(spec, net)?,
            layer_sums: true,
        })
    }

    /// Resolves `spec` against `net` in the given form (see [`Plan::resolve_in`]): the gradient form works for
    /// every network, the relevance form for networks without transformer nodes.
    pub fn new_in(net: &'n Network, spec: &Spec, form: Form) -> Result<Self> {
        Ok(Explainer {
            net,
            plan: Plan::resolve_in(spec, net, form)?,
            layer_sums: true,
        })
    }

    /// Explanations without [`Explanation::layer_sums`] (left empty): for callers that never read them (the batch
    /// runner), which spares a pass over every value of the backward pass (and, in the gradient form, the product
    /// that turns each value's gradient into relevance). The relevance is the same.
    pub fn without_layer_sums(mut self) -> Self {
        self.layer_sums = false;
        self
    }

    /// The resolved plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The network.
    pub fn network(&self) -> &'n Network {
        self.net
    }

    /// Explains `x` (`[N, …input shape]`) for the given target classes: LRP starts from
    /// `onehot(target)·logit`, the gradient methods from `onehot(target)`.
    pub fn explain(&self, x: ArrayViewD<f32>, target: &Target) -> Result<Explanation> {
        let n = x.shape()[0];
        let block = self.block_size();
        if n <= block {
            return self.explain_block(x, target);
        }
        if let Target::PerSample(v) = target
            && v.len() != n
        {
            return Err(RulesError::Target(format!("{} targets for {n} samples", v.len())));
        }
        // Large batches in blocks whose trace stays in cache: every kernel treats samples independently, so the
        // result is the same bits as one pass over the whole batch.
        let mut parts = Vec::with_capacity(n.div_ceil(block));
        for start in (0..n).step_by(block) {
            let end = (start + block).min(n);
            let t = match target {
                Target::PerSample(v) => Target::PerSample(v[start..end].to_vec()),
                other => other.clone(),
            };
            let part = self.explain_block(x.slice_axis(Axis(0), (start..end).into()), &t);
            // A bad input is named by its place in the whole batch, not in the block.
            parts.push(part.map_err(|e| match e {
                RulesError::Core(CoreError::NonFiniteInput { sample, index, value }) => {
                    RulesError::Core(CoreError::NonFiniteInput {
                        sample: start + sample,
                        index,
                        value,
                    })
                }
                e => e,
            })?);
        }
        let cat = |arrays: Vec<ArrayViewD<f32>>| ndarray::concatenate(Axis(0), &arrays).expect("blocks of one shape");
        let relevance = cat(parts.iter().map(|p| p.relevance.view()).collect());
        let logits = cat(parts.iter().map(|p| p.logits.view()).collect());
        let targets = parts.iter().flat_map(|p| p.targets.iter().copied()).collect();
        let layer_sums = (0..parts[0].layer_sums.len())
            .map(|v| parts.iter().flat_map(|p| p.layer_sums[v].iter().copied()).collect())
            .collect();
        Ok(Explanation {
            relevance,
            logits,
            targets,
            layer_sums,
            kept: Vec::new(),
        })
    }

    /// Like [`Explainer::explain`], and also keeps the relevance at each value in `keep` (value `v` is the input
    /// of layer `v` in a chain; value `k + 1` the output of node `k`): what reaches the hidden layers. LRP plans
    /// only (a gradient method has gradients there, not relevance). One pass, no blocking: for a few samples.
    pub fn explain_keeping(&self, x: ArrayViewD<f32>, target: &Target, keep: &[usize]) -> Result<Explanation> {
        let PlanKind::Lrp(steps) = self.plan.kind() else {
            return Err(RulesError::Target(format!(
                "relevance at hidden layers needs an LRP rule; {} is a gradient method",
                self.plan.spec()
            )));
        };
        let values = self.net.layers().len() + 1;
        if let Some(&v) = keep.iter().find(|&&v| v >= values) {
            return Err(RulesError::Target(format!(
                "value {v} does not exist: the network has values 0 to {}",
                values - 1
            )));
        }
        let (trace, targets, seed) = self.forward(x.view(), target)?;
        let mut kept: Vec<Option<ArrayD<f32>>> = vec![None; keep.len()];
        let (relevance, layer_sums) = self.lrp(
            steps,
            &trace,
            seed,
            true,
            Some(&mut |v, r| {
                for (slot, _) in kept.iter_mut().zip(keep).filter(|(_, k)| **k == v) {
                    *slot = Some(r.clone());
                }
            }),
        );
        check_finite("relevance", &relevance)?;
        Ok(Explanation {
            relevance,
            logits: trace.output,
            targets,
            layer_sums,
            kept: keep
                .iter()
                .zip(kept)
                .map(|(&v, r)| (v, r.expect("every value is visited")))
                .collect(),
        })
    }

    /// Samples per block: the whole forward trace of a block holds about [`TRACE_BLOCK_FLOATS`] floats, or four
    /// times the parameters.
    fn block_size(&self) -> usize {
        let per_sample: usize = (0..=self.net.layers().len())
            .map(|v| self.net.shape_at(v).iter().product::<usize>())
            .sum();
        let floats = TRACE_BLOCK_FLOATS.max(self.net.param_count().saturating_mul(4));
        (floats / per_sample.max(1)).max(8)
    }

    /// The forward trace, the explained classes, and the seed of the backward pass.
    fn forward(&self, x: ArrayViewD<f32>, target: &Target) -> Result<(Trace, Vec<usize>, ArrayD<f32>)> {
        let trace = self.net.forward_trace(x)?;
        check_finite("logits", &trace.output)?;
        let targets = target.resolve(logits_2d(&trace.output)?)?;
        let seed = onehot(&trace.output, &targets, self.plan.is_lrp());
        Ok((trace, targets, seed))
    }

    fn explain_block(&self, x: ArrayViewD<f32>, target: &Target) -> Result<Explanation> {
        let (trace, targets, seed) = self.forward(x.view(), target)?;
        let e = self.propagate(x, trace, seed, targets)?;
        check_finite("relevance", &e.relevance)?;
        Ok(e)
    }

    /// Propagates a given output relevance (for LRP) or output gradient (for the gradient methods)
    /// `[N, K]` back to the input. Every method is linear in it. `targets` of the result are the predictions.
    pub fn explain_from(&self, x: ArrayViewD<f32>, output: ArrayViewD<f32>) -> Result<Explanation> {
        let trace = self.net.forward_trace(x.view())?;
        if output.shape() != trace.output.shape() {
            return Err(lrp_core::CoreError::shape("output relevance", trace.output.shape(), output.shape()).into());
        }
        let targets = Target::Predicted.resolve(logits_2d(&trace.output)?)?;
        self.propagate(x, trace, output.to_owned(), targets)
    }

    fn propagate(
        &self,
        x: ArrayViewD<f32>,
        trace: Trace,
        seed: ArrayD<f32>,
        targets: Vec<usize>,
    ) -> Result<Explanation> {
        debug_assert_eq!(self.plan.layer_count(), self.net.layers().len());
        let (relevance, layer_sums) = match self.plan.kind() {
            PlanKind::Lrp(steps) => self.lrp(steps, &trace, seed, self.layer_sums, None),
            PlanKind::Attribution(a) => (self.attribution(*a, x, &trace, seed)?, Vec::new()),
        };
        Ok(Explanation {
            relevance,
            logits: trace.output,
            targets,
            layer_sums,
            kept: Vec::new(),
        })
    }

    /// LRP in the plan's form; `sums`: compute [`Explanation::layer_sums`]; `keep` sees every value's relevance.
    fn lrp(
        &self,
        steps: &[Step],
        trace: &Trace,
        r: ArrayD<f32>,
        sums: bool,
        keep: Option<Keep<'_>>,
    ) -> (ArrayD<f32>, Vec<Vec<f32>>) {
        let visit = Visit { sums, keep };
        match self.plan.form() {
            Form::Relevance => lrp(self.net, steps, trace, r, visit),
            Form::Gradient => lrp_gradient(self.net, steps, trace, r, self.plan.node_stabilizer(), visit),
        }
    }

    fn attribution(&self, a: Attribution, x: ArrayViewD<f32>, trace: &Trace, seed: ArrayD<f32>) -> Result<ArrayD<f32>> {
        Ok(match a {
            Attribution::Gradient => self.net.input_gradient(trace, seed)?,
            Attribution::GradientXInput => self.net.input_gradient(trace, seed)? * &x,
            Attribution::IntegratedGradients { steps } => {
                let mut acc = ArrayD::<f32>::zeros(x.raw_dim());
                for k in 0..steps {
                    let alpha = (k as f32 + 0.5) / steps as f32;
                    let t = self.net.forward_trace((&x * alpha).view())?;
                    acc += &self.net.input_gradient(&t, seed.clone())?;
                }
                acc * &x / steps as f32
            }
            Attribution::SmoothGrad { n, sigma } => {
                // One generator per sample, seeded by its content: the result does not depend on batching.
                let mut rngs: Vec<ChaCha8Rng> = x
                    .outer_iter()
                    .map(|s| ChaCha8Rng::seed_from_u64(content_seed(s)))
                    .collect();
                let normal = Normal::new(0.0f32, sigma).expect("sigma checked at parse time");
                let mut acc = ArrayD::<f32>::zeros(x.raw_dim());
                for _ in 0..n {
                    let mut noisy = x.to_owned();
                    for (mut sample, rng) in noisy.outer_iter_mut().zip(rngs.iter_mut()) {
                        sample.mapv_inplace(|v| v + normal.sample(rng));
                    }
                    let t = self.net.forward_trace(noisy.view())?;
                    acc += &self.net.input_gradient(&t, seed.clone())?;
                }
                acc / n as f32
            }
        })
    }
}

/// NaN or infinity in a result is an error naming the sample, never a value written.
fn check_finite(what: &'static str, a: &ArrayD<f32>) -> Result<()> {
    match lrp_core::first_non_finite(&a.view()) {
        Some((sample, element, value)) => Err(RulesError::NonFinite {
            what,
            sample,
            element,
            value,
        }),
        None => Ok(()),
    }
}

fn logits_2d(output: &ArrayD<f32>) -> Result<ArrayView2<'_, f32>> {
    output
        .view()
        .into_dimensionality::<Ix2>()
        .map_err(|_| RulesError::Target(format!("the network output {:?} is not [N, classes]", output.shape())))
}

/// FNV-1a over the sample's bits.
fn content_seed(sample: ArrayViewD<f32>) -> u64 {
    let mut h = lrp_core::hash::Fnv1a::default();
    h.write_f32s(sample.iter().copied());
    h.finish()
}

/// `onehot(target)`, times the logit when `scaled`.
fn onehot(logits: &ArrayD<f32>, targets: &[usize], scaled: bool) -> ArrayD<f32> {
    let mut r = ArrayD::<f32>::zeros(logits.raw_dim());
    for (n, &t) in targets.iter().enumerate() {
        r[[n, t]] = if scaled { logits[[n, t]] } else { 1.0 };
    }
    r
}

/// A caller's look at every value's relevance during the backward pass.
type Keep<'a> = &'a mut dyn FnMut(usize, &ArrayD<f32>);

/// What the backward pass reports besides the input relevance.
struct Visit<'a> {
    /// Each value's per-sample relevance sum.
    sums: bool,
    keep: Option<Keep<'a>>,
}

fn per_sample_sums(a: &ArrayD<f32>) -> Vec<f32> {
    a.outer_iter()
        .map(|s| match s.as_slice() {
            Some(sl) => lane_sum(sl),
            None => s.iter().map(|&v| v as f64).sum::<f64>() as f32,
        })
        .collect()
}

/// Sum with eight interleaved accumulators (vectorises; accurate enough for diagnostics), finished in f64.
fn lane_sum(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    (acc.iter().map(|&a| a as f64).sum::<f64>() + rest.iter().map(|&x| x as f64).sum::<f64>()) as f32
}

/// `r / stab(z, e)`, elementwise; `z` may be a single sample broadcast over the batch. With `e = 0` (LRP-0) an
/// output of exactly 0 passes nothing (its relevance is 0: nothing flows through a zero pre-activation).
fn divide(r: &ArrayD<f32>, z: &ArrayD<f32>, e: f32) -> ArrayD<f32> {
    divide_owned(r.clone(), z, e)
}

/// [`divide`] in the memory of `r`.
fn divide_owned(r: ArrayD<f32>, z: &ArrayD<f32>, e: f32) -> ArrayD<f32> {
    let mut s = r;
    if s.shape() == z.shape()
        && let (Some(sl), Some(zl)) = (s.as_slice_mut(), z.as_slice())
    {
        lrp_core::simd::divide_stabilised(sl, zl, e);
        return s;
    }
    let z = z.broadcast(s.raw_dim()).expect("denominator broadcasts over the batch");
    if e == 0.0 {
        Zip::from(&mut s).and(&z).for_each(|s, &z| *s = share_or_zero(*s, z));
    } else {
        Zip::from(&mut s).and(&z).for_each(|s, &z| *s /= stab(z, e));
    }
    s
}

/// `[N, …, d]` as rows `[N·…, d]` (a dense layer on the last axis of a larger value).
fn to_rows(a: &ArrayD<f32>) -> ArrayD<f32> {
    let d = *a.shape().last().expect("at least one axis");
    a.as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(&[a.len() / d.max(1), d]))
        .expect("same element count")
}

/// `r·[o ⋚ 0] / stab(z)`: the share of outputs whose unmodified value has the given sign.
fn divide_masked(r: &ArrayD<f32>, z: &ArrayD<f32>, o: &ArrayD<f32>, positive: bool) -> ArrayD<f32> {
    let mut s = r.clone();
    Zip::from(&mut s).and(z).and(o).for_each(|s, &z, &o| {
        let keep = if positive { o > 0.0 } else { o < 0.0 };
        *s = if keep { *s / stab(z, STABILIZER) } else { 0.0 };
    });
    s
}

/// The γ rule's shares `r·[z>0]/z⁺` and, with `negative`, `r·[z<0]/z⁻` stacked after them along axis 1 (the layout
/// of the stacked map's output), where `z⁺ = z + γ(P + b⁺)` and `z⁻ = z + γ((z − b) − P + b⁻)` from `P = W⁺x`: one
/// pass, no temporaries. Without `negative` the result has `r`'s shape (for `W + γW⁺` alone).
fn gamma_shares(
    r: &ArrayD<f32>,
    pp: &ArrayD<f32>,
    z: &ArrayD<f32>,
    plus: &crate::plan::GammaPlus,
    negative: bool,
) -> ArrayD<f32> {
    let halves = if negative { 2 } else { 1 };
    let mut shape = r.shape().to_vec();
    let o = shape[1];
    shape[1] *= halves;
    let mut s = ArrayD::<f32>::zeros(ndarray::IxDyn(&shape));
    let (r, pp, z) = (r.as_standard_layout(), pp.as_standard_layout(), z.as_standard_layout());
    let (r, pp, z): (&[f32], &[f32], &[f32]) = (
        r.as_slice().expect("standard layout"),
        pp.as_slice().expect("standard layout"),
        z.as_slice().expect("standard layout"),
    );
    let per = r.len() / shape[0].max(1);
    let plane = per / o.max(1);
    let (b, bp, bn) = (&plus.bias, &plus.bias_pos, &plus.bias_neg);
    let g = plus.gamma;
    let out = s.as_slice_mut().expect("fresh array");
    // Every share is computed and kept or replaced by 0 (selects, not branches: the sign of z is data, and a
    // mispredicted branch per value made this loop 6% of an `epsilon-gamma-box` run); the values are the ones the
    // branches gave, the unkept divisions are discarded.
    for (n, dst) in out.chunks_exact_mut(halves * per).enumerate() {
        let (pos, neg) = dst.split_at_mut(per);
        for c in 0..o {
            let at = n * per + c * plane;
            let (z, pp, r) = (&z[at..at + plane], &pp[at..at + plane], &r[at..at + plane]);
            let (bc, bpc, bnc) = (b[c], bp[c], bn[c]);
            let pos = &mut pos[c * plane..(c + 1) * plane];
            for (((d, &zi), &pi), &ri) in pos.iter_mut().zip(z).zip(pp).zip(r) {
                let v = ri / stab(zi + (pi + bpc) * g, STABILIZER);
                *d = if zi > 0.0 { v } else { 0.0 };
            }
            if negative {
                let neg = &mut neg[c * plane..(c + 1) * plane];
                for (((d, &zi), &pi), &ri) in neg.iter_mut().zip(z).zip(pp).zip(r) {
                    let v = ri / stab(zi + ((zi - bc) - pi + bnc) * g, STABILIZER);
                    *d = if zi < 0.0 { v } else { 0.0 };
                }
            }
        }
    }
    s
}

/// z^B's denominator `((z − b) − W⁺l) − W⁻h` for outputs `z: [N, O, …]`, the bias `[1, O, 1…]` and the bound
/// terms `[1, O, …]` each optional, subtracted in that order: the values of the broadcast array operations, in one
/// pass over plain slices (broadcasting over dynamic-rank arrays went value by value: 8% of an
/// `epsilon-gamma-box` run).
fn box_denominator(
    z: &ArrayD<f32>,
    bias: Option<&ArrayD<f32>>,
    pos_low: Option<&ArrayD<f32>>,
    neg_high: Option<&ArrayD<f32>>,
) -> ArrayD<f32> {
    let mut zb = z.as_standard_layout().into_owned();
    let per = zb.len() / zb.shape()[0].max(1);
    let plane = per / zb.shape()[1].max(1);
    // The plan makes these arrays in standard layout: they are read in place, not copied per call.
    let (b, pl, nh) = (plan_values(bias), plan_values(pos_low), plan_values(neg_high));
    for sample in zb.as_slice_mut().expect("fresh array").chunks_exact_mut(per.max(1)) {
        for (c, chunk) in sample.chunks_exact_mut(plane.max(1)).enumerate() {
            if let Some(b) = b {
                chunk.iter_mut().for_each(|v| *v -= b[c]);
            }
            let at = c * plane;
            if let Some(pl) = pl {
                chunk.iter_mut().zip(&pl[at..at + plane]).for_each(|(v, p)| *v -= p);
            }
            if let Some(nh) = nh {
                chunk.iter_mut().zip(&nh[at..at + plane]).for_each(|(v, h)| *v -= h);
            }
        }
    }
    zb
}

fn plan_values(a: Option<&ArrayD<f32>>) -> Option<&[f32]> {
    a.map(|a| a.as_slice().expect("plan arrays are in standard layout"))
}

/// Whether any output with `z < 0` carries relevance (the γ rule's negative branch has work to do).
fn relevance_where_negative(r: &ArrayD<f32>, z: &ArrayD<f32>) -> bool {
    match (r.as_slice(), z.as_slice()) {
        (Some(r), Some(z)) => r.chunks(1024).zip(z.chunks(1024)).any(|(r, z)| {
            r.iter()
                .zip(z)
                .map(|(&r, &z)| (z < 0.0 && r != 0.0) as u32)
                .sum::<u32>()
                > 0
        }),
        _ => Zip::from(r).and(z).fold(false, |a, &r, &z| a || (z < 0.0 && r != 0.0)),
    }
}

/// LRP from the output relevance `r` to the input; also the relevance summed over each value (for a chain, the
/// input of each layer), the last entry being the output's.
fn lrp(
    net: &Network,
    steps: &[Step],
    trace: &Trace,
    r: ArrayD<f32>,
    mut visit: Visit<'_>,
) -> (ArrayD<f32>, Vec<Vec<f32>>) {
    let mut sums = vec![Vec::new(); if visit.sums { steps.len() + 1 } else { 0 }];
    let relevance = net.reverse_accumulate(
        r,
        |k, r| {
            let ins = net.inputs_of(k);
            let x = trace.value(ins[0]);
            let z = trace.value(k + 1);
            vec![match &steps[k] {
                Step::Pass if r.shape() == x.shape() => r,
                // Reshaped in its own memory when it is in standard order (a copy only otherwise: copying the
                // MLP's input-sized relevance was a third of its copying).
                Step::Pass => {
                    let r = if r.is_standard_layout() {
                        r
                    } else {
                        r.as_standard_layout().into_owned()
                    };
                    r.into_shape_with_order(x.raw_dim())
                        .expect("pass-through layers keep the element count")
                }
                Step::MaxPool(p) => p
                    .max_route(
                        x.view().into_dimensionality::<Ix4>().expect("4-D"),
                        r.view().into_dimensionality::<Ix4>().expect("4-D"),
                    )
                    .into_dyn(),
                Step::AvgPool(p) => {
                    let s = divide(&r, z, STABILIZER);
                    let x4 = x.view().into_dimensionality::<Ix4>().expect("4-D");
                    p.avg_transpose(s.view().into_dimensionality::<Ix4>().expect("4-D"), x4.dim())
                        .into_dyn()
                        * x
                }
                Step::Linear(p) => linear_relevance(p, x, z, r),
                Step::Lstm(l, e) => lstm_relevance(l, *e, x, &r),
                Step::Bias(sign) => {
                    let s = divide(&r, z, STABILIZER);
                    if *sign < 0.0 { -(s * x) } else { s * x }
                }
                Step::Add => {
                    let s = divide(&r, z, STABILIZER);
                    let b = trace.value(ins[1]);
                    return vec![&s * x, s * b];
                }
                Step::Route => return net.node_backward(k, trace, r.view()),
                Step::Act(_) => r,
                Step::Mean(axis) => {
                    let s = divide(&r, z, STABILIZER);
                    lrp_core::mean_backward(s.view(), *axis, x.shape()[axis + 1]) * x
                }
                Step::LayerNorm(_) | Step::Softmax(_) | Step::MatMul => {
                    unreachable!("networks with transformer nodes are explained in the gradient form")
                }
            }]
        },
        |v, r| {
            if visit.sums {
                sums[v] = per_sample_sums(r);
            }
            if let Some(keep) = visit.keep.as_mut() {
                keep(v, r);
            }
        },
    );
    (relevance, sums)
}

/// One rule on one dense/conv layer: input `x`, its output `z = Wx + b` (from the trace), output relevance `r`.
fn linear_relevance(p: &Prepared, x: &ArrayD<f32>, z: &ArrayD<f32>, r: ArrayD<f32>) -> ArrayD<f32> {
    if matches!(p.maps.map(), LinearMap::Dense(_)) && x.ndim() > 2 {
        let out = linear_relevance(p, &to_rows(x), &to_rows(z), to_rows(&r));
        return out.into_shape_with_order(x.raw_dim()).expect("same element count");
    }
    let shape = x.shape();
    // After a ReLU (or on [0, 1] images) the x⁻ terms vanish: skip their work (asked only by the rules that split x).
    let nonneg = || match x.as_slice() {
        Some(sl) => sl.iter().all(|&v| v >= 0.0),
        None => x.iter().all(|&v| v >= 0.0),
    };
    let split = || (x.mapv(|v| v.max(0.0)), x.mapv(|v| v.min(0.0)));
    if let (Maps::Plain(w), Rule::Epsilon(e)) = (&p.maps, p.rule) {
        // `r` is this call's own: divided in place.
        let mut out = w.transpose(divide_owned(r, z, e).view(), shape);
        out *= x;
        return out;
    }
    let r = &r;
    match (&p.maps, p.rule) {
        (Maps::Signed { pos, neg }, rule) => {
            let (alpha, beta) = match rule {
                Rule::AlphaBeta(a, b) => (a, b),
                _ => (1.0, 0.0),
            };
            if nonneg() {
                let sa = divide(r, &pos.forward(x.view(), true), STABILIZER);
                let mut out = pos.transpose(sa.view(), shape) * x;
                if alpha != 1.0 {
                    out *= alpha;
                }
                if beta != 0.0 {
                    let sb = divide(r, &neg.forward(x.view(), true), STABILIZER);
                    out = out - neg.transpose(sb.view(), shape) * x * beta;
                }
                out
            } else {
                let (xp, xn) = split();
                let za = pos.forward(xp.view(), true) + neg.forward(xn.view(), false);
                let sa = divide(r, &za, STABILIZER);
                let mut out = (pos.transpose(sa.view(), shape) * &xp + neg.transpose(sa.view(), shape) * &xn) * alpha;
                if beta != 0.0 {
                    let zb = neg.forward(xp.view(), true) + pos.forward(xn.view(), false);
                    let sb = divide(r, &zb, STABILIZER);
                    out = out - (neg.transpose(sb.view(), shape) * &xp + pos.transpose(sb.view(), shape) * &xn) * beta;
                }
                out
            }
        }
        (
            Maps::Gamma {
                p: pm,
                n: nm,
                both,
                plus,
            },
            _,
        ) => {
            if nonneg() {
                if let (Some(both), Some(plus)) = (both, plus) {
                    // z⁺ and z⁻ from one product W⁺x and the trace's z; one transposed product over [s⁺; s⁻].
                    let pp = plus.w_pos.forward(x.view(), false);
                    if !relevance_where_negative(r, z) {
                        // No relevance reaches an output with z < 0 (a ReLU and max pooling follow: they pass none
                        // there), so s⁻ is all zeros and the transposed product needs only P = W + γW⁺: half the
                        // work, the same values (the stacked product's other half adds exact zeros).
                        let s = gamma_shares(r, &pp, z, plus, false);
                        return pm.transpose(s.view(), shape) * x;
                    }
                    let s = gamma_shares(r, &pp, z, plus, true);
                    return both.transpose(s.view(), shape) * x;
                }
                let sp = divide_masked(r, &pm.forward(x.view(), true), z, true);
                let sn = divide_masked(r, &nm.forward(x.view(), true), z, false);
                (pm.transpose(sp.view(), shape) + nm.transpose(sn.view(), shape)) * x
            } else {
                let (xp, xn) = split();
                let zp = pm.forward(xp.view(), true) + nm.forward(xn.view(), false);
                let zn = nm.forward(xp.view(), true) + pm.forward(xn.view(), false);
                let sp = divide_masked(r, &zp, z, true);
                let sn = divide_masked(r, &zn, z, false);
                (pm.transpose(sp.view(), shape) + nm.transpose(sn.view(), shape)) * &xp
                    + (nm.transpose(sp.view(), shape) + pm.transpose(sn.view(), shape)) * &xn
            }
        }
        (
            Maps::ZBox {
                w,
                pos,
                neg,
                low,
                high,
                pos_low,
                neg_high,
                bias,
            },
            Rule::ZBox(..),
        ) => {
            // W x is the trace's output less the bias (no second product).
            let zb = box_denominator(z, bias.as_ref(), pos_low.as_ref(), neg_high.as_ref());
            let s = divide(r, &zb, STABILIZER);
            let mut out = w.transpose(s.view(), shape) * x;
            if pos_low.is_some() {
                out -= &(pos.transpose(s.view(), shape) * low);
            }
            if neg_high.is_some() {
                out -= &(neg.transpose(s.view(), shape) * high);
            }
            out
        }
        (Maps::Uniform { map, denom }, _) => {
            let s = divide(r, denom, STABILIZER);
            map.transpose(s.view(), shape)
        }
        (maps, rule) => unreachable!("rule {rule} prepared with the wrong maps {maps:?}"),
    }
}

/// LSTM relevance (Arras et al. 2017, "Explaining Recurrent Neural Network Predictions in Sentiment Analysis"):
/// `R(h_t)` goes to `c_t`; `c_t = f⊙c_{t−1} + i⊙g` is split by the ε-rule with `c_t` as denominator;
/// signal-take-all gives `R(i⊙g)` to `g`; `g`'s pre-activation is split by the ε-rule over `x_t` and `h_{t−1}`
/// (biases absorb their share). Directions add.
///
/// # Shapes
/// `x: [N, T, F]`, `r` shaped like the layer output → `[N, T, F]`.
fn lstm_relevance(lstm: &lrp_core::Lstm, e: f32, x: &ArrayD<f32>, r: &ArrayD<f32>) -> ArrayD<f32> {
    use ndarray::{Array2, Array3, Axis, s};
    let x3 = x
        .view()
        .into_dimensionality::<ndarray::Ix3>()
        .expect("LSTM input is [N, T, F]");
    let (n, _, _) = x3.dim();
    let states = lstm.states(x3);
    let mut rx = Array3::<f32>::zeros(x3.raw_dim());
    let stab_div = |num: &Array2<f32>, den: &Array2<f32>| {
        let mut out = num.clone();
        Zip::from(&mut out).and(den).for_each(|o, &d| *o /= stab(d, e));
        out
    };
    for (d, (dir, st)) in lstm.directions.iter().zip(&states).enumerate() {
        let h = dir.hidden();
        let zeros = Array2::<f32>::zeros((n, h));
        let wg = dir.gate_rows(&dir.w, 2);
        let ug = dir.gate_rows(&dir.r, 2);
        let steps = st.order.len();
        let mut rh_carry = zeros.clone();
        let mut rc_carry = zeros.clone();
        for k in (0..steps).rev() {
            let ti = st.order[k];
            let mut rh = rh_carry;
            if lstm.return_sequence {
                rh += &r.slice(s![.., ti, d, ..]);
            } else if k == steps - 1 {
                rh += &r.slice(s![.., d, ..]);
            }
            let rc = &rc_carry + &rh;
            let [i, f, g, _] = &st.gates[k];
            let c = &st.c[k];
            let (c_prev, h_prev) = if k > 0 {
                (&st.c[k - 1], &st.h[k - 1])
            } else {
                (&zeros, &zeros)
            };
            let share = stab_div(&rc, c);
            rc_carry = &share * f * c_prev;
            let rg = &share * i * g;
            let sg = stab_div(&rg, &st.a_g[k]);
            let xt = x3.index_axis(Axis(1), ti);
            let mut rxt = rx.index_axis_mut(Axis(1), ti);
            rxt += &(&sg.dot(&wg) * &xt);
            rh_carry = sg.dot(&ug) * h_prev;
        }
    }
    rx.into_dyn()
}

/// `ĝ_y · f(x)/x`: the identity rule on an activation `y = f(x)` in the gradient form (`R_x = R_y`). Where
/// `x = 0` the ratio's limit `f′(0)` when `f(0) = 0`, else 0 (nothing to pass: `R_x = 0·ĝ`).
fn identity_ratio(a: &lrp_core::Activation, x: &ArrayD<f32>, y: &ArrayD<f32>, g: ArrayD<f32>) -> ArrayD<f32> {
    let at_zero = if a.apply(0.0) == 0.0 { a.derivative(0.0) } else { 0.0 };
    let mut g = g;
    Zip::from(&mut g).and(x).and(y).for_each(|g, &x, &y| {
        *g *= if x == 0.0 { at_zero } else { y / x };
    });
    g
}

/// What a rule on a linear layer gives in the gradient form.
enum Share {
    /// The modified gradient at the layer's input (`R_x = x ⊙ ĝ_x`).
    Grad(ArrayD<f32>),
    /// Relevance itself, for rules whose result is not `x ⊙ (something)` (z^B, w², flat): only on a layer that
    /// reads the network input (through reshapes at most), where it is added to the input's relevance.
    Direct(ArrayD<f32>),
}

/// `a` where `x > 0`, `b` elsewhere (where `x = 0` the choice does not matter: `R = 0·ĝ`).
fn by_sign(x: &ArrayD<f32>, a: ArrayD<f32>, b: &ArrayD<f32>) -> ArrayD<f32> {
    let mut a = a;
    Zip::from(&mut a).and(x).and(b).for_each(|a, &x, &b| {
        if x <= 0.0 {
            *a = b;
        }
    });
    a
}

/// One rule on one dense/conv layer in the gradient form: input `x`, output `z`, the modified gradient `g` at the
/// output (so `R = z ⊙ g`). Each rule is the same formula as [`linear_relevance`] with the final `x ⊙` left out.
fn linear_gradient(p: &Prepared, x: &ArrayD<f32>, z: &ArrayD<f32>, g: &ArrayD<f32>) -> Share {
    if matches!(p.maps.map(), LinearMap::Dense(_)) && x.ndim() > 2 {
        return match linear_gradient(p, &to_rows(x), &to_rows(z), &to_rows(g)) {
            Share::Grad(a) => Share::Grad(a.into_shape_with_order(x.raw_dim()).expect("same element count")),
            Share::Direct(a) => Share::Direct(a.into_shape_with_order(x.raw_dim()).expect("same element count")),
        };
    }
    let shape = x.shape();
    let split = || (x.mapv(|v| v.max(0.0)), x.mapv(|v| v.min(0.0)));
    match (&p.maps, p.rule) {
        (Maps::Plain(w), Rule::Epsilon(e)) => {
            // LRP-ε: Wᵀ(ĝ ⊙ z/stab(z, ε)), a factor in [0, 1); LRP-0 is the plain transposed map.
            if e == 0.0 {
                return Share::Grad(w.transpose(g.view(), shape));
            }
            let mut s = g.clone();
            Zip::from(&mut s).and(z).for_each(|s, &z| *s *= z / stab(z, e));
            Share::Grad(w.transpose(s.view(), shape))
        }
        (Maps::Signed { pos, neg }, rule) => {
            let (alpha, beta) = match rule {
                Rule::AlphaBeta(a, b) => (a, b),
                _ => (1.0, 0.0),
            };
            let r = z * g;
            let (xp, xn) = split();
            let za = pos.forward(xp.view(), true) + neg.forward(xn.view(), false);
            let sa = divide(&r, &za, STABILIZER);
            let mut gp = pos.transpose(sa.view(), shape) * alpha;
            let mut gn = neg.transpose(sa.view(), shape) * alpha;
            if beta != 0.0 {
                let zb = neg.forward(xp.view(), true) + pos.forward(xn.view(), false);
                let sb = divide(&r, &zb, STABILIZER);
                gp = gp - neg.transpose(sb.view(), shape) * beta;
                gn = gn - pos.transpose(sb.view(), shape) * beta;
            }
            Share::Grad(by_sign(x, gp, &gn))
        }
        (Maps::Gamma { p: pm, n: nm, .. }, _) => {
            let r = z * g;
            let (xp, xn) = split();
            let zp = pm.forward(xp.view(), true) + nm.forward(xn.view(), false);
            let zn = nm.forward(xp.view(), true) + pm.forward(xn.view(), false);
            let sp = divide_masked(&r, &zp, z, true);
            let sn = divide_masked(&r, &zn, z, false);
            let gp = pm.transpose(sp.view(), shape) + nm.transpose(sn.view(), shape);
            let gn = nm.transpose(sp.view(), shape) + pm.transpose(sn.view(), shape);
            Share::Grad(by_sign(x, gp, &gn))
        }
        _ => Share::Direct(linear_relevance(p, x, z, z * g)),
    }
}

/// LRP in the gradient form (AttnLRP, Achtibat et al. 2024, as LXT computes it): a modified gradient `ĝ` flows
/// back from `onehot(target)`, each node applying its rule's Jacobian, and the relevance at any value is
/// `value ⊙ ĝ`. LRP-0 is the plain gradient, LRP-ε scales it by `z/stab(z, ε)`; products of two values halve it on
/// each factor; a layer norm holds `σ`; a softmax is linearized at its input (its true Jacobian); activations
/// take the identity rule (`ĝ · f(x)/x`); sums, biases, means and routing pass it as the gradient does, without a
/// stabilizer. Nothing divides relevance by a pre-activation, so near-zero scores in attention are harmless.
fn lrp_gradient(
    net: &Network,
    steps: &[Step],
    trace: &Trace,
    r: ArrayD<f32>,
    stab_e: f32,
    mut visit: Visit<'_>,
) -> (ArrayD<f32>, Vec<Vec<f32>>) {
    // The proportional rules' factor `z / stab(z, e)` (1 without a stabilizer).
    let damp = |g: ArrayD<f32>, z: &ArrayD<f32>| -> ArrayD<f32> {
        if stab_e == 0.0 {
            return g;
        }
        let mut g = g;
        Zip::from(&mut g).and(z).for_each(|g, &z| *g *= z / stab(z, stab_e));
        g
    };
    // The output relevance R = logit ⊙ ĝ: ĝ = R / logit (1 at the explained class).
    let mut g = r;
    Zip::from(&mut g)
        .and(&trace.output)
        .for_each(|g, &y| *g = if *g == 0.0 || y == 0.0 { 0.0 } else { *g / y });
    // Relevance from rules that give it directly (z^B, w², flat), by the value it sits at.
    let direct: std::cell::RefCell<std::collections::HashMap<usize, ArrayD<f32>>> = Default::default();
    let mut sums = vec![Vec::new(); if visit.sums { steps.len() + 1 } else { 0 }];
    let g0 = net.reverse_accumulate(
        g,
        |k, g| {
            let ins = net.inputs_of(k);
            let x = trace.value(ins[0]);
            let z = trace.value(k + 1);
            vec![match &steps[k] {
                Step::Linear(p) => match linear_gradient(p, x, z, &g) {
                    Share::Grad(a) => a,
                    Share::Direct(rel) => {
                        // Relevance itself at the layer's input, which is the network input or reaches it through
                        // reshapes only (checked by the plan): it travels down that path beside ĝ.
                        let mut d = direct.borrow_mut();
                        match d.get_mut(&ins[0]) {
                            Some(acc) => *acc += &rel,
                            None => {
                                d.insert(ins[0], rel);
                            }
                        }
                        ArrayD::zeros(x.raw_dim())
                    }
                },
                Step::Act(a) => identity_ratio(a, x, z, g),
                Step::Pass => {
                    let mut d = direct.borrow_mut();
                    if let Some(rel) = d.remove(&(k + 1)) {
                        let rel = rel
                            .as_standard_layout()
                            .into_owned()
                            .into_shape_with_order(x.raw_dim())
                            .expect("a reshape keeps the elements");
                        d.insert(ins[0], rel);
                    }
                    return net.node_backward(k, trace, g.view());
                }
                Step::MaxPool(_) | Step::Route => return net.node_backward(k, trace, g.view()),
                Step::AvgPool(p) => {
                    let x4 = x.view().into_dimensionality::<Ix4>().expect("4-D");
                    let g = damp(g, z);
                    p.avg_transpose(g.view().into_dimensionality::<Ix4>().expect("4-D"), x4.dim())
                        .into_dyn()
                }
                Step::Bias(sign) => {
                    let g = damp(g, z);
                    if *sign < 0.0 { -g } else { g }
                }
                Step::Add => {
                    let g = damp(g, z);
                    return vec![g.clone(), g];
                }
                Step::Mean(axis) => lrp_core::mean_backward(damp(g, z).view(), *axis, x.shape()[axis + 1]),
                Step::LayerNorm(l) => l.backward(x.view(), g.view(), true),
                Step::Softmax(axis) => lrp_core::softmax_backward(z.view(), g.view(), *axis),
                Step::MatMul => {
                    let (ga, gb) = lrp_core::matmul_backward(x.view(), trace.value(ins[1]).view(), g.view(), 0.5);
                    return vec![ga, gb];
                }
                Step::Lstm(..) => unreachable!("an LSTM is refused in the gradient form when the plan is made"),
            }]
        },
        |v, g| {
            if !visit.sums && visit.keep.is_none() {
                return;
            }
            let mut rel = g * trace.value(v);
            if let Some(d) = direct.borrow().get(&v) {
                rel += d;
            }
            if visit.sums {
                sums[v] = per_sample_sums(&rel);
            }
            if let Some(keep) = visit.keep.as_mut() {
                keep(v, &rel);
            }
        },
    );
    let mut relevance = g0 * trace.value(0);
    if let Some(d) = direct.into_inner().get(&0) {
        relevance += d;
    }
    (relevance, sums)
}

#[cfg(test)]
mod gamma_paths {
    use super::*;
    use crate::linear::Modifier;
    use crate::plan::GammaPlus;
    use rand::Rng;

    /// Where no relevance reaches an output with z < 0, the γ rule's half-size transposed product gives the same
    /// bits as the stacked one (whose other half only adds exact zeros).
    #[test]
    fn the_positive_only_path_is_the_stacked_path_bit_for_bit() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut r = |shape: &[usize]| ArrayD::from_shape_fn(IxDyn(shape), |_| rng.random_range(-1.0f32..1.0));
        let w = r(&[8, 3, 3, 3]).into_dimensionality::<ndarray::Ix4>().unwrap();
        let conv = lrp_core::Conv2d::new(w, Some(ndarray::Array1::from(vec![0.1; 8])), [1, 1], [1; 4]);
        let map = crate::linear::LinearMap::of(&lrp_core::Layer::Conv2d(conv)).unwrap();
        let (p, n) = (
            map.modified(Modifier::GammaPositive(0.25)),
            map.modified(Modifier::GammaNegative(0.25)),
        );
        let both = crate::linear::LinearMap::stacked(&p, &n).unwrap();
        let plus = GammaPlus::new(&map, 0.25);
        let x = r(&[4, 3, 6, 6]).mapv(f32::abs);
        let z = map.forward(x.view(), true);
        // Relevance only where z > 0, as after a ReLU and max pooling.
        let mut rel = r(z.shape());
        Zip::from(&mut rel).and(&z).for_each(|r, &z| {
            if z <= 0.0 {
                *r = 0.0;
            }
        });
        assert!(!relevance_where_negative(&rel, &z));
        let pp = plus.w_pos.forward(x.view(), false);
        let fast = p.transpose(gamma_shares(&rel, &pp, &z, &plus, false).view(), x.shape());
        let stacked = both.transpose(gamma_shares(&rel, &pp, &z, &plus, true).view(), x.shape());
        let bits = |a: &ArrayD<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&fast), bits(&stacked));
        // One relevant negative output and the check says so.
        let k = z.iter().position(|&v| v < 0.0).unwrap();
        rel.as_slice_mut().unwrap()[k] = 0.5;
        assert!(relevance_where_negative(&rel, &z));
    }
}

#[cfg(test)]
mod block_errors {
    use super::*;
    use lrp_core::{Dense, Layer};

    /// A batch explained in blocks names a bad input by its index in the whole batch, as one pass would.
    #[test]
    fn a_bad_input_in_a_later_block_is_named_by_its_place_in_the_batch() {
        let w = ndarray::Array2::from_shape_fn((3, 64), |(i, j)| ((i * 64 + j) % 7) as f32 * 0.1 - 0.3);
        let net = Network::new(vec![64], vec![Layer::Dense(Dense::new(w, None))]).unwrap();
        let ex = Explainer::new(&net, &Spec::parse("epsilon").unwrap()).unwrap();
        let block = ex.block_size();
        let n = 2 * block + 5;
        let bad = block + 3;
        let mut x = ArrayD::from_shape_fn(IxDyn(&[n, 64]), |d| (d[1] % 5) as f32 * 0.2);
        x[[bad, 17]] = f32::NAN;
        match ex.explain(x.view(), &Target::Predicted) {
            Err(RulesError::Core(CoreError::NonFiniteInput { sample, index, value })) => {
                assert_eq!((sample, index), (bad, 17));
                assert!(value.is_nan());
            }
            other => panic!(
                "expected the bad input named, got {:?}",
                other.map(|e| e.relevance.shape().to_vec())
            ),
        }
    }
}
