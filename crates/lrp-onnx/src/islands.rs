//! Elementwise islands: an activation an exporter decomposed into several elementwise nodes (SiLU as
//! `Mul(x, Sigmoid(x))`, GELU as `x·0.5·(1 + Erf(x/√2))`, Softplus behind `Where(Greater(x, 20), x, …)`,
//! HardSwish as `x·Clip(x + 3, 0, 6)/6`) is found as a subgraph whose only computed input is one value and whose
//! nodes are all elementwise, and imported as one activation: relevance passes through it, and the gradient
//! differentiates the whole island.
//!
//! An island starts at a node that reads two or more computed values (the mark of a decomposed activation; an
//! elementwise node with one computed input is imported on its own), and reaches back to the nearest value that
//! all of them derive from through elementwise nodes of one computed input. Scalings by a constant right after it
//! (GELU's `· 0.5`) join it.

use std::collections::{HashMap, HashSet};

use lrp_core::{BinaryFn, Expr, ExprOp, UnaryFn};

use crate::proto::{GraphProto, NodeProto, TensorProto};
use crate::tensor::to_f32;

/// Elementwise operators an island may contain.
fn elementwise(op: &str) -> bool {
    matches!(
        op,
        "Add"
            | "Sub"
            | "Mul"
            | "Div"
            | "Pow"
            | "Min"
            | "Max"
            | "Sigmoid"
            | "Tanh"
            | "Erf"
            | "Exp"
            | "Log"
            | "Sqrt"
            | "Neg"
            | "Abs"
            | "Reciprocal"
            | "Relu"
            | "Softplus"
            | "Where"
            | "Greater"
            | "Less"
            | "GreaterOrEqual"
            | "LessOrEqual"
            | "Equal"
            | "Clip"
            | "Cast"
            | "Identity"
    )
}

/// An island found in the graph.
pub(crate) struct Island {
    /// The value the island is a function of.
    pub root: String,
    /// Its nodes (indices into the graph's node list), in node order; the last one writes the island's output.
    pub nodes: Vec<usize>,
}

/// Finds the islands of a graph. `constant` tells whether a value is known before the input is (initializers,
/// `Constant` nodes and what is computed from them alone).
pub(crate) fn find(graph: &GraphProto, constant: &HashSet<String>) -> Vec<Island> {
    let nodes = &graph.node;
    let mut producer: HashMap<&str, usize> = HashMap::new();
    let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (k, n) in nodes.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            producer.insert(o, k);
        }
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            readers.entry(i).or_default().push(k);
        }
    }
    let graph_outputs: HashSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let computed_inputs = |n: &NodeProto| -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for i in n
            .input
            .iter()
            .filter(|i| !i.is_empty() && !constant.contains(i.as_str()))
        {
            if !v.contains(i) {
                v.push(i.clone());
            }
        }
        v
    };
    // The values `v` derives from through elementwise nodes of one computed input, `v` first.
    let chain = |v: &str| -> Vec<String> {
        let mut out = vec![v.to_string()];
        let mut cur = v.to_string();
        while let Some(&p) = producer.get(cur.as_str()) {
            let n = &nodes[p];
            let ins = computed_inputs(n);
            if !elementwise(&n.op_type) || ins.len() != 1 {
                break;
            }
            cur = ins[0].clone();
            out.push(cur.clone());
        }
        out
    };
    let mut taken: HashSet<usize> = HashSet::new();
    let mut islands = Vec::new();
    for (m, node) in nodes.iter().enumerate() {
        if taken.contains(&m) || !elementwise(&node.op_type) || !node.domain.is_empty() && node.domain != "ai.onnx" {
            continue;
        }
        let ins = computed_inputs(node);
        if ins.len() < 2 {
            continue;
        }
        let chains: Vec<Vec<String>> = ins.iter().map(|i| chain(i)).collect();
        let Some(root) = chains[0]
            .iter()
            .find(|v| chains[1..].iter().all(|c| c.contains(v)))
            .cloned()
        else {
            continue;
        };
        // Every node between the root and m.
        let mut member: HashSet<usize> = HashSet::from([m]);
        let mut stack: Vec<String> = ins.clone();
        let mut ok = true;
        while let Some(v) = stack.pop() {
            if v == root {
                continue;
            }
            match producer.get(v.as_str()) {
                Some(&p) if elementwise(&nodes[p].op_type) && !taken.contains(&p) => {
                    if member.insert(p) {
                        stack.extend(computed_inputs(&nodes[p]));
                    }
                }
                _ => {
                    ok = false;
                    break;
                }
            }
        }
        if !ok {
            continue;
        }
        // Scalings by a constant (and further joins over the island) right after it belong to it.
        let mut last = m;
        loop {
            let out = &nodes[last].output[0];
            let rs = readers.get(out.as_str()).cloned().unwrap_or_default();
            let [next] = rs[..] else { break };
            if graph_outputs.contains(out.as_str()) {
                break;
            }
            let n = &nodes[next];
            let nins = computed_inputs(n);
            let scaling = matches!(n.op_type.as_str(), "Mul" | "Div") && nins.len() == 1;
            let join = elementwise(&n.op_type)
                && nins.len() >= 2
                && nins
                    .iter()
                    .all(|i| *i == root || producer.get(i.as_str()).is_some_and(|p| member.contains(p)));
            if !(scaling || join) {
                break;
            }
            member.insert(next);
            last = next;
        }
        // No value inside the island may be read from outside it.
        let inner_ok = member.iter().all(|&k| {
            k == last
                || nodes[k].output.iter().filter(|o| !o.is_empty()).all(|o| {
                    !graph_outputs.contains(o.as_str())
                        && readers
                            .get(o.as_str())
                            .is_none_or(|rs| rs.iter().all(|r| member.contains(r)))
                })
        });
        if !inner_ok || member.iter().any(|&k| k > last) {
            continue;
        }
        let mut list: Vec<usize> = member.into_iter().collect();
        list.sort_unstable();
        taken.extend(list.iter().copied());
        islands.push(Island { root, nodes: list });
    }
    islands
}

/// A scalar constant of a node.
fn scalar(t: &TensorProto) -> Result<f32, String> {
    let a = to_f32(t).map_err(|e| e.to_string())?;
    if a.len() != 1 {
        return Err(format!(
            "constant '{}' of shape {:?} is not a scalar (an island's constants must be)",
            t.name,
            a.shape()
        ));
    }
    Ok(a.iter().next().copied().expect("one value"))
}

/// Compiles an island into one expression of its root.
pub(crate) fn compile(
    graph: &GraphProto,
    island: &Island,
    consts: &HashMap<String, TensorProto>,
) -> Result<Expr, String> {
    let mut regs: HashMap<String, usize> = HashMap::from([(island.root.clone(), 0)]);
    let mut ops: Vec<ExprOp> = Vec::new();
    let operand = |name: &str, ops: &mut Vec<ExprOp>, regs: &HashMap<String, usize>| -> Result<usize, String> {
        if let Some(&r) = regs.get(name) {
            return Ok(r);
        }
        let t = consts
            .get(name)
            .ok_or_else(|| format!("'{name}' is neither the island's input, one of its values, nor a constant"))?;
        ops.push(ExprOp::Const(scalar(t)?));
        Ok(ops.len())
    };
    for &k in &island.nodes {
        let n = &graph.node[k];
        let mut args = Vec::new();
        for i in &n.input {
            args.push(if i.is_empty() {
                None
            } else {
                Some(operand(i, &mut ops, &regs)?)
            });
        }
        let arg = |i: usize| -> Result<usize, String> {
            args.get(i)
                .copied()
                .flatten()
                .ok_or_else(|| format!("{} has no input {i}", n.op_type))
        };
        let unary = |f: UnaryFn| -> Result<ExprOp, String> { Ok(ExprOp::Unary(f, arg(0)?)) };
        let binary = |f: BinaryFn| -> Result<ExprOp, String> { Ok(ExprOp::Binary(f, arg(0)?, arg(1)?)) };
        let op = match n.op_type.as_str() {
            "Identity" | "Cast" => {
                regs.insert(n.output[0].clone(), arg(0)?);
                continue;
            }
            "Add" => binary(BinaryFn::Add)?,
            "Sub" => binary(BinaryFn::Sub)?,
            "Mul" => binary(BinaryFn::Mul)?,
            "Div" => binary(BinaryFn::Div)?,
            "Pow" => binary(BinaryFn::Pow)?,
            "Min" if n.input.len() == 2 => binary(BinaryFn::Min)?,
            "Max" if n.input.len() == 2 => binary(BinaryFn::Max)?,
            "Greater" => binary(BinaryFn::Greater)?,
            "Less" => binary(BinaryFn::Less)?,
            "GreaterOrEqual" => binary(BinaryFn::GreaterOrEqual)?,
            "LessOrEqual" => binary(BinaryFn::LessOrEqual)?,
            "Equal" => binary(BinaryFn::Equal)?,
            "Sigmoid" => unary(UnaryFn::Sigmoid)?,
            "Tanh" => unary(UnaryFn::Tanh)?,
            "Erf" => unary(UnaryFn::Erf)?,
            "Exp" => unary(UnaryFn::Exp)?,
            "Log" => unary(UnaryFn::Log)?,
            "Sqrt" => unary(UnaryFn::Sqrt)?,
            "Neg" => unary(UnaryFn::Neg)?,
            "Abs" => unary(UnaryFn::Abs)?,
            "Reciprocal" => unary(UnaryFn::Reciprocal)?,
            "Relu" => unary(UnaryFn::Relu)?,
            "Softplus" => unary(UnaryFn::Softplus)?,
            "Where" => ExprOp::Where(arg(0)?, arg(1)?, arg(2)?),
            "Clip" => {
                let x = arg(0)?;
                let mut r = x;
                if let Some(hi) = args.get(2).copied().flatten() {
                    ops.push(ExprOp::Binary(BinaryFn::Min, r, hi));
                    r = ops.len();
                }
                if let Some(lo) = args.get(1).copied().flatten() {
                    ops.push(ExprOp::Binary(BinaryFn::Max, r, lo));
                    r = ops.len();
                }
                regs.insert(n.output[0].clone(), r);
                continue;
            }
            other => return Err(format!("{other} cannot be part of an elementwise island")),
        };
        ops.push(op);
        regs.insert(n.output[0].clone(), ops.len());
    }
    let out = &graph.node[*island.nodes.last().expect("non-empty")].output[0];
    let r = regs[out];
    if r != ops.len() {
        // The result is an earlier register (e.g. a final Identity): copy it to the end.
        ops.push(ExprOp::Const(0.0));
        ops.push(ExprOp::Binary(BinaryFn::Add, r, ops.len()));
    }
    let e = Expr { ops };
    e.validate()?;
    Ok(e)
}
