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

/// Replaces every decomposed layer norm of `graph` by one `LayerNormalization` node; returns how many.
pub(crate) fn fuse_layer_norms(graph: &mut GraphProto, consts: &HashMap<String, TensorProto>) -> usize {
    let const_nodes: HashMap<String, TensorProto> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Constant")
        .filter_map(|n| {
            let t = crate::import::constant_node(n).ok()?;
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
    let only = |value: &str| -> Option<usize> {
        match readers.get(value).map(Vec::as_slice) {
            Some(&[r]) if r != usize::MAX => Some(r),
            _ => None,
        }
    };
    let nodes = &graph.node;
    let out = |i: usize| nodes[i].output.first().map(String::as_str).unwrap_or("");
    // (nodes to remove, the fused node, where it goes)
    let mut found: Vec<(Vec<usize>, NodeProto, usize)> = Vec::new();
    for (m1, n) in nodes.iter().enumerate() {
        let Some(axes) = mean_axes(n, consts, &const_nodes) else {
            continue;
        };
        if axes.len() != 1 {
            continue;
        }
        let x = n.input[0].clone();
        let Some(sub) = only(out(m1)) else { continue };
        if nodes[sub].op_type != "Sub"
            || nodes[sub].input.first() != Some(&x)
            || nodes[sub].input.get(1).map(String::as_str) != Some(out(m1))
        {
            continue;
        }
        let d = out(sub);
        let Some(d_readers) = readers.get(d) else { continue };
        if d_readers.len() != 2 || d_readers.contains(&usize::MAX) {
            continue;
        }
        // d² (Pow(d, 2) or Mul(d, d)), and the division by the root.
        let (mut sq, mut div) = (None, None);
        for &r in d_readers {
            let node = &nodes[r];
            match node.op_type.as_str() {
                "Pow"
                    if node.input[0] == d
                        && scalar(node.input.get(1).and_then(|e| constant(e, consts, &const_nodes))) == Some(2.0) =>
                {
                    sq = Some(r)
                }
                "Div" if node.input[0] == d => div = Some(r),
                _ => {}
            }
        }
        let (Some(sq), Some(div)) = (sq, div) else { continue };
        let Some(m2) = only(out(sq)) else { continue };
        if mean_axes(&nodes[m2], consts, &const_nodes).as_ref() != Some(&axes) {
            continue;
        }
        let Some(add) = only(out(m2)) else { continue };
        if nodes[add].op_type != "Add" {
            continue;
        }
        let other = nodes[add].input.iter().find(|i| i.as_str() != out(m2));
        let Some(eps) = scalar(other.and_then(|e| constant(e, consts, &const_nodes))) else {
            continue;
        };
        let Some(root) = only(out(add)) else { continue };
        if nodes[root].op_type != "Sqrt"
            || only(out(root)) != Some(div)
            || nodes[div].input.get(1).map(String::as_str) != Some(out(root))
        {
            continue;
        }
        let mut remove = vec![m1, sub, sq, m2, add, root, div];
        let mut last = div;
        // An affine part after it, `· γ` then `+ β`, each with a constant (either may be missing).
        let mut params = [String::new(), String::new()];
        for (slot, op) in params.iter_mut().zip(["Mul", "Add"]) {
            let Some(k) = only(out(last)) else { break };
            let node = &nodes[k];
            let other = node.input.iter().find(|i| i.as_str() != out(last));
            if node.op_type == op
                && let Some(c) = other.filter(|c| constant(c, consts, &const_nodes).is_some())
            {
                *slot = c.clone();
                remove.push(k);
                last = k;
            }
        }
        let [gamma, beta] = params;
        let fused = NodeProto {
            input: vec![x, gamma, beta],
            output: vec![out(last).to_string()],
            name: format!(
                "{} (a decomposed layer norm)",
                if nodes[m1].name.is_empty() {
                    out(m1)
                } else {
                    &nodes[m1].name
                }
            ),
            op_type: "LayerNormalization".into(),
            domain: String::new(),
            attribute: vec![
                AttributeProto {
                    name: "axis".into(),
                    r#type: 2,
                    i: axes[0],
                    ..Default::default()
                },
                AttributeProto {
                    name: "epsilon".into(),
                    r#type: 1,
                    f: eps,
                    ..Default::default()
                },
            ],
        };
        found.push((remove, fused, last));
    }
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
