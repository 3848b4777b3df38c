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

/// A float32 `.npy` file, memory-mapped.
pub struct NpySource {
    map: Mmap,
    shape: Vec<usize>,
}

impl NpySource {
    /// Maps `path` and checks it is a C-ordered float32 array with a batch axis.
    pub fn open(path: &Path) -> Result<NpySource> {
        let file = File::open(path).map_err(|e| BatchError::io(path, e))?;
        // SAFETY: the mapping is read-only; the runner documents that inputs must not change while it runs.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| BatchError::io(path, e))?;
        let shape = {
            let view = ArrayViewD::<f32>::view_npy(&map).map_err(|e| BatchError::Npy {
                path: path.to_path_buf(),
                reason: format!("cannot use as a float32 array in C order: {e}"),
            })?;
            if view.ndim() < 2 {
                return Err(BatchError::Npy {
                    path: path.to_path_buf(),
                    reason: format!("shape {:?} has no batch axis", view.shape()),
                });
            }
            view.shape().to_vec()
        };
        Ok(NpySource { map, shape })
    }

    fn view(&self) -> ArrayViewD<'_, f32> {
        ArrayViewD::<f32>::view_npy(&self.map).expect("checked when opened")
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
        self.view().slice_axis(Axis(0), range.into()).to_owned()
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
