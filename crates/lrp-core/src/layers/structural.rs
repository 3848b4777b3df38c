//! Nodes that move values without computing new ones — reshapes, padding, permutations, slices, concatenations —
//! and the sum of two values (a residual join).

use ndarray::{ArrayD, ArrayViewD};
use serde::{Deserialize, Serialize};

use super::op::{MAX_AXIS, Op, check_count, with_batch};

/// Any shape → `[product]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flatten;

/// Any shape → the given shape with the same number of elements.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reshape {
    /// The per-sample output shape.
    pub shape: Vec<usize>,
}

/// Drops inputs with probability `p` while training; identity otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dropout {
    /// The probability of dropping an input while training.
    pub p: f32,
}

/// Zero padding: `[before, after]` for every per-sample axis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pad {
    /// `[before, after]` per axis.
    pub pads: Vec<[usize; 2]>,
}

/// A permutation of the per-sample axes (output axis `i` is input axis `perm[i]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transpose {
    /// The permutation.
    pub perm: Vec<usize>,
}

/// The range `start..end` of one per-sample axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slice {
    /// The per-sample axis.
    pub axis: usize,
    /// First index kept.
    pub start: usize,
    /// One past the last index kept.
    pub end: usize,
}

/// Concatenation of computed values along a per-sample axis (0 = the first axis after the batch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Concat {
    /// The per-sample axis.
    pub axis: usize,
}

/// Sum of two computed values of the same shape (a residual join).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Add;

/// The batch reshaped, its elements in standard order (a copy only when they are not).
fn reshaped(x: ArrayViewD<f32>, shape: ndarray::IxDyn) -> ArrayD<f32> {
    x.as_standard_layout()
        .into_owned()
        .into_shape_with_order(shape)
        .expect("element count checked at construction")
}

/// Checked element count of a shape.
fn count(s: &[usize]) -> Option<usize> {
    s.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

impl Op for Flatten {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        Ok(vec![inputs[0].iter().product()])
    }

    fn forward(&self, xs: &[ArrayViewD<f32>], out_shape: &[usize]) -> ArrayD<f32> {
        reshaped(xs[0].view(), with_batch(xs[0].shape()[0], out_shape))
    }

    fn backward(&self, xs: &[ArrayViewD<f32>], g: ArrayViewD<f32>) -> Vec<ArrayD<f32>> {
        vec![reshaped(g, xs[0].raw_dim())]
    }
}

impl Op for Reshape {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let input = inputs[0];
        // Checked products: a shape whose product overflows must not pass for the right count.
        if self.shape.is_empty() || count(&self.shape).is_none() || count(&self.shape) != count(input) {
            return Err(format!("cannot reshape {input:?} to {:?}", self.shape));
        }
        Ok(self.shape.clone())
    }

    fn forward(&self, xs: &[ArrayViewD<f32>], out_shape: &[usize]) -> ArrayD<f32> {
        reshaped(xs[0].view(), with_batch(xs[0].shape()[0], out_shape))
    }

    fn backward(&self, xs: &[ArrayViewD<f32>], g: ArrayViewD<f32>) -> Vec<ArrayD<f32>> {
        vec![reshaped(g, xs[0].raw_dim())]
    }
}

impl Op for Dropout {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        if !(0.0..1.0).contains(&self.p) {
            return Err(format!("probability {} is not in [0, 1)", self.p));
        }
        Ok(inputs[0].to_vec())
    }

    fn forward(&self, xs: &[ArrayViewD<f32>], _: &[usize]) -> ArrayD<f32> {
        xs[0].to_owned()
    }

    fn backward(&self, _: &[ArrayViewD<f32>], g: ArrayViewD<f32>) -> Vec<ArrayD<f32>> {
        vec![g.to_owned()]
    }
}

impl Pad {
    /// Where the input sits inside the padded output, per axis (the batch axis whole).
    fn inner(&self, x_shape: &[usize]) -> impl Fn(ndarray::AxisDescription) -> ndarray::Slice + '_ {
        let lens = x_shape.to_vec();
        move |ax| match ax.axis.index() {
            0 => ndarray::Slice::from(..),
            a => {
                let [before, _] = self.pads[a - 1];
                ndarray::Slice::from(before..before + lens[a])
            }
        }
    }
}

impl Op for Pad {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let input = inputs[0];
        if self.pads.len() != input.len() {
            return Err(format!("has {} axis pads for input {input:?}", self.pads.len()));
        }
        let mut out = Vec::with_capacity(input.len());
        for (&d, [a, b]) in input.iter().zip(&self.pads) {
            match d.checked_add(*a).and_then(|v| v.checked_add(*b)) {
                Some(t) if t <= MAX_AXIS => out.push(t),
                _ => return Err(format!("pads {:?} are too large", self.pads)),
            }
        }
        check_count(&out)?;
        Ok(out)
    }

    fn forward(&self, xs: &[ArrayViewD<f32>], out_shape: &[usize]) -> ArrayD<f32> {
        let x = &xs[0];
        let mut out = ArrayD::<f32>::zeros(with_batch(x.shape()[0], out_shape));
        out.slice_each_axis_mut(self.inner(x.shape())).assign(x);
        out
    }

    fn backward(&self, xs: &[ArrayViewD<f32>], g: ArrayViewD<f32>) -> Vec<ArrayD<f32>> {
        vec![g.slice_each_axis(self.inner(xs[0].shape())).to_owned()]
    }
}

/// A permuted view copied into a standard-layout array. `Zip` walks the destination in memory order with the source
/// strided, a far faster loop than `as_standard_layout`'s element-by-element iterator (the transposes of a
/// transformer's heads were a fifth of its explanation time). The same values, so the same bits.
fn permuted_copy(v: ArrayViewD<f32>) -> ArrayD<f32> {
    let mut out = ArrayD::<f32>::zeros(v.raw_dim());
    out.assign(&v);
    out
}

impl Op for Transpose {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let input = inputs[0];
        let mut sorted = self.perm.clone();
        sorted.sort_unstable();
        if sorted != (0..input.len()).collect::<Vec<_>>() {
            return Err(format!(
                "perm {:?} is not a permutation of the axes of {input:?}",
                self.perm
            ));
        }
        Ok(self.perm.iter().map(|&a| input[a]).collect())
    }

    fn forward(&self, xs: &[ArrayViewD<f32>], _: &[usize]) -> ArrayD<f32> {
        let axes: Vec<usize> = std::iter::once(0).chain(self.perm.iter().map(|a| a + 1)).collect();
        permuted_copy(xs[0].view().permuted_axes(axes))
    }

    fn backward(&self, _: &[ArrayViewD<f32>], g: ArrayViewD<f32>) -> Vec<ArrayD<f32>> {
        let mut inverse = vec![0; self.perm.len() + 1];
        for (i, &p) in self.perm.iter().enumerate() {
            inverse[p + 1] = i + 1;
        }
        vec![permuted_copy(g.permuted_axes(inverse))]
    }
}

impl Op for Slice {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (input, Slice { axis, start, end }) = (inputs[0], *self);
        let Some(&d) = input.get(axis) else {
            return Err(format!("axis {axis} is out of range for {input:?}"));
        };
        if start >= end || end > d {
            return Err(format!("range {start}..{end} does not fit axis {axis} of size {d}"));
        }
        let mut out = input.to_vec();
        out[axis] = end - start;
        Ok(out)
    }

    fn forward(&self, xs: &[ArrayViewD<f32>], _: &[usize]) -> ArrayD<f32> {
        xs[0]
            .slice_axis(ndarray::Axis(self.axis + 1), ndarray::Slice::from(self.start..self.end))
            .to_owned()
    }

    fn backward(&self, xs: &[ArrayViewD<f32>], g: ArrayViewD<f32>) -> Vec<ArrayD<f32>> {
        let mut out = ArrayD::<f32>::zeros(xs[0].raw_dim());
        out.slice_axis_mut(ndarray::Axis(self.axis + 1), ndarray::Slice::from(self.start..self.end))
            .assign(&g);
        vec![out]
    }
}

impl Op for Concat {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (first, axis) = (inputs[0], self.axis);
        if axis >= first.len() {
            return Err(format!("axis {axis} is out of range for {first:?}"));
        }
        let mut total = 0usize;
        for s in inputs {
            let same_rest = s.len() == first.len()
                && s.iter()
                    .zip(first.iter())
                    .enumerate()
                    .all(|(i, (a, b))| i == axis || a == b);
            if !same_rest {
                return Err(format!("cannot concatenate {s:?} with {first:?} along axis {axis}"));
            }
            total = total.saturating_add(s[axis]);
        }
        let mut out = first.to_vec();
        out[axis] = total;
        check_count(&out)?;
        Ok(out)
    }

    fn forward(&self, xs: &[ArrayViewD<f32>], _: &[usize]) -> ArrayD<f32> {
        ndarray::concatenate(ndarray::Axis(self.axis + 1), xs).expect("shapes checked")
    }

    fn backward(&self, xs: &[ArrayViewD<f32>], g: ArrayViewD<f32>) -> Vec<ArrayD<f32>> {
        let mut start = 0;
        xs.iter()
            .map(|x| {
                let len = x.shape()[self.axis + 1];
                let part = g
                    .slice_axis(ndarray::Axis(self.axis + 1), ndarray::Slice::from(start..start + len))
                    .to_owned();
                start += len;
                part
            })
            .collect()
    }
}

impl Op for Add {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        if inputs[0] != inputs[1] {
            return Err(format!(
                "adds values of different shapes {:?} and {:?}",
                inputs[0], inputs[1]
            ));
        }
        Ok(inputs[0].to_vec())
    }

    fn forward(&self, xs: &[ArrayViewD<f32>], _: &[usize]) -> ArrayD<f32> {
        &xs[0] + &xs[1]
    }

    fn backward(&self, _: &[ArrayViewD<f32>], g: ArrayViewD<f32>) -> Vec<ArrayD<f32>> {
        vec![g.to_owned(), g.to_owned()]
    }
}

/// Elements picked along a per-sample axis by index (repeats allowed): `y[…, j, …] = x[…, indices[j], …]` (a
/// `Gather` with constant indices, an upsampling average pool's copies).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Take {
    /// The per-sample axis.
    pub axis: usize,
    /// The picked positions along it, in output order.
    pub indices: Vec<usize>,
}

impl Op for Take {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let input = inputs[0];
        let Some(&d) = input.get(self.axis) else {
            return Err(format!("axis {} is out of range for {input:?}", self.axis));
        };
        if self.indices.is_empty() {
            return Err("picks nothing".into());
        }
        if let Some(&i) = self.indices.iter().find(|&&i| i >= d) {
            return Err(format!("index {i} is out of range for axis {} of size {d}", self.axis));
        }
        let mut out = input.to_vec();
        out[self.axis] = self.indices.len();
        check_count(&out)?;
        Ok(out)
    }

    fn forward(&self, xs: &[ArrayViewD<f32>], _: &[usize]) -> ArrayD<f32> {
        xs[0].select(ndarray::Axis(self.axis + 1), &self.indices)
    }

    fn backward(&self, xs: &[ArrayViewD<f32>], g: ArrayViewD<f32>) -> Vec<ArrayD<f32>> {
        // Each picked element's gradient goes back to where it came from; repeats add (in output order).
        let ax = ndarray::Axis(self.axis + 1);
        let mut out = ArrayD::<f32>::zeros(xs[0].raw_dim());
        for (j, &i) in self.indices.iter().enumerate() {
            let mut dst = out.index_axis_mut(ax, i);
            dst += &g.index_axis(ax, j);
        }
        vec![out]
    }
}
