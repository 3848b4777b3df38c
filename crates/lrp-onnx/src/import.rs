//! Walks an ONNX graph in node order and builds the network graph.
//!
//! Every ONNX value becomes one of: a constant (initializers, `Constant` nodes, and anything computed from
//! constants alone, folded at import), a shape that holds the batch size as a symbol (what `Shape` of a computed
//! value gives, and what `Gather`/`Slice`/`Concat`/`Unsqueeze`/`Cast` make of it), zeros of such a shape
//! (`ConstantOfShape`, e.g. an LSTM's initial state), or a value of the network with its per-sample shape and the
//! position of its batch axis in ONNX's layout (our tensors stay batch-first; `Transpose`, `Squeeze` and `LSTM` can
//! move ONNX's batch axis).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};

use lrp_core::{Activation, Arith, ArithOp, Layer, Network};
use ndarray::{ArrayD, Axis, IxDyn};
use prost::Message;

use crate::error::{OnnxError, Result};
use crate::fold::{MAX_FOLDED, Tensor, axis as norm_axis, broadcast_shape, gather, slice_indices};
use crate::ops::{Ctx, Step, translate};
use crate::proto::{AttributeProto, ModelProto, NodeProto, TensorProto};
use crate::tensor::{to_f32, to_i64};

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

/// Reads and imports an ONNX file; weights stored as external data are read from beside it.
pub fn import_file(path: &Path) -> Result<Imported> {
    // Only regular files: /dev/zero or a pipe would be read until memory runs out.
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(OnnxError::Decode(format!("{} is not a regular file", path.display()))),
        Err(e) => return Err(OnnxError::Decode(format!("cannot read {}: {e}", path.display()))),
    }
    let bytes = std::fs::read(path).map_err(|e| OnnxError::Decode(format!("cannot read {}: {e}", path.display())))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() {
        std::path::PathBuf::from(".")
    } else {
        dir
    };
    import_with(&bytes, Some(&dir))
}

/// Imports an ONNX model from its bytes (external data is refused: there is no folder to read it from).
pub fn import_bytes(bytes: &[u8]) -> Result<Imported> {
    import_with(bytes, None)
}

/// How a node is named in messages: its name, or its position and type when it has none.
pub(crate) fn node_label(node: &NodeProto, index: usize) -> String {
    if node.name.is_empty() {
        format!("#{index} (unnamed)")
    } else {
        format!("'{}'", node.name)
    }
}

/// One dimension of a shape computed at import.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Dim {
    Known(i64),
    Batch,
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Known(v) => write!(f, "{v}"),
            Dim::Batch => write!(f, "N"),
        }
    }
}

/// A shape as ONNX writes it, the batch size as `N`: `[N, -1]`.
fn dims_text(d: &[Dim]) -> String {
    format!("[{}]", d.iter().map(Dim::to_string).collect::<Vec<_>>().join(", "))
}

/// What an ONNX value is, as far as the import knows.
#[derive(Clone, Debug)]
enum Val {
    /// A constant; its tensor is in the constants map.
    Const,
    /// A shape vector (or a scalar, when `scalar`) holding the batch size.
    Sym { dims: Vec<Dim>, scalar: bool },
    /// Zeros of a shape that holds the batch size.
    Zeros,
    /// A value of the network.
    Node {
        id: usize,
        shape: Vec<usize>,
        batch_axis: usize,
    },
}

/// The ONNX layout of a network value: its per-sample shape with the batch axis put back.
fn full_dims(shape: &[usize], batch_axis: usize) -> Vec<Dim> {
    let mut d: Vec<Dim> = shape.iter().map(|&v| Dim::Known(v as i64)).collect();
    d.insert(batch_axis.min(d.len()), Dim::Batch);
    d
}

/// Reads the external data of one initializer from `dir`, refusing locations outside it.
fn load_external(t: &mut TensorProto, dir: Option<&Path>) -> Result<()> {
    let bad = |reason: String| OnnxError::Initializer {
        name: t.name.clone(),
        reason,
    };
    let Some(dir) = dir else {
        return Err(bad(
            "stored as external data, which needs the model's folder: import the model from its file".into(),
        ));
    };
    let mut location = None;
    let (mut offset, mut length) = (0u64, None);
    for e in &t.external_data {
        match e.key.as_str() {
            "location" => location = Some(e.value.clone()),
            "offset" => {
                offset = e
                    .value
                    .parse()
                    .map_err(|_| bad(format!("external data offset '{}'", e.value)))?
            }
            "length" => {
                length = Some(
                    e.value
                        .parse::<u64>()
                        .map_err(|_| bad(format!("external data length '{}'", e.value)))?,
                )
            }
            _ => {}
        }
    }
    let location = location.ok_or_else(|| bad("stored as external data without a location".into()))?;
    let rel = Path::new(&location);
    if location.is_empty()
        || rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(bad(format!(
            "external data location '{location}' is not a file inside the model's folder; refused"
        )));
    }
    let path = dir.join(rel);
    // Symbolic links must not lead out of the folder either.
    let (real_dir, real) = match (dir.canonicalize(), path.canonicalize()) {
        (Ok(d), Ok(p)) => (d, p),
        (_, Err(e)) => return Err(bad(format!("external data file '{}': {e}", path.display()))),
        (Err(e), _) => return Err(bad(format!("model folder '{}': {e}", dir.display()))),
    };
    if !real.starts_with(&real_dir) {
        return Err(bad(format!(
            "external data location '{location}' leads outside the model's folder; refused"
        )));
    }
    let mut file =
        std::fs::File::open(&real).map_err(|e| bad(format!("external data file '{}': {e}", path.display())))?;
    let size = file
        .metadata()
        .map_err(|e| bad(format!("external data file '{}': {e}", path.display())))?
        .len();
    let length = match length {
        Some(l) => l,
        None => size.checked_sub(offset).unwrap_or(u64::MAX),
    };
    match offset.checked_add(length) {
        Some(end) if end <= size => {}
        _ => {
            return Err(bad(format!(
                "external data at offset {offset}, length {length} goes past the end of '{location}' ({size} \
                 bytes): the file is truncated or does not belong to this model"
            )));
        }
    }
    let mut buf = vec![0u8; length as usize];
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(&mut buf))
        .map_err(|e| bad(format!("reading external data from '{location}': {e}")))?;
    t.raw_data = buf;
    t.data_location = 0;
    t.external_data.clear();
    Ok(())
}

struct Builder {
    nodes: Vec<(Layer, Vec<usize>)>,
    /// Per-sample shape of each network value.
    shapes: Vec<Vec<usize>>,
    /// Number of readers of each ONNX value (nodes and the graph output).
    readers: HashMap<String, usize>,
}

impl Builder {
    fn emit(&mut self, layer: Layer, inputs: Vec<usize>, node: &NodeProto, label: &str) -> Result<usize> {
        let in_shapes: Vec<&[usize]> = inputs.iter().map(|&v| self.shapes[v].as_slice()).collect();
        let out = layer
            .output_shape(self.nodes.len(), &in_shapes)
            .map_err(|e| OnnxError::Node {
                node: label.to_string(),
                op_type: node.op_type.clone(),
                reason: e.to_string(),
            })?;
        self.nodes.push((layer, inputs));
        self.shapes.push(out);
        Ok(self.nodes.len())
    }
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn int_attr(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map_or(default, |a| a.i)
}

fn float_attr(node: &NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).map_or(default, |a| a.f)
}

/// Imports with `dir` as the folder external data is read from.
fn import_with(bytes: &[u8], dir: Option<&Path>) -> Result<Imported> {
    let mut model = ModelProto::decode(bytes).map_err(|e| OnnxError::Decode(e.to_string()))?;
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
    let mut graph = model
        .graph
        .take()
        .ok_or_else(|| OnnxError::Graph("the model has no graph".into()))?;

    let mut consts: HashMap<String, TensorProto> = HashMap::new();
    for mut t in std::mem::take(&mut graph.initializer) {
        if t.data_location == 1 {
            load_external(&mut t, dir)?;
        }
        consts.insert(t.name.clone(), t);
    }
    let mut vals: HashMap<String, Val> = consts.keys().map(|k| (k.clone(), Val::Const)).collect();
    let fused = crate::patterns::fuse_layer_norms(&mut graph, &consts);

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
    let mut input_shape = Vec::with_capacity(dims.len() - 1);
    for (axis, d) in dims.iter().enumerate().skip(1) {
        match d.dim_value {
            Some(v) if v > 0 && v <= 1 << 31 => input_shape.push(v as usize),
            _ => {
                return Err(OnnxError::Graph(format!(
                    "input '{}' axis {axis} has no fixed size ({}); only the batch axis may be dynamic",
                    input.name,
                    d.dim_param
                        .clone()
                        .unwrap_or_else(|| d.dim_value.map_or("unknown".into(), |v| v.to_string()))
                )));
            }
        }
    }
    // An exporter that fixed the batch to 1 writes 1 where the batch size goes in reshapes.
    let batch_fixed_to_one = dims[0].dim_value == Some(1);
    vals.insert(
        input.name.clone(),
        Val::Node {
            id: 0,
            shape: input_shape.clone(),
            batch_axis: 0,
        },
    );

    let mut readers: HashMap<String, usize> = HashMap::new();
    for node in &graph.node {
        for name in node.input.iter().filter(|n| !n.is_empty()) {
            *readers.entry(name.clone()).or_default() += 1;
        }
    }
    *readers.entry(output.name.clone()).or_default() += 1;
    let mut b = Builder {
        nodes: Vec::new(),
        shapes: vec![input_shape.clone()],
        readers,
    };
    let mut notes = Vec::new();
    if fused > 0 {
        notes.push(format!(
            "{fused} layer norm(s) written as ReduceMean/Sub/Pow/Sqrt/Div were imported as layer-norm nodes"
        ));
    }

    // Values known before the input is: initializers, Constant nodes, and what only they compute.
    let mut constant: std::collections::HashSet<String> = consts.keys().cloned().collect();
    for node in &graph.node {
        if node.input.iter().all(|i| i.is_empty() || constant.contains(i)) {
            constant.extend(node.output.iter().filter(|o| !o.is_empty()).cloned());
        }
    }
    let islands = crate::islands::find(&graph, &constant);
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
            if isl.nodes.last() != Some(&index) {
                continue;
            }
            let island_err = |reason: String| OnnxError::Node {
                node: label.clone(),
                op_type: node.op_type.clone(),
                reason: format!("ends an elementwise island over '{}': {reason}", isl.root),
            };
            let Some(Val::Node { id, shape, batch_axis }) = vals.get(&isl.root).cloned() else {
                return Err(island_err("its input is not a computed value".into()));
            };
            let expr = crate::islands::compile(&graph, isl, &consts).map_err(island_err)?;
            let new = b.emit(Layer::Activation(Activation::Island(expr)), vec![id], node, &label)?;
            vals.insert(
                node.output[0].clone(),
                Val::Node {
                    id: new,
                    shape,
                    batch_axis,
                },
            );
            continue;
        }
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(OnnxError::UnsupportedOp {
                op_type: format!("{}:{}", node.domain, node.op_type),
                node: label,
                hint: String::new(),
            });
        }
        let node_err = |reason: String| OnnxError::Node {
            node: label.clone(),
            op_type: node.op_type.clone(),
            reason,
        };
        // What each input is.
        let mut ins: Vec<Option<Val>> = Vec::with_capacity(node.input.len());
        for name in &node.input {
            if name.is_empty() {
                ins.push(None);
                continue;
            }
            match vals.get(name) {
                Some(v) => ins.push(Some(v.clone())),
                None => {
                    return Err(node_err(format!(
                        "input '{name}' is missing: no initializer, constant or earlier node provides it"
                    )));
                }
            }
        }
        if node.op_type == "Constant" {
            let t = constant_node(node).map_err(node_err)?;
            for out in node.output.iter().filter(|o| !o.is_empty()) {
                let mut t = t.clone();
                t.name = out.clone();
                consts.insert(out.clone(), t);
                vals.insert(out.clone(), Val::Const);
            }
            continue;
        }
        let computed: Vec<usize> = (0..ins.len())
            .filter(|&i| matches!(ins[i], Some(Val::Node { .. })))
            .collect();
        if computed.is_empty() {
            // Constants and shapes only: fold.
            let out = fold(node, &ins, &consts, opset).map_err(node_err)?;
            let name = node
                .output
                .first()
                .filter(|o| !o.is_empty())
                .ok_or_else(|| node_err("has no output".into()))?;
            match out {
                Folded::Const(t) => {
                    if t.data.len() > MAX_FOLDED {
                        return Err(node_err(format!(
                            "folds to a constant of shape {:?}: too large",
                            t.data.shape()
                        )));
                    }
                    consts.insert(name.clone(), t.to_proto(name));
                    vals.insert(name.clone(), Val::Const);
                }
                Folded::Val(v) => {
                    vals.insert(name.clone(), v);
                }
            }
            continue;
        }
        let outs = computed_node(
            &mut b,
            node,
            &label,
            &ins,
            &consts,
            opset,
            batch_fixed_to_one,
            &output.name,
            &mut notes,
        )?;
        for (name, v) in outs {
            vals.insert(name, v);
        }
    }

    let (out_id, out_batch_axis) = match vals.get(&output.name) {
        Some(Val::Node { id, batch_axis, .. }) => (*id, *batch_axis),
        Some(_) => {
            return Err(OnnxError::Graph(format!(
                "the graph output '{}' does not depend on the input",
                output.name
            )));
        }
        None => {
            return Err(OnnxError::Graph(format!(
                "no node writes the graph output '{}'",
                output.name
            )));
        }
    };
    if out_batch_axis != 0 {
        return Err(OnnxError::Graph(format!(
            "the graph output '{}' does not have the batch axis first",
            output.name
        )));
    }
    if out_id == 0 {
        return Err(OnnxError::Graph(
            "the graph computes nothing lrp can explain (no layers)".into(),
        ));
    }
    // Keep only the nodes the output depends on (an LSTM's unused states, shape helpers, dead branches).
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
            "{dropped} computed value(s) do not lead to the output '{}' and were left out",
            output.name
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
    let network = Network::graph(input_shape, nodes)?;
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

/// The tensor of a `Constant` node.
pub(crate) fn constant_node(node: &NodeProto) -> std::result::Result<TensorProto, String> {
    if let Some(t) = attr(node, "value").and_then(|a| a.t.as_ref()) {
        return Ok(t.clone());
    }
    let t = if let Some(a) = attr(node, "value_float") {
        Tensor {
            data: ArrayD::from_elem(IxDyn(&[]), a.f as f64),
            int: false,
        }
    } else if let Some(a) = attr(node, "value_floats") {
        Tensor {
            data: ArrayD::from_shape_vec(IxDyn(&[a.floats.len()]), a.floats.iter().map(|&v| v as f64).collect())
                .expect("1-D"),
            int: false,
        }
    } else if let Some(a) = attr(node, "value_int") {
        Tensor::scalar_int(a.i)
    } else if let Some(a) = attr(node, "value_ints") {
        Tensor::vec_int(&a.ints)
    } else {
        return Err("only tensor, float and int constants are supported".into());
    };
    Ok(t.to_proto(""))
}

enum Folded {
    Const(Tensor),
    Val(Val),
}

/// A constant input as a folding tensor.
fn tensor(
    consts: &HashMap<String, TensorProto>,
    node: &NodeProto,
    i: usize,
) -> std::result::Result<Option<Tensor>, String> {
    match node.input.get(i).filter(|n| !n.is_empty()) {
        None => Ok(None),
        Some(n) => match consts.get(n) {
            Some(t) => Tensor::from_proto(t).map(Some).map_err(|e| e.to_string()),
            None => Err(format!("input '{n}' must be a constant here")),
        },
    }
}

/// Axes from input 1 (newer opsets) or the `axes` attribute.
fn axes_of(
    node: &NodeProto,
    consts: &HashMap<String, TensorProto>,
    input: usize,
) -> std::result::Result<Option<Vec<i64>>, String> {
    if let Some(t) = tensor(consts, node, input)? {
        return Ok(Some(t.ints()));
    }
    Ok(attr(node, "axes").map(|a| a.ints.clone()))
}

/// Folds a node whose inputs are constants or batch-holding shapes.
fn fold(
    node: &NodeProto,
    ins: &[Option<Val>],
    consts: &HashMap<String, TensorProto>,
    opset: i64,
) -> std::result::Result<Folded, String> {
    let op = node.op_type.as_str();
    let sym_at = |i: usize| match ins.get(i) {
        Some(Some(Val::Sym { dims, scalar })) => Some((dims.clone(), *scalar)),
        _ => None,
    };
    let any_sym = ins.iter().any(|v| matches!(v, Some(Val::Sym { .. })));
    let any_zeros = ins.iter().any(|v| matches!(v, Some(Val::Zeros)));
    if any_zeros {
        return match op {
            "Identity" | "Cast" | "Expand" => Ok(Folded::Val(Val::Zeros)),
            _ => Err(format!(
                "{op} of zeros whose shape depends on the batch size is not supported"
            )),
        };
    }
    if any_sym {
        // Shape arithmetic that carries the batch size.
        let as_dims = |i: usize| -> std::result::Result<Vec<Dim>, String> {
            if let Some((d, _)) = sym_at(i) {
                return Ok(d);
            }
            let t = tensor(consts, node, i)?.ok_or("missing input")?;
            Ok(t.ints().into_iter().map(Dim::Known).collect())
        };
        let (dims, scalar) = match op {
            "Identity" | "Cast" => sym_at(0).ok_or("expected a shape")?,
            "Gather" => {
                let (d, _) = sym_at(0).ok_or("Gather from a computed shape needs the shape as data")?;
                let idx = tensor(consts, node, 1)?.ok_or("Gather needs constant indices")?;
                if idx.data.ndim() > 1 || norm_axis(int_attr(node, "axis", 0), 1)? != 0 {
                    return Err("Gather of a shape must pick with 0-D or 1-D indices along axis 0".into());
                }
                let all = ndarray::Array1::from(d).into_dyn();
                let picked = gather(&all, 0, &idx.data)?;
                (picked.iter().copied().collect(), idx.data.ndim() == 0)
            }
            "Unsqueeze" => {
                let (d, scalar) = sym_at(0).ok_or("expected a shape")?;
                let axes = axes_of(node, consts, 1)?.unwrap_or_default();
                if !(scalar && axes == [0] || !scalar && axes.is_empty()) {
                    return Err(format!("Unsqueeze of a shape with axes {axes:?} is not supported"));
                }
                (d, false)
            }
            "Squeeze" => {
                let (d, _) = sym_at(0).ok_or("expected a shape")?;
                if d.len() != 1 {
                    return Err("Squeeze of a shape with more than one entry".into());
                }
                (d, true)
            }
            "Concat" => {
                let mut all = Vec::new();
                for i in 0..node.input.len() {
                    all.extend(as_dims(i)?);
                }
                (all, false)
            }
            "Slice" => {
                let (d, _) = sym_at(0).ok_or("expected a shape")?;
                let start = tensor(consts, node, 1)?.ok_or("Slice needs starts")?.ints();
                let end = tensor(consts, node, 2)?.ok_or("Slice needs ends")?.ints();
                let step = tensor(consts, node, 4)?.map(|t| t.ints()).unwrap_or(vec![1]);
                let (&[s], &[e], &[st]) = (&start[..], &end[..], &step[..]) else {
                    return Err("Slice of a shape must have one start, end and step".into());
                };
                let idx = slice_indices(d.len(), s, e, st)?;
                (idx.iter().map(|&i| d[i]).collect(), false)
            }
            "ConstantOfShape" => {
                sym_at(0).ok_or("expected a shape")?;
                let value = attr(node, "value")
                    .and_then(|a| a.t.as_ref())
                    .map(|t| Tensor::from_proto(t).map_err(|e| e.to_string()))
                    .transpose()?;
                if value.is_some_and(|v| v.data.iter().any(|&x| x != 0.0)) {
                    return Err("ConstantOfShape with a non-zero value and a batch-dependent shape".into());
                }
                return Ok(Folded::Val(Val::Zeros));
            }
            other => {
                return Err(format!(
                    "{other} on a shape that holds the batch size is not supported (only Gather, Slice, Concat, \
                     Unsqueeze, Squeeze, Cast and ConstantOfShape are)"
                ));
            }
        };
        if dims.iter().all(|d| matches!(d, Dim::Known(_))) {
            let v: Vec<i64> = dims
                .iter()
                .map(|d| match d {
                    Dim::Known(v) => *v,
                    Dim::Batch => unreachable!(),
                })
                .collect();
            let t = if scalar {
                Tensor::scalar_int(v[0])
            } else {
                Tensor::vec_int(&v)
            };
            return Ok(Folded::Const(t));
        }
        return Ok(Folded::Val(Val::Sym { dims, scalar }));
    }
    // Constants only.
    let x = |i: usize| -> std::result::Result<Tensor, String> {
        tensor(consts, node, i)?.ok_or_else(|| format!("input {i} is missing"))
    };
    let t = match op {
        "Identity" => x(0)?,
        "Cast" => {
            let mut t = x(0)?;
            let to = int_attr(node, "to", 1);
            let int = !matches!(to, 1 | 10 | 11 | 16);
            if int && !t.int {
                t.data.mapv_inplace(f64::trunc);
            }
            t.int = int;
            t
        }
        "Shape" => {
            let t = x(0)?;
            let mut d: Vec<i64> = t.data.shape().iter().map(|&v| v as i64).collect();
            let r = d.len() as i64;
            let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let (s, e) = (
                clampi(int_attr(node, "start", 0)),
                clampi(attr(node, "end").map_or(r, |a| a.i)),
            );
            d = d[s..e.max(s)].to_vec();
            Tensor::vec_int(&d)
        }
        "Unsqueeze" => {
            let t = x(0)?;
            let axes = axes_of(node, consts, 1)?.ok_or("Unsqueeze needs axes")?;
            let rank = t.data.ndim() + axes.len();
            let mut ax: Vec<usize> = axes.iter().map(|&a| norm_axis(a, rank)).collect::<Result<_, _>>()?;
            ax.sort_unstable();
            let mut data = t.data;
            for a in ax {
                data = data.insert_axis(Axis(a));
            }
            Tensor { data, int: t.int }
        }
        "Squeeze" => {
            let t = x(0)?;
            let axes = axes_of(node, consts, 1)?;
            let rank = t.data.ndim();
            let mut ax: Vec<usize> = match axes {
                Some(a) => a.iter().map(|&a| norm_axis(a, rank)).collect::<Result<_, _>>()?,
                None => (0..rank).filter(|&a| t.data.shape()[a] == 1).collect(),
            };
            ax.sort_unstable();
            let mut data = t.data;
            for a in ax.into_iter().rev() {
                if data.shape()[a] != 1 {
                    return Err(format!("Squeeze of axis {a} of size {}", data.shape()[a]));
                }
                data = data.index_axis_move(Axis(a), 0);
            }
            Tensor { data, int: t.int }
        }
        "Concat" => {
            let parts: Vec<Tensor> = (0..node.input.len()).map(x).collect::<Result<_, _>>()?;
            let rank = parts[0].data.ndim();
            let a = norm_axis(int_attr(node, "axis", 0), rank)?;
            let views: Vec<_> = parts.iter().map(|p| p.data.view()).collect();
            Tensor {
                data: ndarray::concatenate(Axis(a), &views).map_err(|e| format!("Concat: {e}"))?,
                int: parts[0].int,
            }
        }
        "Slice" => {
            let t = x(0)?;
            let starts = x(1)?.ints();
            let ends = x(2)?.ints();
            let rank = t.data.ndim();
            let axes = match tensor(consts, node, 3)? {
                Some(a) => a.ints(),
                None => (0..starts.len() as i64).collect(),
            };
            let steps = match tensor(consts, node, 4)? {
                Some(s) => s.ints(),
                None => vec![1; starts.len()],
            };
            if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
                return Err("Slice: starts, ends, axes and steps differ in length".into());
            }
            let mut data = t.data;
            for i in 0..starts.len() {
                let a = norm_axis(axes[i], rank)?;
                let idx = slice_indices(data.shape()[a], starts[i], ends[i], steps[i])?;
                data = data.select(Axis(a), &idx);
            }
            Tensor { data, int: t.int }
        }
        "Gather" => {
            let t = x(0)?;
            let idx = x(1)?;
            let a = norm_axis(int_attr(node, "axis", 0), t.data.ndim())?;
            Tensor {
                data: gather(&t.data, a, &idx.data)?,
                int: t.int,
            }
        }
        "Reshape" => {
            let t = x(0)?;
            let target = x(1)?.ints();
            let shape = reshape_const(t.data.shape(), &target, int_attr(node, "allowzero", 0) != 0)?;
            Tensor {
                data: t.data.into_shape_with_order(IxDyn(&shape)).map_err(|e| e.to_string())?,
                int: t.int,
            }
        }
        "Transpose" => {
            let t = x(0)?;
            let rank = t.data.ndim();
            let perm: Vec<usize> = match attr(node, "perm") {
                Some(p) => p.ints.iter().map(|&v| norm_axis(v, rank)).collect::<Result<_, _>>()?,
                None => (0..rank).rev().collect(),
            };
            let mut sorted = perm.clone();
            sorted.sort_unstable();
            if sorted != (0..rank).collect::<Vec<_>>() {
                return Err(format!("perm {perm:?} is not a permutation"));
            }
            Tensor {
                data: t.data.permuted_axes(perm).as_standard_layout().into_owned(),
                int: t.int,
            }
        }
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" => {
            let (a, c) = (x(0)?, x(1)?);
            broadcast_shape(a.data.shape(), c.data.shape())
                .ok_or_else(|| format!("shapes {:?} and {:?} do not broadcast", a.data.shape(), c.data.shape()))?;
            let int = a.int && c.int;
            let data = match op {
                "Add" => &a.data + &c.data,
                "Sub" => &a.data - &c.data,
                "Mul" => &a.data * &c.data,
                "Div" if int => {
                    if c.data.iter().any(|&v| v == 0.0) {
                        return Err("integer division by zero".into());
                    }
                    (&a.data / &c.data).mapv(f64::trunc)
                }
                "Div" => &a.data / &c.data,
                "Pow" => broadcast_with(&a.data, &c.data, f64::powf),
                "Max" => broadcast_with(&a.data, &c.data, f64::max),
                _ => broadcast_with(&a.data, &c.data, f64::min),
            };
            Tensor { data, int }
        }
        "Neg" | "Sqrt" | "Reciprocal" | "Abs" => {
            let mut t = x(0)?;
            match op {
                "Neg" => t.data.mapv_inplace(|v| -v),
                "Sqrt" => t.data.mapv_inplace(f64::sqrt),
                "Abs" => t.data.mapv_inplace(f64::abs),
                _ => t.data.mapv_inplace(|v| 1.0 / v),
            }
            t
        }
        "ConstantOfShape" => {
            let shape = x(0)?.ints();
            let mut count = 1usize;
            for &d in &shape {
                if d < 0 {
                    return Err(format!("ConstantOfShape of a negative shape {shape:?}"));
                }
                count = count
                    .checked_mul(d as usize)
                    .filter(|&c| c <= MAX_FOLDED)
                    .ok_or_else(|| format!("ConstantOfShape of shape {shape:?} is too large"))?;
            }
            let value = match attr(node, "value").and_then(|a| a.t.as_ref()) {
                Some(t) => Tensor::from_proto(t).map_err(|e| e.to_string())?,
                None => Tensor {
                    data: ArrayD::zeros(IxDyn(&[1])),
                    int: false,
                },
            };
            let v = value.data.iter().next().copied().unwrap_or(0.0);
            let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
            Tensor {
                data: ArrayD::from_elem(IxDyn(&dims), v),
                int: value.int,
            }
        }
        "Range" => {
            let (s, l, d) = (x(0)?, x(1)?, x(2)?);
            let first = |t: &Tensor| t.data.iter().next().copied().unwrap_or(0.0);
            let (s, l, d) = (first(&s), first(&l), first(&d));
            if d == 0.0 || !d.is_finite() {
                return Err("Range with delta 0".into());
            }
            let n = ((l - s) / d).ceil().max(0.0);
            if n > MAX_FOLDED as f64 {
                return Err("Range is too long".into());
            }
            let v: Vec<f64> = (0..n as usize).map(|i| s + d * i as f64).collect();
            Tensor {
                data: ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).expect("1-D"),
                int: x(0)?.int,
            }
        }
        other => {
            return Err(format!(
                "{other} on constants is not supported at import (opset {opset})"
            ));
        }
    };
    Ok(Folded::Const(t))
}

/// `f(a, c)` elementwise over the broadcast of the two shapes (checked by the caller).
fn broadcast_with(a: &ArrayD<f64>, c: &ArrayD<f64>, f: impl Fn(f64, f64) -> f64) -> ArrayD<f64> {
    let shape = broadcast_shape(a.shape(), c.shape()).expect("shapes checked to broadcast");
    let (a, c) = (
        a.broadcast(IxDyn(&shape)).expect("broadcasts"),
        c.broadcast(IxDyn(&shape)).expect("broadcasts"),
    );
    ndarray::Zip::from(&a).and(&c).map_collect(|&x, &y| f(x, y))
}

/// Resolves a `Reshape` of a constant (0 copies, −1 infers).
fn reshape_const(shape: &[usize], target: &[i64], allowzero: bool) -> std::result::Result<Vec<usize>, String> {
    let count: usize = shape.iter().product();
    let mut out: Vec<Option<usize>> = Vec::with_capacity(target.len());
    for (i, &d) in target.iter().enumerate() {
        out.push(match d {
            0 if !allowzero => Some(*shape.get(i).ok_or("0 copies a missing dimension")?),
            -1 => None,
            d if d >= 0 => Some(d as usize),
            d => return Err(format!("invalid entry {d} in shape {target:?}")),
        });
    }
    let known: usize = out.iter().flatten().product();
    match out.iter().filter(|d| d.is_none()).count() {
        0 if known == count => Ok(out.into_iter().flatten().collect()),
        1 if known > 0 && count.is_multiple_of(known) => {
            Ok(out.into_iter().map(|d| d.unwrap_or(count / known)).collect())
        }
        _ => Err(format!("cannot reshape {shape:?} to {target:?}")),
    }
}

/// A Reshape of a network value: `target` in ONNX's layout with the batch at one place.
fn reshape_node(
    shape: &[usize],
    batch_axis: usize,
    target: &[Dim],
    allowzero: bool,
    batch_fixed_to_one: bool,
) -> std::result::Result<(Vec<usize>, usize), String> {
    let count: usize = shape.iter().product();
    let before: usize = shape[..batch_axis].iter().product();
    // Resolve 0 (copy) first, then find the batch position: an explicit batch symbol; else a 0 that copies the
    // batch; else a −1 or (batch fixed to 1) a 1 where the elements before it match.
    let src = full_dims(shape, batch_axis);
    let mut t: Vec<Dim> = Vec::with_capacity(target.len());
    for (i, &d) in target.iter().enumerate() {
        t.push(match d {
            Dim::Known(0) if !allowzero => *src.get(i).ok_or("0 copies a dimension the input does not have")?,
            other => other,
        });
    }
    let prefix_ok = |p: usize| {
        t[..p]
            .iter()
            .try_fold(1usize, |acc, d| match d {
                Dim::Known(v) if *v > 0 => acc.checked_mul(*v as usize),
                _ => None,
            })
            .is_some_and(|v| v == before)
    };
    // The per-sample shape if the batch stands at `p`.
    let resolve = |p: usize| -> Option<Vec<usize>> {
        let mut rest: Vec<Option<usize>> = Vec::new();
        for (i, d) in t.iter().enumerate() {
            if i == p {
                continue;
            }
            rest.push(match d {
                Dim::Known(-1) => None,
                Dim::Known(v) if *v > 0 => Some(*v as usize),
                _ => return None,
            });
        }
        let known = rest.iter().flatten().try_fold(1usize, |a, &d| a.checked_mul(d))?;
        match rest.iter().filter(|d| d.is_none()).count() {
            0 if known == count => Some(rest.into_iter().flatten().collect()),
            1 if known > 0 && count.is_multiple_of(known) => {
                Some(rest.into_iter().map(|d| d.unwrap_or(count / known)).collect())
            }
            _ => None,
        }
    };
    let candidate = |p: usize, want: Dim| t[p] == want && prefix_ok(p) && resolve(p).is_some();
    let pos = (0..t.len())
        .find(|&p| t[p] == Dim::Batch)
        .or_else(|| {
            if batch_fixed_to_one {
                (0..t.len()).find(|&p| candidate(p, Dim::Known(1)))
            } else {
                None
            }
        })
        .or_else(|| (0..t.len()).find(|&p| candidate(p, Dim::Known(-1))))
        .ok_or_else(|| {
            format!(
                "shape {} does not keep the batch axis apart ({count} values per sample, input [N, \
                 {shape:?}]); use 0 or -1 for the batch, or export with a dynamic batch",
                dims_text(target)
            )
        })?;
    if !prefix_ok(pos) {
        return Err(format!(
            "shape {} would mix the batch axis with others",
            dims_text(target)
        ));
    }
    let dims = resolve(pos).ok_or_else(|| {
        format!(
            "shape {} does not fit {count} values per sample (input [N, {shape:?}])",
            dims_text(target)
        )
    })?;
    Ok((dims, pos))
}

/// The layer that gives a value the per-sample `shape`: a flatten for one axis, else a reshape.
fn reshape_layer(shape: &[usize]) -> Layer {
    if shape.len() == 1 {
        Layer::Flatten(lrp_core::Flatten)
    } else {
        Layer::reshape(shape.to_vec())
    }
}

/// A node that reads network values: translated into zero or more layers.
#[allow(clippy::too_many_arguments)]
fn computed_node(
    b: &mut Builder,
    node: &NodeProto,
    label: &str,
    ins: &[Option<Val>],
    consts: &HashMap<String, TensorProto>,
    opset: i64,
    batch_fixed_to_one: bool,
    graph_output: &str,
    notes: &mut Vec<String>,
) -> Result<Vec<(String, Val)>> {
    let err = |reason: String| OnnxError::Node {
        node: label.to_string(),
        op_type: node.op_type.clone(),
        reason,
    };
    let op = node.op_type.as_str();
    let out0 = node
        .output
        .first()
        .filter(|o| !o.is_empty())
        .cloned()
        .ok_or_else(|| err("has no output".into()))?;
    let node_at = |i: usize| match ins.get(i) {
        Some(Some(Val::Node { id, shape, batch_axis })) => Some((*id, shape.clone(), *batch_axis)),
        _ => None,
    };
    let computed: Vec<usize> = (0..ins.len()).filter(|&i| node_at(i).is_some()).collect();
    let (xi, xshape, xbatch) = node_at(computed[0]).expect("a computed input");
    let same =
        |shape: Vec<usize>, batch_axis: usize, id: usize| vec![(out0.clone(), Val::Node { id, shape, batch_axis })];
    let emit = |b: &mut Builder, layer: Layer, inputs: Vec<usize>| b.emit(layer, inputs, node, label);
    let need_batch_first = |what: &str| -> Result<()> {
        if xbatch != 0 {
            return Err(err(format!(
                "{what} needs the batch axis first, but '{}' has it at position {xbatch}",
                node.input[computed[0]]
            )));
        }
        Ok(())
    };
    let activation = |a: Activation| -> Result<Layer> {
        a.validate().map_err(err)?;
        Ok(Layer::Activation(a))
    };
    // Elementwise one-input activations.
    let act = match op {
        "Tanh" => Some(Activation::Tanh),
        "Sigmoid" => Some(Activation::Sigmoid),
        "LeakyRelu" => Some(Activation::LeakyRelu(float_attr(node, "alpha", 0.01))),
        "Elu" => Some(Activation::Elu(float_attr(node, "alpha", 1.0))),
        "Gelu" => Some(
            match attr(node, "approximate").map(|a| String::from_utf8_lossy(&a.s).into_owned()) {
                Some(s) if s == "tanh" => Activation::GeluTanh,
                _ => Activation::Gelu,
            },
        ),
        "Softplus" => Some(Activation::Softplus),
        "HardSigmoid" => Some(Activation::HardSigmoid(
            float_attr(node, "alpha", 0.2),
            float_attr(node, "beta", 0.5),
        )),
        "HardSwish" => Some(Activation::HardSwish),
        _ => None,
    };
    if let Some(a) = act {
        if computed != [0] {
            return Err(err("reads a computed value as a parameter".into()));
        }
        let id = emit(b, activation(a)?, vec![xi])?;
        return Ok(same(xshape, xbatch, id));
    }
    match op {
        "Identity" | "Dropout" | "Cast" => {
            if op == "Cast" && !matches!(int_attr(node, "to", 1), 1 | 11) {
                return Err(err("casts a computed value to a non-float type".into()));
            }
            return Ok(vec![(out0, ins[0].clone().expect("computed"))]);
        }
        "Clip" => {
            let bound = |i: usize, default: f32| -> Result<f32> {
                match node.input.get(i).filter(|n| !n.is_empty()) {
                    None => Ok(default),
                    Some(n) => {
                        let t = consts
                            .get(n)
                            .ok_or_else(|| err(format!("bound '{n}' must be a constant")))?;
                        let v = to_f32(t)?;
                        v.iter()
                            .next()
                            .copied()
                            .ok_or_else(|| err(format!("bound '{n}' is empty")))
                    }
                }
            };
            let (lo, hi) = if opset >= 11 {
                (bound(1, f32::MIN)?, bound(2, f32::MAX)?)
            } else {
                (float_attr(node, "min", f32::MIN), float_attr(node, "max", f32::MAX))
            };
            let layer = if lo == 0.0 && hi == f32::MAX {
                Layer::Relu(lrp_core::Relu)
            } else {
                activation(Activation::Clip(lo, hi))?
            };
            let id = emit(b, layer, vec![xi])?;
            return Ok(same(xshape, xbatch, id));
        }
        "Add" | "Sub" | "Mul" | "Div" if computed.len() == 2 => {
            let (yi, yshape, ybatch) = node_at(1).expect("computed");
            if op != "Add" {
                return Err(err(format!(
                    "{op} of two computed values is not supported (only Add joins branches)"
                )));
            }
            if xbatch != ybatch || xshape != yshape {
                return Err(err(format!(
                    "adds values of different shapes {xshape:?} and {yshape:?} (broadcasting between computed \
                     values is not supported)"
                )));
            }
            let id = emit(b, Layer::Add(lrp_core::Add), vec![xi, yi])?;
            return Ok(same(xshape, xbatch, id));
        }
        "Add" | "Sub" | "Mul" | "Div" => {
            let ci = 1 - computed[0];
            let name = &node.input[ci];
            let t = consts
                .get(name)
                .ok_or_else(|| err(format!("input '{name}' is neither computed nor a constant")))?;
            let c = to_f32(t)?;
            // ONNX broadcasts against the full shape; ours is per sample.
            let full: Vec<usize> = {
                let mut f = xshape.clone();
                f.insert(xbatch, 1);
                f
            };
            if broadcast_shape(&full, c.shape()).as_deref() != Some(&full[..]) {
                return Err(err(format!(
                    "constant '{name}' of shape {:?} does not broadcast to the value's shape {full:?} without \
                     changing it",
                    c.shape()
                )));
            }
            // Drop the constant's batch axis (size 1) when it has one.
            let c = if c.ndim() == full.len() {
                if xbatch != 0 {
                    need_batch_first(op)?;
                }
                c.index_axis_move(Axis(0), 0)
            } else {
                if xbatch != 0 {
                    need_batch_first(op)?;
                }
                c
            };
            let arith = match (op, computed[0]) {
                ("Add", _) => ArithOp::Add,
                ("Sub", 0) => ArithOp::Sub,
                ("Sub", _) => ArithOp::SubFrom,
                ("Mul", _) => ArithOp::Mul,
                ("Div", 0) => ArithOp::Div,
                _ => {
                    return Err(err(
                        "divides a constant by a computed value, which is not a linear map".into()
                    ));
                }
            };
            // A bias added right after a dense or conv layer without one becomes its bias.
            if arith == ArithOp::Add
                && xi > 0
                && xi == b.nodes.len()
                && b.readers.get(&node.input[computed[0]]) == Some(&1)
            {
                let merged = match &mut b.nodes[xi - 1].0 {
                    Layer::Dense(d) if d.bias.is_none() && c.len() == d.outputs() => {
                        d.bias = Some(ndarray::Array1::from(c.iter().copied().collect::<Vec<_>>()));
                        true
                    }
                    Layer::Conv2d(cv)
                        if cv.bias.is_none()
                            && c.len() == cv.out_channels()
                            && (c.ndim() == 1 && xshape.len() == 1
                                || c.ndim() == 3 && c.shape()[1] == 1 && c.shape()[2] == 1) =>
                    {
                        cv.bias = Some(ndarray::Array1::from(c.iter().copied().collect::<Vec<_>>()));
                        true
                    }
                    _ => false,
                };
                if merged {
                    return Ok(same(xshape, xbatch, xi));
                }
            }
            let id = emit(b, Layer::Arith(Arith { op: arith, value: c }), vec![xi])?;
            return Ok(same(xshape, xbatch, id));
        }
        "Concat" => {
            if computed.len() != node.input.len() {
                return Err(err(
                    "concatenates a constant with computed values, which is not supported".into(),
                ));
            }
            let mut ids = Vec::new();
            for &i in &computed {
                let (id, _, bax) = node_at(i).expect("computed");
                if bax != xbatch {
                    return Err(err(
                        "concatenates values with their batch axes in different places".into()
                    ));
                }
                ids.push(id);
            }
            need_batch_first("Concat")?;
            let rank = xshape.len() + 1;
            let a = norm_axis(int_attr(node, "axis", 0), rank).map_err(err)?;
            if a == 0 {
                return Err(err("concatenates along the batch axis".into()));
            }
            let id = emit(b, Layer::concat(a - 1), ids)?;
            let shape = b.shapes[id].clone();
            return Ok(same(shape, 0, id));
        }
        "Reshape" => {
            let target: Vec<Dim> = match ins.get(1) {
                Some(Some(Val::Sym { dims, .. })) => dims.clone(),
                Some(Some(Val::Const)) => to_i64(&consts[&node.input[1]])?.into_iter().map(Dim::Known).collect(),
                _ => {
                    return Err(err(
                        "needs the target shape as a constant or a shape computed from the input".into(),
                    ));
                }
            };
            let (shape, bax) = reshape_node(
                &xshape,
                xbatch,
                &target,
                int_attr(node, "allowzero", 0) != 0,
                batch_fixed_to_one,
            )
            .map_err(err)?;
            if shape == xshape {
                return Ok(same(shape, bax, xi));
            }
            let id = emit(b, reshape_layer(&shape), vec![xi])?;
            return Ok(same(shape, bax, id));
        }
        "Transpose" => {
            let rank = xshape.len() + 1;
            let perm: Vec<usize> = match attr(node, "perm") {
                Some(p) => p
                    .ints
                    .iter()
                    .map(|&v| norm_axis(v, rank))
                    .collect::<std::result::Result<_, _>>()
                    .map_err(err)?,
                None => (0..rank).rev().collect(),
            };
            let mut sorted = perm.clone();
            sorted.sort_unstable();
            if sorted != (0..rank).collect::<Vec<_>>() {
                return Err(err(format!("perm {perm:?} is not a permutation of {rank} axes")));
            }
            let new_batch = perm.iter().position(|&a| a == xbatch).expect("a permutation");
            // Per-sample axes in the order the output has them.
            let feature = |a: usize| if a > xbatch { a - 1 } else { a };
            let order: Vec<usize> = perm.iter().filter(|&&a| a != xbatch).map(|&a| feature(a)).collect();
            if order.windows(2).all(|w| w[0] < w[1]) {
                return Ok(same(xshape, new_batch, xi));
            }
            let id = emit(b, Layer::transpose(order), vec![xi])?;
            let shape = b.shapes[id].clone();
            return Ok(same(shape, new_batch, id));
        }
        "Unsqueeze" => {
            let axes = axes_of(node, consts, 1)
                .map_err(err)?
                .ok_or_else(|| err("has no axes".into()))?;
            let rank = xshape.len() + 1 + axes.len();
            let mut ax: Vec<usize> = axes
                .iter()
                .map(|&a| norm_axis(a, rank))
                .collect::<std::result::Result<_, _>>()
                .map_err(err)?;
            ax.sort_unstable();
            let mut full: Vec<Option<usize>> = xshape.iter().map(|&d| Some(d)).collect();
            full.insert(xbatch, None);
            for &a in &ax {
                if a > full.len() {
                    return Err(err(format!("axis {a} is out of range")));
                }
                full.insert(a, Some(1));
            }
            let bax = full.iter().position(Option::is_none).expect("batch");
            let shape: Vec<usize> = full.into_iter().flatten().collect();
            let id = emit(b, Layer::reshape(shape.clone()), vec![xi])?;
            return Ok(same(shape, bax, id));
        }
        "Gather" => {
            let idx = consts
                .get(&node.input[1])
                .ok_or_else(|| err("gathers with computed indices, which is not supported".into()))?;
            let idx = to_i64(idx)?;
            let rank = xshape.len() + 1;
            let a = norm_axis(int_attr(node, "axis", 0), rank).map_err(err)?;
            if a == xbatch {
                return Err(err("gathers along the batch axis".into()));
            }
            if !consts[&node.input[1]].dims.is_empty() || idx.len() != 1 {
                return Err(err("only a single scalar index (one step or token) is supported".into()));
            }
            let fa = if a > xbatch { a - 1 } else { a };
            let len = xshape[fa] as i64;
            let i = if idx[0] < 0 { idx[0] + len } else { idx[0] };
            if i < 0 || i >= len {
                return Err(err(format!(
                    "index {} is out of range for an axis of length {len}",
                    idx[0]
                )));
            }
            let sliced = emit(b, Layer::slice(fa, i as usize, i as usize + 1), vec![xi])?;
            let mut shape = xshape.clone();
            shape.remove(fa);
            let bax = if a < xbatch { xbatch - 1 } else { xbatch };
            if shape.is_empty() {
                return Err(err("would leave no axis besides the batch".into()));
            }
            let id = emit(b, reshape_layer(&shape), vec![sliced])?;
            return Ok(same(shape, bax, id));
        }
        "Slice" => {
            let get = |i: usize| -> Result<Option<Vec<i64>>> {
                match node.input.get(i).filter(|n| !n.is_empty()) {
                    None => Ok(None),
                    Some(n) => consts
                        .get(n)
                        .map(|t| to_i64(t).map(Some))
                        .unwrap_or_else(|| Err(err(format!("'{n}' must be a constant")))),
                }
            };
            let starts = get(1)?.ok_or_else(|| err("has no starts".into()))?;
            let ends = get(2)?.ok_or_else(|| err("has no ends".into()))?;
            let rank = xshape.len() + 1;
            let axes = get(3)?.unwrap_or_else(|| (0..starts.len() as i64).collect());
            let steps = get(4)?.unwrap_or_else(|| vec![1; starts.len()]);
            if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
                return Err(err("starts, ends, axes and steps differ in length".into()));
            }
            let mut cur = xi;
            let mut shape = xshape.clone();
            for k in 0..starts.len() {
                let a = norm_axis(axes[k], rank).map_err(err)?;
                if a == xbatch {
                    let idx = slice_indices(usize::MAX >> 2, starts[k], ends[k], steps[k]);
                    if steps[k] == 1 && starts[k] == 0 && idx.is_ok() && ends[k] >= i32::MAX as i64 {
                        continue;
                    }
                    return Err(err("slices the batch axis".into()));
                }
                let fa = if a > xbatch { a - 1 } else { a };
                if steps[k] != 1 {
                    return Err(err(format!("step {} is not supported (only 1)", steps[k])));
                }
                let idx = slice_indices(shape[fa], starts[k], ends[k], 1).map_err(err)?;
                let (Some(&s), Some(&e)) = (idx.first(), idx.last()) else {
                    return Err(err("selects nothing".into()));
                };
                if s == 0 && e + 1 == shape[fa] {
                    continue;
                }
                cur = emit(b, Layer::slice(fa, s, e + 1), vec![cur])?;
                shape = b.shapes[cur].clone();
            }
            return Ok(same(shape, xbatch, cur));
        }
        "Shape" => {
            let full = full_dims(&xshape, xbatch);
            let r = full.len() as i64;
            let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let (s, e) = (
                clampi(int_attr(node, "start", 0)),
                clampi(attr(node, "end").map_or(r, |a| a.i)),
            );
            let dims = full[s..e.max(s)].to_vec();
            if dims.iter().all(|d| matches!(d, Dim::Known(_))) {
                return Err(err("Shape of a slice without the batch axis is not supported".into()));
            }
            return Ok(vec![(out0, Val::Sym { dims, scalar: false })]);
        }
        "ReduceMean" => {
            need_batch_first("ReduceMean")?;
            let axes = if opset >= 18 {
                axes_of(node, consts, 1).map_err(err)?
            } else {
                attr(node, "axes").map(|a| a.ints.clone())
            }
            .ok_or_else(|| err("reduces over every axis, including the batch".into()))?;
            let rank = xshape.len() + 1;
            let mut ax: Vec<usize> = axes
                .iter()
                .map(|&a| norm_axis(a, rank))
                .collect::<std::result::Result<_, _>>()
                .map_err(err)?;
            ax.sort_unstable();
            if ax.len() == 1 && ax[0] > 0 && !(rank == 4 && ax[0] >= 2) {
                // The mean over one feature axis (the tokens of a transformer).
                let id = emit(b, Layer::mean(ax[0] - 1), vec![xi])?;
                let mut shape = b.shapes[id].clone();
                if int_attr(node, "keepdims", 1) != 0 {
                    shape.insert(ax[0] - 1, 1);
                    let kept = emit(b, reshape_layer(&shape), vec![id])?;
                    return Ok(same(shape, 0, kept));
                }
                return Ok(same(shape, 0, id));
            }
            if rank != 4 || ax != [2, 3] {
                return Err(err(format!(
                    "ReduceMean over axes {axes:?} of a rank-{rank} value: only the mean over height and width \
                     (global average pooling) is supported"
                )));
            }
            let (h, w) = (xshape[1], xshape[2]);
            let pooled = emit(
                b,
                Layer::AvgPool2d(lrp_core::Pool2d {
                    window: lrp_core::Window {
                        kernel: [h, w],
                        stride: [1, 1],
                        pads: [0; 4],
                    },
                    count_include_pad: false,
                }),
                vec![xi],
            )?;
            if int_attr(node, "keepdims", 1) != 0 {
                return Ok(same(vec![xshape[0], 1, 1], 0, pooled));
            }
            let id = emit(b, Layer::Flatten(lrp_core::Flatten), vec![pooled])?;
            return Ok(same(vec![xshape[0]], 0, id));
        }
        "Pad" => {
            need_batch_first("Pad")?;
            let mode =
                attr(node, "mode").map_or("constant".to_string(), |a| String::from_utf8_lossy(&a.s).into_owned());
            if mode != "constant" {
                return Err(err(format!(
                    "mode '{mode}' is not supported (only constant zero padding)"
                )));
            }
            if let Some(n) = node.input.get(2).filter(|n| !n.is_empty()) {
                let v = consts
                    .get(n)
                    .ok_or_else(|| err(format!("pad value '{n}' must be a constant")))?;
                if to_f32(v)?.iter().any(|&x| x != 0.0) {
                    return Err(err("pads with a value other than 0".into()));
                }
            }
            let rank = xshape.len() + 1;
            let pads = match node.input.get(1).filter(|n| !n.is_empty()) {
                Some(n) => to_i64(
                    consts
                        .get(n)
                        .ok_or_else(|| err(format!("pads '{n}' must be a constant")))?,
                )?,
                None => attr(node, "pads").map(|a| a.ints.clone()).unwrap_or_default(),
            };
            let axes: Vec<usize> = match node.input.get(3).filter(|n| !n.is_empty()) {
                Some(n) => to_i64(
                    consts
                        .get(n)
                        .ok_or_else(|| err(format!("axes '{n}' must be a constant")))?,
                )?
                .iter()
                .map(|&a| norm_axis(a, rank))
                .collect::<std::result::Result<_, _>>()
                .map_err(err)?,
                None => (0..rank).collect(),
            };
            if pads.len() != 2 * axes.len() {
                return Err(err(format!("pads {pads:?} do not match {} axes", axes.len())));
            }
            let mut per = vec![[0usize; 2]; xshape.len()];
            for (k, &a) in axes.iter().enumerate() {
                let (p0, p1) = (pads[k], pads[k + axes.len()]);
                if p0 < 0 || p1 < 0 {
                    return Err(err("negative pads (cropping) are not supported".into()));
                }
                if a == 0 {
                    if p0 != 0 || p1 != 0 {
                        return Err(err("pads the batch axis".into()));
                    }
                    continue;
                }
                per[a - 1] = [p0 as usize, p1 as usize];
            }
            let id = emit(b, Layer::pad(per), vec![xi])?;
            let shape = b.shapes[id].clone();
            return Ok(same(shape, 0, id));
        }
        "MatMul" if computed.len() == 2 => {
            let (yi, yshape, ybatch) = node_at(1).expect("computed");
            if xbatch != 0 || ybatch != 0 {
                return Err(err(
                    "multiplies computed values whose batch axis is not first (reorder them before the product)".into(),
                ));
            }
            lrp_core::layers::matmul_shape(&xshape, &yshape).map_err(|r| err(format!("{r} (per sample)")))?;
            let id = emit(b, Layer::MatMul(lrp_core::MatMul), vec![xi, yi])?;
            let shape = b.shapes[id].clone();
            return Ok(same(shape, 0, id));
        }
        "LayerNormalization" => {
            need_batch_first("LayerNormalization")?;
            if computed != [0] {
                return Err(err("reads a computed value as its scale or shift".into()));
            }
            let rank = xshape.len() + 1;
            let axis = norm_axis(int_attr(node, "axis", -1), rank).map_err(err)?;
            if axis != rank - 1 {
                return Err(err(format!(
                    "normalizes from axis {axis} of a rank-{rank} value; only the last axis is supported"
                )));
            }
            let d = xshape[xshape.len() - 1];
            let vector = |i: usize, default: f32| -> Result<ndarray::Array1<f32>> {
                match node.input.get(i).filter(|n| !n.is_empty()) {
                    None => Ok(ndarray::Array1::from_elem(d, default)),
                    Some(n) => {
                        let t = consts.get(n).ok_or_else(|| err(format!("'{n}' must be a constant")))?;
                        let v = to_f32(t)?;
                        if v.len() != d {
                            return Err(err(format!(
                                "'{n}' has shape {:?}; the normalized axis has {d} features",
                                v.shape()
                            )));
                        }
                        Ok(v.iter().copied().collect())
                    }
                }
            };
            let ln = lrp_core::LayerNorm {
                weight: vector(1, 1.0)?,
                bias: vector(2, 0.0)?,
                eps: float_attr(node, "epsilon", 1e-5),
            };
            let id = emit(b, Layer::LayerNorm(ln), vec![xi])?;
            return Ok(same(xshape, 0, id));
        }
        "Softmax" if out0 != graph_output => {
            need_batch_first("Softmax")?;
            let rank = xshape.len() + 1;
            let default = if opset >= 13 { -1 } else { 1 };
            let axis = norm_axis(int_attr(node, "axis", default), rank).map_err(err)?;
            // Before opset 13 a softmax covers every axis from `axis` on: the same as one axis only at the last.
            if axis == 0 || (opset < 13 && axis != rank - 1) {
                return Err(err(format!(
                    "softmax over axis {axis} of a rank-{rank} value (opset {opset}) is not supported: only one \
                     feature axis"
                )));
            }
            let id = emit(b, Layer::softmax(axis - 1), vec![xi])?;
            return Ok(same(xshape, 0, id));
        }
        "Split" => {
            let rank = xshape.len() + 1;
            let a = norm_axis(int_attr(node, "axis", 0), rank).map_err(err)?;
            if a == xbatch {
                return Err(err("splits the batch axis".into()));
            }
            let fa = if a > xbatch { a - 1 } else { a };
            let len = xshape[fa];
            let parts = node.output.len();
            // Sizes from the second input (opset 13 on) or the attribute, else equal parts (the last smaller when
            // the length does not divide, as opset 18 says).
            let given: Option<Vec<i64>> = match node.input.get(1).filter(|n| !n.is_empty()) {
                Some(n) => Some(to_i64(
                    consts
                        .get(n)
                        .ok_or_else(|| err(format!("split sizes '{n}' must be a constant")))?,
                )?),
                None => attr(node, "split").map(|s| s.ints.clone()).filter(|v| !v.is_empty()),
            };
            let sizes: Vec<usize> = match given {
                Some(v) => v
                    .iter()
                    .map(|&v| usize::try_from(v).map_err(|_| err(format!("split size {v} is negative"))))
                    .collect::<Result<_>>()?,
                None => {
                    let each = len.div_ceil(parts.max(1));
                    (0..parts).map(|i| each.min(len.saturating_sub(i * each))).collect()
                }
            };
            if sizes.len() != parts || sizes.iter().try_fold(0usize, |a, &s| a.checked_add(s)) != Some(len) {
                return Err(err(format!(
                    "splits an axis of length {len} into {sizes:?} for {parts} outputs"
                )));
            }
            let mut outs = Vec::new();
            let mut start = 0;
            for (name, &size) in node.output.iter().zip(&sizes) {
                let end = start + size;
                if !name.is_empty() && b.readers.contains_key(name) {
                    if size == 0 {
                        return Err(err(format!("output '{name}' is empty and is read")));
                    }
                    let id = emit(b, Layer::slice(fa, start, end), vec![xi])?;
                    let shape = b.shapes[id].clone();
                    outs.push((
                        name.clone(),
                        Val::Node {
                            id,
                            shape,
                            batch_axis: xbatch,
                        },
                    ));
                }
                start = end;
            }
            return Ok(outs);
        }
        "MatMul" | "Gemm" if computed[0] != 0 => {
            return Err(err(
                "multiplies a constant by a computed value from the left, which is not supported".into(),
            ));
        }
        _ => {}
    }
    if computed.len() > 1 {
        return Err(err(
            "reads several computed values, which this operator does not support".into(),
        ));
    }
    // Single-input layers of the chain importer.
    let outputs_used: Vec<bool> = node
        .output
        .iter()
        .map(|o| !o.is_empty() && b.readers.contains_key(o))
        .collect();
    let mut const_refs: HashMap<&str, &TensorProto> = HashMap::new();
    let mut zero_inputs = vec![false; node.input.len()];
    for (i, name) in node.input.iter().enumerate() {
        match ins.get(i) {
            Some(Some(Val::Const)) => {
                if let Some(t) = consts.get(name) {
                    const_refs.insert(name.as_str(), t);
                    if to_f32(t).is_ok_and(|a| a.iter().all(|&v| v == 0.0)) {
                        zero_inputs[i] = true;
                    }
                }
            }
            Some(Some(Val::Zeros)) => zero_inputs[i] = true,
            Some(Some(Val::Sym { .. })) => {
                return Err(err(format!(
                    "input '{name}' is a shape computed from the input; not supported here"
                )));
            }
            _ => {}
        }
    }
    let ctx = Ctx {
        node,
        label,
        current: &node.input[computed[0]],
        consts: &const_refs,
        shape: &xshape,
        is_last: out0 == graph_output,
        batch_axis: xbatch,
        outputs_used,
        opset,
        zero_inputs,
    };
    let (layer, output, batch_axis) = match translate(&ctx)? {
        Step::Push(layer) => (Some(layer), 0, xbatch),
        Step::Skip => (None, 0, xbatch),
        Step::Note(note) => {
            notes.push(note);
            (None, 0, xbatch)
        }
        Step::Relayout {
            layer,
            output,
            batch_axis,
        } => (layer, output, batch_axis),
    };
    let name = node.output[output].clone();
    match layer {
        Some(layer) => {
            let id = b.emit(layer, vec![xi], node, label)?;
            let shape = b.shapes[id].clone();
            Ok(vec![(name, Val::Node { id, shape, batch_axis })])
        }
        None => Ok(vec![(
            name,
            Val::Node {
                id: xi,
                shape: xshape,
                batch_axis,
            },
        )]),
    }
}
