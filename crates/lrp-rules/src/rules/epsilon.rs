//! LRP-ε (Bach et al. 2015, eq. 58): `x ⊙ Wᵀ(R / stab(Wx + b, ε))`; ε = 0 is LRP-0.

use lrp_core::simd::stabilised as stab;
use ndarray::{ArrayD, Zip};

use crate::linear::LinearMap;
use crate::numerics::{divide_owned, times_owned};

/// Relevance form: `r` is this call's own, divided in place.
pub(crate) fn relevance(w: &LinearMap, e: f32, x: &ArrayD<f32>, z: &ArrayD<f32>, r: ArrayD<f32>) -> ArrayD<f32> {
    times_owned(w.transpose(divide_owned(r, z, e).view(), x.shape()), x)
}

/// Gradient form: `Wᵀ(ĝ ⊙ z/stab(z, ε))`, a factor in [0, 1); LRP-0 is the plain transposed map.
pub(crate) fn gradient(w: &LinearMap, e: f32, x: &ArrayD<f32>, z: &ArrayD<f32>, g: &ArrayD<f32>) -> ArrayD<f32> {
    if e == 0.0 {
        return w.transpose(g.view(), x.shape());
    }
    let mut s = g.clone();
    Zip::from(&mut s).and(z).for_each(|s, &z| *s *= z / stab(z, e));
    w.transpose(s.view(), x.shape())
}
