//! Loading what the commands take: models (by extension), `.npy` inputs and dataset splits.

use std::path::Path;

use anyhow::{Context, Result, bail};
use ndarray::ArrayD;

use lrp_core::{Dataset, Model, ModelMeta, Network, Split};

/// Loads a model: ONNX when the extension is `.onnx`, else the native format; a shipped name or path that is
/// not on disk (`cnn`, `data/models/mnist-cnn.lrpm` from another folder) is the copy built into the binary.
pub fn load_model(path: &Path) -> Result<Model> {
    load_model_with(path, &lrp_onnx::ImportOptions::default())
}

/// [`load_model`] with ONNX import options (`lrp convert --input-shape`).
pub fn load_model_with(path: &Path, options: &lrp_onnx::ImportOptions) -> Result<Model> {
    if let Some(m) = crate::shipped::model_for(path) {
        return Ok(Model::from_bytes(m.bytes, Path::new(m.path))?);
    }
    if !path.exists() {
        let names: Vec<&str> = crate::shipped::MODELS.iter().map(|m| m.short).collect();
        bail!(
            "--model {}: no such file (the built-in models are {}; others are .onnx or .lrpm files)",
            path.display(),
            names.join(", ")
        );
    }
    if !is_onnx(path) {
        return Ok(Model::load(path)?);
    }
    let imported = match lrp_onnx::import_file_with(path, options) {
        Ok(imported) => imported,
        Err(e @ lrp_onnx::OnnxError::DynamicInput { .. }) => {
            let name = path.display();
            let stem = path.with_extension("lrpm");
            bail!(
                "{name}: cannot import: {e}. Fix the size once with `lrp convert --model {name} --input-shape \
                 3,224,224 --out {}` (the per-sample shape, batch axis left out) and give that file as --model",
                stem.display()
            );
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("{}: cannot import", path.display()))),
    };
    Ok(Model {
        meta: ModelMeta {
            description: format!(
                "{IMPORTED_FROM}{} ({})",
                path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
                imported.origin
            ),
            notes: imported.notes,
        },
        network: imported.network,
    })
}

/// How an imported model's description begins (kept when `lrp convert` writes it as a native file).
const IMPORTED_FROM: &str = "imported from ";

/// Whether a model came from another framework: an ONNX file, or a native file `lrp convert` wrote from one. Such a
/// model takes inputs on its own scale, not the [0, 1] pixels of the shipped models and of those `lrp train` makes.
pub fn is_imported(path: &Path, model: &Model) -> bool {
    is_onnx(path) || model.meta.description.starts_with(IMPORTED_FROM)
}

/// Whether `--model` names an ONNX file (by its extension, as [`load_model`] decides).
pub fn is_onnx(model: &Path) -> bool {
    model.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// Says on standard error what an input file holds that a user may not expect: float64 values (converted), and
/// values a model is unlikely to take: for lrp's own models (the shipped MNIST ones take [0, 1]; 0–255 pixels give
/// logits in the thousands) anything outside [0, 1]; for an ONNX model, which may take any range (torchvision's
/// take values normalized to about −2…2.6), only what looks like unscaled pixels: nothing below 0 and something
/// above 1.
pub fn note_npy_input(path: &Path, src: &lrp_batch::NpySource, imported: bool) {
    note_npy_values(path, src, src.value_range(), imported);
}

/// [`note_npy_input`] with the value range already known (`lrp batch` finds it while digesting the file).
pub fn note_npy_values(path: &Path, src: &lrp_batch::NpySource, range: Option<(f64, f64)>, imported: bool) {
    if src.is_f64() {
        eprintln!(
            "note: {} holds float64 values; they are converted to float32",
            path.display()
        );
    }
    let Some((lo, hi)) = range else { return };
    if imported && lo >= -1e-3 && hi > 1.0 + 1e-3 {
        eprintln!(
            "warning: {} holds values from {lo} to {hi}: if these are 0–255 pixels, most models take them scaled \
             and normalized (`lrp prepare` makes photos into a model's input); ignore this for a model that takes \
             0–255",
            path.display()
        );
    } else if !imported && (lo < -1e-3 || hi > 1.0 + 1e-3) {
        eprintln!(
            "warning: {} holds values from {lo} to {hi}, outside [0, 1]: the shipped models take pixels in [0, 1] \
             (divide 0–255 images by 255); ignore this for a model trained on another range",
            path.display()
        );
    }
}

/// Reads a float `.npy` (float32, or float64 converted with a note) through the one reader every command uses,
/// and makes it a batch for `net`: a single sample without the batch axis gets one. `imported`: whether the model
/// came from another framework ([`is_imported`], for [`note_npy_input`]).
pub fn load_npy_input(path: &Path, net: &Network, imported: bool) -> Result<ArrayD<f32>> {
    let src = lrp_batch::NpySource::open_for(path, net.input_shape())?;
    note_npy_input(path, &src, imported);
    let x = src.all()?;
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

/// Labelled inputs shaped for a particular network.
pub struct Samples {
    /// `[N, …input shape]`.
    pub images: ArrayD<f32>,
    /// `N` labels.
    pub labels: Vec<u8>,
}

impl Samples {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// `max label + 1`.
    pub fn num_classes(&self) -> usize {
        self.labels.iter().copied().max().map_or(0, |m| m as usize + 1)
    }
}

/// Images `[N, …]` reshaped to a network's per-sample input shape when they differ only by unit axes
/// (a `[1, 28, 28]` image for an LSTM that reads `[28, 28]`). Takes the array: one that already fits is returned
/// as it is, never copied (the MNIST training split is 188 MB as float32).
pub fn fit_images(images: ArrayD<f32>, input_shape: &[usize]) -> Result<ArrayD<f32>> {
    let sample = &images.shape()[1..];
    if sample == input_shape {
        return Ok(images);
    }
    let squeeze = |s: &[usize]| s.iter().copied().filter(|&d| d != 1).collect::<Vec<_>>();
    if squeeze(sample) != squeeze(input_shape) {
        bail!("images are {sample:?} per sample, the model takes {input_shape:?}");
    }
    let mut shape = vec![images.shape()[0]];
    shape.extend_from_slice(input_shape);
    Ok(images.as_standard_layout().into_owned().into_shape_with_order(shape)?)
}

/// Loads a dataset split from its folder; the shipped `data/mnist` from another folder is the test split built
/// into the binary.
pub fn load_dataset(dir: &Path, split: Split) -> Result<Dataset> {
    if crate::shipped::is_mnist(dir) {
        return crate::shipped::mnist(split);
    }
    Ok(Dataset::load(dir, split)?)
}

/// The digest of a model file (or of the built-in copy it names), which identifies a batch run.
pub fn model_digest(path: &Path) -> Result<String> {
    match crate::shipped::model_for(path) {
        Some(m) => Ok(lrp_batch::digest_bytes(m.bytes)),
        None => Ok(lrp_batch::digest_file(path)?),
    }
}

/// A dataset split whose pixels are read on a thread of their own while the batch runner starts (the built-in copy
/// for the shipped `data/mnist` from another folder); its labels are checked against a model by [`check_labels`].
pub fn open_split(dir: &Path, split: Split) -> Result<lrp_core::StreamedDataset> {
    if crate::shipped::is_mnist(dir) {
        crate::shipped::mnist_stream(split)
    } else {
        Ok(lrp_core::StreamedDataset::open(dir, split)?)
    }
}

/// Refuses a dataset whose labels go beyond `net`'s outputs.
pub fn check_labels(dir: &Path, classes: usize, net: &Network) -> Result<()> {
    if classes > net.num_classes() {
        bail!(
            "{}: labels go up to {}, the model has {} outputs",
            dir.display(),
            classes - 1,
            net.num_classes()
        );
    }
    Ok(())
}

/// Loads a dataset split, fits its images to `net`'s input shape and checks the labels.
pub fn load_split_for(dir: &Path, split: Split, net: &Network) -> Result<Samples> {
    let data = load_dataset(dir, split)?;
    let images = fit_images(data.images.into_dyn(), net.input_shape())
        .with_context(|| format!("{}: images do not fit the model", dir.display()))?;
    let data = Samples {
        images,
        labels: data.labels,
    };
    check_labels(dir, data.num_classes(), net)?;
    Ok(data)
}

/// Writes an `.npy` atomically (a temporary file beside `path`, then a rename): a reader never sees half a file,
/// and a failed write leaves an existing file as it was.
pub fn write_npy_atomic<A, D>(path: &Path, array: &ndarray::ArrayBase<A, D>) -> Result<()>
where
    A: ndarray::Data,
    A::Elem: ndarray_npy::WritableElement,
    D: ndarray::Dimension,
{
    write_atomic_with(path, |tmp| Ok(ndarray_npy::write_npy(tmp, array)?))
}

/// Refuses an output path whose name says another format than the one written there (`--out rel.onnx` would hold
/// NumPy data under an ONNX name): `flag` (e.g. `--out`) must end in `.ext`, unless it names a device or FIFO
/// (`/dev/null`, a pipe), which is written through.
pub fn require_extension(path: &Path, ext: &str, flag: &str, what: &str) -> Result<()> {
    let stream = lrp_core::atomic::target_kind(path).is_ok_and(|k| k == lrp_core::atomic::Target::Stream);
    if stream || path.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext)) {
        return Ok(());
    }
    bail!(
        "{flag} {}: lrp writes {what} there; name it with .{ext} (e.g. {})",
        path.display(),
        path.with_extension(ext).display()
    )
}

/// Refuses to write a native model under an `.onnx` name, which lrp (and everything else) would then read as ONNX.
pub fn refuse_onnx_name(path: &Path) -> Result<()> {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx")) {
        bail!(
            "--out {}: lrp writes its native model format, which would not read back under an .onnx name (ONNX \
             export is not supported); name it .lrpm",
            path.display()
        );
    }
    Ok(())
}

/// Reads class indices `[N]` from an integer `.npy` (int64 or int32).
pub fn load_targets(path: &Path) -> Result<Vec<usize>> {
    // Checked first (a regular file, a header that fits it), so a FIFO or a hostile header length is refused.
    let info = lrp_batch::npy::inspect(path).context("--targets")?;
    let v: Vec<i64> = match (info.descr.as_str(), info.shape.len()) {
        ("<i8", 1) => lrp_batch::npy::read_checked::<i64, ndarray::Ix1>(path)?.to_vec(),
        ("<i4", 1) => lrp_batch::npy::read_checked::<i32, ndarray::Ix1>(path)?
            .iter()
            .map(|&x| i64::from(x))
            .collect(),
        (d, n) => bail!(
            "{}: holds a {n}-D array of {d}; --targets takes a 1-D int64 (or int32) .npy of classes",
            path.display()
        ),
    };
    v.iter()
        .map(|&t| usize::try_from(t).map_err(|_| anyhow::anyhow!("{}: negative class {t}", path.display())))
        .collect()
}

/// Writes bytes atomically (temporary file beside `path`, then a rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| Ok(std::fs::write(tmp, bytes)?))
}

fn write_atomic_with(path: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    lrp_core::atomic::write_atomically(path, fill, anyhow::Error::from)
        .with_context(|| format!("cannot write {}", path.display()))
}
