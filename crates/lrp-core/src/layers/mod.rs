//! Layers: what each computes forward, its gradient, and its shape rule.

mod attention;

/// One sample's product of fewer multiply-adds than this runs on one thread (splitting it over the pool's threads
/// costs more than it saves); a photo's convolutions are split (`conv::par_gemm`, the direct path's row bands).
const PAR_MIN_MACS: usize = 1 << 22;

std::thread_local! {
    /// Each thread's scratch floats (im2col matrices, gathered columns, padded depthwise planes), kept between calls:
    /// reusing them spares an allocation, its page faults and a memset per convolution.
    static SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Runs `f` on this thread's scratch buffer, which `f` may grow; it holds stale values from earlier calls. A nested
/// call gets a fresh buffer, so `f` may use convolutions itself.
fn with_scratch<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    let mut v = SCRATCH.take();
    let out = f(&mut v);
    SCRATCH.set(v);
    out
}

/// Sets every value of `d` to zero, inline (the rows it clears are often a few values, where `fill` calls memset).
#[inline(always)]
fn zero(d: &mut [f32]) {
    d.iter_mut().for_each(|v| *v = 0.0);
}

mod batchnorm;
mod combine;
mod conv;
mod dense;
mod depthwise;
mod depthwise_lanes;
mod direct;
mod elementwise;
mod expr;
mod gemm;
mod grouped;
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
