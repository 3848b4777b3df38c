//! 2-D convolution by im2col + GEMM, and its transpose by GEMM + col2im.

use ndarray::linalg::general_mat_mul;

use super::gemm::gemm;
use ndarray::{Array1, Array2, Array4, ArrayView2, ArrayView4, ArrayViewMut2, Axis, s};
use serde::{Deserialize, Serialize};

use super::depthwise_lanes::Depthwise;
use super::direct::Kernels;
use super::op::{Op, finite};
use super::unfold::{Taps, col2im, gather_outputs, im2col, scatter_outputs};
#[cfg(test)]
use super::unfold::{col2im_general, im2col_general};
use super::window::Window;

use super::PAR_MIN_MACS;

/// `c = a · b` (`gemm::gemm`: `general_mat_mul`'s bits with α = 1, β = 0), its rows split over the threads of the rayon pool this runs in
/// when the product is large: a photo's convolution keeps every core busy even when there is one sample to explain.
/// The same bits as one call: every output value is one row of `a` times one column of `b`, summed over `k` in the
/// same blocks and order whichever rows share a call.
pub(crate) fn par_gemm(a: &ArrayView2<f32>, b: &ArrayView2<f32>, c: &mut ArrayViewMut2<f32>) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let threads = rayon::current_num_threads();
    // Few rows (a stem's transposed product: 27 rows of 3×3 taps) split by columns still.
    if threads < 2 || (m < 32 && n <= m) || m.saturating_mul(k).saturating_mul(n) < PAR_MIN_MACS {
        gemm(a, b, c);
        return;
    }
    // Each part copies the columns of `b` it multiplies into panels (`gemm` reads `a` in place): split the longer
    // side, so the smaller operand is the one both parts go through whole (a convolution's input columns far
    // outnumber its output channels until the last stages).
    // Whole multiples of 16 rows or columns a part (a vector's worth, matrixmultiply's kernel width).
    let axis = if n > m { Axis(1) } else { Axis(0) };
    let part = if n > m { n } else { m }.div_ceil(threads).div_ceil(16) * 16;
    rayon::scope(|scope| {
        if n > m {
            for (bi, mut ci) in b.axis_chunks_iter(axis, part).zip(c.axis_chunks_iter_mut(axis, part)) {
                scope.spawn(move |_| gemm(a, &bi, &mut ci));
            }
        } else {
            for (ai, mut ci) in a.axis_chunks_iter(axis, part).zip(c.axis_chunks_iter_mut(axis, part)) {
                scope.spawn(move |_| gemm(&ai, b, &mut ci));
            }
        }
    });
}

/// `out += b` with one bias value per output channel (`out`: `[N, O, OH, OW]`, standard layout), the planes split
/// over the threads: the same one addition per value as ndarray's broadcast `+=`.
fn add_bias(out: &mut Array4<f32>, b: &Array1<f32>) {
    let (_, o, oh, ow) = out.dim();
    let hw = oh * ow;
    if hw == 0 || o == 0 {
        return;
    }
    let os = out.as_slice_mut().expect("fresh array");
    let work = os.len();
    crate::par::units_mut(os, hw, work, |first, part| {
        for (p, plane) in part.chunks_exact_mut(hw).enumerate() {
            let v = b[(first + p) % o];
            plane.iter_mut().for_each(|x| *x += v);
        }
    });
}

/// Which paths a convolution may take besides im2col + GEMM (the reference the tests hold the others to).
#[derive(Clone, Copy, Debug)]
pub(super) struct Paths {
    /// The direct path (stride 1, unpadded) with these kernels.
    pub(super) direct: Option<Kernels>,
    /// The pointwise (1×1 straight from the input planes) and depthwise paths.
    pub(super) special: bool,
    /// How the depthwise path computes.
    pub(super) depthwise: Depthwise,
}

impl Paths {
    /// im2col + GEMM only.
    #[cfg(test)]
    pub(super) const GEMM: Paths = Paths {
        direct: None,
        special: false,
        depthwise: Depthwise {
            side_by_side: 0,
            wide: false,
        },
    };

    /// What the layers run: every path that applies on this processor.
    pub(super) fn fast() -> Paths {
        Paths {
            direct: Kernels::fast(),
            special: true,
            depthwise: Depthwise::fast(),
        }
    }

    /// [`Paths::fast`] with each way the depthwise layers can compute here: planes side by side up to
    /// [`super::depthwise_lanes::SMALL`] or none (so tests reach the plane-by-plane path on small planes), each in
    /// 512-bit registers where the processor has them and in 256-bit ones (what processors without AVX-512 run).
    #[cfg(test)]
    pub(super) fn depthwise_variants() -> Vec<Paths> {
        let fast = Paths::fast();
        let mut all = Vec::new();
        // Without AVX-512 only the 256-bit sums (not twice).
        let widths: &[bool] = if fast.depthwise.wide { &[true, false] } else { &[false] };
        for side_by_side in [fast.depthwise.side_by_side, 0] {
            for &wide in widths {
                all.push(Paths {
                    depthwise: Depthwise { side_by_side, wide },
                    ..fast
                });
            }
        }
        all
    }

    /// The direct path with `kernels` where it applies, else im2col + GEMM.
    #[cfg(test)]
    pub(super) fn direct(kernels: Kernels) -> Paths {
        Paths {
            direct: Some(kernels),
            special: false,
            depthwise: Depthwise {
                side_by_side: 0,
                wide: false,
            },
        }
    }
}

/// Output positions from which a padded stride-1 convolution takes the direct path (see `forward_with`).
const PADDED_DIRECT_MIN_HW: usize = 400;

/// Upper bound on the number of floats in one im2col buffer; larger batches are split into groups.
const COLS_BUDGET: usize = 1 << 17;

/// Columns a GEMM over several samples aims at. A sample's product on a small plane (ResNet-50's 7×7: 49 columns
/// against 512 output channels and 4,608 taps) is a thin GEMM that reads all of the layer's weights for few
/// multiply-adds; on one thread (matrixmultiply, this machine kind) a 512 × 4608 × 49 product ran at 63 GFLOP/s
/// one sample a call and at 145 eight samples a call, 256 × 2304 × 196 at 140 and 174 (four a call), while
/// 128 × 1152 × 784 lost (168 → 156). Planes of up to half this many positions are multiplied several samples at
/// a time, through a gathered copy of their columns and a product matrix. With `gemm`, which no longer copies the
/// weights for every call, it still pays: the MNIST ResNet's ε batch took 1.10× as long without it.
const BATCH_COLS: usize = 512;

/// Samples multiplied in one GEMM on planes of `hw` positions (1: one GEMM a sample, straight into its planes).
fn gemm_samples(n: usize, hw: usize) -> usize {
    if hw == 0 || hw * 2 > BATCH_COLS {
        1
    } else {
        (BATCH_COLS / hw).clamp(1, n.max(1))
    }
}

/// `out[j] = a · x[j]` for every sample `j`, `x[j]` read as the matrix `[K, H·W]` and `out[j]` as `[M, H·W]`: a 1×1
/// convolution (`a` its weights) and its transpose (`a` the weights transposed). One GEMM a sample straight into its
/// planes, or on small planes several samples a GEMM: their planes side by side as columns, the product copied back.
fn pointwise_products(a: &ArrayView2<f32>, x: ArrayView4<f32>, out: &mut Array4<f32>) {
    let (n, k, h, w) = x.dim();
    let (m, hw) = (a.nrows(), h * w);
    let per = gemm_samples(n, hw);
    if per > 1 {
        with_cols((k + m) * per * hw, |buf| {
            let (bbuf, pbuf) = buf.split_at_mut(k * per * hw);
            for start in (0..n).step_by(per) {
                let g = per.min(n - start);
                let mut b = ArrayViewMut2::from_shape((k, g * hw), &mut bbuf[..k * g * hw]).expect("sized");
                gather_outputs(x.slice(s![start..start + g, .., .., ..]), &mut b);
                let mut p = ArrayViewMut2::from_shape((m, g * hw), &mut pbuf[..m * g * hw]).expect("sized");
                par_gemm(a, &b.view(), &mut p);
                scatter_outputs(p.view(), out.slice_mut(s![start..start + g, .., .., ..]));
            }
        });
        return;
    }
    for j in 0..n {
        let xj = x.slice(s![j, .., .., ..]);
        let xj = xj.into_shape_with_order((k, hw)).expect("standard layout");
        let mut dst = out.slice_mut(s![j, .., .., ..]);
        let mut dst = dst.view_mut().into_shape_with_order((m, hw)).expect("fresh array");
        par_gemm(a, &xj, &mut dst);
    }
}

/// Runs `f` on this thread's scratch buffer (see [`super::with_scratch`]) cut to `len` floats (stale values from
/// earlier calls: the im2col matrix and the gathered columns are written in full before they are read).
fn with_cols<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    super::with_scratch(|v| {
        if v.len() < len {
            v.resize(len, 0.0);
        }
        f(&mut v[..len])
    })
}

/// A 2-D convolution (cross-correlation, as in PyTorch and ONNX), with channel groups and dilation.
///
/// `dilation` and `groups` are not part of the serde form (version-1 model files hold convolutions without them);
/// graph model files store them beside the layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conv2d {
    /// Kernels, `[out_channels, in_channels / groups, kh, kw]`.
    pub weight: Array4<f32>,
    /// Bias, `[out_channels]`, if the layer has one.
    pub bias: Option<Array1<f32>>,
    /// Stride and padding (the kernel size must equal the weight's last two dimensions).
    pub window: Window,
    /// Spacing of the kernel taps (1 = adjacent).
    #[serde(skip, default = "unit_pair")]
    pub dilation: [usize; 2],
    /// Channel groups: output channels of group `g` read input channels of group `g` only (depthwise: groups =
    /// in_channels).
    #[serde(skip, default = "unit")]
    pub groups: usize,
}

fn unit_pair() -> [usize; 2] {
    [1, 1]
}

fn unit() -> usize {
    1
}

impl Conv2d {
    /// A convolution from kernels `[out, in, kh, kw]`, optional bias, stride and padding `[top, left, bottom, right]`.
    pub fn new(weight: Array4<f32>, bias: Option<Array1<f32>>, stride: [usize; 2], pads: [usize; 4]) -> Self {
        let (_, _, kh, kw) = weight.dim();
        Conv2d {
            weight,
            bias,
            window: Window {
                kernel: [kh, kw],
                stride,
                pads,
            },
            dilation: [1, 1],
            groups: 1,
        }
    }

    /// Whether the convolution has groups or dilation (only graph model files can hold those).
    pub fn is_plain(&self) -> bool {
        self.groups == 1 && self.dilation == [1, 1]
    }

    /// The window the kernel spans on the input: the kernel size stretched by the dilation.
    pub fn extent(&self) -> Window {
        let [kh, kw] = self.window.kernel;
        Window {
            kernel: [
                kh.saturating_sub(1).saturating_mul(self.dilation[0]).saturating_add(1),
                kw.saturating_sub(1).saturating_mul(self.dilation[1]).saturating_add(1),
            ],
            ..self.window
        }
    }

    /// Output height and width for an input of `h × w`, or `None` when the kernel does not fit.
    pub fn output_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        if self.window.kernel.contains(&0) {
            return None;
        }
        self.extent().output_hw(h, w)
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.shape()[0]
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.weight.shape()[1].saturating_mul(self.groups)
    }

    /// The weights as a matrix `[out, in/groups·kh·kw]` (a view, no copy); group `g` owns rows
    /// `g·out/groups..(g+1)·out/groups`.
    fn weight_matrix(&self) -> ArrayView2<'_, f32> {
        let o = self.out_channels();
        let k = self.weight.len() / o.max(1);
        self.weight
            .view()
            .into_shape_with_order((o, k))
            .expect("conv weights are stored contiguously")
    }

    /// Whether each group reads one input channel (depthwise) and the depthwise path runs on this processor.
    fn is_depthwise(&self) -> bool {
        let side = super::depthwise::MAX_SIDE;
        self.groups > 1
            && self.weight.shape()[1] == 1
            && self.window.kernel[0] <= side
            && self.window.kernel[1] <= side
            && super::depthwise::available()
    }

    /// Whether the grouped path takes this convolution (groups of several input channels, sums no deeper than one of
    /// GEMM's blocks) on this processor.
    fn is_grouped(&self) -> bool {
        let ([kh, kw], cg) = (self.window.kernel, self.weight.shape()[1]);
        let og = self.out_channels() / self.groups.max(1);
        let side = super::depthwise::MAX_SIDE;
        self.groups > 1
            && cg > 1
            && self.weight.is_standard_layout()
            && kh <= side
            && kw <= side
            && cg * kh * kw <= super::grouped::MAX_DEPTH
            && og <= super::grouped::MAX_DEPTH
            && super::depthwise::available()
    }

    /// The grouped path's view of the weights.
    fn groups_of(&self, paths: Paths) -> super::grouped::Groups<'_> {
        super::grouped::Groups {
            weights: self.weight.as_slice().expect("conv weights are stored contiguously"),
            cg: self.weight.shape()[1],
            og: self.out_channels() / self.groups,
            t: self.plane_taps(),
            wide: paths.depthwise.wide,
        }
    }

    /// The taps of the depthwise path.
    fn plane_taps(&self) -> super::depthwise::PlaneTaps {
        super::depthwise::PlaneTaps {
            kernel: self.window.kernel,
            stride: self.window.stride,
            pad: [self.window.pads[0], self.window.pads[1]],
            dilation: self.dilation,
        }
    }

    /// Kernel taps of `im2col`/`col2im`.
    fn taps(&self) -> Taps {
        Taps {
            kernel: self.window.kernel,
            stride: self.window.stride,
            pads: self.window.pads,
            dilation: self.dilation,
        }
    }

    fn group_size(&self, n: usize, hw_out: usize) -> usize {
        let rows = self.weight.len() / self.out_channels().max(1);
        (COLS_BUDGET / (rows * hw_out).max(1)).clamp(1, n.max(1))
    }

    /// The convolution `W ⋆ x`, plus the bias when `with_bias` is set.
    ///
    /// # Shapes
    /// `x: [N, C, H, W]` → `[N, O, OH, OW]`; the caller has checked `C` and that the window fits.
    pub fn forward(&self, x: ArrayView4<f32>, with_bias: bool) -> Array4<f32> {
        self.forward_with(x, with_bias, Paths::fast())
    }

    /// [`Conv2d::forward`] with the direct path's `kernels` where the shape allows it; `None` keeps to im2col + GEMM
    /// (so tests can compare the paths).
    fn forward_with(&self, x: ArrayView4<f32>, with_bias: bool, paths: Paths) -> Array4<f32> {
        let (n, c, h, w) = x.dim();
        let (oh, ow) = self.output_hw(h, w).expect("window checked by the caller");
        let o = self.out_channels();
        let (groups, og, cg) = (self.groups, o / self.groups, self.weight.shape()[1]);
        let hw = oh * ow;
        let x = x.as_standard_layout();
        let wmat = self.weight_matrix();
        let taps = self.taps();
        if paths.special && self.is_depthwise() && c * h * w > 0 && o * hw > 0 {
            let x = x.as_slice().expect("standard layout");
            let bias = super::direct::bias_slice(&self.bias, with_bias);
            let mut out = unwritten((n, o, oh, ow));
            super::depthwise::forward(
                x,
                (c, h, w),
                (
                    self.weight.as_standard_layout().as_slice().expect("standard layout"),
                    bias.as_deref(),
                ),
                self.plane_taps(),
                out.as_slice_mut().expect("fresh array"),
                (o, oh, ow),
                paths.depthwise,
            );
            // SAFETY: depthwise::forward writes every value of its output.
            return unsafe { out.assume_init() };
        }
        if paths.special && self.is_grouped() && c * h * w > 0 && o * hw > 0 {
            let bias = super::direct::bias_slice(&self.bias, with_bias);
            let mut out = Array4::<f32>::zeros((n, o, oh, ow));
            let xs = x.as_slice().expect("standard layout");
            let os = out.as_slice_mut().expect("fresh array");
            super::grouped::forward(self.groups_of(paths), xs, (c, h, w), bias.as_deref(), os, (o, oh, ow));
            return out;
        }
        if paths.special && groups == 1 && taps.is_dense() && self.window.kernel == [1, 1] && c >= 64 && o * hw > 0 {
            // Pointwise: each sample's input planes are already the unfolded matrix `[C, H·W]`. (With fewer input
            // channels the direct path below is faster: GEMM copies the whole input for a short sum.)
            let mut out = Array4::<f32>::zeros((n, o, oh, ow));
            pointwise_products(&wmat, x.view(), &mut out);
            if with_bias && let Some(b) = &self.bias {
                add_bias(&mut out, b);
            }
            return out;
        }
        // A padded stride-1 convolution is the unpadded one of the zero-padded input: the padding's taps multiply
        // zeros in the same k order as GEMM multiplies im2col's zeros (the same bits). On planes of 20×20 and more
        // (ResNet-50's 3×3 at 28×28 and 56×56, all of VGG's) the direct path beats im2col + GEMM (writing the unfolded
        // matrix and copying it into panels; 0.7–0.96× of the direct path with `gemm`); on smaller planes
        // it does not.
        let padded = (paths.special
            && paths.direct.is_some()
            && groups == 1
            && self.window.stride == [1, 1]
            && self.dilation == [1, 1]
            && self.window.pads != [0; 4]
            && hw >= PADDED_DIRECT_MIN_HW)
            .then(|| {
                let [pt, pl, pb, pr] = self.window.pads;
                let mut xp = Array4::<f32>::zeros((n, c, h + pt + pb, w + pl + pr));
                xp.slice_mut(s![.., .., pt..pt + h, pl..pl + w]).assign(&x);
                xp
            });
        let (x, (h, w)) = match &padded {
            Some(xp) => (xp.view().into(), (xp.dim().2, xp.dim().3)),
            None => (x, (h, w)),
        };
        if let Some(kernels) = paths.direct
            && groups == 1
            && (taps.is_dense() || padded.is_some())
            && o > 0
            && hw > 0
        {
            // The same bits as below, without the unfolded matrix (see `direct`).
            let wm = wmat.as_standard_layout();
            let [kh, kw] = self.window.kernel;
            let bias = super::direct::bias_slice(&self.bias, with_bias);
            let prepared = super::direct::prepared(
                wm.as_slice().expect("standard layout"),
                o,
                (c, h, w),
                (kh, kw),
                bias.as_deref(),
            );
            let xs = x.as_slice().expect("standard layout");
            let mut out = Array4::<f32>::uninit((n, o, oh, ow));
            let os = out.as_slice_mut().expect("fresh array");
            for (xj, oj) in xs.chunks_exact(c * h * w).zip(os.chunks_exact_mut(o * hw)) {
                super::direct::forward_sample(xj, &prepared, oj, kernels);
            }
            // SAFETY: `forward_sample` writes every value of its sample's output, and the chunks cover `out`.
            return unsafe { out.assume_init() };
        }
        let mut out = Array4::<f32>::zeros((n, o, oh, ow));
        let per = gemm_samples(n, hw);
        let batch = self.group_size(n, hw).max(per);
        let rows = wmat.ncols();
        let product = if per > 1 { og * batch * hw } else { 0 };
        with_cols(rows * batch * hw + product, |buf| {
            let (cols, pbuf) = buf.split_at_mut(rows * batch * hw);
            let mut cols = ArrayViewMut2::from_shape((rows, batch * hw), cols).expect("buffer of this size");
            for start in (0..n).step_by(batch) {
                let g = batch.min(n - start);
                for gi in 0..groups {
                    let mut cols = cols.slice_mut(s![.., ..g * hw]);
                    im2col(
                        x.slice(s![start..start + g, gi * cg..(gi + 1) * cg, .., ..]),
                        &taps,
                        oh,
                        ow,
                        &mut cols,
                        groups == 1,
                    );
                    // One GEMM per sample, straight into its output planes (no copy of a product matrix), or on
                    // small planes one over the group into a product matrix: each output element sums over the same
                    // k in the same order either way.
                    let wg = wmat.slice(s![gi * og..(gi + 1) * og, ..]);
                    if per > 1 {
                        let mut p = ArrayViewMut2::from_shape((og, g * hw), &mut pbuf[..og * g * hw]).expect("sized");
                        par_gemm(&wg, &cols.view(), &mut p);
                        let dst = out.slice_mut(s![start..start + g, gi * og..(gi + 1) * og, .., ..]);
                        scatter_outputs(p.view(), dst);
                    } else {
                        for j in 0..g {
                            let mut dst = out.slice_mut(s![start + j, gi * og..(gi + 1) * og, .., ..]);
                            let mut dst = dst.view_mut().into_shape_with_order((og, hw)).expect("fresh array");
                            par_gemm(&wg, &cols.slice(s![.., j * hw..(j + 1) * hw]), &mut dst);
                        }
                    }
                }
            }
        });
        if with_bias && let Some(b) = &self.bias {
            add_bias(&mut out, b);
        }
        out
    }

    /// The transposed convolution `Wᵀ s`, cropped to an input of `in_hw`: the gradient of
    /// `Σ s ⊙ (W ⋆ x)` with respect to `x`.
    ///
    /// # Shapes
    /// `s: [N, O, OH, OW]` → `[N, C, H, W]` with `(H, W) = in_hw`.
    pub fn transpose(&self, s: ArrayView4<f32>, in_hw: (usize, usize)) -> Array4<f32> {
        self.transpose_with(s, in_hw, Paths::fast())
    }

    /// [`Conv2d::transpose`] with the direct path's `kernels` where the shape allows it; `None` keeps to GEMM +
    /// col2im (so tests can compare the paths).
    fn transpose_with(&self, s: ArrayView4<f32>, in_hw: (usize, usize), paths: Paths) -> Array4<f32> {
        let (n, o, oh, ow) = s.dim();
        let (h, w) = in_hw;
        let c = self.in_channels();
        let (groups, og, cg) = (self.groups, o / self.groups, self.weight.shape()[1]);
        let hw = oh * ow;
        let wmat = self.weight_matrix();
        let taps = self.taps();
        let rows = wmat.ncols();
        let wm = wmat.as_standard_layout();
        if paths.special && self.is_depthwise() && o == c && c * h * w > 0 && o * hw > 0 {
            let s = s.as_standard_layout();
            let mut out = unwritten((n, c, h, w));
            super::depthwise::transpose(
                s.as_slice().expect("standard layout"),
                (o, oh, ow),
                self.weight.as_standard_layout().as_slice().expect("standard layout"),
                self.plane_taps(),
                out.as_slice_mut().expect("fresh array"),
                (c, h, w),
                paths.depthwise,
            );
            // SAFETY: depthwise::transpose writes every value of its output.
            return unsafe { out.assume_init() };
        }
        if paths.special && self.is_grouped() && c * h * w > 0 && o * hw > 0 {
            let s = s.as_standard_layout();
            let mut out = Array4::<f32>::zeros((n, c, h, w));
            let ss = s.as_slice().expect("standard layout");
            let os = out.as_slice_mut().expect("fresh array");
            super::grouped::transpose(self.groups_of(paths), ss, (o, oh, ow), os, (c, h, w));
            return out;
        }
        if paths.special && groups == 1 && taps.is_dense() && self.window.kernel == [1, 1] && (h, w) == (oh, ow) {
            // Pointwise: `Wᵀ s` is each sample's input gradient planes `[C, H·W]` (no folding back).
            let s = s.as_standard_layout();
            let mut out = Array4::<f32>::zeros((n, c, h, w));
            pointwise_products(&wmat.t(), s.view(), &mut out);
            return out;
        }
        let prepared = paths
            .direct
            .filter(|_| groups == 1 && taps.is_dense())
            .and_then(|kernels| {
                let [kh, kw] = self.window.kernel;
                super::direct::PreparedT::new(wm.as_slice().expect("standard layout"), o, (c, h, w), (kh, kw))
                    .map(|p| (p, kernels))
            });
        if let Some((prepared, kernels)) = prepared {
            // The same bits as below, without the product matrix (see `direct`).
            let s = s.as_standard_layout();
            let ss = s.as_slice().expect("standard layout");
            let mut out = Array4::<f32>::uninit((n, c, h, w));
            let os = out.as_slice_mut().expect("fresh array");
            for (sj, oj) in ss.chunks_exact(o * hw).zip(os.chunks_exact_mut(c * h * w)) {
                super::direct::transpose_sample(sj, &prepared, oj, kernels);
            }
            // SAFETY: `transpose_sample` writes every value of each sample's output (not zeroed beforehand).
            return unsafe { out.assume_init() };
        }
        let mut out = Array4::<f32>::zeros((n, c, h, w));
        let per = gemm_samples(n, hw);
        let batch = self.group_size(n, hw).max(per);
        let mut part = (groups > 1).then(|| Array4::<f32>::zeros((batch, cg, h, w)));
        let gathered = if per > 1 { og * batch * hw } else { 0 };
        with_cols(rows * batch * hw + gathered, |buf| {
            let (cols, bbuf) = buf.split_at_mut(rows * batch * hw);
            let mut cols = ArrayViewMut2::from_shape((rows, batch * hw), cols).expect("buffer of this size");
            let s = s.as_standard_layout();
            for start in (0..n).step_by(batch) {
                let g = batch.min(n - start);
                for gi in 0..groups {
                    // One GEMM per sample, reading its output planes where they are (no gathered copy), or on small
                    // planes one over the group's gathered planes: the same sums either way.
                    let wt = wmat.slice(s![gi * og..(gi + 1) * og, ..]);
                    let wt = wt.t();
                    if per > 1 {
                        let mut b = ArrayViewMut2::from_shape((og, g * hw), &mut bbuf[..og * g * hw]).expect("sized");
                        gather_outputs(s.slice(s![start..start + g, gi * og..(gi + 1) * og, .., ..]), &mut b);
                        par_gemm(&wt, &b.view(), &mut cols.slice_mut(s![.., ..g * hw]));
                    } else {
                        for j in 0..g {
                            let sj = s.slice(s![start + j, gi * og..(gi + 1) * og, .., ..]);
                            let sj = sj.into_shape_with_order((og, hw)).expect("standard layout");
                            let mut cj = cols.slice_mut(s![.., j * hw..(j + 1) * hw]);
                            par_gemm(&wt, &sj, &mut cj);
                        }
                    }
                    let cols = cols.slice(s![.., ..g * hw]);
                    match &mut part {
                        None => col2im(
                            cols.view(),
                            &taps,
                            oh,
                            ow,
                            out.slice_mut(s![start..start + g, .., .., ..])
                                .as_slice_mut()
                                .expect("fresh array"),
                            (cg, h, w),
                            true,
                        ),
                        Some(part) => {
                            let mut p = part.slice_mut(s![..g, .., .., ..]);
                            p.fill(0.0);
                            col2im(
                                cols.view(),
                                &taps,
                                oh,
                                ow,
                                p.as_slice_mut().expect("leading rows of a fresh array"),
                                (cg, h, w),
                                false,
                            );
                            out.slice_mut(s![start..start + g, gi * cg..(gi + 1) * cg, .., ..])
                                .assign(&p);
                        }
                    }
                }
            }
        });
        out
    }

    /// Parameter gradients for upstream gradient `g` at input `x`.
    ///
    /// # Shapes
    /// `x: [N, C, H, W]`, `g: [N, O, OH, OW]` → `([O, C/groups, KH, KW], [O])`.
    pub fn param_grads(&self, x: ArrayView4<f32>, g: ArrayView4<f32>) -> (Array4<f32>, Option<Array1<f32>>) {
        let (n, o, oh, ow) = g.dim();
        let (groups, og, cg) = (self.groups, o / self.groups, self.weight.shape()[1]);
        let hw = oh * ow;
        let x = x.as_standard_layout();
        let taps = self.taps();
        let rows = self.weight.len() / o.max(1);
        let mut gw = Array2::<f32>::zeros((o, rows));
        let batch = self.group_size(n, hw);
        let mut smat = Array2::<f32>::zeros((og, batch * hw));
        with_cols(rows * batch * hw, |cols| {
            let mut cols = ArrayViewMut2::from_shape((rows, batch * hw), cols).expect("buffer of this size");
            for start in (0..n).step_by(batch) {
                let gsz = batch.min(n - start);
                for gi in 0..groups {
                    let mut cols = cols.slice_mut(s![.., ..gsz * hw]);
                    im2col(
                        x.slice(s![start..start + gsz, gi * cg..(gi + 1) * cg, .., ..]),
                        &taps,
                        oh,
                        ow,
                        &mut cols,
                        groups == 1,
                    );
                    let mut smat = smat.slice_mut(s![.., ..gsz * hw]);
                    gather_outputs(
                        g.slice(s![start..start + gsz, gi * og..(gi + 1) * og, .., ..]),
                        &mut smat,
                    );
                    let mut gwg = gw.slice_mut(s![gi * og..(gi + 1) * og, ..]);
                    general_mat_mul(1.0, &smat, &cols.t(), 1.0, &mut gwg);
                }
            }
        });
        let gw = gw
            .into_shape_with_order(self.weight.raw_dim())
            .expect("same number of elements");
        let gb = self
            .bias
            .as_ref()
            .map(|_| g.sum_axis(Axis(3)).sum_axis(Axis(2)).sum_axis(Axis(0)));
        (gw, gb)
    }
}

impl Op for Conv2d {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let input = inputs[0];
        let [kh, kw] = [self.weight.shape()[2], self.weight.shape()[3]];
        if input.len() != 3 {
            return Err(format!("needs input [channels, height, width], got {input:?}"));
        }
        if self.window.kernel != [kh, kw] {
            return Err(format!(
                "kernel {:?} does not match weight {:?}",
                self.window.kernel,
                self.weight.shape()
            ));
        }
        if self.window.kernel.contains(&0) || self.dilation.iter().any(|&d| d > super::window::MAX_WINDOW_SIDE) {
            return Err(format!(
                "kernel {:?} or dilation {:?} is out of range",
                self.window.kernel, self.dilation
            ));
        }
        if self.groups == 0 || self.dilation.contains(&0) {
            return Err(format!(
                "groups {} and dilation {:?} must be positive",
                self.groups, self.dilation
            ));
        }
        if !self.out_channels().is_multiple_of(self.groups) {
            return Err(format!(
                "{} output channels do not split into {} groups",
                self.out_channels(),
                self.groups
            ));
        }
        self.extent().validate()?;
        if self.weight.shape()[1].checked_mul(self.groups) != Some(input[0]) {
            return Err(format!(
                "weight {:?} expects {} input channels, input has {}",
                self.weight.shape(),
                self.in_channels(),
                input[0]
            ));
        }
        if self.out_channels() == 0 {
            return Err("has no output channels".into());
        }
        if let Some(b) = &self.bias {
            if b.len() != self.out_channels() {
                return Err(format!(
                    "bias has {} entries, weight has {} output channels",
                    b.len(),
                    self.out_channels()
                ));
            }
            finite("bias", b.view().into_dyn())?;
        }
        finite("weight", self.weight.view().into_dyn())?;
        let (oh, ow) = self.output_hw(input[1], input[2]).ok_or_else(|| {
            format!(
                "kernel {:?} with padding {:?} does not fit a {}×{} input",
                self.window.kernel, self.window.pads, input[1], input[2]
            )
        })?;
        Ok(vec![self.out_channels(), oh, ow])
    }

    fn forward(&self, xs: &[ndarray::ArrayViewD<f32>], _: &[usize]) -> ndarray::ArrayD<f32> {
        let x = xs[0]
            .view()
            .into_dimensionality::<ndarray::Ix4>()
            .expect("shape checked at construction");
        self.forward(x, true).into_dyn()
    }

    fn backward(&self, xs: &[ndarray::ArrayViewD<f32>], g: ndarray::ArrayViewD<f32>) -> Vec<ndarray::ArrayD<f32>> {
        let s = xs[0].shape();
        let g = g
            .into_dimensionality::<ndarray::Ix4>()
            .expect("shape checked at construction");
        vec![self.transpose(g, (s[2], s[3])).into_dyn()]
    }
}

#[cfg(test)]
#[path = "conv_tests.rs"]
mod tests;

/// A fresh output for a path that writes every value of it, not zeroed first. In this crate's tests it is filled with
/// NaN instead, so that a value such a path failed to write fails the comparisons with GEMM.
fn unwritten(shape: (usize, usize, usize, usize)) -> ndarray::Array4<std::mem::MaybeUninit<f32>> {
    #[allow(unused_mut)]
    let mut out = ndarray::Array4::uninit(shape);
    #[cfg(test)]
    out.fill(std::mem::MaybeUninit::new(f32::NAN));
    out
}
