//! z^B (Montavon et al. 2017, Deep Taylor for inputs bounded in `[low, high]`): `z = Wx − W⁺low − W⁻high`,
//! `s = R/stab(z)`, `x⊙Wᵀs − low⊙W⁺ᵀs − high⊙W⁻ᵀs`. Its result is not `x ⊙ (something)`, so the gradient form
//! takes it as relevance directly (on a layer that reads the network input).

use ndarray::ArrayD;

use crate::numerics::{STABILIZER, divide};
use crate::plan::Maps;

/// Relevance form; `maps` is [`Maps::ZBox`].
pub(crate) fn relevance(maps: &Maps, x: &ArrayD<f32>, z: &ArrayD<f32>, r: &ArrayD<f32>) -> ArrayD<f32> {
    let Maps::ZBox {
        w,
        pos,
        neg,
        low,
        high,
        pos_low,
        neg_high,
        bias,
    } = maps
    else {
        unreachable!("z^B is prepared with its own maps")
    };
    let shape = x.shape();
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
