//! Depthwise convolution on small planes, [`L`] planes side by side. MobileNet's and EfficientNet's late planes are
//! 7×7 and 14×14 on hundreds of channels: plane by plane, the copies and sums of a plane are runs of a few values,
//! and the fixed cost of each plane (its scratch, its padded rows, its taps) is several times its 441 multiply-adds.
//! Here the planes of a group of [`L`] channels are interleaved (value `(y, x)` of the group's planes at
//! `(y·wp + x)·L`, one vector), so every output position is one vector of [`L`] sums, whatever the plane's size,
//! stride or padding.
//!
//! Each sum is the one of the plane-by-plane path (and of im2col + GEMM): forward, fused multiply-adds from zero over
//! the taps in `(ky, kx)` order, padding taps multiplying zeros; transposed, the rounded products `w·s` of the taps of
//! its residue class in `(ky, kx)` order, added from zero.

use super::depthwise::{Classes, MAX_SIDE, PlaneTaps, class_taps, step};
use super::zero;
use rayon::prelude::*;

/// Planes side by side: two AVX2 vectors. (Compiled for AVX-512 the path ran 10–25% slower on this machine: the
/// interleaving, value by value, is most of its time.)
pub(super) const L: usize = 16;

/// The largest plane (output values forward, input values transposed) taken side by side. On larger planes the
/// plane-by-plane path's runs are long, and it does not pay for the interleaving.
pub(super) const SMALL: usize = 20 * 20;

/// One group of planes: the planes' size `hw` (`H × W`), the kernels `weights` (`kh·kw` values an output channel),
/// the taps, and the group's first output channel.
#[derive(Clone, Copy)]
pub(super) struct Group<'a> {
    pub hw: (usize, usize),
    pub weights: &'a [f32],
    pub t: PlaneTaps,
    pub first: usize,
}

/// The forward pass's input: the sample's input planes `x` (`C × H × W`), output channel `o` reading input channel
/// `o / per`, and the bias.
#[derive(Clone, Copy)]
pub(super) struct Input<'a> {
    pub x: &'a [f32],
    pub per: usize,
    pub bias: Option<&'a [f32]>,
}

/// `[f32; L]` sums of the taps `(w, offset)` from zero by [`step`], reading `src[base + offset..][..L]`.
#[inline(always)]
fn lanes_sum<const FUSED: bool>(taps: &[([f32; L], usize)], src: &[f32], base: usize) -> [f32; L] {
    let mut acc = [0f32; L];
    for (w, off) in taps {
        let s: &[f32; L] = src[base + off..][..L].try_into().expect("a vector");
        for l in 0..L {
            acc[l] = step::<FUSED>(w[l], s[l], acc[l]);
        }
    }
    acc
}

/// The kernel's tap `t` of the group's `lanes` channels, zero past them.
#[inline(always)]
fn tap_lanes(weights: &[f32], k: usize, first: usize, lanes: usize, t: usize) -> [f32; L] {
    std::array::from_fn(|l| if l < lanes { weights[(first + l) * k + t] } else { 0.0 })
}

/// The group's output planes `out` (`lanes × oh × ow`).
#[inline(always)]
pub(super) fn forward_body(g: Group, input: Input, out: &mut [f32], (oh, ow): (usize, usize), scratch: &mut Vec<f32>) {
    let Group {
        hw: (h, w),
        weights,
        t,
        first,
    } = g;
    let Input { x, per, bias } = input;
    let ([kh, kw], [sh, sw], [dh, dw], [pt, pl]) = (t.kernel, t.stride, t.dilation, t.pad);
    let ohw = oh * ow;
    let lanes = out.len() / ohw;
    // The padded rows and columns the outputs reach.
    let (hp, wp) = ((oh - 1) * sh + (kh - 1) * dh + 1, (ow - 1) * sw + (kw - 1) * dw + 1);
    if scratch.len() < hp * wp * L {
        scratch.resize(hp * wp * L, 0.0);
    }
    let xp = &mut scratch[..hp * wp * L];
    zero(xp);
    let (rows, cols) = (h.min(hp.saturating_sub(pt)), w.min(wp.saturating_sub(pl)));
    for l in (0..lanes).filter(|_| cols > 0) {
        let plane = &x[(first + l) / per * h * w..][..h * w];
        for iy in 0..rows {
            let dst = &mut xp[((iy + pt) * wp + pl) * L + l..];
            for (ix, &v) in plane[iy * w..][..cols].iter().enumerate() {
                dst[ix * L] = v;
            }
        }
    }
    let k = kh * kw;
    let mut taps = [([0f32; L], 0usize); MAX_SIDE * MAX_SIDE];
    for ky in 0..kh {
        for kx in 0..kw {
            let i = ky * kw + kx;
            taps[i] = (tap_lanes(weights, k, first, lanes, i), (ky * dh * wp + kx * dw) * L);
        }
    }
    let bias = bias.map(|b| &b[first..first + lanes]);
    for oy in 0..oh {
        for ox in 0..ow {
            let acc = lanes_sum::<true>(&taps[..k], xp, (oy * sh * wp + ox * sw) * L);
            let at = oy * ow + ox;
            match bias {
                Some(b) => (0..lanes).for_each(|l| out[l * ohw + at] = acc[l] + b[l]),
                None => (0..lanes).for_each(|l| out[l * ohw + at] = acc[l]),
            }
        }
    }
}

/// The input-gradient planes `out` (`lanes × h × w`) of the group's output-gradient planes `s` (`lanes × oh × ow`),
/// one output channel per input channel; see the plane-by-plane path for the residue classes.
#[inline(always)]
pub(super) fn transpose_body(g: Group, s: &[f32], (oh, ow): (usize, usize), out: &mut [f32], scratch: &mut Vec<f32>) {
    let Group {
        hw: (h, w),
        weights,
        t,
        first,
    } = g;
    let ([kh, kw], [sh, sw], [pt, pl]) = (t.kernel, t.stride, t.pad);
    let (ohw, hw) = (oh * ow, h * w);
    let lanes = out.len() / hw;
    let Classes {
        qy_max,
        qx_max,
        at,
        bt,
        spw,
        sph,
        ..
    } = Classes::of(t, (h, w), (oh, ow));
    if scratch.len() < sph * spw * L {
        scratch.resize(sph * spw * L, 0.0);
    }
    let sp = &mut scratch[..sph * spw * L];
    zero(sp);
    for l in 0..lanes {
        for oy in 0..oh {
            let dst = &mut sp[((oy + qy_max) * spw + qx_max) * L + l..];
            for (ox, &v) in s[l * ohw + oy * ow..][..ow].iter().enumerate() {
                dst[ox * L] = v;
            }
        }
    }
    let k = kh * kw;
    let mut taps = [([0f32; L], 0usize); MAX_SIDE * MAX_SIDE];
    for ry in 0..sh.min(h + pt) {
        for rx in 0..sw.min(w + pl) {
            let mut nt = 0;
            for ((ky, kx), (qy, qx)) in class_taps(t, (ry, rx)) {
                let tap = tap_lanes(weights, k, first, lanes, ky * kw + kx);
                taps[nt] = (tap, ((qy_max - qy) * spw + qx_max - qx) * L);
                nt += 1;
            }
            // Input (ry + sh·a − pt, rx + sw·b − pl), those inside the plane.
            for a in 0..at {
                let Some(iy) = (ry + sh * a).checked_sub(pt).filter(|&iy| iy < h) else {
                    continue;
                };
                for b in 0..bt {
                    let Some(ix) = (rx + sw * b).checked_sub(pl).filter(|&ix| ix < w) else {
                        continue;
                    };
                    let acc = lanes_sum::<false>(&taps[..nt], sp, (a * spw + b) * L);
                    for (l, &v) in acc.iter().enumerate().take(lanes) {
                        out[l * hw + iy * w + ix] = v;
                    }
                }
            }
        }
    }
}

/// Runs `group(j, first, dst)` for every group of up to [`L`] planes `dst` (`plane` values each) of sample `j`
/// (`per_sample` values of `out`), its first channel `first`; side by side on the pool's threads when the planes'
/// multiply-adds (`macs` each) are worth spreading, as the plane-by-plane path decides.
pub(super) fn each_group(
    out: &mut [f32],
    per_sample: usize,
    plane: usize,
    macs: usize,
    group: impl Fn(usize, usize, &mut [f32]) + Sync + Send,
) {
    let planes = out.len() / plane.max(1);
    let size = L * plane;
    if planes > L && super::depthwise::worth_spreading(planes, macs) {
        out.par_chunks_exact_mut(per_sample)
            .enumerate()
            .for_each(|(j, sample)| {
                sample
                    .par_chunks_mut(size)
                    .enumerate()
                    .for_each(|(i, d)| group(j, i * L, d));
            });
    } else {
        for (j, sample) in out.chunks_exact_mut(per_sample).enumerate() {
            for (i, d) in sample.chunks_mut(size).enumerate() {
                group(j, i * L, d);
            }
        }
    }
}
