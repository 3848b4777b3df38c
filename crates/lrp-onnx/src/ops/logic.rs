//! Comparisons, logic and selection — `Equal`, `Greater`, `Less`, `Not`, `And`, `Or`, `Where` — and the tensor
//! builders `Expand` and `ScatterND`: folded on constants (Swin's shift masks are built from them), carried through
//! shapes that hold the batch size (`Where(Equal(shape, -1), …)` in a legacy export's `expand`), and `Expand` of a
//! constant over the batch (a class token repeated for every sample).

use ndarray::{ArrayD, IxDyn};

use crate::context::{Handler, NodeCtx};
use crate::error::Result;
use crate::fold::{Tensor, broadcast_shape, broadcast_with};
use crate::value::{Dim, Val};

use super::arith::dims_of;
use super::shape::set_dims;

pub(crate) fn register(reg: &mut Vec<(&'static str, Handler)>) {
    reg.extend([
        ("Equal", compare as Handler),
        ("Greater", compare),
        ("Less", compare),
        ("GreaterOrEqual", compare),
        ("LessOrEqual", compare),
        ("And", compare),
        ("Or", compare),
        ("Not", not),
        ("Where", select),
        ("Expand", expand),
        ("ScatterND", scatter_nd),
    ]);
}

/// A boolean as ONNX's integers.
fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// The comparison or logic operator of the node, on two numbers.
fn compared(op: &str, x: f64, y: f64) -> f64 {
    flag(match op {
        "Equal" => x == y,
        "Greater" => x > y,
        "Less" => x < y,
        "GreaterOrEqual" => x >= y,
        "LessOrEqual" => x <= y,
        "And" => x != 0.0 && y != 0.0,
        _ => x != 0.0 || y != 0.0,
    })
}

fn compare(c: &mut NodeCtx) -> Result<()> {
    if !c.computed().is_empty() {
        return Err(c.err(format!(
            "{} of a computed value is supported only inside a decomposed activation (an elementwise island)",
            c.op()
        )));
    }
    let op = c.op().to_string();
    if c.any_sym() {
        // A shape holding the batch size against a constant: the batch size is at least 1, so only comparisons
        // that hold for every batch size are decided.
        let ((a, _), (b, _)) = (dims_of(c, 0)?, dims_of(c, 1)?);
        let n = a.len().max(b.len());
        let at = |v: &[Dim], i: usize| if v.len() == 1 { v[0] } else { v[i] };
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            out.push(match (at(&a, i), at(&b, i)) {
                (Dim::Known(p), Dim::Known(q)) => compared(&op, p as f64, q as f64),
                (Dim::Batch(_), Dim::Known(q)) | (Dim::Known(q), Dim::Batch(_)) if op == "Equal" && q <= 0 => 0.0,
                (x, y) => return Err(c.err(format!("{op} of {x} and {y} depends on the batch size"))),
            });
        }
        return c.set_const(Tensor {
            data: ArrayD::from_shape_vec(IxDyn(&[n]), out).expect("1-D"),
            int: true,
        });
    }
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
    let data = broadcast_with(&a.data, &b.data, |x, y| compared(&op, x, y));
    c.set_const(Tensor { data, int: true })
}

fn not(c: &mut NodeCtx) -> Result<()> {
    if c.any_sym() || !c.computed().is_empty() {
        return Err(c.err("Not of a computed value or a shape is not supported"));
    }
    let t = c.tensor_req(0).map_err(|e| c.err(e))?;
    c.set_const(Tensor {
        data: t.data.mapv(|v| flag(v == 0.0)),
        int: true,
    })
}

fn select(c: &mut NodeCtx) -> Result<()> {
    if !c.computed().is_empty() {
        return Err(c.err(
            "Where of a computed value is supported only inside a decomposed activation (an elementwise island)",
        ));
    }
    let cond = c.tensor_req(0).map_err(|e| c.err(e))?;
    if c.any_sym() {
        // Picking dimensions of shapes: the condition is known.
        let ((x, _), (y, _)) = (dims_of(c, 1)?, dims_of(c, 2)?);
        let flags: Vec<bool> = cond.data.iter().map(|&v| v != 0.0).collect();
        let n = flags.len().max(x.len()).max(y.len());
        let at = |v: &[Dim], i: usize| if v.len() == 1 { v[0] } else { v[i] };
        let pick = |i: usize| {
            if flags[if flags.len() == 1 { 0 } else { i }] {
                at(&x, i)
            } else {
                at(&y, i)
            }
        };
        let dims: Vec<Dim> = (0..n).map(pick).collect();
        return set_dims(c, dims, cond.data.ndim() == 0);
    }
    let (x, y) = (
        c.tensor_req(1).map_err(|e| c.err(e))?,
        c.tensor_req(2).map_err(|e| c.err(e))?,
    );
    let shape = broadcast_shape(cond.data.shape(), x.data.shape())
        .and_then(|s| broadcast_shape(&s, y.data.shape()))
        .ok_or_else(|| c.err("condition and values do not broadcast"))?;
    let view = |t: &Tensor| t.data.broadcast(IxDyn(&shape)).expect("checked").to_owned();
    let (k, xv, yv) = (view(&cond), view(&x), view(&y));
    let data = ndarray::Zip::from(&k)
        .and(&xv)
        .and(&yv)
        .map_collect(|&k, &x, &y| if k != 0.0 { x } else { y });
    c.set_const(Tensor {
        data,
        int: x.int && y.int,
    })
}

fn expand(c: &mut NodeCtx) -> Result<()> {
    if !c.computed().is_empty() {
        return Err(c.err("Expand of a computed value is not supported"));
    }
    let t = c.tensor_req(0).map_err(|e| c.err(e))?;
    let (dims, _) = dims_of(c, 1)?;
    // ONNX broadcasts both ways; a dimension of 1 in the target keeps the tensor's.
    let rank = dims.len().max(t.data.ndim());
    let src: Vec<usize> = std::iter::repeat_n(1, rank - t.data.ndim())
        .chain(t.data.shape().iter().copied())
        .collect();
    let mut batch = None;
    let mut shape = Vec::with_capacity(rank);
    for (i, &s) in src.iter().enumerate() {
        let d = if i + dims.len() >= rank {
            dims[i + dims.len() - rank]
        } else {
            Dim::Known(1)
        };
        shape.push(match d {
            Dim::Batch(1) if s == 1 && batch.is_none() => {
                batch = Some(i);
                1
            }
            Dim::Known(v) if v == 1 || v as usize == s => s,
            Dim::Known(v) if s == 1 && v > 0 => v as usize,
            other => return Err(c.err(format!("cannot expand {:?} to {}", t.data.shape(), other))),
        });
    }
    let data = t
        .data
        .into_shape_with_order(IxDyn(&src))
        .map_err(|e| c.err(e.to_string()))?
        .broadcast(IxDyn(&shape))
        .ok_or_else(|| c.err("does not broadcast"))?
        .to_owned();
    let Some(b) = batch else {
        return c.set_const(Tensor { data, int: t.int });
    };
    // The same tensor for every sample (a class token): its per-sample tensor, the batch axis left out.
    let per_sample = Tensor {
        data: data.index_axis_move(ndarray::Axis(b), 0),
        int: t.int,
    };
    let name = c.out0()?;
    c.st.consts.insert(name.clone(), per_sample.to_proto(&name));
    c.set(0, Val::Tiled { batch: b })
}

fn scatter_nd(c: &mut NodeCtx) -> Result<()> {
    if c.any_sym() || !c.computed().is_empty() {
        return Err(c.err("ScatterND into a computed value or a shape is not supported"));
    }
    if c.string("reduction").is_some_and(|r| r != "none") {
        return Err(c.err("ScatterND with a reduction is not supported"));
    }
    let (data, idx, upd) = (
        c.tensor_req(0).map_err(|e| c.err(e))?,
        c.tensor_req(1).map_err(|e| c.err(e))?,
        c.tensor_req(2).map_err(|e| c.err(e))?,
    );
    let mut out = data.data.clone();
    let shape = out.shape().to_vec();
    let Some((&k, lead)) = idx.data.shape().split_last() else {
        return Err(c.err("has indices without an axis"));
    };
    let block: Vec<usize> = shape[k.min(shape.len())..].to_vec();
    let block_len: usize = block.iter().product();
    let count: usize = lead.iter().product();
    if k > shape.len() || upd.data.len() != count * block_len {
        return Err(c.err(format!(
            "updates of shape {:?} do not fit indices {:?} into {shape:?}",
            upd.data.shape(),
            idx.data.shape()
        )));
    }
    let idx: Vec<i64> = idx.ints();
    let upd: Vec<f64> = upd.data.iter().copied().collect();
    let flat = out.as_slice_mut().ok_or_else(|| c.err("tensor not contiguous"))?;
    for (j, tuple) in idx.chunks_exact(k.max(1)).enumerate() {
        let mut at = 0usize;
        for (a, &i) in tuple.iter().enumerate() {
            let d = shape[a] as i64;
            let i = if i < 0 { i + d } else { i };
            if i < 0 || i >= d {
                return Err(c.err(format!("index {tuple:?} is out of range for {shape:?}")));
            }
            at = at * shape[a] + i as usize;
        }
        let start = at * block_len;
        flat[start..start + block_len].copy_from_slice(&upd[j * block_len..(j + 1) * block_len]);
    }
    c.set_const(Tensor {
        data: out,
        int: data.int,
    })
}
