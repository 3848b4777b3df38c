//! Operators that route parts of values: `Concat`, `Slice`, `Split`, `Gather`, `Pad` — on constants (folded),
//! on shapes that hold the batch size, and on values of the network (slices, concatenations and padding layers).

use lrp_core::Layer;
use ndarray::Axis;

use crate::context::{Handler, NodeCtx};
use crate::error::Result;
use crate::fold::{Tensor, axis as norm_axis, gather, slice_indices};
use crate::tensor::to_i64;
use crate::value::Dim;

use super::shape::{reshape_layer, set_dims, sym_err};

pub(crate) fn register(reg: &mut Vec<(&'static str, Handler)>) {
    reg.extend([
        ("Concat", concat as Handler),
        ("Slice", slice),
        ("Split", split),
        ("Gather", gather_op),
        ("Pad", pad),
    ]);
}

fn concat(c: &mut NodeCtx) -> Result<()> {
    let computed = c.computed();
    if computed.is_empty() {
        if c.any_sym() {
            let mut all = Vec::new();
            for i in 0..c.node.input.len() {
                match c.sym_at(i) {
                    Some((d, _)) => all.extend(d),
                    None => all.extend(
                        c.tensor_req(i)
                            .map_err(|e| c.err(e))?
                            .ints()
                            .into_iter()
                            .map(Dim::Known),
                    ),
                }
            }
            return set_dims(c, all, false);
        }
        let parts: Vec<Tensor> = (0..c.node.input.len())
            .map(|i| c.tensor_req(i))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| c.err(e))?;
        let a = norm_axis(c.int("axis", 0), parts[0].data.ndim()).map_err(|e| c.err(e))?;
        let views: Vec<_> = parts.iter().map(|p| p.data.view()).collect();
        let data = ndarray::concatenate(Axis(a), &views).map_err(|e| c.err(format!("Concat: {e}")))?;
        return c.set_const(Tensor {
            data,
            int: parts[0].int,
        });
    }
    if computed.len() != c.node.input.len() {
        return Err(c.err("concatenates a constant with computed values, which is not supported"));
    }
    let x = c.x()?;
    let mut ids = Vec::new();
    for &i in &computed {
        let v = c.node_at(i).expect("computed");
        if v.batch_axis != x.batch_axis {
            return Err(c.err("concatenates values with their batch axes in different places"));
        }
        ids.push(v.id);
    }
    c.need_batch_first(&x, "Concat")?;
    let a = norm_axis(c.int("axis", 0), x.rank()).map_err(|e| c.err(e))?;
    if a == 0 {
        return Err(c.err("concatenates along the batch axis"));
    }
    let id = c.emit(Layer::concat(a - 1), ids)?;
    let shape = c.shape_of(id);
    c.set_node(id, shape, 0)
}

/// `starts`, `ends`, `axes` and `steps` of a `Slice` on a value of rank `rank`.
type SliceSpec = (Vec<i64>, Vec<i64>, Vec<i64>, Vec<i64>);

fn slice_spec(c: &NodeCtx) -> Result<SliceSpec> {
    let get = |i: usize| -> Result<Option<Vec<i64>>> {
        match c.input_name(i) {
            None => Ok(None),
            Some(n) => match c.const_input(i) {
                Some(t) => to_i64(t).map(Some),
                None => Err(c.err(format!("'{n}' must be a constant"))),
            },
        }
    };
    let starts = get(1)?.ok_or_else(|| c.err("has no starts"))?;
    let ends = get(2)?.ok_or_else(|| c.err("has no ends"))?;
    let axes = get(3)?.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = get(4)?.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(c.err("starts, ends, axes and steps differ in length"));
    }
    Ok((starts, ends, axes, steps))
}

fn slice(c: &mut NodeCtx) -> Result<()> {
    if let Some((d, _)) = c.sym_at(0) {
        let start = c
            .tensor(1)
            .map_err(|e| c.err(e))?
            .ok_or_else(|| c.err("Slice needs starts"))?
            .ints();
        let end = c
            .tensor(2)
            .map_err(|e| c.err(e))?
            .ok_or_else(|| c.err("Slice needs ends"))?
            .ints();
        let step = c.tensor(4).map_err(|e| c.err(e))?.map(|t| t.ints()).unwrap_or(vec![1]);
        let (&[s], &[e], &[st]) = (&start[..], &end[..], &step[..]) else {
            return Err(c.err("Slice of a shape must have one start, end and step"));
        };
        let idx = slice_indices(d.len(), s, e, st).map_err(|e| c.err(e))?;
        return set_dims(c, idx.iter().map(|&i| d[i]).collect(), false);
    }
    let (starts, ends, axes, steps) = slice_spec(c)?;
    let Some(x) = c.node_at(0) else {
        let t = c.tensor_req(0).map_err(|e| c.err(e))?;
        let rank = t.data.ndim();
        let mut data = t.data;
        for i in 0..starts.len() {
            let a = norm_axis(axes[i], rank).map_err(|e| c.err(e))?;
            let idx = slice_indices(data.shape()[a], starts[i], ends[i], steps[i]).map_err(|e| c.err(e))?;
            data = data.select(Axis(a), &idx);
        }
        return c.set_const(Tensor { data, int: t.int });
    };
    let mut cur = x.id;
    let mut shape = x.shape.clone();
    for k in 0..starts.len() {
        let a = norm_axis(axes[k], x.rank()).map_err(|e| c.err(e))?;
        let Some(fa) = x.feature_axis(a) else {
            let idx = slice_indices(usize::MAX >> 2, starts[k], ends[k], steps[k]);
            if steps[k] == 1 && starts[k] == 0 && idx.is_ok() && ends[k] >= i32::MAX as i64 {
                continue;
            }
            return Err(c.err("slices the batch axis"));
        };
        if steps[k] != 1 {
            return Err(c.err(format!("step {} is not supported (only 1)", steps[k])));
        }
        let idx = slice_indices(shape[fa], starts[k], ends[k], 1).map_err(|e| c.err(e))?;
        let (Some(&s), Some(&e)) = (idx.first(), idx.last()) else {
            return Err(c.err("selects nothing"));
        };
        if s == 0 && e + 1 == shape[fa] {
            continue;
        }
        cur = c.emit(Layer::slice(fa, s, e + 1), vec![cur])?;
        shape = c.shape_of(cur);
    }
    c.set_node(cur, shape, x.batch_axis)
}

fn split(c: &mut NodeCtx) -> Result<()> {
    let x = c.x()?;
    let a = norm_axis(c.int("axis", 0), x.rank()).map_err(|e| c.err(e))?;
    let fa = x.feature_axis(a).ok_or_else(|| c.err("splits the batch axis"))?;
    let len = x.shape[fa];
    let parts = c.node.output.len();
    // Sizes from the second input (opset 13 on) or the attribute, else equal parts (the last smaller when the
    // length does not divide, as opset 18 says).
    let given: Option<Vec<i64>> = match c.input_name(1) {
        Some(_) => Some(c.ints_input(1, "split sizes")?),
        None => c.ints("split").filter(|v| !v.is_empty()),
    };
    let sizes: Vec<usize> = match given {
        Some(v) => v
            .iter()
            .map(|&v| usize::try_from(v).map_err(|_| c.err(format!("split size {v} is negative"))))
            .collect::<Result<_>>()?,
        None => {
            let each = len.div_ceil(parts.max(1));
            (0..parts).map(|i| each.min(len.saturating_sub(i * each))).collect()
        }
    };
    if sizes.len() != parts || sizes.iter().try_fold(0usize, |a, &s| a.checked_add(s)) != Some(len) {
        return Err(c.err(format!(
            "splits an axis of length {len} into {sizes:?} for {parts} outputs"
        )));
    }
    let mut start = 0;
    for (k, &size) in sizes.iter().enumerate() {
        let end = start + size;
        if c.output_used(k) {
            if size == 0 {
                return Err(c.err(format!("output '{}' is empty and is read", c.node.output[k])));
            }
            let id = c.emit(Layer::slice(fa, start, end), vec![x.id])?;
            let shape = c.shape_of(id);
            c.set(k, x.with(id, shape, x.batch_axis))?;
        }
        start = end;
    }
    Ok(())
}

fn gather_op(c: &mut NodeCtx) -> Result<()> {
    if let Some((d, _)) = c.sym_at(0) {
        let idx = c.tensor(1).map_err(|e| c.err(e))?;
        let idx = idx.ok_or_else(|| c.err("Gather needs constant indices"))?;
        if idx.data.ndim() > 1 || norm_axis(c.int("axis", 0), 1).map_err(|e| c.err(e))? != 0 {
            return Err(c.err("Gather of a shape must pick with 0-D or 1-D indices along axis 0"));
        }
        let all = ndarray::Array1::from(d).into_dyn();
        let picked = gather(&all, 0, &idx.data).map_err(|e| c.err(e))?;
        return set_dims(c, picked.iter().copied().collect(), idx.data.ndim() == 0);
    }
    if c.sym_at(1).is_some() {
        return Err(sym_err(c));
    }
    let Some(x) = c.node_at(0) else {
        if !c.computed().is_empty() {
            return Err(c.err("gathers with computed indices, which is not supported"));
        }
        let t = c.tensor_req(0).map_err(|e| c.err(e))?;
        let idx = c.tensor_req(1).map_err(|e| c.err(e))?;
        let a = norm_axis(c.int("axis", 0), t.data.ndim()).map_err(|e| c.err(e))?;
        return c.set_const(Tensor {
            data: gather(&t.data, a, &idx.data).map_err(|e| c.err(e))?,
            int: t.int,
        });
    };
    let idx_t = c
        .const_input(1)
        .ok_or_else(|| c.err("gathers with computed indices, which is not supported"))?;
    let scalar_index = idx_t.dims.is_empty();
    let idx = to_i64(idx_t)?;
    let a = norm_axis(c.int("axis", 0), x.rank()).map_err(|e| c.err(e))?;
    let fa = x.feature_axis(a).ok_or_else(|| c.err("gathers along the batch axis"))?;
    if !scalar_index || idx.len() != 1 {
        return Err(c.err("only a single scalar index (one step or token) is supported"));
    }
    let len = x.shape[fa] as i64;
    let i = if idx[0] < 0 { idx[0] + len } else { idx[0] };
    if i < 0 || i >= len {
        return Err(c.err(format!("index {} is out of range for an axis of length {len}", idx[0])));
    }
    let sliced = c.emit(Layer::slice(fa, i as usize, i as usize + 1), vec![x.id])?;
    let mut shape = x.shape.clone();
    shape.remove(fa);
    let bax = if a < x.batch_axis {
        x.batch_axis - 1
    } else {
        x.batch_axis
    };
    if shape.is_empty() {
        return Err(c.err("would leave no axis besides the batch"));
    }
    let id = c.emit(reshape_layer(&shape), vec![sliced])?;
    c.set_node(id, shape, bax)
}

fn pad(c: &mut NodeCtx) -> Result<()> {
    let x = c.x()?;
    c.need_batch_first(&x, "Pad")?;
    let mode = c.string("mode").unwrap_or_else(|| "constant".into());
    if mode != "constant" {
        return Err(c.err(format!("mode '{mode}' is not supported (only constant zero padding)")));
    }
    if let Some(n) = c.input_name(2) {
        let v = c
            .const_input(2)
            .ok_or_else(|| c.err(format!("pad value '{n}' must be a constant")))?;
        if crate::tensor::to_f32(v)?.iter().any(|&x| x != 0.0) {
            return Err(c.err("pads with a value other than 0"));
        }
    }
    let rank = x.rank();
    let pads = match c.input_name(1) {
        Some(_) => c.ints_input(1, "pads")?,
        None => c.ints("pads").unwrap_or_default(),
    };
    let axes: Vec<usize> = match c.input_name(3) {
        Some(_) => c
            .ints_input(3, "axes")?
            .iter()
            .map(|&a| norm_axis(a, rank))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| c.err(e))?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(c.err(format!("pads {pads:?} do not match {} axes", axes.len())));
    }
    let mut per = vec![[0usize; 2]; x.shape.len()];
    for (k, &a) in axes.iter().enumerate() {
        let (p0, p1) = (pads[k], pads[k + axes.len()]);
        if p0 < 0 || p1 < 0 {
            return Err(c.err("negative pads (cropping) are not supported"));
        }
        if a == 0 {
            if p0 != 0 || p1 != 0 {
                return Err(c.err("pads the batch axis"));
            }
            continue;
        }
        per[a - 1] = [p0 as usize, p1 as usize];
    }
    c.push(Layer::pad(per), &x)
}
