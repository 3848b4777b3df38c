//! The portable kernels of the direct path: plain loops computing each value as the AVX-512 kernels and
//! matrixmultiply's GEMM do — fused multiply-adds from zero in the depth order, in blocks of [`KC`], the first
//! block's sum stored and later blocks' sums added to it, then the bias — so the three give the same bits. Slower
//! than GEMM; the tests run them on every machine, and they are the reference the AVX-512 kernels are held to.

use std::mem::MaybeUninit;

use super::{KC, Prepared, PreparedT};

/// `Σ_i a[i]·b[i]` over `i` in blocks of [`KC`], GEMM's way (see the module comment).
#[inline]
fn blocked_dot(len: usize, term: impl Fn(usize) -> (f32, f32)) -> f32 {
    let mut total = 0.0f32;
    for (block, i0) in (0..len).step_by(KC).enumerate() {
        let mut acc = 0.0f32;
        for i in i0..(i0 + KC).min(len) {
            let (a, b) = term(i);
            acc = a.mul_add(b, acc);
        }
        total = if block == 0 { acc } else { acc + total };
    }
    total
}

/// [`super::forward_sample`].
pub(super) fn forward_sample(xs: &[f32], pw: &Prepared, out: &mut [MaybeUninit<f32>]) {
    let ((_, h, w), (kh, kw)) = (pw.input, pw.kernel);
    let (oh, ow) = (h + 1 - kh, w + 1 - kw);
    let k = pw.taps.len();
    for o in 0..pw.o {
        for oy in 0..oh {
            for ox in 0..ow {
                let start = oy * w + ox;
                let mut v = blocked_dot(k, |t| (pw.w[t * pw.opad + o], xs[start + pw.taps[t]]));
                if let Some(b) = &pw.bias {
                    v += b[o];
                }
                out[(o * oh + oy) * ow + ox].write(v);
            }
        }
    }
}

/// [`super::transpose_sample`]: each tap's column `Σ_o W[o][k]·s[o][p]`, then col2im — every input value is the sum
/// of its taps' contributions in k order, from zero.
pub(super) fn transpose_sample(ss: &[f32], pt: &PreparedT, out: &mut [MaybeUninit<f32>]) {
    let ((c, h, w), (kh, kw), (oh, ow)) = (pt.input, pt.kernel, pt.out_hw);
    let positions = oh * ow;
    let mut acc = vec![0.0f32; c * h * w];
    for ci in 0..c {
        for ky in 0..kh {
            // The packed weights `[C, KH, O, KW]`.
            let block = &pt.w[(ci * kh + ky) * pt.o * kw..][..pt.o * kw];
            for kx in 0..kw {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let p = oy * ow + ox;
                        let col = blocked_dot(pt.o, |o| (block[o * kw + kx], ss[o * positions + p]));
                        acc[(ci * h + oy + ky) * w + ox + kx] += col;
                    }
                }
            }
        }
    }
    for (o, v) in out.iter_mut().zip(acc) {
        o.write(v);
    }
}

/// [`super::row_times_matrix`].
pub(super) fn row_times_matrix(s: &[f32], w: &[f32], out: &mut [f32]) {
    let k = out.len();
    for (j, o) in out.iter_mut().enumerate() {
        *o = blocked_dot(s.len(), |i| (s[i], w[i * k + j]));
    }
}

/// [`super::rows_times_matrix_t`].
pub(super) fn rows_times_matrix_t(x: &[f32], n: usize, w: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    let k = x.len() / n;
    let o = out.len() / n;
    for s in 0..n {
        for j in 0..o {
            let mut v = blocked_dot(k, |i| (x[s * k + i], w[j * k + i]));
            if let Some(b) = bias {
                v += b[j];
            }
            out[s * o + j] = v;
        }
    }
}
