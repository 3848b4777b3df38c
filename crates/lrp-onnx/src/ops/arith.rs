//! Elementwise arithmetic: folded on constants; on a value of the network with a constant, an arithmetic layer
//! (or a bias merged into the dense/conv layer right before it); between two values of the network, a join.

use lrp_core::{Arith, ArithOp, Layer};
use ndarray::Axis;

use crate::context::{Handler, NodeCtx};
use crate::error::Result;
use crate::fold::{Tensor, broadcast_shape, broadcast_with};
use crate::tensor::to_f32;
use crate::value::{Batch, Dim};

pub(crate) fn register(reg: &mut Vec<(&'static str, Handler)>) {
    reg.extend([
        ("Add", binary as Handler),
        ("Sub", binary),
        ("Mul", binary),
        ("Div", binary),
        ("Pow", binary),
        ("Max", binary),
        ("Min", binary),
        ("Mod", binary),
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
        0 if c.any_sym() => sym_binary(c),
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
        "Mod" => {
            let fmod = c.int("fmod", 0) != 0;
            if b.data.iter().any(|&v| v == 0.0) && int {
                return Err(c.err("integer modulo by zero"));
            }
            broadcast_with(&a.data, &b.data, |x, y| modulo(x, y, fmod))
        }
        _ => broadcast_with(&a.data, &b.data, f64::min),
    };
    c.set_const(Tensor { data, int })
}

/// ONNX `Mod`: the remainder with the divisor's sign (`fmod = 0`, as Python's `%`), or the dividend's (`fmod = 1`,
/// as C's `fmod`).
fn modulo(x: f64, y: f64, fmod: bool) -> f64 {
    let r = x % y;
    if !fmod && r != 0.0 && (r < 0.0) != (y < 0.0) {
        r + y
    } else {
        r
    }
}

/// Input `i` as the dimensions of a shape: a shape holding the batch size, or a constant's integers; with whether it
/// is a scalar.
pub(crate) fn dims_of(c: &NodeCtx, i: usize) -> Result<(Vec<Dim>, bool)> {
    if let Some(s) = c.sym_at(i) {
        return Ok(s);
    }
    let t = c.tensor_req(i).map_err(|e| c.err(e))?;
    if t.data.ndim() > 1 {
        return Err(c.err(format!(
            "{} of a shape and a constant of shape {:?}",
            c.op(),
            t.data.shape()
        )));
    }
    Ok((t.ints().into_iter().map(Dim::Known).collect(), t.data.ndim() == 0))
}

/// Shape arithmetic that carries the batch size: known dimensions are computed; the batch size may be scaled by a
/// known factor (`N·nW` windows, and back), or added 0 to.
fn sym_binary(c: &mut NodeCtx) -> Result<()> {
    let ((a, sa), (b, sb)) = (dims_of(c, 0)?, dims_of(c, 1)?);
    let n = a.len().max(b.len());
    let at = |v: &[Dim], i: usize| if v.len() == 1 { v[0] } else { v[i] };
    if !(a.len() == n || a.len() == 1) || !(b.len() == n || b.len() == 1) {
        return Err(c.err(format!("{} of shapes of lengths {} and {}", c.op(), a.len(), b.len())));
    }
    let fmod = c.int("fmod", 0) != 0;
    let op = c.op().to_string();
    let out: Vec<Dim> = (0..n)
        .map(|i| dim_op(&op, at(&a, i), at(&b, i), fmod))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| c.err(e))?;
    super::shape::set_dims(c, out, sa && sb)
}

/// One dimension of `x op y`.
fn dim_op(op: &str, x: Dim, y: Dim, fmod: bool) -> std::result::Result<Dim, String> {
    use Dim::{Batch, Known};
    Ok(match (op, x, y) {
        (_, Known(p), Known(q)) => Known(match op {
            "Add" => p + q,
            "Sub" => p - q,
            "Mul" => p * q,
            "Div" if q != 0 => p / q,
            "Mod" if q != 0 => modulo(p as f64, q as f64, fmod) as i64,
            "Max" => p.max(q),
            "Min" => p.min(q),
            "Pow" if q >= 0 => p.pow(q as u32),
            _ => return Err(format!("{op} of {p} and {q}")),
        }),
        ("Mul", Batch(k), Known(q)) | ("Mul", Known(q), Batch(k)) if q > 0 => Batch(k * q),
        ("Div", Batch(k), Known(q)) if q > 0 && k % q == 0 => Batch(k / q),
        ("Add" | "Sub", Batch(k), Known(0)) | ("Add", Known(0), Batch(k)) => Batch(k),
        ("Max" | "Min", Batch(k), Batch(l)) if k == l => Batch(k),
        _ => {
            return Err(format!(
                "{op} of {x} and {y}: arithmetic on the batch size that this import does not follow"
            ));
        }
    })
}

/// Two values of the network: a sum (a residual join) of equal shapes, or a product (a squeeze-excitation gate, or
/// any other product of two values) whose shapes broadcast.
fn join(c: &mut NodeCtx) -> Result<()> {
    let (x, y) = (c.node_at(0).expect("computed"), c.node_at(1).expect("computed"));
    match c.op() {
        "Add" => {
            if x.batch != y.batch || x.shape != y.shape {
                return Err(c.err(format!(
                    "adds values of different shapes {:?} and {:?} (broadcasting between computed values is not \
                     supported)",
                    x.shape, y.shape
                )));
            }
            let id = c.emit(Layer::Add(lrp_core::Add), vec![x.id, y.id])?;
            c.set_node(id, x.shape, x.batch)
        }
        "Mul" => {
            // Broadcasting is per sample: both values' batch must stand at the same place (or nowhere apart), and
            // their per-sample shapes broadcast right-aligned as ONNX's do when they have the same rank.
            if x.batch != y.batch || x.shape.len() != y.shape.len() {
                return Err(c.err(format!(
                    "multiplies values of shapes {:?} and {:?} with their batch axes in different places",
                    x.full_dims(),
                    y.full_dims()
                )));
            }
            let id = c.emit(Layer::Mul(lrp_core::Mul), vec![x.id, y.id])?;
            let shape = c.shape_of(id);
            c.set_node(id, shape, x.batch)
        }
        op => Err(c.err(format!(
            "{op} of two computed values is not supported (only Add joins branches and Mul multiplies them)"
        ))),
    }
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
    // ONNX broadcasts against the full shape; ours is per sample: the constant may not vary along the batch axis,
    // which is then dropped from it.
    let full = x.full_shape_one();
    if broadcast_shape(&full, value.shape()).as_deref() != Some(&full[..]) {
        return Err(c.err(format!(
            "constant '{name}' of shape {:?} does not broadcast to the value's shape {full:?} without changing it",
            value.shape()
        )));
    }
    let value = match x.batch {
        Batch::At(b) if value.ndim() + b >= full.len() => {
            // The constant's axis that lines up with the batch (right-aligned) has size 1: drop it.
            let at = value.ndim() + b - full.len();
            value.index_axis_move(Axis(at), 0)
        }
        _ => value,
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
        return c.set(0, x.with(x.id, x.shape.clone(), x.batch));
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
