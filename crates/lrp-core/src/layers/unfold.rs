//! Unfolding for im2col + GEMM convolutions: the taps of a window, im2col (input planes → the matrix of every output
//! position's inputs) and col2im (that matrix folded back, overlaps added).

use ndarray::{ArrayView2, ArrayView4, ArrayViewMut2, ArrayViewMut4, s};

/// Kernel size, stride, padding and dilation: where `im2col` reads.
pub(super) struct Taps {
    pub(super) kernel: [usize; 2],
    pub(super) stride: [usize; 2],
    pub(super) pads: [usize; 4],
    pub(super) dilation: [usize; 2],
}

impl Taps {
    /// Stride 1, no padding, no dilation: every tap of every output lies inside the input (the output is
    /// `(H − KH + 1) × (W − KW + 1)`), so unfolding is a copy of whole rows.
    pub(super) fn is_dense(&self) -> bool {
        self.stride == [1, 1] && self.pads == [0; 4] && self.dilation == [1, 1]
    }
}

/// Copies `[g, O, OH, OW]` into the matrix `[O, g·OH·OW]` (sample-major columns).
pub(super) fn gather_outputs(s: ArrayView4<f32>, dst: &mut ArrayViewMut2<f32>) {
    let (g, o, oh, ow) = s.dim();
    let hw = oh * ow;
    for j in 0..g {
        for c in 0..o {
            let src = s.slice(s![j, c, .., ..]);
            let mut d = dst.slice_mut(s![c, j * hw..(j + 1) * hw]);
            match (src.as_slice(), d.as_slice_mut()) {
                (Some(src), Some(d)) => d.copy_from_slice(src),
                (_, _) => d.iter_mut().zip(src.iter()).for_each(|(d, v)| *d = *v),
            }
        }
    }
}

/// Copies the matrix `[O, g·OH·OW]` (sample-major columns) into `[g, O, OH, OW]`: the inverse of
/// [`gather_outputs`].
pub(super) fn scatter_outputs(p: ArrayView2<f32>, mut dst: ArrayViewMut4<f32>) {
    let (g, o, oh, ow) = dst.dim();
    let hw = oh * ow;
    for j in 0..g {
        for c in 0..o {
            let src = p.slice(s![c, j * hw..(j + 1) * hw]);
            let mut d = dst.slice_mut(s![j, c, .., ..]);
            match (src.as_slice(), d.as_slice_mut()) {
                (Some(src), Some(d)) => d.copy_from_slice(src),
                (_, _) => d.iter_mut().zip(src.iter()).for_each(|(d, v)| *d = *v),
            }
        }
    }
}

/// `dst ← src` for the short rows of im2col (8 to a few dozen floats): eight at a time with fixed-size copies
/// the compiler keeps inline, where `copy_from_slice` would call `memmove` for every row.
#[inline]
pub(super) fn copy_short<T: Copy>(dst: &mut [T], src: &[T]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        let s: &[T; 8] = s.try_into().expect("chunks of 8");
        let d: &mut [T; 8] = d.try_into().expect("chunks of 8");
        *d = *s;
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}

/// Output positions `o` (out of `n_out`) whose input index `o·stride + k − pad` falls inside `0..len`,
/// as a range, so inner loops need no bounds test.
#[inline]
fn valid_outputs(n_out: usize, stride: usize, k: usize, pad: usize, len: usize) -> std::ops::Range<usize> {
    // o·s + k − p ≥ 0  ⇔  o ≥ ceil((p − k)/s);   o·s + k − p ≤ len − 1  ⇔  o ≤ floor((len − 1 + p − k)/s)
    let lo = if pad > k { (pad - k).div_ceil(stride) } else { 0 };
    let hi = if len + pad > k {
        ((len - 1 + pad - k) / stride + 1).min(n_out)
    } else {
        0
    };
    lo.min(hi)..hi
}

/// Unfolds `x: [g, C, H, W]` (standard layout) into `cols: [C·KH·KW, g·OH·OW]`, the rows split over the threads
/// with `split` (a grouped convolution unfolds each small group on one thread: a split per group cost RegNet's
/// grouped layers 8%).
pub(super) fn im2col(x: ArrayView4<f32>, win: &Taps, oh: usize, ow: usize, cols: &mut ArrayViewMut2<f32>, split: bool) {
    let (g, c, h, w) = x.dim();
    let [kh, kw] = win.kernel;
    let hw = oh * ow;
    // A channel range of a group is not contiguous as a whole, but each (sample, channel) plane is.
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    if win.is_dense() {
        if hw == 0 {
            return;
        }
        // Every tap inside the input: each (tap, sample) block is `oh` rows of `ow` values, `w` apart in x. Rows
        // are independent: split over the threads.
        let work = if split { cols.len() } else { 0 };
        crate::par::rows_mut(cols, work, |row, dst| {
            let (ci, ky, kx) = (row / (kh * kw), row / kw % kh, row % kw);
            for (j, block) in dst.chunks_exact_mut(hw).enumerate() {
                let plane = &xs[(j * c + ci) * h * w..(j * c + ci + 1) * h * w];
                for (drow, srow) in block.chunks_exact_mut(ow).zip(plane[ky * w + kx..].chunks(w)) {
                    copy_short(drow, &srow[..ow]);
                }
            }
        });
        return;
    }
    im2col_general(xs, (g, c, h, w), win, oh, ow, cols, split);
}

/// [`im2col`] for any taps (padding, stride, dilation), from the standard-layout values `xs` of `[g, C, H, W]`.
pub(super) fn im2col_general(
    xs: &[f32],
    (g, c, h, w): (usize, usize, usize, usize),
    win: &Taps,
    oh: usize,
    ow: usize,
    cols: &mut ArrayViewMut2<f32>,
    split: bool,
) {
    let [kh, kw] = win.kernel;
    let [sh, sw] = win.stride;
    let [dh, dw] = win.dilation;
    let hw = oh * ow;
    // Rows are independent: split over the threads.
    let work = if split { cols.len() } else { 0 };
    crate::par::rows_mut(cols, work, |row, dst| {
        let (ci, ky0, kx0) = (row / (kh * kw), row / kw % kh, row % kw);
        let (ky, kx) = (ky0 * dh, kx0 * dw);
        let ys = valid_outputs(oh, sh, ky, win.pads[0], h);
        let xr = valid_outputs(ow, sw, kx, win.pads[1], w);
        for j in 0..g {
            let plane = &xs[(j * c + ci) * h * w..(j * c + ci + 1) * h * w];
            let dst = &mut dst[j * hw..(j + 1) * hw];
            for oy in 0..oh {
                let drow = &mut dst[oy * ow..(oy + 1) * ow];
                if !ys.contains(&oy) {
                    drow.fill(0.0);
                    continue;
                }
                let iy = oy * sh + ky - win.pads[0];
                let srow = &plane[iy * w..(iy + 1) * w];
                drow[..xr.start].fill(0.0);
                drow[xr.end..].fill(0.0);
                if xr.is_empty() {
                    // Every tap of this row in the padding (a plane narrower than the padding's reach).
                    continue;
                }
                let base = xr.start * sw + kx - win.pads[1];
                if sw == 1 {
                    copy_short(&mut drow[xr.clone()], &srow[base..base + xr.len()]);
                } else {
                    for (k, d) in drow[xr.clone()].iter_mut().enumerate() {
                        *d = srow[base + k * sw];
                    }
                }
            }
        }
    });
}

/// Calls `f(j, ci, plane)` on every `[H, W]` plane of `out` (`[g, C, H, W]`, standard layout), the planes split over
/// the threads when the fold's `work` (the matrix it reads) is large: folding adds into each plane from its own
/// channel's rows only.
fn for_planes(
    out: &mut [f32],
    (c, h, w): (usize, usize, usize),
    work: usize,
    f: impl Fn(usize, usize, &mut [f32]) + Sync,
) {
    if c * h * w == 0 {
        return;
    }
    crate::par::units_mut(out, h * w, work, |first, part| {
        for (p, plane) in part.chunks_exact_mut(h * w).enumerate() {
            f((first + p) / c, (first + p) % c, plane);
        }
    });
}

/// Folds `cols: [C·KH·KW, g·OH·OW]` back onto `out` (`[g, C, H, W]`, standard layout), adding overlaps; the planes
/// split over the threads with `split`.
pub(super) fn col2im(
    cols: ArrayView2<f32>,
    win: &Taps,
    oh: usize,
    ow: usize,
    out: &mut [f32],
    (c, h, w): (usize, usize, usize),
    split: bool,
) {
    let [kh, kw] = win.kernel;
    let hw = oh * ow;
    if hw == 0 {
        return;
    }
    let g = cols.ncols() / hw;
    if win.is_dense() {
        // As below (the same additions in the same order), with every tap inside the input.
        let work = if split { cols.len() } else { 0 };
        for_planes(&mut out[..g * c * h * w], (c, h, w), work, |j, ci, plane| {
            for ky in 0..kh {
                for kx in 0..kw {
                    let row = (ci * kh + ky) * kw + kx;
                    let src = cols.row(row);
                    let src = src.as_slice().expect("rows of a fresh matrix are contiguous");
                    let block = &src[j * hw..(j + 1) * hw];
                    for (orow, srow) in plane[ky * w + kx..].chunks_mut(w).zip(block.chunks_exact(ow)) {
                        for (o, v) in orow[..ow].iter_mut().zip(srow) {
                            *o += v;
                        }
                    }
                }
            }
        });
        return;
    }
    col2im_general(cols, win, oh, ow, out, (c, h, w), split);
}

/// [`col2im`] for any taps (padding, stride, dilation). Each value of a plane receives its taps in the order
/// (ky, kx) whether the planes are split or not.
pub(super) fn col2im_general(
    cols: ArrayView2<f32>,
    win: &Taps,
    oh: usize,
    ow: usize,
    out: &mut [f32],
    (c, h, w): (usize, usize, usize),
    split: bool,
) {
    let [kh, kw] = win.kernel;
    let [sh, sw] = win.stride;
    let [dh, dw] = win.dilation;
    let hw = oh * ow;
    if hw == 0 {
        return;
    }
    let g = cols.ncols() / hw;
    let work = if split { cols.len() } else { 0 };
    for_planes(&mut out[..g * c * h * w], (c, h, w), work, |j, ci, plane| {
        for ky0 in 0..kh {
            let ky = ky0 * dh;
            let ys = valid_outputs(oh, sh, ky, win.pads[0], h);
            for kx0 in 0..kw {
                let kx = kx0 * dw;
                let xr = valid_outputs(ow, sw, kx, win.pads[1], w);
                if xr.is_empty() {
                    continue;
                }
                let row = (ci * kh + ky0) * kw + kx0;
                let src = cols.row(row);
                let src = src.as_slice().expect("rows of a fresh matrix are contiguous");
                for oy in ys.clone() {
                    let iy = oy * sh + ky - win.pads[0];
                    let orow = &mut plane[iy * w..(iy + 1) * w];
                    let srow = &src[j * hw + oy * ow..j * hw + (oy + 1) * ow];
                    let base = xr.start * sw + kx - win.pads[1];
                    if sw == 1 {
                        for (o, v) in orow[base..base + xr.len()].iter_mut().zip(&srow[xr.clone()]) {
                            *o += v;
                        }
                    } else {
                        for (k, v) in srow[xr.clone()].iter().enumerate() {
                            orow[base + k * sw] += v;
                        }
                    }
                }
            }
        }
    });
}
