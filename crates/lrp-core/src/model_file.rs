//! Native model files: `LRPMODEL` magic, a little-endian `u32` format version, then bincode 2 (serde)
//! of the model's metadata and network.
//!
//! Version 1 holds a chain (`input_shape`, `layers`); version 2 a graph (`input_shape`, `layers` and the values each
//! layer reads). Chains are still written as version 1, so files of chains stay readable by older builds and
//! byte-identical to what they were.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::layers::Layer;
use crate::network::Network;

/// The first eight bytes of every model file.
pub const MAGIC: &[u8; 8] = b"LRPMODEL";
/// The format version of chains (written for every network that is a chain of version-1 layers).
pub const FORMAT_VERSION: u32 = 1;
/// The format version of graphs.
pub const GRAPH_FORMAT_VERSION: u32 = 2;
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
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// Metadata.
    pub meta: ModelMeta,
    /// The network (validated on decode).
    pub network: Network,
}

/// Version 1: a chain.
#[derive(Serialize, Deserialize)]
struct ChainFile {
    meta: ModelMeta,
    input_shape: Vec<usize>,
    layers: Vec<Layer>,
}

/// Version 2: a graph; `nodes[k]` is a layer and the values it reads; `convs[k]` the dilation and groups of node
/// `k` when it is a convolution (the layer's own serde form leaves them out, as version 1 did).
#[derive(Serialize, Deserialize)]
struct GraphFile {
    meta: ModelMeta,
    input_shape: Vec<usize>,
    nodes: Vec<(Layer, Vec<usize>)>,
    convs: Vec<Option<([usize; 2], usize)>>,
}

impl Model {
    /// Encodes into the file format.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(16 + 4 * self.network.param_count());
        out.extend_from_slice(MAGIC);
        let net = &self.network;
        let plain = |l: &Layer| match l {
            Layer::Conv2d(c) => c.is_plain(),
            other => !other.is_graph_only(),
        };
        let chain = net.is_chain() && net.layers().iter().all(plain);
        let encoded = if chain {
            out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            let file = ChainFile {
                meta: self.meta.clone(),
                input_shape: net.input_shape().to_vec(),
                layers: net.layers().to_vec(),
            };
            bincode::serde::encode_to_vec(&file, config())
        } else {
            out.extend_from_slice(&GRAPH_FORMAT_VERSION.to_le_bytes());
            let file = GraphFile {
                meta: self.meta.clone(),
                input_shape: net.input_shape().to_vec(),
                nodes: net.nodes(),
                convs: net
                    .layers()
                    .iter()
                    .map(|l| match l {
                        Layer::Conv2d(c) => Some((c.dilation, c.groups)),
                        _ => None,
                    })
                    .collect(),
            };
            bincode::serde::encode_to_vec(&file, config())
        };
        let payload = encoded.map_err(|e| CoreError::ModelFile {
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
        if version != FORMAT_VERSION && version != GRAPH_FORMAT_VERSION {
            return Err(bad(format!(
                "model format version {version}; this build of lrp reads versions {FORMAT_VERSION} and \
                 {GRAPH_FORMAT_VERSION}"
            )));
        }
        let payload = &bytes[12..];
        let decode_error = |e: bincode::error::DecodeError| {
            use bincode::error::DecodeError;
            match e {
                DecodeError::UnexpectedEnd { .. } => bad("truncated: the file ends before the model does".into()),
                DecodeError::LimitExceeded => bad("corrupt: the file asks for more than 1 GiB of parameters".into()),
                other => bad(format!("corrupt or invalid model: {other}")),
            }
        };
        let (meta, network, used) = if version == FORMAT_VERSION {
            let (f, used): (ChainFile, usize) =
                bincode::serde::decode_from_slice(payload, config()).map_err(decode_error)?;
            if let Some(l) = f.layers.iter().find(|l| l.is_graph_only()) {
                return Err(bad(format!(
                    "corrupt: a version-1 file holds a {} layer, which only graphs (version 2) have",
                    l.kind().name()
                )));
            }
            (f.meta, Network::new(f.input_shape, f.layers), used)
        } else {
            let (mut f, used): (GraphFile, usize) =
                bincode::serde::decode_from_slice(payload, config()).map_err(decode_error)?;
            if f.convs.len() != f.nodes.len() {
                return Err(bad(format!(
                    "corrupt: {} convolution settings for {} nodes",
                    f.convs.len(),
                    f.nodes.len()
                )));
            }
            for (k, ((layer, _), extra)) in f.nodes.iter_mut().zip(&f.convs).enumerate() {
                match (layer, extra) {
                    (Layer::Conv2d(c), Some((dilation, groups))) => {
                        c.dilation = *dilation;
                        c.groups = *groups;
                    }
                    (Layer::Conv2d(_), None) | (_, Some(_)) => {
                        return Err(bad(format!("corrupt: convolution settings do not match node {k}")));
                    }
                    _ => {}
                }
            }
            (f.meta, Network::graph(f.input_shape, f.nodes), used)
        };
        let network = network.map_err(|e| bad(format!("invalid network: {e}")))?;
        let model = Model { meta, network };
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
            |tmp| std::fs::write(tmp, &bytes).map_err(|e| CoreError::io(path, e)),
            |e| CoreError::io(path, e),
        )
    }

    /// Reads and validates a model file.
    pub fn load(path: &Path) -> Result<Model> {
        // Only regular files: /dev/zero or a pipe would be read until memory runs out.
        let meta = std::fs::metadata(path).map_err(|e| CoreError::io(path, e))?;
        if !meta.is_file() {
            return Err(CoreError::ModelFile {
                path: path.to_path_buf(),
                reason: "is not a regular file".into(),
            });
        }
        if meta.len() > (DECODE_LIMIT as u64) + 64 {
            return Err(CoreError::ModelFile {
                path: path.to_path_buf(),
                reason: format!("is {} bytes, more than a model file can hold (1 GiB)", meta.len()),
            });
        }
        let bytes = std::fs::read(path).map_err(|e| CoreError::io(path, e))?;
        Model::from_bytes(&bytes, path)
    }
}
