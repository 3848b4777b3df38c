//! The error type of `lrp-core`.

use std::path::PathBuf;

/// Everything that can go wrong in the network core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// An array did not have the shape a layer or network needs.
    #[error("shape mismatch in {context}: expected {expected}, got {got}")]
    ShapeMismatch {
        /// Where the mismatch was found (a layer name, "input", ...).
        context: String,
        /// The shape that was needed.
        expected: String,
        /// The shape that was found.
        got: String,
    },
    /// A layer's parameters or settings are not valid.
    #[error("node n{index} ({kind}): {reason}")]
    InvalidLayer {
        /// Position of the layer in the network (0-based).
        index: usize,
        /// Kind of the layer.
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The network as a whole is not valid (empty, bad input shape, ...).
    #[error("invalid network: {0}")]
    InvalidNetwork(String),
    /// A network input contains NaN or infinity.
    #[error("network input (sample {sample} of the batch) contains a non-finite value ({value}) at element {index}")]
    NonFiniteInput {
        /// The sample, counted in the batch given.
        sample: usize,
        /// Flat index of the first bad value within its sample.
        index: usize,
        /// The bad value.
        value: f32,
    },
    /// An IDX dataset file is malformed.
    #[error("{}: {reason}", path.display())]
    Idx {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A dataset folder lacks a file.
    #[error("{}: no {name} or {name}.gz in this folder", dir.display())]
    MissingDataFile {
        /// The folder searched.
        dir: PathBuf,
        /// The file looked for.
        name: String,
    },
    /// A model file is malformed, truncated, of another version or not a model at all.
    #[error("{}: {reason}", path.display())]
    ModelFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Training settings are not valid.
    #[error("invalid training configuration: {0}")]
    TrainConfig(String),
    /// Training diverged.
    #[error("training diverged: {0}")]
    Diverged(String),
    /// An I/O error, with the file it concerns.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl CoreError {
    /// Helper: an I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CoreError::Io {
            path: path.into(),
            source,
        }
    }

    /// Helper: a shape mismatch.
    pub fn shape(context: impl Into<String>, expected: impl std::fmt::Debug, got: impl std::fmt::Debug) -> Self {
        CoreError::ShapeMismatch {
            context: context.into(),
            expected: format!("{expected:?}"),
            got: format!("{got:?}"),
        }
    }
}

/// Result with [`CoreError`].
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
