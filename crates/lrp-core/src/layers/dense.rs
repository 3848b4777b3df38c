//! Fully connected layer.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use super::direct::Kernels;
use super::op::{Op, check_count, finite};

/// Batches of at most this many rows take the direct kernels (no GEMM packing per call); larger ones the GEMM.
/// Both give the same bits, so the choice cannot make a result depend on how samples were batched.
const SMALL_BATCH: usize = 4;

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
        self.forward_with(x, with_bias, Kernels::fast())
    }

    /// [`Dense::forward`] with the direct path's `kernels` for a few rows; `None` keeps to the GEMM (so tests can
    /// compare the paths).
    fn forward_with(&self, x: ArrayView2<f32>, with_bias: bool, kernels: Option<Kernels>) -> Array2<f32> {
        let (n, (o, k)) = (x.nrows(), self.weight.dim());
        if let Some(kernels) = kernels
            && n <= SMALL_BATCH
            && n > 0
            && o > 0
            && k > 0
        {
            // A few rows: the product without packing W (a GEMM packs the whole weight matrix for every call,
            // most of a dense layer's time at batch 1); the same bits (see `direct`).
            let w = self.weight.as_standard_layout();
            let x = x.as_standard_layout();
            let bias = super::direct::bias_slice(&self.bias, with_bias);
            let mut out = Array2::<f32>::zeros((n, o));
            super::direct::rows_times_matrix_t(
                x.as_slice().expect("standard layout"),
                n,
                w.as_slice().expect("standard layout"),
                bias.as_deref(),
                out.as_slice_mut().expect("fresh array"),
                kernels,
            );
            return out;
        }
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
        self.transpose_with(s, Kernels::fast())
    }

    /// [`Dense::transpose`] with the direct path's `kernels` for a few rows; `None` keeps to the GEMM.
    fn transpose_with(&self, s: ArrayView2<f32>, kernels: Option<Kernels>) -> Array2<f32> {
        let (n, (o, k)) = (s.nrows(), self.weight.dim());
        if let Some(kernels) = kernels
            && n <= SMALL_BATCH
            && n > 0
            && o > 0
            && k > 0
        {
            // A few rows: `s W` row by row, reading W in place (the same bits, see `direct`).
            let w = self.weight.as_standard_layout();
            let s = s.as_standard_layout();
            let mut out = Array2::<f32>::zeros((n, k));
            let os = out.as_slice_mut().expect("fresh array");
            for (sr, or) in s
                .as_slice()
                .expect("standard layout")
                .chunks_exact(o)
                .zip(os.chunks_exact_mut(k))
            {
                super::direct::row_times_matrix(sr, w.as_slice().expect("standard layout"), or, kernels);
            }
            return out;
        }
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

/// A dense map on a batch `[N, …, in]`: on the rows of its last axis, shaped back to `[N, …, out]`.
pub(crate) fn on_rows(x: ndarray::ArrayViewD<f32>, f: impl Fn(ArrayView2<f32>) -> Array2<f32>) -> ndarray::ArrayD<f32> {
    if x.ndim() == 2 {
        return f(x.into_dimensionality::<ndarray::Ix2>().expect("rank 2")).into_dyn();
    }
    let xs = x.as_standard_layout();
    let y = f(super::attention::rows_of(&xs));
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("rank ≥ 2") = y.ncols();
    y.into_shape_with_order(ndarray::IxDyn(&shape))
        .expect("same element count")
}

impl Op for Dense {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let input = inputs[0];
        // On a flat input, or on the last axis of a larger one (the tokens of a transformer).
        let Some(&features) = input.last() else {
            return Err("needs an input with at least one axis".into());
        };
        if self.inputs() != features {
            return Err(format!(
                "weight is [{}, {}] but the input {input:?} has {features} features{}",
                self.outputs(),
                self.inputs(),
                if input.len() > 1 {
                    " on its last axis (add a flatten before it to use every value)"
                } else {
                    ""
                }
            ));
        }
        if let Some(b) = &self.bias {
            if b.len() != self.outputs() {
                return Err(format!(
                    "bias has {} entries, weight has {} outputs",
                    b.len(),
                    self.outputs()
                ));
            }
            finite("bias", b.view().into_dyn())?;
        }
        if self.outputs() == 0 {
            return Err("has no outputs".into());
        }
        finite("weight", self.weight.view().into_dyn())?;
        let mut out = input.to_vec();
        *out.last_mut().expect("checked above") = self.outputs();
        check_count(&out)?;
        Ok(out)
    }

    fn forward(&self, xs: &[ndarray::ArrayViewD<f32>], _: &[usize]) -> ndarray::ArrayD<f32> {
        on_rows(xs[0].view(), |r| self.forward(r, true))
    }

    fn backward(&self, _: &[ndarray::ArrayViewD<f32>], g: ndarray::ArrayViewD<f32>) -> Vec<ndarray::ArrayD<f32>> {
        vec![on_rows(g, |r| self.transpose(r))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct small-batch paths give the GEMM's bits: widths below, at and above a vector, depths below and
    /// above matrixmultiply's block of 256 (one and two blocks summed), with and without the bias.
    fn small_batches_are_the_gemm_bit_for_bit(kernels: Kernels) {
        for (n, i, o) in [
            (1, 784, 256),
            (1, 512, 128),
            (3, 128, 10),
            (2, 300, 33),
            (4, 7, 600),
            (1, 1, 1),
        ] {
            let w = Array2::from_shape_fn((o, i), |(a, b)| ((a * 31 + b * 7) % 23) as f32 * 0.043 - 0.47);
            let b = Array1::from_shape_fn(o, |j| j as f32 * 0.01 - 0.2);
            let d = Dense::new(w, Some(b));
            let x = Array2::from_shape_fn((n, i), |(a, b)| {
                let v = ((a * 13 + b * 5) % 17) as f32 * 0.31 - 1.9;
                if b % 3 == 0 { 0.0 } else { v }
            });
            let s = Array2::from_shape_fn((n, o), |(a, b)| ((a * 3 + b * 11) % 19) as f32 * 0.17 - 1.4);
            let bits = |v: &Array2<f32>| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            for with_bias in [false, true] {
                assert_eq!(
                    bits(&d.forward_with(x.view(), with_bias, Some(kernels))),
                    bits(&d.forward_with(x.view(), with_bias, None)),
                    "forward {n}×{i} → {o}, bias {with_bias}"
                );
            }
            assert_eq!(
                bits(&d.transpose_with(s.view(), Some(kernels))),
                bits(&d.transpose_with(s.view(), None)),
                "transpose {n}×{o} → {i}"
            );
        }
    }

    #[test]
    fn portable_small_batches_are_the_gemm_bit_for_bit() {
        small_batches_are_the_gemm_bit_for_bit(Kernels::Portable);
    }

    #[test]
    #[cfg_attr(not(lrp_avx512_host), ignore = "this machine has no AVX-512F")]
    fn avx512_small_batches_are_the_gemm_bit_for_bit() {
        let kernels = Kernels::fast().expect("the build found AVX-512F on this machine, the run does not");
        small_batches_are_the_gemm_bit_for_bit(kernels);
    }
}
