//! Phase 2: the initializers, with weights stored as external data read from the model's folder (never from
//! outside it).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use prost::bytes::Bytes;

use crate::error::{OnnxError, Result};
use crate::proto::{GraphProto, TensorProto};

/// Takes the graph's initializers as the import's first constants, reading external data from `dir`.
pub(crate) fn initializers(graph: &mut GraphProto, dir: Option<&Path>) -> Result<HashMap<String, TensorProto>> {
    let mut consts = HashMap::new();
    let mut files = DataFiles::new();
    for mut t in std::mem::take(&mut graph.initializer) {
        // onnxruntime refuses a name given twice; taking one of the two copies would compute another network.
        if consts.contains_key(&t.name) {
            return Err(OnnxError::Initializer {
                name: t.name.clone(),
                reason: "is given twice; a model names each weight once (onnxruntime refuses it too)".into(),
            });
        }
        if t.data_location == 1 {
            load_external(&mut t, dir, &mut files)?;
        }
        consts.insert(t.name.clone(), t);
    }
    Ok(consts)
}

/// The external data files met so far, by canonical path: each mapped once (see `lrp_core::whole_file`), its
/// tensors' bytes slices of the mapping; `None` for a file read tensor by tensor (too small to map, no lease to map it
/// under, or larger than the memory available: a sparse file of terabytes is not paged in for one small tensor).
type DataFiles = HashMap<PathBuf, Option<Bytes>>;

fn map_data_file(path: &Path) -> Option<Bytes> {
    let most = lrp_core::available_memory().unwrap_or(u64::MAX);
    let mapped = lrp_core::whole_file::mapped(path, lrp_core::whole_file::MAP_FROM_BYTES..=most).ok()??;
    Some(Bytes::from_owner(mapped))
}

/// Where one tensor's external data comes from.
enum Source {
    Mapped(Bytes),
    File(std::fs::File),
}

/// Reads the external data of one initializer from `dir`, refusing locations outside it.
fn load_external(t: &mut TensorProto, dir: Option<&Path>, files: &mut DataFiles) -> Result<()> {
    let bad = |reason: String| OnnxError::Initializer {
        name: t.name.clone(),
        reason,
    };
    let Some(dir) = dir else {
        return Err(bad(
            "stored as external data, which needs the model's folder: import the model from its file".into(),
        ));
    };
    let mut location = None;
    let (mut offset, mut length) = (0u64, None);
    for e in &t.external_data {
        match e.key.as_str() {
            "location" => location = Some(e.value.clone()),
            "offset" => {
                offset = e
                    .value
                    .parse()
                    .map_err(|_| bad(format!("external data offset '{}'", e.value)))?
            }
            "length" => {
                length = Some(
                    e.value
                        .parse::<u64>()
                        .map_err(|_| bad(format!("external data length '{}'", e.value)))?,
                )
            }
            _ => {}
        }
    }
    let location = location.ok_or_else(|| bad("stored as external data without a location".into()))?;
    let rel = Path::new(&location);
    if location.is_empty()
        || rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(bad(format!(
            "external data location '{location}' is not a file inside the model's folder; refused"
        )));
    }
    let path = dir.join(rel);
    // Symbolic links must not lead out of the folder either.
    let (real_dir, real) = match (dir.canonicalize(), path.canonicalize()) {
        (Ok(d), Ok(p)) => (d, p),
        (_, Err(e)) => return Err(bad(format!("external data file '{}': {e}", path.display()))),
        (Err(e), _) => return Err(bad(format!("model folder '{}': {e}", dir.display()))),
    };
    if !real.starts_with(&real_dir) {
        return Err(bad(format!(
            "external data location '{location}' leads outside the model's folder; refused"
        )));
    }
    // A FIFO or device would block or never end: only a regular file is opened.
    if !std::fs::metadata(&real).is_ok_and(|m| m.is_file()) {
        return Err(bad(format!(
            "external data file '{}' is not a regular file (a FIFO or device is not read)",
            path.display()
        )));
    }
    let source = match files.entry(real.clone()).or_insert_with(|| map_data_file(&real)) {
        Some(bytes) => Source::Mapped(bytes.clone()),
        None => Source::File(
            std::fs::File::open(&real).map_err(|e| bad(format!("external data file '{}': {e}", path.display())))?,
        ),
    };
    let size = match &source {
        Source::Mapped(bytes) => bytes.len() as u64,
        Source::File(file) => file
            .metadata()
            .map_err(|e| bad(format!("external data file '{}': {e}", path.display())))?
            .len(),
    };
    let length = match length {
        Some(l) => l,
        None => size.checked_sub(offset).unwrap_or(u64::MAX),
    };
    match offset.checked_add(length) {
        Some(end) if end <= size => {}
        _ => {
            return Err(bad(format!(
                "external data at offset {offset}, length {length} goes past the end of '{location}' ({size} \
                 bytes): the file is truncated or does not belong to this model"
            )));
        }
    }
    t.raw_data = match source {
        // Within the mapping: checked against its length just above.
        Source::Mapped(bytes) => bytes.slice(offset as usize..(offset + length) as usize),
        Source::File(mut file) => {
            let mut buf = vec![0u8; length as usize];
            file.seek(SeekFrom::Start(offset))
                .and_then(|_| file.read_exact(&mut buf))
                .map_err(|e| bad(format!("reading external data from '{location}': {e}")))?;
            buf.into()
        }
    };
    t.data_location = 0;
    t.external_data.clear();
    Ok(())
}
