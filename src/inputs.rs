//! Loading what the commands take: models (by extension), `.npy` inputs and dataset splits.

use std::path::Path;

use anyhow::{Context, Result, bail};
use ndarray::{ArrayD, Axis};

use lrp_core::{Dataset, Model, ModelMeta, Network, Split};

/// Loads a model: ONNX when the extension is `.onnx`, else the native format.
pub fn load_model(path: &Path) -> Result<Model> {
    let is_onnx = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
    if !is_onnx {
        return Ok(Model::load(path)?);
    }
    let imported = lrp_onnx::import_file(path).with_context(|| format!("{}: cannot import", path.display()))?;
    Ok(Model {
        meta: ModelMeta {
            description: format!(
                "imported from {} ({})",
                path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
                imported.origin
            ),
            notes: imported.notes,
        },
        network: imported.network,
    })
}

/// Reads a float `.npy` (float32, or float64 converted) and makes it a batch for `net`:
/// a single sample without the batch axis gets one.
pub fn load_npy_input(path: &Path, net: &Network) -> Result<ArrayD<f32>> {
    let x: ArrayD<f32> = match ndarray_npy::read_npy::<_, ArrayD<f32>>(path) {
        Ok(x) => x,
        Err(first) => match ndarray_npy::read_npy::<_, ArrayD<f64>>(path) {
            Ok(x) => x.mapv(|v| v as f32),
            Err(_) => {
                return Err(first).with_context(|| format!("{}: cannot read as a float32 .npy array", path.display()));
            }
        },
    };
    let x = if x.shape() == net.input_shape() {
        x.insert_axis(Axis(0))
    } else {
        x
    };
    net.check_input(&x.view())
        .with_context(|| format!("{}: not an input for this model", path.display()))?;
    Ok(x)
}

/// Which dataset split a command reads.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum SplitArg {
    /// The test split (t10k-*).
    Test,
    /// The training split (train-*).
    Train,
}

impl From<SplitArg> for Split {
    fn from(s: SplitArg) -> Split {
        match s {
            SplitArg::Test => Split::Test,
            SplitArg::Train => Split::Train,
        }
    }
}

/// Loads a dataset split and checks it fits `net`.
pub fn load_split_for(dir: &Path, split: Split, net: &Network) -> Result<Dataset> {
    let data = Dataset::load(dir, split)?;
    if data.sample_shape() != net.input_shape() {
        bail!(
            "{}: images are {:?} per sample, the model takes {:?}",
            dir.display(),
            data.sample_shape(),
            net.input_shape()
        );
    }
    if data.num_classes() > net.num_classes() {
        bail!(
            "{}: labels go up to {}, the model has {} outputs",
            dir.display(),
            data.num_classes() - 1,
            net.num_classes()
        );
    }
    Ok(data)
}
