//! What the import knows of each ONNX value while it walks the graph.
//!
//! Every ONNX value becomes one of: a constant (initializers, `Constant` nodes, and anything computed from
//! constants alone, folded at import), a shape that holds the batch size as a symbol (what `Shape` of a computed
//! value gives, and what `Gather`/`Slice`/`Concat`/`Unsqueeze`/`Cast` make of it), zeros of such a shape
//! (`ConstantOfShape`, e.g. an LSTM's initial state), or a value of the network with its per-sample shape and the
//! position of its batch axis in ONNX's layout (the network's values stay batch-first; `Transpose`, `Squeeze` and
//! `LSTM` can move ONNX's batch axis).

/// One dimension of a shape computed at import.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Dim {
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
pub(crate) fn dims_text(d: &[Dim]) -> String {
    format!("[{}]", d.iter().map(Dim::to_string).collect::<Vec<_>>().join(", "))
}

/// What an ONNX value is, as far as the import knows.
#[derive(Clone, Debug)]
pub(crate) enum Val {
    /// A constant; its tensor is in the constants map.
    Const,
    /// A shape vector (or a scalar, when `scalar`) holding the batch size.
    Sym { dims: Vec<Dim>, scalar: bool },
    /// Zeros of a shape that holds the batch size.
    Zeros,
    /// A value of the network.
    Node(Computed),
}

/// A value of the network: its node's output, its per-sample shape, and where ONNX's layout has the batch axis.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Computed {
    /// The network value (0 is the input, `k + 1` the output of node `k`).
    pub id: usize,
    /// Per-sample shape.
    pub shape: Vec<usize>,
    /// The batch axis's position in the ONNX tensor.
    pub batch_axis: usize,
}

impl Computed {
    /// The ONNX rank (the per-sample axes and the batch).
    pub(crate) fn rank(&self) -> usize {
        self.shape.len() + 1
    }

    /// The per-sample axis of ONNX axis `a` (`None` for the batch axis itself).
    pub(crate) fn feature_axis(&self, a: usize) -> Option<usize> {
        match a.cmp(&self.batch_axis) {
            std::cmp::Ordering::Less => Some(a),
            std::cmp::Ordering::Equal => None,
            std::cmp::Ordering::Greater => Some(a - 1),
        }
    }

    /// The ONNX layout of this value: its per-sample shape with the batch axis put back.
    pub(crate) fn full_dims(&self) -> Vec<Dim> {
        full_dims(&self.shape, self.batch_axis)
    }

    /// The same value seen under another shape or batch position (a reshape that is free).
    pub(crate) fn with(&self, id: usize, shape: Vec<usize>, batch_axis: usize) -> Val {
        Val::Node(Computed { id, shape, batch_axis })
    }
}

/// The ONNX layout of a network value: its per-sample shape with the batch axis put back.
pub(crate) fn full_dims(shape: &[usize], batch_axis: usize) -> Vec<Dim> {
    let mut d: Vec<Dim> = shape.iter().map(|&v| Dim::Known(v as i64)).collect();
    d.insert(batch_axis.min(d.len()), Dim::Batch);
    d
}
