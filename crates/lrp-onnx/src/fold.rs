//! Constant folding at import: shape arithmetic (`Shape`, `Gather`, `Slice`, `Concat`, `Unsqueeze`, `Cast`, …)
//! on constants and on shapes that hold the batch size as a symbol.

use ndarray::{ArrayD, Axis, IxDyn};

use crate::proto::{TensorProto, data_type};
use crate::tensor::{to_f32, to_i64};

/// A constant tensor while folding: values as `f64` (exact for `f32` weights and for integers below 2⁵³; larger
/// integers, such as `INT64_MAX` used as "to the end" in `Slice`, saturate back to `i64::MAX`).
#[derive(Clone, Debug)]
pub(crate) struct Tensor {
    pub data: ArrayD<f64>,
    pub int: bool,
}

/// No folded constant may hold more elements than this (2²⁶): shape arithmetic is small, and a graph asking for
/// more (e.g. `ConstantOfShape` of an absurd shape) is refused instead of exhausting memory.
pub(crate) const MAX_FOLDED: usize = 1 << 26;

impl Tensor {
    pub fn from_proto(t: &TensorProto) -> crate::Result<Tensor> {
        match t.data_type {
            data_type::FLOAT | data_type::DOUBLE => Ok(Tensor {
                data: to_f32(t)?.mapv(|v| v as f64),
                int: false,
            }),
            _ => {
                let v = to_i64(t)?;
                let shape: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
                Ok(Tensor {
                    data: ArrayD::from_shape_vec(IxDyn(&shape), v.into_iter().map(|x| x as f64).collect())
                        .expect("length checked by to_i64"),
                    int: true,
                })
            }
        }
    }

    pub fn to_proto(&self, name: &str) -> TensorProto {
        let dims = self.data.shape().iter().map(|&d| d as i64).collect();
        let mut t = TensorProto {
            dims,
            name: name.to_string(),
            ..Default::default()
        };
        if self.int {
            t.data_type = data_type::INT64;
            t.int64_data = self.data.iter().map(|&v| v as i64).collect();
        } else {
            t.data_type = data_type::FLOAT;
            t.float_data = self.data.iter().map(|&v| v as f32).collect();
        }
        t
    }

    pub fn ints(&self) -> Vec<i64> {
        self.data.iter().map(|&v| v as i64).collect()
    }

    pub fn scalar_int(v: i64) -> Tensor {
        Tensor {
            data: ArrayD::from_elem(IxDyn(&[]), v as f64),
            int: true,
        }
    }

    pub fn vec_int(v: &[i64]) -> Tensor {
        Tensor {
            data: ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.iter().map(|&x| x as f64).collect()).expect("1-D"),
            int: true,
        }
    }
}

/// Normalises a possibly negative axis for rank `rank`.
pub(crate) fn axis(a: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let v = if a < 0 { a + r } else { a };
    if v < 0 || v >= r {
        return Err(format!("axis {a} is out of range for rank {rank}"));
    }
    Ok(v as usize)
}

/// The indices ONNX `Slice` keeps along an axis of length `len`.
pub(crate) fn slice_indices(len: usize, start: i64, end: i64, step: i64) -> Result<Vec<usize>, String> {
    if step == 0 {
        return Err("slice step 0".into());
    }
    let n = len as i64;
    let clamp = |v: i64, lo: i64, hi: i64| v.clamp(lo, hi);
    let norm = |v: i64| if v < 0 { v.saturating_add(n) } else { v };
    let mut out = Vec::new();
    if step > 0 {
        let (s, e) = (clamp(norm(start), 0, n), clamp(norm(end), 0, n));
        let mut i = s;
        while i < e {
            out.push(i as usize);
            i = i.saturating_add(step);
        }
    } else {
        let (s, e) = (clamp(norm(start), -1, n - 1), clamp(norm(end), -1, n - 1));
        let mut i = s;
        while i > e {
            out.push(i as usize);
            i = i.saturating_add(step);
        }
    }
    Ok(out)
}

/// `Gather` along `ax` with integer `indices` (negative ones count from the end).
pub(crate) fn gather<T: Clone>(data: &ArrayD<T>, ax: usize, indices: &ArrayD<f64>) -> Result<ArrayD<T>, String> {
    let len = data.shape()[ax] as i64;
    let mut idx = Vec::with_capacity(indices.len());
    for &i in indices.iter() {
        let i = i as i64;
        let j = if i < 0 { i + len } else { i };
        if j < 0 || j >= len {
            return Err(format!("index {i} is out of range for an axis of length {len}"));
        }
        idx.push(j as usize);
    }
    let picked = data.select(Axis(ax), &idx);
    let mut shape: Vec<usize> = data.shape()[..ax].to_vec();
    shape.extend_from_slice(indices.shape());
    shape.extend_from_slice(&data.shape()[ax + 1..]);
    Ok(picked
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(&shape))
        .expect("same element count"))
}

/// Numpy-style broadcast of two shapes.
pub(crate) fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let x = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
        let y = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
        out[i] = match (x, y) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// `f(a, c)` elementwise over the broadcast of the two shapes (checked by the caller).
pub(crate) fn broadcast_with(a: &ArrayD<f64>, c: &ArrayD<f64>, f: impl Fn(f64, f64) -> f64) -> ArrayD<f64> {
    let shape = broadcast_shape(a.shape(), c.shape()).expect("shapes checked to broadcast");
    let (a, c) = (
        a.broadcast(IxDyn(&shape)).expect("broadcasts"),
        c.broadcast(IxDyn(&shape)).expect("broadcasts"),
    );
    ndarray::Zip::from(&a).and(&c).map_collect(|&x, &y| f(x, y))
}

/// Resolves a `Reshape` of a constant (0 copies, −1 infers).
pub(crate) fn reshape_const(
    shape: &[usize],
    target: &[i64],
    allowzero: bool,
) -> std::result::Result<Vec<usize>, String> {
    let count: usize = shape.iter().product();
    let mut out: Vec<Option<usize>> = Vec::with_capacity(target.len());
    for (i, &d) in target.iter().enumerate() {
        out.push(match d {
            0 if !allowzero => Some(*shape.get(i).ok_or("0 copies a missing dimension")?),
            -1 => None,
            d if d >= 0 => Some(d as usize),
            d => return Err(format!("invalid entry {d} in shape {target:?}")),
        });
    }
    let known: usize = out.iter().flatten().product();
    match out.iter().filter(|d| d.is_none()).count() {
        0 if known == count => Ok(out.into_iter().flatten().collect()),
        1 if known > 0 && count.is_multiple_of(known) => {
            Ok(out.into_iter().map(|d| d.unwrap_or(count / known)).collect())
        }
        _ => Err(format!("cannot reshape {shape:?} to {target:?}")),
    }
}

/// The tensor of a `Constant` node.
pub(crate) fn constant_node(node: &crate::proto::NodeProto) -> std::result::Result<TensorProto, String> {
    if let Some(t) = node
        .attribute
        .iter()
        .find(|a| a.name == "value")
        .and_then(|a| a.t.as_ref())
    {
        return Ok(t.clone());
    }
    let t = if let Some(a) = node.attribute.iter().find(|a| a.name == "value_float") {
        Tensor {
            data: ArrayD::from_elem(IxDyn(&[]), a.f as f64),
            int: false,
        }
    } else if let Some(a) = node.attribute.iter().find(|a| a.name == "value_floats") {
        Tensor {
            data: ArrayD::from_shape_vec(IxDyn(&[a.floats.len()]), a.floats.iter().map(|&v| v as f64).collect())
                .expect("1-D"),
            int: false,
        }
    } else if let Some(a) = node.attribute.iter().find(|a| a.name == "value_int") {
        Tensor::scalar_int(a.i)
    } else if let Some(a) = node.attribute.iter().find(|a| a.name == "value_ints") {
        Tensor::vec_int(&a.ints)
    } else {
        return Err("only tensor, float and int constants are supported".into());
    };
    Ok(t.to_proto(""))
}
