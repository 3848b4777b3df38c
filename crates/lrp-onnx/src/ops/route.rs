//! Operators that route parts of values: `Concat`, `Slice`, `Split`, `Gather`, `Pad` — on constants (folded),
//! on shapes that hold the batch size, and on values of the network (slices, concatenations and padding layers).

use lrp_core::Layer;
use ndarray::Axis;

use crate::context::{Handler, NodeCtx};
use crate::error::Result;
use crate::fold::{Tensor, axis as norm_axis, gather, slice_indices};
use crate::tensor::to_i64;
use crate::value::{Batch, Computed, Dim, Val};

use super::shape::{reshape_layer, set_dims, sym_err};

pub(crate) fn register(reg: &mut Vec<(&'static str, Handler)>) {
    reg.extend([
        ("Concat", concat as Handler),
        ("Slice", slice),
        ("Split", split),
        ("Gather", gather_op),
        ("Pad", pad),
        ("GatherND", gather_nd),
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
    let x = c.node_at(computed[0]).expect("computed");
    if computed
        .iter()
        .any(|&i| c.node_at(i).expect("computed").batch != x.batch)
    {
        return Err(c.err("concatenates values with their batch axes in different places"));
    }
    let a = norm_axis(c.int("axis", 0), x.rank()).map_err(|e| c.err(e))?;
    let fa = x
        .feature_axis(a)
        .ok_or_else(|| c.err("concatenates along the batch axis"))?;
    // The computed parts joined, then each constant part (a class token) inserted where it stands.
    let ids: Vec<usize> = computed.iter().map(|&i| c.node_at(i).expect("computed").id).collect();
    let mut cur = match ids[..] {
        [id] => id,
        _ => c.emit(Layer::concat(fa), ids)?,
    };
    let mut at = 0;
    for i in 0..c.node.input.len() {
        if let Some(v) = c.node_at(i) {
            at += v.shape[fa];
            continue;
        }
        let value = per_sample_constant(c, i, &x)?;
        let len = value.shape().get(fa).copied().unwrap_or(0);
        cur = c.emit(Layer::Insert(lrp_core::Insert { axis: fa, at, value }), vec![cur])?;
        at += len;
    }
    let shape = c.shape_of(cur);
    c.set_node(cur, shape, x.batch)
}

/// Input `i` of a node that also reads `x`, as one sample's constant: a constant (whose axis at the batch's place
/// must then be 1, and is dropped) or a constant repeated for every sample.
fn per_sample_constant(c: &NodeCtx, i: usize, x: &Computed) -> Result<ndarray::ArrayD<f32>> {
    let name = c.input_name(i).unwrap_or("");
    match c.ins.get(i) {
        Some(Some(Val::Tiled { batch })) if x.batch == Batch::At(*batch) => {
            Ok(crate::tensor::to_f32(&c.st.consts[name])?)
        }
        Some(Some(Val::Const)) => {
            let t = crate::tensor::to_f32(&c.st.consts[name])?;
            match x.batch {
                Batch::At(b) if t.ndim() == x.rank() && t.shape()[b] == 1 => Ok(t.index_axis_move(Axis(b), 0)),
                Batch::Merged if t.ndim() == x.rank() => Ok(t),
                _ => Err(c.err(format!(
                    "constant '{name}' of shape {:?} does not stand for one sample of {:?}",
                    t.shape(),
                    x.full_dims()
                ))),
            }
        }
        _ => Err(c.err(format!(
            "input '{name}' is neither computed nor a constant the same for every sample"
        ))),
    }
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
            // The whole of a batch fixed to 1.
            if c.st.batch_fixed_to_one && slice_indices(1, starts[k], ends[k], steps[k]).is_ok_and(|i| i == [0]) {
                continue;
            }
            return Err(c.err("slices the batch axis"));
        };
        if steps[k] != 1 {
            // Every k-th element (Swin's patch merging `x[:, 0::2]`), or a reversed range: the picked positions.
            let idx = slice_indices(shape[fa], starts[k], ends[k], steps[k]).map_err(|e| c.err(e))?;
            if idx.is_empty() {
                return Err(c.err("selects nothing"));
            }
            cur = c.emit(Layer::Take(lrp_core::Take { axis: fa, indices: idx }), vec![cur])?;
            shape = c.shape_of(cur);
            continue;
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
    c.set_node(cur, shape, x.batch)
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
            // Before opset 18 the parts must be equal (onnxruntime refuses an axis that does not divide).
            if c.st.opset < 18 && !len.is_multiple_of(parts.max(1)) {
                return Err(c.err(format!(
                    "splits an axis of length {len} into {parts} equal parts without sizes (opset {} needs the \
                     length to divide; give the sizes)",
                    c.st.opset
                )));
            }
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
            c.set(k, x.with(id, shape, x.batch))?;
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
    let idx_shape: Vec<usize> = idx_t.dims.iter().map(|&d| d as usize).collect();
    let idx = to_i64(idx_t)?;
    let a = norm_axis(c.int("axis", 0), x.rank()).map_err(|e| c.err(e))?;
    let fa = x.feature_axis(a).ok_or_else(|| c.err("gathers along the batch axis"))?;
    let len = x.shape[fa] as i64;
    let picked: Vec<usize> = idx
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + len } else { i };
            usize::try_from(j)
                .ok()
                .filter(|&j| j < x.shape[fa])
                .ok_or_else(|| c.err(format!("index {i} is out of range for an axis of length {len}")))
        })
        .collect::<Result<_>>()?;
    // The output: the indices' shape in place of the axis.
    let mut shape = x.shape[..fa].to_vec();
    shape.extend_from_slice(&idx_shape);
    shape.extend_from_slice(&x.shape[fa + 1..]);
    let batch = match x.batch {
        Batch::At(b) if a < b => Batch::At(b - 1 + idx_shape.len()),
        other => other,
    };
    if shape.is_empty() {
        return Err(c.err("would leave no axis besides the batch"));
    }
    let taken = if let [i] = picked[..] {
        // One step or token: a slice (what an LSTM's last step or a class token reads).
        c.emit(Layer::slice(fa, i, i + 1), vec![x.id])?
    } else {
        c.emit(
            Layer::Take(lrp_core::Take {
                axis: fa,
                indices: picked,
            }),
            vec![x.id],
        )?
    };
    let id = if c.shape_of(taken) == shape {
        taken
    } else {
        c.emit(reshape_layer(&shape), vec![taken])?
    };
    c.set_node(id, shape, batch)
}

/// `GatherND` of a value of the network with constant indices `[…, k]` (batch_dims 0): each index tuple picks an
/// element (or block) along the first `k` axes, which must be per-sample axes (an upsampling adaptive average pool
/// exports as one).
fn gather_nd(c: &mut NodeCtx) -> Result<()> {
    let x = super::linear::data_input_any(c, true)?;
    if c.int("batch_dims", 0) != 0 {
        return Err(c.err("batch_dims other than 0 are not supported"));
    }
    let t = c
        .const_input(1)
        .ok_or_else(|| c.err("gathers with computed indices, which is not supported"))?;
    let idx_shape: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    let idx = to_i64(t)?;
    let Some((&k, lead)) = idx_shape.split_last() else {
        return Err(c.err("has indices without an axis"));
    };
    if k == 0 || (0..k).any(|a| x.feature_axis(a) != Some(a)) || k > x.shape.len() {
        return Err(c.err(format!(
            "indexes {k} leading axes of {:?}, which include the batch",
            x.full_dims()
        )));
    }
    // The `k` leading axes as one, then the picked positions along it.
    let dims = &x.shape[..k];
    let mut flat = Vec::with_capacity(idx.len() / k);
    for tuple in idx.chunks_exact(k) {
        let mut f = 0usize;
        for (&i, &d) in tuple.iter().zip(dims) {
            let j = if i < 0 { i + d as i64 } else { i };
            if j < 0 || j >= d as i64 {
                return Err(c.err(format!("index {tuple:?} is out of range for {dims:?}")));
            }
            f = f * d + j as usize;
        }
        flat.push(f);
    }
    let mut merged = vec![dims.iter().product::<usize>()];
    merged.extend_from_slice(&x.shape[k..]);
    let joined = c.emit(reshape_layer(&merged), vec![x.id])?;
    let taken = c.emit(Layer::Take(lrp_core::Take { axis: 0, indices: flat }), vec![joined])?;
    let mut shape = lead.to_vec();
    shape.extend_from_slice(&x.shape[k..]);
    let id = c.emit(reshape_layer(&shape), vec![taken])?;
    let batch = match x.batch {
        Batch::At(b) => Batch::At(b - k + lead.len()),
        Batch::Merged => Batch::Merged,
    };
    c.set_node(id, shape, batch)
}

fn pad(c: &mut NodeCtx) -> Result<()> {
    let x = c.x()?;
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
        match x.feature_axis(a) {
            Some(f) => per[f] = [p0 as usize, p1 as usize],
            None if p0 != 0 || p1 != 0 => return Err(c.err("pads the batch axis")),
            None => {}
        }
    }
    if per.iter().all(|p| *p == [0, 0]) {
        // Nothing to pad (Swin pads windows only where the map does not divide).
        return c.set(0, x.with(x.id, x.shape.clone(), x.batch));
    }
    c.push(Layer::pad(per), &x)
}
