//! Faithfulness by region perturbation (Samek et al. 2017, "Evaluating the visualization of what a deep neural
//! network has learned"): remove the most relevant regions first and watch the explained logit fall; the area
//! over the perturbation curve (AOPC) is larger for explanations that find what the network uses.

use lrp_core::Network;
use ndarray::{ArrayD, ArrayViewD, Axis, Ix2};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::error::{Result, RulesError};

/// Non-overlapping square regions over the last two axes of a sample (all leading axes, e.g. channels, together).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Regions {
    /// Side of a region in pixels (the last row and column of regions may be smaller).
    pub size: usize,
    rows: usize,
    cols: usize,
}

impl Regions {
    /// Regions of `size × size` for samples of `sample_shape` (at least two axes).
    pub fn new(sample_shape: &[usize], size: usize) -> Result<Regions> {
        if sample_shape.len() < 2 || size == 0 {
            return Err(RulesError::Perturbation(format!(
                "needs samples with two spatial axes and a region size of at least 1 pixel; got samples \
                 {sample_shape:?}, region size {size}"
            )));
        }
        let (h, w) = (
            sample_shape[sample_shape.len() - 2],
            sample_shape[sample_shape.len() - 1],
        );
        Ok(Regions { size, rows: h, cols: w })
    }

    /// Number of regions.
    pub fn count(&self) -> usize {
        self.rows.div_ceil(self.size) * self.cols.div_ceil(self.size)
    }

    fn bounds(&self, r: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let per_row = self.cols.div_ceil(self.size);
        let (ry, rx) = (r / per_row, r % per_row);
        let y = ry * self.size..((ry + 1) * self.size).min(self.rows);
        let x = rx * self.size..((rx + 1) * self.size).min(self.cols);
        (y, x)
    }

    /// Regions ordered by their summed relevance, most relevant first (ties: lower index first).
    pub fn most_relevant_first(&self, relevance: ArrayViewD<f32>) -> Vec<usize> {
        let map = collapse(relevance);
        let mut scored: Vec<(usize, f32)> = (0..self.count())
            .map(|r| {
                let (y, x) = self.bounds(r);
                (r, map.slice_axis(Axis(0), y.into()).slice_axis(Axis(1), x.into()).sum())
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.into_iter().map(|(r, _)| r).collect()
    }

    /// A random order, reproducible from `seed`.
    pub fn random(&self, seed: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.count()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        order
    }

    /// Sets region `r` of a sample (standard layout) to `value` on every leading axis.
    fn fill(&self, sample: &mut ArrayD<f32>, r: usize, value: f32) {
        let (y, x) = self.bounds(r);
        let lead = sample.len() / (self.rows * self.cols);
        let mut v = sample
            .view_mut()
            .into_shape_with_order((lead, self.rows, self.cols))
            .expect("samples are in standard layout");
        v.slice_axis_mut(Axis(1), y.into())
            .slice_axis_mut(Axis(2), x.into())
            .fill(value);
    }
}

/// Sums every axis but the last two.
fn collapse(a: ArrayViewD<f32>) -> ndarray::Array2<f32> {
    let nd = a.ndim();
    let (h, w) = (a.shape()[nd - 2], a.shape()[nd - 1]);
    let flat = a.to_shape((a.len() / (h * w), h, w)).expect("row-major reshape");
    flat.sum_axis(Axis(0)).into_dimensionality::<Ix2>().expect("2-D")
}

/// The explained logit after removing 0, 1, …, `steps` regions in `order` (replaced by `baseline`).
///
/// # Shapes
/// `sample`: one input (no batch axis) → `steps + 1` values.
pub fn perturbation_curve(
    net: &Network,
    sample: ArrayViewD<f32>,
    target: usize,
    regions: &Regions,
    order: &[usize],
    steps: usize,
    baseline: f32,
) -> Result<Vec<f32>> {
    let steps = steps.min(order.len());
    let mut shape = vec![steps + 1];
    shape.extend_from_slice(sample.shape());
    let mut stack = ArrayD::<f32>::zeros(ndarray::IxDyn(&shape));
    let mut current = sample.to_owned();
    stack.index_axis_mut(Axis(0), 0).assign(&current);
    for (k, &r) in order.iter().take(steps).enumerate() {
        regions.fill(&mut current, r, baseline);
        stack.index_axis_mut(Axis(0), k + 1).assign(&current);
    }
    let logits = net.forward(stack.view())?;
    if let Some((step, element, value)) = lrp_core::first_non_finite(&logits.view()) {
        return Err(RulesError::NonFinite {
            what: "logits (perturbation step)",
            sample: step,
            element,
            value,
        });
    }
    let logits = logits
        .into_dimensionality::<Ix2>()
        .map_err(|_| RulesError::Target("logits are not [N, K]".into()))?;
    Ok(logits.column(target).to_vec())
}

/// Area over the perturbation curve: the mean of `f(x₀) − f(x_k)` over `k = 0 … steps`.
pub fn aopc(curve: &[f32]) -> f32 {
    let Some(&f0) = curve.first() else { return 0.0 };
    curve.iter().map(|&f| f0 - f).sum::<f32>() / curve.len() as f32
}
