//! Depthwise convolution (one input channel per group: MobileNet, EfficientNet) computed plane by plane, without
//! im2col. Through im2col + GEMM each channel is a product of one row by a matrix of `kh·kw` rows: GEMM packs the
//! whole unfolded plane for a nine-term sum, and runs at a few GFLOP/s where a dense 3×3 convolution of the same
//! network runs at 50–80.
//!
//! The bits are those of im2col + GEMM on the same processor: forward, each output is a chain of fused
//! multiply-adds from zero over its taps in `(ky, kx)` order (matrixmultiply's kernels sum a depth below its block
//! of 256 that way; a tap in the padding adds `0·w`, which changes no value, so it is skipped); transposed, each
//! input gradient adds the rounded products `w·s` of its taps in `(ky, kx)` order, as col2im adds GEMM's one-term
//! products. Tests compare the two paths value for value.
//!
//! The fused multiply-add is an instruction only where the processor has FMA: the layers take this path there
//! ([`available`]); elsewhere they keep to GEMM (a software `fmaf` would be slower than it).

use super::PAR_MIN_MACS;
use rayon::prelude::*;

/// The taps of a convolution on one plane: kernel, stride, padding (top, left) and dilation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PlaneTaps {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub pad: [usize; 2],
    pub dilation: [usize; 2],
}

/// Whether this processor has FMA (x86-64: AVX2 + FMA, runtime-detected), so the depthwise path runs here.
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Output positions `o` (of `n_out`) whose input index `o·stride + k − pad` lies in `0..len`.
#[inline(always)]
fn valid(n_out: usize, stride: usize, k: usize, pad: usize, len: usize) -> std::ops::Range<usize> {
    let lo = if pad > k { (pad - k).div_ceil(stride) } else { 0 };
    let hi = if len + pad > k {
        ((len - 1 + pad - k) / stride + 1).min(n_out)
    } else {
        0
    };
    lo.min(hi)..hi
}

/// `a ← fma(w, x, a)` (forward) or `a ← a + w·x` (transposed: the rounded product, then the sum).
#[inline(always)]
fn step<const FUSED: bool>(w: f32, x: f32, a: f32) -> f32 {
    if FUSED { w.mul_add(x, a) } else { a + w * x }
}

/// Outputs `c..c + B` of [`sum_taps`], their sums in registers across the taps: each output is stored once.
#[inline(always)]
fn block<const FUSED: bool, const B: usize>(taps: &[(f32, &[f32])], c: usize, out: &mut [f32]) {
    let mut acc = [0f32; B];
    for &(w, src) in taps {
        let src: &[f32; B] = src[c..c + B].try_into().expect("a block");
        for i in 0..B {
            acc[i] = step::<FUSED>(w, src[i], acc[i]);
        }
    }
    out[c..c + B].copy_from_slice(&acc);
}

/// `out[j] = ` the chain of [`step`]s from zero over `taps` in order, of `src[j]` of each tap. Blocks of 16 (or 8)
/// outputs; a last partial block is computed again as the full block ending at the row's end (the same values).
#[inline(always)]
fn sum_taps<const FUSED: bool>(taps: &[(f32, &[f32])], out: &mut [f32]) {
    let len = out.len();
    if len >= 16 {
        for c in (0..=len - 16).step_by(16) {
            block::<FUSED, 16>(taps, c, out);
        }
        if !len.is_multiple_of(16) {
            block::<FUSED, 16>(taps, len - 16, out);
        }
    } else if len >= 8 {
        block::<FUSED, 8>(taps, 0, out);
        block::<FUSED, 8>(taps, len - 8, out);
    } else {
        for (j, o) in out.iter_mut().enumerate() {
            let mut a = 0f32;
            for &(w, src) in taps {
                a = step::<FUSED>(w, src[j], a);
            }
            *o = a;
        }
    }
}

/// The largest kernel side the depthwise path takes (its taps are kept in arrays on the stack).
pub(crate) const MAX_SIDE: usize = 8;

/// One output plane `out` (`oh × ow`) of one input plane `x` (`h × w`) and its kernel `wk` (`kh·kw`).
#[inline(always)]
fn forward_plane_body(x: &[f32], (h, w): (usize, usize), wk: &[f32], t: PlaneTaps, out: &mut [f32], ow: usize) {
    let [kh, kw] = t.kernel;
    let [sh, sw] = t.stride;
    let [dh, dw] = t.dilation;
    let [pt, pl] = t.pad;
    // Outputs whose every tap along the row is inside the input (the others check each tap).
    let inner = valid(ow, sw, 0, pl, w).start..valid(ow, sw, (kw - 1) * dw, pl, w).end;
    let inner = inner.start.min(inner.end)..inner.end;
    let n = inner.len();
    // A strided convolution reads each tap's inputs `sw` apart: each input row is split into its `sw` residues
    // first (`phases[(iy·sw + p)·pw + j] = x[iy·w + p + j·sw]`), so every tap reads a contiguous run.
    let pw = w.div_ceil(sw);
    let mut phases = vec![0f32; if sw > 1 { h * sw * pw } else { 0 }];
    if sw > 1 {
        for (row, dst) in x.chunks_exact(w).zip(phases.chunks_exact_mut(sw * pw)) {
            for p in 0..sw {
                for (d, &v) in dst[p * pw..(p + 1) * pw].iter_mut().zip(row.iter().skip(p).step_by(sw)) {
                    *d = v;
                }
            }
        }
    }
    let mut rows: [(usize, usize); MAX_SIDE] = [(0, 0); MAX_SIDE];
    let mut taps: [(f32, &[f32]); MAX_SIDE * MAX_SIDE] = [(0.0, &[]); MAX_SIDE * MAX_SIDE];
    for (oy, orow) in out.chunks_exact_mut(ow).enumerate() {
        // (ky, input row) of the tap rows inside the input.
        let mut nr = 0;
        for ky in 0..kh {
            if let Some(iy) = (oy * sh + ky * dh).checked_sub(pt).filter(|&iy| iy < h) {
                rows[nr] = (ky, iy);
                nr += 1;
            }
        }
        let rows = &rows[..nr];
        if n > 0 {
            let mut nt = 0;
            for &(ky, iy) in rows {
                for kx in 0..kw {
                    let q = inner.start * sw + kx * dw - pl;
                    let src = if sw > 1 {
                        &phases[(iy * sw + q % sw) * pw + q / sw..][..n]
                    } else {
                        &x[iy * w + q..][..n]
                    };
                    taps[nt] = (wk[ky * kw + kx], src);
                    nt += 1;
                }
            }
            sum_taps::<true>(&taps[..nt], &mut orow[inner.clone()]);
        }
        for ox in (0..inner.start).chain(inner.end.max(inner.start)..ow) {
            let mut a = 0f32;
            for &(ky, iy) in rows {
                let row = &x[iy * w..(iy + 1) * w];
                for kx in 0..kw {
                    if let Some(ix) = (ox * sw + kx * dw).checked_sub(pl).filter(|&ix| ix < w) {
                        a = wk[ky * kw + kx].mul_add(row[ix], a);
                    }
                }
            }
            orow[ox] = a;
        }
    }
}

/// One input-gradient plane `out` (`h × w`) from one output-gradient plane `s` (`oh × ow`). Input column
/// `ix = r + sw·j` (residue `r`) receives from tap `kx` only when `r + pl − kx·dw` is a multiple of the stride, from
/// output column `j + (r + pl − kx·dw)/sw`: each residue's columns are a contiguous sum.
#[inline(always)]
fn transpose_plane_body(s: &[f32], (oh, ow): (usize, usize), wk: &[f32], t: PlaneTaps, out: &mut [f32], w: usize) {
    let [kh, kw] = t.kernel;
    let [sh, sw] = t.stride;
    let [dh, dw] = t.dilation;
    let [pt, pl] = t.pad;
    let mut phase = vec![0f32; if sw > 1 { w.div_ceil(sw) } else { 0 }];
    let mut rows: [(usize, &[f32]); MAX_SIDE] = [(0, &[]); MAX_SIDE];
    let mut taps: [(f32, &[f32], isize); MAX_SIDE * MAX_SIDE] = [(0.0, &[], 0); MAX_SIDE * MAX_SIDE];
    let mut srcs: [(f32, &[f32]); MAX_SIDE * MAX_SIDE] = [(0.0, &[]); MAX_SIDE * MAX_SIDE];
    for (iy, orow) in out.chunks_exact_mut(w).enumerate() {
        // The output rows reaching this input row, by tap row `ky` (in order).
        let mut nr = 0;
        for ky in 0..kh {
            if let Some(y) = (iy + pt).checked_sub(ky * dh)
                && y % sh == 0
                && y / sh < oh
            {
                rows[nr] = (ky, &s[y / sh * ow..(y / sh + 1) * ow]);
                nr += 1;
            }
        }
        for r in 0..sw.min(w) {
            let nj = (w - r).div_ceil(sw);
            // (weight, source row, offset of the output column from j) of each tap reaching residue r, in order.
            let mut nt = 0;
            for &(ky, row) in &rows[..nr] {
                for kx in 0..kw {
                    let e = (r + pl) as isize - (kx * dw) as isize;
                    if e.rem_euclid(sw as isize) == 0 {
                        taps[nt] = (wk[ky * kw + kx], row, e.div_euclid(sw as isize));
                        nt += 1;
                    }
                }
            }
            let tp = &taps[..nt];
            // Columns j where every tap's output column is inside its row.
            let lo = tp.iter().map(|t| (-t.2).max(0) as usize).max().unwrap_or(0).min(nj);
            let hi = tp
                .iter()
                .map(|t| (ow as isize - t.2).clamp(0, nj as isize) as usize)
                .min()
                .unwrap_or(nj)
                .max(lo);
            let one = |j: usize| {
                let mut a = 0f32;
                for &(wv, row, off) in tp {
                    let ox = j as isize + off;
                    if ox >= 0 && (ox as usize) < ow {
                        a += wv * row[ox as usize];
                    }
                }
                a
            };
            let dst = if sw == 1 { &mut orow[..] } else { &mut phase[..nj] };
            if hi > lo {
                for (d, &(wv, row, off)) in srcs.iter_mut().zip(tp) {
                    *d = (wv, &row[(lo as isize + off) as usize..][..hi - lo]);
                }
                sum_taps::<false>(&srcs[..nt], &mut dst[lo..hi]);
            }
            for j in (0..lo).chain(hi..nj) {
                dst[j] = one(j);
            }
            if sw > 1 {
                for (j, &v) in phase[..nj].iter().enumerate() {
                    orow[r + j * sw] = v;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn forward_plane_fma(x: &[f32], hw: (usize, usize), wk: &[f32], t: PlaneTaps, out: &mut [f32], ow: usize) {
    forward_plane_body(x, hw, wk, t, out, ow)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn transpose_plane_fma(s: &[f32], ohw: (usize, usize), wk: &[f32], t: PlaneTaps, out: &mut [f32], w: usize) {
    transpose_plane_body(s, ohw, wk, t, out, w)
}

fn forward_plane(x: &[f32], hw: (usize, usize), wk: &[f32], t: PlaneTaps, out: &mut [f32], ow: usize) {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: the processor has AVX2 and FMA (checked just above).
        return unsafe { forward_plane_fma(x, hw, wk, t, out, ow) };
    }
    forward_plane_body(x, hw, wk, t, out, ow)
}

fn transpose_plane(s: &[f32], ohw: (usize, usize), wk: &[f32], t: PlaneTaps, out: &mut [f32], w: usize) {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: the processor has AVX2 and FMA (checked just above).
        return unsafe { transpose_plane_fma(s, ohw, wk, t, out, w) };
    }
    transpose_plane_body(s, ohw, wk, t, out, w)
}

/// Runs `plane((i, dst))` for every plane `dst` (`len` values, the `i`-th) of `out`, side by side on the pool's
/// threads when the planes' multiply-adds (`macs` each) are worth spreading.
fn each_plane(out: &mut [f32], len: usize, macs: usize, plane: impl Fn((usize, &mut [f32])) + Sync + Send) {
    let planes = out.len() / len.max(1);
    if rayon::current_num_threads() > 1 && planes > 1 && planes.saturating_mul(macs) >= PAR_MIN_MACS / 4 {
        out.par_chunks_exact_mut(len).enumerate().for_each(plane);
    } else {
        out.chunks_exact_mut(len).enumerate().for_each(plane);
    }
}

/// Depthwise forward: `x` is `[N, C, H, W]` and `out` `[N, O, OH, OW]` (standard layout), output channel `o` reading
/// input channel `o / (O / C)` with kernel `weights[o]` (`kh·kw` values).
pub(crate) fn forward(
    x: &[f32],
    (c, h, w): (usize, usize, usize),
    weights: &[f32],
    t: PlaneTaps,
    out: &mut [f32],
    (o, oh, ow): (usize, usize, usize),
) {
    let k = t.kernel[0] * t.kernel[1];
    let per = o / c;
    assert!(per * c == o && weights.len() == o * k && x.len().is_multiple_of(c * h * w));
    assert_eq!(out.len() / (o * oh * ow), x.len() / (c * h * w));
    each_plane(out, oh * ow, oh * ow * k, |(i, dst)| {
        let (j, oc) = (i / o, i % o);
        let src = &x[(j * c + oc / per) * h * w..][..h * w];
        forward_plane(src, (h, w), &weights[oc * k..(oc + 1) * k], t, dst, ow);
    });
}

/// Depthwise transposed, one output channel per input channel (`O = C`; with more, GEMM sums each input's output
/// channels in an order of its own): `s` is `[N, C, OH, OW]` and `out` `[N, C, H, W]`.
pub(crate) fn transpose(
    s: &[f32],
    (o, oh, ow): (usize, usize, usize),
    weights: &[f32],
    t: PlaneTaps,
    out: &mut [f32],
    (c, h, w): (usize, usize, usize),
) {
    let k = t.kernel[0] * t.kernel[1];
    assert_eq!(o, c, "one output channel per input channel");
    assert!(weights.len() == c * k && s.len().is_multiple_of(c * oh * ow));
    assert_eq!(out.len() / (c * h * w), s.len() / (c * oh * ow));
    each_plane(out, h * w, oh * ow * k, |(ci, dst)| {
        let src = &s[ci * oh * ow..][..oh * ow];
        let ci = ci % c;
        transpose_plane(src, (oh, ow), &weights[ci * k..(ci + 1) * k], t, dst, w);
    });
}
