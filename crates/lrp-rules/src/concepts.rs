//! Concept Relevance Propagation (Achtibat et al., Nature Machine Intelligence 2023, as zennit-crp 0.6 computes it;
//! `LRP-RULES.md`, "Concepts"): a concept is a channel of a convolution (or a neuron of a dense layer) at a layer
//! with weights `#N`.
//!
//! - a *conditional heatmap* is the usual backward pass, except that at the output of `#N` (after its bias and
//!   folded batch norm, before the activation) the relevance keeps only the channels of a set;
//! - the *concept relevance* at `#N` is each channel's relevance summed over positions, `[N, C]`;
//! - a *decomposition* records the concept relevance at a shallower layer under a condition at a deeper one;
//! - relevance and activation maximization rank a dataset's samples by their [`normalized`] concept relevance (or
//!   activation) per channel ([`top_samples`]).
//!
//! Every rule is linear in the relevance it receives, so the conditional heatmaps of a partition of a layer's
//! channels add up to the unconditional heatmap.

use lrp_core::{Layer, Network};
use ndarray::{Array2, ArrayD, ArrayViewD, Axis};

use crate::error::{Result, RulesError};
use crate::explain::{Explainer, Explanation, Target, check_finite};
use crate::plan::PlanKind;

/// The channels a condition keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Channels {
    /// The same channels for every sample.
    Same(Vec<usize>),
    /// Each sample's own channels, one list per sample.
    PerSample(Vec<Vec<usize>>),
}

impl Channels {
    /// The channels of sample `n`.
    pub fn of(&self, n: usize) -> &[usize] {
        match self {
            Channels::Same(c) => c,
            Channels::PerSample(v) => &v[n],
        }
    }

    fn block(&self, range: std::ops::Range<usize>) -> Channels {
        match self {
            Channels::Same(c) => Channels::Same(c.clone()),
            Channels::PerSample(v) => Channels::PerSample(v[range].to_vec()),
        }
    }
}

/// Keep only `channels` in the relevance at the output of layer `#layer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// `#N`: the N-th layer with weights (0-based), as rule specs count.
    pub layer: usize,
    /// The channels kept.
    pub channels: Channels,
}

/// A layer with weights seen as a set of concepts: the value it writes and the axis its channels lie along.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConceptLayer {
    /// `#N`.
    pub index: usize,
    /// The node.
    pub node: usize,
    /// The value the node writes (its output, before any activation node).
    pub value: usize,
    /// The axis of the channels in a batch of that value (`1` for convolutions and dense layers on vectors, the
    /// last for dense layers on sequences).
    pub axis: usize,
    /// How many channels (or neurons).
    pub channels: usize,
}

impl ConceptLayer {
    /// Layer `#n` of `net`, or why it cannot hold concepts.
    pub fn of(net: &Network, n: usize) -> Result<ConceptLayer> {
        let weighted = net.weighted_layers();
        let Some(&node) = weighted.get(n) else {
            return Err(RulesError::Request(format!(
                "#{n}: the network has {} layers with weights (#0 to #{})",
                weighted.len(),
                weighted.len().saturating_sub(1)
            )));
        };
        let value = node + 1;
        let shape = net.shape_at(value);
        let axis = match &net.layers()[node] {
            Layer::Conv2d(_) | Layer::BatchNorm(_) if !shape.is_empty() => 1,
            Layer::Dense(_) if !shape.is_empty() => shape.len(),
            other => {
                return Err(RulesError::Request(format!(
                    "#{n} is a {} layer: concepts are the channels of a convolution or the neurons of a dense layer",
                    other.kind().name()
                )));
            }
        };
        Ok(ConceptLayer {
            index: n,
            node,
            value,
            axis,
            channels: shape[axis - 1],
        })
    }

    /// Whether relevance can reach the network input without passing through this layer (a skip connection
    /// beside it): then a conditional heatmap holds that part too, whatever the channels kept (as in zennit-crp).
    pub fn bypassed(&self, net: &Network) -> bool {
        // Values reachable backwards from the output through every node but this one.
        let n = net.layers().len();
        let mut reached = vec![false; n + 1];
        reached[n] = true;
        for k in (0..n).rev() {
            if k != self.node && reached[k + 1] {
                for &v in net.inputs_of(k) {
                    reached[v] = true;
                }
            }
        }
        reached[0]
    }

    /// The input rows and columns (`[start, end)`, clipped to the input) that position `(y, x)` of this layer's
    /// output sees: its receptive field, followed back through the convolutions and poolings on the path of each
    /// node's first input (a residual branch's skip path sees no more than its main path). `None` when that path
    /// passes a layer that mixes all positions (a dense layer, a flatten) or the layer's output is not an image.
    pub fn receptive_field(&self, net: &Network, y: usize, x: usize) -> Option<[std::ops::Range<usize>; 2]> {
        let spatial = |v: usize| {
            let s = net.shape_at(v);
            (s.len() == 3).then(|| (s[1], s[2]))
        };
        spatial(self.value)?;
        let (mut rows, mut cols) = ((y as i64, y as i64), (x as i64, x as i64));
        let mut k = self.node;
        loop {
            let input = net.inputs_of(k)[0];
            let window = match &net.layers()[k] {
                Layer::Conv2d(c) => Some((c.window, c.dilation)),
                Layer::MaxPool2d(p) | Layer::AvgPool2d(p) => Some((p.window, [1, 1])),
                _ => None,
            };
            match window {
                Some((w, d)) => {
                    let back = |(lo, hi): (i64, i64), a: usize| {
                        let (s, pad, reach) = (w.stride[a] as i64, w.pads[a] as i64, ((w.kernel[a] - 1) * d[a]) as i64);
                        (lo * s - pad, hi * s - pad + reach)
                    };
                    rows = back(rows, 0);
                    cols = back(cols, 1);
                }
                // Elementwise and per-channel layers keep positions; anything else mixes them.
                None if spatial(input).is_some() && spatial(input) == spatial(k + 1) => {}
                None => return None,
            }
            if input == 0 {
                break;
            }
            k = input - 1;
        }
        let (h, w) = spatial(0)?;
        let clip = |(lo, hi): (i64, i64), n: usize| lo.max(0) as usize..((hi + 1).max(0) as usize).min(n);
        Some([clip(rows, h), clip(cols, w)])
    }

    /// Each sample's sum per channel of `a` (a batch of this layer's output), `[N, channels]`, added up in f64.
    pub fn channel_sums(&self, a: &ArrayD<f32>) -> Array2<f32> {
        let n = a.shape()[0];
        let mut out = Array2::<f64>::zeros((n, self.channels));
        for (s, sample) in a.outer_iter().enumerate() {
            for (c, lane) in sample.axis_iter(Axis(self.axis - 1)).enumerate() {
                out[[s, c]] = lane.iter().map(|&v| v as f64).sum();
            }
        }
        out.mapv(|v| v as f32)
    }

    /// Zeroes every channel of `a` (a batch of this layer's output) that sample's list does not keep.
    fn mask(&self, a: &mut ArrayD<f32>, channels: &Channels) {
        for (s, mut sample) in a.outer_iter_mut().enumerate() {
            let keep = channels.of(s);
            for (c, mut lane) in sample.axis_iter_mut(Axis(self.axis - 1)).enumerate() {
                if !keep.contains(&c) {
                    lane.fill(0.0);
                }
            }
        }
    }

    /// Checks a channel list against this layer (and the batch size, for one list per sample).
    fn check(&self, channels: &Channels, n: usize) -> Result<()> {
        let lists: Vec<&[usize]> = match channels {
            Channels::Same(c) => vec![c],
            Channels::PerSample(v) => {
                if v.len() != n {
                    return Err(RulesError::Request(format!(
                        "the condition at #{} gives channels for {} samples; the batch has {n}",
                        self.index,
                        v.len()
                    )));
                }
                v.iter().map(Vec::as_slice).collect()
            }
        };
        for (s, list) in lists.iter().enumerate() {
            if list.is_empty() {
                return Err(RulesError::Request(format!(
                    "the condition at #{} keeps no channel{}",
                    self.index,
                    if matches!(channels, Channels::PerSample(_)) {
                        format!(" for sample {s}")
                    } else {
                        String::new()
                    }
                )));
            }
            if let Some(&c) = list.iter().find(|&&c| c >= self.channels) {
                return Err(RulesError::Request(format!(
                    "channel {c} does not exist at #{}: it has {} channels (0 to {})",
                    self.index,
                    self.channels,
                    self.channels - 1
                )));
            }
        }
        Ok(())
    }
}

/// A conditional explanation and the concept sums asked for.
#[derive(Clone, Debug)]
pub struct ConceptExplanation {
    /// The (conditional) heatmap and what else an explanation carries.
    pub explanation: Explanation,
    /// Per recorded layer, in the order asked: the relevance at its output summed per channel, `[N, channels]`
    /// (under the conditions, if any).
    pub relevance: Vec<Array2<f32>>,
    /// Per recorded layer: its output (the pre-activation) summed per channel, `[N, channels]`.
    pub activation: Vec<Array2<f32>>,
}

impl Explainer<'_> {
    /// Explains `x` for `target` under `conditions` (at most one per layer), and records the concept relevance and
    /// activation at each layer `#N` of `record`. An LRP rule is needed (a gradient method has no relevance at the
    /// hidden layers). Large batches run in blocks, as [`Explainer::explain`] does.
    pub fn explain_concepts(
        &self,
        x: ArrayViewD<f32>,
        target: &Target,
        conditions: &[Condition],
        record: &[usize],
    ) -> Result<ConceptExplanation> {
        if !matches!(self.plan().kind(), PlanKind::Lrp(_)) {
            return Err(RulesError::Request(format!(
                "concepts need an LRP rule; {} is a gradient method",
                self.plan().spec()
            )));
        }
        self.check_memory()?;
        let net = self.network();
        let n = x.shape()[0];
        let mut conds = Vec::with_capacity(conditions.len());
        for c in conditions {
            let layer = ConceptLayer::of(net, c.layer)?;
            layer.check(&c.channels, n)?;
            if conds.iter().any(|(l, _): &(ConceptLayer, Channels)| l.index == c.layer) {
                return Err(RulesError::Request(format!(
                    "two conditions at #{}: give one channel list per layer",
                    c.layer
                )));
            }
            conds.push((layer, c.channels.clone()));
        }
        let recorded = record
            .iter()
            .map(|&r| ConceptLayer::of(net, r))
            .collect::<Result<Vec<_>>>()?;
        if let Target::PerSample(v) = target
            && v.len() != n
        {
            return Err(RulesError::Target(format!("{} targets for {n} samples", v.len())));
        }
        let block = self.block_size().max(1);
        let mut parts = Vec::with_capacity(n.div_ceil(block).max(1));
        for start in (0..n.max(1)).step_by(block) {
            let end = (start + block).min(n);
            let t = match target {
                Target::PerSample(v) => Target::PerSample(v[start..end].to_vec()),
                other => other.clone(),
            };
            let c: Vec<(ConceptLayer, Channels)> = conds.iter().map(|(l, ch)| (*l, ch.block(start..end))).collect();
            let part = self.concepts_block(x.slice_axis(Axis(0), (start..end).into()), &t, &c, &recorded);
            parts.push(part.map_err(|e| e.shifted(start))?);
        }
        Ok(concatenate(parts))
    }

    fn concepts_block(
        &self,
        x: ArrayViewD<f32>,
        target: &Target,
        conditions: &[(ConceptLayer, Channels)],
        record: &[ConceptLayer],
    ) -> Result<ConceptExplanation> {
        let PlanKind::Lrp(steps) = self.plan().kind() else {
            unreachable!("checked by explain_concepts")
        };
        let (trace, targets, seed) = self.forward(x, target)?;
        let mask = |v: usize, r: &mut ArrayD<f32>| {
            for (l, ch) in conditions.iter().filter(|(l, _)| l.value == v) {
                l.mask(r, ch);
            }
        };
        let mut relevance: Vec<Option<Array2<f32>>> = vec![None; record.len()];
        let mut keep = |v: usize, r: &ArrayD<f32>| {
            for (slot, l) in relevance.iter_mut().zip(record).filter(|(_, l)| l.value == v) {
                *slot = Some(l.channel_sums(r));
            }
        };
        let (heatmap, layer_sums) = self.lrp_masked(
            steps,
            &trace,
            seed,
            self.layer_sums(),
            Some(&mut keep),
            (!conditions.is_empty()).then_some(&mask as &dyn Fn(usize, &mut ArrayD<f32>)),
        );
        check_finite("relevance", &heatmap)?;
        let activation: Vec<Array2<f32>> = record.iter().map(|l| l.channel_sums(trace.value(l.value))).collect();
        let relevance: Vec<Array2<f32>> = relevance
            .into_iter()
            .map(|r| r.expect("every value is visited"))
            .collect();
        // Sums of finite values can still overflow float32: refused like a heatmap, never returned.
        for (r, a) in relevance.iter().zip(&activation) {
            check_finite("concept relevance", r)?;
            check_finite("activation sums", a)?;
        }
        Ok(ConceptExplanation {
            explanation: Explanation {
                relevance: heatmap,
                logits: trace.output,
                targets,
                layer_sums,
                kept: Vec::new(),
            },
            relevance,
            activation,
        })
    }
}

fn concatenate(parts: Vec<ConceptExplanation>) -> ConceptExplanation {
    if parts.len() == 1 {
        return parts.into_iter().next().expect("one part");
    }
    let cat = |f: &dyn Fn(&ConceptExplanation) -> ndarray::ArrayView2<f32>| {
        let views: Vec<ndarray::ArrayView2<f32>> = parts.iter().map(f).collect();
        ndarray::concatenate(Axis(0), &views).expect("blocks of one shape")
    };
    let recorded = parts[0].relevance.len();
    ConceptExplanation {
        explanation: Explanation::concatenate(&parts.iter().map(|p| &p.explanation).collect::<Vec<_>>()),
        relevance: (0..recorded).map(|i| cat(&|p| p.relevance[i].view())).collect(),
        activation: (0..recorded).map(|i| cat(&|p| p.activation[i].view())).collect(),
    }
}

/// Each row divided by the sum of its absolute values plus `1e-10` (CRP's `abs_norm`), in f64.
pub fn normalized(a: &Array2<f32>) -> Array2<f32> {
    let mut out = a.clone();
    for mut row in out.outer_iter_mut() {
        let total: f64 = row.iter().map(|&v| (v as f64).abs()).sum::<f64>() + 1e-10;
        row.mapv_inplace(|v| (v as f64 / total) as f32);
    }
    out
}

/// The positions of `values`, largest value first (the lower position first on ties): channels by relevance,
/// samples by their value for a channel, classes by logit.
pub fn ranked<'a>(values: impl IntoIterator<Item = &'a f32>) -> Vec<usize> {
    let values: Vec<f32> = values.into_iter().copied().collect();
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[j].total_cmp(&values[i]).then(i.cmp(&j)));
    order
}

/// Per column of `a` `[samples, channels]`, the `k` rows with the largest values, largest first (the lower index
/// first on ties): `[min(k, samples), channels]`. `a` must be finite.
pub fn top_samples(a: &Array2<f32>, k: usize) -> Array2<i64> {
    let (n, c) = a.dim();
    let k = k.min(n);
    let mut out = Array2::<i64>::zeros((k, c));
    for (col, column) in a.axis_iter(Axis(1)).enumerate() {
        for (r, i) in ranked(column).into_iter().take(k).enumerate() {
            out[[r, col]] = i as i64;
        }
    }
    out
}
