//! Walks an ONNX graph from its input to its output and builds the network.

use std::collections::HashMap;
use std::path::Path;

use lrp_core::{Layer, Network};
use prost::Message;

use crate::error::{OnnxError, Result};
use crate::ops::{Step, translate};
use crate::proto::{AttributeProto, ModelProto, NodeProto, TensorProto};

/// The lowest and highest default-domain opset this importer reads.
pub const OPSETS: std::ops::RangeInclusive<i64> = 11..=21;

/// An imported network with what the import changed (e.g. a dropped softmax).
#[derive(Clone, Debug)]
pub struct Imported {
    /// The network (batch norms folded).
    pub network: Network,
    /// One line per change a user should know about.
    pub notes: Vec<String>,
    /// Producer and opset, e.g. "pytorch 2.5, opset 17".
    pub origin: String,
}

/// Reads and imports an ONNX file.
pub fn import_file(path: &Path) -> Result<Imported> {
    let bytes = std::fs::read(path).map_err(|e| OnnxError::Decode(format!("cannot read {}: {e}", path.display())))?;
    import_bytes(&bytes)
}

/// How a node is named in messages: its name, or its position and type when it has none.
pub(crate) fn node_label(node: &NodeProto, index: usize) -> String {
    if node.name.is_empty() {
        format!("#{index} (unnamed)")
    } else {
        format!("'{}'", node.name)
    }
}

/// Imports an ONNX model from its bytes.
pub fn import_bytes(bytes: &[u8]) -> Result<Imported> {
    let model = ModelProto::decode(bytes).map_err(|e| OnnxError::Decode(e.to_string()))?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| OnnxError::Graph("the model imports no default-domain opset (is this an ONNX model?)".into()))?;
    if !OPSETS.contains(&opset) {
        return Err(OnnxError::Graph(format!(
            "opset {opset} is not supported; this importer reads opsets {} to {}",
            OPSETS.start(),
            OPSETS.end()
        )));
    }
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| OnnxError::Graph("the model has no graph".into()))?;

    // Constants: initializers, and the values of Constant nodes.
    let mut consts: HashMap<&str, &TensorProto> = graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut nodes: Vec<(usize, &NodeProto)> = Vec::new();
    for (i, node) in graph.node.iter().enumerate() {
        if node.op_type == "Constant" && node.domain.is_empty() {
            let value = node
                .attribute
                .iter()
                .find(|a| a.name == "value")
                .and_then(|a: &AttributeProto| a.t.as_ref())
                .ok_or_else(|| OnnxError::Node {
                    node: node_label(node, i),
                    op_type: "Constant".into(),
                    reason: "only tensor-valued constants (attribute 'value') are supported".into(),
                })?;
            for out in &node.output {
                consts.insert(out.as_str(), value);
            }
        } else {
            nodes.push((i, node));
        }
    }

    let inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|v| !consts.contains_key(v.name.as_str()))
        .collect();
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
    let mut shape = Vec::with_capacity(dims.len() - 1);
    for (axis, d) in dims.iter().enumerate().skip(1) {
        match d.dim_value {
            Some(v) if v > 0 => shape.push(v as usize),
            _ => {
                return Err(OnnxError::Graph(format!(
                    "input '{}' axis {axis} has no fixed size ({}); only the batch axis may be dynamic",
                    input.name,
                    d.dim_param.as_deref().unwrap_or("unknown")
                )));
            }
        }
    }
    let input_shape = shape.clone();

    // Which nodes read each value.
    let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (k, (_, node)) in nodes.iter().enumerate() {
        for name in node.input.iter().filter(|n| !n.is_empty()) {
            readers.entry(name.as_str()).or_default().push(k);
        }
    }
    let producers: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .flat_map(|(k, (_, n))| n.output.iter().map(move |o| (o.as_str(), k)))
        .collect();

    let mut layers: Vec<Layer> = Vec::new();
    let mut notes = Vec::new();
    let mut used = vec![false; nodes.len()];
    let mut current: &str = input.name.as_str();
    let mut batch_axis = 0usize;
    while current != output.name {
        let consumers = readers.get(current).map(Vec::as_slice).unwrap_or(&[]);
        let k = match consumers {
            [] => {
                return Err(OnnxError::Graph(format!(
                    "value '{current}' is read by no node and is not the graph output '{}'",
                    output.name
                )));
            }
            [k] => *k,
            many => {
                let names: Vec<String> = many.iter().map(|&k| node_label(nodes[k].1, nodes[k].0)).collect();
                return Err(OnnxError::Graph(format!(
                    "value '{current}' branches into {} nodes ({}); only chains from one input to one output are supported",
                    many.len(),
                    names.join(", ")
                )));
            }
        };
        if used[k] {
            return Err(OnnxError::Graph(format!("value '{current}' leads back into a cycle")));
        }
        used[k] = true;
        let (index, node) = nodes[k];
        let label = node_label(node, index);
        // Every other input must be a constant.
        for name in node.input.iter().filter(|n| !n.is_empty() && n.as_str() != current) {
            if !consts.contains_key(name.as_str()) {
                let reason = if producers.contains_key(name.as_str()) || graph.input.iter().any(|v| &v.name == name) {
                    format!(
                        "input '{name}' is computed in the graph, not a constant: a join of two branches, which is not supported"
                    )
                } else {
                    format!("input '{name}' is missing: no initializer, constant or node provides it")
                };
                return Err(OnnxError::Node {
                    node: label,
                    op_type: node.op_type.clone(),
                    reason,
                });
            }
        }
        if node.input.iter().filter(|n| n.as_str() == current).count() != 1 {
            return Err(OnnxError::Node {
                node: label,
                op_type: node.op_type.clone(),
                reason: format!("reads '{current}' more than once"),
            });
        }
        let out_name = node
            .output
            .first()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| OnnxError::Node {
                node: label.clone(),
                op_type: node.op_type.clone(),
                reason: "has no output".into(),
            })?;
        let outputs_used: Vec<bool> = node
            .output
            .iter()
            .map(|o| !o.is_empty() && (readers.contains_key(o.as_str()) || *o == output.name))
            .collect();
        let ctx = crate::ops::Ctx {
            node,
            label: &label,
            current,
            consts: &consts,
            shape: &shape,
            is_last: *out_name == output.name,
            batch_axis,
            outputs_used: outputs_used.clone(),
            opset,
        };
        let (layer, next) = match translate(&ctx, layers.last_mut())? {
            Step::Push(layer) => (Some(layer), 0),
            Step::Skip => (None, 0),
            Step::Note(note) => {
                notes.push(note);
                (None, 0)
            }
            Step::Relayout {
                layer,
                output: k,
                batch_axis: b,
            } => {
                batch_axis = b;
                (layer, k)
            }
        };
        if let Some(layer) = layer {
            let out = layer.output_shape(layers.len(), &shape).map_err(|e| OnnxError::Node {
                node: label.clone(),
                op_type: node.op_type.clone(),
                reason: e.to_string(),
            })?;
            layers.push(layer);
            shape = out;
        }
        for (k, used_k) in outputs_used.iter().enumerate() {
            if *used_k && k != next {
                return Err(OnnxError::Node {
                    node: label,
                    op_type: node.op_type.clone(),
                    reason: format!(
                        "its output '{}' is used, but only output '{}' can continue the chain",
                        node.output[k], node.output[next]
                    ),
                });
            }
        }
        current = node.output[next].as_str();
    }
    if let Some(k) = used.iter().position(|u| !u) {
        let (index, node) = nodes[k];
        return Err(OnnxError::Graph(format!(
            "node {} ({}) is not on the chain from input '{}' to output '{}': branches are not supported",
            node_label(node, index),
            node.op_type,
            input.name,
            output.name
        )));
    }
    if batch_axis != 0 {
        return Err(OnnxError::Graph(format!(
            "the graph output '{}' does not have the batch axis first",
            output.name
        )));
    }
    if layers.is_empty() {
        return Err(OnnxError::Graph(
            "the graph computes nothing lrp can explain (no layers)".into(),
        ));
    }
    let network = Network::new(input_shape, layers)?;
    let producer = if model.producer_name.is_empty() {
        "unknown producer".to_string()
    } else {
        format!("{} {}", model.producer_name, model.producer_version)
            .trim()
            .to_string()
    };
    Ok(Imported {
        network,
        notes,
        origin: format!("{producer}, opset {opset}"),
    })
}
