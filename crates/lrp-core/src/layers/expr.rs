//! Elementwise expressions of one input: how an activation that an exporter decomposed (SiLU as `x·σ(x)`, GELU as
//! `x·0.5·(1 + erf(x/√2))`, Softplus behind a `Where`) is kept as one node. Evaluated with dual numbers, so the
//! derivative is exact.

use serde::{Deserialize, Serialize};

use super::elementwise::sigmoid;

/// Elements [`Expr::values`] evaluates a step at a time (each register a block of this many floats).
const VALUE_BLOCK: usize = 256;

/// A function of one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum UnaryFn {
    Neg,
    Abs,
    Exp,
    Log,
    Sqrt,
    Reciprocal,
    Sigmoid,
    Tanh,
    Erf,
    Relu,
    Softplus,
}

/// A function of two values (comparisons give 1 or 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum BinaryFn {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Min,
    Max,
    Greater,
    Less,
    GreaterOrEqual,
    LessOrEqual,
    Equal,
}

/// One step of an [`Expr`]; operands are register numbers (0 is the input, `k + 1` the result of step `k`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ExprOp {
    /// A constant.
    Const(f32),
    /// `f(a)`.
    Unary(UnaryFn, usize),
    /// `f(a, b)`.
    Binary(BinaryFn, usize, usize),
    /// `if c ≠ 0 { a } else { b }`.
    Where(usize, usize, usize),
}

/// An elementwise function of one input, as a list of steps; the last step's register is the result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Expr {
    /// The steps.
    pub ops: Vec<ExprOp>,
}

/// No expression may have more steps than this.
pub const MAX_EXPR_OPS: usize = 256;

#[derive(Clone, Copy)]
struct Dual {
    v: f32,
    d: f32,
}

impl Expr {
    /// Checks that every operand refers to an earlier register and constants are finite.
    pub fn validate(&self) -> Result<(), String> {
        if self.ops.is_empty() || self.ops.len() > MAX_EXPR_OPS {
            return Err(format!(
                "an expression needs 1 to {MAX_EXPR_OPS} steps, this one has {}",
                self.ops.len()
            ));
        }
        for (k, op) in self.ops.iter().enumerate() {
            let operands: Vec<usize> = match op {
                ExprOp::Const(c) => {
                    if !c.is_finite() {
                        return Err(format!("step {k}: constant {c} is not finite"));
                    }
                    vec![]
                }
                ExprOp::Unary(_, a) => vec![*a],
                ExprOp::Binary(_, a, b) => vec![*a, *b],
                ExprOp::Where(c, a, b) => vec![*c, *a, *b],
            };
            if let Some(r) = operands.iter().find(|&&r| r > k) {
                return Err(format!("step {k} reads register {r}, which is not computed before it"));
            }
        }
        Ok(())
    }

    fn eval(&self, x: f32, regs: &mut Vec<Dual>) -> Dual {
        regs.clear();
        regs.push(Dual { v: x, d: 1.0 });
        for op in &self.ops {
            let r = match *op {
                ExprOp::Const(c) => Dual { v: c, d: 0.0 },
                ExprOp::Unary(f, a) => {
                    let Dual { v, d } = regs[a];
                    let (y, dy) = match f {
                        UnaryFn::Neg => (-v, -1.0),
                        UnaryFn::Abs => (v.abs(), if v >= 0.0 { 1.0 } else { -1.0 }),
                        UnaryFn::Exp => {
                            let e = v.exp();
                            (e, e)
                        }
                        UnaryFn::Log => (v.ln(), 1.0 / v),
                        UnaryFn::Sqrt => {
                            let s = v.sqrt();
                            (s, 0.5 / s)
                        }
                        UnaryFn::Reciprocal => (1.0 / v, -1.0 / (v * v)),
                        UnaryFn::Sigmoid => (sigmoid(v), sigmoid(v) * sigmoid(-v)),
                        UnaryFn::Tanh => {
                            let c = v.cosh();
                            (v.tanh(), 1.0 / (c * c))
                        }
                        UnaryFn::Erf => (libm::erff(v), std::f32::consts::FRAC_2_SQRT_PI * (-v * v).exp()),
                        UnaryFn::Relu => (v.max(0.0), if v > 0.0 { 1.0 } else { 0.0 }),
                        UnaryFn::Softplus => (v.max(0.0) + (-v.abs()).exp().ln_1p(), sigmoid(v)),
                    };
                    Dual { v: y, d: dy * d }
                }
                ExprOp::Binary(f, a, b) => {
                    let (a, b) = (regs[a], regs[b]);
                    let flag = |c: bool| Dual {
                        v: if c { 1.0 } else { 0.0 },
                        d: 0.0,
                    };
                    match f {
                        BinaryFn::Add => Dual {
                            v: a.v + b.v,
                            d: a.d + b.d,
                        },
                        BinaryFn::Sub => Dual {
                            v: a.v - b.v,
                            d: a.d - b.d,
                        },
                        BinaryFn::Mul => Dual {
                            v: a.v * b.v,
                            d: a.d * b.v + a.v * b.d,
                        },
                        BinaryFn::Div => Dual {
                            v: a.v / b.v,
                            d: (a.d * b.v - a.v * b.d) / (b.v * b.v),
                        },
                        BinaryFn::Pow => {
                            let y = a.v.powf(b.v);
                            let da = if b.d == 0.0 { 0.0 } else { y * a.v.ln() * b.d };
                            Dual {
                                v: y,
                                d: b.v * a.v.powf(b.v - 1.0) * a.d + da,
                            }
                        }
                        BinaryFn::Min => {
                            if a.v <= b.v {
                                a
                            } else {
                                b
                            }
                        }
                        BinaryFn::Max => {
                            if a.v >= b.v {
                                a
                            } else {
                                b
                            }
                        }
                        BinaryFn::Greater => flag(a.v > b.v),
                        BinaryFn::Less => flag(a.v < b.v),
                        BinaryFn::GreaterOrEqual => flag(a.v >= b.v),
                        BinaryFn::LessOrEqual => flag(a.v <= b.v),
                        BinaryFn::Equal => flag(a.v == b.v),
                    }
                }
                ExprOp::Where(c, a, b) => {
                    if regs[c].v != 0.0 {
                        regs[a]
                    } else {
                        regs[b]
                    }
                }
            };
            regs.push(r);
        }
        *regs.last().expect("at least one step")
    }

    /// `out[i] = f(xs[i])`, [`VALUE_BLOCK`] elements at a time: each step runs over a block of values (one `match`
    /// a block, not one an element, and no derivative). Each value goes through the same operations as in
    /// [`Expr::value`], so the bits are the same.
    pub fn values(&self, xs: &[f32], out: &mut [f32]) {
        assert_eq!(xs.len(), out.len(), "one output per input");
        let mut regs = vec![[0f32; VALUE_BLOCK]; self.ops.len() + 1];
        for (xb, ob) in xs.chunks(VALUE_BLOCK).zip(out.chunks_mut(VALUE_BLOCK)) {
            let n = xb.len();
            regs[0][..n].copy_from_slice(xb);
            for (k, op) in self.ops.iter().enumerate() {
                let (done, rest) = regs.split_at_mut(k + 1);
                let r = &mut rest[0][..n];
                match *op {
                    ExprOp::Const(c) => r.fill(c),
                    ExprOp::Unary(f, a) => {
                        let a = &done[a][..n];
                        let g: fn(f32) -> f32 = match f {
                            UnaryFn::Neg => |v| -v,
                            UnaryFn::Abs => f32::abs,
                            UnaryFn::Exp => f32::exp,
                            UnaryFn::Log => f32::ln,
                            UnaryFn::Sqrt => f32::sqrt,
                            UnaryFn::Reciprocal => |v| 1.0 / v,
                            UnaryFn::Sigmoid => sigmoid,
                            UnaryFn::Tanh => f32::tanh,
                            UnaryFn::Erf => libm::erff,
                            UnaryFn::Relu => |v| v.max(0.0),
                            UnaryFn::Softplus => |v| v.max(0.0) + (-v.abs()).exp().ln_1p(),
                        };
                        for (r, &v) in r.iter_mut().zip(a) {
                            *r = g(v);
                        }
                    }
                    ExprOp::Binary(f, a, b) => {
                        let (a, b) = (&done[a][..n], &done[b][..n]);
                        let g: fn(f32, f32) -> f32 = match f {
                            BinaryFn::Add => |a, b| a + b,
                            BinaryFn::Sub => |a, b| a - b,
                            BinaryFn::Mul => |a, b| a * b,
                            BinaryFn::Div => |a, b| a / b,
                            BinaryFn::Pow => f32::powf,
                            BinaryFn::Min => |a, b| if a <= b { a } else { b },
                            BinaryFn::Max => |a, b| if a >= b { a } else { b },
                            BinaryFn::Greater => |a, b| if a > b { 1.0 } else { 0.0 },
                            BinaryFn::Less => |a, b| if a < b { 1.0 } else { 0.0 },
                            BinaryFn::GreaterOrEqual => |a, b| if a >= b { 1.0 } else { 0.0 },
                            BinaryFn::LessOrEqual => |a, b| if a <= b { 1.0 } else { 0.0 },
                            BinaryFn::Equal => |a, b| if a == b { 1.0 } else { 0.0 },
                        };
                        for ((r, &a), &b) in r.iter_mut().zip(a).zip(b) {
                            *r = g(a, b);
                        }
                    }
                    ExprOp::Where(c, a, b) => {
                        for (((r, &c), &a), &b) in r.iter_mut().zip(&done[c][..n]).zip(&done[a][..n]).zip(&done[b][..n])
                        {
                            *r = if c != 0.0 { a } else { b };
                        }
                    }
                }
            }
            ob.copy_from_slice(&regs[self.ops.len()][..n]);
        }
    }

    /// `f(x)` for every element, with one register buffer per call.
    pub fn map(&self, xs: impl Iterator<Item = f32>, mut out: impl FnMut(f32, f32)) {
        let mut regs = Vec::with_capacity(self.ops.len() + 1);
        for x in xs {
            let r = self.eval(x, &mut regs);
            out(r.v, r.d);
        }
    }

    /// `f(x)`.
    pub fn value(&self, x: f32) -> f32 {
        self.eval(x, &mut Vec::with_capacity(self.ops.len() + 1)).v
    }

    /// `f′(x)`.
    pub fn derivative(&self, x: f32) -> f32 {
        self.eval(x, &mut Vec::with_capacity(self.ops.len() + 1)).d
    }
}
