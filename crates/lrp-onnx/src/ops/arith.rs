//! Elementwise arithmetic: folded on constants; on a value of the network with a constant, an arithmetic layer
//! (or a bias merged into the dense/conv layer right before it); between two values of the network, a join.

use lrp_core::{Arith, ArithOp, Layer};
use ndarray::Axis;

use crate::context::{Handler, NodeCtx};
use crate::error::Result;
use crate::fold::{Tensor, broadcast_shape, broadcast_with};
use crate::tensor::to_f32;

pub(crate) fn register(reg: &mut Vec<(&'static str, Handler)>) {
    reg.extend([
        ("Add", binary as Handler),
        ("Sub", binary),
        ("Mul", binary),
        ("Div", binary),
        ("Pow", binary),
        ("Max", binary),
        ("Min", binary),
        ("Neg", unary),
        ("Sqrt", unary),
        ("Reciprocal", unary),
        ("Abs", unary),
    ]);
}

/// The error for an elementwise operator whose inputs are not constants where it needs them.
fn only_in_islands(c: &NodeCtx) -> crate::error::OnnxError {
    c.err(format!(
        "{} of a computed value is supported only inside a decomposed activation (an elementwise island)",
        c.op()
    ))
}

fn unary(c: &mut NodeCtx) -> Result<()> {
    if !c.computed().is_empty() || c.any_sym() {
        return Err(only_in_islands(c));
    }
    let mut t = c.tensor_req(0).map_err(|e| c.err(e))?;
    match c.op() {
        "Neg" => t.data.mapv_inplace(|v| -v),
        "Sqrt" => t.data.mapv_inplace(f64::sqrt),
        "Abs" => t.data.mapv_inplace(f64::abs),
        _ => t.data.mapv_inplace(|v| 1.0 / v),
    }
    c.set_const(t)
}

fn binary(c: &mut NodeCtx) -> Result<()> {
    let computed = c.computed();
    match computed.len() {
        0 if c.any_sym() => Err(c.err(format!(
            "{} on a shape that holds the batch size is not supported (only Gather, Slice, Concat, Unsqueeze, \
             Squeeze, Cast and ConstantOfShape are)",
            c.op()
        ))),
        0 => fold(c),
        1 if matches!(c.op(), "Add" | "Sub" | "Mul" | "Div") => with_constant(c, computed[0]),
        2 if matches!(c.op(), "Add" | "Sub" | "Mul" | "Div") => join(c),
        _ => Err(only_in_islands(c)),
    }
}

/// Both inputs constants: the folded result.
fn fold(c: &mut NodeCtx) -> Result<()> {
    let (a, b) = (
        c.tensor_req(0).map_err(|e| c.err(e))?,
        c.tensor_req(1).map_err(|e| c.err(e))?,
    );
    broadcast_shape(a.data.shape(), b.data.shape()).ok_or_else(|| {
        c.err(format!(
            "shapes {:?} and {:?} do not broadcast",
            a.data.shape(),
            b.data.shape()
        ))
    })?;
    let int = a.int && b.int;
    let data = match c.op() {
        "Add" => &a.data + &b.data,
        "Sub" => &a.data - &b.data,
        "Mul" => &a.data * &b.data,
        "Div" if int => {
            if b.data.iter().any(|&v| v == 0.0) {
                return Err(c.err("integer division by zero"));
            }
            (&a.data / &b.data).mapv(f64::trunc)
        }
        "Div" => &a.data / &b.data,
        "Pow" => broadcast_with(&a.data, &b.data, f64::powf),
        "Max" => broadcast_with(&a.data, &b.data, f64::max),
        _ => broadcast_with(&a.data, &b.data, f64::min),
    };
    c.set_const(Tensor { data, int })
}

/// Two values of the network: only a sum (a residual join) of equal shapes.
fn join(c: &mut NodeCtx) -> Result<()> {
    let (x, y) = (c.node_at(0).expect("computed"), c.node_at(1).expect("computed"));
    if c.op() != "Add" {
        return Err(c.err(format!(
            "{} of two computed values is not supported (only Add joins branches)",
            c.op()
        )));
    }
    if x.batch_axis != y.batch_axis || x.shape != y.shape {
        return Err(c.err(format!(
            "adds values of different shapes {:?} and {:?} (broadcasting between computed values is not supported)",
            x.shape, y.shape
        )));
    }
    let id = c.emit(Layer::Add(lrp_core::Add), vec![x.id, y.id])?;
    c.set_node(id, x.shape, x.batch_axis)
}

/// A value of the network (input `at`) with a constant: an arithmetic layer, or a bias merged into the dense or
/// conv layer right before it.
fn with_constant(c: &mut NodeCtx, at: usize) -> Result<()> {
    let x = c.node_at(at).expect("computed");
    let ci = 1 - at;
    let name = c.input_name(ci).unwrap_or("").to_string();
    let t = c
        .const_input(ci)
        .ok_or_else(|| c.err(format!("input '{name}' is neither computed nor a constant")))?;
    let value = to_f32(t)?;
    // ONNX broadcasts against the full shape; ours is per sample.
    let mut full = x.shape.clone();
    full.insert(x.batch_axis, 1);
    if broadcast_shape(&full, value.shape()).as_deref() != Some(&full[..]) {
        return Err(c.err(format!(
            "constant '{name}' of shape {:?} does not broadcast to the value's shape {full:?} without changing it",
            value.shape()
        )));
    }
    if x.batch_axis != 0 {
        c.need_batch_first(&x, c.op())?;
    }
    // Drop the constant's batch axis (size 1) when it has one.
    let value = if value.ndim() == full.len() {
        value.index_axis_move(Axis(0), 0)
    } else {
        value
    };
    let op = match (c.op(), at) {
        ("Add", _) => ArithOp::Add,
        ("Sub", 0) => ArithOp::Sub,
        ("Sub", _) => ArithOp::SubFrom,
        ("Mul", _) => ArithOp::Mul,
        ("Div", 0) => ArithOp::Div,
        _ => return Err(c.err("divides a constant by a computed value, which is not a linear map")),
    };
    if op == ArithOp::Add && merge_bias(c, &x, at, &value) {
        return c.set(0, x.with(x.id, x.shape.clone(), x.batch_axis));
    }
    c.push(Layer::Arith(Arith { op, value }), &x)
}

/// A bias added right after a dense or conv layer without one (read by nothing else) becomes its bias.
fn merge_bias(c: &mut NodeCtx, x: &crate::value::Computed, at: usize, value: &ndarray::ArrayD<f32>) -> bool {
    let b = &mut c.st.b;
    let single_reader = c.st.readers.get(&c.node.input[at]) == Some(&1);
    if x.id == 0 || x.id != b.nodes.len() || !single_reader {
        return false;
    }
    let as_vec = || Some(ndarray::Array1::from(value.iter().copied().collect::<Vec<_>>()));
    match &mut b.nodes[x.id - 1].0 {
        Layer::Dense(d) if d.bias.is_none() && value.len() == d.outputs() => {
            d.bias = as_vec();
            true
        }
        Layer::Conv2d(cv)
            if cv.bias.is_none()
                && value.len() == cv.out_channels()
                && (value.ndim() == 1 && x.shape.len() == 1
                    || value.ndim() == 3 && value.shape()[1] == 1 && value.shape()[2] == 1) =>
        {
            cv.bias = as_vec();
            true
        }
        _ => false,
    }
}
