//! IDX datasets (MNIST and friends), gzip-compressed or raw.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use ndarray::Array4;

use crate::error::{CoreError, Result};

/// The largest IDX payload this reader accepts (4 GiB), so a corrupt header cannot ask for absurd memory.
const MAX_IDX_BYTES: u64 = 1 << 32;

/// What every split type (whole floats, bytes, streamed bytes) answers from its `labels`.
macro_rules! labelled_split {
    () => {
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
    };
}

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
    // Checked before opening: opening a FIFO for reading blocks until someone writes to it.
    let meta = std::fs::metadata(path).map_err(|e| CoreError::io(path, e))?;
    let file = if meta.is_file() {
        Some(File::open(path).map_err(|e| CoreError::io(path, e))?)
    } else {
        None
    };
    let Some(file) = file else {
        return Err(CoreError::Idx {
            path: path.to_path_buf(),
            reason: "is not a regular file".into(),
        });
    };
    read_idx_from(BufReader::new(file), meta.len(), path)
}

/// [`read_idx`] of bytes in memory (an embedded dataset); `name` is used in errors.
pub fn read_idx_bytes(bytes: &[u8], name: &Path) -> Result<IdxArray> {
    read_idx_from(bytes, bytes.len() as u64, name)
}

fn read_idx_from<R: std::io::BufRead + Send>(raw: R, file_size: u64, path: &Path) -> Result<IdxArray> {
    let (dims, total, reader) = open_payload(raw, file_size, path)?;
    let mut data = Vec::with_capacity((total as usize).min(64 << 20));
    reader
        .take(total + 1)
        .read_to_end(&mut data)
        .map_err(|e| idx_error(path, payload_error(&e)))?;
    let found = data.len() as u64;
    if found < total {
        return Err(idx_error(path, truncated(&dims, total, found)));
    }
    if found > total {
        return Err(idx_error(path, trailing(&dims, total)));
    }
    Ok(IdxArray { dims, data })
}

fn idx_error(path: &Path, reason: String) -> CoreError {
    CoreError::Idx {
        path: path.to_path_buf(),
        reason,
    }
}

fn payload_error(e: &std::io::Error) -> String {
    if e.to_string().contains("invalid gzip header") {
        // After a complete member, what follows must be another member.
        return format!(
            "cannot read the data: bytes follow the compressed data that are not another gzip member (a damaged or \
             padded file: {e})"
        );
    }
    format!("cannot read the data: {e}")
}

fn truncated(dims: &[usize], total: u64, found: u64) -> String {
    format!("truncated: header dimensions {dims:?} announce {total} bytes of data, found {found}")
}

fn trailing(dims: &[usize], total: u64) -> String {
    format!("trailing bytes after the {total} bytes of data that header dimensions {dims:?} announce")
}

/// Reads and checks an IDX header (gzip detected by its magic): the dimensions, their byte count, and a reader
/// positioned at the first data byte. Checks the magic (`00 00 08 NDIM`), that the dimensions are within a sane
/// size, and that the file can hold them, before anything is allocated.
fn open_payload<'a, R: std::io::BufRead + Send + 'a>(
    mut raw: R,
    file_size: u64,
    path: &Path,
) -> Result<(Vec<usize>, u64, Box<dyn Read + Send + 'a>)> {
    let bad = |reason: String| idx_error(path, reason);
    let mut sniff = [0u8; 2];
    let peeked = {
        let buf = raw.fill_buf().map_err(|e| CoreError::io(path, e))?;
        let n = buf.len().min(2);
        sniff[..n].copy_from_slice(&buf[..n]);
        n
    };
    let gzip = peeked == 2 && sniff == [0x1f, 0x8b];
    let mut reader: Box<dyn Read + Send + 'a> = if gzip {
        // Every member of the file (gzip allows several, as `cat a.gz b.gz` makes), and anything after the last
        // member that is not another one is an error, never ignored.
        Box::new(MultiGzDecoder::new(raw))
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
    Ok((dims, total, reader))
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
    labelled_split!();

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

    labelled_split!();

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
        let dims = split_dims(&images.dims, &images_path, &labels.dims, &labels_path)?;
        Ok(ByteDataset {
            pixels: images.data,
            dims,
            labels: labels.data,
        })
    }
}

/// `(N, H, W)` of a split whose headers are `images` `[N, H, W]` and `labels` `[N]`, or an error naming the file.
fn split_dims(
    images: &[usize],
    images_path: &Path,
    labels: &[usize],
    labels_path: &Path,
) -> Result<(usize, usize, usize)> {
    if images.len() != 3 {
        return Err(idx_error(
            images_path,
            format!("images must have 3 dimensions [N, H, W], header has {images:?}"),
        ));
    }
    if labels.len() != 1 {
        return Err(idx_error(
            labels_path,
            format!("labels must have 1 dimension [N], header has {labels:?}"),
        ));
    }
    let (n, h, w) = (images[0], images[1], images[2]);
    if labels[0] != n {
        return Err(idx_error(
            labels_path,
            format!("{} labels for {n} images in {}", labels[0], images_path.display()),
        ));
    }
    if h == 0 || w == 0 {
        return Err(idx_error(images_path, format!("images of {h}×{w} pixels")));
    }
    Ok((n, h, w))
}

/// Bytes of pixels the reading thread of a [`StreamedDataset`] hands over at a time.
const BLOCK: usize = 1 << 20;

/// Labelled images whose pixels are read (inflated, for a `.gz`) on a thread of their own while the first ones are
/// already in use: the batch runner's IDX input, so explaining starts at once instead of after the whole split is
/// inflated (14 ms of a 75 ms MLP run over the MNIST test split; 85 ms before anything started for the training
/// split). The headers and the labels are read and checked before [`StreamedDataset::open`] returns; a reader of
/// images waits for them. The file is checked as [`read_idx`] checks it — its size against the header, no trailing
/// bytes, gzip's checksum — and the last block of pixels is handed over only once that has passed, so nothing that
/// reads every image can finish on a damaged file; after a failure every read returns the error.
pub struct StreamedDataset {
    /// `(N, H, W)`.
    pub dims: (usize, usize, usize),
    /// `N` labels.
    pub labels: Vec<u8>,
    /// The labels file (or the name given for bytes in memory); the images file is the stream's.
    labels_path: PathBuf,
    pixels: std::sync::Arc<Stream>,
}

/// What the reading thread shares with the readers.
struct Stream {
    path: PathBuf,
    arrived: std::sync::Mutex<Arrived>,
    more: std::sync::Condvar,
    /// Set when the dataset is dropped: the thread stops at its next block.
    abandoned: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Arrived {
    /// The pixels so far, [`BLOCK`] bytes each but the last (each the vector it was read into: an `Arc<[u8]>`
    /// would copy it).
    blocks: Vec<std::sync::Arc<Vec<u8>>>,
    /// Set when the thread has stopped: why, if the file is damaged.
    failed: Option<String>,
}

impl StreamedDataset {
    /// Opens one split of a folder holding the four IDX files (each raw or `.gz`): the labels are read whole, the
    /// images' header checked, their pixels read on a new thread.
    pub fn open(dir: &Path, split: Split) -> Result<StreamedDataset> {
        let images_path = find_data_file(dir, &format!("{}-images-idx3-ubyte", split.prefix()))?;
        let labels_path = find_data_file(dir, &format!("{}-labels-idx1-ubyte", split.prefix()))?;
        let labels = read_idx(&labels_path)?;
        let meta = std::fs::metadata(&images_path).map_err(|e| CoreError::io(&images_path, e))?;
        if !meta.is_file() {
            return Err(idx_error(&images_path, "is not a regular file".into()));
        }
        let file = File::open(&images_path).map_err(|e| CoreError::io(&images_path, e))?;
        Self::start(BufReader::new(file), meta.len(), images_path, labels, &labels_path)
    }

    /// [`StreamedDataset::open`] of the bytes of two IDX files in memory (an embedded dataset); the names are used
    /// in errors.
    pub fn from_static(
        images: &'static [u8],
        images_name: &Path,
        labels: &[u8],
        labels_name: &Path,
    ) -> Result<StreamedDataset> {
        let labels = read_idx_bytes(labels, labels_name)?;
        Self::start(
            images,
            images.len() as u64,
            images_name.to_path_buf(),
            labels,
            labels_name,
        )
    }

    fn start<R: std::io::BufRead + Send + 'static>(
        raw: R,
        file_size: u64,
        images_path: PathBuf,
        labels: IdxArray,
        labels_path: &Path,
    ) -> Result<StreamedDataset> {
        let (dims, total, reader) = open_payload(raw, file_size, &images_path)?;
        let split = split_dims(&dims, &images_path, &labels.dims, labels_path)?;
        let stream = std::sync::Arc::new(Stream {
            path: images_path.clone(),
            arrived: Default::default(),
            more: Default::default(),
            abandoned: Default::default(),
        });
        let pump = std::sync::Arc::clone(&stream);
        std::thread::Builder::new()
            .name("lrp-idx-reader".into())
            .spawn(move || pump.fill(reader, &dims, total))
            .map_err(|e| idx_error(&images_path, format!("cannot start a thread to read it: {e}")))?;
        Ok(StreamedDataset {
            dims: split,
            labels: labels.data,
            labels_path: labels_path.to_path_buf(),
            pixels: stream,
        })
    }

    labelled_split!();

    /// The two files the split was opened from, images and labels (for bytes in memory, the names given).
    pub fn files(&self) -> (&Path, &Path) {
        (&self.pixels.path, &self.labels_path)
    }

    /// The images `range` as floats ([`pixel_value`], the same as a [`Dataset`]'s) into `out` (`range.len()·H·W`
    /// values), once they have been read; the file's error if it is damaged (anywhere: see the type's note).
    pub fn floats_into(&self, range: std::ops::Range<usize>, out: &mut [f32]) -> Result<()> {
        let per = self.dims.1 * self.dims.2;
        let (lo, hi) = (range.start * per, range.end * per);
        assert!(
            range.end <= self.len() && out.len() == hi - lo,
            "range and output fit the dataset"
        );
        let blocks = self.pixels.wait_for(hi)?;
        // Piece by piece, each within one block.
        let (mut pos, mut o) = (lo, 0);
        while pos < hi {
            let block = &blocks[pos / BLOCK];
            let off = pos % BLOCK;
            let n = (BLOCK - off).min(hi - pos);
            for (dst, &b) in out[o..o + n].iter_mut().zip(&block[off..off + n]) {
                *dst = pixel_value(b);
            }
            o += n;
            pos += n;
        }
        Ok(())
    }

    /// Waits until the whole file has been read and checked; its error if it is damaged.
    pub fn check_whole(&self) -> Result<()> {
        self.pixels.wait_for(self.len() * self.dims.1 * self.dims.2).map(drop)
    }
}

impl Drop for StreamedDataset {
    fn drop(&mut self) {
        self.pixels.abandoned.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Stream {
    /// The reading thread: `total` bytes of pixels, block by block, then the end of the file.
    fn fill(&self, mut reader: Box<dyn Read + Send>, dims: &[usize], total: u64) {
        let total = total as usize;
        let mut done = 0usize;
        let failed = loop {
            if self.abandoned.load(std::sync::atomic::Ordering::Relaxed) {
                break Some("abandoned".to_string());
            }
            let n = BLOCK.min(total - done);
            let mut block = Vec::with_capacity(n);
            match (&mut reader).take(n as u64).read_to_end(&mut block) {
                Ok(got) if got < n => break Some(truncated(dims, total as u64, (done + got) as u64)),
                Ok(_) => {}
                Err(e) => break Some(payload_error(&e)),
            }
            done += n;
            // The last block is handed over only once the file has been read to its end (gzip's checksum with it).
            let end = if done == total {
                match reader.read(&mut [0u8]) {
                    Ok(0) => Some(None),
                    Ok(_) => Some(Some(trailing(dims, total as u64))),
                    Err(e) => Some(Some(payload_error(&e))),
                }
            } else {
                None
            };
            if let Some(Some(reason)) = end {
                break Some(reason);
            }
            let mut arrived = self.arrived.lock().unwrap_or_else(|p| p.into_inner());
            if n > 0 {
                arrived.blocks.push(std::sync::Arc::new(block));
            }
            drop(arrived);
            self.more.notify_all();
            if end.is_some() {
                break None;
            }
        };
        if let Some(reason) = failed {
            self.arrived.lock().unwrap_or_else(|p| p.into_inner()).failed = Some(reason);
            self.more.notify_all();
        }
    }

    /// The blocks holding the first `bytes` bytes, once they have arrived.
    fn wait_for(&self, bytes: usize) -> Result<Vec<std::sync::Arc<Vec<u8>>>> {
        let mut arrived = self.arrived.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(reason) = &arrived.failed {
                return Err(idx_error(&self.path, reason.clone()));
            }
            let have: usize = arrived.blocks.iter().map(|b| b.len()).sum();
            if have >= bytes {
                return Ok(arrived.blocks.clone());
            }
            arrived = self.more.wait(arrived).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// `dir/name`, or `dir/name.gz` when only that exists.
pub fn find_data_file(dir: &Path, name: &str) -> Result<PathBuf> {
    if !dir.is_dir() {
        return Err(CoreError::io(
            dir,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such folder (a dataset is a folder of IDX files)",
            ),
        ));
    }
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
