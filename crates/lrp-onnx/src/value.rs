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
    /// The batch size times this factor (1: the batch size itself; more: Swin's windows `[B·nW, …]`).
    Batch(i64),
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Known(v) => write!(f, "{v}"),
            Dim::Batch(1) => write!(f, "N"),
            Dim::Batch(k) => write!(f, "N·{k}"),
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
    /// A constant repeated for every sample of the batch (`Expand` of a class token to `[N, 1, D]`): its per-sample
    /// tensor is in the constants map under the value's name, the batch at `batch` in ONNX's layout.
    Tiled { batch: usize },
    /// A value of the network.
    Node(Computed),
}

/// Where ONNX's layout of a network value has the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Batch {
    /// At this position (the value's per-sample axes are the others).
    At(usize),
    /// Nowhere apart: an exporter that fixed the batch to 1 folded it into another axis or flattened it away
    /// (Swin's windows `[B·nW, …]`, a `Reshape` to `[-1]`). The ONNX tensor is exactly one sample; each sample of a
    /// batch goes through the same per-sample computation.
    Merged,
}

/// A value of the network: its node's output, its per-sample shape, and where ONNX's layout has the batch.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Computed {
    /// The network value (0 is the input, `k + 1` the output of node `k`).
    pub id: usize,
    /// Per-sample shape.
    pub shape: Vec<usize>,
    /// Where the batch is in the ONNX tensor.
    pub batch: Batch,
}

impl Computed {
    /// The ONNX rank.
    pub(crate) fn rank(&self) -> usize {
        match self.batch {
            Batch::At(_) => self.shape.len() + 1,
            Batch::Merged => self.shape.len(),
        }
    }

    /// The batch's position in the ONNX tensor, if it has one.
    pub(crate) fn batch_axis(&self) -> Option<usize> {
        match self.batch {
            Batch::At(b) => Some(b),
            Batch::Merged => None,
        }
    }

    /// Whether ONNX's layout has the batch first, or not apart at all: the per-sample axes are then ONNX's axes
    /// after the first (or all of them), in order.
    pub(crate) fn batch_first(&self) -> bool {
        matches!(self.batch, Batch::At(0) | Batch::Merged)
    }

    /// The per-sample axis of ONNX axis `a` (`None` for the batch axis itself).
    pub(crate) fn feature_axis(&self, a: usize) -> Option<usize> {
        match self.batch {
            Batch::Merged => Some(a),
            Batch::At(b) => match a.cmp(&b) {
                std::cmp::Ordering::Less => Some(a),
                std::cmp::Ordering::Equal => None,
                std::cmp::Ordering::Greater => Some(a - 1),
            },
        }
    }

    /// The ONNX layout of this value: its per-sample shape with the batch axis put back (a merged batch is size 1
    /// inside another axis: nothing to put back).
    pub(crate) fn full_dims(&self) -> Vec<Dim> {
        let mut d: Vec<Dim> = self.shape.iter().map(|&v| Dim::Known(v as i64)).collect();
        if let Batch::At(b) = self.batch {
            d.insert(b.min(d.len()), Dim::Batch(1));
        }
        d
    }

    /// The ONNX shape with the batch as 1 (a constant's shape that broadcasts against it per sample).
    pub(crate) fn full_shape_one(&self) -> Vec<usize> {
        let mut f = self.shape.clone();
        if let Batch::At(b) = self.batch {
            f.insert(b.min(f.len()), 1);
        }
        f
    }

    /// Another value of the network with the batch where `batch` says.
    pub(crate) fn with(&self, id: usize, shape: Vec<usize>, batch: Batch) -> Val {
        Val::Node(Computed { id, shape, batch })
    }
}
