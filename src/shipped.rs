//! The shipped models and the MNIST test split, embedded in the binary (about 3.5 MB), so an installed `lrp`
//! works from any folder with no files: `lrp view`, `lrp explain --model cnn --index 0`. The repository's
//! `data/` stays the source: a file that exists is always read from disk; the embedded copy answers only for a
//! shipped name (`cnn`, `mnist-cnn`, …) or a shipped path (`data/models/mnist-cnn.lrpm`, `data/mnist`) that is
//! not there.

use std::path::Path;

use lrp_core::{ByteDataset, Dataset, Split, StreamedDataset};

/// One embedded model.
pub struct ShippedModel {
    /// Short name (`cnn`).
    pub short: &'static str,
    /// Path in the repository.
    pub path: &'static str,
    /// The model file.
    pub bytes: &'static [u8],
}

macro_rules! shipped {
    ($short:literal, $file:literal) => {
        ShippedModel {
            short: $short,
            path: concat!("data/models/", $file),
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/data/models/", $file)),
        }
    };
}

/// The shipped models, in the viewer's order.
pub const MODELS: [ShippedModel; 5] = [
    shipped!("cnn", "mnist-cnn.lrpm"),
    shipped!("mlp", "mnist-mlp.lrpm"),
    shipped!("lstm", "mnist-lstm.lrpm"),
    shipped!("resnet", "mnist-resnet.lrpm"),
    shipped!("vit", "mnist-vit.lrpm"),
];

/// The shipped dataset folder.
pub const MNIST_DIR: &str = "data/mnist";
const TEST_IMAGES: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/mnist/t10k-images-idx3-ubyte.gz"
));
const TEST_LABELS: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/mnist/t10k-labels-idx1-ubyte.gz"
));

impl ShippedModel {
    /// `mnist-cnn`.
    pub fn stem(&self) -> &'static str {
        let file = self.path.rsplit('/').next().unwrap_or(self.path);
        file.strip_suffix(".lrpm").unwrap_or(file)
    }
}

/// The embedded model a `path` that is not a file names: `cnn`, `mnist-cnn`, `mnist-cnn.lrpm` or a path ending in
/// `data/models/mnist-cnn.lrpm`. `None` when the path is a file (the file wins; a folder named `lstm` does not
/// hide the shipped LSTM) or names nothing shipped.
pub fn model_for(path: &Path) -> Option<&'static ShippedModel> {
    if path.is_file() {
        return None;
    }
    let text = path.to_string_lossy();
    MODELS.iter().find(|m| {
        let file = m.path.rsplit('/').next().unwrap_or(m.path);
        text == m.short || text == m.stem() || text == file || text.ends_with(m.path)
    })
}

/// Whether a missing `dir` names the shipped MNIST (`data/mnist`, `mnist`, or a path ending in `data/mnist`).
pub fn is_mnist(dir: &Path) -> bool {
    if dir.exists() {
        return false;
    }
    let text = dir.to_string_lossy();
    let text = text.trim_end_matches('/');
    text == "mnist" || text.ends_with(MNIST_DIR)
}

/// The embedded MNIST test split.
pub fn mnist(split: Split) -> anyhow::Result<Dataset> {
    Ok(mnist_bytes(split)?.into_dataset())
}

/// The embedded MNIST test split as bytes.
pub fn mnist_bytes(split: Split) -> anyhow::Result<ByteDataset> {
    test_split_only(split)?;
    Ok(ByteDataset::from_idx_bytes(
        TEST_IMAGES,
        Path::new(TEST_IMAGES_NAME),
        TEST_LABELS,
        Path::new(TEST_LABELS_NAME),
    )?)
}

/// The embedded MNIST test split, its pixels inflated on a thread of their own ([`StreamedDataset`]).
pub fn mnist_stream(split: Split) -> anyhow::Result<StreamedDataset> {
    test_split_only(split)?;
    Ok(StreamedDataset::from_static(
        TEST_IMAGES,
        Path::new(TEST_IMAGES_NAME),
        TEST_LABELS,
        Path::new(TEST_LABELS_NAME),
    )?)
}

const TEST_IMAGES_NAME: &str = "(built-in) t10k-images-idx3-ubyte.gz";
const TEST_LABELS_NAME: &str = "(built-in) t10k-labels-idx1-ubyte.gz";

fn test_split_only(split: Split) -> anyhow::Result<()> {
    match split {
        Split::Test => Ok(()),
        Split::Train => anyhow::bail!(
            "the built-in MNIST holds the test split only; the training split needs the folder {MNIST_DIR} (run \
             from a clone of the repository, or pass --data DIR)"
        ),
    }
}

/// The digest of the embedded test split, the same as of the shipped files (so a run over either resumes the
/// other).
pub fn mnist_digest() -> String {
    format!(
        "{}{}",
        lrp_batch::digest_bytes(TEST_IMAGES),
        lrp_batch::digest_bytes(TEST_LABELS)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_copies_are_the_repository_files() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for m in &MODELS {
            assert_eq!(std::fs::read(root.join(m.path)).unwrap(), m.bytes, "{}", m.path);
        }
        let test = Dataset::load(&root.join(MNIST_DIR), Split::Test).unwrap();
        let embedded = mnist(Split::Test).unwrap();
        assert_eq!(test.labels, embedded.labels);
        assert_eq!(test.images, embedded.images);
        assert!(mnist(Split::Train).is_err());
    }

    #[test]
    fn names_resolve_only_when_nothing_is_on_disk() {
        assert_eq!(model_for(Path::new("cnn")).map(|m| m.short), Some("cnn"));
        assert_eq!(model_for(Path::new("mnist-resnet")).map(|m| m.short), Some("resnet"));
        assert_eq!(
            model_for(Path::new("/nowhere/data/models/mnist-lstm.lrpm")).map(|m| m.short),
            Some("lstm")
        );
        assert!(model_for(Path::new("/nowhere/other.lrpm")).is_none());
        // A file that exists is read from disk.
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/models/mnist-cnn.lrpm");
        assert!(model_for(&here).is_none());
        assert!(is_mnist(Path::new("/nowhere/data/mnist/")));
        assert!(!is_mnist(Path::new("/nowhere/fashion")));
    }
}
