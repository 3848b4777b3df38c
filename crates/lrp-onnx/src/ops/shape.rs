//! Operators that make constants and shapes, and that reshape or reorder values: on constants (folded), on shapes
//! that hold the batch size (`Shape` arithmetic), and on values of the network (reshapes and permutations).

use lrp_core::Layer;
use ndarray::{ArrayD, Axis, IxDyn};

use crate::context::{Handler, NodeCtx};
use crate::error::Result;
use crate::fold::{MAX_FOLDED, Tensor, axis as norm_axis, reshape_const};
use crate::value::{Batch, Computed, Dim, Val, dims_text};

pub(crate) fn register(reg: &mut Vec<(&'static str, Handler)>) {
    reg.extend([
        ("Identity", identity as Handler),
        ("Dropout", identity),
        ("Cast", cast),
        ("Shape", shape),
        ("Reshape", reshape),
        ("Flatten", flatten),
        ("Transpose", transpose),
        ("Squeeze", squeeze),
        ("Unsqueeze", unsqueeze),
        ("ConstantOfShape", constant_of_shape),
        ("Range", range),
        ("Constant", constant),
    ]);
}

/// A shape computed at import: a constant when the batch size does not appear in it.
pub(super) fn set_dims(c: &mut NodeCtx, dims: Vec<Dim>, scalar: bool) -> Result<()> {
    if let Some(v) = dims
        .iter()
        .map(|d| match d {
            Dim::Known(v) => Some(*v),
            Dim::Batch(_) => None,
        })
        .collect::<Option<Vec<i64>>>()
    {
        let t = if scalar {
            Tensor::scalar_int(v[0])
        } else {
            Tensor::vec_int(&v)
        };
        return c.set_const(t);
    }
    c.set(0, Val::Sym { dims, scalar })
}

/// The error for a shape operation this importer does not carry the batch size through.
pub(super) fn sym_err(c: &NodeCtx) -> crate::error::OnnxError {
    c.err(format!(
        "{} on a shape that holds the batch size is not supported (only Gather, Slice, Concat, Unsqueeze, Squeeze, \
         Cast and ConstantOfShape are)",
        c.op()
    ))
}

/// Input 0, the one a routing operator passes on unchanged.
fn pass_through(c: &mut NodeCtx) -> Result<()> {
    let v = c.ins[0].clone().ok_or_else(|| c.err("has no input"))?;
    c.set(0, v)
}

fn identity(c: &mut NodeCtx) -> Result<()> {
    if c.node_at(0).is_none() && c.sym_at(0).is_none() {
        return c.set_const(c.tensor_req(0).map_err(|e| c.err(e))?);
    }
    pass_through(c)
}

fn cast(c: &mut NodeCtx) -> Result<()> {
    let to = c.int("to", 1);
    if c.node_at(0).is_some() {
        if !matches!(to, 1 | 11) {
            return Err(c.err("casts a computed value to a non-float type"));
        }
        return pass_through(c);
    }
    if c.sym_at(0).is_some() {
        return pass_through(c);
    }
    let mut t = c.tensor_req(0).map_err(|e| c.err(e))?;
    let int = !matches!(to, 1 | 10 | 11 | 16);
    if int && !t.int {
        t.data.mapv_inplace(f64::trunc);
    }
    t.int = int;
    c.set_const(t)
}

/// `start`/`end` of a `Shape` node, clamped to the rank `r`.
fn shape_range(c: &NodeCtx, r: usize) -> (usize, usize) {
    let r = r as i64;
    let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let (s, e) = (clampi(c.int("start", 0)), clampi(c.attr("end").map_or(r, |a| a.i)));
    (s, e.max(s))
}

fn shape(c: &mut NodeCtx) -> Result<()> {
    if let Some(x) = c.node_at(0) {
        let full = x.full_dims();
        let (s, e) = shape_range(c, full.len());
        // The batch as a symbol where it stands apart; a slice without it (or a merged batch's shape) is constant.
        return set_dims(c, full[s..e].to_vec(), false);
    }
    if let Some((d, _)) = c.sym_at(0) {
        // The shape of a shape vector: its length.
        return c.set_const(Tensor::vec_int(&[d.len() as i64]));
    }
    let t = c.tensor_req(0).map_err(|e| c.err(e))?;
    let d: Vec<i64> = t.data.shape().iter().map(|&v| v as i64).collect();
    let (s, e) = shape_range(c, d.len());
    c.set_const(Tensor::vec_int(&d[s..e]))
}

/// The target shape of a `Reshape` (input 1), as a constant or a shape computed from the input.
fn reshape_target(c: &NodeCtx) -> Result<Vec<Dim>> {
    match c.ins.get(1) {
        Some(Some(Val::Sym { dims, .. })) => Ok(dims.clone()),
        Some(Some(Val::Const)) => Ok(c.ints_input(1, "target shape")?.into_iter().map(Dim::Known).collect()),
        _ => Err(c.err("needs the target shape as a constant or a shape computed from the input")),
    }
}

fn reshape(c: &mut NodeCtx) -> Result<()> {
    let allowzero = c.int("allowzero", 0) != 0;
    if let Some((d, scalar)) = c.sym_at(0) {
        // A shape vector reshaped (to `[-1]`, usually): the same dimensions.
        let target = c.tensor_req(1).map_err(|e| c.err(e))?.ints();
        let n = d.len() as i64;
        if !(target == [-1] || target == [n] || scalar && target.is_empty()) {
            return Err(c.err(format!("reshapes a shape vector of {n} entries to {target:?}")));
        }
        return set_dims(c, d, target.is_empty());
    }
    let Some(x) = c.node_at(0) else {
        let t = c.tensor_req(0).map_err(|e| c.err(e))?;
        let target = c.tensor_req(1).map_err(|e| c.err(e))?.ints();
        let shape = reshape_const(t.data.shape(), &target, allowzero).map_err(|e| c.err(e))?;
        return c.set_const(Tensor {
            data: t
                .data
                .into_shape_with_order(IxDyn(&shape))
                .map_err(|e| c.err(e.to_string()))?,
            int: t.int,
        });
    };
    let target = reshape_target(c)?;
    let (shape, batch) = reshape_node(&x, &target, allowzero, c.st.batch_fixed_to_one).map_err(|e| c.err(e))?;
    reshape_to(c, &x, shape, batch)
}

/// Output 0 is `x` with the per-sample `shape` and the batch at `batch` (a layer only when the shape changes).
fn reshape_to(c: &mut NodeCtx, x: &Computed, shape: Vec<usize>, batch: Batch) -> Result<()> {
    if shape == x.shape {
        return c.set(0, x.with(x.id, shape, batch));
    }
    let id = c.emit(reshape_layer(&shape), vec![x.id])?;
    c.set_node(id, shape, batch)
}

/// The layer that gives a value the per-sample `shape`: a flatten for one axis, else a reshape.
pub(crate) fn reshape_layer(shape: &[usize]) -> Layer {
    if shape.len() == 1 {
        Layer::Flatten(lrp_core::Flatten)
    } else {
        Layer::reshape(shape.to_vec())
    }
}

/// A Reshape of a network value: `target` in ONNX's layout. Returns the per-sample shape and where the batch
/// stands. The batch's position: an explicit batch symbol; else a 0 that copies the batch; else (batch fixed to 1)
/// a 1, or a −1, where the elements before it are those before the batch. An exporter that fixed the batch to 1 may
/// also fold it into another axis (`[B·nW, …]`) or flatten it away (`[-1]`): the batch is then merged.
fn reshape_node(
    x: &Computed,
    target: &[Dim],
    allowzero: bool,
    batch_fixed_to_one: bool,
) -> std::result::Result<(Vec<usize>, Batch), String> {
    if target.iter().filter(|d| **d == Dim::Known(-1)).count() > 1 {
        return Err(format!(
            "shape {} has more than one −1 (ONNX allows one dimension to be inferred)",
            dims_text(target)
        ));
    }
    let count: usize = x.shape.iter().product();
    let src = x.full_dims();
    let mut t: Vec<Dim> = Vec::with_capacity(target.len());
    for (i, &d) in target.iter().enumerate() {
        t.push(match d {
            Dim::Known(0) if !allowzero => *src.get(i).ok_or("0 copies a dimension the input does not have")?,
            other => other,
        });
    }
    // The batch times k (a dynamic batch folded into windows `[N·k, …]`, or into attention heads
    // `[L, N·h, d]`): the ONNX graph at batch 1 is one sample's computation, and each sample of a batch goes
    // through it on its own, so the value is merged with k in place of N·k.
    let folded = t.iter().any(|d| matches!(d, Dim::Batch(k) if *k > 1));
    for d in t.iter_mut() {
        if let Dim::Batch(k) = *d
            && k > 1
        {
            *d = Dim::Known(k);
        }
    }
    // The dimensions other than position `skip` (all of them with `None`) resolved against the element count.
    let resolve = |skip: Option<usize>| -> Option<Vec<usize>> {
        let mut rest: Vec<Option<usize>> = Vec::new();
        for (i, d) in t.iter().enumerate() {
            if Some(i) == skip {
                continue;
            }
            rest.push(match d {
                Dim::Known(-1) => None,
                Dim::Known(v) if *v > 0 => Some(*v as usize),
                _ => return None,
            });
        }
        let known = rest.iter().flatten().try_fold(1usize, |a, &d| a.checked_mul(d))?;
        match rest.iter().filter(|d| d.is_none()).count() {
            0 if known == count => Some(rest.into_iter().flatten().collect()),
            1 if known > 0 && count.is_multiple_of(known) => {
                Some(rest.into_iter().map(|d| d.unwrap_or(count / known)).collect())
            }
            _ => None,
        }
    };
    // Whether the elements before position `p` are those before the batch (always, for a merged batch).
    let prefix_ok = |p: usize| match x.batch {
        Batch::Merged => true,
        Batch::At(b) => {
            let before: usize = x.shape[..b].iter().product();
            t[..p]
                .iter()
                .try_fold(1usize, |acc, d| match d {
                    Dim::Known(v) if *v > 0 => acc.checked_mul(*v as usize),
                    _ => None,
                })
                .is_some_and(|v| v == before)
        }
    };
    let candidate = |p: usize, want: Dim| t[p] == want && prefix_ok(p) && resolve(Some(p)).is_some();
    if folded {
        let dims = resolve(None)
            .ok_or_else(|| format!("shape {} does not fit {count} values per sample", dims_text(target)))?;
        return Ok((dims, Batch::Merged));
    }
    let pos = (0..t.len())
        .find(|&p| t[p] == Dim::Batch(1))
        .or_else(|| {
            batch_fixed_to_one
                .then(|| (0..t.len()).find(|&p| candidate(p, Dim::Known(1))))
                .flatten()
        })
        .or_else(|| (0..t.len()).find(|&p| candidate(p, Dim::Known(-1))));
    // A −1 where the batch starts that stands for more than the batch: `reshape(-1, wh, ww, C)` folding the batch
    // into windows (timm's Swin), the batch times k as above.
    let folds_at_minus_one = t.iter().enumerate().any(|(p, d)| *d == Dim::Known(-1) && prefix_ok(p));
    let Some(pos) = pos else {
        if (batch_fixed_to_one || x.batch == Batch::Merged || folds_at_minus_one)
            && let Some(dims) = resolve(None)
        {
            return Ok((dims, Batch::Merged));
        }
        return Err(format!(
            "shape {} does not keep the batch axis apart ({count} values per sample, input [N, {:?}]); use 0 or -1 \
             for the batch, or export with a dynamic batch",
            dims_text(target),
            x.shape
        ));
    };
    if !prefix_ok(pos) {
        return Err(format!(
            "shape {} would mix the batch axis with others",
            dims_text(target)
        ));
    }
    let dims = resolve(Some(pos)).ok_or_else(|| {
        format!(
            "shape {} does not fit {count} values per sample (input [N, {:?}])",
            dims_text(target),
            x.shape
        )
    })?;
    Ok((dims, Batch::At(pos)))
}

fn flatten(c: &mut NodeCtx) -> Result<()> {
    let x = c.x()?;
    let rank = x.rank() as i64;
    let axis = c.int("axis", 1);
    let axis_n = if axis < 0 { axis + rank } else { axis };
    if x.batch == Batch::Merged {
        // One sample: `[d0·…·d(axis−1), d(axis)·…]`.
        if !(0..=rank).contains(&axis_n) {
            return Err(c.err(format!("axis {axis} is out of range for rank {rank}")));
        }
        let a = axis_n as usize;
        let shape = vec![x.shape[..a].iter().product(), x.shape[a..].iter().product()];
        return reshape_to(c, &x, shape, Batch::Merged);
    }
    c.need_batch_first(&x, "Flatten")?;
    if axis_n != 1 {
        return Err(c.err(format!(
            "axis {axis} would merge or split the batch axis; only axis 1 is supported"
        )));
    }
    if x.shape.len() == 1 {
        return pass_through(c);
    }
    c.push(Layer::Flatten(lrp_core::Flatten), &x)
}

/// The `perm` attribute for a value of rank `rank` (reversed axes by default), checked to be a permutation.
fn perm(c: &NodeCtx, rank: usize) -> Result<Vec<usize>> {
    let perm: Vec<usize> = match c.attr("perm") {
        Some(p) => p
            .ints
            .iter()
            .map(|&v| norm_axis(v, rank))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| c.err(e))?,
        None => (0..rank).rev().collect(),
    };
    let mut sorted = perm.clone();
    sorted.sort_unstable();
    if sorted != (0..rank).collect::<Vec<_>>() {
        return Err(c.err(format!("perm {perm:?} is not a permutation of {rank} axes")));
    }
    Ok(perm)
}

fn transpose(c: &mut NodeCtx) -> Result<()> {
    let Some(x) = c.node_at(0) else {
        let t = c.tensor_req(0).map_err(|e| c.err(e))?;
        let perm = perm(c, t.data.ndim())?;
        return c.set_const(Tensor {
            data: t.data.permuted_axes(perm).as_standard_layout().into_owned(),
            int: t.int,
        });
    };
    let perm = perm(c, x.rank())?;
    let batch = match x.batch {
        Batch::At(b) => Batch::At(perm.iter().position(|&a| a == b).expect("a permutation")),
        Batch::Merged => Batch::Merged,
    };
    // Per-sample axes in the order the output has them.
    let order: Vec<usize> = perm.iter().filter_map(|&a| x.feature_axis(a)).collect();
    if order.windows(2).all(|w| w[0] < w[1]) {
        return c.set(0, x.with(x.id, x.shape.clone(), batch));
    }
    let id = c.emit(Layer::transpose(order), vec![x.id])?;
    let shape = c.shape_of(id);
    c.set_node(id, shape, batch)
}

/// The axes a `Squeeze` drops (input 1 from opset 13, else the attribute; all unit axes when none are given).
fn squeeze_axes(c: &NodeCtx) -> Result<Option<Vec<i64>>> {
    if c.st.opset >= 13 {
        return match c.input_name(1) {
            Some(_) => Ok(Some(c.ints_input(1, "axes")?)),
            None => Ok(None),
        };
    }
    Ok(c.ints("axes"))
}

fn squeeze(c: &mut NodeCtx) -> Result<()> {
    if let Some((d, _)) = c.sym_at(0) {
        if d.len() != 1 {
            return Err(c.err("Squeeze of a shape with more than one entry"));
        }
        return set_dims(c, d, true);
    }
    let axes = squeeze_axes(c)?;
    let Some(x) = c.node_at(0) else {
        let t = c.tensor_req(0).map_err(|e| c.err(e))?;
        let rank = t.data.ndim();
        let mut ax: Vec<usize> = match axes {
            Some(a) => a
                .iter()
                .map(|&a| norm_axis(a, rank))
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| c.err(e))?,
            None => (0..rank).filter(|&a| t.data.shape()[a] == 1).collect(),
        };
        ax.sort_unstable();
        let mut data = t.data;
        for a in ax.into_iter().rev() {
            if data.shape()[a] != 1 {
                return Err(c.err(format!("Squeeze of axis {a} of size {}", data.shape()[a])));
            }
            data = data.index_axis_move(Axis(a), 0);
        }
        return c.set_const(Tensor { data, int: t.int });
    };
    let rank = x.rank() as i64;
    let drop: Vec<usize> = match axes.filter(|a| !a.is_empty()) {
        // Every unit feature axis.
        None => (0..x.shape.len()).filter(|&f| x.shape[f] == 1).collect(),
        Some(axes) => {
            let mut v = Vec::new();
            for &a in &axes {
                let a = if a < 0 { a + rank } else { a };
                if a < 0 || a >= rank {
                    return Err(c.err(format!("axis {a} is out of range for rank {rank}")));
                }
                let f = x
                    .feature_axis(a as usize)
                    .ok_or_else(|| c.err("squeezes the batch axis"))?;
                if x.shape[f] != 1 {
                    return Err(c.err(format!("axis {a} has size {}, not 1", x.shape[f])));
                }
                v.push(f);
            }
            v
        }
    };
    let kept: Vec<usize> = (0..x.shape.len())
        .filter(|f| !drop.contains(f))
        .map(|f| x.shape[f])
        .collect();
    if kept.is_empty() {
        return Err(c.err("would leave no feature axis"));
    }
    let batch = match x.batch {
        Batch::At(b) => Batch::At(b - drop.iter().filter(|&&f| f < b).count()),
        Batch::Merged => Batch::Merged,
    };
    reshape_to(c, &x, kept, batch)
}

fn unsqueeze(c: &mut NodeCtx) -> Result<()> {
    let axes = c.axes(1).map_err(|e| c.err(e))?;
    if let Some((d, scalar)) = c.sym_at(0) {
        let axes = axes.unwrap_or_default();
        if !(scalar && axes == [0] || !scalar && axes.is_empty()) {
            return Err(c.err(format!("Unsqueeze of a shape with axes {axes:?} is not supported")));
        }
        return set_dims(c, d, false);
    }
    let axes = axes.ok_or_else(|| c.err("has no axes"))?;
    let Some(x) = c.node_at(0) else {
        let t = c.tensor_req(0).map_err(|e| c.err(e))?;
        let rank = t.data.ndim() + axes.len();
        let mut ax: Vec<usize> = axes
            .iter()
            .map(|&a| norm_axis(a, rank))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| c.err(e))?;
        ax.sort_unstable();
        let mut data = t.data;
        for a in ax {
            data = data.insert_axis(Axis(a));
        }
        return c.set_const(Tensor { data, int: t.int });
    };
    let rank = x.rank() + axes.len();
    let mut ax: Vec<usize> = axes
        .iter()
        .map(|&a| norm_axis(a, rank))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| c.err(e))?;
    ax.sort_unstable();
    // The ONNX layout with `None` at the batch, the unit axes inserted in order.
    let mut full: Vec<Option<usize>> = x.shape.iter().map(|&d| Some(d)).collect();
    if let Some(b) = x.batch_axis() {
        full.insert(b, None);
    }
    for &a in &ax {
        if a > full.len() {
            return Err(c.err(format!("axis {a} is out of range")));
        }
        full.insert(a, Some(1));
    }
    let batch = match x.batch {
        Batch::At(_) => Batch::At(full.iter().position(Option::is_none).expect("batch")),
        Batch::Merged => Batch::Merged,
    };
    let shape: Vec<usize> = full.into_iter().flatten().collect();
    let id = c.emit(Layer::reshape(shape.clone()), vec![x.id])?;
    c.set_node(id, shape, batch)
}

fn constant_of_shape(c: &mut NodeCtx) -> Result<()> {
    let value = match c.attr("value").and_then(|a| a.t.as_ref()) {
        Some(t) => Tensor::from_proto(t)?,
        None => Tensor {
            data: ArrayD::zeros(IxDyn(&[1])),
            int: false,
        },
    };
    let v = value.data.iter().next().copied().unwrap_or(0.0);
    if c.sym_at(0).is_some() {
        if v != 0.0 {
            return Err(c.err("ConstantOfShape with a non-zero value and a batch-dependent shape"));
        }
        return c.set(0, Val::Zeros);
    }
    let shape = c.tensor_req(0).map_err(|e| c.err(e))?.ints();
    let mut count = 1usize;
    for &d in &shape {
        if d < 0 {
            return Err(c.err(format!("ConstantOfShape of a negative shape {shape:?}")));
        }
        count = count
            .checked_mul(d as usize)
            .filter(|&n| n <= MAX_FOLDED)
            .ok_or_else(|| c.err(format!("ConstantOfShape of shape {shape:?} is too large")))?;
    }
    let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    c.set_const(Tensor {
        data: ArrayD::from_elem(IxDyn(&dims), v),
        int: value.int,
    })
}

fn range(c: &mut NodeCtx) -> Result<()> {
    if c.any_sym() {
        return Err(sym_err(c));
    }
    let first = |t: &Tensor| t.data.iter().next().copied().unwrap_or(0.0);
    let (s, l, d) = (
        c.tensor_req(0).map_err(|e| c.err(e))?,
        c.tensor_req(1).map_err(|e| c.err(e))?,
        c.tensor_req(2).map_err(|e| c.err(e))?,
    );
    let int = s.int;
    let (s, l, d) = (first(&s), first(&l), first(&d));
    if d == 0.0 || !d.is_finite() {
        return Err(c.err("Range with delta 0"));
    }
    let n = ((l - s) / d).ceil().max(0.0);
    if n > MAX_FOLDED as f64 {
        return Err(c.err("Range is too long"));
    }
    let v: Vec<f64> = (0..n as usize).map(|i| s + d * i as f64).collect();
    c.set_const(Tensor {
        data: ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).expect("1-D"),
        int,
    })
}

fn constant(c: &mut NodeCtx) -> Result<()> {
    let t = crate::fold::constant_node(c.node).map_err(|e| c.err(e))?;
    for out in c.node.output.iter().filter(|o| !o.is_empty()) {
        let mut t = t.clone();
        t.name = out.clone();
        c.st.consts.insert(out.clone(), t);
        c.st.vals.insert(out.clone(), Val::Const);
    }
    Ok(())
}
