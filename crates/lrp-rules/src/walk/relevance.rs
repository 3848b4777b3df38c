//! LRP in the relevance form: relevance itself walks back, divided by pre-activations at each rule.

use lrp_core::{Network, Trace};
use ndarray::{ArrayD, Ix4};

use super::Visit;
use crate::numerics::{STABILIZER, divide, divide_owned, per_sample_sums, times_owned};
use crate::plan::Step;
use crate::rules;

/// LRP from the output relevance `r` to the input; also the relevance summed over each value (for a chain, the
/// input of each layer), the last entry being the output's.
pub(crate) fn lrp(
    net: &Network,
    steps: &[Step],
    trace: &Trace,
    r: ArrayD<f32>,
    mut visit: Visit<'_>,
) -> (ArrayD<f32>, Vec<Vec<f32>>) {
    let mut sums = vec![Vec::new(); if visit.sums { steps.len() + 1 } else { 0 }];
    let relevance = net.reverse_accumulate(
        r,
        |k, r| {
            let ins = net.inputs_of(k);
            let x = trace.value(ins[0]);
            let z = trace.value(k + 1);
            vec![match &steps[k] {
                Step::Pass if r.shape() == x.shape() => r,
                // Reshaped in its own memory when it is in standard order (a copy only otherwise: copying the
                // MLP's input-sized relevance was a third of its copying).
                Step::Pass => {
                    let r = if r.is_standard_layout() {
                        r
                    } else {
                        r.as_standard_layout().into_owned()
                    };
                    r.into_shape_with_order(x.raw_dim())
                        .expect("pass-through layers keep the element count")
                }
                Step::MaxPool(p) => p
                    .max_route(
                        x.view().into_dimensionality::<Ix4>().expect("4-D"),
                        r.view().into_dimensionality::<Ix4>().expect("4-D"),
                    )
                    .into_dyn(),
                Step::AvgPool(p) => {
                    let s = divide(&r, z, STABILIZER);
                    let x4 = x.view().into_dimensionality::<Ix4>().expect("4-D");
                    p.avg_transpose(s.view().into_dimensionality::<Ix4>().expect("4-D"), x4.dim())
                        .into_dyn()
                        * x
                }
                Step::Linear(p) => rules::relevance(p, x, z, r),
                Step::Lstm(l, e) => rules::lstm::relevance(l, *e, x, &r),
                Step::Bias(sign) => {
                    let s = divide(&r, z, STABILIZER);
                    if *sign < 0.0 { -(s * x) } else { s * x }
                }
                Step::Add => {
                    let s = divide_owned(r, z, STABILIZER);
                    let b = trace.value(ins[1]);
                    return vec![times_owned(s.clone(), x), times_owned(s, b)];
                }
                Step::Route => return net.node_backward(k, trace, r.view()),
                Step::Mul { gate } => return product_relevance(*gate, x, trace.value(ins[1]), r),
                Step::Act(_) => r,
                Step::Mean(axis) => {
                    let s = divide(&r, z, STABILIZER);
                    lrp_core::mean_backward(s.view(), *axis, x.shape()[axis + 1]) * x
                }
                Step::LayerNorm(_) | Step::Softmax(_) | Step::MatMul => {
                    unreachable!("networks with transformer nodes are explained in the gradient form")
                }
            }]
        },
        |v, r| {
            if let Some(mask) = visit.mask {
                mask(v, r);
            }
            if visit.sums {
                sums[v] = per_sample_sums(r);
            }
            if let Some(keep) = visit.keep.as_mut() {
                keep(v, r);
            }
        },
    );
    (relevance, sums)
}

/// The relevance of the two factors of an elementwise product `y = a ⊙ b` (broadcast): a gate's signal takes all of
/// `R` and the gate none (signal-take-all, `LRP-RULES.md`, "ImageNet networks"); any other product gives each factor
/// half (AttnLRP's uniform rule). A factor that was broadcast gets the sum over the axes it was broadcast along.
fn product_relevance(gate: Option<usize>, a: &ArrayD<f32>, b: &ArrayD<f32>, r: ArrayD<f32>) -> Vec<ArrayD<f32>> {
    let shapes = [&a.shape()[1..], &b.shape()[1..]];
    match gate {
        Some(i) => {
            let mut out = vec![ArrayD::zeros(a.raw_dim()), ArrayD::zeros(b.raw_dim())];
            out[i] = lrp_core::reduce_to(r, shapes[i]);
            out
        }
        None => {
            let half = r * 0.5;
            vec![
                lrp_core::reduce_to(half.clone(), shapes[0]),
                lrp_core::reduce_to(half, shapes[1]),
            ]
        }
    }
}
