//! The explainer: [`Explainer`], [`Target`] and [`Explanation`] — relevance from the output back to the input,
//! in blocks of a batch, by one of the walks in [`crate::walk`]; and the gradient-based attributions.

use lrp_core::{Network, Trace};
use ndarray::{ArrayD, ArrayView2, ArrayViewD, Axis, Ix2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

use crate::error::{Result, RulesError};
use crate::plan::{Form, Plan, PlanKind, Step};
use crate::spec::{Attribution, Spec};
use crate::walk::{self, Visit};

/// [`Explainer::explain`] runs large batches in blocks whose forward trace holds about this many floats (2 MiB, a
/// core's L2 cache on this project's machine: 19 CNN samples a block), or four times the network's parameters if
/// that is more. With the convolutions direct, most of the rest of a run writes and reads whole layer values: blocks
/// of 8 MiB were 2.2% slower (CNN ε and `epsilon-gamma-box`, paired), blocks of 1 MiB 1.6% slower. Every block reads
/// all the weights again (a GEMM packs them): a network whose weights outweigh its values (the MLP: 235,146
/// parameters, 2,346 values a sample) ran 6% slower split into blocks of 2 MiB than in one.
const TRACE_BLOCK_FLOATS: usize = 1 << 19;
/// But never more than this many floats of trace in one block (512 MiB): a network with large values per sample
/// and many weights (VGG-16 at 224×224: 15 M values a sample, 138 M parameters) would otherwise take 36 samples a
/// block, a 2.2 GB trace.
const MAX_BLOCK_FLOATS: usize = 1 << 27;
/// Blocks whose trace holds at least this many floats (32 MiB) run side by side on the pool's threads (see
/// [`Explainer::block_plan`]).
const PARALLEL_BLOCK_FLOATS: usize = 1 << 23;

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
    /// The explanations of consecutive blocks of a batch as one (what [`Explanation::kept`] holds is left out).
    pub(crate) fn concatenate(parts: &[&Explanation]) -> Explanation {
        let cat = |f: &dyn Fn(&Explanation) -> ArrayViewD<f32>| {
            let views: Vec<ArrayViewD<f32>> = parts.iter().map(|p| f(p)).collect();
            ndarray::concatenate(Axis(0), &views).expect("blocks of one shape")
        };
        Explanation {
            relevance: cat(&|p| p.relevance.view()),
            logits: cat(&|p| p.logits.view()),
            targets: parts.iter().flat_map(|p| p.targets.iter().copied()).collect(),
            layer_sums: (0..parts[0].layer_sums.len())
                .map(|v| parts.iter().flat_map(|p| p.layer_sums[v].iter().copied()).collect())
                .collect(),
            kept: Vec::new(),
        }
    }

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
    plan: Plan<'n>,
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

    /// Whether explanations carry [`Explanation::layer_sums`].
    pub(crate) fn layer_sums(&self) -> bool {
        self.layer_sums
    }

    /// The resolved plan.
    pub fn plan(&self) -> &Plan<'n> {
        &self.plan
    }

    /// The network.
    pub fn network(&self) -> &'n Network {
        self.net
    }

    /// Explains `x` (`[N, …input shape]`) for the given target classes: LRP starts from
    /// `onehot(target)·logit`, the gradient methods from `onehot(target)`.
    pub fn explain(&self, x: ArrayViewD<f32>, target: &Target) -> Result<Explanation> {
        self.check_memory()?;
        let n = x.shape()[0];
        let (block, parallel) = self.block_plan(n);
        if n <= block {
            return self.explain_block(x, target);
        }
        if let Target::PerSample(v) = target
            && v.len() != n
        {
            return Err(RulesError::Target(format!("{} targets for {n} samples", v.len())));
        }
        // Large batches in blocks whose trace stays in cache (or, for large networks, whose traces together hold no
        // more than one block, side by side on the pool's threads): every kernel treats samples independently, so
        // the result is the same bits as one pass over the whole batch.
        let starts: Vec<usize> = (0..n).step_by(block).collect();
        let one = |&start: &usize| {
            let end = (start + block).min(n);
            let t = match target {
                Target::PerSample(v) => Target::PerSample(v[start..end].to_vec()),
                other => other.clone(),
            };
            let part = self.explain_block(x.slice_axis(Axis(0), (start..end).into()), &t);
            // A bad input, logit or relevance is named by its place in the whole batch, not in the block.
            part.map_err(|e| e.shifted(start))
        };
        // The first failing block in batch order is the one reported (in turn, the blocks stop at it).
        let parts = if parallel {
            let parts: Vec<Result<Explanation>> = starts.par_iter().map(one).collect();
            parts.into_iter().collect::<Result<Vec<_>>>()?
        } else {
            starts.iter().map(one).collect::<Result<Vec<_>>>()?
        };
        Ok(Explanation::concatenate(&parts.iter().collect::<Vec<_>>()))
    }

    /// Like [`Explainer::explain`], and also keeps the relevance at each value in `keep` (value `v` is the input
    /// of layer `v` in a chain; value `k + 1` the output of node `k`): what reaches the hidden layers. LRP plans
    /// only (a gradient method has gradients there, not relevance). One pass, no blocking: for a few samples.
    pub fn explain_keeping(&self, x: ArrayViewD<f32>, target: &Target, keep: &[usize]) -> Result<Explanation> {
        let PlanKind::Lrp(steps) = self.plan.kind() else {
            return Err(RulesError::Request(format!(
                "relevance at hidden layers needs an LRP rule; {} is a gradient method",
                self.plan.spec()
            )));
        };
        let values = self.net.layers().len() + 1;
        if let Some(&v) = keep.iter().find(|&&v| v >= values) {
            return Err(RulesError::Request(format!(
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

    /// Samples per block for a batch of `n`, and whether the blocks run side by side on the threads of the pool
    /// this runs in. Small networks (MNIST's: a block fits a core's cache) keep [`Explainer::block_size`] and run
    /// their blocks in turn (a batch runner gives each thread its own chunk). Large ones (a block's trace of
    /// [`PARALLEL_BLOCK_FLOATS`] or more: ImageNet networks) share [`Explainer::block_size`] between the threads,
    /// so the blocks in flight hold no more than one block did: on this project's machine the kernel zeroing each
    /// page touched for the first time was a quarter of a ResNet-50 run, so a run costs what its peak memory costs
    /// (two ResNet-50 blocks of 8 photos side by side: 1.46 GB peak and no faster than 9 and 7 in turn at 0.97 GB).
    fn block_plan(&self, n: usize) -> (usize, bool) {
        let block = self.block_size();
        let threads = rayon::current_num_threads().max(1);
        if threads < 2 || block.saturating_mul(self.values_per_sample()) < PARALLEL_BLOCK_FLOATS {
            return (block, false);
        }
        // A quarter of a block per thread (a single ResNet-50 photo): each sample's products are the same whatever
        // the block, and smaller blocks touch less memory (16 photos: peak 829 → 604 MB, the time unchanged).
        let per = block / threads / 4;
        (per.max(1).min(n.div_ceil(threads)).max(1), true)
    }

    /// Samples per block: the whole forward trace of a block holds about [`TRACE_BLOCK_FLOATS`] floats, or four
    /// times the parameters.
    pub(crate) fn block_size(&self) -> usize {
        let floats = TRACE_BLOCK_FLOATS
            .max(self.net.param_count().saturating_mul(4))
            .min(MAX_BLOCK_FLOATS);
        let per = self.values_per_sample().max(1);
        // At least 8 samples a block where 8 fit in the cap (the blocks of small networks stay as they were).
        (floats / per).max((MAX_BLOCK_FLOATS / per).min(8)).max(1)
    }

    /// The floats of one sample's forward trace (every value of the network).
    fn values_per_sample(&self) -> usize {
        (0..=self.net.layers().len())
            .map(|v| self.net.shape_at(v).iter().product::<usize>())
            .sum()
    }

    /// Refuses a network one sample of which cannot be explained in the memory this machine has: the trace and
    /// the relevance of every value, about twice the trace.
    pub(crate) fn check_memory(&self) -> Result<()> {
        let need = self.values_per_sample() as u64 * 4 * 2;
        if let Some(available) = lrp_core::available_memory()
            && need > available
        {
            return Err(RulesError::Request(format!(
                "one sample of this network needs about {:.1} GiB to explain (its values add up to {} floats), more \
                 than the {:.1} GiB of memory available",
                need as f64 / (1u64 << 30) as f64,
                self.values_per_sample(),
                available as f64 / (1u64 << 30) as f64
            )));
        }
        Ok(())
    }

    /// The forward trace, the explained classes, and the seed of the backward pass.
    pub(crate) fn forward(&self, x: ArrayViewD<f32>, target: &Target) -> Result<(Trace, Vec<usize>, ArrayD<f32>)> {
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
    /// The same checks as [`Explainer::explain`]: the input, the logits, the given output and the result must be
    /// finite (a NaN or infinity is an error naming the sample, never a value returned).
    pub fn explain_from(&self, x: ArrayViewD<f32>, output: ArrayViewD<f32>) -> Result<Explanation> {
        let trace = self.net.forward_trace(x.view())?;
        check_finite("logits", &trace.output)?;
        if output.shape() != trace.output.shape() {
            return Err(lrp_core::CoreError::shape("output relevance", trace.output.shape(), output.shape()).into());
        }
        let output = output.to_owned();
        check_finite("output relevance", &output)?;
        let targets = Target::Predicted.resolve(logits_2d(&trace.output)?)?;
        let e = self.propagate(x, trace, output, targets)?;
        check_finite("relevance", &e.relevance)?;
        Ok(e)
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
        keep: Option<walk::Keep<'_>>,
    ) -> (ArrayD<f32>, Vec<Vec<f32>>) {
        self.lrp_masked(steps, trace, r, sums, keep, None)
    }

    /// [`Explainer::lrp`] with a mask on what flows back (a concept condition).
    pub(crate) fn lrp_masked<'a>(
        &self,
        steps: &[Step],
        trace: &Trace,
        r: ArrayD<f32>,
        sums: bool,
        keep: Option<walk::Keep<'a>>,
        mask: Option<walk::Mask<'a>>,
    ) -> (ArrayD<f32>, Vec<Vec<f32>>) {
        let visit = Visit { sums, keep, mask };
        match self.plan.form() {
            Form::Relevance => walk::relevance::lrp(self.net, steps, trace, r, visit),
            Form::Gradient => walk::gradient::lrp(self.net, steps, trace, r, self.plan.node_stabilizer(), visit),
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
pub(crate) fn check_finite<D: ndarray::Dimension>(what: &'static str, a: &ndarray::Array<f32, D>) -> Result<()> {
    match lrp_core::first_non_finite(&a.view().into_dyn()) {
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
        let mut x = ArrayD::from_shape_fn(ndarray::IxDyn(&[n, 64]), |d| (d[1] % 5) as f32 * 0.2);
        x[[bad, 17]] = f32::NAN;
        match ex.explain(x.view(), &Target::Predicted) {
            Err(RulesError::Core(lrp_core::CoreError::NonFiniteInput { sample, index, value })) => {
                assert_eq!((sample, index), (bad, 17));
                assert!(value.is_nan());
            }
            other => panic!(
                "expected the bad input named, got {:?}",
                other.map(|e| e.relevance.shape().to_vec())
            ),
        }
    }

    /// `explain_from` refuses what `explain` refuses: a NaN in the given output relevance, or a result that
    /// overflows to infinity, is an error naming the sample, never a value returned.
    #[test]
    fn explain_from_refuses_non_finite_relevance() {
        let w = ndarray::Array2::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as f32 * 0.1 - 0.5);
        let net = Network::new(vec![4], vec![Layer::Dense(Dense::new(w, None))]).unwrap();
        let ex = Explainer::new(&net, &Spec::parse("epsilon").unwrap()).unwrap();
        let x = ArrayD::from_shape_fn(ndarray::IxDyn(&[2, 4]), |d| d[1] as f32 * 0.25 + 0.1);
        let mut out = ArrayD::from_elem(ndarray::IxDyn(&[2, 3]), 1.0f32);
        assert!(ex.explain_from(x.view(), out.view()).is_ok());
        out[[1, 2]] = f32::NAN;
        match ex.explain_from(x.view(), out.view()) {
            Err(RulesError::NonFinite { what, sample, .. }) => assert_eq!((what, sample), ("output relevance", 1)),
            other => panic!("expected a refusal, got {:?}", other.map(|e| e.relevance)),
        }
        // Finite but so large that the relevance overflows.
        let mut huge = ArrayD::from_elem(ndarray::IxDyn(&[2, 3]), 1.0f32);
        huge[[0, 1]] = f32::MAX;
        match ex.explain_from(x.view(), huge.view()) {
            Err(RulesError::NonFinite { what, sample, .. }) => assert_eq!((what, sample), ("relevance", 0)),
            other => panic!("expected a refusal, got {:?}", other.map(|e| e.relevance)),
        }
    }
}
