//! Fully connected layer.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

/// `z = x Wᵀ + b` on a batch `x` of shape `[N, in]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dense {
    /// Weights, `[out, in]`.
    pub weight: Array2<f32>,
    /// Bias, `[out]`, if the layer has one.
    pub bias: Option<Array1<f32>>,
}

impl Dense {
    /// A layer from its weights `[out, in]` and optional bias `[out]`.
    pub fn new(weight: Array2<f32>, bias: Option<Array1<f32>>) -> Self {
        Dense { weight, bias }
    }

    /// Number of inputs.
    pub fn inputs(&self) -> usize {
        self.weight.ncols()
    }

    /// Number of outputs.
    pub fn outputs(&self) -> usize {
        self.weight.nrows()
    }

    /// The linear map `x Wᵀ`, plus the bias when `with_bias` is set.
    ///
    /// # Shapes
    /// `x: [N, in]` → `[N, out]`.
    pub fn forward(&self, x: ArrayView2<f32>, with_bias: bool) -> Array2<f32> {
        let mut z = x.dot(&self.weight.t());
        if with_bias && let Some(b) = &self.bias {
            z += b;
        }
        z
    }

    /// The transposed map `s W`: the gradient of `Σ s ⊙ z` with respect to `x`.
    ///
    /// # Shapes
    /// `s: [N, out]` → `[N, in]`.
    pub fn transpose(&self, s: ArrayView2<f32>) -> Array2<f32> {
        s.dot(&self.weight)
    }

    /// Parameter gradients for upstream gradient `g` at input `x`: `(gᵀ x, Σ_N g)`.
    ///
    /// # Shapes
    /// `x: [N, in]`, `g: [N, out]` → `([out, in], [out])`.
    pub fn param_grads(&self, x: ArrayView2<f32>, g: ArrayView2<f32>) -> (Array2<f32>, Option<Array1<f32>>) {
        let gw = g.t().dot(&x);
        let gb = self.bias.as_ref().map(|_| g.sum_axis(Axis(0)));
        (gw, gb)
    }
}
