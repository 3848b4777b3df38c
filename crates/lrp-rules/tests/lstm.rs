//! LSTM relevance (Arras et al. 2017): the reference model and its fixture, bidirectional = two forward passes,
//! and rules an LSTM cannot take.

mod common;

use common::{fixture, worst_relative_error};

use lrp_core::{Dense, Layer, Lstm, LstmDirection, Network};
use lrp_rules::{Explainer, Plan, Spec, Target};
use ndarray::{Array1, Array2, ArrayD, Axis, IxDyn, concatenate, s};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[test]
fn reference_lstm_gives_its_logits_and_relevance() {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("manifest-lstm.json")).unwrap()).unwrap();
    let model = &manifest["models"][0];
    let s = |k: &str| model[k].as_str().unwrap();
    let net = lrp_onnx::import_file(&fixture(s("model"))).unwrap().network;
    let inputs: ArrayD<f32> = ndarray_npy::read_npy(fixture(s("inputs"))).unwrap();
    let logits: ArrayD<f32> = ndarray_npy::read_npy(fixture(s("logits"))).unwrap();
    let targets: Array1<i64> = ndarray_npy::read_npy(fixture(s("targets"))).unwrap();
    let got = net.forward(inputs.view()).unwrap();
    let scale = lrp_testkit::max_abs(logits.iter());
    let err = lrp_testkit::max_abs((&got - &logits).iter());
    assert!(err <= 1e-4 * scale, "logits: {err}");
    let case = &model["cases"][0];
    let spec = Spec::parse(case["spec"].as_str().unwrap()).unwrap();
    let reference: ArrayD<f32> = ndarray_npy::read_npy(fixture(case["file"].as_str().unwrap())).unwrap();
    let targets = Target::PerSample(targets.iter().map(|&t| t as usize).collect());
    let e = Explainer::new(&net, &spec)
        .unwrap()
        .explain(inputs.view(), &targets)
        .unwrap();
    let err = worst_relative_error(&e.relevance, &reference);
    // The manifest allows 1e-3; this implementation measures 3.1e-5.
    assert!(err <= 1e-4, "relevance: {err}");
    // The same through the lstm selector and a composite preset.
    let by_selector = Spec::parse("lstm=epsilon(0.001); dense=epsilon(0.001)").unwrap();
    let e2 = Explainer::new(&net, &by_selector)
        .unwrap()
        .explain(inputs.view(), &targets)
        .unwrap();
    assert_eq!(e2.relevance, e.relevance);
    let preset = Explainer::new(&net, &Spec::parse("epsilon-plus").unwrap()).unwrap();
    assert!(preset.explain(inputs.view(), &targets).is_ok());
    // Composites whose `first` lands on the LSTM keep it at epsilon: on [LSTM, dense] they are all-epsilon.
    let plain = Explainer::new(&net, &Spec::parse("epsilon").unwrap())
        .unwrap()
        .explain(inputs.view(), &targets)
        .unwrap()
        .relevance;
    for preset in ["epsilon-gamma-box", "epsilon-plus-flat", "epsilon-alpha2-beta1-flat"] {
        let e = Explainer::new(&net, &Spec::parse(preset).unwrap())
            .unwrap_or_else(|e| panic!("{preset}: {e}"))
            .explain(inputs.view(), &targets)
            .unwrap();
        assert_eq!(e.relevance, plain, "{preset}");
    }
}

fn direction(rng: &mut ChaCha8Rng, f: usize, h: usize, reverse: bool) -> LstmDirection {
    let mut m = |r: usize, c: usize| Array2::from_shape_fn((r, c), |_| rng.random_range(-0.8f32..0.8));
    LstmDirection {
        w: m(4 * h, f),
        r: m(4 * h, h),
        b: m(4 * h, 1).column(0).to_owned(),
        reverse,
    }
}

fn lstm_net(directions: Vec<LstmDirection>) -> Network {
    Network::new(
        vec![6, 3],
        vec![
            Layer::Lstm(Lstm {
                directions,
                return_sequence: false,
            }),
            Layer::Flatten(lrp_core::Flatten),
        ],
    )
    .unwrap()
}

#[test]
fn bidirectional_relevance_is_the_sum_of_two_forward_lstms() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let fwd = direction(&mut rng, 3, 4, false);
    let bwd = direction(&mut rng, 3, 4, true);
    let bi = lstm_net(vec![fwd.clone(), bwd.clone()]);
    let only_fwd = lstm_net(vec![fwd]);
    let bwd_as_fwd = lstm_net(vec![LstmDirection { reverse: false, ..bwd }]);
    let x = ArrayD::from_shape_fn(IxDyn(&[3, 6, 3]), |_| rng.random_range(-1.0f32..1.0));
    let mut reversed = x.clone();
    reversed.invert_axis(Axis(1));
    // Forward pass: [h_fwd | h_bwd] = [forward LSTM | forward LSTM on the reversed sequence].
    let y = bi.forward(x.view()).unwrap();
    assert_eq!(y.slice(s![.., ..4]).into_dyn(), only_fwd.forward(x.view()).unwrap());
    assert_eq!(
        y.slice(s![.., 4..]).into_dyn(),
        bwd_as_fwd.forward(reversed.view()).unwrap()
    );
    // Relevance for an output relevance [R1 | R2].
    let r1 = ArrayD::from_shape_fn(IxDyn(&[3, 4]), |_| rng.random_range(-1.0f32..1.0));
    let r2 = ArrayD::from_shape_fn(IxDyn(&[3, 4]), |_| rng.random_range(-1.0f32..1.0));
    let r = concatenate(Axis(1), &[r1.view(), r2.view()]).unwrap();
    let spec = Spec::parse("epsilon(0.001)").unwrap();
    let rel = |net: &Network, x: &ArrayD<f32>, r: &ArrayD<f32>| {
        Explainer::new(net, &spec)
            .unwrap()
            .explain_from(x.view(), r.view())
            .unwrap()
            .relevance
    };
    let mut from_bwd = rel(&bwd_as_fwd, &reversed, &r2);
    from_bwd.invert_axis(Axis(1));
    let expected = rel(&only_fwd, &x, &r1) + &from_bwd;
    let got = rel(&bi, &x, &r);
    let err = lrp_testkit::max_abs((&got - &expected).iter());
    assert!(err <= 1e-5, "{err}");
}

#[test]
fn an_lstm_takes_epsilon_only() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let net = Network::new(
        vec![6, 3],
        vec![
            Layer::Lstm(Lstm {
                directions: vec![direction(&mut rng, 3, 4, false)],
                return_sequence: false,
            }),
            Layer::Flatten(lrp_core::Flatten),
            Layer::Dense(Dense::new(Array2::ones((2, 4)), None)),
        ],
    )
    .unwrap();
    for spec in [
        "zplus",
        "deep-taylor",
        "lstm=gamma;dense=epsilon",
        "first=zbox(0,1);dense=epsilon",
    ] {
        let e = Plan::resolve(&Spec::parse(spec).unwrap(), &net)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("#0 (lstm) cannot take rule") && e.contains("epsilon only"),
            "{spec}: {e}"
        );
    }
    let e = Plan::resolve(&Spec::parse("dense=epsilon").unwrap(), &net)
        .unwrap_err()
        .to_string();
    assert!(e.contains("#0 (lstm, node n0) gets no rule"), "{e}");
    // The gradient baselines work through the LSTM too.
    let x = ArrayD::from_shape_fn(IxDyn(&[2, 6, 3]), |_| rng.random_range(-1.0f32..1.0));
    for spec in [
        "gradient",
        "gradient-x-input",
        "integrated-gradients(4)",
        "smoothgrad(3,0.1)",
        "epsilon",
    ] {
        let e = Explainer::new(&net, &Spec::parse(spec).unwrap())
            .unwrap()
            .explain(x.view(), &Target::Class(1))
            .unwrap();
        assert_eq!(e.relevance.shape(), &[2, 6, 3]);
    }
}
