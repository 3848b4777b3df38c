//! w² (Montavon et al. 2017) and flat (Lapuschkin et al. 2019): relevance spread by squared weights, or evenly
//! over each receptive field, independent of the input: `(M)ᵀ(R / stab(M·1))` with `M = W²` or all ones, bias
//! ignored. Not `x ⊙ (something)`, so the gradient form takes it as relevance directly.

use ndarray::ArrayD;

use crate::linear::LinearMap;
use crate::numerics::{STABILIZER, divide};

/// Relevance form; `denom` is `M·1` for one sample (broadcast over the batch).
pub(crate) fn relevance(map: &LinearMap, denom: &ArrayD<f32>, x: &ArrayD<f32>, r: &ArrayD<f32>) -> ArrayD<f32> {
    let s = divide(r, denom, STABILIZER);
    map.transpose(s.view(), x.shape())
}
