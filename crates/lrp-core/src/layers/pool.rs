//! Max and average pooling over 2-D windows.

use std::mem::MaybeUninit;

use ndarray::{Array4, ArrayD, ArrayView4, ArrayViewD, Ix4};
use serde::{Deserialize, Serialize};

use super::op::Op;
use super::window::Window;

/// A pooling window. For average pooling, `count_include_pad` says whether padded cells count in the divisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool2d {
    /// Kernel, stride and padding.
    pub window: Window,
    /// Average pooling only: divide by the full kernel area (true) or by the cells inside the input (false).
    pub count_include_pad: bool,
}

impl Pool2d {
    /// A pooling layer with a square `kernel`, `stride` and no padding.
    pub fn square(kernel: usize, stride: usize) -> Self {
        Pool2d {
            window: Window::square(kernel, stride, 0),
            count_include_pad: false,
        }
    }

    /// Visits every output position of the planes `planes` (`n·C + c`) of `h × w` values with the flat input indices
    /// (within the plane) of its window that lie inside the input.
    fn for_each_window(
        &self,
        planes: std::ops::Range<usize>,
        (h, w): (usize, usize),
        mut f: impl FnMut(usize, usize, &[usize]),
    ) {
        let (oh, ow) = self.window.output_hw(h, w).expect("window checked by the caller");
        let [kh, kw] = self.window.kernel;
        let mut idx = Vec::with_capacity(kh * kw);
        for plane in planes {
            for oy in 0..oh {
                for ox in 0..ow {
                    idx.clear();
                    for ky in 0..kh {
                        let Some(iy) = self.window.source(0, oy, ky, h) else {
                            continue;
                        };
                        for kx in 0..kw {
                            if let Some(ix) = self.window.source(1, ox, kx, w) {
                                idx.push(iy * w + ix);
                            }
                        }
                    }
                    f(plane, oy * ow + ox, &idx);
                }
            }
        }
    }

    fn out_dims(&self, x: (usize, usize, usize, usize)) -> (usize, usize, usize, usize) {
        let (oh, ow) = self.window.output_hw(x.2, x.3).expect("window checked by the caller");
        (x.0, x.1, oh, ow)
    }

    /// Kernel offsets along one axis that land inside the input for output position `o`.
    #[inline]
    fn taps(&self, axis: usize, o: usize, len: usize) -> std::ops::Range<usize> {
        let start = o * self.window.stride[axis];
        let pad = self.window.pads[axis];
        let k = self.window.kernel[axis];
        let lo = pad.saturating_sub(start);
        let hi = (len + pad).saturating_sub(start).min(k);
        lo.min(hi)..hi
    }

    /// A 2×2 window with stride 2 and no padding (output `⌊H/2⌋ × ⌊W/2⌋`).
    fn is_2x2_stride_2(&self) -> bool {
        self.window.kernel == [2, 2] && self.window.stride == [2, 2] && self.window.pads == [0; 4]
    }

    /// For each output, the flat index (within its channel plane) of the first maximum of its window
    /// (padded cells never win), or `usize::MAX` when the window lies entirely in the padding.
    fn winners(&self, xs: &[f32], (n, c, h, w): (usize, usize, usize, usize)) -> (Vec<usize>, usize, usize) {
        let (oh, ow) = self.window.output_hw(h, w).expect("window checked by the caller");
        let [sh, sw] = self.window.stride;
        let [pt, pl] = [self.window.pads[0], self.window.pads[1]];
        let mut out = vec![usize::MAX; n * c * oh * ow];
        let [kh, kw] = self.window.kernel;
        // Outputs whose window lies inside the input (every output of an unpadded pool) need no bounds test; the
        // first tap is the window's first cell either way, so the winner is the same.
        let inner = pl.div_ceil(sw).min(ow)..if w + pl >= kw {
            ((w + pl - kw) / sw + 1).min(ow)
        } else {
            0
        };
        // Planes are independent: split over the threads.
        if oh * ow > 0 {
            let work = xs.len();
            crate::par::units_mut(&mut out, oh * ow, work, |first, part| {
                for (q, out) in part.chunks_exact_mut(oh * ow).enumerate() {
                    let plane = first + q;
                    let p = &xs[plane * h * w..(plane + 1) * h * w];
                    for oy in 0..oh {
                        let kys = self.taps(0, oy, h);
                        let full_rows = kys.len() == kh;
                        for ox in 0..ow {
                            if full_rows && inner.contains(&ox) {
                                let base = (oy * sh - pt) * w + ox * sw - pl;
                                out[oy * ow + ox] = first_max(p, base, w, [kh, kw]);
                                continue;
                            }
                            let kxs = self.taps(1, ox, w);
                            let mut best = f32::NEG_INFINITY;
                            let mut at = usize::MAX;
                            for ky in kys.clone() {
                                let row = (oy * sh + ky - pt) * w;
                                for kx in kxs.clone() {
                                    let i = row + ox * sw + kx - pl;
                                    if p[i] > best || at == usize::MAX {
                                        best = p[i];
                                        at = i;
                                    }
                                }
                            }
                            out[oy * ow + ox] = at;
                        }
                    }
                }
            });
        }
        (out, oh, ow)
    }

    /// Max pooling; padded cells never win.
    ///
    /// # Shapes
    /// `[N, C, H, W]` → `[N, C, OH, OW]`.
    pub fn max_forward(&self, x: ArrayView4<f32>) -> Array4<f32> {
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let (n, c, h, w) = x.dim();
        if self.is_2x2_stride_2() {
            // The value of the first maximum, as below, without indices: `if v > m { v } else { m }` in row order
            // (the same value, NaN handling included): as vector selects sixteen windows at a time where the
            // processor has AVX-512 (the compiler's own vectorisation, SSE2 without the stride-2 loads, was 4% of a
            // CNN ε run), the scalar loop elsewhere.
            let out = max_2x2_with(xs, x.dim(), true);
            return Array4::from_shape_vec((n, c, h / 2, w / 2), out).expect("one value per window");
        }
        let (win, oh, ow) = self.winners(xs, x.dim());
        let hw = h * w;
        let mut data = vec![f32::NEG_INFINITY; win.len()];
        if oh * ow > 0 {
            let work = data.len();
            crate::par::units_mut(&mut data, oh * ow, work, |first, part| {
                for (q, plane) in part.chunks_exact_mut(oh * ow).enumerate() {
                    let (p, at) = (first + q, &win[(first + q) * oh * ow..(first + q + 1) * oh * ow]);
                    for (d, &i) in plane.iter_mut().zip(at) {
                        if i != usize::MAX {
                            *d = xs[p * hw + i];
                        }
                    }
                }
            });
        }
        Array4::from_shape_vec((n, c, oh, ow), data).expect("one value per output")
    }

    /// Routes each output's value `g` to the input cell that won its window (the first maximum):
    /// the gradient of max pooling, and LRP's winner-take-all.
    ///
    /// # Shapes
    /// `x: [N, C, H, W]`, `g: [N, C, OH, OW]` → `[N, C, H, W]`.
    pub fn max_route(&self, x: ArrayView4<f32>, g: ArrayView4<f32>) -> Array4<f32> {
        let x = x.as_standard_layout();
        let g = g.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let gs = g.as_slice().expect("standard layout");
        if self.is_2x2_stride_2() {
            // Every cell is written: no zeroing first.
            let mut out = Vec::with_capacity(xs.len());
            route_2x2(xs, gs, &mut out.spare_capacity_mut()[..xs.len()], x.dim());
            // SAFETY: `route_2x2` wrote each of the first `xs.len()` values.
            unsafe { out.set_len(xs.len()) };
            return Array4::from_shape_vec(x.dim(), out).expect("one value per input");
        }
        let mut out = Array4::<f32>::zeros(x.dim());
        self.route_by_winners(xs, gs, x.dim(), out.as_slice_mut().expect("fresh array"));
        out
    }

    /// The general [`Pool2d::max_route`]: each output's value added at its winner's cell of `os` (zeros).
    fn route_by_winners(&self, xs: &[f32], gs: &[f32], dims: (usize, usize, usize, usize), os: &mut [f32]) {
        let (win, oh, ow) = self.winners(xs, dims);
        let hw = dims.2 * dims.3;
        if hw == 0 || oh * ow == 0 {
            return;
        }
        // Each plane's winners lie in its own plane: the planes split over the threads, each output added in order.
        let work = os.len();
        crate::par::units_mut(os, hw, work, |first, part| {
            for (q, plane) in part.chunks_exact_mut(hw).enumerate() {
                let o = (first + q) * oh * ow..(first + q + 1) * oh * ow;
                for (&i, &g) in win[o.clone()].iter().zip(&gs[o]) {
                    if i != usize::MAX {
                        plane[i] += g;
                    }
                }
            }
        });
    }

    fn divisor(&self, cells: usize) -> f32 {
        if self.count_include_pad {
            (self.window.kernel[0] * self.window.kernel[1]) as f32
        } else {
            cells.max(1) as f32
        }
    }

    /// Average pooling `P x`.
    ///
    /// # Shapes
    /// `[N, C, H, W]` → `[N, C, OH, OW]`.
    pub fn avg_forward(&self, x: ArrayView4<f32>) -> Array4<f32> {
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let dims = self.out_dims(x.dim());
        let (hw_in, hw_out) = (x.dim().2 * x.dim().3, dims.2 * dims.3);
        let mut out = Array4::<f32>::zeros(dims);
        let os = out.as_slice_mut().expect("fresh array");
        // Plane by plane, split over the threads when large (EfficientNet's squeeze-and-excitation averages whole
        // planes of a photo's values).
        crate::par::units_mut(os, hw_out.max(1), xs.len(), |first, part| {
            let planes = first..first + part.len() / hw_out.max(1);
            self.for_each_window(planes, (x.dim().2, x.dim().3), |plane, o, idx| {
                let p = &xs[plane * hw_in..];
                part[(plane - first) * hw_out + o] = idx.iter().map(|&i| p[i]).sum::<f32>() / self.divisor(idx.len());
            });
        });
        out
    }

    /// The transposed average-pooling map `Pᵀ g` (also its gradient), for an input of `in_dims`.
    ///
    /// # Shapes
    /// `g: [N, C, OH, OW]` → `in_dims = [N, C, H, W]`.
    pub fn avg_transpose(&self, g: ArrayView4<f32>, in_dims: (usize, usize, usize, usize)) -> Array4<f32> {
        let g = g.as_standard_layout();
        let gs = g.as_slice().expect("standard layout");
        let (hw_in, hw_out) = (in_dims.2 * in_dims.3, g.dim().2 * g.dim().3);
        let mut out = Array4::<f32>::zeros(in_dims);
        let os = out.as_slice_mut().expect("fresh array");
        crate::par::units_mut(os, hw_in.max(1), gs.len().max(os.len()), |first, part| {
            let planes = first..first + part.len() / hw_in.max(1);
            self.for_each_window(planes, (in_dims.2, in_dims.3), |plane, o, idx| {
                let v = gs[plane * hw_out + o] / self.divisor(idx.len());
                for &i in idx {
                    part[(plane - first) * hw_in + i] += v;
                }
            });
        });
        out
    }
}

/// [`Pool2d::max_forward`] for the 2×2 window with stride 2 and no padding: `[N, C, H, W]` values → the
/// `[N, C, ⌊H/2⌋, ⌊W/2⌋]` maxima; `simd` false forces the scalar loop (so tests cover both).
fn max_2x2_with(xs: &[f32], (n, c, h, w): (usize, usize, usize, usize), simd: bool) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut os = vec![0.0f32; n * c * oh * ow];
    for plane in 0..n * c {
        let p = &xs[plane * h * w..(plane + 1) * h * w];
        for oy in 0..oh {
            let (r0, r1) = (&p[2 * oy * w..2 * oy * w + w], &p[(2 * oy + 1) * w..(2 * oy + 2) * w]);
            let dst = &mut os[(plane * oh + oy) * ow..(plane * oh + oy + 1) * ow];
            let done = if simd {
                simd::max_row_pair(&r0[..2 * ow], &r1[..2 * ow], dst)
            } else {
                0
            };
            for (ox, d) in dst.iter_mut().enumerate().skip(done) {
                let pick = |m: f32, v: f32| if v > m { v } else { m };
                *d = pick(pick(pick(r0[2 * ox], r0[2 * ox + 1]), r1[2 * ox]), r1[2 * ox + 1]);
            }
        }
    }
    os
}

/// [`Pool2d::max_route`] for the 2×2 window with stride 2 and no padding, in one pass and without a list of
/// winners: each window's first maximum (row order, as [`Pool2d::winners`] picks it) gets `0 + g` (as the general
/// path's accumulation gives, so `−0` arrives as `+0`) and its other three cells `+0`. Every cell of a window is
/// written, sixteen windows at a time by vector selects where the processor has AVX-512 (which cell wins is data:
/// a mispredicted branch per window made the route 14% of a CNN ε run), else by the scalar loop; a last odd row or
/// column belongs to no window and is set to 0, so `os` may hold anything on entry.
fn route_2x2(xs: &[f32], gs: &[f32], os: &mut [MaybeUninit<f32>], dims: (usize, usize, usize, usize)) {
    route_2x2_with(xs, gs, os, dims, true);
}

/// [`route_2x2`], with `simd` false forcing the scalar loop (so tests cover both).
fn route_2x2_with(
    xs: &[f32],
    gs: &[f32],
    os: &mut [MaybeUninit<f32>],
    (n, c, h, w): (usize, usize, usize, usize),
    simd: bool,
) {
    let (oh, ow) = (h / 2, w / 2);
    for plane in 0..n * c {
        let p = &xs[plane * h * w..(plane + 1) * h * w];
        let gp = &gs[plane * oh * ow..(plane + 1) * oh * ow];
        let o = &mut os[plane * h * w..(plane + 1) * h * w];
        for oy in 0..oh {
            let (r0, r1) = (&p[2 * oy * w..2 * oy * w + w], &p[(2 * oy + 1) * w..(2 * oy + 2) * w]);
            let (o0, o1) = o[2 * oy * w..(2 * oy + 2) * w].split_at_mut(w);
            let g = &gp[oy * ow..(oy + 1) * ow];
            route_row_pair(
                &r0[..2 * ow],
                &r1[..2 * ow],
                g,
                &mut o0[..2 * ow],
                &mut o1[..2 * ow],
                simd,
            );
            if w % 2 == 1 {
                o0[w - 1].write(0.0);
                o1[w - 1].write(0.0);
            }
        }
        if h % 2 == 1 {
            o[(h - 1) * w..].iter_mut().for_each(|c| _ = c.write(0.0));
        }
    }
}

/// One row of 2×2 windows: `r0`, `r1` the two input rows (`2·g.len()` values each), `o0`, `o1` their cells.
#[inline]
fn route_row_pair(
    r0: &[f32],
    r1: &[f32],
    g: &[f32],
    o0: &mut [MaybeUninit<f32>],
    o1: &mut [MaybeUninit<f32>],
    simd: bool,
) {
    let done = if simd {
        simd::route_row_pair(r0, r1, g, o0, o1)
    } else {
        0
    };
    let pairs = r0[2 * done..].chunks_exact(2).zip(r1[2 * done..].chunks_exact(2)).zip(
        o0[2 * done..]
            .chunks_exact_mut(2)
            .zip(o1[2 * done..].chunks_exact_mut(2)),
    );
    for (((a, b), (d0, d1)), &g) in pairs.zip(&g[done..]) {
        // The first maximum: later cells win only when strictly greater; NaN never wins a comparison. Branches
        // here measured 7% faster (whole CNN ε run) than selects, which the compiler did not vectorise.
        let (mut best, mut at) = (a[0], 0);
        if a[1] > best {
            (best, at) = (a[1], 1);
        }
        if b[0] > best {
            (best, at) = (b[0], 2);
        }
        if b[1] > best {
            at = 3;
        }
        let v = 0.0 + g;
        let cell = |k: usize| if k == at { v } else { 0.0 };
        d0[0].write(cell(0));
        d0[1].write(cell(1));
        d1[0].write(cell(2));
        d1[1].write(cell(3));
    }
}

/// [`route_row_pair`] sixteen windows at a time where the processor has AVX-512 (the scalar loop's comparisons as vector
/// selects: the results are the same bits), the last group under masks. Returns how many windows it did, from the start
/// (all of them, or 0 without AVX-512).
mod simd {
    use std::mem::MaybeUninit;

    #[cfg(target_arch = "x86_64")]
    pub(super) fn route_row_pair(
        r0: &[f32],
        r1: &[f32],
        g: &[f32],
        o0: &mut [MaybeUninit<f32>],
        o1: &mut [MaybeUninit<f32>],
    ) -> usize {
        let n = g.len();
        assert!(r0.len() >= 2 * n && r1.len() >= 2 * n && o0.len() >= 2 * n && o1.len() >= 2 * n);
        if n == 0 || !crate::layers::direct::available() {
            return 0;
        }
        // SAFETY: AVX-512F is present (checked above), and every access below lies within the first `2·n` values
        // of the row slices and the first `n` of `g` (asserted above; the last group's accesses are masked).
        unsafe {
            route_avx512(
                r0.as_ptr(),
                r1.as_ptr(),
                g.as_ptr(),
                o0.as_mut_ptr().cast(),
                o1.as_mut_ptr().cast(),
                n,
            )
        };
        n
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub(super) fn route_row_pair(
        _: &[f32],
        _: &[f32],
        _: &[f32],
        _: &mut [MaybeUninit<f32>],
        _: &mut [MaybeUninit<f32>],
    ) -> usize {
        0
    }

    /// The first maximum's value of each 2×2 window of rows `r0`, `r1` (`2·dst.len()` values each) into `dst`;
    /// returns how many windows it did (all, or 0 without AVX-512).
    #[cfg(target_arch = "x86_64")]
    pub(super) fn max_row_pair(r0: &[f32], r1: &[f32], dst: &mut [f32]) -> usize {
        let n = dst.len();
        assert!(r0.len() >= 2 * n && r1.len() >= 2 * n);
        if n == 0 || !crate::layers::direct::available() {
            return 0;
        }
        // SAFETY: AVX-512F is present (checked above); accesses lie within the first `2·n` values of the rows and
        // the `n` of `dst` (asserted above; the last group's accesses are masked).
        unsafe { max_avx512(r0.as_ptr(), r1.as_ptr(), dst.as_mut_ptr(), n) };
        n
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub(super) fn max_row_pair(_: &[f32], _: &[f32], _: &mut [f32]) -> usize {
        0
    }

    /// Windows `k..k + m` (`m ≤ 16`) of rows `r0`, `r1`: their four cells as vectors (top-left, top-right,
    /// bottom-left, bottom-right; lanes past `m` zero) and the lane masks for `m` windows and for the first and last
    /// sixteen of their `2m` values in a row.
    ///
    /// # Safety
    /// AVX-512F must be present and `r0`, `r1` valid for `2·(k + m)` values (only those are read).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn windows(
        r0: *const f32,
        r1: *const f32,
        k: usize,
        m: usize,
    ) -> ([std::arch::x86_64::__m512; 4], [std::arch::x86_64::__mmask16; 3]) {
        use std::arch::x86_64::*;
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        use crate::layers::direct::lanes;
        let (mg, ma, mb) = (lanes(m), lanes(2 * m), lanes((2 * m).saturating_sub(16)));
        let p = 2 * k;
        // SAFETY: the masked lanes lie below `2·(k + m)`, valid by the caller's contract.
        let [x0, x1, y0, y1] = unsafe {
            [
                _mm512_maskz_loadu_ps(ma, r0.add(p)),
                _mm512_maskz_loadu_ps(mb, r0.add(p + 16)),
                _mm512_maskz_loadu_ps(ma, r1.add(p)),
                _mm512_maskz_loadu_ps(mb, r1.add(p + 16)),
            ]
        };
        let cells = [
            _mm512_permutex2var_ps(x0, even, x1),
            _mm512_permutex2var_ps(x0, odd, x1),
            _mm512_permutex2var_ps(y0, even, y1),
            _mm512_permutex2var_ps(y0, odd, y1),
        ];
        (cells, [mg, ma, mb])
    }

    /// `n` windows: rows `r0`, `r1` hold `2·n` values each, `dst` holds `n`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn max_avx512(r0: *const f32, r1: *const f32, dst: *mut f32, n: usize) {
        use std::arch::x86_64::*;
        // `if v > m { v } else { m }`: the ordered comparison is false for NaN on either side, as the scalar `>`.
        let pick = |m: __m512, v: __m512| _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, m), m, v);
        for k in (0..n).step_by(16) {
            let m = (n - k).min(16);
            // SAFETY (all pointer accesses): only the masked lanes are accessed, all below `2·n` (rows) and `n`
            // (`dst`), see the caller.
            let ([a0, a1, b0, b1], [mg, _, _]) = unsafe { windows(r0, r1, k, m) };
            let v = pick(pick(pick(a0, a1), b0), b1);
            unsafe { _mm512_mask_storeu_ps(dst.add(k), mg, v) };
        }
    }

    /// `n` windows: rows `r0`, `r1` and cells `o0`, `o1` hold `2·n` values each, `g` holds `n`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn route_avx512(r0: *const f32, r1: *const f32, g: *const f32, o0: *mut f32, o1: *mut f32, n: usize) {
        use std::arch::x86_64::*;
        let low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        let high = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        let zero = _mm512_setzero_ps();
        for k in (0..n).step_by(16) {
            let m = (n - k).min(16);
            let p = 2 * k;
            // SAFETY (all pointer accesses): lanes outside the masks are neither read nor written, and the masked
            // lanes lie below `2·n` (rows) and `n` (`g`), see the caller.
            let ([a0, a1, b0, b1], [mg, ma, mb]) = unsafe { windows(r0, r1, k, m) };
            let v = _mm512_add_ps(zero, unsafe { _mm512_maskz_loadu_ps(mg, g.add(k)) });
            // Ordered "greater than": false when either side is NaN, as the scalar `>`.
            let w1 = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(a1, a0);
            let m1 = _mm512_mask_blend_ps(w1, a0, a1);
            let w2 = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(b0, m1);
            let m2 = _mm512_mask_blend_ps(w2, m1, b0);
            let w3 = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(b1, m2);
            let d00 = _mm512_maskz_mov_ps(!(w1 | w2 | w3), v);
            let d01 = _mm512_maskz_mov_ps(w1 & !w2 & !w3, v);
            let d10 = _mm512_maskz_mov_ps(w2 & !w3, v);
            let d11 = _mm512_maskz_mov_ps(w3, v);
            unsafe {
                _mm512_mask_storeu_ps(o0.add(p), ma, _mm512_permutex2var_ps(d00, low, d01));
                _mm512_mask_storeu_ps(o0.add(p + 16), mb, _mm512_permutex2var_ps(d00, high, d01));
                _mm512_mask_storeu_ps(o1.add(p), ma, _mm512_permutex2var_ps(d10, low, d11));
                _mm512_mask_storeu_ps(o1.add(p + 16), mb, _mm512_permutex2var_ps(d10, high, d11));
            }
        }
    }
}

/// Output shape of a pooling window over a `[C, H, W]` input.
fn pooled_shape(p: &Pool2d, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
    let input = inputs[0];
    if input.len() != 3 {
        return Err(format!("needs input [channels, height, width], got {input:?}"));
    }
    p.window.validate()?;
    let (oh, ow) = p.window.output_hw(input[1], input[2]).ok_or_else(|| {
        format!(
            "window {:?} does not fit a {}×{} input",
            p.window.kernel, input[1], input[2]
        )
    })?;
    Ok(vec![input[0], oh, ow])
}

fn batch4<'a>(x: &'a ArrayViewD<f32>) -> ArrayView4<'a, f32> {
    x.view()
        .into_dimensionality::<Ix4>()
        .expect("shape checked at construction")
}

/// [`Pool2d`] as max pooling.
pub(crate) struct MaxPoolOp<'a>(pub &'a Pool2d);

/// [`Pool2d`] as average pooling.
pub(crate) struct AvgPoolOp<'a>(pub &'a Pool2d);

impl Op for MaxPoolOp<'_> {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        pooled_shape(self.0, inputs)
    }

    fn forward(&self, xs: &[ArrayViewD<f32>], _: &[usize]) -> ArrayD<f32> {
        self.0.max_forward(batch4(&xs[0])).into_dyn()
    }

    fn backward(&self, xs: &[ArrayViewD<f32>], g: ArrayViewD<f32>) -> Vec<ArrayD<f32>> {
        vec![self.0.max_route(batch4(&xs[0]), batch4(&g)).into_dyn()]
    }
}

impl Op for AvgPoolOp<'_> {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        pooled_shape(self.0, inputs)
    }

    fn forward(&self, xs: &[ArrayViewD<f32>], _: &[usize]) -> ArrayD<f32> {
        self.0.avg_forward(batch4(&xs[0])).into_dyn()
    }

    fn backward(&self, xs: &[ArrayViewD<f32>], g: ArrayViewD<f32>) -> Vec<ArrayD<f32>> {
        vec![self.0.avg_transpose(batch4(&g), batch4(&xs[0]).dim()).into_dyn()]
    }
}

/// The flat index of the first maximum (row by row) of the `kh × kw` window whose top-left cell is `p[base]`, in a
/// plane `w` wide; the window lies inside the plane.
#[inline]
fn first_max(p: &[f32], base: usize, w: usize, [kh, kw]: [usize; 2]) -> usize {
    let (mut best, mut at) = (p[base], base);
    for ky in 0..kh {
        let row = &p[base + ky * w..base + ky * w + kw];
        for (kx, &v) in row.iter().enumerate() {
            if v > best {
                best = v;
                at = base + ky * w + kx;
            }
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ResNet's 3×3 stride-2 padded max pool over a photo-sized value, its planes split over pools of 2 and 3
    /// threads: each output is its window's first maximum found by a plain search, and the route puts each output's
    /// value on that cell (adding where windows share a winner), the same bits as on one thread.
    #[test]
    fn planes_split_over_threads_pool_and_route_by_the_definition() {
        let (n, c, h, w) = (1, 336, 57, 56);
        // Ties (values repeat every 13 cells) so the first maximum matters; no plane is a copy of the one half or a
        // third of the channels on.
        let x = Array4::from_shape_fn((n, c, h, w), |(_, ci, y, z)| {
            ((ci * 5 + y * 3 + z * 11) % 13) as f32 - 6.0
        });
        let pool = Pool2d {
            window: Window::square(3, 2, 1),
            count_include_pad: false,
        };
        let (oh, ow) = pool.window.output_hw(h, w).unwrap();
        assert!(n * c * oh * ow >= crate::par::PAR_MIN_VALUES);
        // The definition: the first maximum in row order of the window's cells inside the input.
        let mut expect = Array4::<f32>::zeros((n, c, oh, ow));
        let mut routed = Array4::<f32>::zeros((n, c, h, w));
        let g = Array4::from_shape_fn((n, c, oh, ow), |(_, ci, y, z)| (ci + y * 2 + z) as f32 * 0.25 + 1.0);
        for ci in 0..c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut best: Option<(f32, usize, usize)> = None;
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (iy, ix) = ((oy * 2 + ky) as isize - 1, (ox * 2 + kx) as isize - 1);
                            if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                                continue;
                            }
                            let v = x[[0, ci, iy as usize, ix as usize]];
                            if best.is_none_or(|(b, _, _)| v > b) {
                                best = Some((v, iy as usize, ix as usize));
                            }
                        }
                    }
                    let (v, iy, ix) = best.unwrap();
                    expect[[0, ci, oy, ox]] = v;
                    routed[[0, ci, iy, ix]] += g[[0, ci, oy, ox]];
                }
            }
        }
        let bits = |a: &Array4<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for threads in [1, 2, 3] {
            let p = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let (y, r) = p.install(|| (pool.max_forward(x.view()), pool.max_route(x.view(), g.view())));
            assert_eq!(bits(&y), bits(&expect), "pooled values on {threads} threads");
            assert_eq!(bits(&r), bits(&routed), "routed values on {threads} threads");
        }
    }

    /// The one-pass 2×2 route, vector and scalar, gives the general path's bits: ties (first maximum wins), −0 and
    /// +0, NaN, negative values, odd sizes (the last row and column belong to no window), rows of more and fewer than
    /// sixteen windows (the vector loop's masked last group).
    #[test]
    fn the_2x2_route_is_the_general_route_bit_for_bit() {
        let pool = Pool2d::square(2, 2);
        let values = [0.0f32, -0.0, 1.0, 1.0, -2.0, f32::NAN, 3.5, -1.0e-30, 2.0];
        for (n, c, h, w) in [
            (2, 3, 6, 6),
            (1, 2, 7, 5),
            (3, 1, 5, 8),
            (1, 2, 6, 37),
            (2, 1, 5, 66),
            (1, 1, 2, 96),
            (2, 2, 8, 64),
        ] {
            let len = n * c * h * w;
            // A fixed pattern, and a pseudo-random one from few distinct values (many ties, every winner position).
            let mut state = 0x9e37_79b9_u32;
            let mut next = || {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as usize
            };
            let xs: Vec<f32> = if h % 2 == 0 && w % 4 == 0 {
                (0..len).map(|_| values[next() % values.len()]).collect()
            } else {
                (0..len).map(|i| values[(i * 7 + i / 3) % values.len()]).collect()
            };
            let gs: Vec<f32> = (0..n * c * (h / 2) * (w / 2))
                .map(|i| [1.5f32, -0.0, -2.25, 0.0][i % 4])
                .collect();
            let mut general = vec![0.0f32; len];
            pool.route_by_winners(&xs, &gs, (n, c, h, w), &mut general);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            // The maxima: the general path's value at each window's winner.
            let (win, oh, ow) = pool.winners(&xs, (n, c, h, w));
            let maxima: Vec<f32> = win
                .iter()
                .enumerate()
                .map(|(o, &i)| xs[(o / (oh * ow)) * h * w + i])
                .collect();
            for simd in [true, false] {
                assert_eq!(
                    bits(&max_2x2_with(&xs, (n, c, h, w), simd)),
                    bits(&maxima),
                    "maxima {n}×{c}×{h}×{w}, simd {simd}"
                );
                let mut fast = vec![MaybeUninit::new(7.0f32); len];
                route_2x2_with(&xs, &gs, &mut fast, (n, c, h, w), simd);
                // SAFETY: initialised above (and every cell rewritten by the route).
                let fast: Vec<f32> = fast.iter().map(|v| unsafe { v.assume_init() }).collect();
                assert_eq!(bits(&fast), bits(&general), "{n}×{c}×{h}×{w}, simd {simd}");
            }
            assert!(general.iter().any(|&v| v != 0.0), "the case routes something");
        }
    }
}
