//! The error type of `lrp-onnx`.

use lrp_core::CoreError;

/// Why an ONNX model could not be imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnnxError {
    /// The file is not a decodable ONNX protobuf (truncated, corrupt, or another format).
    #[error("not a readable ONNX model (truncated or corrupt protobuf): {0}")]
    Decode(String),
    /// An operator this importer does not support.
    #[error("unsupported operator {op_type} at node {node}{hint}")]
    UnsupportedOp {
        /// The node's `op_type` (with its domain, if not the default one).
        op_type: String,
        /// The node's name, or its position when it has none.
        node: String,
        /// What would be supported instead, if anything.
        hint: String,
    },
    /// A supported operator used in a way this importer does not support, or with inconsistent inputs.
    #[error("node {node} ({op_type}): {reason}")]
    Node {
        /// The node's name, or its position when it has none.
        node: String,
        /// The node's `op_type`.
        op_type: String,
        /// What is wrong.
        reason: String,
    },
    /// The graph as a whole is not a supported chain (branches, several inputs, missing pieces).
    #[error("unsupported graph: {0}")]
    Graph(String),
    /// An input axis other than the batch has no fixed size (an export with dynamic height and width) and none was
    /// given ([`crate::ImportOptions::input_shape`]).
    #[error("input '{input}' axis {axis} has no fixed size ({name}); only the batch axis may be dynamic")]
    DynamicInput {
        /// The graph input's name.
        input: String,
        /// The axis (0 is the batch).
        axis: usize,
        /// The axis's symbolic name in the file, or "unknown".
        name: String,
    },
    /// The input shape given ([`crate::ImportOptions::input_shape`]) does not fit the graph's input.
    #[error("the input shape given does not fit the model: {0}")]
    GivenShape(String),
    /// A weight tensor is malformed.
    #[error("initializer '{name}': {reason}")]
    Initializer {
        /// The tensor's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The imported network failed validation.
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// Result with [`OnnxError`].
pub type Result<T, E = OnnxError> = std::result::Result<T, E>;
