//! Layers with weights — `Gemm`, `MatMul` by a constant, `Conv` — their batch norms, and `MatMul` of two computed
//! values (attention).

use lrp_core::{BatchNorm, Conv2d, Dense, Layer};
use ndarray::{Array1, Array2, Array4, Ix1};

use crate::context::{Handler, NodeCtx};
use crate::error::Result;
use crate::proto::TensorProto;
use crate::tensor::to_f32;
use crate::value::{Batch, Computed};

pub(crate) fn register(reg: &mut Vec<(&'static str, Handler)>) {
    reg.extend([
        ("Gemm", gemm as Handler),
        ("MatMul", matmul),
        ("Conv", conv),
        ("BatchNormalization", batch_norm),
    ]);
}

/// The one computed input of a layer with weights: input 0, its weights constants. Unless `any_batch`, the
/// batch axis must come first (a merged batch's leading unit axis is taken back as the batch).
pub(crate) fn data_input_any(c: &mut NodeCtx, any_batch: bool) -> Result<Computed> {
    let computed = c.computed();
    match computed[..] {
        [] => Err(c.err(format!(
            "{} on constants is not supported at import (opset {})",
            c.op(),
            c.st.opset
        ))),
        [0] => {
            let x = c.node_at(0).expect("computed");
            if any_batch {
                return Ok(x);
            }
            let x = c.unmerge(x)?;
            match x.batch {
                Batch::At(b) if b != 0 => Err(c.err(format!(
                    "the value '{}' has its batch axis at position {b}; this operator needs it first",
                    c.node.input[0]
                ))),
                _ => Ok(x),
            }
        }
        [i] if matches!(c.op(), "MatMul" | "Gemm") => Err(c.err(format!(
            "multiplies a constant by a computed value from the left, which is not supported (input {i})"
        ))),
        [i] => Err(c.err(format!(
            "reads the computed value '{}' as a weight input",
            c.node.input[i]
        ))),
        _ => Err(c.err("reads several computed values, which this operator does not support")),
    }
}

/// [`data_input_any`] with the batch first.
pub(crate) fn data_input(c: &mut NodeCtx) -> Result<Computed> {
    data_input_any(c, false)
}

/// A constant weight tensor of rank `D`.
fn weight<D: ndarray::Dimension>(c: &NodeCtx, t: &TensorProto, what: &str) -> Result<ndarray::Array<f32, D>> {
    let a = to_f32(t)?;
    let shape = a.shape().to_vec();
    a.into_dimensionality::<D>().map_err(|_| {
        c.err(format!(
            "{what} '{}' has shape {shape:?}, expected rank {}",
            t.name,
            D::NDIM.unwrap_or(0)
        ))
    })
}

/// A bias given as `[n]`, `[1, n]` or a scalar, as `[n]`.
fn bias_vector(c: &NodeCtx, t: &TensorProto, n: usize, scale: f32) -> Result<Array1<f32>> {
    let b = to_f32(t)?;
    let len = b.len();
    let v: Vec<f32> = if len == n && b.shape().iter().filter(|&&d| d != 1).count() <= 1 {
        b.iter().map(|&x| x * scale).collect()
    } else if len == 1 {
        vec![b.iter().next().copied().unwrap_or(0.0) * scale; n]
    } else {
        return Err(c.err(format!(
            "bias '{}' has shape {:?}, which does not broadcast to the {n} outputs",
            t.name,
            b.shape()
        )));
    };
    Ok(Array1::from(v))
}

fn gemm(c: &mut NodeCtx) -> Result<()> {
    let x = data_input(c)?;
    // `[N, K]`, or a merged batch's `[M, K]` (rows of one sample).
    let flat = match (x.batch, &x.shape[..]) {
        (Batch::At(_), &[k]) | (Batch::Merged, &[_, k]) => Some(k),
        _ => None,
    };
    let Some(k) = flat else {
        return Err(c.err(format!(
            "needs a flat input [N, features], the value is [N, {:?}]",
            x.shape
        )));
    };
    if c.int("transA", 0) != 0 {
        return Err(c.err("transA = 1 (a transposed activation) is not supported"));
    }
    let b: Array2<f32> = weight(c, c.required(1, "the weight B")?, "weight")?;
    let (alpha, beta) = (c.float("alpha", 1.0), c.float("beta", 1.0));
    let w = if c.int("transB", 0) != 0 {
        b
    } else {
        b.reversed_axes().as_standard_layout().into_owned()
    };
    if w.ncols() != k {
        return Err(c.err(format!(
            "weight '{}' maps {} inputs but the value has {k} features",
            c.node.input[1],
            w.ncols()
        )));
    }
    let bias = match c.const_input(2) {
        Some(t) => Some(bias_vector(c, t, w.nrows(), beta)?),
        None => None,
    };
    c.push(Layer::Dense(Dense::new(w * alpha, bias)), &x)
}

fn matmul(c: &mut NodeCtx) -> Result<()> {
    if c.computed().len() == 2 {
        return matmul_of_values(c);
    }
    // A weight on the last axis: flat values, or the tokens of a transformer ([N, T, D], or [T, N, D]: the batch
    // may stand anywhere but last).
    let x = data_input_any(c, true)?;
    if x.shape.is_empty() || x.feature_axis(x.rank() - 1) != Some(x.shape.len() - 1) {
        return Err(c.err("multiplies along the batch axis"));
    }
    let k = *x.shape.last().expect("checked above");
    let b: Array2<f32> = weight(c, c.required(1, "the weight")?, "weight")?;
    if b.nrows() != k {
        return Err(c.err(format!(
            "weight '{}' has shape {:?} but the value has {k} features on its last axis",
            c.node.input[1],
            b.shape()
        )));
    }
    let w = b.reversed_axes().as_standard_layout().into_owned();
    c.push(Layer::Dense(Dense::new(w, None)), &x)
}

/// The product of two values of the network (attention's `Q·Kᵀ` and `softmax(·)·V`).
fn matmul_of_values(c: &mut NodeCtx) -> Result<()> {
    let (x, y) = (c.node_at(0).expect("computed"), c.node_at(1).expect("computed"));
    if !(x.batch_first() && y.batch_first()) || x.batch != y.batch {
        return Err(c.err("multiplies computed values whose batch axis is not first (reorder them before the product)"));
    }
    lrp_core::layers::matmul_shape(&x.shape, &y.shape).map_err(|r| c.err(format!("{r} (per sample)")))?;
    let id = c.emit(Layer::MatMul(lrp_core::MatMul), vec![x.id, y.id])?;
    let shape = c.shape_of(id);
    c.set_node(id, shape, x.batch)
}

fn conv(c: &mut NodeCtx) -> Result<()> {
    let x = data_input(c)?;
    let (ch, _, _) = super::pool::spatial(c, &x)?;
    let group = c.int("group", 1);
    if group < 1 || group as usize > ch {
        return Err(c.err(format!("group {group} must be between 1 and the {ch} input channels")));
    }
    let group = group as usize;
    let w: Array4<f32> = weight(c, c.required(1, "the weight W")?, "weight")?;
    let (o, wc, kh, kw) = w.dim();
    if wc * group != ch || o % group != 0 {
        return Err(c.err(format!(
            "weight '{}' has shape {:?}: {wc} input channels per group × {group} groups, but the value has {ch} \
             channels (and the {o} output channels must split into the groups)",
            c.node.input[1],
            w.shape()
        )));
    }
    if let Some(k) = c.ints("kernel_shape")
        && k != [kh as i64, kw as i64]
    {
        return Err(c.err(format!(
            "kernel_shape {k:?} contradicts the weight shape {:?}",
            w.shape()
        )));
    }
    let dilation = super::pool::dilations(c)?;
    let win = super::pool::window_dilated(c, &x, [kh, kw], dilation)?;
    let bias = match c.const_input(2) {
        Some(b) => Some(bias_vector(c, b, o, 1.0)?),
        None => None,
    };
    let mut conv = Conv2d::new(w, bias, win.stride, win.pads);
    conv.dilation = dilation;
    conv.groups = group;
    c.push(Layer::Conv2d(conv), &x)
}

fn batch_norm(c: &mut NodeCtx) -> Result<()> {
    let x = data_input(c)?;
    if c.int("training_mode", 0) != 0 {
        return Err(c.err("training_mode = 1 is not supported; export the model in eval mode"));
    }
    let vec1 = |i: usize, what: &str| -> Result<Array1<f32>> { weight::<Ix1>(c, c.required(i, what)?, what) };
    let bn = BatchNorm {
        scale: vec1(1, "scale")?,
        shift: vec1(2, "bias")?,
        mean: vec1(3, "mean")?,
        var: vec1(4, "var")?,
        eps: c.float("epsilon", 1e-5),
    };
    c.push(Layer::BatchNorm(bn), &x)
}
