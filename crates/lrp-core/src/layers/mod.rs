//! Layers: what each computes forward, its gradient, and its shape rule.

mod attention;

/// One sample's product of fewer multiply-adds than this runs on one thread (splitting it over the pool's threads
/// costs more than it saves); a photo's convolutions are split (`conv::par_gemm`, the direct path's row bands).
const PAR_MIN_MACS: usize = 1 << 22;

mod batchnorm;
mod combine;
mod conv;
mod dense;
mod depthwise;
mod direct;
mod elementwise;
mod expr;
mod layer;
mod lstm;
mod op;
mod pool;
mod structural;
mod unfold;
mod window;

pub use attention::{
    LayerNorm, MatMul, Mean, Softmax, matmul, matmul_backward, matmul_shape, mean, mean_backward, softmax,
    softmax_backward,
};
pub use batchnorm::BatchNorm;
pub use combine::{Insert, Mul, broadcast_shapes, reduce_to};
pub use conv::Conv2d;
pub use dense::Dense;
pub use elementwise::{Activation, Arith, ArithOp, Relu};
pub use expr::{BinaryFn, Expr, ExprOp, MAX_EXPR_OPS, UnaryFn};
pub use layer::{Layer, LayerKind, ParamGrads};
pub use lstm::{Lstm, LstmDirection, LstmStates};
pub use op::Op;
pub use pool::Pool2d;
pub use structural::{Add, Concat, Dropout, Flatten, Pad, Reshape, Slice, Take, Transpose};
pub use window::Window;
