//! `lrp-core`: the tensor and network core of `lrp`.
//!
//! Batch-first `f32` arrays on `ndarray`; layers with forward and backward passes; a [`Network`] that checks
//! every shape when it is built and keeps each layer's input on [`Network::forward_trace`] (the trace LRP walks
//! back through); training; native model files; IDX datasets.
#![warn(missing_docs)]

pub mod arch;
pub mod atomic;
pub mod error;
pub mod hash;
pub mod idx;
pub mod layers;
pub mod layout;
pub mod model_file;
pub mod network;
pub mod par;
pub mod simd;
pub mod train;
pub mod whole_file;

pub use arch::Arch;
pub use error::{CoreError, Result};
pub use idx::{ByteDataset, Dataset, Split, StreamedDataset, pixel_value};
pub use layers::{
    Activation, Add, Arith, ArithOp, BatchNorm, BinaryFn, Concat, Conv2d, Dense, Dropout, Expr, ExprOp, Flatten,
    Insert, Layer, LayerKind, LayerNorm, Lstm, LstmDirection, MatMul, Mean, Mul, Op, Pad, ParamGrads, Pool2d, Relu,
    Reshape, Slice, Softmax, Take, Transpose, UnaryFn, Window, matmul_backward, mean_backward, reduce_to,
    softmax_backward,
};
pub use layout::ImageLayout;

/// The memory available to a new allocation on this machine (Linux: `MemAvailable` of `/proc/meminfo`), `None`
/// where it cannot be read.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
pub use model_file::{Model, ModelMeta};
pub use network::{Network, Trace, first_non_finite};
