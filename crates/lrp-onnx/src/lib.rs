//! `lrp-onnx`: ONNX import for `lrp`.
//!
//! Reads an ONNX model (opsets 11–21) whose graph is a chain from one input to one output, with the weights as
//! initializers, into an [`lrp_core::Network`]. Batch norms are folded, a final softmax is dropped (LRP explains
//! logits), and anything else is refused with an error naming the operator and node.
#![warn(missing_docs)]

mod error;
mod fold;
mod import;
mod islands;
mod lstm;
mod ops;
mod patterns;
pub mod proto;
mod tensor;

pub use error::{OnnxError, Result};
pub use import::{Imported, import_bytes, import_file};
