//! The AVX-512 kernels of the direct path (x86-64; run only where the processor has AVX-512F, which
//! [`super::Kernels`] checks). Every function here is `unsafe`: its caller in `super` checks the lengths.

use super::{KC, Prepared, PreparedT, WIDTHS_1, WIDTHS_2, lanes};

/// [`super::forward_sample`] by tiles of one or two vectors of output channels by up to 24 positions.
///
/// # Safety
/// AVX-512F must be present and the lengths those [`super::forward_sample`] checks.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn forward_sample(xs: &[f32], pw: &Prepared, out: &mut [std::mem::MaybeUninit<f32>]) {
    let (h, kh) = (pw.input.1, pw.kernel.0);
    // SAFETY: the caller's contract; every output row of `out` (its whole length, checked by the caller).
    unsafe { forward_rows(xs, pw, out.as_mut_ptr().cast::<f32>(), 0..h + 1 - kh) }
}

/// [`forward_sample`] for the output rows `rows` only: writes exactly the values of those rows (in every output
/// channel) and reads nothing else of `out`, so calls for disjoint row ranges may run at the same time.
///
/// # Safety
/// AVX-512F must be present, the lengths those [`super::forward_sample`] checks, `out` valid for writes of the
/// sample's `O·OH·OW` values, `rows` within `0..OH`, and no other access to those rows' values during the call.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn forward_rows(xs: &[f32], pw: &Prepared, out: *mut f32, rows: std::ops::Range<usize>) {
    let ((c, h, w), (kh, kw)) = (pw.input, pw.kernel);
    let (oh, ow) = (h + 1 - kh, w + 1 - kw);
    debug_assert_eq!(xs.len(), c * h * w);
    debug_assert!(rows.end <= oh);
    let taps = &pw.taps;
    let k = taps.len();
    let two = pw.o >= 32;
    for oy in rows {
        let mut ox = 0;
        while ox < ow {
            let left = ow - ox;
            let np = if two {
                WIDTHS_2.into_iter().find(|&n| n <= left)
            } else {
                WIDTHS_1.into_iter().find(|&n| n <= left)
            }
            .expect("width 1 is in both lists");
            // The largest tap offset read is `taps[K − 1] + (oy·w + ox) + np − 1`: the last input value of the
            // tile's last output, inside `xs` because that output lies inside the output plane (checked by the
            // caller for the plane's last output).
            let start = oy * w + ox;
            let mut ob = 0;
            while ob < pw.o {
                let mv = if pw.o - ob >= 32 { 2 } else { 1 };
                let lanes = (16 * mv).min(pw.o - ob);
                for (block, k0) in (0..k).step_by(KC).enumerate() {
                    let k1 = (k0 + KC).min(k);
                    let dst = Dst {
                        first: block == 0,
                        lanes,
                        stride: oh * ow,
                        // SAFETY: `ob + 16·mv ≤ O′`, the padded bias's length.
                        bias: match &pw.bias {
                            Some(b) if k1 == k => unsafe { b.as_ptr().add(ob) },
                            _ => std::ptr::null(),
                        },
                    };
                    // SAFETY: AVX-512F is present (the caller's contract). The tile reads `xs[start + t + p]` for the taps
                    // `t` of `taps[k0..k1]` and `p < np` (inside `xs`, see above) and the packed weights
                    // `w[k·O′ + ob .. k·O′ + ob + 16·mv]` for `k < K` (inside: `ob + 16·mv ≤ O′`); it writes
                    // `out[(ob + lane)·OH·OW + oy·OW + ox + p]` for `lane < lanes` (`ob + lanes ≤ O`) and `p < np`
                    // (`ox + np ≤ OW`), inside `out` (`O·OH·OW` values, asserted above).
                    unsafe {
                        tile(
                            mv,
                            np,
                            xs.as_ptr().add(start),
                            &taps[k0..k1],
                            pw.w.as_ptr().add(k0 * pw.opad + ob),
                            pw.opad,
                            out.add(ob * oh * ow + oy * ow + ox),
                            dst,
                        )
                    };
                }
                ob += 16 * mv;
            }
            ox += np;
        }
    }
}

/// Where a tile's sums go: `lanes` output channels (the rest of its `16·MV` are padding), `stride` values apart
/// (one output plane); `first`: the first depth block (its sums are stored; later blocks' are added); `bias`: null,
/// or (in the last depth block) the tile's `16·MV` bias values, added to the finished sums.
#[derive(Clone, Copy)]
struct Dst {
    first: bool,
    lanes: usize,
    stride: usize,
    bias: *const f32,
}

/// Dispatches to the tile of `mv` vectors of output channels by `np` positions.
///
/// # Safety
/// As [`tile_n`].
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    mv: usize,
    np: usize,
    x: *const f32,
    taps: &[usize],
    w: *const f32,
    opad: usize,
    out: *mut f32,
    dst: Dst,
) {
    macro_rules! go {
        ($m:literal, $n:literal) => {
            // SAFETY: forwarded from the caller.
            unsafe { tile_n::<$m, $n>(x, taps, w, opad, out, dst) }
        };
    }
    match (mv, np) {
        (1, 24) => go!(1, 24),
        (1, 16) => go!(1, 16),
        (1, 8) => go!(1, 8),
        (1, 4) => go!(1, 4),
        (1, 2) => go!(1, 2),
        (1, 1) => go!(1, 1),
        (1, 12) => go!(1, 12),
        (2, 12) => go!(2, 12),
        (2, 8) => go!(2, 8),
        (2, 4) => go!(2, 4),
        (2, 2) => go!(2, 2),
        (2, 1) => go!(2, 1),
        _ => unreachable!("tile {mv}×{np} is not in the width lists"),
    }
}

/// Sums over `taps` (one depth block) for `NP` consecutive output positions and `16·MV` output channels:
/// `Σ_k w[k][16m + lane] · x[taps[k] + p]` by fused multiply-adds from zero in k order, then written to
/// `out[(16m + lane)·stride + p]` for the `dst.lanes` real channels: stored (first block) or added to what is there,
/// sixteen positions at a time after an in-register transpose (the sums are held channel-wise, the output is
/// position-wise).
///
/// # Safety
/// AVX-512F must be present; `x[taps[k] + p]` for every tap and `p < NP`, `w[k·opad + j]` for `k < taps.len()` and
/// `j < 16·MV`, `out[lane·stride + p]` for `lane < dst.lanes ≤ 16·MV` and `p < NP` (written before read), and
/// `dst.bias[..16·MV]` unless null, must be valid.
#[target_feature(enable = "avx512f")]
// `p` indexes the input row and the accumulators' second axis alike; the loops unroll fully (constant bounds).
#[allow(clippy::needless_range_loop)]
unsafe fn tile_n<const MV: usize, const NP: usize>(
    x: *const f32,
    taps: &[usize],
    w: *const f32,
    opad: usize,
    out: *mut f32,
    dst: Dst,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); NP]; MV];
    for (k, &t) in taps.iter().enumerate() {
        // SAFETY (pointer reads): within the ranges the caller vouches for.
        let wk = unsafe { w.add(k * opad) };
        let xk = unsafe { x.add(t) };
        let wv: [__m512; MV] = std::array::from_fn(|m| unsafe { _mm512_loadu_ps(wk.add(16 * m)) });
        for p in 0..NP {
            let xv = _mm512_set1_ps(unsafe { *xk.add(p) });
            for m in 0..MV {
                acc[m][p] = _mm512_fmadd_ps(wv[m], xv, acc[m][p]);
            }
        }
    }
    for (m, acc) in acc.iter().enumerate() {
        let channels = dst.lanes.saturating_sub(16 * m).min(16);
        for p0 in (0..NP).step_by(16) {
            let count = (NP - p0).min(16);
            let mut rows = [_mm512_setzero_ps(); 16];
            rows[..count].copy_from_slice(&acc[p0..p0 + count]);
            let cols = transpose16(rows);
            let mask = lanes(count);
            for (lane, &col) in cols.iter().enumerate().take(channels) {
                // SAFETY: channel `16m + lane < dst.lanes`, positions `p0..p0 + count ≤ NP`: valid (caller).
                unsafe {
                    let d = out.add((16 * m + lane) * dst.stride + p0);
                    let mut v = if dst.first {
                        col
                    } else {
                        // matrixmultiply's epilogue with β = 1: the block's sum plus what is stored.
                        _mm512_add_ps(col, _mm512_maskz_loadu_ps(mask, d))
                    };
                    if !dst.bias.is_null() {
                        v = _mm512_add_ps(v, _mm512_set1_ps(*dst.bias.add(16 * m + lane)));
                    }
                    _mm512_mask_storeu_ps(d, mask, v);
                }
            }
        }
    }
}

/// The 16×16 transpose: `out[j]` lane `i` = `rows[i]` lane `j`.
#[target_feature(enable = "avx512f")]
fn transpose16(r: [std::arch::x86_64::__m512; 16]) -> [std::arch::x86_64::__m512; 16] {
    use std::arch::x86_64::*;
    // Pairs of rows interleaved by element, then by pairs of elements, then by 128-bit lanes twice.
    let t: [__m512; 16] = std::array::from_fn(|i| {
        let (a, b) = (r[2 * (i / 2)], r[2 * (i / 2) + 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_ps(a, b)
        } else {
            _mm512_unpackhi_ps(a, b)
        }
    });
    let u: [__m512; 16] = std::array::from_fn(|i| {
        let g = 4 * (i / 4);
        let (a, b) = match i % 4 {
            0 | 1 => (t[g], t[g + 2]),
            _ => (t[g + 1], t[g + 3]),
        };
        if i % 2 == 0 {
            _mm512_shuffle_ps::<0x44>(a, b)
        } else {
            _mm512_shuffle_ps::<0xee>(a, b)
        }
    });
    let v: [__m512; 16] = std::array::from_fn(|i| {
        let g = 8 * (i / 8);
        let (a, b) = (u[g + i % 4], u[g + i % 4 + 4]);
        if i % 8 < 4 {
            _mm512_shuffle_f32x4::<0x88>(a, b)
        } else {
            _mm512_shuffle_f32x4::<0xdd>(a, b)
        }
    });
    std::array::from_fn(|i| {
        let (a, b) = (v[i % 8], v[i % 8 + 8]);
        if i < 8 {
            _mm512_shuffle_f32x4::<0x88>(a, b)
        } else {
            _mm512_shuffle_f32x4::<0xdd>(a, b)
        }
    })
}

/// [`super::transpose_sample`]: small planes by [`tile_t`], wider ones by [`transpose_rows`].
///
/// # Safety
/// AVX-512F must be present and the shapes those [`super::transpose_sample`] checks.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn transpose_sample(ss: &[f32], pt: &PreparedT, out: &mut [std::mem::MaybeUninit<f32>]) {
    let ((c, h, w), (kh, kw), (oh, ow)) = (pt.input, pt.kernel, pt.out_hw);
    let _ = (h, w, oh, ow);
    if pt.rows {
        // SAFETY: forwarded from the caller.
        unsafe { transpose_rows(ss, pt, out) };
        return;
    }
    let vectors = (oh * ow).div_ceil(16);
    for ci in 0..c {
        for ky in 0..kh {
            macro_rules! go {
                ($v:literal, $k:literal) => {
                    // SAFETY: AVX-512F is present; the shapes were checked by `PreparedT::new` and above.
                    unsafe { tile_t::<$v, $k>(ss, pt, ci, ky, out) }
                };
            }
            match (vectors, kw) {
                (1, 1) => go!(1, 1),
                (1, 2) => go!(1, 2),
                (1, 3) => go!(1, 3),
                (1, 4) => go!(1, 4),
                (1, 5) => go!(1, 5),
                (1, 6) => go!(1, 6),
                (2, 1) => go!(2, 1),
                (2, 2) => go!(2, 2),
                (2, 3) => go!(2, 3),
                (2, 4) => go!(2, 4),
                (2, 5) => go!(2, 5),
                (2, 6) => go!(2, 6),
                (3, 1) => go!(3, 1),
                (3, 2) => go!(3, 2),
                (3, 3) => go!(3, 3),
                (3, 4) => go!(3, 4),
                (3, 5) => go!(3, 5),
                (3, 6) => go!(3, 6),
                (4, 1) => go!(4, 1),
                (4, 2) => go!(4, 2),
                (4, 3) => go!(4, 3),
                (4, 4) => go!(4, 4),
                (4, 5) => go!(4, 5),
                (4, 6) => go!(4, 6),
                _ => unreachable!("shapes checked by PreparedT::new"),
            }
        }
    }
}

/// The taps `(ci, ky, 0..KW)` over all `NV` position vectors: sums by fused multiply-adds, then each output row's
/// contributions added onto input row `oy + ky`, `kx` in order.
///
/// # Safety
/// AVX-512F must be present and the shapes those [`transpose_sample`] checks (through [`PreparedT::new`]), with
/// `NV` the number of position vectors and `KW` the kernel width.
#[target_feature(enable = "avx512f")]
#[allow(clippy::needless_range_loop)]
unsafe fn tile_t<const NV: usize, const KW: usize>(
    ss: &[f32],
    pt: &PreparedT,
    ci: usize,
    ky: usize,
    out: &mut [std::mem::MaybeUninit<f32>],
) {
    use std::arch::x86_64::*;
    let ((_, h, w), (kh, _), (oh, ow)) = (pt.input, pt.kernel, pt.out_hw);
    let positions = oh * ow;
    let block = pt.w.as_ptr().wrapping_add((ci * kh + ky) * pt.o * KW);
    let masks: [__mmask16; NV] = std::array::from_fn(|v| lanes(positions - 16 * v));
    let mut acc = [[_mm512_setzero_ps(); NV]; KW];
    let s = ss.as_ptr();
    for o in 0..pt.o {
        // SAFETY: `o·P + 16v` plus the masked lanes lie below `O·P = ss.len()`; the tile's weight block holds `O·KW` values.
        let sv: [__m512; NV] =
            std::array::from_fn(|v| unsafe { _mm512_maskz_loadu_ps(masks[v], s.add(o * positions + 16 * v)) });
        for kx in 0..KW {
            let wb = _mm512_set1_ps(unsafe { *block.add(o * KW + kx) });
            for v in 0..NV {
                acc[kx][v] = _mm512_fmadd_ps(wb, sv[v], acc[kx][v]);
            }
        }
    }
    // Each output row `oy` (lanes `j0..j0 + ow` of its vector) lands on input row `oy + ky`, columns `kx..kx + ow`
    // for tap `kx`: the input row's first `ow + KW − 1` values, loaded once, the taps added in order, stored once.
    let seg: __mmask16 = ((1u32 << (ow + KW - 1)) - 1) as u16;
    let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let plane = ci * h * w;
    let rows_per_vector = 16 / ow;
    // All the rows are loaded before any is stored: a masked store followed by a load of the next row (adjacent
    // memory, within the store's 64 bytes) waited for the store to finish, every row.
    // Uninitialised: only the first `oh` are used, each set below (a zeroed array of 64 was a 4 KB memset per
    // call, 80 calls a sample for the CNN's second convolution).
    let mut rows = [std::mem::MaybeUninit::<__m512>::uninit(); 64];
    let base = out.as_mut_ptr().cast::<f32>();
    for (oy, x) in rows.iter_mut().enumerate().take(oh) {
        // Input row `oy + ky` was reached before unless this is its first tap (`ky = 0`, or the last output row
        // for a later `ky`): then it starts from zero (the output is not zeroed beforehand; col2im adds onto zeros,
        // the same bits).
        x.write(if ky > 0 && oy + 1 < oh {
            // SAFETY: row `oy + ky < H` of plane `ci`, written by an earlier tap; its first `ow + KW − 1 = w`
            // values lie inside `out`.
            unsafe { _mm512_maskz_loadu_ps(seg, base.add(plane + (oy + ky) * w)) }
        } else {
            _mm512_setzero_ps()
        });
    }
    // `v` runs over a constant range so the sums stay in registers (a run-time index spilled them to the stack).
    for v in 0..NV {
        for r in 0..rows_per_vector {
            let oy = v * rows_per_vector + r;
            if oy >= oh {
                break;
            }
            let j0 = r * ow;
            // SAFETY: rows `0..oh` were set above.
            let mut x = unsafe { rows[oy].assume_init() };
            for kx in 0..KW {
                // Lane `L` of the row takes lane `L + j0 − kx` of the tap's sums, for `L` in `kx..kx + ow`.
                let idx = _mm512_add_epi32(iota, _mm512_set1_epi32(j0 as i32 - kx as i32));
                let shifted = _mm512_permutexvar_ps(idx, acc[kx][v]);
                let lanes = (((1u32 << ow) - 1) << kx) as u16;
                x = _mm512_mask_add_ps(x, lanes, x, shifted);
            }
            rows[oy].write(x);
        }
    }
    for (oy, x) in rows.iter().enumerate().take(oh) {
        // SAFETY: as the loads above; rows `0..oh` were set.
        unsafe { _mm512_mask_storeu_ps(base.add(plane + (oy + ky) * w), seg, x.assume_init()) };
    }
}

/// [`super::row_times_matrix`]: sixteen `k` a vector, eight vectors a tile.
///
/// # Safety
/// AVX-512F must be present and the lengths those [`super::row_times_matrix`] checks.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn row_times_matrix(s: &[f32], w: &[f32], out: &mut [f32]) {
    let (o, k) = (s.len(), out.len());
    for k0 in (0..k).step_by(128) {
        for (block, o0) in (0..o).step_by(KC).enumerate() {
            let o1 = (o0 + KC).min(o);
            // SAFETY: AVX-512F is present; the tile reads `s[o0..o1]`, `w[oi·K + k0 + j]` and writes `out[k0 + j]`
            // for `j < min(128, K − k0)` only (masked), inside the asserted lengths.
            unsafe { row_tile(&s[o0..o1], w.as_ptr().add(o0 * k + k0), k, &mut out[k0..], block == 0) };
        }
    }
}

/// One tile of [`row_times_matrix`]: `out[j] (+)= Σ_i s[i]·w[i·stride + j]` for `j < min(128, out.len())`.
///
/// # Safety
/// AVX-512F must be present and `w[i·stride + j]` valid for `i < s.len()` and those `j`.
#[target_feature(enable = "avx512f")]
unsafe fn row_tile(s: &[f32], w: *const f32, stride: usize, out: &mut [f32], first: bool) {
    use std::arch::x86_64::*;
    let n = out.len().min(128);
    let masks: [__mmask16; 8] = std::array::from_fn(|v| lanes(n.saturating_sub(16 * v)));
    let mut acc = [_mm512_setzero_ps(); 8];
    for (i, &si) in s.iter().enumerate() {
        let b = _mm512_set1_ps(si);
        // SAFETY: only the masked lanes (`j < n`) are read, valid by the caller's contract.
        let row = unsafe { w.add(i * stride) };
        for (v, a) in acc.iter_mut().enumerate() {
            *a = _mm512_fmadd_ps(b, unsafe { _mm512_maskz_loadu_ps(masks[v], row.add(16 * v)) }, *a);
        }
    }
    let d = out.as_mut_ptr();
    for (v, &a) in acc.iter().enumerate() {
        // SAFETY: lanes `16v + L < n ≤ out.len()` only.
        unsafe {
            let p = d.add(16 * v);
            let x = if first {
                a
            } else {
                _mm512_add_ps(a, _mm512_maskz_loadu_ps(masks[v], p))
            };
            _mm512_mask_storeu_ps(p, masks[v], x);
        }
    }
}

/// [`super::rows_times_matrix_t`]: sixteen rows of `W` at a time are transposed in registers so that one vector
/// holds sixteen outputs' weights for one `k`.
///
/// # Safety
/// AVX-512F must be present and the lengths those [`super::rows_times_matrix_t`] checks.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn rows_times_matrix_t(x: &[f32], n: usize, w: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    let k = x.len() / n;
    let o = out.len() / n;
    for j0 in (0..o).step_by(16) {
        macro_rules! go {
            ($n:literal) => {
                // SAFETY: AVX-512F is present; the tile reads rows `j0..min(j0 + 16, O)` of `w` (all `K` values),
                // `x`'s `N·K` values and `bias[j0..]` up to `O`, and writes `out[n·O + j]` for those `j` (asserted
                // lengths above; partial rows and vectors are masked).
                unsafe { dense_tile::<$n>(x, k, w, o, j0, bias, out) }
            };
        }
        match n {
            1 => go!(1),
            2 => go!(2),
            3 => go!(3),
            _ => go!(4),
        }
    }
}

/// Outputs `j0..j0 + 16` (those below `o`) of [`rows_times_matrix_t`] for `N` rows.
///
/// # Safety
/// AVX-512F must be present and the lengths those [`rows_times_matrix_t`] asserts.
#[target_feature(enable = "avx512f")]
unsafe fn dense_tile<const N: usize>(
    x: &[f32],
    k: usize,
    w: &[f32],
    o: usize,
    j0: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    use std::arch::x86_64::*;
    let rows = (o - j0).min(16);
    let jmask = lanes(rows);
    let mut total = [_mm512_setzero_ps(); N];
    for (block, kb) in (0..k).step_by(KC).enumerate() {
        let ke = (kb + KC).min(k);
        let mut acc = [_mm512_setzero_ps(); N];
        for k0 in (kb..ke).step_by(16) {
            let cols = (ke - k0).min(16);
            let kmask = lanes(cols);
            // SAFETY: row `j0 + r < o`, columns `k0..k0 + cols ≤ K` (masked).
            let r: [__m512; 16] = std::array::from_fn(|r| {
                if r < rows {
                    unsafe { _mm512_maskz_loadu_ps(kmask, w.as_ptr().add((j0 + r) * k + k0)) }
                } else {
                    _mm512_setzero_ps()
                }
            });
            let t = transpose16(r);
            for (kk, &wk) in t.iter().enumerate().take(cols) {
                for (s, a) in acc.iter_mut().enumerate() {
                    let xv = _mm512_set1_ps(x[s * k + k0 + kk]);
                    *a = _mm512_fmadd_ps(xv, wk, *a);
                }
            }
        }
        for (t, a) in total.iter_mut().zip(acc) {
            // matrixmultiply's epilogue: the first depth block stored, later ones added (β = 1).
            *t = if block == 0 { a } else { _mm512_add_ps(a, *t) };
        }
    }
    // SAFETY: `bias[j0..j0 + rows]` and `out[s·o + j0..][..rows]` (masked) lie inside the asserted lengths.
    let b = bias.map(|b| unsafe { _mm512_maskz_loadu_ps(jmask, b.as_ptr().add(j0)) });
    for (s, &t) in total.iter().enumerate() {
        let v = match b {
            Some(b) => _mm512_add_ps(t, b),
            None => t,
        };
        unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().add(s * o + j0), jmask, v) };
    }
}

/// [`super::transpose_sample`] for planes whose rows are wider than the small-plane tiles take (the CNN's first
/// convolution, 24 positions a row): tiles of `NR` output rows for one `(ci, ky)`, each row as `PV` vectors of
/// sixteen positions, their `KW` taps' sums by fused multiply-adds in o order, then each input row (up to three
/// vectors) loaded once, the taps added in kx order (for one kx, the row's vectors land on disjoint columns), stored
/// once.
#[target_feature(enable = "avx512f")]
unsafe fn transpose_rows(ss: &[f32], pt: &PreparedT, out: &mut [std::mem::MaybeUninit<f32>]) {
    let ((c, _, _), (kh, kw), (oh, ow)) = (pt.input, pt.kernel, pt.out_hw);
    let pv = ow.div_ceil(16);
    for ci in 0..c {
        for ky in 0..kh {
            let mut oy = 0;
            while oy < oh {
                // Tiles of `NR` rows (`KW·PV·NR ≤ 24` sums in registers, at most 8 rows), one row at a time for
                // the last rows when fewer than `NR` are left.
                macro_rules! tiles {
                    ($(($k:literal, $p:literal, $n:literal)),*) => {
                        match (kw, pv) {
                            $(($k, $p) => {
                                // SAFETY: AVX-512F is present and the shapes were checked by `PreparedT::new` and
                                // `transpose_sample`; the tile's rows lie below OH.
                                if oh - oy >= $n {
                                    unsafe { tile_rows::<$k, $p, $n>(ss, pt, ci, ky, oy, out) };
                                    oy += $n;
                                } else {
                                    unsafe { tile_rows::<$k, $p, 1>(ss, pt, ci, ky, oy, out) };
                                    oy += 1;
                                }
                            })*
                            _ => unreachable!("shapes checked by PreparedT::new"),
                        }
                    };
                }
                tiles!(
                    (1, 1, 8),
                    (2, 1, 8),
                    (3, 1, 8),
                    (4, 1, 6),
                    (5, 1, 4),
                    (6, 1, 4),
                    (1, 2, 8),
                    (2, 2, 6),
                    (3, 2, 4),
                    (4, 2, 3),
                    (5, 2, 2),
                    (6, 2, 2)
                );
            }
        }
    }
}

/// Output rows `oy0..oy0 + NR` of one `(ci, ky)`: see [`transpose_rows`].
///
/// # Safety
/// AVX-512F must be present, the shapes those [`transpose_sample`] checks for a rows-kind [`PreparedT`] (so
/// `ow ≤ 16·PV`, `W ≤ 48`), `KW` the kernel width and `oy0 + NR ≤ OH`.
#[target_feature(enable = "avx512f")]
#[allow(clippy::needless_range_loop)]
unsafe fn tile_rows<const KW: usize, const PV: usize, const NR: usize>(
    ss: &[f32],
    pt: &PreparedT,
    ci: usize,
    ky: usize,
    oy0: usize,
    out: &mut [std::mem::MaybeUninit<f32>],
) {
    use std::arch::x86_64::*;
    let ((_, h, w), (kh, _), (oh, ow)) = (pt.input, pt.kernel, pt.out_hw);
    debug_assert!(oy0 + NR <= oh && ow <= 16 * PV && w <= 48);
    let positions = oh * ow;
    let len: [usize; PV] = std::array::from_fn(|v| ow.saturating_sub(16 * v).min(16));
    let pmask: [__mmask16; PV] = std::array::from_fn(|v| lanes(len[v]));
    let block = pt.w.as_ptr().wrapping_add((ci * kh + ky) * pt.o * KW);
    let s = ss.as_ptr();
    let mut acc = [[[_mm512_setzero_ps(); PV]; NR]; KW];
    for o in 0..pt.o {
        // SAFETY: row `oy0 + r < OH` of channel `o`, its first `len[v]` positions of vector `v` (masked): inside
        // `ss` (`O·OH·OW` values); the tile's weight block holds `O·KW` values.
        let sv: [[__m512; PV]; NR] = std::array::from_fn(|r| {
            std::array::from_fn(|v| unsafe {
                _mm512_maskz_loadu_ps(pmask[v], s.add(o * positions + (oy0 + r) * ow + 16 * v))
            })
        });
        for kx in 0..KW {
            let wb = _mm512_set1_ps(unsafe { *block.add(o * KW + kx) });
            for r in 0..NR {
                for v in 0..PV {
                    acc[kx][r][v] = _mm512_fmadd_ps(wb, sv[r][v], acc[kx][r][v]);
                }
            }
        }
    }
    let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let regs = w.div_ceil(16);
    let rmask: [__mmask16; 3] = std::array::from_fn(|i| lanes(w.saturating_sub(16 * i)));
    let plane = ci * h * w;
    let base = out.as_mut_ptr().cast::<f32>();
    // Every row of the tile is loaded before any is stored (a masked store followed by a load of the next row,
    // within the store's 64 bytes, waits for the store). A row's first tap starts from zero instead (see
    // `tile_t`).
    let mut rows = [[_mm512_setzero_ps(); 3]; NR];
    for (r, row) in rows.iter_mut().enumerate() {
        if ky == 0 || oy0 + r + 1 == oh {
            continue;
        }
        let at = plane + (oy0 + r + ky) * w;
        for i in 0..regs {
            // SAFETY: input row `oy0 + r + ky < H` of plane `ci`, written by an earlier tap, its `w` values
            // (masked): inside `out`.
            row[i] = unsafe { _mm512_maskz_loadu_ps(rmask[i], base.add(at + 16 * i)) };
        }
    }
    let shift: [[[(__mmask16, __m512i); 2]; PV]; KW] = std::array::from_fn(|kx| {
        std::array::from_fn(|v| {
            std::array::from_fn(|e| {
                let (m, d) = pt.shifts[kx][v][e];
                (m, _mm512_add_epi32(iota, _mm512_set1_epi32(d)))
            })
        })
    });
    for (r, row) in rows.iter_mut().enumerate() {
        for kx in 0..KW {
            for v in 0..PV {
                // `v + e ≤ 2` (PV ≤ 2): always one of the row's three registers; an empty mask adds nothing.
                for e in 0..2 {
                    let (m, idx) = shift[kx][v][e];
                    let shifted = _mm512_permutexvar_ps(idx, acc[kx][r][v]);
                    row[v + e] = _mm512_mask_add_ps(row[v + e], m, row[v + e], shifted);
                }
            }
        }
    }
    for (r, row) in rows.iter().enumerate() {
        let at = plane + (oy0 + r + ky) * w;
        for i in 0..regs {
            // SAFETY: as the loads above.
            unsafe { _mm512_mask_storeu_ps(base.add(at + 16 * i), rmask[i], row[i]) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(not(lrp_avx512_host), ignore = "this machine has no AVX-512F")]
    fn transpose16_transposes() {
        assert!(
            super::super::available(),
            "the build found AVX-512F on this machine, the run does not"
        );
        use std::arch::x86_64::*;
        let m: Vec<f32> = (0..256).map(|i| i as f32).collect();
        // SAFETY: AVX-512F is present; loads and stores of 16 values within `m` and `t`.
        let t = unsafe {
            let rows: [__m512; 16] = std::array::from_fn(|i| _mm512_loadu_ps(m.as_ptr().add(16 * i)));
            let cols = transpose16(rows);
            let mut t = vec![0.0f32; 256];
            for (j, c) in cols.iter().enumerate() {
                _mm512_storeu_ps(t.as_mut_ptr().add(16 * j), *c);
            }
            t
        };
        for i in 0..16 {
            for j in 0..16 {
                assert_eq!(t[16 * j + i], m[16 * i + j], "row {i} column {j}");
            }
        }
    }
}
