//! The nodes of a transformer: layer normalization, softmax along an axis, the product of two computed values
//! (batched over leading axes), and the mean over an axis. Arrays carry the batch axis first; axes given to these
//! functions are per-sample axes (0 = the first axis after the batch).

use ndarray::{Array1, Array2, ArrayD, ArrayView2, ArrayViewD, Axis, IxDyn, Zip};
use serde::{Deserialize, Serialize};

use super::op::{Op, check_count};

/// `y = (x − μ)/σ · γ + β` over the last axis, `σ = √(var + ε)` (the biased variance, as PyTorch and ONNX).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerNorm {
    /// Scale `γ`, one per feature of the last axis.
    pub weight: Array1<f32>,
    /// Shift `β`, one per feature.
    pub bias: Array1<f32>,
    /// Added to the variance.
    pub eps: f32,
}

/// A view of `x` as rows over its last axis (`[…, D]` → `[rows, D]`), in standard layout.
pub(crate) fn rows_of<'a>(x: &'a ndarray::CowArray<'a, f32, IxDyn>) -> ArrayView2<'a, f32> {
    let d = *x.shape().last().expect("at least one axis");
    x.view()
        .into_shape_with_order((x.len() / d.max(1), d))
        .expect("standard layout")
}

impl LayerNorm {
    /// Features of the normalized (last) axis.
    pub fn features(&self) -> usize {
        self.weight.len()
    }

    /// Checks the parameters; the reason when they are unusable.
    pub fn validate(&self, input: &[usize]) -> std::result::Result<(), String> {
        if self.bias.len() != self.weight.len() {
            return Err(format!(
                "scale has {} entries, shift {}",
                self.weight.len(),
                self.bias.len()
            ));
        }
        if input.last() != Some(&self.weight.len()) {
            return Err(format!(
                "normalizes {} features, but the input {input:?} has a last axis of another length",
                self.weight.len()
            ));
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(format!("epsilon {} must be positive and finite", self.eps));
        }
        if let Some(i) = self.weight.iter().chain(self.bias.iter()).position(|v| !v.is_finite()) {
            return Err(format!("has a non-finite parameter at flat index {i}"));
        }
        Ok(())
    }

    /// Mean and `1/σ` of every row.
    fn stats(&self, rows: ArrayView2<f32>) -> (Vec<f32>, Vec<f32>) {
        let d = rows.ncols() as f32;
        let mut mu = Vec::with_capacity(rows.nrows());
        let mut inv = Vec::with_capacity(rows.nrows());
        for r in rows.outer_iter() {
            let m = r.sum() / d;
            let var = r.iter().map(|&v| (v - m) * (v - m)).sum::<f32>() / d;
            mu.push(m);
            inv.push(1.0 / (var + self.eps).sqrt());
        }
        (mu, inv)
    }

    /// Forward pass over the last axis.
    pub fn forward(&self, x: ArrayViewD<f32>) -> ArrayD<f32> {
        let xs = x.as_standard_layout();
        let rows = rows_of(&xs);
        let (mu, inv) = self.stats(rows);
        let mut out = Array2::<f32>::zeros(rows.raw_dim());
        for (i, (mut o, r)) in out.outer_iter_mut().zip(rows.outer_iter()).enumerate() {
            Zip::from(&mut o)
                .and(&r)
                .and(&self.weight)
                .and(&self.bias)
                .for_each(|o, &v, &g, &b| *o = (v - mu[i]) * inv[i] * g + b);
        }
        out.into_shape_with_order(x.raw_dim()).expect("same element count")
    }

    /// The input gradient for the output gradient `g`; with `frozen`, `σ` (and so the input's spread) is held
    /// constant, as AttnLRP's layer-norm rule does: `(γ/σ)⊙g` less its mean.
    pub fn backward(&self, x: ArrayViewD<f32>, g: ArrayViewD<f32>, frozen: bool) -> ArrayD<f32> {
        let xs = x.as_standard_layout();
        let gs = g.as_standard_layout();
        let (rows, grows) = (rows_of(&xs), rows_of(&gs));
        let stats = self.stats(rows);
        self.input_rows(rows, grows, &stats, frozen)
            .into_shape_with_order(x.raw_dim())
            .expect("same element count")
    }

    /// The input gradient and the scale and shift gradients together, the row statistics computed once (training).
    pub fn backward_with_params(
        &self,
        x: ArrayViewD<f32>,
        g: ArrayViewD<f32>,
    ) -> (ArrayD<f32>, Array1<f32>, Array1<f32>) {
        let xs = x.as_standard_layout();
        let gs = g.as_standard_layout();
        let (rows, grows) = (rows_of(&xs), rows_of(&gs));
        let stats = self.stats(rows);
        let dx = self
            .input_rows(rows, grows, &stats, false)
            .into_shape_with_order(x.raw_dim())
            .expect("same element count");
        let (gw, gb) = Self::param_rows(rows, grows, &stats);
        (dx, gw, gb)
    }

    /// [`LayerNorm::backward`] on rows, given each row's mean and `1/σ`.
    fn input_rows(
        &self,
        rows: ArrayView2<f32>,
        grows: ArrayView2<f32>,
        (mu, inv): &(Vec<f32>, Vec<f32>),
        frozen: bool,
    ) -> Array2<f32> {
        let d = rows.ncols() as f32;
        let mut out = Array2::<f32>::zeros(rows.raw_dim());
        let mut gg = vec![0.0f32; rows.ncols()];
        for (i, ((mut o, r), gr)) in out
            .outer_iter_mut()
            .zip(rows.outer_iter())
            .zip(grows.outer_iter())
            .enumerate()
        {
            for ((t, &gv), &w) in gg.iter_mut().zip(gr.iter()).zip(self.weight.iter()) {
                *t = gv * w;
            }
            let mean_g = gg.iter().sum::<f32>() / d;
            if frozen {
                for (o, &t) in o.iter_mut().zip(&gg) {
                    *o = inv[i] * (t - mean_g);
                }
            } else {
                let mean_gx = gg
                    .iter()
                    .zip(r.iter())
                    .map(|(&t, &v)| t * (v - mu[i]) * inv[i])
                    .sum::<f32>()
                    / d;
                for ((o, &t), &v) in o.iter_mut().zip(&gg).zip(r.iter()) {
                    *o = inv[i] * (t - mean_g - (v - mu[i]) * inv[i] * mean_gx);
                }
            }
        }
        out
    }

    /// Gradients of the scale and shift: `(Σ g⊙x̂, Σ g)` over every row.
    pub fn param_grads(&self, x: ArrayViewD<f32>, g: ArrayViewD<f32>) -> (Array1<f32>, Array1<f32>) {
        let xs = x.as_standard_layout();
        let gs = g.as_standard_layout();
        let (rows, grows) = (rows_of(&xs), rows_of(&gs));
        let stats = self.stats(rows);
        Self::param_rows(rows, grows, &stats)
    }

    /// [`LayerNorm::param_grads`] on rows, given each row's mean and `1/σ`.
    fn param_rows(
        rows: ArrayView2<f32>,
        grows: ArrayView2<f32>,
        (mu, inv): &(Vec<f32>, Vec<f32>),
    ) -> (Array1<f32>, Array1<f32>) {
        let mut gw = Array1::<f32>::zeros(rows.ncols());
        let mut gb = Array1::<f32>::zeros(rows.ncols());
        for (i, (r, gr)) in rows.outer_iter().zip(grows.outer_iter()).enumerate() {
            Zip::from(&mut gw)
                .and(&mut gb)
                .and(&r)
                .and(&gr)
                .for_each(|w, b, &v, &gv| {
                    *w += gv * (v - mu[i]) * inv[i];
                    *b += gv;
                });
        }
        (gw, gb)
    }
}

/// Softmax along per-sample axis `axis`.
pub fn softmax(x: ArrayViewD<f32>, axis: usize) -> ArrayD<f32> {
    let mut out = x.to_owned();
    for mut lane in out.lanes_mut(Axis(axis + 1)) {
        let m = lane.fold(f32::NEG_INFINITY, |a, &v| a.max(v));
        lane.mapv_inplace(|v| (v - m).exp());
        let s = lane.sum();
        lane.mapv_inplace(|v| v / s);
    }
    out
}

/// The softmax's input gradient from its output `y` and output gradient `g`: `y ⊙ (g − Σ y⊙g)` along the axis.
pub fn softmax_backward(y: ArrayViewD<f32>, g: ArrayViewD<f32>, axis: usize) -> ArrayD<f32> {
    let mut out = g.to_owned();
    Zip::from(out.lanes_mut(Axis(axis + 1)))
        .and(y.lanes(Axis(axis + 1)))
        .for_each(|mut o, y| {
            let dot: f32 = o.iter().zip(y.iter()).map(|(&a, &b)| a * b).sum();
            Zip::from(&mut o).and(&y).for_each(|o, &y| *o = y * (*o - dot));
        });
    out
}

/// Leading axes of a batched product operand `[N, …, r, c]` flattened: `(count, r, c)`.
fn mats(shape: &[usize]) -> (usize, usize, usize) {
    let k = shape.len();
    (shape[..k - 2].iter().product(), shape[k - 2], shape[k - 1])
}

fn as_mats<'a>(x: &'a ndarray::CowArray<'a, f32, IxDyn>) -> ndarray::ArrayView3<'a, f32> {
    let (b, r, c) = mats(x.shape());
    x.view().into_shape_with_order((b, r, c)).expect("standard layout")
}

/// `A·B` over the last two axes, batched over the others (which must agree): `[…, m, k]·[…, k, p]` → `[…, m, p]`.
pub fn matmul(a: ArrayViewD<f32>, b: ArrayViewD<f32>) -> ArrayD<f32> {
    let (a, b) = (a.as_standard_layout(), b.as_standard_layout());
    let (a3, b3) = (as_mats(&a), as_mats(&b));
    let (n, m, _) = a3.dim();
    let p = b3.dim().2;
    let mut out = ndarray::Array3::<f32>::zeros((n, m, p));
    for ((mut o, x), y) in out.outer_iter_mut().zip(a3.outer_iter()).zip(b3.outer_iter()) {
        ndarray::linalg::general_mat_mul(1.0, &x, &y, 0.0, &mut o);
    }
    let mut shape = a.shape().to_vec();
    *shape.last_mut().expect("rank ≥ 3") = p;
    out.into_shape_with_order(IxDyn(&shape)).expect("same element count")
}

/// The gradients of `A·B` for the output gradient `g`: `(g·Bᵀ, Aᵀ·g)`, each times `scale`.
pub fn matmul_backward(
    a: ArrayViewD<f32>,
    b: ArrayViewD<f32>,
    g: ArrayViewD<f32>,
    scale: f32,
) -> (ArrayD<f32>, ArrayD<f32>) {
    let (a, b, g) = (a.as_standard_layout(), b.as_standard_layout(), g.as_standard_layout());
    let (a3, b3, g3) = (as_mats(&a), as_mats(&b), as_mats(&g));
    let mut ga = ndarray::Array3::<f32>::zeros(a3.raw_dim());
    let mut gb = ndarray::Array3::<f32>::zeros(b3.raw_dim());
    for i in 0..a3.dim().0 {
        let (x, y, d) = (
            a3.index_axis(Axis(0), i),
            b3.index_axis(Axis(0), i),
            g3.index_axis(Axis(0), i),
        );
        ndarray::linalg::general_mat_mul(scale, &d, &y.t(), 0.0, &mut ga.index_axis_mut(Axis(0), i));
        ndarray::linalg::general_mat_mul(scale, &x.t(), &d, 0.0, &mut gb.index_axis_mut(Axis(0), i));
    }
    (
        ga.into_shape_with_order(a.raw_dim()).expect("same element count"),
        gb.into_shape_with_order(b.raw_dim()).expect("same element count"),
    )
}

/// The output shape of `A·B` for per-sample shapes, or the reason it does not exist.
pub fn matmul_shape(a: &[usize], b: &[usize]) -> std::result::Result<Vec<usize>, String> {
    let (ka, kb) = (a.len(), b.len());
    if ka < 2 || kb < 2 || ka != kb || a[..ka - 2] != b[..kb - 2] || a[ka - 1] != b[kb - 2] {
        return Err(format!(
            "cannot multiply {a:?} by {b:?} (needs […, m, k]·[…, k, p] with the same leading axes)"
        ));
    }
    let mut out = a.to_vec();
    out[ka - 1] = b[kb - 1];
    Ok(out)
}

/// The mean over per-sample axis `axis` (the axis removed).
pub fn mean(x: ArrayViewD<f32>, axis: usize) -> ArrayD<f32> {
    let len = x.shape()[axis + 1] as f32;
    x.sum_axis(Axis(axis + 1)) / len
}

/// The gradient of [`mean`]: `g / len` spread over the removed axis.
pub fn mean_backward(g: ArrayViewD<f32>, axis: usize, len: usize) -> ArrayD<f32> {
    let spread = g.insert_axis(Axis(axis + 1));
    let mut shape = spread.shape().to_vec();
    shape[axis + 1] = len;
    let scale = 1.0 / len as f32;
    spread
        .broadcast(IxDyn(&shape))
        .expect("a unit axis broadcasts")
        .mapv(|v| v * scale)
}

/// Softmax along a per-sample axis (inside the network: attention weights).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Softmax {
    /// The per-sample axis.
    pub axis: usize,
}

/// The product of two computed values over their last two axes, batched over the others:
/// `[…, m, k]·[…, k, p]` → `[…, m, p]`. Reads two values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatMul;

/// The mean over a per-sample axis, which is removed (e.g. over the tokens of a transformer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mean {
    /// The per-sample axis.
    pub axis: usize,
}

impl Op for LayerNorm {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        self.validate(inputs[0])?;
        Ok(inputs[0].to_vec())
    }

    fn forward(&self, xs: &[ArrayViewD<f32>], _: &[usize]) -> ArrayD<f32> {
        self.forward(xs[0].view())
    }

    fn backward(&self, xs: &[ArrayViewD<f32>], g: ArrayViewD<f32>) -> Vec<ArrayD<f32>> {
        vec![self.backward(xs[0].view(), g, false)]
    }
}

impl Op for Softmax {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let input = inputs[0];
        if self.axis >= input.len() {
            return Err(format!("axis {} is out of range for {input:?}", self.axis));
        }
        Ok(input.to_vec())
    }

    fn forward(&self, xs: &[ArrayViewD<f32>], _: &[usize]) -> ArrayD<f32> {
        softmax(xs[0].view(), self.axis)
    }

    fn backward(&self, xs: &[ArrayViewD<f32>], g: ArrayViewD<f32>) -> Vec<ArrayD<f32>> {
        let y = softmax(xs[0].view(), self.axis);
        vec![softmax_backward(y.view(), g, self.axis)]
    }
}

impl Op for MatMul {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let out = matmul_shape(inputs[0], inputs[1])?;
        check_count(&out)?;
        Ok(out)
    }

    fn forward(&self, xs: &[ArrayViewD<f32>], _: &[usize]) -> ArrayD<f32> {
        matmul(xs[0].view(), xs[1].view())
    }

    fn backward(&self, xs: &[ArrayViewD<f32>], g: ArrayViewD<f32>) -> Vec<ArrayD<f32>> {
        let (ga, gb) = matmul_backward(xs[0].view(), xs[1].view(), g, 1.0);
        vec![ga, gb]
    }
}

impl Op for Mean {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let input = inputs[0];
        if self.axis >= input.len() {
            return Err(format!("axis {} is out of range for {input:?}", self.axis));
        }
        if input.len() == 1 {
            return Err("would leave no axis besides the batch".into());
        }
        let mut out = input.to_vec();
        out.remove(self.axis);
        Ok(out)
    }

    fn forward(&self, xs: &[ArrayViewD<f32>], _: &[usize]) -> ArrayD<f32> {
        mean(xs[0].view(), self.axis)
    }

    fn backward(&self, xs: &[ArrayViewD<f32>], g: ArrayViewD<f32>) -> Vec<ArrayD<f32>> {
        vec![mean_backward(g, self.axis, xs[0].shape()[self.axis + 1])]
    }
}
