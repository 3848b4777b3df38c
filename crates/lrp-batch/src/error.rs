//! The error type of `lrp-batch`.

use std::path::PathBuf;

/// Why a batch run or merge failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// The output folder holds something else, or a run that differs from this one.
    #[error("{}: {reason}", dir.display())]
    OutputDir {
        /// The folder.
        dir: PathBuf,
        /// What is there and what to do.
        reason: String,
    },
    /// A file the runner reads or writes.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An `.npy` file that cannot be read or written as needed.
    #[error("{}: {reason}", path.display())]
    Npy {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// An input the source could not deliver (a photo that changed or broke during the run).
    #[error("{}: {reason}", path.display())]
    Input {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Another lrp holds the folder's lock (exit status 75, EX_TEMPFAIL: try again later).
    #[error("{}: is being written by another lrp{holder}; wait for it to finish (or, for a batch job, requeue this one)", dir.display())]
    Busy {
        /// The folder.
        dir: PathBuf,
        /// ` (pid N)` when the lock file says who.
        holder: String,
    },
    /// A manifest that is not valid JSON of this format.
    #[error("{}: not a manifest of lrp batch: {reason}", path.display())]
    Manifest {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// An input sample holds NaN or infinity.
    #[error("input sample {sample} holds {value} at element {element}")]
    NonFinite {
        /// Index of the sample in the whole input.
        sample: usize,
        /// Flat index within the sample.
        element: usize,
        /// The value.
        value: f32,
    },
    /// Settings that do not fit together (shard, limit, targets, chunk size).
    #[error("{0}")]
    Config(String),
    /// Shards that do not form one run.
    #[error("cannot merge: {0}")]
    Merge(String),
    /// An explanation failed.
    #[error(transparent)]
    Rules(#[from] lrp_rules::RulesError),
    /// A chunk of samples could not be explained (e.g. one of them holds NaN).
    #[error("samples {start}..{end}")]
    Chunk {
        /// First sample of the chunk (index in the whole input).
        start: usize,
        /// One past the last sample.
        end: usize,
        /// The cause.
        #[source]
        source: Box<BatchError>,
    },
    /// The network refused an input.
    #[error(transparent)]
    Core(#[from] lrp_core::CoreError),
}

impl BatchError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BatchError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result with [`BatchError`].
pub type Result<T, E = BatchError> = std::result::Result<T, E>;
