//! Where the inputs come from: an `.npy` file (memory-mapped, so it is never loaded whole) or a dataset in memory.

use std::fs::File;
use std::ops::Range;
use std::path::Path;

use memmap2::Mmap;
use ndarray::{ArrayD, ArrayViewD, Axis};
use ndarray_npy::ViewNpyExt;

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
    /// The samples in `range`, `[range.len(), …sample shape]`.
    fn chunk(&self, range: Range<usize>) -> ArrayD<f32>;
}

/// A float32 (or float64, converted chunk by chunk) `.npy` file, memory-mapped: the one `.npy` input reader of
/// every command. The header's shape is checked against the file's size before anything is read, so a header that
/// claims more than the file holds is refused instead of allocated.
pub struct NpySource {
    map: Mmap,
    shape: Vec<usize>,
    f64: bool,
    /// The file holds one sample without a batch axis.
    single: bool,
}

impl NpySource {
    /// Maps `path` and checks it is a C-ordered float32 or float64 array with a batch axis.
    pub fn open(path: &Path) -> Result<NpySource> {
        let s = Self::map(path)?;
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
        let mut s = Self::map(path)?;
        if s.shape == sample_shape {
            s.single = true;
            s.shape.insert(0, 1);
        }
        if s.shape.len() < 2 {
            return Err(BatchError::Npy {
                path: path.to_path_buf(),
                reason: format!("shape {:?} has no batch axis", s.shape),
            });
        }
        Ok(s)
    }

    fn map(path: &Path) -> Result<NpySource> {
        let meta = std::fs::metadata(path).map_err(|e| BatchError::io(path, e))?;
        if !meta.is_file() {
            return Err(BatchError::Npy {
                path: path.to_path_buf(),
                reason: "is not a regular file".into(),
            });
        }
        let file = File::open(path).map_err(|e| BatchError::io(path, e))?;
        // SAFETY: the mapping is read-only; the runner documents that inputs must not change while it runs.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| BatchError::io(path, e))?;
        let (shape, f64) = match ArrayViewD::<f32>::view_npy(&map) {
            Ok(v) => (v.shape().to_vec(), false),
            Err(e32) => match ArrayViewD::<f64>::view_npy(&map) {
                Ok(v) => (v.shape().to_vec(), true),
                Err(_) => {
                    return Err(BatchError::Npy {
                        path: path.to_path_buf(),
                        reason: format!("cannot use as a float32 or float64 array in C order: {e32}"),
                    });
                }
            },
        };
        Ok(NpySource {
            map,
            shape,
            f64,
            single: false,
        })
    }

    /// Whether the file holds float64 values (converted to float32 as they are read).
    pub fn is_f64(&self) -> bool {
        self.f64
    }

    /// The smallest and largest value in the file (NaN ignored; `None` when it holds no number), read through
    /// the mapping without a copy.
    pub fn value_range(&self) -> Option<(f64, f64)> {
        let fold = |it: &mut dyn Iterator<Item = f64>| {
            it.filter(|v| !v.is_nan())
                .fold(None, |acc: Option<(f64, f64)>, v| match acc {
                    None => Some((v, v)),
                    Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
                })
        };
        if self.f64 {
            let v = ArrayViewD::<f64>::view_npy(&self.map).expect("checked when opened");
            fold(&mut v.iter().copied())
        } else {
            let v = ArrayViewD::<f32>::view_npy(&self.map).expect("checked when opened");
            fold(&mut v.iter().map(|&x| x as f64))
        }
    }

    /// Every sample, `[N, …]`.
    pub fn all(&self) -> ArrayD<f32> {
        self.chunk(0..self.len())
    }
}

impl Source for NpySource {
    fn len(&self) -> usize {
        self.shape[0]
    }
    fn sample_shape(&self) -> Vec<usize> {
        self.shape[1..].to_vec()
    }
    fn chunk(&self, range: Range<usize>) -> ArrayD<f32> {
        let part = |v: ArrayViewD<'_, f32>| {
            if self.single {
                v.insert_axis(Axis(0))
                    .slice_axis(Axis(0), range.clone().into())
                    .to_owned()
            } else {
                v.slice_axis(Axis(0), range.clone().into()).to_owned()
            }
        };
        if self.f64 {
            let v = ArrayViewD::<f64>::view_npy(&self.map).expect("checked when opened");
            let v = if self.single { v.insert_axis(Axis(0)) } else { v };
            v.slice_axis(Axis(0), range.into()).mapv(|x| x as f32)
        } else {
            part(ArrayViewD::<f32>::view_npy(&self.map).expect("checked when opened"))
        }
    }
}

/// Samples already in memory (an IDX dataset).
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
    fn chunk(&self, range: Range<usize>) -> ArrayD<f32> {
        self.data.slice_axis(Axis(0), range.into()).to_owned()
    }
}
