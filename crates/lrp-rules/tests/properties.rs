//! Property tests of the rules on random small networks.

use lrp_core::{Conv2d, Dense, Layer, Network, Pool2d};
use lrp_rules::{Explainer, Spec, Target};
use ndarray::{Array1, Array2, Array4, ArrayD, IxDyn};
use proptest::prelude::*;

/// conv(2→3, 3×3, pad 1) → ReLU → avgpool 2 → flatten → dense(→5) → ReLU → dense(→3), with given weights.
fn network(w: &[f32], with_bias: bool, maxpool: bool) -> Network {
    let mut it = w.iter().cycle().copied();
    let mut take = |n: usize| (0..n).map(|_| it.next().unwrap()).collect::<Vec<f32>>();
    let bias = |v: Vec<f32>| if with_bias { Some(Array1::from(v)) } else { None };
    let conv = Conv2d::new(
        Array4::from_shape_vec((3, 2, 3, 3), take(54)).unwrap(),
        bias(take(3)),
        [1, 1],
        [1; 4],
    );
    let d1 = Dense::new(Array2::from_shape_vec((5, 12), take(60)).unwrap(), bias(take(5)));
    let d2 = Dense::new(Array2::from_shape_vec((3, 5), take(15)).unwrap(), bias(take(3)));
    let pool = if maxpool {
        Layer::MaxPool2d(Pool2d::square(2, 2))
    } else {
        Layer::AvgPool2d(Pool2d::square(2, 2))
    };
    Network::new(
        vec![2, 4, 4],
        vec![
            Layer::Conv2d(conv),
            Layer::Relu(lrp_core::Relu),
            pool,
            Layer::Flatten(lrp_core::Flatten),
            Layer::Dense(d1),
            Layer::Relu(lrp_core::Relu),
            Layer::Dense(d2),
        ],
    )
    .unwrap()
}

fn weights() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-1.0f32..1.0, 140)
}

fn input(signed: bool) -> impl Strategy<Value = ArrayD<f32>> {
    let lo = if signed { -1.0f32 } else { 0.0 };
    prop::collection::vec(lo..1.0, 2 * 32).prop_map(|v| ArrayD::from_shape_vec(IxDyn(&[2, 2, 4, 4]), v).unwrap())
}

fn explain(net: &Network, spec: &str, x: &ArrayD<f32>, target: &Target) -> lrp_rules::Explanation {
    Explainer::new(net, &Spec::parse(spec).unwrap())
        .unwrap()
        .explain(x.view(), target)
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// LRP-0 / epsilon with zero biases conserves relevance at every layer (up to what ε absorbs).
    #[test]
    fn epsilon_without_bias_conserves_relevance_layer_by_layer(w in weights(), x in input(true), maxpool in any::<bool>(), t in 0usize..3) {
        let net = network(&w, false, maxpool);
        let e = explain(&net, "epsilon(1e-9)", &x, &Target::Class(t));
        let logits = e.explained_logits();
        for (layer, sums) in e.layer_sums.iter().enumerate() {
            for (n, (&s, &l)) in sums.iter().zip(&logits).enumerate() {
                // Relevance at a layer input equals the logit, unless a zero denominator swallowed it.
                prop_assert!((s - l).abs() <= 1e-3 * (1.0 + l.abs()), "layer {layer} sample {n}: sum {s} vs logit {l}");
            }
        }
    }

    /// z⁺ and αβ(1,0) give non-negative relevance for non-negative inputs and a positive logit.
    #[test]
    fn zplus_and_alpha1beta0_are_non_negative(w in weights(), x in input(false), maxpool in any::<bool>()) {
        let net = network(&w, true, maxpool);
        for spec in ["zplus", "alpha1beta0"] {
            let e = explain(&net, spec, &x, &Target::Predicted);
            for (n, l) in e.explained_logits().iter().enumerate() {
                if *l > 0.0 {
                    let min = e.relevance.index_axis(ndarray::Axis(0), n).iter().fold(f32::INFINITY, |m, &v| m.min(v));
                    prop_assert!(min >= 0.0, "{spec} sample {n}: relevance {min} < 0 with logit {l}");
                }
            }
        }
    }

    /// Every rule is linear in the output relevance: R(a·r1 + b·r2) = a·R(r1) + b·R(r2).
    #[test]
    fn every_rule_is_linear_in_the_output_relevance(
        w in weights(),
        x in input(true),
        r1 in prop::collection::vec(-2.0f32..2.0, 6),
        r2 in prop::collection::vec(-2.0f32..2.0, 6),
        a in -2.0f32..2.0,
        b in -2.0f32..2.0,
    ) {
        let net = network(&w, true, false);
        let r1 = ArrayD::from_shape_vec(IxDyn(&[2, 3]), r1).unwrap();
        let r2 = ArrayD::from_shape_vec(IxDyn(&[2, 3]), r2).unwrap();
        let mix = &r1 * a + &r2 * b;
        for spec in lrp_rules::PRESETS.iter().copied().chain(["epsilon(0.1)", "zbox(-1,1)", "#0=wsquare;all=epsilon", "all=flat"]) {
            let ex = Explainer::new(&net, &Spec::parse(spec).unwrap()).unwrap();
            let ra = ex.explain_from(x.view(), r1.view()).unwrap().relevance;
            let rb = ex.explain_from(x.view(), r2.view()).unwrap().relevance;
            let rm = ex.explain_from(x.view(), mix.view()).unwrap().relevance;
            let expected = &ra * a + &rb * b;
            let scale = expected.iter().chain(rm.iter()).fold(1e-3f32, |m, v| m.max(v.abs()));
            for (e, g) in expected.iter().zip(rm.iter()) {
                prop_assert!((e - g).abs() <= 1e-4 * scale, "{spec}: expected {e}, got {g}");
            }
        }
    }
}

/// An explainer made without layer sums leaves them empty and gives the same relevance bits, for rules of every
/// kind on the relevance-form network (max pooling included).
#[test]
fn without_layer_sums_the_relevance_is_the_same_bits() {
    let w: Vec<f32> = (0..140).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    let net = network(&w, true, true);
    let x = ArrayD::from_shape_fn(IxDyn(&[3, 2, 4, 4]), |i| {
        ((i[0] * 7 + i[1] * 5 + i[2] * 3 + i[3]) % 11) as f32 / 10.0
    });
    for spec in [
        "epsilon",
        "gamma",
        "alpha2beta1",
        "zplus",
        "epsilon-gamma-box",
        "gradient",
    ] {
        let full = Explainer::new(&net, &Spec::parse(spec).unwrap()).unwrap();
        let lean = Explainer::new(&net, &Spec::parse(spec).unwrap())
            .unwrap()
            .without_layer_sums();
        let a = full.explain(x.view(), &Target::Predicted).unwrap();
        let b = lean.explain(x.view(), &Target::Predicted).unwrap();
        let bits = |r: &ArrayD<f32>| r.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a.relevance), bits(&b.relevance), "{spec}");
        assert!(b.layer_sums.is_empty(), "{spec}");
        if spec != "gradient" {
            assert_eq!(a.layer_sums.len(), net.layers().len() + 1, "{spec}");
        }
    }
}
