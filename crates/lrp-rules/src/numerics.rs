//! The arithmetic the rules share: stabilised division, per-sample sums, rows of a value.

use lrp_core::simd::{share_or_zero, stabilised as stab};
use ndarray::{ArrayD, IxDyn, Zip};

/// The stabiliser of every rule but epsilon.
pub const STABILIZER: f32 = 1e-6;

/// Each sample's sum (for conservation tables).
pub(crate) fn per_sample_sums(a: &ArrayD<f32>) -> Vec<f32> {
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
pub(crate) fn divide(r: &ArrayD<f32>, z: &ArrayD<f32>, e: f32) -> ArrayD<f32> {
    divide_owned(r.clone(), z, e)
}

/// [`divide`] in the memory of `r`.
pub(crate) fn divide_owned(r: ArrayD<f32>, z: &ArrayD<f32>, e: f32) -> ArrayD<f32> {
    let mut s = r;
    if s.shape() == z.shape()
        && let (Some(sl), Some(zl)) = (s.as_slice_mut(), z.as_slice())
    {
        lrp_core::par::zip_mut(sl, zl, |s, z| lrp_core::simd::divide_stabilised(s, z, e));
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

/// `a ⊙ b` in the memory of `a` (`b` broadcast to `a`'s shape), split over the threads when both are large and in
/// standard order: the same one product per value as ndarray's `*=`.
pub(crate) fn times_owned(a: ArrayD<f32>, b: &ArrayD<f32>) -> ArrayD<f32> {
    let mut a = a;
    lrp_core::par::zip_with(&mut a, b, |a, b| *a *= b);
    a
}

/// `[N, …, d]` as rows `[N·…, d]` (a dense layer on the last axis of a larger value).
pub(crate) fn to_rows(a: &ArrayD<f32>) -> ArrayD<f32> {
    let d = *a.shape().last().expect("at least one axis");
    a.as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(&[a.len() / d.max(1), d]))
        .expect("same element count")
}

/// `r·[o ⋚ 0] / stab(z)`: the share of outputs whose unmodified value has the given sign.
pub(crate) fn divide_masked(r: &ArrayD<f32>, z: &ArrayD<f32>, o: &ArrayD<f32>, positive: bool) -> ArrayD<f32> {
    let mut s = r.clone();
    Zip::from(&mut s).and(z).and(o).for_each(|s, &z, &o| {
        let keep = if positive { o > 0.0 } else { o < 0.0 };
        *s = if keep { *s / stab(z, STABILIZER) } else { 0.0 };
    });
    s
}

/// `(x⁺, x⁻)`.
pub(crate) fn split_signs(x: &ArrayD<f32>) -> (ArrayD<f32>, ArrayD<f32>) {
    (x.mapv(|v| v.max(0.0)), x.mapv(|v| v.min(0.0)))
}

/// Whether every value is ≥ 0 (after a ReLU, or on [0, 1] images): the rules that split `x` by sign then skip
/// their `x⁻` terms.
pub(crate) fn non_negative(x: &ArrayD<f32>) -> bool {
    match x.as_slice() {
        Some(sl) => sl.iter().all(|&v| v >= 0.0),
        None => x.iter().all(|&v| v >= 0.0),
    }
}

/// `a` where `x > 0`, `b` elsewhere (where `x = 0` the choice does not matter: `R = 0·ĝ`).
pub(crate) fn by_sign(x: &ArrayD<f32>, a: ArrayD<f32>, b: &ArrayD<f32>) -> ArrayD<f32> {
    let mut a = a;
    Zip::from(&mut a).and(x).and(b).for_each(|a, &x, &b| {
        if x <= 0.0 {
            *a = b;
        }
    });
    a
}
