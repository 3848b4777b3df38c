//! SmoothGrad and integrated gradients checked by properties that could fail: their definitions computed
//! independently, the limit cases, and independence of batching.

mod common;

use common::fixture;
use lrp_core::Network;
use lrp_rules::{Explainer, Spec, Target};
use ndarray::{ArrayD, Axis, s};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

fn cnn() -> Network {
    lrp_onnx::import_file(&fixture("mnist-cnn.onnx")).unwrap().network
}

fn inputs() -> ArrayD<f32> {
    let x: ArrayD<f32> = ndarray_npy::read_npy(fixture("inputs.npy")).unwrap();
    x.slice_axis(Axis(0), (0..6).into()).to_owned()
}

fn attribute(net: &Network, spec: &str, x: &ArrayD<f32>, target: &Target) -> ArrayD<f32> {
    Explainer::new(net, &Spec::parse(spec).unwrap())
        .unwrap()
        .explain(x.view(), target)
        .unwrap()
        .relevance
}

fn max_abs(a: &ArrayD<f32>) -> f32 {
    lrp_testkit::max_abs(a.iter())
}

/// The documented seeding: each sample's noise comes from ChaCha8 seeded with FNV-1a over the sample's f32 bits
/// (little-endian), drawn in element order, one copy after the other.
fn fnv1a(sample: ndarray::ArrayViewD<f32>) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for v in sample.iter() {
        for b in v.to_bits().to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

#[test]
fn smoothgrad_is_the_mean_gradient_over_its_seeded_noisy_copies() {
    let net = cnn();
    let x = inputs();
    let (n, sigma) = (5, 0.2f32);
    let got = attribute(&net, &format!("smoothgrad({n},{sigma})"), &x, &Target::Class(3));
    // Independently: the same noise, each copy's gradient through the `gradient` method, averaged.
    let normal = Normal::new(0.0f32, sigma).unwrap();
    let mut rngs: Vec<ChaCha8Rng> = x.outer_iter().map(|s| ChaCha8Rng::seed_from_u64(fnv1a(s))).collect();
    let mut sum = ArrayD::<f32>::zeros(x.raw_dim());
    for _ in 0..n {
        let mut noisy = x.clone();
        for (mut sample, rng) in noisy.outer_iter_mut().zip(rngs.iter_mut()) {
            sample.mapv_inplace(|v| v + normal.sample(rng));
        }
        sum += &attribute(&net, "gradient", &noisy, &Target::Class(3));
    }
    let want = sum / n as f32;
    let err = lrp_testkit::max_abs((&got - &want).iter());
    assert!(err <= 1e-6 * max_abs(&want), "{err}");
    // The noise matters: with σ = 0.2 SmoothGrad is not the plain gradient.
    let plain = attribute(&net, "gradient", &x, &Target::Class(3));
    assert!(lrp_testkit::max_abs((&got - &plain).iter()) > 1e-3 * max_abs(&plain));
}

#[test]
fn smoothgrad_without_noise_is_the_gradient() {
    let net = cnn();
    let x = inputs();
    let got = attribute(&net, "smoothgrad(3,0)", &x, &Target::Predicted);
    let want = attribute(&net, "gradient", &x, &Target::Predicted);
    // (g + g + g) / 3 rounds: equal to the last bits only.
    let err = lrp_testkit::max_abs((&got - &want).iter());
    assert!(err <= 1e-6 * max_abs(&want), "{err}");
}

#[test]
fn smoothgrad_does_not_depend_on_batching_or_repetition() {
    let net = cnn();
    let x = inputs();
    let spec = "smoothgrad(4,0.3)";
    let all = attribute(&net, spec, &x, &Target::Class(1));
    let again = attribute(&net, spec, &x, &Target::Class(1));
    assert_eq!(all, again, "the same input twice gives the same bits");
    // Each sample alone, and the batch in two uneven parts (as shards and chunks split it).
    for i in 0..x.shape()[0] {
        let one = attribute(
            &net,
            spec,
            &x.slice(s![i..i + 1, .., .., ..]).to_owned().into_dyn(),
            &Target::Class(1),
        );
        assert_eq!(
            one.index_axis(Axis(0), 0),
            all.index_axis(Axis(0), i),
            "sample {i} alone"
        );
    }
    let head = attribute(
        &net,
        spec,
        &x.slice(s![..2, .., .., ..]).to_owned().into_dyn(),
        &Target::Class(1),
    );
    let tail = attribute(
        &net,
        spec,
        &x.slice(s![2.., .., .., ..]).to_owned().into_dyn(),
        &Target::Class(1),
    );
    assert_eq!(ndarray::concatenate(Axis(0), &[head.view(), tail.view()]).unwrap(), all);
}

#[test]
fn integrated_gradients_approach_gradient_times_input_for_a_linear_model_and_complete_for_any() {
    // On the MLP (piecewise linear), with many steps the sum of IG approaches logit(x) − logit(0) (completeness).
    let net = lrp_onnx::import_file(&fixture("mnist-mlp.onnx")).unwrap().network;
    let x = inputs();
    let ig = attribute(&net, "integrated-gradients(256)", &x, &Target::Class(2));
    let logits = net.forward(x.view()).unwrap();
    let at_zero = net.forward(ArrayD::zeros(x.raw_dim()).view()).unwrap();
    for i in 0..x.shape()[0] {
        let total: f32 = ig.index_axis(Axis(0), i).sum();
        let delta = logits[[i, 2]] - at_zero[[i, 2]];
        assert!(
            (total - delta).abs() <= 0.02 * (1.0 + delta.abs()),
            "sample {i}: {total} vs {delta}"
        );
    }
}
