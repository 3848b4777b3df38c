//! A transformer's nodes: `LayerNormalization` and `Softmax` (inside the network; a final one is dropped, since
//! LRP explains logits).

use lrp_core::{Layer, LayerNorm};

use crate::context::{Handler, NodeCtx};
use crate::error::Result;
use crate::fold::axis as norm_axis;
use crate::tensor::to_f32;

pub(crate) fn register(reg: &mut Vec<(&'static str, Handler)>) {
    reg.extend([
        ("LayerNormalization", layer_norm as Handler),
        ("Softmax", softmax),
        ("LogSoftmax", softmax),
    ]);
}

fn layer_norm(c: &mut NodeCtx) -> Result<()> {
    let x = c.x()?;
    if c.computed() != [0] {
        return Err(c.err("reads a computed value as its scale or shift"));
    }
    let rank = x.rank();
    let axis = norm_axis(c.int("axis", -1), rank).map_err(|e| c.err(e))?;
    if axis != rank - 1 {
        return Err(c.err(format!(
            "normalizes from axis {axis} of a rank-{rank} value; only the last axis is supported"
        )));
    }
    if x.feature_axis(axis) != Some(x.shape.len() - 1) {
        return Err(c.err("normalizes over the batch axis"));
    }
    let d = x.shape[x.shape.len() - 1];
    let vector = |i: usize, default: f32| -> Result<ndarray::Array1<f32>> {
        match c.input_name(i) {
            None => Ok(ndarray::Array1::from_elem(d, default)),
            Some(n) => {
                let t = c
                    .const_input(i)
                    .ok_or_else(|| c.err(format!("'{n}' must be a constant")))?;
                let v = to_f32(t)?;
                if v.len() != d {
                    return Err(c.err(format!(
                        "'{n}' has shape {:?}; the normalized axis has {d} features",
                        v.shape()
                    )));
                }
                Ok(v.iter().copied().collect())
            }
        }
    };
    let ln = LayerNorm {
        weight: vector(1, 1.0)?,
        bias: vector(2, 0.0)?,
        eps: c.float("epsilon", 1e-5),
    };
    c.push(Layer::LayerNorm(ln), &x)
}

fn softmax(c: &mut NodeCtx) -> Result<()> {
    let x = c.x()?;
    if c.is_last() {
        let note = format!(
            "the final {} ({}) was dropped: lrp explains the logits",
            c.op(),
            c.label
        );
        c.note(note);
        return c.set(0, x.with(x.id, x.shape.clone(), x.batch));
    }
    if c.op() == "LogSoftmax" {
        return Err(c.err("a softmax is supported only as the last node (it is dropped: lrp explains logits)"));
    }
    let rank = x.rank();
    let opset = c.st.opset;
    let default = if opset >= 13 { -1 } else { 1 };
    let axis = norm_axis(c.int("axis", default), rank).map_err(|e| c.err(e))?;
    // Before opset 13 a softmax covers every axis from `axis` on: the same as one axis only at the last.
    let feature = x.feature_axis(axis).filter(|_| opset >= 13 || axis == rank - 1);
    let Some(feature) = feature else {
        return Err(c.err(format!(
            "softmax over axis {axis} of a rank-{rank} value (opset {opset}) is not supported: only one feature axis"
        )));
    };
    c.push(Layer::softmax(feature), &x)
}
