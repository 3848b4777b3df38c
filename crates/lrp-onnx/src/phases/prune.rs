//! Phases 6 and 7: the nodes the output does not depend on left out (an LSTM's unused states, shape helpers, dead
//! branches), then the network built (and checked) from the rest.

use lrp_core::Network;

use crate::context::GraphState;
use crate::error::{OnnxError, Result};
use crate::value::Val;

pub(crate) fn prune_and_build(st: GraphState, input_shape: Vec<usize>) -> Result<(Network, Vec<String>)> {
    let GraphState {
        vals,
        b,
        mut notes,
        graph_output: output,
        ..
    } = st;
    let (out_id, out_batch_first) = match vals.get(&output) {
        Some(Val::Node(x)) => (x.id, x.batch_first()),
        Some(_) => {
            return Err(OnnxError::Graph(format!(
                "the graph output '{output}' does not depend on the input"
            )));
        }
        None => return Err(OnnxError::Graph(format!("no node writes the graph output '{output}'"))),
    };
    if !out_batch_first {
        return Err(OnnxError::Graph(format!(
            "the graph output '{output}' does not have the batch axis first"
        )));
    }
    if out_id == 0 {
        return Err(OnnxError::Graph(
            "the graph computes nothing lrp can explain (no layers)".into(),
        ));
    }
    let mut needed = vec![false; b.nodes.len() + 1];
    needed[out_id] = true;
    for k in (0..b.nodes.len()).rev() {
        if needed[k + 1] {
            for &v in &b.nodes[k].1 {
                needed[v] = true;
            }
        }
    }
    let dropped = (0..b.nodes.len()).filter(|&k| !needed[k + 1]).count();
    if dropped > 0 {
        notes.push(format!(
            "{dropped} computed value(s) do not lead to the output '{output}' and were left out"
        ));
    }
    let mut map = vec![0usize; b.nodes.len() + 1];
    let mut nodes = Vec::new();
    for (k, (layer, ins)) in b.nodes.into_iter().enumerate().take(out_id) {
        if !needed[k + 1] {
            continue;
        }
        nodes.push((layer, ins.iter().map(|&v| map[v]).collect()));
        map[k + 1] = nodes.len();
    }
    Ok((Network::graph(input_shape, nodes)?, notes))
}
