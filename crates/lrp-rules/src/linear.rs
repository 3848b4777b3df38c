//! The linear-layer abstraction: dense layers, convolutions and standalone batch norms (an affine map per channel)
//! as one map `x ↦ Wx (+ b)` with its transpose, under a parameter modifier. Every LRP rule is written once over
//! these calls.

use std::borrow::Cow;

use lrp_core::{Conv2d, Dense, Layer};
use ndarray::{ArrayD, ArrayViewD, Ix2, Ix4};

/// How a rule modifies a layer's weights (and bias) before using the map.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Modifier {
    /// `W⁺`, `b⁺`.
    Positive,
    /// `W⁻`, `b⁻`.
    Negative,
    /// `W + γW⁺`, `b + γb⁺`.
    GammaPositive(f32),
    /// `W + γW⁻`, `b + γb⁻`.
    GammaNegative(f32),
    /// `W²`, no bias.
    Square,
    /// All weights 1, no bias.
    Ones,
}

impl Modifier {
    fn weight(self, w: f32) -> f32 {
        match self {
            Modifier::Positive => w.max(0.0),
            Modifier::Negative => w.min(0.0),
            Modifier::GammaPositive(g) => w + g * w.max(0.0),
            Modifier::GammaNegative(g) => w + g * w.min(0.0),
            Modifier::Square => w * w,
            Modifier::Ones => 1.0,
        }
    }

    fn keeps_bias(self) -> bool {
        !matches!(self, Modifier::Square | Modifier::Ones)
    }
}

/// A layer's linear map, possibly with modified parameters. The layer's own map borrows the network's weights
/// (a copy of every weight in the network per plan was ResNet-50's 97 MB and VGG-16's 528 MB, all of it fresh
/// memory); a modified map owns its new ones.
#[derive(Clone, Debug)]
pub enum LinearMap<'a> {
    /// Fully connected.
    Dense(Cow<'a, Dense>),
    /// 2-D convolution.
    Conv(Cow<'a, Conv2d>),
    /// `a ⊙ x + c` per channel (the first per-sample axis): a batch norm no dense or conv layer folds into.
    Affine {
        /// `a`, one per channel.
        scale: ndarray::Array1<f32>,
        /// `c`, one per channel, if the map adds one.
        shift: Option<ndarray::Array1<f32>>,
    },
}

/// `v` (one value per channel) shaped to broadcast over `[N, C, …]` of rank `rank`.
fn per_channel(v: &ndarray::Array1<f32>, rank: usize) -> ArrayD<f32> {
    let mut shape = vec![1, v.len()];
    shape.resize(rank.max(2), 1);
    v.clone()
        .into_shape_with_order(ndarray::IxDyn(&shape))
        .expect("one value per channel")
}

impl<'a> LinearMap<'a> {
    /// The map of a layer with weights (borrowing them); `None` for other layers.
    pub fn of(layer: &'a Layer) -> Option<LinearMap<'a>> {
        match layer {
            Layer::Dense(d) => Some(LinearMap::Dense(Cow::Borrowed(d))),
            Layer::Conv2d(c) => Some(LinearMap::Conv(Cow::Borrowed(c))),
            Layer::BatchNorm(b) => {
                let (scale, shift) = b.affine();
                Some(LinearMap::Affine {
                    scale,
                    shift: Some(shift),
                })
            }
            _ => None,
        }
    }

    /// The bias, one value per output (channel), if the map adds one.
    pub fn bias(&self) -> Option<&ndarray::Array1<f32>> {
        match self {
            LinearMap::Dense(d) => d.bias.as_ref(),
            LinearMap::Conv(c) => c.bias.as_ref(),
            LinearMap::Affine { shift, .. } => shift.as_ref(),
        }
    }

    /// A copy with weights (and bias, where the modifier keeps one) transformed by `m`.
    pub fn modified(&self, m: Modifier) -> LinearMap<'static> {
        let bias = |b: &Option<ndarray::Array1<f32>>| {
            if m.keeps_bias() {
                b.as_ref().map(|b| b.mapv(|v| m.weight(v)))
            } else {
                None
            }
        };
        match self {
            LinearMap::Dense(d) => {
                LinearMap::Dense(Cow::Owned(Dense::new(d.weight.mapv(|w| m.weight(w)), bias(&d.bias))))
            }
            LinearMap::Conv(c) => LinearMap::Conv(Cow::Owned(Conv2d {
                weight: c.weight.mapv(|w| m.weight(w)),
                bias: bias(&c.bias),
                window: c.window,
                dilation: c.dilation,
                groups: c.groups,
            })),
            LinearMap::Affine { scale, shift } => LinearMap::Affine {
                scale: scale.mapv(|w| m.weight(w)),
                shift: bias(shift),
            },
        }
    }

    /// Output channels (conv, affine) or outputs (dense).
    pub fn outputs(&self) -> usize {
        match self {
            LinearMap::Dense(d) => d.outputs(),
            LinearMap::Conv(c) => c.out_channels(),
            LinearMap::Affine { scale, .. } => scale.len(),
        }
    }

    /// One map computing both `a` and `b` (same kind, input and window): their weights and biases stacked along
    /// the output axis, so one product (and, for a convolution, one unfolding of the input) serves both. `None`
    /// for grouped convolutions, whose output channels are tied to input groups.
    pub fn stacked(a: &LinearMap, b: &LinearMap) -> Option<LinearMap<'static>> {
        let bias = |x: &Option<ndarray::Array1<f32>>, y: &Option<ndarray::Array1<f32>>, n: (usize, usize)| match (x, y)
        {
            (None, None) => None,
            _ => {
                let zx = ndarray::Array1::zeros(n.0);
                let zy = ndarray::Array1::zeros(n.1);
                Some(
                    ndarray::concatenate(
                        ndarray::Axis(0),
                        &[x.as_ref().unwrap_or(&zx).view(), y.as_ref().unwrap_or(&zy).view()],
                    )
                    .expect("1-D biases"),
                )
            }
        };
        match (a, b) {
            (LinearMap::Dense(x), LinearMap::Dense(y)) => {
                let w = ndarray::concatenate(ndarray::Axis(0), &[x.weight.view(), y.weight.view()]).ok()?;
                Some(LinearMap::Dense(Cow::Owned(Dense::new(
                    w,
                    bias(&x.bias, &y.bias, (x.outputs(), y.outputs())),
                ))))
            }
            (LinearMap::Conv(x), LinearMap::Conv(y))
                if x.groups == 1 && y.groups == 1 && x.window == y.window && x.dilation == y.dilation =>
            {
                let w = ndarray::concatenate(ndarray::Axis(0), &[x.weight.view(), y.weight.view()]).ok()?;
                Some(LinearMap::Conv(Cow::Owned(Conv2d {
                    weight: w,
                    bias: bias(&x.bias, &y.bias, (x.out_channels(), y.out_channels())),
                    window: x.window,
                    dilation: x.dilation,
                    groups: 1,
                })))
            }
            _ => None,
        }
    }

    /// `W x`, plus the bias when `with_bias` is set.
    ///
    /// # Shapes
    /// `x: [N, …in]` → `[N, …out]`; shapes were checked when the network was built.
    pub fn forward(&self, x: ArrayViewD<f32>, with_bias: bool) -> ArrayD<f32> {
        match self {
            LinearMap::Dense(d) => d
                .forward(x.into_dimensionality::<Ix2>().expect("dense input"), with_bias)
                .into_dyn(),
            LinearMap::Conv(c) => c
                .forward(x.into_dimensionality::<Ix4>().expect("conv input"), with_bias)
                .into_dyn(),
            LinearMap::Affine { scale, shift } => {
                let mut y = &x * &per_channel(scale, x.ndim());
                if with_bias && let Some(c) = shift {
                    y += &per_channel(c, x.ndim());
                }
                y
            }
        }
    }

    /// `Wᵀ s`, shaped like the layer input `in_shape` (`[N, …in]`).
    pub fn transpose(&self, s: ArrayViewD<f32>, in_shape: &[usize]) -> ArrayD<f32> {
        match self {
            LinearMap::Dense(d) => d
                .transpose(s.into_dimensionality::<Ix2>().expect("dense output"))
                .into_dyn(),
            LinearMap::Conv(c) => c
                .transpose(
                    s.into_dimensionality::<Ix4>().expect("conv output"),
                    (in_shape[2], in_shape[3]),
                )
                .into_dyn(),
            LinearMap::Affine { scale, .. } => &s * &per_channel(scale, s.ndim()),
        }
    }
}
