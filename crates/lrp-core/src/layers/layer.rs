//! The `Layer` enum: one variant per kind, with shape inference, forward and backward.

use ndarray::{ArrayD, ArrayViewD, Ix2, Ix4, IxDyn};
use serde::{Deserialize, Serialize};

use super::attention::{self, LayerNorm};
use super::{Activation, Arith, ArithOp, BatchNorm, Conv2d, Dense, Lstm, Pool2d};
use crate::error::{CoreError, Result};

/// One layer of a [`crate::Network`]. Shapes below are per sample; every array carries a leading batch axis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Layer {
    /// Fully connected: `[in]` → `[out]`.
    Dense(Dense),
    /// 2-D convolution: `[C, H, W]` → `[O, OH, OW]`.
    Conv2d(Conv2d),
    /// Max pooling: `[C, H, W]` → `[C, OH, OW]`.
    MaxPool2d(Pool2d),
    /// Average pooling: `[C, H, W]` → `[C, OH, OW]`.
    AvgPool2d(Pool2d),
    /// `max(x, 0)`, any shape.
    Relu,
    /// Any shape → `[product]`.
    Flatten,
    /// Any shape → the given shape with the same number of elements.
    Reshape(Vec<usize>),
    /// Drops inputs with probability `p` while training; identity otherwise.
    Dropout(f32),
    /// Batch norm with inference statistics. [`crate::Network::new`] folds it into the preceding
    /// dense or conv layer, so a built network never contains one.
    BatchNorm(BatchNorm),
    /// LSTM: `[T, F]` → `[dirs, H]` (final hidden states) or `[T, dirs, H]` (every step).
    Lstm(Lstm),
    // Graph nodes (model format version 2). New variants go at the end: bincode numbers them in order.
    /// Sum of two computed values of the same shape (a residual join). Reads two values.
    Add,
    /// Concatenation of computed values along a per-sample axis (0 = the first axis after the batch).
    Concat(usize),
    /// Elementwise arithmetic with a constant.
    Arith(Arith),
    /// An elementwise activation other than ReLU.
    Activation(Activation),
    /// Zero padding: `[before, after]` for every per-sample axis.
    Pad(Vec<[usize; 2]>),
    /// A permutation of the per-sample axes (output axis `i` is input axis `perm[i]`).
    Transpose(Vec<usize>),
    /// The range `start..end` of one per-sample axis.
    Slice {
        /// The per-sample axis.
        axis: usize,
        /// First index kept.
        start: usize,
        /// One past the last index kept.
        end: usize,
    },
    /// Layer normalization over the last axis, with a scale and shift.
    LayerNorm(LayerNorm),
    /// Softmax along a per-sample axis (inside the network: attention weights).
    Softmax(usize),
    /// The product of two computed values over their last two axes, batched over the others:
    /// `[…, m, k]·[…, k, p]` → `[…, m, p]`. Reads two values.
    MatMul,
    /// The mean over a per-sample axis, which is removed (e.g. over the tokens of a transformer).
    Mean(usize),
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
        }
    }
}

/// Gradients of a layer's parameter tensors, in the order of [`Layer::params_mut`].
pub type ParamGrads = Vec<ArrayD<f32>>;

fn batch4(x: ArrayViewD<'_, f32>) -> ndarray::ArrayView4<'_, f32> {
    x.into_dimensionality::<Ix4>().expect("shape checked at construction")
}

fn batch2(x: ArrayViewD<'_, f32>) -> ndarray::ArrayView2<'_, f32> {
    x.into_dimensionality::<Ix2>().expect("shape checked at construction")
}

/// No axis of a value may be longer than this, and no sample may hold more elements than [`MAX_SAMPLE`].
const MAX_AXIS: usize = 1 << 31;
/// Elements of one sample of any value (2^31): larger would not fit in memory for even one sample.
const MAX_SAMPLE: usize = 1 << 31;

fn check_count(layer: &Layer, index: usize, shape: &[usize]) -> Result<()> {
    match shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) {
        Some(n) if n <= MAX_SAMPLE => Ok(()),
        _ => Err(layer.invalid(index, format!("output {shape:?} is too large"))),
    }
}

fn with_batch(n: usize, shape: &[usize]) -> IxDyn {
    let mut d = vec![n];
    d.extend_from_slice(shape);
    IxDyn(&d)
}

impl Layer {
    /// The kind of this layer.
    pub fn kind(&self) -> LayerKind {
        match self {
            Layer::Dense(_) => LayerKind::Dense,
            Layer::Conv2d(_) => LayerKind::Conv2d,
            Layer::MaxPool2d(_) => LayerKind::MaxPool2d,
            Layer::AvgPool2d(_) => LayerKind::AvgPool2d,
            Layer::Relu => LayerKind::Relu,
            Layer::Flatten => LayerKind::Flatten,
            Layer::Reshape(_) => LayerKind::Reshape,
            Layer::Dropout(_) => LayerKind::Dropout,
            Layer::BatchNorm(_) => LayerKind::BatchNorm,
            Layer::Lstm(_) => LayerKind::Lstm,
            Layer::Add => LayerKind::Add,
            Layer::Concat(_) => LayerKind::Concat,
            Layer::Arith(_) => LayerKind::Arith,
            Layer::Activation(_) => LayerKind::Activation,
            Layer::Pad(_) => LayerKind::Pad,
            Layer::Transpose(_) => LayerKind::Transpose,
            Layer::Slice { .. } => LayerKind::Slice,
            Layer::LayerNorm(_) => LayerKind::LayerNorm,
            Layer::Softmax(_) => LayerKind::Softmax,
            Layer::MatMul => LayerKind::MatMul,
            Layer::Mean(_) => LayerKind::Mean,
        }
    }

    /// How many values the layer reads: `Some(k)` exactly `k`, `None` one or more (concat).
    pub fn arity(&self) -> Option<usize> {
        match self {
            Layer::Add | Layer::MatMul => Some(2),
            Layer::Concat(_) => None,
            _ => Some(1),
        }
    }

    /// Whether the layer is only available in graph model files (format version 2).
    pub fn is_graph_only(&self) -> bool {
        matches!(
            self,
            Layer::Add
                | Layer::Concat(_)
                | Layer::Arith(_)
                | Layer::Activation(_)
                | Layer::Pad(_)
                | Layer::Transpose(_)
                | Layer::Slice { .. }
                | Layer::LayerNorm(_)
                | Layer::Softmax(_)
                | Layer::MatMul
                | Layer::Mean(_)
        )
    }

    /// Whether the layer is one of a transformer's (layer norm, softmax, product of two values): its relevance
    /// rule exists only in the gradient form, so a network with one is explained in that form.
    pub fn needs_gradient_form(&self) -> bool {
        matches!(self, Layer::LayerNorm(_) | Layer::Softmax(_) | Layer::MatMul)
    }

    /// Whether the layer has trainable weights (dense, conv).
    pub fn has_weights(&self) -> bool {
        matches!(self, Layer::Dense(_) | Layer::Conv2d(_) | Layer::Lstm(_))
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
            _ => 0,
        }
    }

    fn invalid(&self, index: usize, reason: impl Into<String>) -> CoreError {
        CoreError::InvalidLayer {
            index,
            kind: self.kind().name(),
            reason: reason.into(),
        }
    }

    /// Validates the layer's parameters against its per-sample input shape and returns its output shape.
    pub fn output_shape(&self, index: usize, input: &[usize]) -> Result<Vec<usize>> {
        // Over a slice where the values are in standard order (stored parameters are), not through a `dyn Iterator`
        // of the array (`lrp info` of the MLP: 3.62 → 3.51 ms of CPU, `perf stat -r 40`).
        let finite = |name: &str, v: ndarray::ArrayViewD<'_, f32>| -> Result<()> {
            let at = match v.as_slice() {
                Some(s) => s.iter().position(|x| !x.is_finite()),
                None => v.iter().position(|x| !x.is_finite()),
            };
            match at {
                Some(i) => Err(self.invalid(index, format!("{name} has a non-finite value at flat index {i}"))),
                None => Ok(()),
            }
        };
        match self {
            Layer::Dense(d) => {
                // On a flat input, or on the last axis of a larger one (the tokens of a transformer).
                let Some(&features) = input.last() else {
                    return Err(self.invalid(index, "needs an input with at least one axis"));
                };
                if d.inputs() != features {
                    return Err(self.invalid(
                        index,
                        format!(
                            "weight is [{}, {}] but the input {input:?} has {features} features{}",
                            d.outputs(),
                            d.inputs(),
                            if input.len() > 1 {
                                " on its last axis (add a flatten before it to use every value)"
                            } else {
                                ""
                            }
                        ),
                    ));
                }
                if let Some(b) = &d.bias {
                    if b.len() != d.outputs() {
                        return Err(self.invalid(
                            index,
                            format!("bias has {} entries, weight has {} outputs", b.len(), d.outputs()),
                        ));
                    }
                    finite("bias", b.view().into_dyn())?;
                }
                if d.outputs() == 0 {
                    return Err(self.invalid(index, "has no outputs"));
                }
                finite("weight", d.weight.view().into_dyn())?;
                let mut out = input.to_vec();
                *out.last_mut().expect("checked above") = d.outputs();
                check_count(self, index, &out)?;
                Ok(out)
            }
            Layer::Conv2d(c) => {
                let [_, _, kh, kw] = [
                    c.weight.shape()[0],
                    c.weight.shape()[1],
                    c.weight.shape()[2],
                    c.weight.shape()[3],
                ];
                if input.len() != 3 {
                    return Err(self.invalid(index, format!("needs input [channels, height, width], got {input:?}")));
                }
                if c.window.kernel != [kh, kw] {
                    return Err(self.invalid(
                        index,
                        format!(
                            "kernel {:?} does not match weight {:?}",
                            c.window.kernel,
                            c.weight.shape()
                        ),
                    ));
                }
                if c.window.kernel.contains(&0) || c.dilation.iter().any(|&d| d > super::window::MAX_WINDOW_SIDE) {
                    return Err(self.invalid(
                        index,
                        format!(
                            "kernel {:?} or dilation {:?} is out of range",
                            c.window.kernel, c.dilation
                        ),
                    ));
                }
                if c.groups == 0 || c.dilation.contains(&0) {
                    return Err(self.invalid(
                        index,
                        format!("groups {} and dilation {:?} must be positive", c.groups, c.dilation),
                    ));
                }
                if c.out_channels() % c.groups != 0 {
                    return Err(self.invalid(
                        index,
                        format!(
                            "{} output channels do not split into {} groups",
                            c.out_channels(),
                            c.groups
                        ),
                    ));
                }
                c.extent().validate().map_err(|r| self.invalid(index, r))?;
                if c.weight.shape()[1].checked_mul(c.groups) != Some(input[0]) {
                    return Err(self.invalid(
                        index,
                        format!(
                            "weight {:?} expects {} input channels, input has {}",
                            c.weight.shape(),
                            c.in_channels(),
                            input[0]
                        ),
                    ));
                }
                if c.out_channels() == 0 {
                    return Err(self.invalid(index, "has no output channels"));
                }
                if let Some(b) = &c.bias {
                    if b.len() != c.out_channels() {
                        return Err(self.invalid(
                            index,
                            format!(
                                "bias has {} entries, weight has {} output channels",
                                b.len(),
                                c.out_channels()
                            ),
                        ));
                    }
                    finite("bias", b.view().into_dyn())?;
                }
                finite("weight", c.weight.view().into_dyn())?;
                let (oh, ow) = c.output_hw(input[1], input[2]).ok_or_else(|| {
                    self.invalid(
                        index,
                        format!(
                            "kernel {:?} with padding {:?} does not fit a {}×{} input",
                            c.window.kernel, c.window.pads, input[1], input[2]
                        ),
                    )
                })?;
                Ok(vec![c.out_channels(), oh, ow])
            }
            Layer::MaxPool2d(p) | Layer::AvgPool2d(p) => {
                if input.len() != 3 {
                    return Err(self.invalid(index, format!("needs input [channels, height, width], got {input:?}")));
                }
                p.window.validate().map_err(|r| self.invalid(index, r))?;
                let (oh, ow) = p.window.output_hw(input[1], input[2]).ok_or_else(|| {
                    self.invalid(
                        index,
                        format!(
                            "window {:?} does not fit a {}×{} input",
                            p.window.kernel, input[1], input[2]
                        ),
                    )
                })?;
                Ok(vec![input[0], oh, ow])
            }
            Layer::Relu => Ok(input.to_vec()),
            Layer::Flatten => Ok(vec![input.iter().product()]),
            Layer::Reshape(shape) => {
                // Checked products: a shape whose product overflows must not pass for the right count.
                let count = |s: &[usize]| s.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                if shape.is_empty() || count(shape).is_none() || count(shape) != count(input) {
                    return Err(self.invalid(index, format!("cannot reshape {input:?} to {shape:?}")));
                }
                Ok(shape.clone())
            }
            Layer::Dropout(p) => {
                if !(0.0..1.0).contains(p) {
                    return Err(self.invalid(index, format!("probability {p} is not in [0, 1)")));
                }
                Ok(input.to_vec())
            }
            Layer::Lstm(l) => l.output_shape(input).map_err(|r| self.invalid(index, r)),
            Layer::BatchNorm(b) => {
                b.validate().map_err(|r| self.invalid(index, r))?;
                if input.first() != Some(&b.channels()) {
                    return Err(self.invalid(index, format!("has {} channels, input is {input:?}", b.channels())));
                }
                Ok(input.to_vec())
            }
            Layer::Add | Layer::Concat(_) => self.output_shape_many(index, &[input]),
            Layer::Arith(a) => {
                a.validate(input).map_err(|r| self.invalid(index, r))?;
                Ok(input.to_vec())
            }
            Layer::Activation(a) => {
                a.validate().map_err(|r| self.invalid(index, r))?;
                Ok(input.to_vec())
            }
            Layer::Pad(pads) => {
                if pads.len() != input.len() {
                    return Err(self.invalid(index, format!("has {} axis pads for input {input:?}", pads.len())));
                }
                let mut out = Vec::with_capacity(input.len());
                for (&d, [a, b]) in input.iter().zip(pads) {
                    let total = d.checked_add(*a).and_then(|v| v.checked_add(*b));
                    match total {
                        Some(t) if t <= MAX_AXIS => out.push(t),
                        _ => return Err(self.invalid(index, format!("pads {pads:?} are too large"))),
                    }
                }
                check_count(self, index, &out)?;
                Ok(out)
            }
            Layer::Transpose(perm) => {
                let mut sorted = perm.clone();
                sorted.sort_unstable();
                if sorted != (0..input.len()).collect::<Vec<_>>() {
                    return Err(self.invalid(
                        index,
                        format!("perm {perm:?} is not a permutation of the axes of {input:?}"),
                    ));
                }
                Ok(perm.iter().map(|&a| input[a]).collect())
            }
            Layer::Slice { axis, start, end } => {
                let Some(&d) = input.get(*axis) else {
                    return Err(self.invalid(index, format!("axis {axis} is out of range for {input:?}")));
                };
                if start >= end || *end > d {
                    return Err(self.invalid(
                        index,
                        format!("range {start}..{end} does not fit axis {axis} of size {d}"),
                    ));
                }
                let mut out = input.to_vec();
                out[*axis] = end - start;
                Ok(out)
            }
            Layer::LayerNorm(l) => {
                l.validate(input).map_err(|r| self.invalid(index, r))?;
                Ok(input.to_vec())
            }
            Layer::Softmax(axis) | Layer::Mean(axis) => {
                if *axis >= input.len() {
                    return Err(self.invalid(index, format!("axis {axis} is out of range for {input:?}")));
                }
                if let Layer::Mean(_) = self {
                    if input.len() == 1 {
                        return Err(self.invalid(index, "would leave no axis besides the batch"));
                    }
                    let mut out = input.to_vec();
                    out.remove(*axis);
                    return Ok(out);
                }
                Ok(input.to_vec())
            }
            Layer::MatMul => self.output_shape_many(index, &[input]),
        }
    }

    /// The output shape of a layer that reads several values (per-sample shapes `inputs`).
    pub fn output_shape_many(&self, index: usize, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        match (self.arity(), inputs.len()) {
            (Some(k), n) if k != n => {
                return Err(self.invalid(index, format!("reads {n} values, needs {k}")));
            }
            (None, 0) => return Err(self.invalid(index, "reads no value")),
            _ => {}
        }
        match self {
            Layer::Add => {
                if inputs[0] != inputs[1] {
                    return Err(self.invalid(
                        index,
                        format!("adds values of different shapes {:?} and {:?}", inputs[0], inputs[1]),
                    ));
                }
                Ok(inputs[0].to_vec())
            }
            Layer::MatMul => {
                let out = attention::matmul_shape(inputs[0], inputs[1]).map_err(|r| self.invalid(index, r))?;
                check_count(self, index, &out)?;
                Ok(out)
            }
            Layer::Concat(axis) => {
                let first = inputs[0];
                if *axis >= first.len() {
                    return Err(self.invalid(index, format!("axis {axis} is out of range for {first:?}")));
                }
                let mut total = 0usize;
                for s in inputs {
                    let same_rest = s.len() == first.len()
                        && s.iter()
                            .zip(first.iter())
                            .enumerate()
                            .all(|(i, (a, b))| i == *axis || a == b);
                    if !same_rest {
                        return Err(self.invalid(
                            index,
                            format!("cannot concatenate {s:?} with {first:?} along axis {axis}"),
                        ));
                    }
                    total = total.saturating_add(s[*axis]);
                }
                let mut out = first.to_vec();
                out[*axis] = total;
                check_count(self, index, &out)?;
                Ok(out)
            }
            _ => self.output_shape(index, inputs[0]),
        }
    }

    /// Inference forward pass on a batch whose shape has been checked.
    pub fn forward(&self, x: ArrayViewD<f32>, out_shape: &[usize]) -> ArrayD<f32> {
        let n = x.shape()[0];
        match self {
            Layer::Dense(d) => on_rows(x, |r| d.forward(r, true)),
            Layer::Conv2d(c) => c.forward(batch4(x), true).into_dyn(),
            Layer::MaxPool2d(p) => p.max_forward(batch4(x)).into_dyn(),
            Layer::AvgPool2d(p) => p.avg_forward(batch4(x)).into_dyn(),
            Layer::Relu => x.mapv(|v| v.max(0.0)),
            Layer::Flatten | Layer::Reshape(_) => x
                .as_standard_layout()
                .into_owned()
                .into_shape_with_order(with_batch(n, out_shape))
                .expect("element count checked at construction"),
            Layer::Dropout(_) => x.to_owned(),
            Layer::Lstm(l) => l.forward(
                x.into_dimensionality::<ndarray::Ix3>()
                    .expect("shape checked at construction"),
            ),
            Layer::BatchNorm(_) => unreachable!("batch norm is folded when the network is built"),
            Layer::Add | Layer::Concat(_) | Layer::MatMul => self.forward_many(&[x], out_shape),
            Layer::LayerNorm(l) => l.forward(x),
            Layer::Softmax(axis) => attention::softmax(x, *axis),
            Layer::Mean(axis) => attention::mean(x, *axis),
            Layer::Arith(a) => a.forward(x),
            Layer::Activation(a) => a.forward(x),
            Layer::Pad(pads) => {
                let mut out = ArrayD::<f32>::zeros(with_batch(n, out_shape));
                out.slice_each_axis_mut(|ax| match ax.axis.index() {
                    0 => ndarray::Slice::from(..),
                    a => {
                        let [before, _] = pads[a - 1];
                        ndarray::Slice::from(before..before + x.shape()[a])
                    }
                })
                .assign(&x);
                out
            }
            Layer::Transpose(perm) => {
                let axes: Vec<usize> = std::iter::once(0).chain(perm.iter().map(|a| a + 1)).collect();
                permuted_copy(x.permuted_axes(axes))
            }
            Layer::Slice { axis, start, end } => x
                .slice_axis(ndarray::Axis(axis + 1), ndarray::Slice::from(*start..*end))
                .to_owned(),
        }
    }

    /// Forward pass of a layer that reads several values (each `[N, …]`, shapes checked).
    pub fn forward_many(&self, xs: &[ArrayViewD<f32>], out_shape: &[usize]) -> ArrayD<f32> {
        match self {
            Layer::Add => &xs[0] + &xs[1],
            Layer::Concat(axis) => ndarray::concatenate(ndarray::Axis(axis + 1), xs).expect("shapes checked"),
            Layer::MatMul => attention::matmul(xs[0].view(), xs[1].view()),
            _ => self.forward(xs[0].view(), out_shape),
        }
    }

    /// Gradients with respect to each input of a layer that reads several values.
    pub fn backward_many(&self, xs: &[ArrayViewD<f32>], g: ArrayViewD<f32>) -> Vec<ArrayD<f32>> {
        match self {
            Layer::Add => vec![g.to_owned(), g.to_owned()],
            Layer::MatMul => {
                let (ga, gb) = attention::matmul_backward(xs[0].view(), xs[1].view(), g, 1.0);
                vec![ga, gb]
            }
            Layer::Concat(axis) => {
                let mut start = 0;
                xs.iter()
                    .map(|x| {
                        let len = x.shape()[axis + 1];
                        let part = g
                            .slice_axis(ndarray::Axis(axis + 1), ndarray::Slice::from(start..start + len))
                            .to_owned();
                        start += len;
                        part
                    })
                    .collect()
            }
            _ => vec![self.backward(xs[0].view(), g)],
        }
    }

    /// Gradient of the loss with respect to the layer input, given the input `x` and the output gradient `g`.
    pub fn backward(&self, x: ArrayViewD<f32>, g: ArrayViewD<f32>) -> ArrayD<f32> {
        match self {
            Layer::Dense(d) => on_rows(g, |r| d.transpose(r)),
            Layer::Conv2d(c) => {
                let s = x.shape();
                c.transpose(batch4(g), (s[2], s[3])).into_dyn()
            }
            Layer::MaxPool2d(p) => p.max_route(batch4(x), batch4(g)).into_dyn(),
            Layer::AvgPool2d(p) => p.avg_transpose(batch4(g), batch4(x).dim()).into_dyn(),
            Layer::Relu => {
                let mut out = g.to_owned();
                ndarray::Zip::from(&mut out).and(&x).for_each(|o, &xi| {
                    if xi <= 0.0 {
                        *o = 0.0;
                    }
                });
                out
            }
            Layer::Flatten | Layer::Reshape(_) => g
                .as_standard_layout()
                .into_owned()
                .into_shape_with_order(x.raw_dim())
                .expect("element count checked at construction"),
            Layer::Dropout(_) => g.to_owned(),
            Layer::Lstm(l) => l
                .backward(
                    x.into_dimensionality::<ndarray::Ix3>().expect("shape checked"),
                    &g.to_owned(),
                )
                .0
                .into_dyn(),
            Layer::BatchNorm(_) => unreachable!("batch norm is folded when the network is built"),
            Layer::Add | Layer::Concat(_) | Layer::MatMul => self.backward_many(&[x], g).remove(0),
            Layer::LayerNorm(l) => l.backward(x, g, false),
            Layer::Softmax(axis) => {
                let y = attention::softmax(x, *axis);
                attention::softmax_backward(y.view(), g, *axis)
            }
            Layer::Mean(axis) => attention::mean_backward(g, *axis, x.shape()[axis + 1]),
            Layer::Arith(a) => a.backward(g),
            Layer::Activation(a) => a.backward(x, g),
            Layer::Pad(pads) => g
                .slice_each_axis(|ax| match ax.axis.index() {
                    0 => ndarray::Slice::from(..),
                    a => {
                        let [before, _] = pads[a - 1];
                        ndarray::Slice::from(before..before + x.shape()[a])
                    }
                })
                .to_owned(),
            Layer::Transpose(perm) => {
                let mut inverse = vec![0; perm.len() + 1];
                for (i, &p) in perm.iter().enumerate() {
                    inverse[p + 1] = i + 1;
                }
                permuted_copy(g.permuted_axes(inverse))
            }
            Layer::Slice { axis, start, end } => {
                let mut out = ArrayD::<f32>::zeros(x.raw_dim());
                out.slice_axis_mut(ndarray::Axis(axis + 1), ndarray::Slice::from(*start..*end))
                    .assign(&g);
                out
            }
        }
    }

    /// The input gradient and the parameter gradients together (one pass through time for an LSTM).
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
            _ => (self.backward(x.view(), g.view()), self.param_grads(x, g)),
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

/// A dense map on a batch `[N, …, in]`: on the rows of its last axis, shaped back to `[N, …, out]`.
fn on_rows(x: ArrayViewD<f32>, f: impl Fn(ndarray::ArrayView2<f32>) -> ndarray::Array2<f32>) -> ArrayD<f32> {
    if x.ndim() == 2 {
        return f(batch2(x)).into_dyn();
    }
    let xs = x.as_standard_layout();
    let y = f(attention::rows_of(&xs));
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("rank ≥ 2") = y.ncols();
    y.into_shape_with_order(IxDyn(&shape)).expect("same element count")
}

/// A permuted view copied into a standard-layout array. `Zip` walks the destination in memory order with the source
/// strided, a far faster loop than `as_standard_layout`'s element-by-element iterator (the transposes of a
/// transformer's heads were a fifth of its explanation time). The same values, so the same bits.
fn permuted_copy(v: ArrayViewD<f32>) -> ArrayD<f32> {
    let mut out = ArrayD::<f32>::zeros(v.raw_dim());
    out.assign(&v);
    out
}
