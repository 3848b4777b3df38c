//! One ONNX operator → at most one layer.

use std::collections::HashMap;

use lrp_core::{BatchNorm, Conv2d, Dense, Layer, Pool2d, Window};
use ndarray::{Array1, Array2, Array4, Ix1};

use crate::error::{OnnxError, Result};
use crate::proto::{AttributeProto, NodeProto, TensorProto};
use crate::tensor::{to_f32, to_i64};

/// What one node does to the chain.
pub(crate) enum Step {
    /// Appends a layer.
    Push(Layer),
    /// Nothing at inference (Identity, Dropout), or merged into the previous layer (a bias Add).
    Skip,
    /// Dropped, with a note for the user (a final Softmax).
    Note(String),
    /// A layer (or none), continuing from output `output` of the node, with the batch axis of that ONNX value at
    /// `batch_axis` (Transpose, Squeeze and LSTM move it; our tensors stay batch-first).
    Relayout {
        layer: Option<Layer>,
        output: usize,
        batch_axis: usize,
    },
}

/// A node with what the importer knows at that point of the chain.
pub(crate) struct Ctx<'a> {
    pub node: &'a NodeProto,
    pub label: &'a str,
    /// The chain value this node reads.
    pub current: &'a str,
    pub consts: &'a HashMap<&'a str, &'a TensorProto>,
    /// Per-sample shape of `current`.
    pub shape: &'a [usize],
    /// Whether this node writes the graph output.
    pub is_last: bool,
    /// Where the batch axis of `current` is in ONNX's layout.
    pub batch_axis: usize,
    /// Whether each output of the node is read (by a node or as the graph output).
    pub outputs_used: Vec<bool>,
    /// The opset of the default domain.
    pub opset: i64,
    /// Whether each input is known to be all zeros (e.g. an LSTM's initial state).
    pub zero_inputs: Vec<bool>,
}

impl Ctx<'_> {
    pub(crate) fn err(&self, reason: impl Into<String>) -> OnnxError {
        OnnxError::Node {
            node: self.label.to_string(),
            op_type: self.node.op_type.clone(),
            reason: reason.into(),
        }
    }

    pub(crate) fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    pub(crate) fn int(&self, name: &str, default: i64) -> i64 {
        self.attr(name).map_or(default, |a| a.i)
    }

    pub(crate) fn float(&self, name: &str, default: f32) -> f32 {
        self.attr(name).map_or(default, |a| a.f)
    }

    pub(crate) fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.attr(name).map(|a| a.ints.clone())
    }

    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.attr(name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }

    /// The constant at input position `i`, if the node has that input.
    pub(crate) fn const_input(&self, i: usize) -> Option<&TensorProto> {
        self.node
            .input
            .get(i)
            .filter(|n| !n.is_empty())
            .and_then(|n| self.consts.get(n.as_str()).copied())
    }

    pub(crate) fn required(&self, i: usize, what: &str) -> Result<&TensorProto> {
        self.const_input(i)
            .ok_or_else(|| self.err(format!("needs {what} as input {i}, and it is missing")))
    }

    /// Position of the chain value among the inputs.
    fn current_pos(&self) -> usize {
        self.node.input.iter().position(|n| n == self.current).unwrap_or(0)
    }

    pub(crate) fn weight<D: ndarray::Dimension>(&self, t: &TensorProto, what: &str) -> Result<ndarray::Array<f32, D>> {
        let a = to_f32(t)?;
        let shape = a.shape().to_vec();
        a.into_dimensionality::<D>().map_err(|_| {
            self.err(format!(
                "{what} '{}' has shape {shape:?}, expected rank {}",
                t.name,
                D::NDIM.unwrap_or(0)
            ))
        })
    }

    fn flat_input(&self) -> Result<usize> {
        match self.shape {
            [f] => Ok(*f),
            other => Err(self.err(format!(
                "needs a flat input [N, features], the chain value is [N, {other:?}]"
            ))),
        }
    }

    fn spatial_input(&self) -> Result<(usize, usize, usize)> {
        match self.shape {
            &[c, h, w] => Ok((c, h, w)),
            other => Err(self.err(format!(
                "needs a 2-D image input [N, C, H, W], the chain value is [N, {other:?}]"
            ))),
        }
    }

    /// Kernel, strides and pads of the pools, with auto_pad resolved (no dilation).
    fn window(&self, kernel: [usize; 2]) -> Result<Window> {
        if let Some(d) = self.ints("dilations")
            && d.iter().any(|&v| v != 1)
        {
            return Err(self.err(format!("dilations {d:?} are not supported for pooling (only 1)")));
        }
        self.window_dilated(kernel, [1, 1])
    }

    /// The dilations attribute of a convolution.
    fn dilations(&self) -> Result<[usize; 2]> {
        match self.ints("dilations") {
            None => Ok([1, 1]),
            Some(d) if d.len() == 2 && d.iter().all(|&v| (1..=1 << 16).contains(&v)) => {
                Ok([d[0] as usize, d[1] as usize])
            }
            Some(d) => Err(self.err(format!("dilations {d:?} must be two numbers from 1 to 65536"))),
        }
    }

    /// Kernel, strides and pads with auto_pad resolved, for a kernel whose taps are `dilation` apart.
    fn window_dilated(&self, kernel: [usize; 2], dilation: [usize; 2]) -> Result<Window> {
        let (_, h, w) = self.spatial_input()?;
        let span = |k: usize, d: usize| (k - 1).saturating_mul(d).saturating_add(1);
        let extent = [span(kernel[0], dilation[0]), span(kernel[1], dilation[1])];
        let pair = |name: &str| -> Result<[usize; 2]> {
            match self.ints(name) {
                None => Ok([1, 1]),
                Some(v) if v.len() == 2 && v.iter().all(|&x| x > 0) => Ok([v[0] as usize, v[1] as usize]),
                Some(v) => Err(self.err(format!("{name} {v:?} must be two positive numbers"))),
            }
        };
        let stride = pair("strides")?;
        let auto = self.string("auto_pad").unwrap_or_default();
        let pads = match auto.as_str() {
            "" | "NOTSET" => match self.ints("pads") {
                None => [0; 4],
                Some(p) if p.len() == 4 && p.iter().all(|&x| x >= 0) => {
                    [p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize]
                }
                Some(p) => return Err(self.err(format!("pads {p:?} must be four non-negative numbers"))),
            },
            "VALID" => [0; 4],
            "SAME_UPPER" | "SAME_LOWER" => {
                let total = |len: usize, k: usize, s: usize| ((len.div_ceil(s) - 1) * s + k).saturating_sub(len);
                let (th, tw) = (total(h, extent[0], stride[0]), total(w, extent[1], stride[1]));
                if auto == "SAME_UPPER" {
                    [th / 2, tw / 2, th - th / 2, tw - tw / 2]
                } else {
                    [th - th / 2, tw - tw / 2, th / 2, tw / 2]
                }
            }
            other => return Err(self.err(format!("auto_pad '{other}' is not supported"))),
        };
        let window = Window { kernel, stride, pads };
        if self.int("ceil_mode", 0) != 0 {
            // ceil_mode only matters when a window would hang over the end.
            let fits = |len: usize, a: usize, b: usize, k: usize, s: usize| {
                (len + a + b).checked_sub(k).is_some_and(|r| r % s == 0)
            };
            if !(fits(h, pads[0], pads[2], extent[0], stride[0]) && fits(w, pads[1], pads[3], extent[1], stride[1])) {
                return Err(self.err("ceil_mode 1 with a window that overhangs the input is not supported"));
            }
        }
        Ok(window)
    }

    fn kernel_attr(&self) -> Result<[usize; 2]> {
        match self.ints("kernel_shape") {
            Some(k) if k.len() == 2 && k.iter().all(|&x| x > 0) => Ok([k[0] as usize, k[1] as usize]),
            Some(k) => Err(self.err(format!("kernel_shape {k:?} must be two positive numbers (2-D only)"))),
            None => Err(self.err("has no kernel_shape")),
        }
    }
}

/// A bias given as `[n]`, `[1, n]` or a scalar, as `[n]`.
fn bias_vector(ctx: &Ctx, t: &TensorProto, n: usize, scale: f32) -> Result<Array1<f32>> {
    let b = to_f32(t)?;
    let len = b.len();
    let v: Vec<f32> = if len == n && b.shape().iter().filter(|&&d| d != 1).count() <= 1 {
        b.iter().map(|&x| x * scale).collect()
    } else if len == 1 {
        vec![b.iter().next().copied().unwrap_or(0.0) * scale; n]
    } else {
        return Err(ctx.err(format!(
            "bias '{}' has shape {:?}, which does not broadcast to the {n} outputs",
            t.name,
            b.shape()
        )));
    };
    Ok(Array1::from(v))
}

/// Translates one node.
pub(crate) fn translate(ctx: &Ctx) -> Result<Step> {
    let node = ctx.node;
    if !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return Err(OnnxError::UnsupportedOp {
            op_type: format!("{}:{}", node.domain, node.op_type),
            node: ctx.label.to_string(),
            hint: String::new(),
        });
    }
    if ctx.current_pos() != 0 {
        return Err(ctx.err(format!("reads the chain value '{}' as a weight input", ctx.current)));
    }
    match node.op_type.as_str() {
        "Squeeze" => return squeeze(ctx),
        "LSTM" => return crate::lstm::lstm(ctx),
        "Identity" | "Dropout" => return Ok(Step::Skip),
        _ if ctx.batch_axis != 0 => {
            return Err(ctx.err(format!(
                "the chain value '{}' has its batch axis at position {}; this operator needs it first",
                ctx.current, ctx.batch_axis
            )));
        }
        _ => {}
    }
    Ok(match node.op_type.as_str() {
        "Gemm" => {
            let k = ctx.flat_input()?;
            if ctx.int("transA", 0) != 0 {
                return Err(ctx.err("transA = 1 (a transposed activation) is not supported"));
            }
            let b: Array2<f32> = ctx.weight(ctx.required(1, "the weight B")?, "weight")?;
            let alpha = ctx.float("alpha", 1.0);
            let beta = ctx.float("beta", 1.0);
            let w = if ctx.int("transB", 0) != 0 {
                b
            } else {
                b.reversed_axes().as_standard_layout().into_owned()
            };
            if w.ncols() != k {
                return Err(ctx.err(format!(
                    "weight '{}' maps {} inputs but the chain value has {k} features",
                    node.input[1],
                    w.ncols()
                )));
            }
            let bias = match ctx.const_input(2) {
                Some(c) => Some(bias_vector(ctx, c, w.nrows(), beta)?),
                None => None,
            };
            Step::Push(Layer::Dense(Dense::new(w * alpha, bias)))
        }
        "MatMul" => {
            // A weight on the last axis: flat values, or the tokens of a transformer ([N, T, D]).
            let k = *ctx
                .shape
                .last()
                .ok_or_else(|| ctx.err("needs an input with a feature axis"))?;
            let b: Array2<f32> = ctx.weight(ctx.required(1, "the weight")?, "weight")?;
            if b.nrows() != k {
                return Err(ctx.err(format!(
                    "weight '{}' has shape {:?} but the value has {k} features on its last axis",
                    node.input[1],
                    b.shape()
                )));
            }
            Step::Push(Layer::Dense(Dense::new(
                b.reversed_axes().as_standard_layout().into_owned(),
                None,
            )))
        }
        "Conv" => {
            let (c, _, _) = ctx.spatial_input()?;
            let group = ctx.int("group", 1);
            if group < 1 || group as usize > c {
                return Err(ctx.err(format!("group {group} must be between 1 and the {c} input channels")));
            }
            let group = group as usize;
            let w: Array4<f32> = ctx.weight(ctx.required(1, "the weight W")?, "weight")?;
            let (o, wc, kh, kw) = w.dim();
            if wc * group != c || o % group != 0 {
                return Err(ctx.err(format!(
                    "weight '{}' has shape {:?}: {wc} input channels per group × {group} groups, but the value has \
                     {c} channels (and the {o} output channels must split into the groups)",
                    node.input[1],
                    w.shape()
                )));
            }
            if let Some(k) = ctx.ints("kernel_shape")
                && k != [kh as i64, kw as i64]
            {
                return Err(ctx.err(format!(
                    "kernel_shape {k:?} contradicts the weight shape {:?}",
                    w.shape()
                )));
            }
            let dilation = ctx.dilations()?;
            let win = ctx.window_dilated([kh, kw], dilation)?;
            let bias = match ctx.const_input(2) {
                Some(b) => Some(bias_vector(ctx, b, o, 1.0)?),
                None => None,
            };
            let mut conv = Conv2d::new(w, bias, win.stride, win.pads);
            conv.dilation = dilation;
            conv.groups = group;
            Step::Push(Layer::Conv2d(conv))
        }
        "Relu" => Step::Push(Layer::Relu(lrp_core::Relu)),
        "MaxPool" => {
            let win = ctx.window(ctx.kernel_attr()?)?;
            Step::Push(Layer::MaxPool2d(Pool2d {
                window: win,
                count_include_pad: false,
            }))
        }
        "AveragePool" => {
            let win = ctx.window(ctx.kernel_attr()?)?;
            let include = ctx.int("count_include_pad", 0) != 0;
            Step::Push(Layer::AvgPool2d(Pool2d {
                window: win,
                count_include_pad: include,
            }))
        }
        "GlobalAveragePool" => {
            let (_, h, w) = ctx.spatial_input()?;
            Step::Push(Layer::AvgPool2d(Pool2d {
                window: Window {
                    kernel: [h, w],
                    stride: [1, 1],
                    pads: [0; 4],
                },
                count_include_pad: false,
            }))
        }
        "Flatten" => {
            let rank = ctx.shape.len() as i64 + 1;
            let axis = ctx.int("axis", 1);
            let axis = if axis < 0 { axis + rank } else { axis };
            if axis != 1 {
                return Err(ctx.err(format!(
                    "axis {} would merge or split the batch axis; only axis 1 is supported",
                    ctx.int("axis", 1)
                )));
            }
            if ctx.shape.len() == 1 {
                Step::Skip
            } else {
                Step::Push(Layer::Flatten(lrp_core::Flatten))
            }
        }
        "BatchNormalization" => {
            if ctx.int("training_mode", 0) != 0 {
                return Err(ctx.err("training_mode = 1 is not supported; export the model in eval mode"));
            }
            let vec1 =
                |i: usize, what: &str| -> Result<Array1<f32>> { ctx.weight::<Ix1>(ctx.required(i, what)?, what) };
            Step::Push(Layer::BatchNorm(BatchNorm {
                scale: vec1(1, "scale")?,
                shift: vec1(2, "bias")?,
                mean: vec1(3, "mean")?,
                var: vec1(4, "var")?,
                eps: ctx.float("epsilon", 1e-5),
            }))
        }
        "Softmax" | "LogSoftmax" if ctx.is_last => Step::Note(format!(
            "the final {} ({}) was dropped: lrp explains the logits",
            node.op_type, ctx.label
        )),
        "Softmax" | "LogSoftmax" => {
            return Err(ctx.err("a softmax is supported only as the last node (it is dropped: lrp explains logits)"));
        }
        other => {
            let hint = match other {
                "GRU" | "RNN" => ": of the recurrent layers only LSTM is supported",
                _ => "",
            };
            return Err(OnnxError::UnsupportedOp {
                op_type: other.to_string(),
                node: ctx.label.to_string(),
                hint: format!(
                    "{hint} (supported: Gemm, MatMul by a constant, Conv, Relu, Tanh, Sigmoid, LeakyRelu, Elu, Gelu, \
                     Softplus, HardSigmoid, HardSwish, Clip, MaxPool, AveragePool, GlobalAveragePool, ReduceMean over \
                     H and W, Add, Sub/Mul/Div by a constant, Concat, Pad, Flatten, Reshape, Squeeze, Unsqueeze, \
                     Transpose, Gather and Slice of a feature axis, BatchNormalization, LSTM, Dropout, Identity, \
                     a final Softmax/LogSoftmax, and shape arithmetic on constants)"
                ),
            });
        }
    })
}

/// The ONNX shape of the chain value with the batch axis (size 0 as a stand-in) at its place.
fn full_shape(ctx: &Ctx) -> Vec<usize> {
    let mut full = ctx.shape.to_vec();
    full.insert(ctx.batch_axis.min(full.len()), 0);
    full
}

/// Squeeze of unit feature axes: a reshape of each sample.
fn squeeze(ctx: &Ctx) -> Result<Step> {
    let full = full_shape(ctx);
    let rank = full.len() as i64;
    let axes: Vec<i64> = if ctx.opset >= 13 {
        match ctx.const_input(1) {
            Some(t) => to_i64(t)?,
            None => Vec::new(),
        }
    } else {
        ctx.ints("axes").unwrap_or_default()
    };
    let mut drop: Vec<usize> = if axes.is_empty() {
        (0..full.len())
            .filter(|&a| a != ctx.batch_axis && full[a] == 1)
            .collect()
    } else {
        let mut v = Vec::new();
        for &a in &axes {
            let a = if a < 0 { a + rank } else { a };
            if a < 0 || a >= rank {
                return Err(ctx.err(format!("axis {a} is out of range for rank {rank}")));
            }
            v.push(a as usize);
        }
        v
    };
    drop.sort_unstable();
    drop.dedup();
    if drop.contains(&ctx.batch_axis) {
        return Err(ctx.err("squeezes the batch axis"));
    }
    if let Some(&a) = drop.iter().find(|&&a| full[a] != 1) {
        return Err(ctx.err(format!("axis {a} has size {}, not 1", full[a])));
    }
    let batch_axis = ctx.batch_axis - drop.iter().filter(|&&a| a < ctx.batch_axis).count();
    let kept: Vec<usize> = (0..full.len())
        .filter(|a| !drop.contains(a) && *a != ctx.batch_axis)
        .map(|a| full[a])
        .collect();
    let layer = match kept.len() {
        _ if kept == ctx.shape => None,
        0 => return Err(ctx.err("would leave no feature axis")),
        1 => Some(Layer::Flatten(lrp_core::Flatten)),
        _ => Some(Layer::reshape(kept)),
    };
    Ok(Step::Relayout {
        layer,
        output: 0,
        batch_axis,
    })
}
