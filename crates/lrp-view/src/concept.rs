//! What the concept screen shows (Concept Relevance Propagation, `LRP-RULES.md` "Concepts"), computed off the UI
//! thread: a channel's conditional heatmap on the current input, its share of the relevance at its layer, its
//! decomposition into the channels of the layer below, and its reference samples — the samples among the first
//! [`REFERENCE_POOL`] whose normalized relevance for the channel is largest (RelMax, each explained for its label),
//! with their conditional heatmaps.

use std::collections::HashMap;

use lrp_core::Network;
use lrp_rules::concepts::{normalized, top_samples};
use lrp_rules::{Channels, ConceptLayer, Condition, Explainer, Target};
use ndarray::{Array2, ArrayD, Axis};

use crate::cells::to_map;

/// How many samples (from the first) the reference samples are chosen among.
pub const REFERENCE_POOL: usize = 2000;
/// Reference samples kept per channel.
pub const REFERENCES: usize = 8;

/// Which channel of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pick {
    /// The `r`-th most relevant channel for the current input (0: the most relevant).
    Rank(usize),
    /// A channel by number.
    Channel(usize),
}

/// A concept: layer `#N` and a channel of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConceptKey {
    /// `#N`.
    pub layer: usize,
    /// The channel.
    pub pick: Pick,
}

/// One reference sample of a channel.
#[derive(Clone, Debug)]
pub struct Reference {
    /// Its index in the dataset.
    pub index: usize,
    /// Its normalized relevance for the channel (RelMax's ranking value).
    pub value: f32,
    /// The image as a 2-D map.
    pub image: Array2<f32>,
    /// Its conditional heatmap for the channel.
    pub heatmap: Array2<f32>,
}

/// Everything the concept screen draws for one input and channel.
#[derive(Clone, Debug)]
pub struct ConceptView {
    /// `#N`.
    pub layer: usize,
    /// What `#N` is (`conv2d`).
    pub kind: String,
    /// The channel shown.
    pub channel: usize,
    /// Its rank among the layer's channels for this input (0: the most relevant).
    pub rank: usize,
    /// The concept relevance at `#N` for this input (unconditional), one value per channel.
    pub relevance: Vec<f32>,
    /// The conditional heatmap on this input.
    pub heatmap: Array2<f32>,
    /// The decomposition: `#N−1` and the relevance of each of its channels under the condition, when `#N` has a
    /// layer with weights below it.
    pub below: Option<(usize, Vec<f32>)>,
    /// The reference samples, most relevant first.
    pub references: Vec<Reference>,
    /// How many samples they were chosen among.
    pub pool: usize,
    /// Where the ranking came from (`lrp concepts` folder, or computed here).
    pub source: String,
    /// Whether a skip connection goes around the layer (the conditional heatmaps then hold that part too).
    pub bypassed: bool,
}

impl ConceptView {
    /// The channel's share of the absolute relevance at its layer.
    pub fn share(&self) -> f32 {
        let total: f32 = self.relevance.iter().map(|v| v.abs()).sum();
        if total > 0.0 {
            self.relevance[self.channel] / total
        } else {
            0.0
        }
    }

    /// The lower channel that feeds this one most, if there is a layer below.
    pub fn top_below(&self) -> Option<usize> {
        self.below.as_ref().and_then(|(_, v)| ranked(v).first().copied())
    }
}

pub use lrp_rules::concepts::ranked;

/// The normalized concept relevance of the reference pool (`[samples, channels]`, the first samples of the
/// dataset) and where it came from, by model, rule and layer (computed once each).
pub type ReferenceCache = HashMap<(usize, String, usize), (Array2<f32>, String)>;

/// RelMax computed before, by `lrp concepts` over the first samples of the dataset the viewer shows.
#[derive(Clone, Debug)]
pub struct Precomputed {
    /// The model (its place in the viewer's list).
    pub model: usize,
    /// The rule spec, canonical.
    pub rule: String,
    /// `#N`.
    pub layer: usize,
    /// `[samples, channels]`: each sample's concept relevance divided by the sum of its absolute values.
    pub normalized: Array2<f32>,
    /// Where it came from (shown on the screen).
    pub source: String,
}

/// What [`concept_view`] reads.
pub struct ConceptInputs<'a> {
    /// The network.
    pub net: &'a Network,
    /// The explainer of the rule shown.
    pub explainer: &'a Explainer<'a>,
    /// The current input, a batch of one.
    pub x: &'a ArrayD<f32>,
    /// The explained class.
    pub target: &'a Target,
    /// The dataset's inputs shaped for the network, `[pool, …]`: the first samples, for reference samples.
    pub pool: &'a dyn Fn(std::ops::Range<usize>) -> Result<ArrayD<f32>, String>,
    /// How many samples the dataset has.
    pub count: usize,
    /// The dataset's labels (empty: each sample is explained for its prediction).
    pub labels: &'a [u8],
}

/// The concept screen's data for `key` on the input `inp.x`; `cache_key` names the pool's RelMax in `cache`.
pub fn concept_view(
    inp: &ConceptInputs,
    key: ConceptKey,
    cache: &mut ReferenceCache,
    cache_key: (usize, String),
) -> Result<ConceptView, String> {
    let e = |e: lrp_rules::RulesError| e.to_string();
    let layer = ConceptLayer::of(inp.net, key.layer).map_err(e)?;
    let ex = inp.explainer;
    let plain = ex
        .explain_concepts(inp.x.view(), inp.target, &[], &[key.layer])
        .map_err(e)?;
    let relevance: Vec<f32> = plain.relevance[0].row(0).to_vec();
    let order = ranked(&relevance);
    let channel = match key.pick {
        Pick::Rank(r) => order[r.min(order.len() - 1)],
        Pick::Channel(c) if c < layer.channels => c,
        Pick::Channel(c) => {
            return Err(format!(
                "#{} has {} channels; there is no channel {c}",
                key.layer, layer.channels
            ));
        }
    };
    let rank = order
        .iter()
        .position(|&c| c == channel)
        .expect("every channel is ranked");
    let below = key
        .layer
        .checked_sub(1)
        .filter(|&b| ConceptLayer::of(inp.net, b).is_ok());
    let cond = Condition {
        layer: key.layer,
        channels: Channels::Same(vec![channel]),
    };
    let record: Vec<usize> = below.into_iter().collect();
    let c = ex
        .explain_concepts(inp.x.view(), inp.target, std::slice::from_ref(&cond), &record)
        .map_err(e)?;
    let below = below.map(|b| (b, c.relevance[0].row(0).to_vec()));
    let heatmap = to_map(c.explanation.relevance.index_axis(Axis(0), 0));
    let cache_key = (cache_key.0, cache_key.1, key.layer);
    if !cache.contains_key(&cache_key) {
        let pool = inp.count.min(REFERENCE_POOL);
        let source = format!("computed over the first {pool} samples");
        cache.insert(cache_key.clone(), (relmax(inp, key.layer, pool)?, source));
    }
    let (norm, source) = &cache[&cache_key];
    if norm.ncols() != layer.channels || norm.nrows() > inp.count {
        return Err(format!(
            "the reference ranking ({source}) is {:?}; #{} has {} channels and the dataset {} samples",
            norm.shape(),
            key.layer,
            layer.channels,
            inp.count
        ));
    }
    let pool = norm.nrows();
    let column = norm.column(channel).to_owned().insert_axis(Axis(1));
    let best: Vec<usize> = top_samples(&column, REFERENCES).iter().map(|&i| i as usize).collect();
    let references = reference_heatmaps(inp, &best, channel, key.layer)?
        .into_iter()
        .zip(&best)
        .map(|((image, heatmap), &index)| Reference {
            index,
            value: norm[[index, channel]],
            image,
            heatmap,
        })
        .collect();
    Ok(ConceptView {
        layer: key.layer,
        kind: inp.net.layers()[layer.node].kind().name().to_string(),
        channel,
        rank,
        relevance,
        heatmap,
        below,
        references,
        pool,
        source: source.clone(),
        bypassed: layer.bypassed(inp.net),
    })
}

/// The targets of dataset samples `idx`: their labels, or their predictions without labels.
fn targets_of(inp: &ConceptInputs, idx: &[usize]) -> Target {
    if inp.labels.len() >= inp.count && !inp.labels.is_empty() {
        Target::PerSample(idx.iter().map(|&i| inp.labels[i] as usize).collect())
    } else {
        Target::Predicted
    }
}

/// RelMax over the first `pool` samples: each explained for its label, the concept relevance at `#layer`
/// normalized per sample.
fn relmax(inp: &ConceptInputs, layer: usize, pool: usize) -> Result<Array2<f32>, String> {
    let x = (inp.pool)(0..pool)?;
    let idx: Vec<usize> = (0..pool).collect();
    let c = inp
        .explainer
        .explain_concepts(x.view(), &targets_of(inp, &idx), &[], &[layer])
        .map_err(|e| e.to_string())?;
    Ok(normalized(&c.relevance[0]))
}

/// An image and its heatmap.
type Pair = (Array2<f32>, Array2<f32>);

/// Each reference sample's image and conditional heatmap for `channel` of `#layer`.
fn reference_heatmaps(inp: &ConceptInputs, best: &[usize], channel: usize, layer: usize) -> Result<Vec<Pair>, String> {
    if best.is_empty() {
        return Ok(Vec::new());
    }
    let parts = best
        .iter()
        .map(|&i| (inp.pool)(i..i + 1))
        .collect::<Result<Vec<_>, _>>()?;
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    let x = ndarray::concatenate(Axis(0), &views).map_err(|e| e.to_string())?;
    let cond = Condition {
        layer,
        channels: Channels::Same(vec![channel]),
    };
    let c = inp
        .explainer
        .explain_concepts(x.view(), &targets_of(inp, best), &[cond], &[])
        .map_err(|e| e.to_string())?;
    Ok(x.outer_iter()
        .zip(c.explanation.relevance.outer_iter())
        .map(|(img, rel)| (to_map(img), to_map(rel)))
        .collect())
}
