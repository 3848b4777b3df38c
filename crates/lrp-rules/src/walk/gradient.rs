//! LRP in the gradient form: a modified gradient `ĝ` walks back and the relevance at any value is `value ⊙ ĝ`.

use lrp_core::simd::stabilised as stab;
use lrp_core::{Network, Trace};
use ndarray::{ArrayD, Ix4, Zip};

use super::Visit;
use crate::numerics::per_sample_sums;
use crate::plan::Step;
use crate::rules::{self, Share};

/// `ĝ_y · f(x)/x`: the identity rule on an activation `y = f(x)` in the gradient form (`R_x = R_y`). Where
/// `x = 0` the ratio's limit `f′(0)` when `f(0) = 0`, else 0 (nothing to pass: `R_x = 0·ĝ`).
fn identity_ratio(a: &lrp_core::Activation, x: &ArrayD<f32>, y: &ArrayD<f32>, g: ArrayD<f32>) -> ArrayD<f32> {
    let at_zero = if a.apply(0.0) == 0.0 { a.derivative(0.0) } else { 0.0 };
    let mut g = g;
    Zip::from(&mut g).and(x).and(y).for_each(|g, &x, &y| {
        *g *= if x == 0.0 { at_zero } else { y / x };
    });
    g
}

/// LRP in the gradient form (AttnLRP, Achtibat et al. 2024, as LXT computes it): a modified gradient `ĝ` flows
/// back from `onehot(target)`, each node applying its rule's Jacobian, and the relevance at any value is
/// `value ⊙ ĝ`. LRP-0 is the plain gradient, LRP-ε scales it by `z/stab(z, ε)`; products of two values halve it on
/// each factor; a layer norm holds `σ`; a softmax is linearized at its input (its true Jacobian); activations
/// take the identity rule (`ĝ · f(x)/x`); sums, biases, means and routing pass it as the gradient does, without a
/// stabilizer. Nothing divides relevance by a pre-activation, so near-zero scores in attention are harmless.
pub(crate) fn lrp(
    net: &Network,
    steps: &[Step],
    trace: &Trace,
    r: ArrayD<f32>,
    stab_e: f32,
    mut visit: Visit<'_>,
) -> (ArrayD<f32>, Vec<Vec<f32>>) {
    // The proportional rules' factor `z / stab(z, e)` (1 without a stabilizer).
    let damp = |g: ArrayD<f32>, z: &ArrayD<f32>| -> ArrayD<f32> {
        if stab_e == 0.0 {
            return g;
        }
        let mut g = g;
        Zip::from(&mut g).and(z).for_each(|g, &z| *g *= z / stab(z, stab_e));
        g
    };
    // The output relevance R = logit ⊙ ĝ: ĝ = R / logit (1 at the explained class).
    let mut g = r;
    Zip::from(&mut g)
        .and(&trace.output)
        .for_each(|g, &y| *g = if *g == 0.0 || y == 0.0 { 0.0 } else { *g / y });
    // Relevance from rules that give it directly (z^B, w², flat), by the value it sits at.
    let direct: std::cell::RefCell<std::collections::HashMap<usize, ArrayD<f32>>> = Default::default();
    let mut sums = vec![Vec::new(); if visit.sums { steps.len() + 1 } else { 0 }];
    let g0 = net.reverse_accumulate(
        g,
        |k, g| {
            let ins = net.inputs_of(k);
            let x = trace.value(ins[0]);
            let z = trace.value(k + 1);
            vec![match &steps[k] {
                Step::Linear(p) => match rules::gradient(p, x, z, &g) {
                    Share::Grad(a) => a,
                    Share::Direct(rel) => {
                        // Relevance itself at the layer's input, which is the network input or reaches it through
                        // reshapes only (checked by the plan): it travels down that path beside ĝ.
                        let mut d = direct.borrow_mut();
                        match d.get_mut(&ins[0]) {
                            Some(acc) => *acc += &rel,
                            None => {
                                d.insert(ins[0], rel);
                            }
                        }
                        ArrayD::zeros(x.raw_dim())
                    }
                },
                Step::Act(a) => identity_ratio(a, x, z, g),
                Step::Pass => {
                    let mut d = direct.borrow_mut();
                    if let Some(rel) = d.remove(&(k + 1)) {
                        let rel = rel
                            .as_standard_layout()
                            .into_owned()
                            .into_shape_with_order(x.raw_dim())
                            .expect("a reshape keeps the elements");
                        d.insert(ins[0], rel);
                    }
                    return net.node_backward(k, trace, g.view());
                }
                Step::MaxPool(_) | Step::Route => return net.node_backward(k, trace, g.view()),
                Step::AvgPool(p) => {
                    let x4 = x.view().into_dimensionality::<Ix4>().expect("4-D");
                    let g = damp(g, z);
                    p.avg_transpose(g.view().into_dimensionality::<Ix4>().expect("4-D"), x4.dim())
                        .into_dyn()
                }
                Step::Bias(sign) => {
                    let g = damp(g, z);
                    if *sign < 0.0 { -g } else { g }
                }
                Step::Add => {
                    let g = damp(g, z);
                    return vec![g.clone(), g];
                }
                Step::Mean(axis) => lrp_core::mean_backward(damp(g, z).view(), *axis, x.shape()[axis + 1]),
                Step::LayerNorm(l) => l.backward(x.view(), g.view(), true),
                Step::Softmax(axis) => lrp_core::softmax_backward(z.view(), g.view(), *axis),
                Step::MatMul => {
                    let (ga, gb) = lrp_core::matmul_backward(x.view(), trace.value(ins[1]).view(), g.view(), 0.5);
                    return vec![ga, gb];
                }
                Step::Mul { gate } => return product_gradient(*gate, x, trace.value(ins[1]), &g),
                Step::Lstm(..) => unreachable!("an LSTM is refused in the gradient form when the plan is made"),
            }]
        },
        |v, g| {
            if let Some(mask) = visit.mask {
                mask(v, g);
            }
            if !visit.sums && visit.keep.is_none() {
                return;
            }
            let mut rel = &*g * trace.value(v);
            if let Some(d) = direct.borrow().get(&v) {
                rel += d;
            }
            if visit.sums {
                sums[v] = per_sample_sums(&rel);
            }
            if let Some(keep) = visit.keep.as_mut() {
                keep(v, &rel);
            }
        },
    );
    let mut relevance = g0 * trace.value(0);
    if let Some(d) = direct.into_inner().get(&0) {
        relevance += d;
    }
    (relevance, sums)
}

/// The modified gradients of the two factors of `y = a ⊙ b` (broadcast): for a gate, `ĝ_signal = ĝ ⊙ gate` (so
/// `R_signal = R_y`) and nothing to the gate; for any other product, `ĝ_a = ½ ĝ ⊙ b`, `ĝ_b = ½ ĝ ⊙ a` (half the
/// relevance each). A factor that was broadcast gets the sum over the axes it was broadcast along.
fn product_gradient(gate: Option<usize>, a: &ArrayD<f32>, b: &ArrayD<f32>, g: &ArrayD<f32>) -> Vec<ArrayD<f32>> {
    let shapes = [&a.shape()[1..], &b.shape()[1..]];
    match gate {
        Some(i) => {
            let other = if i == 0 { b } else { a };
            let mut out = vec![ArrayD::zeros(a.raw_dim()), ArrayD::zeros(b.raw_dim())];
            out[i] = lrp_core::reduce_to(g * other, shapes[i]);
            out
        }
        None => vec![
            lrp_core::reduce_to(g * b * 0.5, shapes[0]),
            lrp_core::reduce_to(g * a * 0.5, shapes[1]),
        ],
    }
}
