//! The `Layer` enum: one variant per kind, each holding the struct that carries its parameters, its shape rule and
//! its computation (see [`Op`]). The enum dispatches; the work lives beside each struct.

use ndarray::{ArrayD, ArrayViewD, Ix4};
use serde::{Deserialize, Serialize};

use super::attention::{self, LayerNorm, MatMul, Mean, Softmax};
use super::combine::{Insert, Mul};
use super::elementwise::Relu;
use super::op::Op;
use super::pool::{AvgPoolOp, MaxPoolOp};
use super::structural::{Add, Concat, Dropout, Flatten, Pad, Reshape, Slice, Take, Transpose};
use super::{Activation, Arith, ArithOp, BatchNorm, Conv2d, Dense, Lstm, Pool2d};
use crate::error::{CoreError, Result};

/// One layer of a [`crate::Network`]. Shapes below are per sample; every array carries a leading batch axis.
///
/// The variants' order is the model file's numbering (bincode numbers them in order): new variants go at the end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Layer {
    /// Fully connected: `[in]` → `[out]` (or on the last axis of a larger value).
    Dense(Dense),
    /// 2-D convolution: `[C, H, W]` → `[O, OH, OW]`.
    Conv2d(Conv2d),
    /// Max pooling: `[C, H, W]` → `[C, OH, OW]`.
    MaxPool2d(Pool2d),
    /// Average pooling: `[C, H, W]` → `[C, OH, OW]`.
    AvgPool2d(Pool2d),
    /// `max(x, 0)`, any shape.
    Relu(Relu),
    /// Any shape → `[product]`.
    Flatten(Flatten),
    /// Any shape → the given shape with the same number of elements.
    Reshape(Reshape),
    /// Drops inputs with probability `p` while training; identity otherwise.
    Dropout(Dropout),
    /// Batch norm with inference statistics. [`crate::Network::graph`] folds it into the dense or conv layer
    /// right before it; where there is none it stays, an affine map per channel.
    BatchNorm(BatchNorm),
    /// LSTM: `[T, F]` → `[dirs, H]` (final hidden states) or `[T, dirs, H]` (every step).
    Lstm(Lstm),
    // Graph nodes (model format version 2).
    /// Sum of two computed values of the same shape (a residual join). Reads two values.
    Add(Add),
    /// Concatenation of computed values along a per-sample axis. Reads one or more values.
    Concat(Concat),
    /// Elementwise arithmetic with a constant.
    Arith(Arith),
    /// An elementwise activation other than ReLU.
    Activation(Activation),
    /// Zero padding of every per-sample axis.
    Pad(Pad),
    /// A permutation of the per-sample axes.
    Transpose(Transpose),
    /// A range of one per-sample axis.
    Slice(Slice),
    /// Layer normalization over the last axis, with a scale and shift.
    LayerNorm(LayerNorm),
    /// Softmax along a per-sample axis (inside the network: attention weights).
    Softmax(Softmax),
    /// The product of two computed values over their last two axes. Reads two values.
    MatMul(MatMul),
    /// The mean over a per-sample axis, which is removed.
    Mean(Mean),
    /// The elementwise product of two computed values (broadcasting). Reads two values.
    Mul(Mul),
    /// A constant block inserted along a per-sample axis (a class token).
    Insert(Insert),
    /// Elements picked along a per-sample axis by index.
    Take(Take),
}

/// The kind of a layer, without its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LayerKind {
    /// [`Layer::Dense`].
    Dense,
    /// [`Layer::Conv2d`].
    Conv2d,
    /// [`Layer::MaxPool2d`].
    MaxPool2d,
    /// [`Layer::AvgPool2d`].
    AvgPool2d,
    /// [`Layer::Relu`].
    Relu,
    /// [`Layer::Flatten`].
    Flatten,
    /// [`Layer::Reshape`].
    Reshape,
    /// [`Layer::Dropout`].
    Dropout,
    /// [`Layer::BatchNorm`].
    BatchNorm,
    /// [`Layer::Lstm`].
    Lstm,
    /// [`Layer::Add`].
    Add,
    /// [`Layer::Concat`].
    Concat,
    /// [`Layer::Arith`].
    Arith,
    /// [`Layer::Activation`].
    Activation,
    /// [`Layer::Pad`].
    Pad,
    /// [`Layer::Transpose`].
    Transpose,
    /// [`Layer::Slice`].
    Slice,
    /// [`Layer::LayerNorm`].
    LayerNorm,
    /// [`Layer::Softmax`].
    Softmax,
    /// [`Layer::MatMul`].
    MatMul,
    /// [`Layer::Mean`].
    Mean,
    /// [`Layer::Mul`].
    Mul,
    /// [`Layer::Insert`].
    Insert,
    /// [`Layer::Take`].
    Take,
}

impl LayerKind {
    /// A short lower-case name (`dense`, `conv2d`, …).
    pub fn name(self) -> &'static str {
        match self {
            LayerKind::Dense => "dense",
            LayerKind::Conv2d => "conv2d",
            LayerKind::MaxPool2d => "maxpool2d",
            LayerKind::AvgPool2d => "avgpool2d",
            LayerKind::Relu => "relu",
            LayerKind::Flatten => "flatten",
            LayerKind::Reshape => "reshape",
            LayerKind::Dropout => "dropout",
            LayerKind::BatchNorm => "batchnorm",
            LayerKind::Lstm => "lstm",
            LayerKind::Add => "add",
            LayerKind::Concat => "concat",
            LayerKind::Arith => "arith",
            LayerKind::Activation => "activation",
            LayerKind::Pad => "pad",
            LayerKind::Transpose => "transpose",
            LayerKind::Slice => "slice",
            LayerKind::LayerNorm => "layernorm",
            LayerKind::Softmax => "softmax",
            LayerKind::MatMul => "matmul",
            LayerKind::Mean => "mean",
            LayerKind::Mul => "mul",
            LayerKind::Insert => "insert",
            LayerKind::Take => "take",
        }
    }
}

/// Gradients of a layer's parameter tensors, in the order of [`Layer::params_mut`].
pub type ParamGrads = Vec<ArrayD<f32>>;

fn batch4(x: ArrayViewD<'_, f32>) -> ndarray::ArrayView4<'_, f32> {
    x.into_dimensionality::<Ix4>().expect("shape checked at construction")
}

impl Layer {
    /// The kind of this layer.
    pub fn kind(&self) -> LayerKind {
        match self {
            Layer::Dense(_) => LayerKind::Dense,
            Layer::Conv2d(_) => LayerKind::Conv2d,
            Layer::MaxPool2d(_) => LayerKind::MaxPool2d,
            Layer::AvgPool2d(_) => LayerKind::AvgPool2d,
            Layer::Relu(_) => LayerKind::Relu,
            Layer::Flatten(_) => LayerKind::Flatten,
            Layer::Reshape(_) => LayerKind::Reshape,
            Layer::Dropout(_) => LayerKind::Dropout,
            Layer::BatchNorm(_) => LayerKind::BatchNorm,
            Layer::Lstm(_) => LayerKind::Lstm,
            Layer::Add(_) => LayerKind::Add,
            Layer::Concat(_) => LayerKind::Concat,
            Layer::Arith(_) => LayerKind::Arith,
            Layer::Activation(_) => LayerKind::Activation,
            Layer::Pad(_) => LayerKind::Pad,
            Layer::Transpose(_) => LayerKind::Transpose,
            Layer::Slice(_) => LayerKind::Slice,
            Layer::LayerNorm(_) => LayerKind::LayerNorm,
            Layer::Softmax(_) => LayerKind::Softmax,
            Layer::MatMul(_) => LayerKind::MatMul,
            Layer::Mean(_) => LayerKind::Mean,
            Layer::Mul(_) => LayerKind::Mul,
            Layer::Insert(_) => LayerKind::Insert,
            Layer::Take(_) => LayerKind::Take,
        }
    }

    /// The layer as its [`Op`]: the one place that maps a variant to the code that computes it.
    fn with_op<R>(&self, f: impl FnOnce(&dyn Op) -> R) -> R {
        match self {
            Layer::Dense(l) => f(l),
            Layer::Conv2d(l) => f(l),
            Layer::MaxPool2d(p) => f(&MaxPoolOp(p)),
            Layer::AvgPool2d(p) => f(&AvgPoolOp(p)),
            Layer::Relu(l) => f(l),
            Layer::Flatten(l) => f(l),
            Layer::Reshape(l) => f(l),
            Layer::Dropout(l) => f(l),
            Layer::BatchNorm(l) => f(l),
            Layer::Lstm(l) => f(l),
            Layer::Add(l) => f(l),
            Layer::Concat(l) => f(l),
            Layer::Arith(l) => f(l),
            Layer::Activation(l) => f(l),
            Layer::Pad(l) => f(l),
            Layer::Transpose(l) => f(l),
            Layer::Slice(l) => f(l),
            Layer::LayerNorm(l) => f(l),
            Layer::Softmax(l) => f(l),
            Layer::MatMul(l) => f(l),
            Layer::Mean(l) => f(l),
            Layer::Mul(l) => f(l),
            Layer::Insert(l) => f(l),
            Layer::Take(l) => f(l),
        }
    }

    /// How many values the layer reads: `Some(k)` exactly `k`, `None` one or more (concat).
    pub fn arity(&self) -> Option<usize> {
        match self {
            Layer::Add(_) | Layer::MatMul(_) | Layer::Mul(_) => Some(2),
            Layer::Concat(_) => None,
            _ => Some(1),
        }
    }

    /// Whether the layer is only available in graph model files (format version 2).
    pub fn is_graph_only(&self) -> bool {
        !matches!(
            self,
            Layer::Dense(_)
                | Layer::Conv2d(_)
                | Layer::MaxPool2d(_)
                | Layer::AvgPool2d(_)
                | Layer::Relu(_)
                | Layer::Flatten(_)
                | Layer::Reshape(_)
                | Layer::Dropout(_)
                | Layer::BatchNorm(_)
                | Layer::Lstm(_)
        )
    }

    /// Whether the layer is one of a transformer's (layer norm, softmax, product of two values): its relevance
    /// rule exists only in the gradient form, so a network with one is explained in that form.
    pub fn needs_gradient_form(&self) -> bool {
        matches!(self, Layer::LayerNorm(_) | Layer::Softmax(_) | Layer::MatMul(_))
    }

    /// Whether the layer has weights that a rule applies to: dense, conv, LSTM, and a batch norm that no dense or
    /// conv layer folds into (an affine map per channel, as in a pre-activation DenseNet).
    pub fn has_weights(&self) -> bool {
        matches!(
            self,
            Layer::Dense(_) | Layer::Conv2d(_) | Layer::Lstm(_) | Layer::BatchNorm(_)
        )
    }

    /// Number of parameters.
    pub fn param_count(&self) -> usize {
        match self {
            Layer::Dense(d) => d.weight.len() + d.bias.as_ref().map_or(0, |b| b.len()),
            Layer::Conv2d(c) => c.weight.len() + c.bias.as_ref().map_or(0, |b| b.len()),
            Layer::BatchNorm(b) => 4 * b.channels(),
            Layer::Lstm(l) => l.directions.iter().map(|d| d.w.len() + d.r.len() + d.b.len()).sum(),
            Layer::LayerNorm(l) => 2 * l.features(),
            Layer::Arith(a) if a.op == ArithOp::Add => a.value.len(),
            Layer::Insert(i) => i.value.len(),
            _ => 0,
        }
    }

    /// Validates the layer's parameters against the per-sample shapes of the values it reads and returns its
    /// output shape; the error names the layer (`index` in its network) and what does not fit.
    pub fn output_shape(&self, index: usize, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let invalid = |reason: String| CoreError::InvalidLayer {
            index,
            kind: self.kind().name(),
            reason,
        };
        match (self.arity(), inputs.len()) {
            (Some(k), n) if k != n => return Err(invalid(format!("reads {n} values, needs {k}"))),
            (None, 0) => return Err(invalid("reads no value".into())),
            _ => {}
        }
        self.with_op(|op| op.output_shape(inputs)).map_err(invalid)
    }

    /// Inference forward pass on a batch of each value the layer reads (`[N, …]`, shapes checked by
    /// [`Layer::output_shape`]), giving `[N, out_shape…]`.
    pub fn forward(&self, xs: &[ArrayViewD<f32>], out_shape: &[usize]) -> ArrayD<f32> {
        self.with_op(|op| op.forward(xs, out_shape))
    }

    /// The gradient of each value the layer reads, given those values `xs` and the output gradient `g`.
    pub fn backward(&self, xs: &[ArrayViewD<f32>], g: ArrayViewD<f32>) -> Vec<ArrayD<f32>> {
        self.with_op(|op| op.backward(xs, g))
    }

    /// The input gradient and the parameter gradients together (one pass through time for an LSTM) of a layer that
    /// reads one value.
    pub fn backward_with_params(&self, x: ArrayViewD<f32>, g: ArrayViewD<f32>) -> (ArrayD<f32>, Option<ParamGrads>) {
        match self {
            Layer::Lstm(l) => {
                let (dx, p) = l.backward(
                    x.into_dimensionality::<ndarray::Ix3>().expect("shape checked"),
                    &g.to_owned(),
                );
                (dx.into_dyn(), Some(p))
            }
            Layer::LayerNorm(l) => {
                let (dx, gw, gb) = l.backward_with_params(x, g);
                (dx, Some(vec![gw.into_dyn(), gb.into_dyn()]))
            }
            _ => {
                let dx = self.backward(&[x.view()], g.view()).pop().expect("one input");
                (dx, self.param_grads(x, g))
            }
        }
    }

    /// Gradients of the parameters given the layer input `x` and the output gradient `g`; `None` without parameters.
    pub fn param_grads(&self, x: ArrayViewD<f32>, g: ArrayViewD<f32>) -> Option<ParamGrads> {
        match self {
            Layer::Dense(d) => {
                let (xs, gs) = (x.as_standard_layout(), g.as_standard_layout());
                let (w, b) = d.param_grads(attention::rows_of(&xs), attention::rows_of(&gs));
                Some(std::iter::once(w.into_dyn()).chain(b.map(|b| b.into_dyn())).collect())
            }
            Layer::LayerNorm(l) => {
                let (w, b) = l.param_grads(x, g);
                Some(vec![w.into_dyn(), b.into_dyn()])
            }
            Layer::Arith(a) if a.op == ArithOp::Add => {
                // A constant added is a learned tensor (a transformer's positions): its gradient is `g` summed over
                // the batch and over every axis the constant is broadcast along.
                let mut sum = g.sum_axis(ndarray::Axis(0));
                while sum.ndim() > a.value.ndim() {
                    sum = sum.sum_axis(ndarray::Axis(0));
                }
                for (axis, &d) in a.value.shape().iter().enumerate() {
                    if d == 1 && sum.shape()[axis] != 1 {
                        sum = sum.sum_axis(ndarray::Axis(axis)).insert_axis(ndarray::Axis(axis));
                    }
                }
                Some(vec![sum])
            }
            Layer::Conv2d(c) => {
                let (w, b) = c.param_grads(batch4(x), batch4(g));
                Some(std::iter::once(w.into_dyn()).chain(b.map(|b| b.into_dyn())).collect())
            }
            Layer::Lstm(_) => self.backward_with_params(x, g).1,
            _ => None,
        }
    }

    /// Mutable views of the parameter tensors (weights, then bias; per LSTM direction `W, R, b`), for optimisers.
    pub fn params_mut(&mut self) -> Vec<ndarray::ArrayViewMutD<'_, f32>> {
        match self {
            Layer::Dense(d) => std::iter::once(d.weight.view_mut().into_dyn())
                .chain(d.bias.as_mut().map(|b| b.view_mut().into_dyn()))
                .collect(),
            Layer::Conv2d(c) => std::iter::once(c.weight.view_mut().into_dyn())
                .chain(c.bias.as_mut().map(|b| b.view_mut().into_dyn()))
                .collect(),
            Layer::Lstm(l) => l
                .directions
                .iter_mut()
                .flat_map(|d| {
                    [
                        d.w.view_mut().into_dyn(),
                        d.r.view_mut().into_dyn(),
                        d.b.view_mut().into_dyn(),
                    ]
                })
                .collect(),
            Layer::LayerNorm(l) => vec![l.weight.view_mut().into_dyn(), l.bias.view_mut().into_dyn()],
            Layer::Arith(a) if a.op == ArithOp::Add => vec![a.value.view_mut()],
            _ => Vec::new(),
        }
    }
}

/// Constructors of the variants whose structs hold one field (the forms most graphs are written with).
impl Layer {
    /// [`Layer::Reshape`] to `shape`.
    pub fn reshape(shape: Vec<usize>) -> Layer {
        Layer::Reshape(Reshape { shape })
    }

    /// [`Layer::Transpose`] by `perm`.
    pub fn transpose(perm: Vec<usize>) -> Layer {
        Layer::Transpose(Transpose { perm })
    }

    /// [`Layer::Slice`] of `start..end` along `axis`.
    pub fn slice(axis: usize, start: usize, end: usize) -> Layer {
        Layer::Slice(Slice { axis, start, end })
    }

    /// [`Layer::Softmax`] along `axis`.
    pub fn softmax(axis: usize) -> Layer {
        Layer::Softmax(Softmax { axis })
    }

    /// [`Layer::Mean`] over `axis`.
    pub fn mean(axis: usize) -> Layer {
        Layer::Mean(Mean { axis })
    }

    /// [`Layer::Concat`] along `axis`.
    pub fn concat(axis: usize) -> Layer {
        Layer::Concat(Concat { axis })
    }

    /// [`Layer::Pad`] by `pads`.
    pub fn pad(pads: Vec<[usize; 2]>) -> Layer {
        Layer::Pad(Pad { pads })
    }

    /// [`Layer::Dropout`] with probability `p`.
    pub fn dropout(p: f32) -> Layer {
        Layer::Dropout(Dropout { p })
    }
}
