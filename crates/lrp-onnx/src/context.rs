//! The state of one import while it walks the graph, and the context an operator's handler works in.

use std::collections::HashMap;

use lrp_core::Layer;

use crate::error::{OnnxError, Result};
use crate::fold::{MAX_FOLDED, Tensor};
use crate::proto::{AttributeProto, NodeProto, TensorProto};
use crate::value::{Batch, Computed, Val};

/// The network as it is built: nodes `(layer, values read)` and each value's per-sample shape.
pub(crate) struct Builder {
    pub nodes: Vec<(Layer, Vec<usize>)>,
    /// Per-sample shape of each network value (value 0 is the input).
    pub shapes: Vec<Vec<usize>>,
}

/// Everything the walk knows: constants, what each ONNX value is, the network built so far, and facts about the
/// graph that handlers consult.
pub(crate) struct GraphState {
    /// Constant tensors by ONNX name (initializers, `Constant` nodes, folded values).
    pub consts: HashMap<String, TensorProto>,
    /// What each ONNX value is.
    pub vals: HashMap<String, Val>,
    pub b: Builder,
    /// Number of readers of each ONNX value (nodes and the graph output).
    pub readers: HashMap<String, usize>,
    /// Things the user should know about the import (a dropped softmax, fused nodes).
    pub notes: Vec<String>,
    /// The default-domain opset.
    pub opset: i64,
    /// The exporter fixed the batch to 1: it writes 1 where the batch size goes in reshapes.
    pub batch_fixed_to_one: bool,
    /// The graph output's name.
    pub graph_output: String,
}

/// An operator handler: translates one node, recording what its outputs are.
pub(crate) type Handler = fn(&mut NodeCtx) -> Result<()>;

/// One node with what is known of its inputs, and the import's state to add to.
pub(crate) struct NodeCtx<'a> {
    pub node: &'a NodeProto,
    /// How the node is named in messages.
    pub label: String,
    /// What each input is (`None` for an omitted optional input).
    pub ins: Vec<Option<Val>>,
    pub st: &'a mut GraphState,
}

impl NodeCtx<'_> {
    /// An error about this node.
    pub(crate) fn err(&self, reason: impl Into<String>) -> OnnxError {
        OnnxError::Node {
            node: self.label.clone(),
            op_type: self.node.op_type.clone(),
            reason: reason.into(),
        }
    }

    /// The operator's name.
    pub(crate) fn op(&self) -> &str {
        &self.node.op_type
    }

    pub(crate) fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    pub(crate) fn int(&self, name: &str, default: i64) -> i64 {
        self.attr(name).map_or(default, |a| a.i)
    }

    pub(crate) fn float(&self, name: &str, default: f32) -> f32 {
        self.attr(name).map_or(default, |a| a.f)
    }

    pub(crate) fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.attr(name).map(|a| a.ints.clone())
    }

    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.attr(name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }

    /// The name of input `i`, if the node has it.
    pub(crate) fn input_name(&self, i: usize) -> Option<&str> {
        self.node.input.get(i).map(String::as_str).filter(|n| !n.is_empty())
    }

    /// The first output's name.
    pub(crate) fn out0(&self) -> Result<String> {
        self.node
            .output
            .first()
            .filter(|o| !o.is_empty())
            .cloned()
            .ok_or_else(|| self.err("has no output"))
    }

    /// The positions of the inputs that are values of the network.
    pub(crate) fn computed(&self) -> Vec<usize> {
        (0..self.ins.len()).filter(|&i| self.node_at(i).is_some()).collect()
    }

    /// Input `i` if it is a value of the network.
    pub(crate) fn node_at(&self, i: usize) -> Option<Computed> {
        match self.ins.get(i) {
            Some(Some(Val::Node(c))) => Some(c.clone()),
            _ => None,
        }
    }

    /// The first input that is a value of the network.
    pub(crate) fn x(&self) -> Result<Computed> {
        self.computed()
            .first()
            .and_then(|&i| self.node_at(i))
            .ok_or_else(|| self.err("reads no computed value"))
    }

    /// Input `i` if it is a shape holding the batch size: its dimensions and whether it is a scalar.
    pub(crate) fn sym_at(&self, i: usize) -> Option<(Vec<crate::value::Dim>, bool)> {
        match self.ins.get(i) {
            Some(Some(Val::Sym { dims, scalar })) => Some((dims.clone(), *scalar)),
            _ => None,
        }
    }

    /// Whether some input is a shape holding the batch size.
    pub(crate) fn any_sym(&self) -> bool {
        self.ins.iter().any(|v| matches!(v, Some(Val::Sym { .. })))
    }

    /// The constant at input `i`, if it is one.
    pub(crate) fn const_input(&self, i: usize) -> Option<&TensorProto> {
        match self.ins.get(i) {
            Some(Some(Val::Const)) => self.input_name(i).and_then(|n| self.st.consts.get(n)),
            _ => None,
        }
    }

    /// The constant at input `i`, which must be there.
    pub(crate) fn required(&self, i: usize, what: &str) -> Result<&TensorProto> {
        self.const_input(i)
            .ok_or_else(|| self.err(format!("needs {what} as input {i}, and it is missing")))
    }

    /// Input `i` as a folding tensor: `None` when the node does not have it; an error when it is not a constant.
    pub(crate) fn tensor(&self, i: usize) -> std::result::Result<Option<Tensor>, String> {
        match self.input_name(i) {
            None => Ok(None),
            Some(n) => match self
                .st
                .consts
                .get(n)
                .filter(|_| matches!(self.ins.get(i), Some(Some(Val::Const))))
            {
                Some(t) => Tensor::from_proto(t).map(Some).map_err(|e| e.to_string()),
                None => Err(format!("input '{n}' must be a constant here")),
            },
        }
    }

    /// Input `i` as a folding tensor, which must be there.
    pub(crate) fn tensor_req(&self, i: usize) -> std::result::Result<Tensor, String> {
        self.tensor(i)?.ok_or_else(|| format!("input {i} is missing"))
    }

    /// Input `i` as integers (a constant), which must be there.
    pub(crate) fn ints_input(&self, i: usize, what: &str) -> Result<Vec<i64>> {
        let t = self.const_input(i).ok_or_else(|| {
            self.err(format!(
                "{what} '{}' must be a constant",
                self.input_name(i).unwrap_or("?")
            ))
        })?;
        crate::tensor::to_i64(t)
    }

    /// Axes from input `input` (newer opsets) or the `axes` attribute.
    pub(crate) fn axes(&self, input: usize) -> std::result::Result<Option<Vec<i64>>, String> {
        if let Some(t) = self.tensor(input)? {
            return Ok(Some(t.ints()));
        }
        Ok(self.ints("axes"))
    }

    /// Whether input `i` is known to be all zeros (a zero constant, or zeros of a batch-dependent shape).
    pub(crate) fn zero_input(&self, i: usize) -> bool {
        match self.ins.get(i) {
            Some(Some(Val::Zeros)) => true,
            Some(Some(Val::Const)) => self
                .const_input(i)
                .is_some_and(|t| crate::tensor::to_f32(t).is_ok_and(|a| a.iter().all(|&v| v == 0.0))),
            _ => false,
        }
    }

    /// Whether output `i` is read by a node or is the graph output.
    pub(crate) fn output_used(&self, i: usize) -> bool {
        self.node
            .output
            .get(i)
            .is_some_and(|o| !o.is_empty() && self.st.readers.contains_key(o))
    }

    /// Whether this node writes the graph output.
    pub(crate) fn is_last(&self) -> bool {
        self.node.output.first() == Some(&self.st.graph_output)
    }

    /// Adds a layer reading `inputs`, checking its shapes; returns its output value.
    pub(crate) fn emit(&mut self, layer: Layer, inputs: Vec<usize>) -> Result<usize> {
        let b = &mut self.st.b;
        let in_shapes: Vec<&[usize]> = inputs.iter().map(|&v| b.shapes[v].as_slice()).collect();
        let out = layer
            .output_shape(b.nodes.len(), &in_shapes)
            .map_err(|e| OnnxError::Node {
                node: self.label.clone(),
                op_type: self.node.op_type.clone(),
                reason: e.to_string(),
            })?;
        b.nodes.push((layer, inputs));
        b.shapes.push(out);
        Ok(b.nodes.len())
    }

    /// The per-sample shape of network value `v`.
    pub(crate) fn shape_of(&self, v: usize) -> Vec<usize> {
        self.st.b.shapes[v].clone()
    }

    /// Records what output `i` is.
    pub(crate) fn set(&mut self, i: usize, v: Val) -> Result<()> {
        let name = self
            .node
            .output
            .get(i)
            .filter(|o| !o.is_empty())
            .cloned()
            .ok_or_else(|| self.err(format!("has no output {i}")))?;
        self.st.vals.insert(name, v);
        Ok(())
    }

    /// Output 0 is a layer's output with the given per-sample shape and batch position.
    pub(crate) fn set_node(&mut self, id: usize, shape: Vec<usize>, batch: Batch) -> Result<()> {
        self.set(0, Val::Node(Computed { id, shape, batch }))
    }

    /// Adds `layer` reading `x` and makes its output (with the batch where `x` has it) output 0.
    pub(crate) fn push(&mut self, layer: Layer, x: &Computed) -> Result<()> {
        let id = self.emit(layer, vec![x.id])?;
        let shape = self.shape_of(id);
        self.set_node(id, shape, x.batch)
    }

    /// Output 0 is the folded constant `t`.
    pub(crate) fn set_const(&mut self, t: Tensor) -> Result<()> {
        if t.data.len() > MAX_FOLDED {
            return Err(self.err(format!("folds to a constant of shape {:?}: too large", t.data.shape())));
        }
        let name = self.out0()?;
        self.st.consts.insert(name.clone(), t.to_proto(&name));
        self.st.vals.insert(name, Val::Const);
        Ok(())
    }

    /// An error unless `x` has the batch axis first in ONNX's layout (or merged into another axis).
    pub(crate) fn need_batch_first(&self, x: &Computed, what: &str) -> Result<()> {
        match x.batch {
            Batch::At(b) if b != 0 => Err(self.err(format!(
                "{what} needs the batch axis first, but its input has it at position {b}"
            ))),
            _ => Ok(()),
        }
    }

    /// `x` with the batch first: a merged batch whose tensor starts with a unit axis takes that axis back as the
    /// batch (a reshape of each sample, emitted here), so that image and dense layers see `[N, …]`.
    pub(crate) fn unmerge(&mut self, x: Computed) -> Result<Computed> {
        match (x.batch, x.shape.first()) {
            (Batch::Merged, Some(1)) if x.shape.len() > 1 => {
                let shape = x.shape[1..].to_vec();
                let id = self.emit(crate::ops::shape::reshape_layer(&shape), vec![x.id])?;
                Ok(Computed {
                    id,
                    shape,
                    batch: Batch::At(0),
                })
            }
            _ => Ok(x),
        }
    }

    /// The per-sample axis of ONNX axis `a` (possibly negative) of `x`, or an error naming what touches the batch.
    pub(crate) fn feature_axis(&self, x: &Computed, a: i64, what: &str) -> Result<usize> {
        let ax = crate::fold::axis(a, x.rank()).map_err(|e| self.err(e))?;
        x.feature_axis(ax)
            .ok_or_else(|| self.err(format!("{what} the batch axis")))
    }

    /// A note for the user.
    pub(crate) fn note(&mut self, text: String) {
        self.st.notes.push(text);
    }
}
