//! Nodes that combine a value with another value or a constant: the elementwise product of two computed values
//! (a squeeze-excitation gate, or any other product), and a constant block inserted into a value (a transformer's
//! class token).

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};
use serde::{Deserialize, Serialize};

use super::op::{Op, check_count};

/// The elementwise product of two computed values whose per-sample shapes broadcast (numpy rules, right-aligned):
/// `y = a ⊙ b`. Reads two values. The rules decide how relevance splits (a gate gets none, see `lrp-rules`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mul;

/// A constant block inserted into a value along a per-sample axis, before position `at`: `[x[..at], c, x[at..]]`
/// (a transformer's class token prepended to the patch tokens). The constant is the same for every sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Insert {
    /// The per-sample axis.
    pub axis: usize,
    /// Where along the axis the block goes (0: before every value).
    pub at: usize,
    /// The block, of the input's per-sample rank; its shape equals the input's except along `axis`.
    pub value: ArrayD<f32>,
}

/// The broadcast of two per-sample shapes (numpy rules), or `None`.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|i| {
            let x = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
            let y = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
            match (x, y) {
                (x, y) if x == y => Some(x),
                (1, y) => Some(y),
                (x, 1) => Some(x),
                _ => None,
            }
        })
        .collect()
}

/// `g` (`[N, …out]`) summed over the axes along which a value of per-sample shape `shape` was broadcast: the
/// gradient (or relevance) of that value.
pub fn reduce_to(g: ArrayD<f32>, shape: &[usize]) -> ArrayD<f32> {
    let mut g = g;
    // Leading axes the value did not have (after the batch).
    while g.ndim() > shape.len() + 1 {
        g = g.sum_axis(Axis(1));
    }
    for (i, &d) in shape.iter().enumerate() {
        if d == 1 && g.shape()[i + 1] != 1 {
            g = g.sum_axis(Axis(i + 1)).insert_axis(Axis(i + 1));
        }
    }
    g
}

impl Op for Mul {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let out = broadcast_shapes(inputs[0], inputs[1]).ok_or_else(|| {
            format!(
                "multiplies values of shapes {:?} and {:?}, which do not broadcast",
                inputs[0], inputs[1]
            )
        })?;
        check_count(&out)?;
        Ok(out)
    }

    fn forward(&self, xs: &[ArrayViewD<f32>], _: &[usize]) -> ArrayD<f32> {
        let (a, b) = (&xs[0], &xs[1]);
        gated(a, b).or_else(|| gated(b, a)).unwrap_or_else(|| a * b)
    }

    fn backward(&self, xs: &[ArrayViewD<f32>], g: ArrayViewD<f32>) -> Vec<ArrayD<f32>> {
        let (a, b) = (&xs[0], &xs[1]);
        vec![reduce_to(&g * b, &a.shape()[1..]), reduce_to(&g * a, &b.shape()[1..])]
    }
}

/// `x ⊙ gate` for a per-channel gate (`[N, C, H, W]` and `[N, C, 1, 1]`: squeeze-and-excitation), plane by plane
/// over the threads when large (a float product is the same either way round, so the gate may be either factor).
/// `None` for any other pair of shapes or layouts.
fn gated(x: &ArrayViewD<f32>, gate: &ArrayViewD<f32>) -> Option<ArrayD<f32>> {
    let shape = x.shape();
    if shape.len() != 4 || gate.shape() != [shape[0], shape[1], 1, 1] {
        return None;
    }
    let (xs, gs) = (x.as_slice()?, gate.as_slice()?);
    let plane = shape[2] * shape[3];
    if plane == 0 {
        return None;
    }
    let mut out = vec![0f32; xs.len()];
    crate::par::units_mut(&mut out, plane, xs.len(), |first, part| {
        for (i, o) in part.chunks_exact_mut(plane).enumerate() {
            let (g, x) = (gs[first + i], &xs[(first + i) * plane..(first + i + 1) * plane]);
            for (o, &v) in o.iter_mut().zip(x) {
                *o = v * g;
            }
        }
    });
    ArrayD::from_shape_vec(shape, out).ok()
}

impl Insert {
    /// The block broadcast over a batch of `n`.
    fn block(&self, n: usize) -> ArrayD<f32> {
        let mut shape = vec![n];
        shape.extend_from_slice(self.value.shape());
        self.value
            .view()
            .insert_axis(Axis(0))
            .broadcast(IxDyn(&shape))
            .expect("a leading unit axis broadcasts")
            .to_owned()
    }
}

impl Op for Insert {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (input, c) = (inputs[0], self.value.shape());
        let fits = c.len() == input.len()
            && self.axis < input.len()
            && c.iter()
                .zip(input)
                .enumerate()
                .all(|(i, (a, b))| i == self.axis || a == b);
        if !fits || self.at > input.get(self.axis).copied().unwrap_or(0) {
            return Err(format!(
                "cannot insert a block of shape {c:?} into {input:?} along axis {} at {}",
                self.axis, self.at
            ));
        }
        if let Some(i) = self.value.iter().position(|v| !v.is_finite()) {
            return Err(format!("the inserted block has a non-finite value at flat index {i}"));
        }
        let mut out = input.to_vec();
        out[self.axis] += c[self.axis];
        check_count(&out)?;
        Ok(out)
    }

    fn forward(&self, xs: &[ArrayViewD<f32>], _: &[usize]) -> ArrayD<f32> {
        let x = &xs[0];
        let ax = Axis(self.axis + 1);
        let block = self.block(x.shape()[0]);
        let (before, after) = x.view().split_at(ax, self.at);
        ndarray::concatenate(ax, &[before, block.view(), after]).expect("shapes checked")
    }

    fn backward(&self, xs: &[ArrayViewD<f32>], g: ArrayViewD<f32>) -> Vec<ArrayD<f32>> {
        let ax = Axis(self.axis + 1);
        let len = self.value.shape()[self.axis];
        let (before, rest) = g.split_at(ax, self.at);
        let (_, after) = rest.split_at(ax, len);
        debug_assert_eq!(
            before.shape()[ax.index()] + after.shape()[ax.index()],
            xs[0].shape()[ax.index()]
        );
        vec![ndarray::concatenate(ax, &[before, after]).expect("shapes checked")]
    }
}
