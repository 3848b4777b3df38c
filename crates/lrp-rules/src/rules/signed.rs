//! z⁺ (Montavon et al. 2017, Deep Taylor: α1β0 with bias b⁺) and LRP-αβ (Bach et al. 2015, eq. 60, α − β = 1):
//! `za = W⁺x⁺ + W⁻x⁻ + b⁺`, `zb = W⁻x⁺ + W⁺x⁻ + b⁻`; `α·(x⁺⊙W⁺ᵀsa + x⁻⊙W⁻ᵀsa) − β·(x⁺⊙W⁻ᵀsb + x⁻⊙W⁺ᵀsb)`.

use ndarray::ArrayD;

use super::Rule;
use crate::linear::LinearMap;
use crate::numerics::{STABILIZER, by_sign, divide, non_negative, split_signs};

/// `(α, β)` of a rule prepared with signed maps (z⁺ is α = 1, β = 0).
pub(crate) fn weights(rule: Rule) -> (f32, f32) {
    match rule {
        Rule::AlphaBeta(a, b) => (a, b),
        _ => (1.0, 0.0),
    }
}

/// Relevance form; `pos`/`neg` are `W⁺, b⁺` and `W⁻, b⁻`.
pub(crate) fn relevance(
    pos: &LinearMap,
    neg: &LinearMap,
    (alpha, beta): (f32, f32),
    x: &ArrayD<f32>,
    r: &ArrayD<f32>,
) -> ArrayD<f32> {
    let shape = x.shape();
    if non_negative(x) {
        let sa = divide(r, &pos.forward(x.view(), true), STABILIZER);
        let mut out = pos.transpose(sa.view(), shape) * x;
        if alpha != 1.0 {
            out *= alpha;
        }
        if beta != 0.0 {
            let sb = divide(r, &neg.forward(x.view(), true), STABILIZER);
            out = out - neg.transpose(sb.view(), shape) * x * beta;
        }
        return out;
    }
    let (xp, xn) = split_signs(x);
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

/// Gradient form: the same shares, the gradient at `x` taken from the positive or negative terms by the sign of
/// `x`.
pub(crate) fn gradient(
    pos: &LinearMap,
    neg: &LinearMap,
    (alpha, beta): (f32, f32),
    x: &ArrayD<f32>,
    z: &ArrayD<f32>,
    g: &ArrayD<f32>,
) -> ArrayD<f32> {
    let shape = x.shape();
    let r = z * g;
    let (xp, xn) = split_signs(x);
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
    by_sign(x, gp, &gn)
}
