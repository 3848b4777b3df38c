//! Where the inputs come from: an `.npy` file (read a chunk at a time, never loaded whole) or a dataset in memory.

use std::fs::File;
use std::ops::Range;
use std::path::Path;

use ndarray::{ArrayD, Axis, CowArray, IxDyn, ShapeBuilder};

use crate::error::{BatchError, Result};

/// Samples addressed by index, read a chunk at a time.
pub trait Source: Sync {
    /// Number of samples.
    fn len(&self) -> usize;
    /// Whether there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Per-sample shape.
    fn sample_shape(&self) -> Vec<usize>;
    /// The samples in `range`, `[range.len(), …sample shape]`: borrowed where the source holds them as such (an
    /// `.npy` of float32, an array), else converted; an error when the source cannot deliver them (a damaged file
    /// that is still being read).
    fn chunk(&self, range: Range<usize>) -> Result<CowArray<'_, f32, IxDyn>>;
    /// Waits until the whole source has been read and checked (a file still being read: to its end, checksum
    /// included): a run over part of it (`--limit`, `--shard`) must not complete on a damaged file either, whose
    /// first samples may be wrong too.
    fn check_whole(&self) -> Result<()> {
        Ok(())
    }
}

/// A float32 (or float64, converted chunk by chunk) `.npy` file, read a chunk at a time with positioned reads: the
/// one `.npy` input reader of every command. Opened, it is checked by [`crate::npy::inspect`] (a regular file, a
/// header that fits the file, data exactly as long as the shape says) before anything is read; while it is read,
/// a change to the file (its size or modification time) is an error, never rows from two versions of it or a
/// signal (a file truncated under a memory mapping kills the process with SIGBUS).
pub struct NpySource {
    file: File,
    path: std::path::PathBuf,
    shape: Vec<usize>,
    f64: bool,
    /// Where the values start in the file.
    offset: u64,
    /// The file as it was when opened.
    stamp: (u64, Option<std::time::SystemTime>),
    /// A Fortran-ordered file, read whole and reordered when opened (numpy writes C order unless asked).
    whole: Option<ArrayD<f32>>,
    /// The file holds one sample without a batch axis.
    single: bool,
}

impl NpySource {
    /// Opens `path` and checks it is a C-ordered float32 or float64 array with a batch axis.
    pub fn open(path: &Path) -> Result<NpySource> {
        let s = Self::read_header(path)?;
        if s.shape.len() < 2 {
            return Err(BatchError::Npy {
                path: path.to_path_buf(),
                reason: format!("shape {:?} has no batch axis", s.shape),
            });
        }
        Ok(s)
    }

    /// Like [`NpySource::open`], but a file whose shape is `sample_shape` is one sample (a batch of one).
    pub fn open_for(path: &Path, sample_shape: &[usize]) -> Result<NpySource> {
        let mut s = Self::read_header(path)?;
        if s.shape == sample_shape {
            s.single = true;
            s.shape.insert(0, 1);
            if let Some(w) = s.whole.take() {
                s.whole = Some(w.insert_axis(Axis(0)));
            }
        }
        if s.shape.len() < 2 {
            return Err(BatchError::Npy {
                path: path.to_path_buf(),
                reason: format!("shape {:?} has no batch axis", s.shape),
            });
        }
        Ok(s)
    }

    fn read_header(path: &Path) -> Result<NpySource> {
        let info = crate::npy::inspect(path)?;
        let f64 = match info.descr.as_str() {
            "<f4" => false,
            "<f8" => true,
            other => {
                return Err(BatchError::Npy {
                    path: path.to_path_buf(),
                    reason: format!(
                        "holds {other} values; inputs are float32 (or float64, converted): save with \
                         x.astype(np.float32)"
                    ),
                });
            }
        };
        let file = crate::npy::open_regular(path)?;
        let meta = file.metadata().map_err(|e| BatchError::io(path, e))?;
        let mut s = NpySource {
            file,
            path: path.to_path_buf(),
            shape: info.shape.clone(),
            f64,
            offset: info.data_offset,
            stamp: (meta.len(), meta.modified().ok()),
            whole: None,
            single: false,
        };
        if s.stamp.0 != info.file_len {
            return Err(s.changed());
        }
        if info.fortran && s.shape.len() > 1 {
            let n = s.shape.iter().product::<usize>();
            let flat = s.read_values(0, n)?;
            let f = ArrayD::from_shape_vec(IxDyn(&s.shape).f(), flat).map_err(|e| BatchError::Npy {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            s.whole = Some(f.as_standard_layout().into_owned());
        }
        Ok(s)
    }

    fn changed(&self) -> BatchError {
        BatchError::Input {
            path: self.path.clone(),
            reason: "changed while lrp was reading it (its size or modification time); run again once it is \
                     written"
                .into(),
        }
    }

    /// Errors when the file is no longer as it was when opened.
    pub fn check_unchanged(&self) -> Result<()> {
        let meta = self.file.metadata().map_err(|e| BatchError::io(&self.path, e))?;
        if (meta.len(), meta.modified().ok()) != self.stamp {
            return Err(self.changed());
        }
        Ok(())
    }

    fn item(&self) -> usize {
        if self.f64 { 8 } else { 4 }
    }

    /// `count` values from value index `first` (file order), as float32.
    fn read_values(&self, first: usize, count: usize) -> Result<Vec<f32>> {
        use std::os::unix::fs::FileExt;
        let item = self.item();
        let mut bytes = vec![0u8; count * item];
        let at = self.offset + (first * item) as u64;
        self.file.read_exact_at(&mut bytes, at).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => self.changed(),
            _ => BatchError::io(&self.path, e),
        })?;
        Ok(if self.f64 {
            bytes
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect()
        } else {
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect()
        })
    }

    /// Whether the file holds float64 values (converted to float32 as they are read).
    pub fn is_f64(&self) -> bool {
        self.f64
    }

    /// The smallest and largest value in the file (NaN ignored; `None` when it holds no number).
    pub fn value_range(&self) -> Option<(f64, f64)> {
        self.digest_and_range().1
    }

    /// The file's digest ([`crate::digest_bytes`] of all its bytes) and its [`NpySource::value_range`], in one
    /// pass: each block is read, hashed and then bounded while it is in cache. A read error gives an empty digest
    /// (see [`NpySource::try_digest_and_range`]).
    pub fn digest_and_range(&self) -> (String, Option<(f64, f64)>) {
        self.try_digest_and_range().unwrap_or_else(|_| (String::new(), None))
    }

    /// [`NpySource::digest_and_range`], with read errors (and a file that changed meanwhile) as errors.
    pub fn try_digest_and_range(&self) -> Result<(String, Option<(f64, f64)>)> {
        use std::os::unix::fs::FileExt;
        /// Bytes per block: 256 KiB, a multiple of both element sizes.
        const BLOCK: usize = 1 << 18;
        let io = |e| BatchError::io(&self.path, e);
        let mut hash = xxhash_rust::xxh3::Xxh3::new();
        let mut head = vec![0u8; self.offset as usize];
        self.file.read_exact_at(&mut head, 0).map_err(io)?;
        hash.update(&head);
        let total = self.stamp.0 - self.offset;
        let mut buf = vec![0u8; BLOCK];
        let mut range: Option<(f64, f64)> = None;
        let mut at = 0u64;
        while at < total {
            let n = (total - at).min(BLOCK as u64) as usize;
            self.file
                .read_exact_at(&mut buf[..n], self.offset + at)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => self.changed(),
                    _ => io(e),
                })?;
            let block = &buf[..n];
            hash.update(block);
            let bounds = if self.f64 {
                let v: Vec<f64> = block
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .collect();
                f64::min_max(&v)
            } else {
                let v: Vec<f32> = block
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                    .collect();
                f32::min_max(&v).map(|(lo, hi)| (lo as f64, hi as f64))
            };
            if let Some((lo, hi)) = bounds {
                range = Some(range.map_or((lo, hi), |(l, h)| (l.min(lo), h.max(hi))));
            }
            at += n as u64;
        }
        self.check_unchanged()?;
        Ok((crate::files::digest_hex(hash.digest128()), range))
    }

    /// Every sample, `[N, …]`, with read errors (a file that changed since it was opened).
    pub fn all(&self) -> Result<ArrayD<f32>> {
        self.rows(0..self.len())
    }

    /// The samples in `range`.
    fn rows(&self, range: Range<usize>) -> Result<ArrayD<f32>> {
        if let Some(w) = &self.whole {
            return Ok(w.slice_axis(Axis(0), range.into()).to_owned());
        }
        self.check_unchanged()?;
        let row: usize = self.shape[1..].iter().product();
        let values = self.read_values(range.start * row, range.len() * row)?;
        let mut shape = self.shape.clone();
        shape[0] = range.len();
        Ok(ArrayD::from_shape_vec(IxDyn(&shape), values).expect("one value per element"))
    }
}

impl Source for NpySource {
    fn len(&self) -> usize {
        self.shape[0]
    }
    fn sample_shape(&self) -> Vec<usize> {
        self.shape[1..].to_vec()
    }
    fn chunk(&self, range: Range<usize>) -> Result<CowArray<'_, f32, IxDyn>> {
        Ok(self.rows(range)?.into())
    }
    fn check_whole(&self) -> Result<()> {
        self.check_unchanged()
    }
}

/// [`lanes_min_max`], by the fastest means for the type.
trait LaneBounds: num_traits::Float + bytemuck::Pod {
    fn min_max(v: &[Self]) -> Option<(Self, Self)>;
}

impl LaneBounds for f64 {
    fn min_max(v: &[f64]) -> Option<(f64, f64)> {
        lanes_min_max(v)
    }
}

impl LaneBounds for f32 {
    /// On x86-64, sixteen lanes in four SSE registers by `minps`/`maxps`, whose rule (`x < lo ? x : lo`) is the
    /// one below, NaN included. The generic loop compiles there to compares and packs instead: 8.9 ms for the
    /// 31 MB MLP test set against 3.0 ms, all of it before the first chunk of `lrp batch --input` starts.
    fn min_max(v: &[f32]) -> Option<(f32, f32)> {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_loadu_ps, _mm_max_ps, _mm_min_ps, _mm_set1_ps, _mm_storeu_ps};
            let chunks = v.chunks_exact(LANES);
            let rest = chunks.remainder();
            let (mut lo, mut hi) = ([f32::INFINITY; LANES], [f32::NEG_INFINITY; LANES]);
            // SAFETY: SSE is part of x86-64; every load reads 4 values inside a chunk of 16, every store writes 4
            // inside an array of 16.
            unsafe {
                let mut l = [_mm_set1_ps(f32::INFINITY); LANES / 4];
                let mut h = [_mm_set1_ps(f32::NEG_INFINITY); LANES / 4];
                for c in chunks {
                    for k in 0..LANES / 4 {
                        let x = _mm_loadu_ps(c.as_ptr().add(4 * k));
                        l[k] = _mm_min_ps(x, l[k]);
                        h[k] = _mm_max_ps(x, h[k]);
                    }
                }
                for k in 0..LANES / 4 {
                    _mm_storeu_ps(lo.as_mut_ptr().add(4 * k), l[k]);
                    _mm_storeu_ps(hi.as_mut_ptr().add(4 * k), h[k]);
                }
            }
            bounds(lo, hi, rest)
        }
        #[cfg(not(target_arch = "x86_64"))]
        lanes_min_max(v)
    }
}

const LANES: usize = 16;

/// The smallest and largest value of `v`, NaN ignored (`None` when it holds no number): sixteen running minima
/// and maxima side by side.
fn lanes_min_max<T: num_traits::Float>(v: &[T]) -> Option<(T, T)> {
    let (mut lo, mut hi) = ([T::infinity(); LANES], [T::neg_infinity(); LANES]);
    let chunks = v.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..LANES {
            // A NaN compares false both ways and never replaces a bound.
            lo[k] = if c[k] < lo[k] { c[k] } else { lo[k] };
            hi[k] = if c[k] > hi[k] { c[k] } else { hi[k] };
        }
    }
    bounds(lo, hi, rest)
}

/// Folds the lanes' bounds and the values after the last whole lane group.
fn bounds<T: num_traits::Float>(mut lo: [T; LANES], mut hi: [T; LANES], rest: &[T]) -> Option<(T, T)> {
    for &x in rest {
        lo[0] = if x < lo[0] { x } else { lo[0] };
        hi[0] = if x > hi[0] { x } else { hi[0] };
    }
    let lo = lo.into_iter().fold(T::infinity(), |a, b| if b < a { b } else { a });
    let hi = hi.into_iter().fold(T::neg_infinity(), |a, b| if b > a { b } else { a });
    // Only NaN (or nothing) leaves the bounds crossed; one value of ±∞ still gives lo ≤ hi.
    (lo <= hi).then_some((lo, hi))
}

/// Samples already in memory (a library caller's arrays; `lrp batch` reads IDX data through [`ByteSource`]).
pub struct ArraySource {
    /// `[N, …]`.
    pub data: ArrayD<f32>,
}

impl Source for ArraySource {
    fn len(&self) -> usize {
        self.data.shape()[0]
    }
    fn sample_shape(&self) -> Vec<usize> {
        self.data.shape()[1..].to_vec()
    }
    fn chunk(&self, range: Range<usize>) -> Result<CowArray<'_, f32, IxDyn>> {
        Ok(self.data.slice_axis(Axis(0), range.into()).into())
    }
}

/// IDX images kept as bytes, each chunk converted to floats when it is read (the same values as
/// [`lrp_core::Dataset`]'s): the whole split is never held as floats, which spares its allocation, page faults
/// and a serial conversion before the first chunk starts. Streamed ([`ByteSource::streamed`]), the pixels are
/// still being read while the first chunks are explained.
pub struct ByteSource {
    pixels: Pixels,
    shape: Vec<usize>,
}

enum Pixels {
    Whole(lrp_core::ByteDataset),
    Streamed(lrp_core::StreamedDataset),
}

impl ByteSource {
    /// The dataset's images as samples of `sample_shape` (the model's input shape), which must hold `H·W` values.
    pub fn new(data: lrp_core::ByteDataset, sample_shape: Vec<usize>) -> Result<ByteSource> {
        Self::with(Pixels::Whole(data), sample_shape)
    }

    /// [`ByteSource::new`] of a dataset whose pixels are still being read.
    pub fn streamed(data: lrp_core::StreamedDataset, sample_shape: Vec<usize>) -> Result<ByteSource> {
        Self::with(Pixels::Streamed(data), sample_shape)
    }

    fn with(pixels: Pixels, sample_shape: Vec<usize>) -> Result<ByteSource> {
        let (_, h, w) = pixels.dims();
        if sample_shape.iter().product::<usize>() != h * w {
            return Err(BatchError::Config(format!(
                "images are {:?} per sample, the model takes {sample_shape:?}",
                [1, h, w]
            )));
        }
        Ok(ByteSource {
            pixels,
            shape: sample_shape,
        })
    }
}

impl Pixels {
    fn dims(&self) -> (usize, usize, usize) {
        match self {
            Pixels::Whole(d) => d.dims,
            Pixels::Streamed(d) => d.dims,
        }
    }
}

impl Source for ByteSource {
    fn len(&self) -> usize {
        self.pixels.dims().0
    }
    fn sample_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }
    fn chunk(&self, range: Range<usize>) -> Result<CowArray<'_, f32, IxDyn>> {
        let mut shape = vec![range.len()];
        shape.extend_from_slice(&self.shape);
        let mut out = vec![0.0f32; shape.iter().product()];
        match &self.pixels {
            Pixels::Whole(d) => d.floats_into(range, &mut out),
            Pixels::Streamed(d) => d.floats_into(range, &mut out)?,
        }
        Ok(ArrayD::from_shape_vec(shape, out).expect("one value per pixel").into())
    }
    fn check_whole(&self) -> Result<()> {
        match &self.pixels {
            Pixels::Whole(_) => Ok(()),
            Pixels::Streamed(d) => Ok(d.check_whole()?),
        }
    }
}

#[cfg(test)]
mod byte_source_tests {
    use super::*;
    use lrp_core::ByteDataset;

    fn bytes() -> ByteDataset {
        // Every byte value, in 5 images of 8×8 (the last one partly repeated).
        ByteDataset {
            pixels: (0..5 * 64).map(|i| (i * 7 % 256) as u8).collect(),
            dims: (5, 8, 8),
            labels: vec![0, 1, 2, 3, 4],
        }
    }

    /// A chunk holds the floats a loaded dataset holds, bit for bit, in the model's shape.
    #[test]
    fn chunks_are_the_datasets_floats() {
        let floats = bytes().into_dataset().images;
        for shape in [vec![1, 8, 8], vec![64]] {
            let src = ByteSource::new(bytes(), shape.clone()).unwrap();
            assert_eq!((src.len(), src.sample_shape()), (5, shape.clone()));
            let chunk = src.chunk(1..4).unwrap();
            let mut want = vec![3];
            want.extend_from_slice(&shape);
            assert_eq!(chunk.shape(), &want[..]);
            let expected: Vec<u32> = floats
                .slice(ndarray::s![1..4, .., .., ..])
                .iter()
                .map(|v| v.to_bits())
                .collect();
            let got: Vec<u32> = chunk.iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, expected);
        }
    }

    /// Arrays already in memory (a library caller's own) read the same way: the rows of the range.
    #[test]
    fn an_array_source_reads_its_rows() {
        let data = bytes().into_dataset().images.into_dyn();
        let src = ArraySource { data: data.clone() };
        assert_eq!((src.len(), src.sample_shape()), (5, vec![1, 8, 8]));
        assert_eq!(
            src.chunk(2..5).unwrap(),
            data.slice_axis(ndarray::Axis(0), (2..5).into())
        );
    }

    #[test]
    fn a_shape_of_another_size_is_refused_naming_both() {
        let Err(err) = ByteSource::new(bytes(), vec![1, 28, 28]) else {
            panic!("accepted 8×8 images for a 28×28 model")
        };
        let err = err.to_string();
        assert!(err.contains("[1, 8, 8]") && err.contains("[1, 28, 28]"), "{err}");
    }
}

#[cfg(test)]
mod range_tests {
    use super::{LaneBounds, lanes_min_max};

    /// The lane-wise bounds (generic, and f32's vector form) are the value-by-value ones: every length around the
    /// lane count, NaN anywhere, infinities.
    #[test]
    fn lane_bounds_are_the_plain_fold() {
        let pool = [
            0.5f32,
            -3.0,
            f32::NAN,
            7.25,
            f32::INFINITY,
            -0.0,
            1e-40,
            f32::NEG_INFINITY,
            2.0,
        ];
        for len in 0..50 {
            for start in 0..pool.len() {
                let v: Vec<f32> = (0..len).map(|i| pool[(start + i * 5) % pool.len()]).collect();
                let plain = v
                    .iter()
                    .filter(|x| !x.is_nan())
                    .fold(None, |acc: Option<(f32, f32)>, &x| match acc {
                        None => Some((x, x)),
                        Some((lo, hi)) => Some((lo.min(x), hi.max(x))),
                    });
                assert_eq!(lanes_min_max(&v), plain, "{v:?}");
                assert_eq!(f32::min_max(&v), plain, "{v:?}");
            }
        }
        assert_eq!(lanes_min_max(&[f32::NAN; 40]), None);
        assert_eq!(f32::min_max(&[f32::NAN; 40]), None);
        assert_eq!(lanes_min_max::<f64>(&[]), None);
        assert_eq!(lanes_min_max(&[f64::INFINITY]), Some((f64::INFINITY, f64::INFINITY)));
    }

    /// The one-pass digest and range are the file's digest and the value range read apart: float32 and float64,
    /// C and Fortran order, sizes below, at and above the block, NaN and infinities among the values.
    #[test]
    fn one_pass_digest_and_range_are_the_separate_ones() {
        use super::NpySource;
        use ndarray::{Array2, ShapeBuilder};
        let dir = tempfile::tempdir().unwrap();
        let mut k = 0;
        for rows in [1usize, 7, 1 << 8, 1 << 9] {
            for fortran in [false, true] {
                let cols = 257;
                let shape = (rows, cols).set_f(fortran);
                let a = Array2::from_shape_fn(shape, |(i, j)| {
                    let v = ((i * 31 + j * 7) % 1001) as f32 / 100.0 - 3.0;
                    match (i * cols + j) % 4099 {
                        5 => f32::NAN,
                        17 if rows > 7 => f32::INFINITY,
                        _ => v,
                    }
                });
                for f64 in [false, true] {
                    k += 1;
                    let path = dir.path().join(format!("a{k}.npy"));
                    if f64 {
                        ndarray_npy::write_npy(&path, &a.mapv(|v| v as f64)).unwrap();
                    } else {
                        ndarray_npy::write_npy(&path, &a).unwrap();
                    }
                    let src = NpySource::open(&path).unwrap();
                    let (digest, range) = src.digest_and_range();
                    assert_eq!(
                        digest,
                        crate::digest_file(&path).unwrap(),
                        "{rows} rows, F {fortran}, f64 {f64}"
                    );
                    assert_eq!(range, src.value_range(), "{rows} rows, F {fortran}, f64 {f64}");
                    assert_eq!(range.map(|r| r.1 == f64::INFINITY), Some(rows > 7));
                    assert!(range.is_some_and(|r| r.0 == -3.0));
                }
            }
        }
    }

    /// Chunks and whole reads view the values where the header put them, in the file's order: the same arrays as
    /// `read_npy` gives, for float32 and float64, C and Fortran order, and a single sample given its batch axis.
    #[test]
    fn chunks_are_the_arrays_read_npy_gives() {
        use super::{NpySource, Source};
        use ndarray::{Array3, ArrayD, Axis, ShapeBuilder};
        let dir = tempfile::tempdir().unwrap();
        let mut k = 0;
        for fortran in [false, true] {
            let a = Array3::from_shape_fn((9, 4, 5).set_f(fortran), |(i, j, l)| {
                (i * 100 + j * 10 + l) as f32 * 0.5
            });
            for f64 in [false, true] {
                k += 1;
                let path = dir.path().join(format!("c{k}.npy"));
                if f64 {
                    ndarray_npy::write_npy(&path, &a.mapv(|v| v as f64)).unwrap();
                } else {
                    ndarray_npy::write_npy(&path, &a).unwrap();
                }
                let read: ArrayD<f32> = if f64 {
                    ndarray_npy::read_npy::<_, ArrayD<f64>>(&path)
                        .unwrap()
                        .mapv(|v| v as f32)
                } else {
                    ndarray_npy::read_npy(&path).unwrap()
                };
                let src = NpySource::open(&path).unwrap();
                assert_eq!((src.len(), src.sample_shape()), (9, vec![4, 5]));
                for range in [0..9, 2..5, 8..9, 3..3] {
                    let chunk = src.chunk(range.clone()).unwrap();
                    assert_eq!(
                        chunk,
                        read.slice_axis(Axis(0), range.clone().into()),
                        "F {fortran}, f64 {f64}"
                    );
                }
                assert_eq!(src.all().unwrap(), read);
                // The same file as one sample of [9, 4, 5].
                let one = NpySource::open_for(&path, &[9, 4, 5]).unwrap();
                assert_eq!(
                    one.all().unwrap(),
                    read.insert_axis(Axis(0)),
                    "single, F {fortran}, f64 {f64}"
                );
            }
        }
    }
}
