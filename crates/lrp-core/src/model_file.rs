//! Native model files: `LRPMODEL` magic, a little-endian `u32` format version, then bincode 2 (serde)
//! of the model's metadata and network.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::network::Network;

/// The first eight bytes of every model file.
pub const MAGIC: &[u8; 8] = b"LRPMODEL";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// No model file may decode to more than this many bytes of parameters and metadata (1 GiB).
const DECODE_LIMIT: usize = 1 << 30;

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_limit::<DECODE_LIMIT>()
}

/// Facts about a model that travel with it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Free text: how the model was made (e.g. the `lrp train` command), or where it came from.
    pub description: String,
    /// Notes shown by `lrp info` (e.g. "a final Softmax was dropped").
    pub notes: Vec<String>,
}

/// A network with its metadata, as stored on disk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Metadata.
    pub meta: ModelMeta,
    /// The network (validated on decode).
    pub network: Network,
}

impl Model {
    /// Encodes into the file format.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(16 + 4 * self.network.param_count());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let payload = bincode::serde::encode_to_vec(self, config()).map_err(|e| CoreError::ModelFile {
            path: "<memory>".into(),
            reason: format!("cannot encode: {e}"),
        })?;
        out.extend_from_slice(&payload);
        Ok(out)
    }

    /// Decodes the file format; `path` names the source in errors.
    ///
    /// Refuses: a wrong magic (not a model file), another format version, a truncated or corrupt payload,
    /// trailing bytes, and any network whose shapes do not agree (checked by [`Network::new`]).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Model> {
        let bad = |reason: String| CoreError::ModelFile {
            path: path.to_path_buf(),
            reason,
        };
        if bytes.len() < MAGIC.len() + 4 || &bytes[..MAGIC.len()] != MAGIC {
            let hint = if bytes.len() < MAGIC.len() + 4 && MAGIC.starts_with(bytes) && !bytes.is_empty() {
                "truncated: the file ends inside the header"
            } else {
                "not an lrp model file (it does not start with LRPMODEL); ONNX models need the .onnx extension"
            };
            return Err(bad(hint.into()));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(bad(format!(
                "model format version {version}; this build of lrp reads version {FORMAT_VERSION}"
            )));
        }
        let payload = &bytes[12..];
        let (model, used): (Model, usize) = bincode::serde::decode_from_slice(payload, config()).map_err(|e| {
            use bincode::error::DecodeError;
            match e {
                DecodeError::UnexpectedEnd { .. } => bad("truncated: the file ends before the model does".into()),
                DecodeError::LimitExceeded => bad("corrupt: the file asks for more than 1 GiB of parameters".into()),
                other => bad(format!("corrupt or invalid model: {other}")),
            }
        })?;
        if used != payload.len() {
            return Err(bad(format!(
                "{} trailing bytes after the model: the file is corrupt or was written by something else",
                payload.len() - used
            )));
        }
        Ok(model)
    }

    /// Writes atomically: a temporary file beside `path`, then a rename.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        crate::atomic::write_atomically(
            path,
            |tmp| std::fs::write(tmp, &bytes).map_err(|e| CoreError::io(tmp, e)),
            |e| CoreError::io(path, e),
        )
    }

    /// Reads and validates a model file.
    pub fn load(path: &Path) -> Result<Model> {
        let bytes = std::fs::read(path).map_err(|e| CoreError::io(path, e))?;
        Model::from_bytes(&bytes, path)
    }
}
