//! Phase 1: the bytes decoded as an ONNX model of a supported opset.

use prost::Message;

use crate::error::{OnnxError, Result};
use crate::proto::{GraphProto, ModelProto};

/// The lowest and highest default-domain opset this importer reads.
pub const OPSETS: std::ops::RangeInclusive<i64> = 11..=21;

/// The model's graph, its default-domain opset, and who produced it (`"pytorch 2.5"`).
pub(crate) struct Decoded {
    pub graph: GraphProto,
    pub opset: i64,
    pub producer: String,
}

/// Decodes the model; its tensors' raw data are slices of `bytes`, not copies (copying VGG-16's 553 MB of weights
/// out of the file's bytes was a quarter of its loading).
pub(crate) fn decode(bytes: prost::bytes::Bytes) -> Result<Decoded> {
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
    let graph = model
        .graph
        .take()
        .ok_or_else(|| OnnxError::Graph("the model has no graph".into()))?;
    let producer = if model.producer_name.is_empty() {
        "unknown producer".to_string()
    } else {
        format!("{} {}", model.producer_name, model.producer_version)
            .trim()
            .to_string()
    };
    Ok(Decoded { graph, opset, producer })
}
