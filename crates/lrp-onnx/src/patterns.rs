//! Layer norms an exporter wrote as several nodes. Older opsets (and some exporters at any opset) have no
//! `LayerNormalization`; PyTorch then writes
//! `d = x − ReduceMean(x)`, `y = d / Sqrt(ReduceMean(d²) + ε)`, then `· γ + β`: a subgraph in which `d` is read
//! twice. It is found before the import walks the graph and replaced by one `LayerNormalization` node, so the
//! network gets a layer-norm node (with its own AttnLRP rule) instead of a refusal at the first `ReduceMean`.

use std::collections::HashMap;

use crate::proto::{AttributeProto, GraphProto, NodeProto, TensorProto};
use crate::tensor::to_f32;

/// The value of a constant input: an initializer or the output of a `Constant` node.
fn constant<'a>(
    name: &str,
    consts: &'a HashMap<String, TensorProto>,
    const_nodes: &'a HashMap<String, TensorProto>,
) -> Option<&'a TensorProto> {
    consts.get(name).or_else(|| const_nodes.get(name))
}

fn scalar(t: Option<&TensorProto>) -> Option<f32> {
    let a = to_f32(t?).ok()?;
    (a.len() == 1).then(|| a.iter().next().copied()).flatten()
}

/// The reduced axes of a `ReduceMean` with `keepdims = 1` (from the attribute, or the constant second input of
/// opset 18), or `None` when it is not of that form.
fn mean_axes(
    n: &NodeProto,
    consts: &HashMap<String, TensorProto>,
    const_nodes: &HashMap<String, TensorProto>,
) -> Option<Vec<i64>> {
    if n.op_type != "ReduceMean" {
        return None;
    }
    let keep = n
        .attribute
        .iter()
        .find(|a| a.name == "keepdims")
        .is_none_or(|a| a.i != 0);
    if !keep {
        return None;
    }
    if let Some(a) = n.attribute.iter().find(|a| a.name == "axes") {
        return Some(a.ints.clone());
    }
    let t = constant(n.input.get(1)?, consts, const_nodes)?;
    crate::tensor::to_i64(t).ok()
}

/// The graph's lookups that matching needs: each value's readers and the constants.
struct View<'a> {
    nodes: &'a [NodeProto],
    consts: &'a HashMap<String, TensorProto>,
    const_nodes: HashMap<String, TensorProto>,
    /// The nodes that read each value (`usize::MAX` for the graph output).
    readers: HashMap<&'a str, Vec<usize>>,
}

/// A decomposed layer norm found: the nodes it replaces, the fused node, and the position it takes.
type Found = (Vec<usize>, NodeProto, usize);

impl<'a> View<'a> {
    fn new(graph: &'a GraphProto, consts: &'a HashMap<String, TensorProto>) -> Self {
        let const_nodes = graph
            .node
            .iter()
            .filter(|n| n.op_type == "Constant")
            .filter_map(|n| {
                let t = crate::fold::constant_node(n).ok()?;
                Some((n.output.first()?.clone(), t))
            })
            .collect();
        let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, n) in graph.node.iter().enumerate() {
            for name in n.input.iter().filter(|s| !s.is_empty()) {
                readers.entry(name.as_str()).or_default().push(i);
            }
        }
        for o in &graph.output {
            readers.entry(o.name.as_str()).or_default().push(usize::MAX);
        }
        View {
            nodes: &graph.node,
            consts,
            const_nodes,
            readers,
        }
    }

    /// The one node that reads `value`, if exactly one does (and it is not the graph output).
    fn only(&self, value: &str) -> Option<usize> {
        match self.readers.get(value).map(Vec::as_slice) {
            Some(&[r]) if r != usize::MAX => Some(r),
            _ => None,
        }
    }

    fn out(&self, i: usize) -> &'a str {
        self.nodes[i].output.first().map(String::as_str).unwrap_or("")
    }

    fn constant(&self, name: &str) -> Option<&TensorProto> {
        constant(name, self.consts, &self.const_nodes)
    }

    fn mean_axes(&self, n: &NodeProto) -> Option<Vec<i64>> {
        mean_axes(n, self.consts, &self.const_nodes)
    }

    /// The layer norm whose first `ReduceMean` is node `m1`, if the nodes after it have that form.
    fn layer_norm_at(&self, m1: usize) -> Option<Found> {
        let nodes = self.nodes;
        let axes = self.mean_axes(&nodes[m1]).filter(|a| a.len() == 1)?;
        let x = nodes[m1].input[0].clone();
        let sub = self.only(self.out(m1))?;
        if nodes[sub].op_type != "Sub"
            || nodes[sub].input.first() != Some(&x)
            || nodes[sub].input.get(1).map(String::as_str) != Some(self.out(m1))
        {
            return None;
        }
        let d = self.out(sub);
        let d_readers = self.readers.get(d)?;
        if d_readers.len() != 2 || d_readers.contains(&usize::MAX) {
            return None;
        }
        // d² (Pow(d, 2)), and the division by the root.
        let (mut sq, mut div) = (None, None);
        for &r in d_readers {
            let node = &nodes[r];
            match node.op_type.as_str() {
                "Pow"
                    if node.input[0] == d && scalar(node.input.get(1).and_then(|e| self.constant(e))) == Some(2.0) =>
                {
                    sq = Some(r)
                }
                "Div" if node.input[0] == d => div = Some(r),
                _ => {}
            }
        }
        let (sq, div) = (sq?, div?);
        let m2 = self.only(self.out(sq))?;
        if self.mean_axes(&nodes[m2]).as_ref() != Some(&axes) {
            return None;
        }
        let add = self.only(self.out(m2)).filter(|&a| nodes[a].op_type == "Add")?;
        let other = nodes[add].input.iter().find(|i| i.as_str() != self.out(m2));
        let eps = scalar(other.and_then(|e| self.constant(e)))?;
        let root = self.only(self.out(add))?;
        if nodes[root].op_type != "Sqrt"
            || self.only(self.out(root)) != Some(div)
            || nodes[div].input.get(1).map(String::as_str) != Some(self.out(root))
        {
            return None;
        }
        let mut remove = vec![m1, sub, sq, m2, add, root, div];
        let mut last = div;
        // An affine part after it, `· γ` then `+ β`, each with a constant (either may be missing).
        let mut params = [String::new(), String::new()];
        for (slot, op) in params.iter_mut().zip(["Mul", "Add"]) {
            let Some(k) = self.only(self.out(last)) else { break };
            let node = &nodes[k];
            let other = node.input.iter().find(|i| i.as_str() != self.out(last));
            if node.op_type == op
                && let Some(c) = other.filter(|c| self.constant(c).is_some())
            {
                *slot = c.clone();
                remove.push(k);
                last = k;
            }
        }
        let name = if nodes[m1].name.is_empty() {
            self.out(m1)
        } else {
            &nodes[m1].name
        };
        let fused = fused_node(
            name,
            [x, params[0].clone(), params[1].clone()],
            self.out(last),
            axes[0],
            eps,
        );
        Some((remove, fused, last))
    }
}

/// A `LayerNormalization` node over `axis` reading `[x, γ, β]`.
fn fused_node(name: &str, input: [String; 3], output: &str, axis: i64, eps: f32) -> NodeProto {
    NodeProto {
        input: input.to_vec(),
        output: vec![output.to_string()],
        name: format!("{name} (a decomposed layer norm)"),
        op_type: "LayerNormalization".into(),
        domain: String::new(),
        attribute: vec![
            AttributeProto {
                name: "axis".into(),
                r#type: 2,
                i: axis,
                ..Default::default()
            },
            AttributeProto {
                name: "epsilon".into(),
                r#type: 1,
                f: eps,
                ..Default::default()
            },
        ],
    }
}

/// Replaces every decomposed layer norm of `graph` by one `LayerNormalization` node; returns how many.
pub(crate) fn fuse_layer_norms(graph: &mut GraphProto, consts: &HashMap<String, TensorProto>) -> usize {
    let found: Vec<Found> = {
        let view = View::new(graph, consts);
        (0..graph.node.len()).filter_map(|m1| view.layer_norm_at(m1)).collect()
    };
    let count = found.len();
    if count == 0 {
        return 0;
    }
    let mut drop = vec![false; graph.node.len()];
    let mut put: HashMap<usize, NodeProto> = HashMap::new();
    for (remove, fused, at) in found {
        for r in remove {
            drop[r] = true;
        }
        put.insert(at, fused);
    }
    let old = std::mem::take(&mut graph.node);
    for (i, n) in old.into_iter().enumerate() {
        if let Some(f) = put.remove(&i) {
            graph.node.push(f);
        } else if !drop[i] {
            graph.node.push(n);
        }
    }
    count
}
