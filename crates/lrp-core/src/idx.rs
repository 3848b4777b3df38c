//! IDX datasets (MNIST and friends), gzip-compressed or raw.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use ndarray::Array4;

use crate::error::{CoreError, Result};

/// The largest IDX payload this reader accepts (4 GiB), so a corrupt header cannot ask for absurd memory.
const MAX_IDX_BYTES: u64 = 1 << 32;

/// An IDX array of unsigned bytes: its dimensions and data (row-major).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions from the header.
    pub dims: Vec<usize>,
    /// `dims.iter().product()` bytes.
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes, gzip-compressed (detected by its magic) or raw.
///
/// Checks the magic (`00 00 08 NDIM`), that the dimensions are within a sane size,
/// and that the payload has exactly the size the header announces.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let file = File::open(path).map_err(|e| CoreError::io(path, e))?;
    let meta = file.metadata().map_err(|e| CoreError::io(path, e))?;
    if !meta.is_file() {
        return Err(CoreError::Idx {
            path: path.to_path_buf(),
            reason: "is not a regular file".into(),
        });
    }
    read_idx_from(BufReader::new(file), meta.len(), path)
}

/// [`read_idx`] of bytes in memory (an embedded dataset); `name` is used in errors.
pub fn read_idx_bytes(bytes: &[u8], name: &Path) -> Result<IdxArray> {
    read_idx_from(bytes, bytes.len() as u64, name)
}

fn read_idx_from<R: std::io::BufRead>(mut raw: R, file_size: u64, path: &Path) -> Result<IdxArray> {
    let bad = |reason: String| CoreError::Idx {
        path: path.to_path_buf(),
        reason,
    };
    let mut sniff = [0u8; 2];
    let peeked = {
        let buf = raw.fill_buf().map_err(|e| CoreError::io(path, e))?;
        let n = buf.len().min(2);
        sniff[..n].copy_from_slice(&buf[..n]);
        n
    };
    let gzip = peeked == 2 && sniff == [0x1f, 0x8b];
    let mut reader: Box<dyn Read> = if gzip {
        Box::new(GzDecoder::new(raw))
    } else {
        Box::new(raw)
    };
    let mut head = [0u8; 4];
    reader
        .read_exact(&mut head)
        .map_err(|e| bad(format!("cannot read the IDX header: {e}")))?;
    if head[0] != 0 || head[1] != 0 {
        return Err(bad(format!(
            "not an IDX file: magic {:02x} {:02x} {:02x} {:02x}, expected 00 00 08 NN",
            head[0], head[1], head[2], head[3]
        )));
    }
    if head[2] != 0x08 {
        return Err(bad(format!(
            "IDX element type 0x{:02x} is not supported (only unsigned bytes, 0x08)",
            head[2]
        )));
    }
    let ndim = head[3] as usize;
    if ndim == 0 {
        return Err(bad("IDX header declares zero dimensions".into()));
    }
    let mut dims = Vec::with_capacity(ndim);
    let mut total: u64 = 1;
    for d in 0..ndim {
        let mut b = [0u8; 4];
        reader
            .read_exact(&mut b)
            .map_err(|e| bad(format!("header ends before dimension {d}: {e}")))?;
        let v = u32::from_be_bytes(b) as u64;
        total = total.saturating_mul(v);
        dims.push(v as usize);
    }
    if total > MAX_IDX_BYTES {
        return Err(bad(format!(
            "dimensions {dims:?} ask for {total} bytes, more than this reader accepts"
        )));
    }
    // What the file can hold, before anything is allocated: raw data is the file less its header; deflate expands
    // at most 1032:1, so a small .gz cannot honestly announce gigabytes.
    let room = if gzip {
        file_size.saturating_mul(1032)
    } else {
        file_size.saturating_sub(4 + 4 * ndim as u64)
    };
    if total > room {
        return Err(bad(if gzip {
            format!(
                "header dimensions {dims:?} announce {total} bytes of data; a gzip file of {file_size} bytes cannot \
                 hold them"
            )
        } else {
            format!("truncated: header dimensions {dims:?} announce {total} bytes of data, the file holds {room}")
        }));
    }
    let mut data = Vec::with_capacity((total as usize).min(64 << 20));
    reader
        .take(total + 1)
        .read_to_end(&mut data)
        .map_err(|e| bad(format!("cannot read the data: {e}")))?;
    let found = data.len() as u64;
    if found < total {
        return Err(bad(format!(
            "truncated: header dimensions {dims:?} announce {total} bytes of data, found {found}"
        )));
    }
    if found > total {
        return Err(bad(format!(
            "trailing bytes after the {total} bytes of data that header dimensions {dims:?} announce"
        )));
    }
    Ok(IdxArray { dims, data })
}

/// Which half of a dataset folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`.
    Train,
    /// `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`.
    Test,
}

impl Split {
    fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// Labelled images, pixels scaled to `[0, 1]`.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// `[N, 1, H, W]`, IDX bytes divided by 255.
    pub images: Array4<f32>,
    /// `N` labels.
    pub labels: Vec<u8>,
}

impl Dataset {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// `max label + 1`.
    pub fn num_classes(&self) -> usize {
        classes(&self.labels)
    }

    /// Per-sample image shape `[1, H, W]`.
    pub fn sample_shape(&self) -> Vec<usize> {
        self.images.shape()[1..].to_vec()
    }

    /// Loads one split of a folder holding the four IDX files (each raw or `.gz`).
    pub fn load(dir: &Path, split: Split) -> Result<Dataset> {
        Ok(ByteDataset::load(dir, split)?.into_dataset())
    }

    /// A split from the bytes of its two IDX files (each raw or gzip), e.g. embedded in a binary; the names are
    /// used in errors.
    pub fn from_idx_bytes(images: &[u8], images_name: &Path, labels: &[u8], labels_name: &Path) -> Result<Dataset> {
        Ok(ByteDataset::from_idx_bytes(images, images_name, labels, labels_name)?.into_dataset())
    }
}

/// `max label + 1` (0 without labels).
fn classes(labels: &[u8]) -> usize {
    labels.iter().copied().max().map_or(0, |m| m as usize + 1)
}

/// A pixel's value in a [`Dataset`]: its IDX byte divided by 255.
#[inline]
pub fn pixel_value(byte: u8) -> f32 {
    byte as f32 / 255.0
}

/// Labelled images as their IDX bytes, checked as a [`Dataset`] is: a quarter of its memory, for readers that
/// convert a chunk at a time ([`ByteDataset::floats_into`]; the batch runner) instead of the whole split up front.
#[derive(Clone, Debug)]
pub struct ByteDataset {
    /// `N·H·W` bytes, image after image.
    pub pixels: Vec<u8>,
    /// `(N, H, W)`.
    pub dims: (usize, usize, usize),
    /// `N` labels.
    pub labels: Vec<u8>,
}

impl ByteDataset {
    /// Loads one split of a folder holding the four IDX files (each raw or `.gz`).
    pub fn load(dir: &Path, split: Split) -> Result<ByteDataset> {
        let images_path = find_data_file(dir, &format!("{}-images-idx3-ubyte", split.prefix()))?;
        let labels_path = find_data_file(dir, &format!("{}-labels-idx1-ubyte", split.prefix()))?;
        ByteDataset::from_idx(
            read_idx(&images_path)?,
            images_path,
            read_idx(&labels_path)?,
            labels_path,
        )
    }

    /// [`Dataset::from_idx_bytes`], keeping the bytes.
    pub fn from_idx_bytes(images: &[u8], images_name: &Path, labels: &[u8], labels_name: &Path) -> Result<ByteDataset> {
        ByteDataset::from_idx(
            read_idx_bytes(images, images_name)?,
            images_name.to_path_buf(),
            read_idx_bytes(labels, labels_name)?,
            labels_name.to_path_buf(),
        )
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// `max label + 1`.
    pub fn num_classes(&self) -> usize {
        classes(&self.labels)
    }

    /// Per-sample image shape `[1, H, W]`, as a [`Dataset`]'s.
    pub fn sample_shape(&self) -> Vec<usize> {
        vec![1, self.dims.1, self.dims.2]
    }

    /// The images `range` as floats ([`pixel_value`]) into `out` (`range.len()·H·W` values).
    pub fn floats_into(&self, range: std::ops::Range<usize>, out: &mut [f32]) {
        let per = self.dims.1 * self.dims.2;
        for (o, &b) in out.iter_mut().zip(&self.pixels[range.start * per..range.end * per]) {
            *o = pixel_value(b);
        }
    }

    /// The images as floats: a [`Dataset`].
    pub fn into_dataset(self) -> Dataset {
        let (n, h, w) = self.dims;
        let pixels: Vec<f32> = self.pixels.iter().map(|&b| pixel_value(b)).collect();
        let images = Array4::from_shape_vec((n, 1, h, w), pixels).expect("length checked by read_idx");
        Dataset {
            images,
            labels: self.labels,
        }
    }

    fn from_idx(images: IdxArray, images_path: PathBuf, labels: IdxArray, labels_path: PathBuf) -> Result<ByteDataset> {
        if images.dims.len() != 3 {
            return Err(CoreError::Idx {
                path: images_path,
                reason: format!("images must have 3 dimensions [N, H, W], header has {:?}", images.dims),
            });
        }
        if labels.dims.len() != 1 {
            return Err(CoreError::Idx {
                path: labels_path,
                reason: format!("labels must have 1 dimension [N], header has {:?}", labels.dims),
            });
        }
        let (n, h, w) = (images.dims[0], images.dims[1], images.dims[2]);
        if labels.dims[0] != n {
            return Err(CoreError::Idx {
                path: labels_path,
                reason: format!("{} labels for {n} images in {}", labels.dims[0], images_path.display()),
            });
        }
        if h == 0 || w == 0 {
            return Err(CoreError::Idx {
                path: images_path,
                reason: format!("images of {h}×{w} pixels"),
            });
        }
        Ok(ByteDataset {
            pixels: images.data,
            dims: (n, h, w),
            labels: labels.data,
        })
    }
}

/// `dir/name`, or `dir/name.gz` when only that exists.
pub fn find_data_file(dir: &Path, name: &str) -> Result<PathBuf> {
    for candidate in [dir.join(name), dir.join(format!("{name}.gz"))] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(CoreError::MissingDataFile {
        dir: dir.to_path_buf(),
        name: name.to_string(),
    })
}
