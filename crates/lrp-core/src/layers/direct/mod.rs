//! Direct convolution for stride-1, unpadded, undilated, ungrouped convolutions: the product that im2col + GEMM
//! computes, without writing the unfolded matrix (and without the GEMM packing it again), reading each tap's input
//! value straight from the input planes; and the direct small-batch products of dense layers.
//!
//! This module holds the safe entry points, every length check, and the choice of kernels ([`Kernels`]): the
//! AVX-512 kernels in `avx512` (x86-64 only, run where the processor has AVX-512F: the only `unsafe` of the
//! direct path), and the portable kernels in `portable`, plain loops that compute the same values in the same
//! order. The layers take the direct path only where the AVX-512 kernels run ([`available`]); the tests run the
//! portable kernels on every machine and compare both with GEMM bit for bit.
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
pub(crate) fn lanes(n: usize) -> u16 {
    if n >= 16 { u16::MAX } else { (1u16 << n) - 1 }
}

/// A layer's bias as a slice for the direct kernels when `with_bias` (in place; a copy only if it is not contiguous).
pub(crate) fn bias_slice(bias: &Option<ndarray::Array1<f32>>, with_bias: bool) -> Option<std::borrow::Cow<'_, [f32]>> {
    bias.as_ref()
        .filter(|_| with_bias)
        .map(|b| b.as_slice().map_or_else(|| b.to_vec().into(), Into::into))
}

/// Whether this processor runs the direct path (AVX-512F; matrixmultiply then uses its AVX-512 kernel too).
pub(crate) fn available() -> bool {
    crate::simd::wide()
}

#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;

/// Which implementation of the direct kernels runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kernels {
    /// Vector kernels for processors with AVX-512F (checked when chosen).
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// Plain loops: the same values in the same order, on any processor. The layers never choose them (GEMM is
    /// faster); the tests run them on every machine as the reference the AVX-512 kernels are held to.
    #[cfg_attr(not(test), allow(dead_code))]
    Portable,
}

impl Kernels {
    /// The kernels the layers use: the AVX-512 ones where this processor has AVX-512F, else none (the layers then
    /// keep to GEMM, which is faster than the portable loops).
    pub(crate) fn fast() -> Option<Kernels> {
        #[cfg(target_arch = "x86_64")]
        if available() {
            return Some(Kernels::Avx512);
        }
        None
    }
}

/// A convolution prepared for the direct path: weights `[O, K]` laid out `[K, O′]` with `O′` the next multiple of 16
/// (zeros beyond `O`), so one tap's weights for sixteen output channels are one vector load, and each tap's offset
/// from an output position's top-left input value (in k order).
pub(crate) struct Prepared {
    pub(super) w: Vec<f32>,
    pub(super) o: usize,
    pub(super) opad: usize,
    /// One offset per tap, `K` of them.
    pub(super) taps: Vec<usize>,
    pub(super) input: (usize, usize, usize),
    pub(super) kernel: (usize, usize),
    /// The bias padded to `O′`, if it is added.
    pub(super) bias: Option<Vec<f32>>,
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

/// The most prepared convolutions each thread keeps (a network's layers and a rule's modified copies of them): a
/// ResNet-50 has 53 convolutions, and with 12 each was prepared again for the backward pass (a tenth of a photo's
/// explanation).
const CACHED: usize = 64;

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
pub(crate) fn forward_sample(xs: &[f32], pw: &Prepared, out: &mut [std::mem::MaybeUninit<f32>], kernels: Kernels) {
    let ((c, h, w), (kh, kw)) = (pw.input, pw.kernel);
    let (oh, ow) = (h + 1 - kh, w + 1 - kw);
    assert_eq!(xs.len(), c * h * w);
    assert_eq!(out.len(), pw.o * oh * ow);
    assert!(pw.o > 0 && pw.opad >= pw.o && pw.w.len() == pw.taps.len() * pw.opad);
    assert!(pw.bias.as_ref().is_none_or(|b| b.len() == pw.opad));
    // The largest input offset any output reads: the last tap of the last output position. The kernels read
    // `xs[start + t + p]` for output positions `start + p` of the plane and taps `t`, all below this.
    let last = pw.taps.last().copied().unwrap_or(0) + (oh - 1) * w + (ow - 1);
    assert!(last < xs.len(), "tap offset {last} outside the input of {}", xs.len());
    match kernels {
        #[cfg(target_arch = "x86_64")]
        Kernels::Avx512 => {
            assert!(available(), "the AVX-512 kernels need AVX-512F");
            let threads = rayon::current_num_threads();
            let work = pw.o * oh * ow * pw.taps.len();
            if threads < 2 || oh < 2 || work < super::PAR_MIN_MACS {
                // SAFETY: AVX-512F is present; lengths and the largest offset are checked above.
                return unsafe { avx512::forward_sample(xs, pw, out) };
            }
            // A large sample (a photo's convolution) by bands of output rows on the threads of the pool this runs
            // in: each output value is computed as in one call (its sums do not depend on the band).
            let band = oh.div_ceil(threads);
            let dst = SendPtr(out.as_mut_ptr().cast::<f32>());
            rayon::scope(move |scope| {
                for start in (0..oh).step_by(band) {
                    let rows = start..(start + band).min(oh);
                    scope.spawn(move |_| {
                        let dst = dst;
                        // SAFETY: AVX-512F is present; lengths and the largest offset are checked above; `dst` is
                        // `out`, valid for its `O·OH·OW` writes until the scope ends (it borrows `out`); the bands
                        // are disjoint ranges of output rows, so no value is written by two calls, and nothing else
                        // reads or writes `out` until the scope ends.
                        unsafe { avx512::forward_rows(xs, pw, dst.0, rows) }
                    });
                }
            });
        }
        Kernels::Portable => portable::forward_sample(xs, pw, out),
    }
}

/// A pointer to a sample's output handed to the threads that write disjoint parts of it.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: only used by `forward_sample`, whose tasks write disjoint output rows within a scope that borrows `out`.
unsafe impl Send for SendPtr {}

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
    pub(super) w: Vec<f32>,
    pub(super) o: usize,
    pub(super) input: (usize, usize, usize),
    pub(super) kernel: (usize, usize),
    pub(super) out_hw: (usize, usize),
    /// Wider planes: tiles of whole output rows ([`tile_rows`]) instead of the plane's position vectors.
    pub(super) rows: bool,
    /// For [`tile_rows`], per `(kx, v, e)`: the lanes of input vector `v + e` that position vector `v`'s sums for
    /// tap `kx` land on, and the shift `d` (lane `L` takes lane `L + d`). The same for every tile, so worked out
    /// here (per tile it was 2.4% of a CNN ε run).
    pub(super) shifts: [[[(u16, i32); 2]; 2]; 6],
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
        if o == 0 || o > KC || kh == 0 || kw == 0 || h < kh || wd < kw || w.len() != o * c * kh * kw {
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
pub(crate) fn transpose_sample(ss: &[f32], pt: &PreparedT, out: &mut [std::mem::MaybeUninit<f32>], kernels: Kernels) {
    let ((c, h, w), (kh, kw), (oh, ow)) = (pt.input, pt.kernel, pt.out_hw);
    assert_eq!(ss.len(), pt.o * oh * ow);
    assert_eq!(out.len(), c * h * w);
    assert_eq!(pt.w.len(), pt.o * c * kh * kw);
    assert!((oh, ow) == (h + 1 - kh, w + 1 - kw));
    match kernels {
        #[cfg(target_arch = "x86_64")]
        Kernels::Avx512 => {
            assert!(available(), "the AVX-512 kernels need AVX-512F");
            // SAFETY: AVX-512F is present; the shapes were checked by `PreparedT::new` and above.
            unsafe { avx512::transpose_sample(ss, pt, out) }
        }
        Kernels::Portable => portable::transpose_sample(ss, pt, out),
    }
}

/// `out[k] = Σ_o s[o]·w[o][k]` for one row `s` (`[O]`) and the weights `w` (`[O, K]`, row-major): the product
/// `s W` that a GEMM computes for a batch of one, the same bits (fused multiply-adds from zero in o order, in
/// blocks of [`KC`] outputs: the first block's sum stored, later blocks' added), without packing `W` (a GEMM packs
/// all of it for every call, most of a dense layer's time at batch 1).
pub(crate) fn row_times_matrix(s: &[f32], w: &[f32], out: &mut [f32], kernels: Kernels) {
    let (o, k) = (s.len(), out.len());
    assert_eq!(w.len(), o * k);
    match kernels {
        #[cfg(target_arch = "x86_64")]
        Kernels::Avx512 => {
            assert!(available(), "the AVX-512 kernels need AVX-512F");
            // SAFETY: AVX-512F is present; the lengths are checked above.
            unsafe { avx512::row_times_matrix(s, w, out) }
        }
        Kernels::Portable => portable::row_times_matrix(s, w, out),
    }
}

/// `out[n][j] = Σ_k x[n][k]·w[j][k] (+ b[j])` for a few rows `x` (`[N, K]`, N ≤ 4) and the weights `w`
/// (`[O, K]`, row-major): the dense layer's `x Wᵀ + b` as a GEMM computes it, the same bits (fused multiply-adds
/// from zero in k order in blocks of [`KC`], later blocks added, then the bias), without packing `W`.
pub(crate) fn rows_times_matrix_t(
    x: &[f32],
    n: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    kernels: Kernels,
) {
    assert!((1..=4).contains(&n) && x.len().is_multiple_of(n));
    let k = x.len() / n;
    let o = out.len() / n;
    assert_eq!(w.len(), o * k);
    assert_eq!(out.len(), n * o);
    assert!(bias.is_none_or(|b| b.len() == o));
    match kernels {
        #[cfg(target_arch = "x86_64")]
        Kernels::Avx512 => {
            assert!(available(), "the AVX-512 kernels need AVX-512F");
            // SAFETY: AVX-512F is present; the lengths are checked above.
            unsafe { avx512::rows_times_matrix_t(x, n, w, bias, out) }
        }
        Kernels::Portable => portable::rows_times_matrix_t(x, n, w, bias, out),
    }
}
