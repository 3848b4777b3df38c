//! LRP-γ (Montavon et al. 2019, sec. 10.2.3): favours positive contributions by `P = W + γW⁺` (and `N = W + γW⁻`
//! for outputs below zero); see `LRP-RULES.md` for the exact form.

use lrp_core::simd::stabilised as stab;
use ndarray::{ArrayD, Zip};

use crate::linear::LinearMap;
use crate::numerics::{STABILIZER, by_sign, divide_masked, non_negative, split_signs};
use crate::plan::GammaPlus;

/// Relevance form. `both` is `P` and `N` stacked (one product for two), `plus` what computes `z⁺`, `z⁻` from one
/// product `W⁺x` and the trace's `z`, where the layer allows it.
pub(crate) fn relevance(
    pm: &LinearMap,
    nm: &LinearMap,
    both: &Option<LinearMap>,
    plus: &Option<GammaPlus>,
    x: &ArrayD<f32>,
    z: &ArrayD<f32>,
    r: &ArrayD<f32>,
) -> ArrayD<f32> {
    let shape = x.shape();
    if non_negative(x) {
        if let (Some(both), Some(plus)) = (both, plus) {
            // z⁺ and z⁻ from one product W⁺x and the trace's z; one transposed product over [s⁺; s⁻].
            let pp = plus.w_pos.forward(x.view(), false);
            if !relevance_where_negative(r, z) {
                // No relevance reaches an output with z < 0 (a ReLU and max pooling follow: they pass none there),
                // so s⁻ is all zeros and the transposed product needs only P = W + γW⁺: half the work, the same
                // values (the stacked product's other half adds exact zeros).
                let s = gamma_shares(r, &pp, z, plus, false);
                return pm.transpose(s.view(), shape) * x;
            }
            let s = gamma_shares(r, &pp, z, plus, true);
            return both.transpose(s.view(), shape) * x;
        }
        let sp = divide_masked(r, &pm.forward(x.view(), true), z, true);
        let sn = divide_masked(r, &nm.forward(x.view(), true), z, false);
        return (pm.transpose(sp.view(), shape) + nm.transpose(sn.view(), shape)) * x;
    }
    let (xp, xn) = split_signs(x);
    let zp = pm.forward(xp.view(), true) + nm.forward(xn.view(), false);
    let zn = nm.forward(xp.view(), true) + pm.forward(xn.view(), false);
    let sp = divide_masked(r, &zp, z, true);
    let sn = divide_masked(r, &zn, z, false);
    (pm.transpose(sp.view(), shape) + nm.transpose(sn.view(), shape)) * &xp
        + (nm.transpose(sp.view(), shape) + pm.transpose(sn.view(), shape)) * &xn
}

/// Gradient form.
pub(crate) fn gradient(
    pm: &LinearMap,
    nm: &LinearMap,
    x: &ArrayD<f32>,
    z: &ArrayD<f32>,
    g: &ArrayD<f32>,
) -> ArrayD<f32> {
    let shape = x.shape();
    let r = z * g;
    let (xp, xn) = split_signs(x);
    let zp = pm.forward(xp.view(), true) + nm.forward(xn.view(), false);
    let zn = nm.forward(xp.view(), true) + pm.forward(xn.view(), false);
    let sp = divide_masked(&r, &zp, z, true);
    let sn = divide_masked(&r, &zn, z, false);
    let gp = pm.transpose(sp.view(), shape) + nm.transpose(sn.view(), shape);
    let gn = nm.transpose(sp.view(), shape) + pm.transpose(sn.view(), shape);
    by_sign(x, gp, &gn)
}

/// The γ rule's shares `r·[z>0]/z⁺` and, with `negative`, `r·[z<0]/z⁻` stacked after them along axis 1 (the layout
/// of the stacked map's output), where `z⁺ = z + γ(P + b⁺)` and `z⁻ = z + γ((z − b) − P + b⁻)` from `P = W⁺x`: one
/// pass, no temporaries. Without `negative` the result has `r`'s shape (for `W + γW⁺` alone).
pub(crate) fn gamma_shares(
    r: &ArrayD<f32>,
    pp: &ArrayD<f32>,
    z: &ArrayD<f32>,
    plus: &GammaPlus,
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

/// Whether any output with `z < 0` carries relevance (the γ rule's negative branch has work to do).
pub(crate) fn relevance_where_negative(r: &ArrayD<f32>, z: &ArrayD<f32>) -> bool {
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

#[cfg(test)]
mod gamma_paths {
    use super::*;
    use crate::linear::Modifier;
    use crate::plan::GammaPlus;
    use ndarray::IxDyn;
    use rand::Rng;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Where no relevance reaches an output with z < 0, the γ rule's half-size transposed product gives the same
    /// bits as the stacked one (whose other half only adds exact zeros).
    #[test]
    fn the_positive_only_path_is_the_stacked_path_bit_for_bit() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut r = |shape: &[usize]| ArrayD::from_shape_fn(IxDyn(shape), |_| rng.random_range(-1.0f32..1.0));
        let w = r(&[8, 3, 3, 3]).into_dimensionality::<ndarray::Ix4>().unwrap();
        let conv = lrp_core::Conv2d::new(w, Some(ndarray::Array1::from(vec![0.1; 8])), [1, 1], [1; 4]);
        let layer = lrp_core::Layer::Conv2d(conv);
        let map = crate::linear::LinearMap::of(&layer).unwrap();
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
