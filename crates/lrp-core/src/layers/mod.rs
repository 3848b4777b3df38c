//! Layers: what each computes forward, its gradient, and its shape rule.

mod attention;

use std::mem::MaybeUninit;

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

/// Initialized values seen as possibly uninitialized ones, to copy them into an output not yet written.
fn init_ref(s: &[f32]) -> &[MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout, and any value is a valid `MaybeUninit`; the view is read-only.
    unsafe { &*(s as *const [f32] as *const [MaybeUninit<f32>]) }
}

/// Initialized values to be overwritten through a path that writes outputs not yet initialized.
///
/// # Safety
/// Only initialized values may be written through the view (`MaybeUninit::write` of an `f32`), so that `s` stays
/// initialized.
unsafe fn overwrite(s: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: same layout; the caller writes only initialized values.
    unsafe { &mut *(s as *mut [f32] as *mut [MaybeUninit<f32>]) }
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
