//! Phase 5: the nodes in file order (which ONNX makes topological), each translated by its operator's handler;
//! an elementwise island (a decomposed activation) becomes one activation layer at its last node.

use std::collections::{HashMap, HashSet};

use lrp_core::{Activation, Layer};

use crate::context::{GraphState, NodeCtx};
use crate::error::{OnnxError, Result};
use crate::islands::Island;
use crate::proto::{GraphProto, NodeProto};
use crate::value::Val;

/// How a node is named in messages: its name, or its position and type when it has none.
pub(crate) fn node_label(node: &NodeProto, index: usize) -> String {
    if node.name.is_empty() {
        format!("#{index} (unnamed)")
    } else {
        format!("'{}'", node.name)
    }
}

/// Values known before the input is: initializers, `Constant` nodes, and what only they compute.
pub(crate) fn constant_values(graph: &GraphProto, st: &GraphState) -> HashSet<String> {
    let mut constant: HashSet<String> = st.consts.keys().cloned().collect();
    for node in &graph.node {
        if node.input.iter().all(|i| i.is_empty() || constant.contains(i)) {
            constant.extend(node.output.iter().filter(|o| !o.is_empty()).cloned());
        }
    }
    constant
}

/// Refuses a graph in which a value is written twice (two nodes with one output name, or a node writing a weight's
/// or the input's name): its readers would see whichever came last, where onnxruntime refuses the model.
fn check_single_writers(graph: &GraphProto, st: &GraphState) -> Result<()> {
    let mut written: HashSet<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
    for (index, node) in graph.node.iter().enumerate() {
        for o in node.output.iter().filter(|o| !o.is_empty()) {
            if !written.insert(o.as_str()) || st.consts.contains_key(o) {
                return Err(OnnxError::Node {
                    op_type: node.op_type.clone(),
                    node: node_label(node, index),
                    reason: format!("writes '{o}', which another node, a weight or the input already is"),
                });
            }
        }
    }
    Ok(())
}

pub(crate) fn walk(graph: &GraphProto, st: &mut GraphState, islands: &[Island]) -> Result<()> {
    check_single_writers(graph, st)?;
    let mut island_of: HashMap<usize, usize> = HashMap::new();
    for (k, isl) in islands.iter().enumerate() {
        for &n in &isl.nodes {
            island_of.insert(n, k);
        }
    }
    for (index, node) in graph.node.iter().enumerate() {
        let label = node_label(node, index);
        if let Some(&k) = island_of.get(&index) {
            let isl = &islands[k];
            if isl.nodes.last() == Some(&index) {
                island(graph, st, node, &label, isl)?;
            }
            continue;
        }
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(OnnxError::UnsupportedOp {
                op_type: format!("{}:{}", node.domain, node.op_type),
                node: label,
                hint: String::new(),
            });
        }
        let mut ins: Vec<Option<Val>> = Vec::with_capacity(node.input.len());
        for name in &node.input {
            if name.is_empty() {
                ins.push(None);
                continue;
            }
            match st.vals.get(name) {
                Some(v) => ins.push(Some(v.clone())),
                None => {
                    return Err(OnnxError::Node {
                        node: label,
                        op_type: node.op_type.clone(),
                        reason: format!(
                            "input '{name}' is missing: no initializer, constant or earlier node provides it"
                        ),
                    });
                }
            }
        }
        let Some(handler) = crate::registry::handler(&node.op_type) else {
            return Err(unsupported(node, label));
        };
        let mut ctx = NodeCtx {
            node,
            label,
            ins,
            st: &mut *st,
        };
        if zeros(&mut ctx)? {
            continue;
        }
        handler(&mut ctx)?;
    }
    Ok(())
}

/// Zeros of a batch-dependent shape (an LSTM's initial state) pass through `Identity`, `Cast` and `Expand`; any
/// other operator on them alone is refused. Returns whether the node was handled.
fn zeros(c: &mut NodeCtx) -> Result<bool> {
    if !c.computed().is_empty() || !c.ins.iter().any(|v| matches!(v, Some(Val::Zeros))) {
        return Ok(false);
    }
    match c.op() {
        "Identity" | "Cast" | "Expand" => {
            c.set(0, Val::Zeros)?;
            Ok(true)
        }
        op => Err(c.err(format!(
            "{op} of zeros whose shape depends on the batch size is not supported"
        ))),
    }
}

/// One activation layer for an island, written at its last node.
fn island(graph: &GraphProto, st: &mut GraphState, node: &NodeProto, label: &str, isl: &Island) -> Result<()> {
    let island_err = |reason: String| OnnxError::Node {
        node: label.to_string(),
        op_type: node.op_type.clone(),
        reason: format!("ends an elementwise island over '{}': {reason}", isl.root),
    };
    let Some(Val::Node(x)) = st.vals.get(&isl.root).cloned() else {
        return Err(island_err("its input is not a computed value".into()));
    };
    let expr = crate::islands::compile(graph, isl, &st.consts).map_err(island_err)?;
    let mut ctx = NodeCtx {
        node,
        label: label.to_string(),
        ins: Vec::new(),
        st,
    };
    ctx.push(Layer::Activation(Activation::Island(expr)), &x)
}

/// The error for an operator no handler translates, with the list of those that are supported.
fn unsupported(node: &NodeProto, label: String) -> OnnxError {
    let hint = match node.op_type.as_str() {
        "GRU" | "RNN" => ": of the recurrent layers only LSTM is supported",
        _ => "",
    };
    OnnxError::UnsupportedOp {
        op_type: node.op_type.clone(),
        node: label,
        hint: format!("{hint} (supported: {})", crate::registry::supported().join(", ")),
    }
}
