//! The import as a pipeline of named phases: decode → initializers (with external data) → pattern fusion →
//! signature → walk (one handler per operator, see [`crate::registry`]) → prune and build.

use std::collections::HashMap;
use std::path::Path;

use lrp_core::Network;

use crate::context::{Builder, GraphState};
use crate::error::{OnnxError, Result};
use crate::phases::{decode, initializers, prune, signature, walk};
use crate::value::{Computed, Val};

pub use crate::phases::decode::OPSETS;

/// An imported network with what the import changed (e.g. a dropped softmax).
#[derive(Clone, Debug)]
pub struct Imported {
    /// The network (batch norms folded).
    pub network: Network,
    /// One line per change a user should know about.
    pub notes: Vec<String>,
    /// Producer and opset, e.g. "pytorch 2.5, opset 17".
    pub origin: String,
}

/// Choices an import cannot read from the file itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// The per-sample input shape (batch axis left out), for files whose input leaves axes other than the batch
    /// dynamic (height and width exported as `dynamic_axes`); it must agree with every axis the file fixes.
    pub input_shape: Option<Vec<usize>>,
}

/// Reads and imports an ONNX file; weights stored as external data are read from beside it.
pub fn import_file(path: &Path) -> Result<Imported> {
    import_file_with(path, &ImportOptions::default())
}

/// [`import_file`] with `options`.
pub fn import_file_with(path: &Path, options: &ImportOptions) -> Result<Imported> {
    // Mapped rather than copied where a read lease keeps the file from changing (see lrp_core::whole_file): the
    // tensors' raw data are slices of it until they are converted. Only regular files (/dev/zero or a pipe would be
    // read until memory runs out), and at most protobuf's limit: a larger model keeps its weights as external data
    // (and a sparse file of terabytes is not read or mapped to find out). The opened file itself is checked.
    let bytes = match lrp_core::whole_file::whole_file_at_most(path, i32::MAX as u64) {
        Ok(lrp_core::whole_file::WholeFile::Read(v)) => prost::bytes::Bytes::from(v),
        Ok(mapped) => prost::bytes::Bytes::from_owner(mapped),
        Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => {
            return Err(OnnxError::Decode(format!(
                "{} {e}, more than the 2 GiB one ONNX file can hold (protobuf's limit; larger models keep their \
                 weights in external data files)",
                path.display()
            )));
        }
        Err(e) if lrp_core::whole_file::is_not_regular(&e) => {
            return Err(OnnxError::Decode(format!("{} is not a regular file", path.display())));
        }
        Err(e) => return Err(OnnxError::Decode(format!("cannot read {}: {e}", path.display()))),
    };
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() {
        std::path::PathBuf::from(".")
    } else {
        dir
    };
    import_with(bytes, Some(&dir), options)
}

/// Imports an ONNX model from its bytes (external data is refused: there is no folder to read it from).
pub fn import_bytes(bytes: &[u8]) -> Result<Imported> {
    import_with(
        prost::bytes::Bytes::copy_from_slice(bytes),
        None,
        &ImportOptions::default(),
    )
}

/// Imports with `dir` as the folder external data is read from.
fn import_with(bytes: prost::bytes::Bytes, dir: Option<&Path>, options: &ImportOptions) -> Result<Imported> {
    let decode::Decoded {
        mut graph,
        opset,
        producer,
    } = decode::decode(bytes)?;
    let consts = initializers::initializers(&mut graph, dir)?;
    let fused = crate::patterns::fuse_layer_norms(&mut graph, &consts);
    let sig = signature::signature(&graph, &consts, options.input_shape.as_deref())?;

    let mut readers: HashMap<String, usize> = HashMap::new();
    for node in &graph.node {
        for name in node.input.iter().filter(|n| !n.is_empty()) {
            *readers.entry(name.clone()).or_default() += 1;
        }
    }
    *readers.entry(sig.output.clone()).or_default() += 1;
    let mut vals: HashMap<String, Val> = consts.keys().map(|k| (k.clone(), Val::Const)).collect();
    vals.insert(
        sig.input.clone(),
        Val::Node(Computed {
            id: 0,
            shape: sig.input_shape.clone(),
            batch: crate::value::Batch::At(0),
        }),
    );
    let mut st = GraphState {
        consts,
        vals,
        b: Builder {
            nodes: Vec::new(),
            shapes: vec![sig.input_shape.clone()],
        },
        readers,
        notes: Vec::new(),
        opset,
        batch_fixed_to_one: sig.batch_fixed_to_one,
        graph_output: sig.output.clone(),
    };
    if fused > 0 {
        st.notes.push(format!(
            "{fused} layer norm(s) written as ReduceMean/Sub/Pow/Sqrt/Div were imported as layer-norm nodes"
        ));
    }
    let islands = crate::islands::find(&graph, &walk::constant_values(&graph, &st));
    walk::walk(&graph, &mut st, &islands)?;
    let (network, notes) = prune::prune_and_build(st, sig.input_shape)?;
    Ok(Imported {
        network,
        notes,
        origin: format!("{producer}, opset {opset}"),
    })
}
