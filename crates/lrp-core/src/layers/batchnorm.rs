//! Batch normalisation with inference statistics, folded into the preceding linear layer.

use ndarray::{Array1, Axis};
use serde::{Deserialize, Serialize};

use super::op::Op;
use super::{Conv2d, Dense};

/// `y = (x − mean) · scale / √(var + eps) + shift`, per channel (or feature).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchNorm {
    /// γ.
    pub scale: Array1<f32>,
    /// β.
    pub shift: Array1<f32>,
    /// Running mean μ.
    pub mean: Array1<f32>,
    /// Running variance.
    pub var: Array1<f32>,
    /// ε.
    pub eps: f32,
}

impl BatchNorm {
    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.scale.len()
    }

    /// Checks lengths agree and the variance is usable.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.scale.len();
        for (name, v) in [("shift", &self.shift), ("mean", &self.mean), ("var", &self.var)] {
            if v.len() != n {
                return Err(format!("{name} has {} entries, scale has {n}", v.len()));
            }
        }
        if self.eps.is_nan() || self.eps < 0.0 {
            return Err(format!("epsilon {} is negative or NaN", self.eps));
        }
        if self.var.iter().any(|&v| (v + self.eps).is_nan() || v + self.eps <= 0.0) {
            return Err("variance + epsilon must be positive".into());
        }
        Ok(())
    }

    /// Per-channel factor `γ/√(var+ε)` and offset `β − μ·factor`.
    pub fn affine(&self) -> (Array1<f32>, Array1<f32>) {
        let factor = &self.scale / &self.var.mapv(|v| (v + self.eps).sqrt());
        let offset = &self.shift - &(&self.mean * &factor);
        (factor, offset)
    }

    /// Folds into a dense layer: `W' = W·f`, `b' = b·f + offset` (per output).
    pub fn fold_into_dense(&self, d: &mut Dense) {
        let (f, off) = self.affine();
        d.weight *= &f.view().insert_axis(Axis(1));
        let b = d.bias.take().unwrap_or_else(|| Array1::zeros(f.len()));
        d.bias = Some(b * &f + &off);
    }

    /// Folds into a convolution: each output channel's kernel and bias are scaled.
    pub fn fold_into_conv(&self, c: &mut Conv2d) {
        let (f, off) = self.affine();
        let fb = f.view().into_shape_with_order((f.len(), 1, 1, 1)).expect("1-D");
        c.weight *= &fb;
        let b = c.bias.take().unwrap_or_else(|| Array1::zeros(f.len()));
        c.bias = Some(b * &f + &off);
    }
}

/// Per channel (the first per-sample axis) `a ⊙ x + c`, or `a ⊙ g` for a gradient: `values` `[N, C, …]`.
fn per_channel(values: ndarray::ArrayViewD<f32>, a: &Array1<f32>, c: Option<&Array1<f32>>) -> ndarray::ArrayD<f32> {
    let mut shape = vec![1, a.len()];
    shape.resize(values.ndim(), 1);
    let a = a
        .view()
        .into_shape_with_order(ndarray::IxDyn(&shape))
        .expect("one value per channel");
    let mut out = &values * &a;
    if let Some(c) = c {
        out += &c
            .view()
            .into_shape_with_order(ndarray::IxDyn(&shape))
            .expect("one value per channel");
    }
    out
}

/// A batch norm that no linear layer folds into computes its affine map itself.
impl Op for BatchNorm {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let input = inputs[0];
        self.validate()?;
        if input.first() != Some(&self.channels()) {
            return Err(format!("has {} channels, input is {input:?}", self.channels()));
        }
        Ok(input.to_vec())
    }

    fn forward(&self, xs: &[ndarray::ArrayViewD<f32>], _: &[usize]) -> ndarray::ArrayD<f32> {
        let (a, c) = self.affine();
        per_channel(xs[0].view(), &a, Some(&c))
    }

    fn backward(&self, _: &[ndarray::ArrayViewD<f32>], g: ndarray::ArrayViewD<f32>) -> Vec<ndarray::ArrayD<f32>> {
        vec![per_channel(g, &self.affine().0, None)]
    }
}
