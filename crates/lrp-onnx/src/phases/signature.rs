//! Phase 4: the graph's one input and one output, and the input's per-sample shape.

use crate::error::{OnnxError, Result};
use crate::proto::{GraphProto, TensorProto};

/// What the graph takes and gives.
pub(crate) struct Signature {
    pub input: String,
    pub output: String,
    /// Per-sample input shape (the batch axis removed).
    pub input_shape: Vec<usize>,
    /// The exporter fixed the batch to 1 (and writes 1 where the batch size goes in reshapes).
    pub batch_fixed_to_one: bool,
}

/// The graph's signature; `fixed`, when given, is the per-sample input shape to use where the file leaves an axis
/// dynamic (it must agree with every axis the file fixes).
pub(crate) fn signature(
    graph: &GraphProto,
    consts: &std::collections::HashMap<String, TensorProto>,
    fixed: Option<&[usize]>,
) -> Result<Signature> {
    let inputs: Vec<_> = graph.input.iter().filter(|v| !consts.contains_key(&v.name)).collect();
    let [input] = inputs[..] else {
        return Err(OnnxError::Graph(format!(
            "the graph has {} inputs ({}); exactly one is supported",
            inputs.len(),
            inputs.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", ")
        )));
    };
    let [output] = &graph.output[..] else {
        return Err(OnnxError::Graph(format!(
            "the graph has {} outputs; exactly one is supported",
            graph.output.len()
        )));
    };
    let dims = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.shape.as_ref())
        .map(|s| &s.dim)
        .ok_or_else(|| OnnxError::Graph(format!("input '{}' has no tensor shape", input.name)))?;
    if dims.len() < 2 {
        return Err(OnnxError::Graph(format!(
            "input '{}' has rank {}; expected a batch axis and at least one more",
            input.name,
            dims.len()
        )));
    }
    if let Some(f) = fixed
        && f.len() != dims.len() - 1
    {
        return Err(OnnxError::GivenShape(format!(
            "{f:?} has {} axes; input '{}' has {} besides the batch",
            f.len(),
            input.name,
            dims.len() - 1
        )));
    }
    let mut input_shape = Vec::with_capacity(dims.len() - 1);
    for (axis, d) in dims.iter().enumerate().skip(1) {
        let given = fixed.map(|f| f[axis - 1]);
        match (d.dim_value, given) {
            (Some(v), Some(g)) if v > 0 && v as u64 != g as u64 => {
                return Err(OnnxError::GivenShape(format!(
                    "axis {axis} is {g}, which the file fixes at {v}"
                )));
            }
            (Some(v), _) if v > 0 && v <= 1 << 31 => input_shape.push(v as usize),
            (_, Some(g)) if g > 0 && g <= 1 << 31 => input_shape.push(g),
            (_, Some(g)) => {
                return Err(OnnxError::GivenShape(format!(
                    "axis {axis} is {g}: sizes run from 1 to 2^31"
                )));
            }
            _ => {
                return Err(OnnxError::DynamicInput {
                    input: input.name.clone(),
                    axis,
                    name: d
                        .dim_param
                        .clone()
                        .unwrap_or_else(|| d.dim_value.map_or("unknown".into(), |v| v.to_string())),
                });
            }
        }
    }
    Ok(Signature {
        input: input.name.clone(),
        output: output.name.clone(),
        input_shape,
        batch_fixed_to_one: dims[0].dim_value == Some(1),
    })
}
