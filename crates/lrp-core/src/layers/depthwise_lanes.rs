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

#[cfg(target_arch = "x86_64")]
use super::depthwise::step_wide;
use super::depthwise::{Classes, MAX_SIDE, PlaneTaps, class_taps, step};
use super::zero;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Planes side by side: one AVX-512 vector, two AVX2 vectors.
pub(super) const L: usize = 16;

/// The largest plane (output values forward, input values transposed) taken side by side. On larger planes the
/// plane-by-plane path's runs are long enough. With both paths in 512-bit registers, MobileNetV2's 56×56 planes
/// went side by side in the same time on one thread and slower on two (the 56×56 layer 91–94 µs plane by plane,
/// 106–132 side by side; the 112→56 forward 131–147 and 163–190): nine groups of 16 channels split unevenly.
pub(super) const SMALL: usize = 28 * 28;

/// How the depthwise layers compute: which planes go side by side, and whether in 512-bit registers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Depthwise {
    /// Planes of at most this many values (output values forward, input values transposed) go side by side.
    pub side_by_side: usize,
    /// Sums in 512-bit registers, several runs or positions at a time (the processor has AVX-512F); otherwise in
    /// 256-bit ones (the same bits).
    pub wide: bool,
}

impl Depthwise {
    /// What the layers run: planes up to [`SMALL`] side by side, in 512-bit registers where the processor has them.
    pub(crate) fn fast() -> Depthwise {
        Depthwise {
            side_by_side: SMALL,
            wide: crate::simd::wide(),
        }
    }
}

/// One group of planes: the planes' size `hw` (`H × W`), the kernels `weights` (`kh·kw` values an output channel),
/// the taps, and the group's first output channel.
#[derive(Clone, Copy)]
pub(super) struct Group<'a> {
    pub hw: (usize, usize),
    /// Sums in 512-bit registers ([`Depthwise::wide`]).
    pub wide: bool,
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

/// Output positions side by side at a time in [`positions`]' AVX-512 loop: each position's sum is a chain of
/// dependent adds, so one position at a time waits on the latency of every add (4 cycles) with the units idle.
const P: usize = 4;

/// [`lanes_sum`] of `n` positions, the `i`-th reading from `base + i·src_step` and written to `dst[i·dst_step..]`
/// (`L` values), plus the bias. With `wide` (the processor has AVX-512F), [`P`] positions at a time in 512-bit
/// registers: the same chain for each sum, in the same order, so the same bits.
#[inline(always)]
fn positions<const FUSED: bool>(
    taps: &[([f32; L], usize)],
    src: &[f32],
    (base, src_step, n): (usize, usize, usize),
    dst: &mut [f32],
    dst_step: usize,
    bias: Option<&[f32; L]>,
    wide: bool,
) {
    if n == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if wide {
        let reach = taps.iter().map(|&(_, off)| off).max().unwrap_or(0);
        assert!(
            base + (n - 1) * src_step + reach + L <= src.len(),
            "positions past the input"
        );
        assert!((n - 1) * dst_step + L <= dst.len(), "positions past the output");
        // SAFETY: the processor has AVX-512F (the caller's `wide`), and every read and write is in bounds (just
        // above).
        unsafe {
            positions_wide::<FUSED>(
                taps,
                src.as_ptr(),
                (base, src_step, n),
                dst.as_mut_ptr(),
                dst_step,
                bias,
            )
        };
        return;
    }
    let _ = wide;
    for i in 0..n {
        let mut acc = lanes_sum::<FUSED>(taps, src, base + i * src_step);
        if let Some(bias) = bias {
            acc.iter_mut().zip(bias).for_each(|(a, b)| *a += b);
        }
        dst[i * dst_step..][..L].copy_from_slice(&acc);
    }
}

/// [`positions`] in 512-bit registers, [`P`] positions at a time.
///
/// # Safety
/// The processor has AVX-512F; `src[base + i·src_step + off..][..L]` for every tap offset `off` and
/// `dst[i·dst_step..][..L]` are in bounds for `i < n`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn positions_wide<const FUSED: bool>(
    taps: &[([f32; L], usize)],
    src: *const f32,
    (base, src_step, n): (usize, usize, usize),
    dst: *mut f32,
    dst_step: usize,
    bias: Option<&[f32; L]>,
) {
    use std::arch::x86_64::*;
    // SAFETY (every load of a weight or bias vector below): `[f32; L]` is 16 values.
    let bias = bias.map(|b| unsafe { _mm512_loadu_ps(b.as_ptr()) });
    let store = |i: usize, acc: __m512| {
        let acc = match bias {
            Some(b) => _mm512_add_ps(acc, b),
            None => acc,
        };
        // SAFETY: in bounds (the function's contract).
        unsafe { _mm512_storeu_ps(dst.add(i * dst_step), acc) };
    };
    let mut i = 0;
    while i + P <= n {
        let mut acc = [_mm512_setzero_ps(); P];
        for (w, off) in taps {
            let w = unsafe { _mm512_loadu_ps(w.as_ptr()) };
            for (p, a) in acc.iter_mut().enumerate() {
                // SAFETY: in bounds (the function's contract).
                let x = unsafe { _mm512_loadu_ps(src.add(base + (i + p) * src_step + off)) };
                *a = step_wide::<FUSED>(w, x, *a);
            }
        }
        for (p, &a) in acc.iter().enumerate() {
            store(i + p, a);
        }
        i += P;
    }
    for i in i..n {
        let mut acc = _mm512_setzero_ps();
        for (w, off) in taps {
            let w = unsafe { _mm512_loadu_ps(w.as_ptr()) };
            // SAFETY: in bounds (the function's contract).
            let x = unsafe { _mm512_loadu_ps(src.add(base + i * src_step + off)) };
            acc = step_wide::<FUSED>(w, x, acc);
        }
        store(i, acc);
    }
}

/// `dst[j·ds + i] = src[i·ss + j]` for `i, j < 8`: an 8 × 8 block transposed, with AVX2 shuffles where the processor
/// has them (value by value, the interleaving was most of this path's time; the compiler does not find the shuffles
/// itself).
/// `avx` says the processor has AVX2 (the callers ask once, not for every block).
#[inline(always)]
fn transpose8(src: &[f32], ss: usize, dst: &mut [MaybeUninit<f32>], ds: usize, avx: bool) {
    assert!(src.len() > 7 * ss + 7 && dst.len() > 7 * ds + 7, "an 8 × 8 block");
    #[cfg(target_arch = "x86_64")]
    if avx {
        // SAFETY: the processor has AVX2 (the caller checked), and the eight rows of eight values are inside both
        // slices (asserted above).
        return unsafe { transpose8_avx(src.as_ptr(), ss, dst.as_mut_ptr().cast(), ds) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = avx;
    for i in 0..8 {
        for j in 0..8 {
            dst[j * ds + i].write(src[i * ss + j]);
        }
    }
}

/// [`transpose8`] on raw rows: unpack pairs of rows, shuffle pairs of pairs, swap the 128-bit halves.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose8_avx(src: *const f32, ss: usize, dst: *mut f32, ds: usize) {
    use std::arch::x86_64::*;
    // SAFETY (all of this function): the caller guarantees rows i·ss..i·ss + 8 of src and j·ds..j·ds + 8 of dst.
    unsafe {
        let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * ss)));
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        _mm256_storeu_ps(dst, _mm256_permute2f128_ps::<0x20>(u0, u4));
        _mm256_storeu_ps(dst.add(ds), _mm256_permute2f128_ps::<0x20>(u1, u5));
        _mm256_storeu_ps(dst.add(2 * ds), _mm256_permute2f128_ps::<0x20>(u2, u6));
        _mm256_storeu_ps(dst.add(3 * ds), _mm256_permute2f128_ps::<0x20>(u3, u7));
        _mm256_storeu_ps(dst.add(4 * ds), _mm256_permute2f128_ps::<0x31>(u0, u4));
        _mm256_storeu_ps(dst.add(5 * ds), _mm256_permute2f128_ps::<0x31>(u1, u5));
        _mm256_storeu_ps(dst.add(6 * ds), _mm256_permute2f128_ps::<0x31>(u2, u6));
        _mm256_storeu_ps(dst.add(7 * ds), _mm256_permute2f128_ps::<0x31>(u3, u7));
    }
}

/// `dst[j·L + l] = src[l·stride + j]` for `j < n`, `l < L`: `n` values of each of `L` planes, side by side.
#[inline(always)]
fn interleave(src: &[f32], stride: usize, n: usize, dst: &mut [f32]) {
    let full = n / 8 * 8;
    let avx = super::depthwise::available();
    for l0 in (0..L).step_by(8) {
        for j0 in (0..full).step_by(8) {
            // SAFETY: transpose8 writes only f32 values.
            transpose8(
                &src[l0 * stride + j0..],
                stride,
                unsafe { super::overwrite(&mut dst[j0 * L + l0..]) },
                L,
                avx,
            );
        }
    }
    for j in full..n {
        for l in 0..L {
            dst[j * L + l] = src[l * stride + j];
        }
    }
}

/// `dst[l·stride + j] = src[j·L + l]` for `j < n`, `l < lanes`: the inverse of [`interleave`].
#[inline(always)]
fn deinterleave(src: &[f32], n: usize, dst: &mut [MaybeUninit<f32>], stride: usize, lanes: usize) {
    let full = if lanes == L { n / 8 * 8 } else { 0 };
    let avx = super::depthwise::available();
    for l0 in (0..L).step_by(8).filter(|_| full > 0) {
        for j0 in (0..full).step_by(8) {
            transpose8(&src[j0 * L + l0..], L, &mut dst[l0 * stride + j0..], stride, avx);
        }
    }
    for l in 0..lanes {
        for j in full..n {
            dst[l * stride + j].write(src[j * L + l]);
        }
    }
}

/// The padded layout a group's planes go into side by side: `buf`, rows of `row` vectors of [`L`], the planes' values
/// from row `top` and column `left` on.
struct Padded<'a> {
    buf: &'a mut [f32],
    row: usize,
    top: usize,
    left: usize,
}

/// The group's `lanes` planes side by side into `dst`, zeros around them: lane `l` is `plane(l)` (`w` values a row),
/// its first `rows` rows and `cols` columns. A full group whose planes lie one after another (`together`: from the
/// first, a plane every `stride` values) is interleaved whole in 8 × 8 blocks through `tmp`, then copied row by row
/// (so short rows are interleaved in full blocks too), and only the padding around it is zeroed (zeroing all of it
/// was a twentieth of this path's time). Otherwise all is zeroed and the planes copied value by value. In this
/// crate's tests the layout starts as NaN, so a padding value left unwritten fails them.
#[inline(always)]
fn pad_planes<'a>(
    plane: impl Fn(usize) -> &'a [f32],
    together: Option<(&[f32], usize)>,
    (lanes, rows, w, cols): (usize, usize, usize, usize),
    dst: Padded,
    tmp: &mut [f32],
) {
    let Padded { buf, row, top, left } = dst;
    #[cfg(test)]
    buf.fill(f32::NAN);
    match together.filter(|_| lanes == L && cols > 0) {
        Some((src, stride)) => {
            let end = (top + rows) * row * L;
            zero(&mut buf[..top * row * L]);
            for r in top..top + rows {
                zero(&mut buf[r * row * L..][..left * L]);
                zero(&mut buf[(r * row + left + cols) * L..(r + 1) * row * L]);
            }
            zero(&mut buf[end..]);
            interleave(src, stride, rows * w, tmp);
            for r in 0..rows {
                buf[((top + r) * row + left) * L..][..cols * L].copy_from_slice(&tmp[r * w * L..][..cols * L]);
            }
        }
        None => {
            zero(buf);
            for l in (0..lanes).filter(|_| cols > 0) {
                let p = plane(l);
                for r in 0..rows {
                    let d = &mut buf[((top + r) * row + left) * L + l..];
                    for (c, &v) in p[r * w..][..cols].iter().enumerate() {
                        d[c * L] = v;
                    }
                }
            }
        }
    }
}

/// The kernel's tap `t` of the group's `lanes` channels, zero past them.
#[inline(always)]
fn tap_lanes(weights: &[f32], k: usize, first: usize, lanes: usize, t: usize) -> [f32; L] {
    std::array::from_fn(|l| if l < lanes { weights[(first + l) * k + t] } else { 0.0 })
}

/// The group's output planes `out` (`lanes × oh × ow`).
#[inline(always)]
pub(super) fn forward_body(
    g: Group,
    input: Input,
    out: &mut [MaybeUninit<f32>],
    (oh, ow): (usize, usize),
    scratch: &mut Vec<f32>,
) {
    let Group {
        hw: (h, w),
        wide,
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
    // The padded input side by side, then the sums side by side before they are dealt to the output planes.
    // (The second part is first the input side by side in full, then the sums.)
    if scratch.len() < (hp * wp + ohw.max(h * w)) * L {
        scratch.resize((hp * wp + ohw.max(h * w)) * L, 0.0);
    }
    let (xp, sums) = scratch.split_at_mut(hp * wp * L);
    let (rows, cols) = (h.min(hp.saturating_sub(pt)), w.min(wp.saturating_sub(pl)));
    let together = (lanes == L && per == 1).then(|| (&x[first * h * w..][..L * h * w], h * w));
    let xp_at = Padded {
        buf: xp,
        row: wp,
        top: pt,
        left: pl,
    };
    let plane = |l: usize| &x[(first + l) / per * h * w..][..h * w];
    pad_planes(plane, together, (lanes, rows, w, cols), xp_at, sums);
    let k = kh * kw;
    let mut taps = [([0f32; L], 0usize); MAX_SIDE * MAX_SIDE];
    for ky in 0..kh {
        for kx in 0..kw {
            let i = ky * kw + kx;
            taps[i] = (tap_lanes(weights, k, first, lanes, i), (ky * dh * wp + kx * dw) * L);
        }
    }
    let bias: Option<[f32; L]> = bias.map(|b| std::array::from_fn(|l| if l < lanes { b[first + l] } else { 0.0 }));
    for oy in 0..oh {
        let row = (oy * sh * wp * L, sw * L, ow);
        positions::<true>(&taps[..k], xp, row, &mut sums[oy * ow * L..], L, bias.as_ref(), wide);
    }
    deinterleave(sums, ohw, out, ohw, lanes);
}

/// The input-gradient planes `out` (`lanes × h × w`) of the group's output-gradient planes `s` (`lanes × oh × ow`),
/// one output channel per input channel; see the plane-by-plane path for the residue classes.
#[inline(always)]
pub(super) fn transpose_body(
    g: Group,
    s: &[f32],
    (oh, ow): (usize, usize),
    out: &mut [MaybeUninit<f32>],
    scratch: &mut Vec<f32>,
) {
    let Group {
        hw: (h, w),
        wide,
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
    // The padded gradient side by side, then the input gradients side by side before they are dealt to the planes.
    if scratch.len() < (sph * spw + hw.max(ohw)) * L {
        scratch.resize((sph * spw + hw.max(ohw)) * L, 0.0);
    }
    let (sp, sums) = scratch.split_at_mut(sph * spw * L);
    let sp_at = Padded {
        buf: sp,
        row: spw,
        top: qy_max,
        left: qx_max,
    };
    let plane = |l: usize| &s[l * ohw..][..ohw];
    pad_planes(
        plane,
        (lanes == L).then_some((s, ohw)),
        (lanes, oh, ow, ow),
        sp_at,
        sums,
    );
    let sums = &mut sums[..hw * L];
    // The residue classes write every input (as the plane path's dealing relies on too), so the sums are not zeroed
    // first; in this crate's tests they start as NaN, so that an input the classes missed fails them.
    #[cfg(test)]
    sums.fill(f32::NAN);
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
            // Input (ry + sh·a − pt, rx + sw·b − pl), those inside the plane: b from b0 (ix ≥ 0) to b1 (ix < w).
            let (b0, b1) = (pl.saturating_sub(rx).div_ceil(sw), bt.min((w + pl - rx).div_ceil(sw)));
            for a in 0..at {
                let Some(iy) = (ry + sh * a).checked_sub(pt).filter(|&iy| iy < h) else {
                    continue;
                };
                if b1 > b0 {
                    let ix0 = rx + sw * b0 - pl;
                    let row = ((a * spw + b0) * L, L, b1 - b0);
                    positions::<false>(
                        &taps[..nt],
                        sp,
                        row,
                        &mut sums[(iy * w + ix0) * L..],
                        sw * L,
                        None,
                        wide,
                    );
                }
            }
        }
    }
    deinterleave(sums, hw, out, hw, lanes);
}

/// Runs `group(j, first, dst)` for every group of up to [`L`] planes `dst` (`plane` values each) of sample `j`
/// (`per_sample` values of `out`), its first channel `first`; side by side on the pool's threads when the planes'
/// multiply-adds (`macs` each) are worth spreading, as the plane-by-plane path decides.
pub(super) fn each_group<T: Send>(
    out: &mut [T],
    per_sample: usize,
    plane: usize,
    macs: usize,
    group: impl Fn(usize, usize, &mut [T]) + Sync + Send,
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
