//! Max and average pooling over 2-D windows.

use ndarray::{Array4, ArrayView4};
use serde::{Deserialize, Serialize};

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

    /// Visits every output position `(n, c, oy, ox)` with the flat input indices (within the channel plane)
    /// of its window that lie inside the input.
    fn for_each_window(&self, (n, c, h, w): (usize, usize, usize, usize), mut f: impl FnMut(usize, usize, &[usize])) {
        let (oh, ow) = self.window.output_hw(h, w).expect("window checked by the caller");
        let [kh, kw] = self.window.kernel;
        let mut idx = Vec::with_capacity(kh * kw);
        for plane in 0..n * c {
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

    /// Max pooling; padded cells never win.
    ///
    /// # Shapes
    /// `[N, C, H, W]` → `[N, C, OH, OW]`.
    pub fn max_forward(&self, x: ArrayView4<f32>) -> Array4<f32> {
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let dims = self.out_dims(x.dim());
        let (hw_in, hw_out) = (x.dim().2 * x.dim().3, dims.2 * dims.3);
        let mut out = Array4::<f32>::zeros(dims);
        let os = out.as_slice_mut().expect("fresh array");
        self.for_each_window(x.dim(), |plane, o, idx| {
            let p = &xs[plane * hw_in..];
            os[plane * hw_out + o] = idx.iter().map(|&i| p[i]).fold(f32::NEG_INFINITY, f32::max);
        });
        out
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
        let (hw_in, hw_out) = (x.dim().2 * x.dim().3, g.dim().2 * g.dim().3);
        let mut out = Array4::<f32>::zeros(x.dim());
        let os = out.as_slice_mut().expect("fresh array");
        self.for_each_window(x.dim(), |plane, o, idx| {
            let p = &xs[plane * hw_in..(plane + 1) * hw_in];
            let mut best: Option<usize> = None;
            for &i in idx {
                if best.is_none_or(|b| p[i] > p[b]) {
                    best = Some(i);
                }
            }
            if let Some(b) = best {
                os[plane * hw_in + b] += gs[plane * hw_out + o];
            }
        });
        out
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
        self.for_each_window(x.dim(), |plane, o, idx| {
            let p = &xs[plane * hw_in..];
            os[plane * hw_out + o] = idx.iter().map(|&i| p[i]).sum::<f32>() / self.divisor(idx.len());
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
        self.for_each_window(in_dims, |plane, o, idx| {
            let v = gs[plane * hw_out + o] / self.divisor(idx.len());
            for &i in idx {
                os[plane * hw_in + i] += v;
            }
        });
        out
    }
}
