//! Elementwise nodes: activations, and arithmetic with a constant.

use ndarray::{ArrayD, ArrayViewD, Zip};
use serde::{Deserialize, Serialize};

use super::expr::Expr;
use super::op::Op;

/// `max(x, 0)`, any shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relu;

impl Op for Relu {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        Ok(inputs[0].to_vec())
    }

    fn forward(&self, xs: &[ArrayViewD<f32>], _: &[usize]) -> ArrayD<f32> {
        match xs[0].as_slice() {
            // Split over the threads when large (a photo's activations).
            Some(x) => ArrayD::from_shape_vec(xs[0].raw_dim(), crate::par::map(x, |v| v.max(0.0)))
                .expect("one value per input"),
            None => xs[0].mapv(|v| v.max(0.0)),
        }
    }

    fn backward(&self, xs: &[ArrayViewD<f32>], g: ArrayViewD<f32>) -> Vec<ArrayD<f32>> {
        let mut out = g.to_owned();
        Zip::from(&mut out).and(&xs[0]).for_each(|o, &xi| {
            if xi <= 0.0 {
                *o = 0.0;
            }
        });
        vec![out]
    }
}

/// An elementwise activation. LRP passes relevance through it unchanged; gradients use its true derivative.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Activation {
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + e^−x)`.
    Sigmoid,
    /// `x` for `x ≥ 0`, `alpha·x` otherwise.
    LeakyRelu(f32),
    /// `x` for `x > 0`, `alpha·(eˣ − 1)` otherwise.
    Elu(f32),
    /// `x·Φ(x)` with the Gaussian CDF `Φ` (erf form).
    Gelu,
    /// GELU's tanh approximation `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
    GeluTanh,
    /// `x·sigmoid(x)` (SiLU, swish).
    Silu,
    /// `ln(1 + eˣ)`.
    Softplus,
    /// `min(max(x, low), high)` (ReLU6 is `Clip(0, 6)`).
    Clip(f32, f32),
    /// `max(0, min(1, alpha·x + beta))`.
    HardSigmoid(f32, f32),
    /// `x·max(0, min(1, x/6 + 1/2))`.
    HardSwish,
    /// An elementwise function an exporter wrote as several nodes (e.g. SiLU as `x·σ(x)`).
    Island(Expr),
}

/// `1 / (1 + e^−x)` without overflow for large `|x|`.
pub(crate) fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const INV_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;

impl Activation {
    /// A short name (`tanh`, `leaky-relu(0.01)`, …).
    pub fn name(&self) -> String {
        match self {
            Activation::Tanh => "tanh".into(),
            Activation::Sigmoid => "sigmoid".into(),
            Activation::LeakyRelu(a) => format!("leaky-relu({a})"),
            Activation::Elu(a) => format!("elu({a})"),
            Activation::Gelu => "gelu".into(),
            Activation::GeluTanh => "gelu-tanh".into(),
            Activation::Silu => "silu".into(),
            Activation::Softplus => "softplus".into(),
            Activation::Clip(l, h) => format!("clip({l}, {h})"),
            Activation::HardSigmoid(a, b) => format!("hard-sigmoid({a}, {b})"),
            Activation::HardSwish => "hard-swish".into(),
            Activation::Island(e) => format!("elementwise island of {} steps", e.ops.len()),
        }
    }

    /// Checks the parameters: finite, and `low ≤ high` for a clip.
    pub fn validate(&self) -> Result<(), String> {
        let params: &[f32] = match self {
            Activation::LeakyRelu(a) | Activation::Elu(a) => &[*a],
            Activation::Clip(l, h) | Activation::HardSigmoid(l, h) => &[*l, *h],
            _ => &[],
        };
        if params.iter().any(|p| !p.is_finite()) {
            return Err(format!("{} has a non-finite parameter", self.name()));
        }
        if let Activation::Island(e) = self {
            e.validate()?;
        }
        if let Activation::Clip(l, h) = self
            && l > h
        {
            return Err(format!("clip bounds {l} > {h}"));
        }
        Ok(())
    }

    /// `f(x)`.
    #[inline(always)]
    pub fn apply(&self, x: f32) -> f32 {
        match *self {
            Activation::Island(ref e) => e.value(x),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => sigmoid(x),
            Activation::LeakyRelu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a * x
                }
            }
            Activation::Elu(a) => {
                if x > 0.0 {
                    x
                } else {
                    a * x.exp_m1()
                }
            }
            Activation::Gelu => 0.5 * x * (1.0 + libm::erff(x * INV_SQRT_2)),
            Activation::GeluTanh => 0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh()),
            Activation::Silu => x * sigmoid(x),
            // ln(1 + eˣ) without overflow: max(x, 0) + ln(1 + e^−|x|).
            Activation::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            Activation::Clip(l, h) => x.max(l).min(h),
            Activation::HardSigmoid(a, b) => (a * x + b).clamp(0.0, 1.0),
            Activation::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
        }
    }

    /// `f′(x)` (at kinks, the derivative of the right-hand piece; PyTorch's choice where it matters).
    pub fn derivative(&self, x: f32) -> f32 {
        match *self {
            Activation::Island(ref e) => e.derivative(x),
            // Written so that saturated units keep their precision: 1 − tanh² and s·(1 − s) would cancel.
            Activation::Tanh => {
                let c = x.cosh();
                1.0 / (c * c)
            }
            Activation::Sigmoid => sigmoid(x) * sigmoid(-x),
            Activation::LeakyRelu(a) => {
                if x > 0.0 {
                    1.0
                } else {
                    a
                }
            }
            Activation::Elu(a) => {
                if x > 0.0 {
                    1.0
                } else {
                    a * x.exp()
                }
            }
            Activation::Gelu => {
                let cdf = 0.5 * (1.0 + libm::erff(x * INV_SQRT_2));
                let pdf = (-0.5 * x * x).exp() * 0.398_942_3;
                cdf + x * pdf
            }
            Activation::GeluTanh => {
                let u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
                let t = u.tanh();
                let du = SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du
            }
            Activation::Silu => sigmoid(x) * (1.0 + x * sigmoid(-x)),
            Activation::Softplus => sigmoid(x),
            Activation::Clip(l, h) => {
                if x >= l && x <= h {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::HardSigmoid(a, b) => {
                let v = a * x + b;
                if v > 0.0 && v < 1.0 { a } else { 0.0 }
            }
            Activation::HardSwish => {
                if x < -3.0 {
                    0.0
                } else if x <= 3.0 {
                    x / 3.0 + 0.5
                } else {
                    1.0
                }
            }
        }
    }

    /// `f` over a batch.
    pub fn forward(&self, x: ArrayViewD<f32>) -> ArrayD<f32> {
        if let Activation::Island(e) = self {
            // Value by value (SiLU imported as x·sigmoid(x), EfficientNet's activation: a third of its explanation
            // on one thread), so parts split anywhere give the same bits.
            let x = x.as_standard_layout();
            let mut out = ArrayD::<f32>::zeros(x.raw_dim());
            crate::par::zip_mut(
                out.as_slice_mut().expect("fresh array"),
                x.as_slice().expect("standard layout"),
                |o, x| e.values(x, o),
            );
            return out;
        }
        // Each arm is its own loop, the function known inside it (one `match` per value kept `apply` out of line
        // and the loop scalar: ReLU6 was a fifth of MobileNetV2's explanation), split over the threads when large.
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        let out = match *self {
            Activation::Tanh => crate::par::map(xs, |v| Activation::Tanh.apply(v)),
            Activation::Sigmoid => crate::par::map(xs, |v| Activation::Sigmoid.apply(v)),
            Activation::LeakyRelu(a) => crate::par::map(xs, |v| Activation::LeakyRelu(a).apply(v)),
            Activation::Elu(a) => crate::par::map(xs, |v| Activation::Elu(a).apply(v)),
            Activation::Gelu => crate::par::map(xs, |v| Activation::Gelu.apply(v)),
            Activation::GeluTanh => crate::par::map(xs, |v| Activation::GeluTanh.apply(v)),
            Activation::Silu => crate::par::map(xs, |v| Activation::Silu.apply(v)),
            Activation::Softplus => crate::par::map(xs, |v| Activation::Softplus.apply(v)),
            Activation::Clip(l, h) => crate::par::map(xs, |v| Activation::Clip(l, h).apply(v)),
            Activation::HardSigmoid(a, b) => crate::par::map(xs, |v| Activation::HardSigmoid(a, b).apply(v)),
            Activation::HardSwish => crate::par::map(xs, |v| Activation::HardSwish.apply(v)),
            Activation::Island(_) => unreachable!("islands are computed above"),
        };
        ArrayD::from_shape_vec(x.raw_dim(), out).expect("one value per input")
    }

    /// `g ⊙ f′(x)`.
    pub fn backward(&self, x: ArrayViewD<f32>, g: ArrayViewD<f32>) -> ArrayD<f32> {
        if let Activation::Island(e) = self {
            let mut ds = Vec::with_capacity(x.len());
            e.map(x.iter().copied(), |_, d| ds.push(d));
            let ds = ArrayD::from_shape_vec(x.raw_dim(), ds).expect("one value per element");
            return &g * &ds;
        }
        let mut out = g.to_owned();
        Zip::from(&mut out).and(&x).for_each(|o, &xi| *o *= self.derivative(xi));
        out
    }
}

/// Which arithmetic a constant takes part in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArithOp {
    /// `x + c`.
    Add,
    /// `x − c`.
    Sub,
    /// `c − x`.
    SubFrom,
    /// `x · c`.
    Mul,
    /// `x / c`.
    Div,
}

/// Elementwise arithmetic with a constant that broadcasts (numpy rules, right-aligned) to the per-sample shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Arith {
    /// The operation.
    pub op: ArithOp,
    /// The constant, of rank at most the per-sample rank.
    pub value: ArrayD<f32>,
}

impl Arith {
    /// A short description (`x − c`, with the constant's shape).
    pub fn describe(&self) -> String {
        let op = match self.op {
            ArithOp::Add => "x + c",
            ArithOp::Sub => "x − c",
            ArithOp::SubFrom => "c − x",
            ArithOp::Mul => "x · c",
            ArithOp::Div => "x / c",
        };
        format!("{op}, c {:?}", self.value.shape())
    }

    /// Checks the constant against the per-sample input shape.
    pub fn validate(&self, input: &[usize]) -> Result<(), String> {
        let c = self.value.shape();
        let fits = c.len() <= input.len() && c.iter().rev().zip(input.iter().rev()).all(|(&a, &b)| a == 1 || a == b);
        if !fits {
            return Err(format!("constant {c:?} does not broadcast to the input {input:?}"));
        }
        if let Some(i) = self.value.iter().position(|v| !v.is_finite()) {
            return Err(format!("constant has a non-finite value at flat index {i}"));
        }
        if self.op == ArithOp::Div
            && let Some(i) = self.value.iter().position(|v| *v == 0.0)
        {
            return Err(format!("divides by zero (constant element {i})"));
        }
        Ok(())
    }

    /// The result over a batch `[N, …]`.
    pub fn forward(&self, x: ArrayViewD<f32>) -> ArrayD<f32> {
        let c = &self.value;
        match self.op {
            ArithOp::Add => &x + c,
            ArithOp::Sub => &x - c,
            ArithOp::SubFrom => c - &x,
            ArithOp::Mul => &x * c,
            ArithOp::Div => &x / c,
        }
    }

    /// The input gradient for the output gradient `g`.
    pub fn backward(&self, g: ArrayViewD<f32>) -> ArrayD<f32> {
        match self.op {
            ArithOp::Add | ArithOp::Sub => g.to_owned(),
            ArithOp::SubFrom => g.mapv(|v| -v),
            ArithOp::Mul => &g * &self.value,
            ArithOp::Div => &g / &self.value,
        }
    }
}

impl Op for Activation {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        self.validate()?;
        Ok(inputs[0].to_vec())
    }

    fn forward(&self, xs: &[ArrayViewD<f32>], _: &[usize]) -> ArrayD<f32> {
        self.forward(xs[0].view())
    }

    fn backward(&self, xs: &[ArrayViewD<f32>], g: ArrayViewD<f32>) -> Vec<ArrayD<f32>> {
        vec![self.backward(xs[0].view(), g)]
    }
}

impl Op for Arith {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        self.validate(inputs[0])?;
        Ok(inputs[0].to_vec())
    }

    fn forward(&self, xs: &[ArrayViewD<f32>], _: &[usize]) -> ArrayD<f32> {
        self.forward(xs[0].view())
    }

    fn backward(&self, _: &[ArrayViewD<f32>], g: ArrayViewD<f32>) -> Vec<ArrayD<f32>> {
        vec![self.backward(g)]
    }
}
