//! Recurrent layers: ONNX `LSTM` → an `lrp-core` LSTM layer (gate order converted from ONNX's `i, o, f, c` to `i, f, g, o`).

use lrp_core::{Layer, Lstm, LstmDirection};
use ndarray::{Array1, Array2, Array3, Axis, concatenate};

use crate::context::{Handler, NodeCtx};
use crate::error::Result;
use crate::tensor::to_f32;
use crate::value::Batch;

pub(crate) fn register(reg: &mut Vec<(&'static str, Handler)>) {
    reg.push(("LSTM", lstm as Handler));
}

/// ONNX gate blocks `i, o, f, c` reordered to `i, f, g(=c), o`.
const FROM_ONNX: [usize; 4] = [0, 2, 3, 1];

fn reorder(m: ndarray::ArrayView2<f32>, h: usize) -> Array2<f32> {
    let blocks: Vec<_> = FROM_ONNX
        .iter()
        .map(|&k| m.slice_axis(Axis(0), (k * h..(k + 1) * h).into()))
        .collect();
    concatenate(Axis(0), &blocks).expect("blocks of equal width")
}

/// A constant weight tensor of rank `D`.
fn weight<D: ndarray::Dimension>(
    c: &NodeCtx,
    t: &crate::proto::TensorProto,
    what: &str,
) -> Result<ndarray::Array<f32, D>> {
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

/// Refuses the LSTM variants this importer does not support, by name: peepholes, sequence lengths, non-zero
/// initial states, cell clipping, coupled gates, other activations.
fn refuse_variants(ctx: &NodeCtx) -> Result<()> {
    let node = ctx.node;
    // Variants this importer does not support are refused by name.
    if let Some(p) = ctx.node.input.get(7).filter(|n| !n.is_empty()) {
        return Err(ctx.err(format!("peephole weights ('{p}', input P) are not supported")));
    }
    for (i, what) in [(4, "sequence_lens"), (5, "initial_h"), (6, "initial_c")] {
        if let Some(name) = node.input.get(i).filter(|n| !n.is_empty()) {
            // A zero initial state (a constant, or built from the input's shape) is the default anyway.
            if i >= 5 && ctx.zero_input(i) {
                continue;
            }
            return Err(ctx.err(format!(
                "input {what} ('{name}') is not supported; all sequences are full length and start from zero"
            )));
        }
    }
    if ctx.attr("clip").is_some() {
        return Err(ctx.err("attribute clip (cell clipping) is not supported"));
    }
    if ctx.int("input_forget", 0) != 0 {
        return Err(ctx.err("input_forget = 1 (coupled input and forget gates) is not supported"));
    }
    if let Some(a) = ctx.attr("activations") {
        let names: Vec<String> = a
            .strings
            .iter()
            .map(|s| String::from_utf8_lossy(s).to_lowercase())
            .collect();
        if names.chunks(3).any(|c| c != ["sigmoid", "tanh", "tanh"]) {
            return Err(ctx.err(format!(
                "custom activations {names:?} are not supported (only Sigmoid, Tanh, Tanh)"
            )));
        }
    }
    Ok(())
}

fn lstm(ctx: &mut NodeCtx) -> Result<()> {
    let node = ctx.node;
    let x = match ctx.computed()[..] {
        [0] => ctx.node_at(0).expect("computed"),
        [] => return Err(ctx.err("LSTM on constants is not supported")),
        _ => return Err(ctx.err("reads a computed value as a weight or state input")),
    };
    refuse_variants(ctx)?;
    let layout = ctx.int("layout", 0);
    let wanted_batch_axis = match layout {
        0 => 1,
        1 => 0,
        other => return Err(ctx.err(format!("layout {other} is not defined"))),
    };
    if x.batch != Batch::At(wanted_batch_axis) {
        return Err(ctx.err(format!(
            "with layout {layout} the input must be {}, but the value has its batch axis at position {}",
            if layout == 0 {
                "[time, batch, features]"
            } else {
                "[batch, time, features]"
            },
            x.batch_axis().map_or("nowhere apart".to_string(), |b| b.to_string())
        )));
    }
    let [_, f] = x.shape[..] else {
        return Err(ctx.err(format!(
            "needs a sequence input (time and features), the value is {:?}",
            x.shape
        )));
    };
    let direction = ctx.string("direction").unwrap_or_else(|| "forward".into());
    let reverse_flags: &[bool] = match direction.as_str() {
        "forward" => &[false],
        "reverse" => &[true],
        "bidirectional" => &[false, true],
        other => return Err(ctx.err(format!("direction '{other}' is not defined"))),
    };
    let dirs = reverse_flags.len();
    let w: Array3<f32> = weight(ctx, ctx.required(1, "the weights W")?, "W")?;
    let r: Array3<f32> = weight(ctx, ctx.required(2, "the recurrence weights R")?, "R")?;
    let h = ctx.int("hidden_size", (r.dim().2) as i64) as usize;
    if w.dim() != (dirs, 4 * h, f) {
        return Err(ctx.err(format!(
            "W '{}' has shape {:?}, expected [{dirs}, {}, {f}] for {direction} with hidden size {h} and {f} features",
            node.input[1],
            w.shape(),
            4 * h
        )));
    }
    // A constant zero initial state must still have the shape ONNX defines ([directions, batch, hidden], or
    // [batch, directions, hidden] for layout 1): onnxruntime refuses another.
    for (i, what) in [(5, "initial_h"), (6, "initial_c")] {
        if let Some(t) = ctx.const_input(i) {
            let dims: Vec<i64> = t.dims.clone();
            let ok = dims.len() == 3 && {
                let (d, hid) = if layout == 0 {
                    (dims[0], dims[2])
                } else {
                    (dims[1], dims[2])
                };
                d == dirs as i64 && hid == h as i64
            };
            if !ok {
                return Err(ctx.err(format!(
                    "{what} '{}' has shape {dims:?}; layout {layout} needs {} with {dirs} direction(s) and hidden size {h}",
                    node.input[i],
                    if layout == 0 { "[directions, batch, hidden]" } else { "[batch, directions, hidden]" }
                )));
            }
        }
    }
    if r.dim() != (dirs, 4 * h, h) {
        return Err(ctx.err(format!(
            "R '{}' has shape {:?}, expected [{dirs}, {}, {h}]",
            node.input[2],
            r.shape(),
            4 * h
        )));
    }
    let b: Array2<f32> = match ctx.const_input(3) {
        Some(t) => {
            let b: Array2<f32> = weight(ctx, t, "B")?;
            if b.dim() != (dirs, 8 * h) {
                return Err(ctx.err(format!(
                    "B '{}' has shape {:?}, expected [{dirs}, {}]",
                    t.name,
                    b.shape(),
                    8 * h
                )));
            }
            b
        }
        None => Array2::zeros((dirs, 8 * h)),
    };
    let directions = reverse_flags
        .iter()
        .enumerate()
        .map(|(d, &reverse)| {
            let row = b.row(d);
            let bias = &row.slice_axis(Axis(0), (0..4 * h).into()) + &row.slice_axis(Axis(0), (4 * h..8 * h).into());
            let bias = reorder(bias.view().insert_axis(Axis(1)), h).column(0).to_owned();
            LstmDirection {
                w: reorder(w.index_axis(Axis(0), d), h),
                r: reorder(r.index_axis(Axis(0), d), h),
                b: Array1::from(bias.to_vec()),
                reverse,
            }
        })
        .collect();
    let used = |k: usize| ctx.output_used(k);
    if used(2) {
        return Err(ctx.err("its cell-state output Y_c is used; only Y or Y_h can continue the chain"));
    }
    let (output, return_sequence, batch_axis) = match (used(0), used(1)) {
        (true, true) => return Err(ctx.err("both Y and Y_h are used: a branch, which is not supported")),
        // Y: [T, dirs, N, H] (layout 0) or [N, T, dirs, H] (layout 1).
        (true, false) => (0, true, if layout == 0 { 2 } else { 0 }),
        // Y_h: [dirs, N, H] (layout 0) or [N, dirs, H] (layout 1).
        _ => (1, false, if layout == 0 { 1 } else { 0 }),
    };
    let layer = Layer::Lstm(Lstm {
        directions,
        return_sequence,
    });
    let id = ctx.emit(layer, vec![x.id])?;
    let shape = ctx.shape_of(id);
    ctx.set(output, x.with(id, shape, Batch::At(batch_axis)))
}
