//! Depthwise convolution (one input channel per group: MobileNet, EfficientNet) computed plane by plane, without
//! im2col. Through im2col + GEMM each channel is a product of one row by a matrix of `kh·kw` rows: GEMM packs the
//! whole unfolded plane for a nine-term sum, and runs at a few GFLOP/s where a dense 3×3 convolution of the same
//! network runs at 50–80.
//!
//! The bits are those of im2col + GEMM on the same processor: forward, each output is a chain of fused
//! multiply-adds from zero over its taps in `(ky, kx)` order (matrixmultiply's kernels sum a depth below its block
//! of 256 that way), its padding taps multiplying zeros as GEMM multiplies im2col's; transposed, each input gradient
//! adds the rounded products `w·s` of its taps in `(ky, kx)` order, as col2im adds GEMM's one-term products (a tap
//! that falls outside adds `w·0`, which changes no sum). Tests compare the two paths bit for bit.
//!
//! Both passes work on a zero-padded copy of the plane split by the residues of the stride, so that every tap is a
//! contiguous run and the whole plane one run of 16-wide blocks: MobileNet's late planes are 7×7 and 14×14, too
//! short for row-by-row blocks.
//!
//! Planes of at most [`lanes::SMALL`] values (MobileNet's and EfficientNet's 7×7 to 28×28, hundreds of channels)
//! go 16 side by side instead (`depthwise_lanes`): there a plane's own runs are too short to pay for its setup.
//!
//! The fused multiply-add is an instruction only where the processor has FMA: the layers take this path there
//! ([`available`]); elsewhere they keep to GEMM (a software `fmaf` would be slower than it).

use super::depthwise_lanes::{self as lanes, Depthwise, Group, Input};
use super::unfold::copy_short;
use super::{PAR_MIN_MACS, init_ref, with_scratch, zero};
use rayon::prelude::*;
use std::mem::MaybeUninit;

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

/// `a ← fma(w, x, a)` (forward) or `a ← a + w·x` (transposed: the rounded product, then the sum).
#[inline(always)]
pub(super) fn step<const FUSED: bool>(w: f32, x: f32, a: f32) -> f32 {
    if FUSED { w.mul_add(x, a) } else { a + w * x }
}

/// [`step`] on 16 lanes at once: `a ← fma(w, x, a)` or `a ← a + w·x`, in 512-bit registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) fn step_wide<const FUSED: bool>(
    w: std::arch::x86_64::__m512,
    x: std::arch::x86_64::__m512,
    a: std::arch::x86_64::__m512,
) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    if FUSED {
        _mm512_fmadd_ps(w, x, a)
    } else {
        _mm512_add_ps(a, _mm512_mul_ps(w, x))
    }
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
/// With `wide` (the processor has AVX-512F), runs of 64 or more in 512-bit registers, four blocks at a time.
#[inline(always)]
pub(super) fn sum_taps<const FUSED: bool>(taps: &[(f32, &[f32])], out: &mut [f32], wide: bool) {
    let len = out.len();
    #[cfg(target_arch = "x86_64")]
    if wide && len >= WIDE_BLOCKS * 16 {
        assert!(
            taps.iter().all(|(_, s)| s.len() >= len),
            "a tap's run is shorter than the output"
        );
        // SAFETY: the processor has AVX-512F (the caller's `wide`), and every tap has `len` values (just above).
        unsafe { sum_taps_wide::<FUSED>(taps, out) };
        return;
    }
    let _ = wide;
    if len >= 16 {
        for c in (0..=len - 16).step_by(16) {
            block::<FUSED, 16>(taps, c, out);
        }
        if !len.is_multiple_of(16) {
            block::<FUSED, 16>(taps, len - 16, out);
        }
    } else if len >= 8 {
        block::<FUSED, 8>(taps, 0, out);
        if len > 8 {
            block::<FUSED, 8>(taps, len - 8, out);
        }
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

/// Blocks of 16 outputs [`sum_taps_wide`] sums at a time. One block's sum over the taps is a chain of dependent
/// adds (4 cycles each), and with two 8-wide blocks in flight the units waited on it most of the time: four 16-wide
/// blocks keep them busy.
const WIDE_BLOCKS: usize = 4;

/// [`sum_taps`] in 512-bit registers: [`WIDE_BLOCKS`] blocks of 16 at a time, then blocks of 16, the last one
/// ending at the run's end. Each output is the same chain in the same order, so the same bits.
///
/// # Safety
/// The processor has AVX-512F; every tap's run has at least `out.len()` values, and `out.len()` is at least 16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sum_taps_wide<const FUSED: bool>(taps: &[(f32, &[f32])], out: &mut [f32]) {
    use std::arch::x86_64::*;
    const B: usize = 16;
    let (len, o) = (out.len(), out.as_mut_ptr());
    // One block at `c`.
    let block = |c: usize| {
        let mut acc = _mm512_setzero_ps();
        for &(w, s) in taps {
            // SAFETY: `c + B <= len` (the callers below) and every run has `len` values.
            acc = step_wide::<FUSED>(_mm512_set1_ps(w), unsafe { _mm512_loadu_ps(s.as_ptr().add(c)) }, acc);
        }
        // SAFETY: as above, for `out`.
        unsafe { _mm512_storeu_ps(o.add(c), acc) };
    };
    let mut c = 0;
    while c + WIDE_BLOCKS * B <= len {
        let mut acc = [_mm512_setzero_ps(); WIDE_BLOCKS];
        for &(w, s) in taps {
            let w = _mm512_set1_ps(w);
            for (p, a) in acc.iter_mut().enumerate() {
                // SAFETY: `c + WIDE_BLOCKS·B <= len` and every run has `len` values.
                *a = step_wide::<FUSED>(w, unsafe { _mm512_loadu_ps(s.as_ptr().add(c + p * B)) }, *a);
            }
        }
        for (p, &a) in acc.iter().enumerate() {
            // SAFETY: as above, for `out`.
            unsafe { _mm512_storeu_ps(o.add(c + p * B), a) };
        }
        c += WIDE_BLOCKS * B;
    }
    while c + B <= len {
        block(c);
        c += B;
    }
    if c < len {
        block(len - B);
    }
}

/// The largest kernel side the depthwise path takes (its taps are kept in arrays on the stack).
pub(crate) const MAX_SIDE: usize = 8;

/// The layout of a plane's phases (see [`forward_plane_body`]): `pw` values to a row, `hq` rows to a phase, the
/// output run of `run` values, `len` values for all the phases and `row` for one padded input row.
pub(super) struct Phases {
    pub pw: usize,
    pub hq: usize,
    pub run: usize,
    pub len: usize,
    pub row: usize,
}

impl Phases {
    pub(super) fn of(t: PlaneTaps, (oh, ow): (usize, usize)) -> Phases {
        let [kh, kw] = t.kernel;
        let [sh, sw] = t.stride;
        let [dh, dw] = t.dilation;
        let pw = ow + (kw - 1) * dw / sw;
        let hq = oh + (kh - 1) * dh / sh;
        Phases {
            pw,
            hq,
            run: (oh - 1) * pw + ow,
            len: sh * sw * hq * pw,
            row: sw * pw,
        }
    }
}

/// Where tap `(ky, kx)`'s run starts in the phases.
#[inline(always)]
pub(super) fn tap_start(t: PlaneTaps, (ky, kx): (usize, usize), (hq, pw): (usize, usize)) -> usize {
    let ([sh, sw], [dh, dw]) = (t.stride, t.dilation);
    let (ry, qy) = (ky * dh % sh, ky * dh / sh);
    let (rx, qx) = (kx * dw % sw, kx * dw / sw);
    ((ry * sw + rx) * hq + qy) * pw + qx
}

/// The phases of input plane `x` (`h × w`): padded row `y = ry + i·sh` is zeros, the input row from column `pl`,
/// zeros, its columns dealt to the `sw` phases; `padded` holds one padded row.
#[inline(always)]
pub(super) fn fill_phases(
    x: &[f32],
    (h, w): (usize, usize),
    t: PlaneTaps,
    (hq, pw): (usize, usize),
    phases: &mut [f32],
    padded: &mut [f32],
) {
    let [sh, sw] = t.stride;
    let [pt, pl] = t.pad;
    let row_len = padded.len();
    let lead = pl.min(row_len);
    let n = w.min(row_len - lead);
    // Rows are short on the late planes (7 to 28 values): copies and fills inline, not calls of memmove/memset.
    for y in 0..sh * hq {
        let (ry, i) = (y % sh, y / sh);
        let input = y.checked_sub(pt).filter(|&iy| iy < h);
        let dst = |rx: usize| ((ry * sw + rx) * hq + i) * pw;
        let target = if sw == 1 {
            &mut phases[dst(0)..][..pw]
        } else {
            &mut padded[..]
        };
        if let Some(iy) = input {
            zero(&mut target[..lead]);
            copy_short(&mut target[lead..lead + n], &x[iy * w..][..n]);
            zero(&mut target[lead + n..]);
        }
        match (input, sw) {
            (None, _) => (0..sw).for_each(|rx| zero(&mut phases[dst(rx)..][..pw])),
            (Some(_), 1) => {}
            (Some(_), 2) => {
                let (d0, d1) = (dst(0), dst(1));
                let (lo, hi) = phases.split_at_mut(d1);
                let (even, odd) = (&mut lo[d0..][..pw], &mut hi[..pw]);
                for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(padded.chunks_exact(2)) {
                    *e = pair[0];
                    *o = pair[1];
                }
            }
            (Some(_), _) => {
                for rx in 0..sw {
                    let d = dst(rx);
                    for (j, v) in phases[d..][..pw].iter_mut().enumerate() {
                        *v = padded[rx + j * sw];
                    }
                }
            }
        }
    }
}

/// One output plane `out` (`oh × ow`) of one input plane `x` (`h × w`), its kernel `wk` (`kh·kw`) and bias.
///
/// The plane is first copied with its padding as zeros and split by the residues of its rows and columns modulo
/// the stride: phase `(ry, rx)` holds padded rows `ry + i·sh` and columns `rx + j·sw`, `pw` to a row. Tap `(ky, kx)`
/// then reads one phase at a fixed offset, and the whole output plane is one run over the phases' rows laid end to
/// end (output `(oy, ox)` at `oy·pw + ox`; the `pw − ow` positions between rows are computed and dropped): every
/// output is the same chain of fused multiply-adds over all taps, in blocks of 16 however small the plane. A tap in
/// the padding adds `fma(w, 0, a) = a` (the sum is never −0 and the weights are finite), as GEMM multiplies
/// im2col's zeros.
#[inline(always)]
fn forward_plane_body(p: ForwardPlane, out: &mut [MaybeUninit<f32>], scratch: &mut Vec<f32>) {
    let ForwardPlane {
        x,
        hw: (h, w),
        wk,
        bias,
        t,
        ow,
        wide,
    } = p;
    let [kh, kw] = t.kernel;
    let oh = out.len() / ow;
    let Phases { pw, hq, run, len, row } = Phases::of(t, (oh, ow));
    if scratch.len() < len + run + row {
        scratch.resize(len + run + row, 0.0);
    }
    let (phases, rest) = scratch.split_at_mut(len);
    let (ext, padded) = rest.split_at_mut(run);
    fill_phases(x, (h, w), t, (hq, pw), phases, &mut padded[..row]);
    let mut taps: [(f32, &[f32]); MAX_SIDE * MAX_SIDE] = [(0.0, &[]); MAX_SIDE * MAX_SIDE];
    for ky in 0..kh {
        for kx in 0..kw {
            let start = tap_start(t, (ky, kx), (hq, pw));
            taps[ky * kw + kx] = (wk[ky * kw + kx], &phases[start..][..run]);
        }
    }
    sum_taps::<true>(&taps[..kh * kw], ext, wide);
    for (orow, erow) in out.chunks_exact_mut(ow).zip(ext.chunks(pw)) {
        match bias {
            Some(b) => orow.iter_mut().zip(erow).for_each(|(o, &e)| {
                o.write(e + b);
            }),
            None => orow.copy_from_slice(init_ref(&erow[..ow])),
        }
    }
}

/// The layout of the transposed pass (see [`transpose_plane_body`]): the padded gradient's `qy_max` zero rows,
/// `qx_max` zero columns, `sph` rows of `spw`; each residue class's positions `a < at`, `b < bt`, and its run.
pub(super) struct Classes {
    pub qy_max: usize,
    pub qx_max: usize,
    pub at: usize,
    pub bt: usize,
    pub spw: usize,
    pub sph: usize,
    pub run: usize,
}

impl Classes {
    pub(super) fn of(t: PlaneTaps, (h, w): (usize, usize), (oh, ow): (usize, usize)) -> Classes {
        let ([kh, kw], [sh, sw], [dh, dw], [pt, pl]) = (t.kernel, t.stride, t.dilation, t.pad);
        let (qy_max, qx_max) = ((kh - 1) * dh / sh, (kw - 1) * dw / sw);
        // Classes hold a = 0..at, b = 0..bt: every padded position before the input's end.
        let (at, bt) = ((h + pt).div_ceil(sh), (w + pl).div_ceil(sw));
        let spw = bt.max(ow) + qx_max;
        Classes {
            qy_max,
            qx_max,
            at,
            bt,
            spw,
            sph: at.max(oh) + qy_max,
            run: (at - 1) * spw + bt,
        }
    }
}

/// The taps `(ky, kx)` of residue class `(ry, rx)` (those with `ky·dh ≡ ry (mod sh)`, `kx·dw ≡ rx (mod sw)`) in
/// `(ky, kx)` order, each with its shift `(qy, qx) = ((ky·dh − ry)/sh, (kx·dw − rx)/sw)`: the input gradient at
/// class position `(a, b)` receives tap `(ky, kx)`'s weight times the output gradient at `(a − qy, b − qx)`.
pub(super) fn class_taps(
    t: PlaneTaps,
    (ry, rx): (usize, usize),
) -> impl Iterator<Item = ((usize, usize), (usize, usize))> {
    let ([kh, kw], [sh, sw], [dh, dw]) = (t.kernel, t.stride, t.dilation);
    // One range, not nested iterators: this is called for every plane and class, and a flattened iterator was not
    // inlined (1.5% of the depthwise layers' time).
    (0..kh * kw).filter_map(move |i| {
        let (ky, kx) = (i / kw, i % kw);
        (ky * dh % sh == ry && kx * dw % sw == rx).then(|| ((ky, kx), ((ky * dh - ry) / sh, (kx * dw - rx) / sw)))
    })
}

/// Output-gradient plane `s` (`oh × ow`) into `sp` (rows of `spw`) below `qy_max` zero rows and right of `qx_max`
/// zero columns, zeros past its end (see [`transpose_plane_body`]).
#[inline(always)]
pub(super) fn pad_gradient(
    s: &[f32],
    (oh, ow): (usize, usize),
    (qy_max, qx_max): (usize, usize),
    spw: usize,
    sp: &mut [f32],
) {
    for (y, row) in sp.chunks_exact_mut(spw).enumerate() {
        match y.checked_sub(qy_max).filter(|&oy| oy < oh) {
            Some(oy) => {
                zero(&mut row[..qx_max]);
                copy_short(&mut row[qx_max..qx_max + ow], &s[oy * ow..][..ow]);
                zero(&mut row[qx_max + ow..]);
            }
            None => zero(row),
        }
    }
}

/// The runs `ext` (one of `run` values per column residue `rx`, rows of `spw`) of row residue `ry`, dealt to their
/// positions in the input-gradient plane `out` (rows of `w`): input `(ry + sh·a − pt, ix)`, `ix + pl = rx + sw·b`,
/// `a < at`, `b < bt`, those inside the plane.
#[inline(always)]
pub(super) fn deal(
    ext: &[f32],
    (ry, run, spw): (usize, usize, usize),
    (at, bt): (usize, usize),
    t: PlaneTaps,
    out: &mut [MaybeUninit<f32>],
    w: usize,
) {
    let ([sh, sw], [pt, pl]) = (t.stride, t.pad);
    let h = out.len() / w;
    for a in 0..at {
        let Some(iy) = (ry + sh * a).checked_sub(pt).filter(|&iy| iy < h) else {
            continue;
        };
        let orow = &mut out[iy * w..(iy + 1) * w];
        let class = |rx: usize| &ext[rx * run + a * spw..rx * run + a * spw + bt];
        match sw {
            1 => copy_short(orow, init_ref(&class(0)[pl..pl + w])),
            2 => {
                // Even ix + pl from class 0, odd from class 1, both at b = (ix + pl)/2: pairs from the first even.
                let (e0, e1) = (class(0), class(1));
                let first = pl % 2;
                if first == 1 {
                    orow[0].write(e1[pl / 2]);
                }
                let b0 = (first + pl) / 2;
                let mut pairs = orow[first..].chunks_exact_mut(2);
                for (d, (&v0, &v1)) in (&mut pairs).zip(e0[b0..].iter().zip(&e1[b0..])) {
                    d[0].write(v0);
                    d[1].write(v1);
                }
                if let [last] = pairs.into_remainder() {
                    last.write(e0[(w - 1 + pl) / 2]);
                }
            }
            _ => {
                for (ix, o) in orow.iter_mut().enumerate() {
                    o.write(class((ix + pl) % sw)[(ix + pl) / sw]);
                }
            }
        }
    }
}

/// One input-gradient plane `out` (`h × w`) from one output-gradient plane `s` (`oh × ow`).
///
/// Padded input position `(ry + sh·a, rx + sw·b)` (residues `ry`, `rx` of the stride) receives from tap `(ky, kx)`
/// only when `ky·dh ≡ ry (mod sh)` and `kx·dw ≡ rx (mod sw)`, the gradient at output `(a − qy, b − qx)` with
/// `qy = (ky·dh − ry)/sh`, `qx = (kx·dw − rx)/sw`. Over a copy of `s` with `qy_max` zero rows above and `qx_max` zero
/// columns to the left (and zeros past its end), each residue class is one run of sums over its taps, rows laid end
/// to end as in the forward pass, then dealt to its positions. Each sum adds the rounded products `w·s` in
/// `(ky, kx)` order from zero, as col2im adds GEMM's one-term products; a tap outside `s` adds `w·0`, which changes
/// no sum (never −0; the weights are finite).
#[inline(always)]
fn transpose_plane_body(p: TransposePlane, out: &mut [MaybeUninit<f32>], scratch: &mut Vec<f32>) {
    let TransposePlane {
        s,
        ohw: (oh, ow),
        wk,
        t,
        w,
        wide,
    } = p;
    let (kw, [sh, sw], [pt, pl]) = (t.kernel[1], t.stride, t.pad);
    let h = out.len() / w;
    let Classes {
        qy_max,
        qx_max,
        at,
        bt,
        spw,
        sph,
        run,
    } = Classes::of(t, (h, w), (oh, ow));
    if scratch.len() < sph * spw + sw * run {
        scratch.resize(sph * spw + sw * run, 0.0);
    }
    let (sp, ext) = scratch.split_at_mut(sph * spw);
    let ext = &mut ext[..sw * run];
    pad_gradient(s, (oh, ow), (qy_max, qx_max), spw, sp);
    let mut taps: [(f32, &[f32]); MAX_SIDE * MAX_SIDE] = [(0.0, &[]); MAX_SIDE * MAX_SIDE];
    for ry in 0..sh.min(h + pt) {
        // The classes (ry, rx) of this row residue, each into its run of `ext`.
        for rx in 0..sw.min(w + pl) {
            let mut nt = 0;
            for ((ky, kx), (qy, qx)) in class_taps(t, (ry, rx)) {
                let start = (qy_max - qy) * spw + (qx_max - qx);
                taps[nt] = (wk[ky * kw + kx], &sp[start..][..run]);
                nt += 1;
            }
            sum_taps::<false>(&taps[..nt], &mut ext[rx * run..(rx + 1) * run], wide);
        }
        deal(ext, (ry, run, spw), (at, bt), t, out, w);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn forward_plane_fma(p: ForwardPlane, out: &mut [MaybeUninit<f32>], scratch: &mut Vec<f32>) {
    forward_plane_body(p, out, scratch)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn transpose_plane_fma(p: TransposePlane, out: &mut [MaybeUninit<f32>], scratch: &mut Vec<f32>) {
    transpose_plane_body(p, out, scratch)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn forward_lanes_fma(
    g: Group,
    input: Input,
    out: &mut [MaybeUninit<f32>],
    ohw: (usize, usize),
    scratch: &mut Vec<f32>,
) {
    lanes::forward_body(g, input, out, ohw, scratch)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn transpose_lanes_fma(g: Group, s: &[f32], ohw: (usize, usize), out: &mut [MaybeUninit<f32>], scratch: &mut Vec<f32>) {
    lanes::transpose_body(g, s, ohw, out, scratch)
}

fn forward_lanes(g: Group, input: Input, out: &mut [MaybeUninit<f32>], ohw: (usize, usize)) {
    with_scratch(|scratch| {
        #[cfg(target_arch = "x86_64")]
        if available() {
            // SAFETY: the processor has AVX2 and FMA (checked just above).
            return unsafe { forward_lanes_fma(g, input, out, ohw, scratch) };
        }
        lanes::forward_body(g, input, out, ohw, scratch)
    })
}

fn transpose_lanes(g: Group, s: &[f32], ohw: (usize, usize), out: &mut [MaybeUninit<f32>]) {
    with_scratch(|scratch| {
        #[cfg(target_arch = "x86_64")]
        if available() {
            // SAFETY: the processor has AVX2 and FMA (checked just above).
            return unsafe { transpose_lanes_fma(g, s, ohw, out, scratch) };
        }
        lanes::transpose_body(g, s, ohw, out, scratch)
    })
}

/// One plane's forward inputs (see [`forward_plane_body`]).
#[derive(Clone, Copy)]
struct ForwardPlane<'a> {
    x: &'a [f32],
    hw: (usize, usize),
    wk: &'a [f32],
    bias: Option<f32>,
    t: PlaneTaps,
    ow: usize,
    /// Sums in 512-bit registers ([`Depthwise::wide`]).
    wide: bool,
}

/// One plane's transposed inputs (see [`transpose_plane_body`]): the output-gradient plane `s` (`ohw`), the kernel,
/// the taps, the input planes' width `w`.
#[derive(Clone, Copy)]
struct TransposePlane<'a> {
    s: &'a [f32],
    ohw: (usize, usize),
    wk: &'a [f32],
    t: PlaneTaps,
    w: usize,
    /// Sums in 512-bit registers ([`Depthwise::wide`]).
    wide: bool,
}

fn forward_plane(p: ForwardPlane, out: &mut [MaybeUninit<f32>]) {
    with_scratch(|scratch| {
        #[cfg(target_arch = "x86_64")]
        if available() {
            // SAFETY: the processor has AVX2 and FMA (checked just above).
            return unsafe { forward_plane_fma(p, out, scratch) };
        }
        forward_plane_body(p, out, scratch)
    })
}

fn transpose_plane(p: TransposePlane, out: &mut [MaybeUninit<f32>]) {
    with_scratch(|scratch| {
        #[cfg(target_arch = "x86_64")]
        if available() {
            // SAFETY: the processor has AVX2 and FMA (checked just above).
            return unsafe { transpose_plane_fma(p, out, scratch) };
        }
        transpose_plane_body(p, out, scratch)
    })
}

/// Whether `planes` planes of `macs` multiply-adds each are worth spreading over the pool's threads (see
/// [`each_plane`]; the side-by-side path decides the same way).
pub(super) fn worth_spreading(planes: usize, macs: usize) -> bool {
    rayon::current_num_threads() > 1 && planes.saturating_mul(macs) >= PAR_MIN_MACS / 32
}

/// Runs `plane((i, dst))` for every plane `dst` (`len` values, the `i`-th) of `out`, side by side on the pool's
/// threads when the planes' multiply-adds (`macs` each) are worth spreading: from 1/32 of what a GEMM needs, as a
/// depthwise multiply-add costs several times a GEMM's (MobileNetV2's 7×7 and 14×14 layers, 0.25–0.7 M
/// multiply-adds a photo, ran on one thread below 1/4).
pub(super) fn each_plane<T: Send>(
    out: &mut [T],
    len: usize,
    macs: usize,
    plane: impl Fn((usize, &mut [T])) + Sync + Send,
) {
    let planes = out.len() / len.max(1);
    if planes > 1 && worth_spreading(planes, macs) {
        out.par_chunks_exact_mut(len).enumerate().for_each(plane);
    } else {
        out.chunks_exact_mut(len).enumerate().for_each(plane);
    }
}

/// Depthwise forward: `x` is `[N, C, H, W]` and `out` `[N, O, OH, OW]` (standard layout), output channel `o` reading
/// input channel `o / (O / C)` with kernel `weights[o]` (`kh·kw` values) and the bias. Writes every value of `out`,
/// which need not be initialized (zeroing it first cost a tenth of MobileNetV2's depthwise time).
pub(crate) fn forward(
    x: &[f32],
    (c, h, w): (usize, usize, usize),
    (weights, bias): (&[f32], Option<&[f32]>),
    t: PlaneTaps,
    out: &mut [MaybeUninit<f32>],
    (o, oh, ow): (usize, usize, usize),
    paths: Depthwise,
) {
    let k = t.kernel[0] * t.kernel[1];
    let per = o / c;
    assert!(per * c == o && weights.len() == o * k && x.len().is_multiple_of(c * h * w));
    assert!(bias.is_none_or(|b| b.len() == o));
    assert_eq!(out.len() / (o * oh * ow), x.len() / (c * h * w));
    if oh * ow <= paths.side_by_side {
        lanes::each_group(out, o * oh * ow, oh * ow, oh * ow * k, |j, first, dst| {
            let group = Group {
                hw: (h, w),
                wide: paths.wide,
                weights,
                t,
                first,
            };
            let input = Input {
                x: &x[j * c * h * w..][..c * h * w],
                per,
                bias,
            };
            forward_lanes(group, input, dst, (oh, ow));
        });
        return;
    }
    each_plane(out, oh * ow, oh * ow * k, |(i, dst)| {
        let (j, oc) = (i / o, i % o);
        let src = &x[(j * c + oc / per) * h * w..][..h * w];
        let plane = ForwardPlane {
            x: src,
            hw: (h, w),
            wk: &weights[oc * k..(oc + 1) * k],
            bias: bias.map(|b| b[oc]),
            t,
            ow,
            wide: paths.wide,
        };
        forward_plane(plane, dst);
    });
}

/// Depthwise transposed, one output channel per input channel (`O = C`; with more, GEMM sums each input's output
/// channels in an order of its own): `s` is `[N, C, OH, OW]` and `out` `[N, C, H, W]`. Writes every value of `out`,
/// which need not be initialized (every input position is in one residue class, and [`deal`] writes whole rows).
pub(crate) fn transpose(
    s: &[f32],
    (o, oh, ow): (usize, usize, usize),
    weights: &[f32],
    t: PlaneTaps,
    out: &mut [MaybeUninit<f32>],
    (c, h, w): (usize, usize, usize),
    paths: Depthwise,
) {
    let k = t.kernel[0] * t.kernel[1];
    assert_eq!(o, c, "one output channel per input channel");
    assert!(weights.len() == c * k && s.len().is_multiple_of(c * oh * ow));
    assert_eq!(out.len() / (c * h * w), s.len() / (c * oh * ow));
    if h * w <= paths.side_by_side {
        lanes::each_group(out, c * h * w, h * w, oh * ow * k, |j, first, dst| {
            let group = Group {
                hw: (h, w),
                wide: paths.wide,
                weights,
                t,
                first,
            };
            let planes = &s[(j * c + first) * oh * ow..][..dst.len() / (h * w) * oh * ow];
            transpose_lanes(group, planes, (oh, ow), dst);
        });
        return;
    }
    each_plane(out, h * w, oh * ow * k, |(ci, dst)| {
        let src = &s[ci * oh * ow..][..oh * ow];
        let ci = ci % c;
        let plane = TransposePlane {
            s: src,
            ohw: (oh, ow),
            wk: &weights[ci * k..(ci + 1) * k],
            t,
            w,
            wide: paths.wide,
        };
        transpose_plane(plane, dst);
    });
}
