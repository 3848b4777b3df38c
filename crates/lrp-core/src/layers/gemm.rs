//! `c = a · b` in float32 with the bits of `matrixmultiply::sgemm` (what `ndarray::linalg::general_mat_mul` calls,
//! α = 1, β = 0), without packing `a`.
//!
//! matrixmultiply copies both operands into panels before every product. A convolution's `a` is its weight matrix,
//! and for a late layer of an ImageNet network (7×7 = 49 output positions a sample) copying the weights costs about
//! as much as the product: each weight is used for 49 columns only. Here `a` is read where it lies (the 16 values
//! one step of the kernel needs are 16 rows of a column, read through four row pointers so the addresses do not
//! form a chain), and only `b` (the input columns, used by every row) is copied into panels.
//!
//! Every value is computed by the same operations in the same order as matrixmultiply's AVX-512 kernel: for each
//! block of `KC` = 256 values of `k` (matrixmultiply's `S_KC`), a sum started at zero and extended by one fused
//! multiply-add per `k` in ascending order; the first block's sum is stored (multiplied by α = 1), each later one
//! added to `c` as `fma(1, sum, c · 1)`. So the products are bit-for-bit matrixmultiply's (the tests hold them to
//! it), and every output the rest of the crate computes stays the same.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};

#[cfg(target_arch = "x86_64")]
/// matrixmultiply's block of `k` for float32 (`archparam_defaults::S_KC`): the sums restart at every multiple.
const KC: usize = 256;
#[cfg(target_arch = "x86_64")]
/// Columns of `b` copied into panels at a time (`KC × NC` floats, 256 KiB: within a core's L2).
const NC: usize = 256;
#[cfg(target_arch = "x86_64")]
/// A thread's scratch: the panels of `b`, one panel of `a` (`KC × 16`) and room to align them to 64 bytes.
const PANEL_FLOATS: usize = KC * NC + KC * 16 + 16;

#[cfg(target_arch = "x86_64")]
std::thread_local! {
    /// Each thread's panels of `b`, kept between products. Not `layers::with_scratch`: the convolutions call this
    /// while they hold that buffer (it is their unfolded matrix), and a nested call there gets a fresh allocation.
    static PANELS: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// `c = a · b`: the bits of `general_mat_mul(1.0, a, b, 0.0, c)`.
pub(crate) fn gemm(a: &ArrayView2<f32>, b: &ArrayView2<f32>, c: &mut ArrayViewMut2<f32>) {
    let (m, k) = a.dim();
    let n = b.ncols();
    assert_eq!(b.nrows(), k, "inner dimensions agree");
    assert_eq!(c.dim(), (m, n), "output shape");
    #[cfg(target_arch = "x86_64")]
    if crate::simd::wide() && m > 0 && n > 0 && k > 0 && b.strides()[1] == 1 && c.strides()[1] == 1 {
        let mut panels = PANELS.take();
        if panels.len() < PANEL_FLOATS {
            panels = vec![0.0; PANEL_FLOATS];
        }
        // SAFETY: AVX-512F is present (checked above); the pointers and strides are those of views of the shapes
        // asserted above, `b` and `c` have contiguous rows, and `panels` holds PANEL_FLOATS floats.
        unsafe {
            wide::gemm(
                (m, k, n),
                (a.as_ptr(), a.strides()[0], a.strides()[1]),
                (b.as_ptr(), b.strides()[0]),
                (c.as_mut_ptr(), c.strides()[0]),
                &mut panels,
            )
        };
        PANELS.set(panels);
        return;
    }
    general_mat_mul(1.0, a, b, 0.0, c);
}

#[cfg(target_arch = "x86_64")]
mod wide {
    use std::arch::x86_64::*;

    use super::{KC, NC, PANEL_FLOATS};

    /// Lanes of `n` a kernel call covers (16 columns, one vector).
    fn mask(cols: usize) -> __mmask16 {
        if cols >= 16 {
            0xffff
        } else {
            ((1u32 << cols) - 1) as __mmask16
        }
    }

    /// A 16 × 16 tile of `c` over `kc` values of `k`: `a(i, k)` at `a + i·rsa + k·csa`, the panel `b` of `kc` rows
    /// of 16 (zero past the last column). Stores the sums (`first`) or adds them to `c`, for `rows` rows and the
    /// columns in `mask`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        kc: usize,
        (a, rsa, csa): (*const f32, isize, isize),
        b: *const f32,
        mask: __mmask16,
        (c, rsc): (*mut f32, isize),
        rows: usize,
        first: bool,
    ) {
        // SAFETY (whole body): the caller passes pointers valid for these offsets (see `gemm`).
        unsafe {
            let mut ab = [_mm512_setzero_ps(); 16];
            let mut bp = b;
            if rsa == 1 {
                // A column of `a` is 16 contiguous values (a transposed weight matrix).
                let mut ap = a;
                for _ in 0..kc {
                    let bv = _mm512_loadu_ps(bp);
                    for (i, acc) in ab.iter_mut().enumerate() {
                        *acc = _mm512_fmadd_ps(_mm512_set1_ps(*ap.add(i)), bv, *acc);
                    }
                    ap = ap.offset(csa);
                    bp = bp.add(16);
                }
            } else {
                // Rows 4g + {0, 1, 2, 3} from four pointers, a register stride apart: no chain of additions.
                let r3 = 3 * rsa;
                let mut q = [a, a.offset(4 * rsa), a.offset(8 * rsa), a.offset(12 * rsa)];
                for _ in 0..kc {
                    let bv = _mm512_loadu_ps(bp);
                    for (g, p) in q.iter_mut().enumerate() {
                        let r = *p;
                        ab[4 * g] = _mm512_fmadd_ps(_mm512_set1_ps(*r), bv, ab[4 * g]);
                        ab[4 * g + 1] = _mm512_fmadd_ps(_mm512_set1_ps(*r.offset(rsa)), bv, ab[4 * g + 1]);
                        ab[4 * g + 2] = _mm512_fmadd_ps(_mm512_set1_ps(*r.offset(2 * rsa)), bv, ab[4 * g + 2]);
                        ab[4 * g + 3] = _mm512_fmadd_ps(_mm512_set1_ps(*r.offset(r3)), bv, ab[4 * g + 3]);
                        *p = r.offset(csa);
                    }
                    bp = bp.add(16);
                }
            }
            // matrixmultiply's epilogue with α = 1: c = α·ab, or c = fma(α, ab, β·c) with β = 1.
            let one = _mm512_set1_ps(1.0);
            for (i, acc) in ab.iter().enumerate().take(rows) {
                let cp = c.offset(i as isize * rsc);
                if first {
                    _mm512_mask_storeu_ps(cp, mask, _mm512_mul_ps(one, *acc));
                } else {
                    let cv = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, cp), one);
                    _mm512_mask_storeu_ps(cp, mask, _mm512_fmadd_ps(one, *acc, cv));
                }
            }
        }
    }

    /// `c = a · b` for `(m, k, n)`: `a(i, k)` at `a + i·rsa + k·csa`, `b(k, j)` at `b + k·rsb + j`, `c(i, j)` at
    /// `c + i·rsc + j`; `panels` holds at least `PANEL_FLOATS` floats (stale values allowed).
    ///
    /// # Safety
    /// AVX-512F is present; the three regions are valid for those offsets, and `c` aliases neither operand.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gemm(
        (m, k, n): (usize, usize, usize),
        (a, rsa, csa): (*const f32, isize, isize),
        (b, rsb): (*const f32, isize),
        (c, rsc): (*mut f32, isize),
        panels: &mut [f32],
    ) {
        // 64-byte aligned panels, so each row of 16 is one cache line.
        let skip = panels.as_ptr().align_offset(64).min(16);
        let (panels, tail) = panels[skip..PANEL_FLOATS - 16 + skip].split_at_mut(KC * NC);
        // Rows of `a` a multiple of 4 KiB apart fall in one set of the L1 cache: 16 of them evict each other, so
        // such panels are copied too (a forward weight matrix whose rows hold 1024 or 2048 values).
        let aliased = rsa != 1 && (rsa.unsigned_abs() * 4) % 4096 == 0;
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            for j0 in (0..n).step_by(NC) {
                let nc = NC.min(n - j0);
                // SAFETY (the block): offsets within the operands' shapes, as the caller guarantees.
                unsafe {
                    for (p, jj) in (0..nc).step_by(16).enumerate() {
                        let m16 = mask(nc - jj);
                        let dst = panels.as_mut_ptr().add(p * kc * 16);
                        let src = b.offset(k0 as isize * rsb + (j0 + jj) as isize);
                        for kk in 0..kc {
                            let v = _mm512_maskz_loadu_ps(m16, src.offset(kk as isize * rsb));
                            _mm512_storeu_ps(dst.add(kk * 16), v);
                        }
                    }
                    for i0 in (0..m).step_by(16) {
                        let rows = 16.min(m - i0);
                        let at = a.offset(i0 as isize * rsa + k0 as isize * csa);
                        let ap = if rows == 16 && !aliased {
                            (at, rsa, csa)
                        } else {
                            // The last rows of `a` (fewer than 16) with zeros below them, or rows that alias.
                            for kk in 0..kc {
                                for i in 0..16 {
                                    tail[kk * 16 + i] = if i < rows {
                                        *at.offset(i as isize * rsa + kk as isize * csa)
                                    } else {
                                        0.0
                                    };
                                }
                            }
                            (tail.as_ptr(), 1, 16)
                        };
                        for (p, jj) in (0..nc).step_by(16).enumerate() {
                            let j = j0 + jj;
                            tile(
                                kc,
                                ap,
                                panels.as_ptr().add(p * kc * 16),
                                mask(n - j),
                                (c.offset(i0 as isize * rsc + j as isize), rsc),
                                rows,
                                k0 == 0,
                            );
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, s};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// matrixmultiply (through `general_mat_mul`) is the reference: every value's bits, or both NaN.
    fn same_as_matrixmultiply(a: &ArrayView2<f32>, b: &ArrayView2<f32>, what: &str) {
        let (m, n) = (a.nrows(), b.ncols());
        let mut want = Array2::<f32>::from_elem((m, n), 7.0);
        general_mat_mul(1.0, a, b, 0.0, &mut want);
        // Stale values in the output must not leak in (β = 0).
        let mut got = Array2::<f32>::from_elem((m, n), f32::NAN);
        gemm(a, b, &mut got.view_mut());
        for ((i, j), w) in want.indexed_iter() {
            let g = got[[i, j]];
            assert!(
                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                "{what}, m={m} k={} n={n}: c[{i}][{j}] is {g:e}, matrixmultiply gives {w:e}",
                a.ncols()
            );
        }
    }

    fn random(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Array2<f32> {
        Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
    }

    #[test]
    fn products_have_matrixmultiplys_bits() {
        if !crate::simd::wide() {
            eprintln!("no AVX-512 here: gemm is general_mat_mul itself");
        }
        let mut rng = ChaCha8Rng::seed_from_u64(26);
        // Row tails (m not a multiple of 16), column tails and more than one block of columns (NC = 256), one and
        // several blocks of k (KC = 256, each block's sum added to the last).
        for &(m, k, n) in &[
            (1, 1, 1),
            (16, 256, 16),
            (17, 257, 17),
            (5, 3, 49),
            (48, 255, 49),
            (64, 513, 300),
            (33, 100, 529),
            (147, 64, 20),
            (2, 600, 1),
        ] {
            let a = random(&mut rng, m, k);
            let b = random(&mut rng, k, n);
            same_as_matrixmultiply(&a.view(), &b.view(), "row-major a");
            // A transposed weight matrix: a column of `a` is contiguous.
            let at = random(&mut rng, k, m);
            same_as_matrixmultiply(&at.t(), &b.view(), "transposed a");
            // Every other column of a wider matrix, and columns of `b` taken from a wider one.
            let wide = random(&mut rng, m, 2 * k);
            let bw = random(&mut rng, k, n + 5);
            same_as_matrixmultiply(
                &wide.slice(s![.., ..;2]),
                &bw.slice(s![.., 3..n + 3]),
                "strided a, offset b",
            );
        }
        // Rows 1024 and 2048 values long: 4 KiB apart, the path that copies `a`.
        for &k in &[1024, 2048] {
            let a = random(&mut rng, 40, k);
            let b = random(&mut rng, k, 21);
            same_as_matrixmultiply(&a.view(), &b.view(), "rows 4 KiB apart");
        }
    }

    #[test]
    fn non_finite_values_and_signed_zeros_come_out_as_matrixmultiplys() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut a = random(&mut rng, 33, 300);
        let mut b = random(&mut rng, 300, 40);
        a[[3, 10]] = f32::NAN;
        a[[20, 299]] = f32::INFINITY;
        b[[5, 7]] = f32::NEG_INFINITY;
        b[[257, 39]] = f32::NAN;
        // A row of zeros times a column of negative values: -0 or +0 depending on the order of the sums.
        a.row_mut(30).fill(0.0);
        b.column_mut(2).mapv_inplace(|v| -v.abs());
        a[[31, 0]] = -0.0;
        same_as_matrixmultiply(&a.view(), &b.view(), "special values");
        same_as_matrixmultiply(&a.t().to_owned().t(), &b.view(), "special values, transposed a");
    }

    #[test]
    fn a_layout_the_kernel_does_not_take_falls_back() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let a = random(&mut rng, 20, 30);
        let b = random(&mut rng, 40, 30);
        // `b` with strided rows (a transposed view): general_mat_mul itself.
        same_as_matrixmultiply(&a.view(), &b.t(), "transposed b");
        // k = 0 (c is all zeros): empty slices keep the strides of their arrays (contiguous rows), the layout
        // the kernel would otherwise take; a fresh empty array has zero strides and never reaches it.
        let e = random(&mut rng, 20, 5);
        let f = random(&mut rng, 3, 9);
        let (e, f) = (e.slice(s![.., ..0]), f.slice(s![..0, ..]));
        assert_eq!(f.strides()[1], 1, "the slice keeps contiguous rows");
        same_as_matrixmultiply(&e, &f, "k = 0");
    }
}
