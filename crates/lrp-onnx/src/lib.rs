//! `lrp-onnx`: ONNX import for `lrp`.
//!
//! Reads an ONNX model (opsets 11–21) whose graph has one input and one output, with the weights as initializers
//! (or external data beside the file), into an [`lrp_core::Network`]. The import is a pipeline of phases
//! ([`import`]); each operator is translated by one handler, registered by name ([`registry`](crate::registry)),
//! one file per family under `ops/`. Batch norms are folded, a final softmax is dropped (LRP explains logits), and
//! anything else is refused with an error naming the operator and node.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod context;
mod error;
mod fold;
mod import;
mod islands;
mod ops;
mod patterns;
mod phases;
pub mod proto;
mod registry;
mod tensor;
mod value;

pub use error::{OnnxError, Result};
pub use import::{ImportOptions, Imported, OPSETS, import_bytes, import_file, import_file_with};
