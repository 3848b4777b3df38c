//! Grouped convolution (RegNet's and ResNeXt's: each group of `og` output channels reads its own `cg` input
//! channels, `cg > 1`) computed group by group on the depthwise path's padded phases, without im2col. Through
//! im2col and GEMM each group is a product of `og` rows (8 on RegNet-Y-400MF) by a depth of `cg·kh·kw` (72): the
//! unfolding runs on one thread and the product is too thin for the GEMM kernel's tiles, a quarter of the rate of
//! the network's dense stem.
//!
//! The bits are GEMM's, for a depth of at most [`MAX_DEPTH`] (one of the GEMM's blocks of `k`):
//! - forward, each output is a chain of fused multiply-adds from zero over its group's `(ci, ky, kx)` in that order
//!   (im2col's row order), padding taps multiplying zeros; the bias is added after;
//! - transposed, each column value of `Wᵀ s` is a chain of fused multiply-adds from zero over the group's output
//!   channels, and col2im adds those values to each input gradient in `(ky, kx)` order from zero. Here each input
//!   gradient is the same: its residue class's taps in `(ky, kx)` order, each the chain over the output channels.

use super::depthwise::{self, Classes, Phases, PlaneTaps};
use super::{with_scratch, zero};

/// The deepest sum taken here: GEMM sums a depth of up to 256 (its block of `k`) as one chain; beyond, it adds the
/// blocks' sums, which this path does not.
pub(crate) const MAX_DEPTH: usize = 256;

/// A grouped convolution's weights and geometry: `weights` `[O, cg, kh, kw]`, `og` output channels a group.
#[derive(Clone, Copy)]
pub(crate) struct Groups<'a> {
    pub weights: &'a [f32],
    pub cg: usize,
    pub og: usize,
    pub t: PlaneTaps,
    /// The forward sums in 512-bit registers (see [`depthwise::sum_taps`]).
    pub wide: bool,
}

/// `out[j] = ` for each `j`, over the taps in chunks of `inner`: the chain of fused multiply-adds from zero over the
/// chunk's `w · src[j]`, the chunks' chains added from zero. Blocks of 16, a last partial block computed again as the
/// full block ending at the run's end (the same values).
#[inline(always)]
fn sum_nested(taps: &[(f32, &[f32])], inner: usize, out: &mut [f32]) {
    let len = out.len();
    if len >= 16 {
        for c in (0..=len - 16).step_by(16) {
            nested_block(taps, inner, c, out);
        }
        if !len.is_multiple_of(16) {
            nested_block(taps, inner, len - 16, out);
        }
    } else {
        for (j, o) in out.iter_mut().enumerate() {
            let mut a = 0f32;
            for chunk in taps.chunks_exact(inner) {
                let mut s = 0f32;
                for &(w, src) in chunk {
                    s = w.mul_add(src[j], s);
                }
                a += s;
            }
            *o = a;
        }
    }
}

/// Outputs `c..c + 16` of [`sum_nested`]. (A function, so that it is compiled with its caller's target features.)
#[inline(always)]
fn nested_block(taps: &[(f32, &[f32])], inner: usize, c: usize, out: &mut [f32]) {
    let mut acc = [0f32; 16];
    for chunk in taps.chunks_exact(inner) {
        let mut s = [0f32; 16];
        for &(w, src) in chunk {
            let src: &[f32; 16] = src[c..c + 16].try_into().expect("a block");
            for i in 0..16 {
                s[i] = w.mul_add(src[i], s[i]);
            }
        }
        for i in 0..16 {
            acc[i] += s[i];
        }
    }
    out[c..c + 16].copy_from_slice(&acc);
}

/// One group's output planes `out` (`og × oh × ow`) of its input planes `x` (`cg × h × w`); `first` is the group's
/// first output channel.
#[inline(always)]
fn forward_body(
    g: Groups,
    x: &[f32],
    (h, w): (usize, usize),
    (first, bias): (usize, Option<&[f32]>),
    out: &mut [f32],
    (oh, ow): (usize, usize),
    scratch: &mut Vec<f32>,
) {
    let Groups {
        weights, cg, t, wide, ..
    } = g;
    let [kh, kw] = t.kernel;
    let k = kh * kw;
    let Phases { pw, hq, run, len, row } = Phases::of(t, (oh, ow));
    if scratch.len() < cg * len + run + row {
        scratch.resize(cg * len + run + row, 0.0);
    }
    let (phases, rest) = scratch.split_at_mut(cg * len);
    let (ext, padded) = rest.split_at_mut(run);
    for (ci, ph) in phases.chunks_exact_mut(len).enumerate() {
        depthwise::fill_phases(&x[ci * h * w..][..h * w], (h, w), t, (hq, pw), ph, &mut padded[..row]);
    }
    let phases = &*phases;
    let mut taps: Vec<(f32, &[f32])> = Vec::with_capacity(cg * k);
    for (o, dst) in out.chunks_exact_mut(oh * ow).enumerate() {
        let oc = first + o;
        taps.clear();
        for ci in 0..cg {
            for ky in 0..kh {
                for kx in 0..kw {
                    let start = ci * len + depthwise::tap_start(t, (ky, kx), (hq, pw));
                    taps.push((weights[(oc * cg + ci) * k + ky * kw + kx], &phases[start..][..run]));
                }
            }
        }
        depthwise::sum_taps::<true>(&taps, ext, wide);
        for (orow, erow) in dst.chunks_exact_mut(ow).zip(ext.chunks(pw)) {
            match bias {
                Some(b) => orow.iter_mut().zip(erow).for_each(|(o, &e)| *o = e + b[oc]),
                None => orow.copy_from_slice(&erow[..ow]),
            }
        }
    }
}

/// One group's input-gradient planes `out` (`cg × h × w`) of its output-gradient planes `s` (`og × oh × ow`); `first`
/// is the group's first output channel.
#[inline(always)]
fn transpose_body(
    g: Groups,
    s: &[f32],
    (oh, ow): (usize, usize),
    first: usize,
    out: &mut [f32],
    (h, w): (usize, usize),
    scratch: &mut Vec<f32>,
) {
    let Groups { weights, cg, og, t, .. } = g;
    let ([kh, kw], [sh, sw], [pt, pl]) = (t.kernel, t.stride, t.pad);
    let k = kh * kw;
    let c = Classes::of(t, (h, w), (oh, ow));
    let plane = c.sph * c.spw;
    if scratch.len() < og * plane + sw * c.run {
        scratch.resize(og * plane + sw * c.run, 0.0);
    }
    let (sp, ext) = scratch.split_at_mut(og * plane);
    let ext = &mut ext[..sw * c.run];
    for (o, dst) in sp.chunks_exact_mut(plane).enumerate() {
        depthwise::pad_gradient(&s[o * oh * ow..][..oh * ow], (oh, ow), (c.qy_max, c.qx_max), c.spw, dst);
    }
    let sp = &*sp;
    let mut taps: Vec<(f32, &[f32])> = Vec::with_capacity(og * k);
    for (ci, dst) in out.chunks_exact_mut(h * w).enumerate() {
        for ry in 0..sh.min(h + pt) {
            for rx in 0..sw.min(w + pl) {
                taps.clear();
                for ((ky, kx), (qy, qx)) in depthwise::class_taps(t, (ry, rx)) {
                    let start = (c.qy_max - qy) * c.spw + (c.qx_max - qx);
                    for o in 0..og {
                        let wt = weights[((first + o) * cg + ci) * k + ky * kw + kx];
                        taps.push((wt, &sp[o * plane + start..][..c.run]));
                    }
                }
                let run = &mut ext[rx * c.run..(rx + 1) * c.run];
                if taps.is_empty() {
                    zero(run);
                } else {
                    sum_nested(&taps, og, run);
                }
            }
            // SAFETY: deal writes only f32 values.
            depthwise::deal(
                ext,
                (ry, c.run, c.spw),
                (c.at, c.bt),
                t,
                unsafe { super::overwrite(dst) },
                w,
            );
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn forward_fma(
    g: Groups,
    x: &[f32],
    hw: (usize, usize),
    fb: (usize, Option<&[f32]>),
    out: &mut [f32],
    ohw: (usize, usize),
    scratch: &mut Vec<f32>,
) {
    forward_body(g, x, hw, fb, out, ohw, scratch)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn transpose_fma(
    g: Groups,
    s: &[f32],
    ohw: (usize, usize),
    first: usize,
    out: &mut [f32],
    hw: (usize, usize),
    scratch: &mut Vec<f32>,
) {
    transpose_body(g, s, ohw, first, out, hw, scratch)
}

/// Grouped forward: `x` is `[N, C, H, W]` and `out` `[N, O, OH, OW]` (standard layout).
pub(crate) fn forward(
    g: Groups,
    x: &[f32],
    (c, h, w): (usize, usize, usize),
    bias: Option<&[f32]>,
    out: &mut [f32],
    (o, oh, ow): (usize, usize, usize),
) {
    let groups = o / g.og;
    assert!(groups * g.cg == c && groups * g.og == o && g.weights.len() == o * g.cg * g.t.kernel[0] * g.t.kernel[1]);
    assert!(g.cg * g.t.kernel[0] * g.t.kernel[1] <= MAX_DEPTH && bias.is_none_or(|b| b.len() == o));
    let macs = g.og * oh * ow * g.cg * g.t.kernel[0] * g.t.kernel[1];
    depthwise::each_plane(out, g.og * oh * ow, macs, |(i, dst)| {
        let (j, gi) = (i / groups, i % groups);
        let src = &x[(j * c + gi * g.cg) * h * w..][..g.cg * h * w];
        with_scratch(|scratch| {
            #[cfg(target_arch = "x86_64")]
            if depthwise::available() {
                // SAFETY: the processor has AVX2 and FMA (checked just above).
                return unsafe { forward_fma(g, src, (h, w), (gi * g.og, bias), dst, (oh, ow), scratch) };
            }
            forward_body(g, src, (h, w), (gi * g.og, bias), dst, (oh, ow), scratch)
        });
    });
}

/// Grouped transposed: `s` is `[N, O, OH, OW]` and `out` `[N, C, H, W]`.
pub(crate) fn transpose(
    g: Groups,
    s: &[f32],
    (o, oh, ow): (usize, usize, usize),
    out: &mut [f32],
    (c, h, w): (usize, usize, usize),
) {
    let groups = o / g.og;
    assert!(groups * g.cg == c && groups * g.og == o && g.weights.len() == o * g.cg * g.t.kernel[0] * g.t.kernel[1]);
    assert!(g.og <= MAX_DEPTH);
    let macs = g.og * oh * ow * g.cg * g.t.kernel[0] * g.t.kernel[1];
    depthwise::each_plane(out, g.cg * h * w, macs, |(i, dst)| {
        let (j, gi) = (i / groups, i % groups);
        let src = &s[(j * o + gi * g.og) * oh * ow..][..g.og * oh * ow];
        with_scratch(|scratch| {
            #[cfg(target_arch = "x86_64")]
            if depthwise::available() {
                // SAFETY: the processor has AVX2 and FMA (checked just above).
                return unsafe { transpose_fma(g, src, (oh, ow), gi * g.og, dst, (h, w), scratch) };
            }
            transpose_body(g, src, (oh, ow), gi * g.og, dst, (h, w), scratch)
        });
    });
}
