//! Direct convolution for stride-1, unpadded, undilated, ungrouped convolutions on processors with AVX-512: the
//! product that im2col + GEMM computes, without writing the unfolded matrix (and without the GEMM packing it again),
//! reading each tap's input value straight from the input planes.
//!
//! The bits are matrixmultiply's (what `general_mat_mul` runs on the same processor, whose AVX-512 kernel is chosen
//! by the same test): each output sums its products in k order (`k = (channel, ky, kx)`, im2col's row order) in
//! blocks of [`KC`]; within a block by fused multiply-adds from zero, the first block's sum stored, each later
//! block's sum added to what is stored. Unit tests compare the two paths bit for bit.
//!
//! The transposed product (`Wᵀ s` folded back onto the input, GEMM + col2im) has a direct form too: for small
//! output planes (the shipped CNN's second convolution) and for rows of up to 32 positions on input rows of up to
//! 48 (its first); other shapes keep GEMM + col2im.

/// matrixmultiply's depth block for `f32` (`S_KC`, the same for all its kernels).
const KC: usize = 256;

/// Output positions per tile (along one output row), largest first, for tiles of one and of two vectors of
/// output channels: at most 24 accumulators, so the tile's sums stay in the 32 vector registers.
const WIDTHS_1: [usize; 6] = [24, 16, 8, 4, 2, 1];
const WIDTHS_2: [usize; 5] = [12, 8, 4, 2, 1];

/// The mask of the first `n` of a vector's sixteen lanes (all of them for `n ≥ 16`).
pub(super) fn lanes(n: usize) -> u16 {
    if n >= 16 { u16::MAX } else { (1u16 << n) - 1 }
}

/// A layer's bias as a slice for the direct kernels when `with_bias` (in place; a copy only if it is not contiguous).
pub(super) fn bias_slice(bias: &Option<ndarray::Array1<f32>>, with_bias: bool) -> Option<std::borrow::Cow<'_, [f32]>> {
    bias.as_ref()
        .filter(|_| with_bias)
        .map(|b| b.as_slice().map_or_else(|| b.to_vec().into(), Into::into))
}

/// Whether this processor runs the direct path (AVX-512F; matrixmultiply then uses its AVX-512 kernel too).
pub(crate) fn available() -> bool {
    crate::simd::wide()
}

/// A convolution prepared for the direct path: weights `[O, K]` laid out `[K, O′]` with `O′` the next multiple of 16
/// (zeros beyond `O`), so one tap's weights for sixteen output channels are one vector load, and each tap's offset
/// from an output position's top-left input value (in k order).
pub(crate) struct Prepared {
    w: Vec<f32>,
    o: usize,
    opad: usize,
    /// One offset per tap, `K` of them.
    taps: Vec<usize>,
    input: (usize, usize, usize),
    kernel: (usize, usize),
    /// The bias padded to `O′`, if it is added.
    bias: Option<Vec<f32>>,
}

impl Prepared {
    /// Prepares the weight matrix `w` (`[O, K]`, row-major, `K = C·kh·kw`) for inputs `[C, H, W]`, with the bias
    /// `[O]` to add, if any.
    pub(crate) fn new(
        w: &[f32],
        o: usize,
        (c, h, wd): (usize, usize, usize),
        (kh, kw): (usize, usize),
        bias: Option<&[f32]>,
    ) -> Self {
        let k = c * kh * kw;
        assert_eq!(w.len(), o * k);
        assert!(h >= kh && wd >= kw && kh > 0 && kw > 0);
        let opad = o.div_ceil(16) * 16;
        let mut p = vec![0.0f32; k * opad];
        for (oi, row) in w.chunks_exact(k).enumerate() {
            for (ki, &v) in row.iter().enumerate() {
                p[ki * opad + oi] = v;
            }
        }
        let taps = (0..c)
            .flat_map(|ci| (0..kh).flat_map(move |ky| (0..kw).map(move |kx| ci * h * wd + ky * wd + kx)))
            .collect();
        Prepared {
            w: p,
            o,
            opad,
            taps,
            input: (c, h, wd),
            kernel: (kh, kw),
            bias: bias.map(|b| {
                assert_eq!(b.len(), o);
                let mut v = vec![0.0f32; opad];
                v[..o].copy_from_slice(b);
                v
            }),
        }
    }
}

/// The most prepared convolutions each thread keeps (a network's layers and a rule's modified copies of them).
const CACHED: usize = 12;

/// A prepared convolution with the exact weights and bias (as bits) it was made from.
type CachedPrepared = (Vec<u32>, Option<Vec<u32>>, std::rc::Rc<Prepared>);

std::thread_local! {
    /// Each thread's recently prepared convolutions, most recently used first.
    static PREPARED: std::cell::RefCell<Vec<CachedPrepared>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`Prepared::new`], reused when this thread prepared the same weights, bias and shapes before: packing the weights
/// took 8% of an explanation at batch 1. The weights are compared bit for bit (a few µs), not trusted by address:
/// training changes a layer's weights in place.
pub(crate) fn prepared(
    w: &[f32],
    o: usize,
    input: (usize, usize, usize),
    kernel: (usize, usize),
    bias: Option<&[f32]>,
) -> std::rc::Rc<Prepared> {
    // The floats viewed as their bits: the comparison runs as one memcmp (value by value, it took a third of a
    // batch-1 explanation).
    let same = |a: &[u32], b: &[f32]| a == bytemuck::cast_slice::<f32, u32>(b);
    PREPARED.with_borrow_mut(|cache| {
        let hit = cache.iter().position(|(cw, cb, p)| {
            p.o == o
                && p.input == input
                && p.kernel == kernel
                && same(cw, w)
                && match (cb, bias) {
                    (None, None) => true,
                    (Some(a), Some(b)) => same(a, b),
                    _ => false,
                }
        });
        let entry = match hit {
            Some(i) => cache.remove(i),
            None => {
                let bits = |v: &[f32]| bytemuck::cast_slice::<f32, u32>(v).to_vec();
                (
                    bits(w),
                    bias.map(bits),
                    std::rc::Rc::new(Prepared::new(w, o, input, kernel, bias)),
                )
            }
        };
        let p = entry.2.clone();
        cache.insert(0, entry);
        cache.truncate(CACHED);
        p
    })
}

/// One sample: `xs` its input `[C, H, W]`, `out` its output `[O, OH, OW]`: every value written (the first depth
/// block stores before any is read), plus the bias where there is one (added to the finished sum, as a separate
/// `out += b` would).
pub(crate) fn forward_sample(xs: &[f32], pw: &Prepared, out: &mut [std::mem::MaybeUninit<f32>]) {
    assert!(available(), "the direct convolution needs AVX-512F");
    let ((c, h, w), (kh, kw)) = (pw.input, pw.kernel);
    let (oh, ow) = (h + 1 - kh, w + 1 - kw);
    assert_eq!(xs.len(), c * h * w);
    assert_eq!(out.len(), pw.o * oh * ow);
    let taps = &pw.taps;
    let k = taps.len();
    let two = pw.o >= 32;
    for oy in 0..oh {
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
            // tile's last output, inside `xs` because that output lies inside the output plane.
            let start = oy * w + ox;
            debug_assert!(taps[k - 1] + start + np - 1 < xs.len());
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
                    // SAFETY: AVX-512F is present (asserted above). The tile reads `xs[start + t + p]` for the taps
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
                            out.as_mut_ptr().cast::<f32>().add(ob * oh * ow + oy * ow + ox),
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
#[cfg(target_arch = "x86_64")]
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
#[cfg(target_arch = "x86_64")]
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

#[cfg(not(target_arch = "x86_64"))]
unsafe fn tile_n<const MV: usize, const NP: usize>(
    _: *const f32,
    _: &[usize],
    _: *const f32,
    _: usize,
    _: *mut f32,
    _: Dst,
) {
    unreachable!("the direct convolution runs only where available() holds")
}

/// The transposed product `Wᵀ s` folded onto the input grid (what GEMM + col2im compute), for the small output
/// planes it is written for: rows of 1, 2, 4, 8 or 16 positions (a vector of sixteen positions holds whole rows), at
/// most 64 positions, `OW + KW − 1 ≤ 16` and `KW ≤ 6`. Each tap's sum `Σ_o W[o][k]·s[o][p]` (fused multiply-adds
/// from zero in o order, as matrixmultiply's single depth block: at most 256 output channels) is added onto the
/// input row in k order (col2im's order); a row's taps `kx = 0..KW` are added in a register (shifted into place)
/// between one load and one store, because storing and reloading overlapping, shifted rows (one per tap) stalled on
/// store forwarding and made an earlier per-tap version 15% slower (CNN ε) than GEMM + col2im.
pub(crate) struct PreparedT {
    /// The weights `[C, KH, O, KW]`: each tile's `O × KW` block contiguous (read from `[O, K]` in place, the
    /// tile's weights were `K` floats apart and missed the cache).
    w: Vec<f32>,
    o: usize,
    input: (usize, usize, usize),
    kernel: (usize, usize),
    out_hw: (usize, usize),
    /// Wider planes: tiles of whole output rows ([`tile_rows`]) instead of the plane's position vectors.
    rows: bool,
    /// For [`tile_rows`], per `(kx, v, e)`: the lanes of input vector `v + e` that position vector `v`'s sums for
    /// tap `kx` land on, and the shift `d` (lane `L` takes lane `L + d`). The same for every tile, so worked out
    /// here (per tile it was 2.4% of a CNN ε run).
    shifts: [[[(u16, i32); 2]; 2]; 6],
}

/// [`PreparedT::shifts`] for rows of `ow` positions (≤ 32) on input rows of `w` values (≤ 48), kernels `kw` ≤ 6 wide.
fn row_shifts(ow: usize, w: usize, kw: usize) -> [[[(u16, i32); 2]; 2]; 6] {
    let regs = w.div_ceil(16);
    std::array::from_fn(|kx| {
        std::array::from_fn(|v| {
            // Position `16v + j` of an output row lands on input column `16v + j + kx`: lane `L` of input vector
            // `v + e` takes lane `L + d` of the sums, `d = 16e − kx`, where `0 ≤ L + d < len`.
            let len = ow.saturating_sub(16 * v).min(16) as isize;
            std::array::from_fn(|e| {
                let d = 16 * e as isize - kx as isize;
                let lo = (-d).clamp(0, 16) as u32;
                let hi = (len - d).clamp(0, 16) as u32;
                let m = if kx >= kw || hi <= lo || v + e >= regs {
                    0
                } else {
                    (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16
                };
                (m, d as i32)
            })
        })
    })
}

impl PreparedT {
    /// `w`: the weight matrix `[O, K]` (row-major, `K = C·kh·kw`) of a stride-1 unpadded convolution on inputs
    /// `[C, H, W]`; `None` when the shapes are not ones this path is written for.
    pub(crate) fn new(
        w: &[f32],
        o: usize,
        (c, h, wd): (usize, usize, usize),
        (kh, kw): (usize, usize),
    ) -> Option<Self> {
        if !available() || o == 0 || o > KC || kh == 0 || kw == 0 || h < kh || wd < kw || w.len() != o * c * kh * kw {
            return None;
        }
        let (oh, ow) = (h + 1 - kh, wd + 1 - kw);
        let small = matches!(ow, 1 | 2 | 4 | 8 | 16) && oh * ow <= 64 && ow + kw - 1 <= 16 && kw <= 6;
        // Rows of up to two vectors of positions, landing on input rows of up to three vectors.
        let rows = !small && ow <= 32 && wd <= 48 && kw <= 6;
        if !small && !rows {
            return None;
        }
        let mut packed = Vec::with_capacity(w.len());
        for ci in 0..c {
            for ky in 0..kh {
                for row in w.chunks_exact(c * kh * kw) {
                    let at = (ci * kh + ky) * kw;
                    packed.extend_from_slice(&row[at..at + kw]);
                }
            }
        }
        Some(PreparedT {
            w: packed,
            o,
            input: (c, h, wd),
            kernel: (kh, kw),
            out_hw: (oh, ow),
            rows,
            shifts: if rows {
                row_shifts(ow, wd, kw)
            } else {
                [[[(0, 0); 2]; 2]; 6]
            },
        })
    }
}

/// One sample: `ss` its output-side values `[O, OH, OW]`, `out` its input-side result `[C, H, W]`, every value of
/// which is written (`out` need not be initialised): stride 1 and no padding reach every input value, and each
/// row's first tap starts from zero, as col2im adding onto zeros does.
pub(crate) fn transpose_sample(ss: &[f32], pt: &PreparedT, out: &mut [std::mem::MaybeUninit<f32>]) {
    let ((c, h, w), (kh, kw), (oh, ow)) = (pt.input, pt.kernel, pt.out_hw);
    assert!(available(), "the direct convolution needs AVX-512F");
    assert_eq!(ss.len(), pt.o * oh * ow);
    assert_eq!(out.len(), c * h * w);
    if pt.rows {
        transpose_rows(ss, pt, out);
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
#[cfg(target_arch = "x86_64")]
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

#[cfg(not(target_arch = "x86_64"))]
unsafe fn tile_t<const NV: usize, const KW: usize>(
    _: &[f32],
    _: &PreparedT,
    _: usize,
    _: usize,
    _: &mut [std::mem::MaybeUninit<f32>],
) {
    unreachable!("the direct convolution runs only where available() holds")
}

/// `out[k] = Σ_o s[o]·w[o][k]` for one row `s` (`[O]`) and the weights `w` (`[O, K]`, row-major): the product
/// `s W` that a GEMM computes for a batch of one, the same bits (fused multiply-adds from zero in o order, in
/// blocks of [`KC`] outputs: the first block's sum stored, later blocks' added), without packing `W` (a GEMM packs
/// all of it for every call, most of a dense layer's time at batch 1). Sixteen `k` a vector, eight vectors a tile.
pub(crate) fn row_times_matrix(s: &[f32], w: &[f32], out: &mut [f32]) {
    assert!(available(), "the direct product needs AVX-512F");
    let (o, k) = (s.len(), out.len());
    assert_eq!(w.len(), o * k);
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
#[cfg(target_arch = "x86_64")]
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

#[cfg(not(target_arch = "x86_64"))]
unsafe fn row_tile(_: &[f32], _: *const f32, _: usize, _: &mut [f32], _: bool) {
    unreachable!("the direct product runs only where available() holds")
}

/// `out[n][j] = Σ_k x[n][k]·w[j][k] (+ b[j])` for a few rows `x` (`[N, K]`, N ≤ 4) and the weights `w`
/// (`[O, K]`, row-major): the dense layer's `x Wᵀ + b` as a GEMM computes it, the same bits (fused multiply-adds
/// from zero in k order in blocks of [`KC`], later blocks added, then the bias), without packing `W`: sixteen rows
/// of `W` at a time are transposed in registers so that one vector holds sixteen outputs' weights for one `k`.
pub(crate) fn rows_times_matrix_t(x: &[f32], n: usize, w: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    assert!(available(), "the direct product needs AVX-512F");
    assert!((1..=4).contains(&n) && x.len().is_multiple_of(n));
    let k = x.len() / n;
    let o = out.len() / n;
    assert_eq!(w.len(), o * k);
    assert_eq!(out.len(), n * o);
    assert!(bias.is_none_or(|b| b.len() == o));
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
#[cfg(target_arch = "x86_64")]
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

#[cfg(not(target_arch = "x86_64"))]
unsafe fn dense_tile<const N: usize>(
    _: &[f32],
    _: usize,
    _: &[f32],
    _: usize,
    _: usize,
    _: Option<&[f32]>,
    _: &mut [f32],
) {
    unreachable!("the direct product runs only where available() holds")
}

/// [`transpose_sample`] for planes whose rows are wider than the small-plane tiles take (the CNN's first
/// convolution, 24 positions a row): tiles of `NR` output rows for one `(ci, ky)`, each row as `PV` vectors of
/// sixteen positions, their `KW` taps' sums by fused multiply-adds in o order, then each input row (up to three
/// vectors) loaded once, the taps added in kx order (for one kx, the row's vectors land on disjoint columns), stored
/// once.
fn transpose_rows(ss: &[f32], pt: &PreparedT, out: &mut [std::mem::MaybeUninit<f32>]) {
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
#[cfg(target_arch = "x86_64")]
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

#[cfg(not(target_arch = "x86_64"))]
unsafe fn tile_rows<const KW: usize, const PV: usize, const NR: usize>(
    _: &[f32],
    _: &PreparedT,
    _: usize,
    _: usize,
    _: usize,
    _: &mut [std::mem::MaybeUninit<f32>],
) {
    unreachable!("the direct convolution runs only where available() holds")
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn transpose16_transposes() {
        if !available() {
            eprintln!("no AVX-512F here: nothing to test");
            return;
        }
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
