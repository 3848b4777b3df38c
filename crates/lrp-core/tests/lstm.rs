//! The LSTM layer: a hand-computed sequence, BPTT against finite differences, bidirectional = forward on the
//! reversed sequence, and an LSTM network that trains.

use lrp_core::{Dense, Layer, Lstm, LstmDirection, Network};
use ndarray::{Array1, Array2, Array3, ArrayD, IxDyn, array, s};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn direction(rng: &mut ChaCha8Rng, f: usize, h: usize, reverse: bool) -> LstmDirection {
    let mut m = |r: usize, c: usize| Array2::from_shape_fn((r, c), |_| rng.random_range(-0.8f32..0.8));
    LstmDirection {
        w: m(4 * h, f),
        r: m(4 * h, h),
        b: m(4 * h, 1).column(0).to_owned(),
        reverse,
    }
}

#[test]
fn forward_matches_a_hand_computed_sequence() {
    // H = F = 1; gates i, f, g, o. Step 1 (x = 0.5, h = c = 0): a = [0.5, 1, 1, 0]: i = σ(0.5), g = tanh(1),
    // o = σ(0) = 0.5, c = i·g = 0.474061, h = o·tanh(c) = 0.220737. Step 2 (x = −1) uses r·h and f·c.
    let d = LstmDirection {
        w: array![[1.0], [0.0], [2.0], [-1.0]],
        r: array![[0.5], [-0.5], [1.0], [0.0]],
        b: array![0.0, 1.0, 0.0, 0.5],
        reverse: false,
    };
    let lstm = Lstm {
        directions: vec![d],
        return_sequence: true,
    };
    let x = Array3::from_shape_vec((1, 2, 1), vec![0.5f32, -1.0]).unwrap();
    let states = lstm.states(x.view());
    assert!((states[0].c[0][[0, 0]] - 0.474_061_4).abs() < 1e-6);
    assert!((states[0].h[0][[0, 0]] - 0.220_737_5).abs() < 1e-6);
    assert!((states[0].c[1][[0, 0]] - 0.060_962_56).abs() < 1e-6);
    assert!((states[0].h[1][[0, 0]] - 0.049_779_78).abs() < 1e-6);
    let y = lstm.forward(x.view());
    assert_eq!(y.shape(), &[1, 2, 1, 1]);
    assert!((y[[0, 1, 0, 0]] - 0.049_779_78).abs() < 1e-6);
}

#[test]
fn bptt_matches_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (bidirectional, seq) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut dirs = vec![direction(&mut rng, 3, 2, false)];
        if bidirectional {
            dirs.push(direction(&mut rng, 3, 2, true));
        }
        let layer = Layer::Lstm(Lstm {
            directions: dirs,
            return_sequence: seq,
        });
        let net = Network::new(vec![4, 3], vec![layer.clone()]).unwrap();
        let out_shape: Vec<usize> = std::iter::once(2).chain(net.output_shape().iter().copied()).collect();
        let x = ArrayD::from_shape_fn(IxDyn(&[2, 4, 3]), |_| rng.random_range(-1.0f32..1.0));
        let c = ArrayD::from_shape_fn(IxDyn(&out_shape), |_| rng.random_range(-1.0f32..1.0));
        let loss = |l: &Layer, x: &ArrayD<f32>| -> f64 {
            l.forward(&[x.view()], net.output_shape())
                .iter()
                .zip(c.iter())
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum()
        };
        let (gx, pg) = layer.backward_with_params(x.view(), c.view());
        let pg = pg.unwrap();
        let h = 1e-2f32;
        for i in 0..x.len() {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp.as_slice_mut().unwrap()[i] += h;
            xm.as_slice_mut().unwrap()[i] -= h;
            let fd = (loss(&layer, &xp) - loss(&layer, &xm)) / (2.0 * h as f64);
            let an = gx.as_slice().unwrap()[i] as f64;
            assert!((fd - an).abs() <= 2e-3 * (1.0 + fd.abs()), "input {i}: {an} vs {fd}");
        }
        for (t, g) in pg.iter().enumerate() {
            for i in 0..g.len() {
                let perturb = |delta: f32| {
                    let mut l = layer.clone();
                    l.params_mut()[t].as_slice_mut().unwrap()[i] += delta;
                    loss(&l, &x)
                };
                let fd = (perturb(h) - perturb(-h)) / (2.0 * h as f64);
                let an = g.as_slice().unwrap()[i] as f64;
                assert!(
                    (fd - an).abs() <= 2e-3 * (1.0 + fd.abs()),
                    "bidir {bidirectional} seq {seq} param {t}[{i}]: {an} vs {fd}"
                );
            }
        }
    }
}

#[test]
fn bidirectional_equals_a_forward_lstm_on_the_reversed_sequence() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let fwd = direction(&mut rng, 3, 4, false);
    let bwd = direction(&mut rng, 3, 4, true);
    let bi = Lstm {
        directions: vec![fwd.clone(), bwd.clone()],
        return_sequence: false,
    };
    let x = Array3::from_shape_fn((2, 5, 3), |_| rng.random_range(-1.0f32..1.0));
    let y = bi.forward(x.view());
    let only_fwd = Lstm {
        directions: vec![fwd],
        return_sequence: false,
    }
    .forward(x.view());
    let mut reversed = x.clone();
    reversed.invert_axis(ndarray::Axis(1));
    let as_forward = Lstm {
        directions: vec![LstmDirection { reverse: false, ..bwd }],
        return_sequence: false,
    };
    let on_reversed = as_forward.forward(reversed.view());
    assert_eq!(y.slice(s![.., 0, ..]), only_fwd.slice(s![.., 0, ..]));
    assert_eq!(y.slice(s![.., 1, ..]), on_reversed.slice(s![.., 0, ..]));
}

#[test]
fn an_lstm_network_is_validated_and_trains() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let d = direction(&mut rng, 3, 4, false);
    let mut bad = d.clone();
    bad.r = Array2::zeros((16, 3));
    let err = Network::new(
        vec![5, 3],
        vec![Layer::Lstm(Lstm {
            directions: vec![bad],
            return_sequence: false,
        })],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("recurrent weights are [16, 3], expected [16, 4]"), "{err}");
    let err = Network::new(
        vec![15],
        vec![Layer::Lstm(Lstm {
            directions: vec![d.clone()],
            return_sequence: false,
        })],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("[time, features]"), "{err}");
    // Label = whether the sum of the first feature over time is positive: learnable by an LSTM.
    let mut net = Network::new(
        vec![5, 3],
        vec![
            Layer::Lstm(Lstm {
                directions: vec![d],
                return_sequence: false,
            }),
            Layer::Flatten(lrp_core::Flatten),
            Layer::Dense(Dense::new(
                Array2::from_shape_fn((2, 4), |_| rng.random_range(-0.5f32..0.5)),
                Some(Array1::zeros(2)),
            )),
        ],
    )
    .unwrap();
    let x = ArrayD::from_shape_fn(IxDyn(&[256, 5, 3]), |_| rng.random_range(-1.0f32..1.0));
    let labels: Vec<u8> = (0..256).map(|n| u8::from(x.slice(s![n, .., 0]).sum() > 0.0)).collect();
    let cfg = lrp_core::train::TrainConfig {
        epochs: 30,
        batch_size: 32,
        optimizer: lrp_core::train::Optimizer::adam(1e-2),
        lr_decay: 1.0,
        seed: 1,
        augment_shift: 0,
        warmup_steps: 0,
    };
    let before = lrp_core::train::accuracy(&net, x.view(), &labels).unwrap();
    lrp_core::train::train(&mut net, x.view(), &labels, &cfg, |_| {}).unwrap();
    let after = lrp_core::train::accuracy(&net, x.view(), &labels).unwrap();
    assert!(after > 0.9 && after > before, "accuracy {before} → {after}");
}
