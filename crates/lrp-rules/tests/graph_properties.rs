//! Property tests on random small graphs (chains, fan-out, residual adds, concatenations).

use lrp_core::{Dense, Layer, Network};
use lrp_rules::{Explainer, Spec, Target};
use ndarray::{Array1, Array2, ArrayD, IxDyn};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const WIDTH: usize = 4;

/// A random graph over values of width 4 built from `seed`: dense layers, ReLUs, adds of two earlier values,
/// concatenations (followed by a dense layer back to width 4). Values nothing reads are added into the last one,
/// and a dense layer maps it to 3 outputs.
fn random_graph(seed: u64, with_bias: bool) -> Network {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dense = |rng: &mut ChaCha8Rng, outs: usize, ins: usize| {
        let w = Array2::from_shape_fn((outs, ins), |_| rng.random_range(-1.0f32..1.0));
        let b = with_bias.then(|| Array1::from_shape_fn(outs, |_| rng.random_range(-1.0f32..1.0)));
        Layer::Dense(Dense::new(w, b))
    };
    let mut nodes: Vec<(Layer, Vec<usize>)> = Vec::new();
    // Values of width 4 (value 0 is the input).
    let mut values = vec![0usize];
    let mut read = vec![false];
    let steps = rng.random_range(2..9);
    for _ in 0..steps {
        let pick = |rng: &mut ChaCha8Rng, values: &[usize]| values[rng.random_range(0..values.len())];
        let kind = rng.random_range(0..4);
        let (layer, ins) = match kind {
            0 => (dense(&mut rng, WIDTH, WIDTH), vec![pick(&mut rng, &values)]),
            1 => (Layer::Relu(lrp_core::Relu), vec![pick(&mut rng, &values)]),
            2 => (
                Layer::Add(lrp_core::Add),
                vec![pick(&mut rng, &values), pick(&mut rng, &values)],
            ),
            _ => {
                let ins = vec![pick(&mut rng, &values), pick(&mut rng, &values)];
                for &v in &ins {
                    read[v] = true;
                }
                nodes.push((Layer::concat(0), ins));
                read.push(false);
                let concat = nodes.len();
                (dense(&mut rng, WIDTH, 2 * WIDTH), vec![concat])
            }
        };
        for &v in &ins {
            read[v] = true;
        }
        nodes.push((layer, ins));
        read.push(false);
        values.push(nodes.len());
    }
    let mut last = nodes.len();
    for &v in &values {
        if !read[v] && v != last && v != 0 {
            nodes.push((Layer::Add(lrp_core::Add), vec![last, v]));
            read.push(false);
            last = nodes.len();
        }
    }
    nodes.push((dense(&mut rng, 3, WIDTH), vec![last]));
    Network::graph(vec![WIDTH], nodes).expect("a valid random graph")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    /// With epsilon and zero biases, relevance is conserved through fan-out, residual adds and concatenations:
    /// the input relevance sums to the explained logit.
    #[test]
    fn epsilon_without_bias_conserves_relevance_through_graphs(
        seed in any::<u64>(),
        x in prop::collection::vec(-1.0f32..1.0, 2 * WIDTH),
        t in 0usize..3,
    ) {
        let net = random_graph(seed, false);
        let x = ArrayD::from_shape_vec(IxDyn(&[2, WIDTH]), x).unwrap();
        let e = Explainer::new(&net, &Spec::parse("epsilon(1e-9)").unwrap())
            .unwrap()
            .explain(x.view(), &Target::Class(t))
            .unwrap();
        let logits = e.explained_logits();
        for (n, l) in logits.iter().enumerate() {
            let s: f32 = e.relevance.index_axis(ndarray::Axis(0), n).sum();
            // Relevance at the input equals the logit, up to rounding of the shares (large when shares cancel).
            let scale: f32 = e.relevance.index_axis(ndarray::Axis(0), n).iter().map(|v| v.abs()).sum::<f32>();
            prop_assert!((s - l).abs() <= 1e-3 * (1.0 + l.abs() + scale), "sample {n}: input sum {s} vs logit {l}");
        }
    }

    /// Gradient × input of a graph equals its definition by central differences.
    #[test]
    fn graph_gradients_match_finite_differences(seed in any::<u64>(), x in prop::collection::vec(-1.0f32..1.0, WIDTH)) {
        let net = random_graph(seed, true);
        let x = ArrayD::from_shape_vec(IxDyn(&[1, WIDTH]), x).unwrap();
        let e = Explainer::new(&net, &Spec::parse("gradient").unwrap())
            .unwrap()
            .explain(x.view(), &Target::Class(0))
            .unwrap();
        let f = |x: &ArrayD<f32>| -> f64 {
            let y = net.forward(x.view()).unwrap();
            y[[0, 0]] as f64
        };
        let h = 1e-2f32;
        for i in 0..WIDTH {
            let mut p = x.clone();
            let mut m = x.clone();
            p[[0, i]] += h;
            m[[0, i]] -= h;
            let fd = (f(&p) - f(&m)) / (2.0 * h as f64);
            let an = e.relevance[[0, i]] as f64;
            // A ReLU kink within h of the input makes the difference quotient meaningless; skip those.
            let crosses = net.forward_trace(p.view()).unwrap().values.iter().zip(net.forward_trace(m.view()).unwrap().values.iter())
                .any(|(a, b)| a.iter().zip(b.iter()).any(|(u, v)| (*u > 0.0) != (*v > 0.0)));
            if !crosses {
                prop_assert!((fd - an).abs() <= 1e-2 * (1.0 + an.abs()), "input {i}: {fd} vs {an}");
            }
        }
    }
}

/// Input normalization `(x − 0.5) / 0.25` in front of the first layer: `first` finds the dense layer behind it,
/// and `zbox(0, 1)` (in the units of the input) acts there as `zbox(−2, 2)`.
#[test]
fn zbox_bounds_are_mapped_through_input_normalization() {
    use lrp_core::{Arith, ArithOp};
    let w1 = Array2::from_shape_fn((5, 4), |(i, j)| ((i * 4 + j) as f32 * 0.37).sin());
    let w2 = Array2::from_shape_fn((3, 5), |(i, j)| ((i * 5 + j) as f32 * 0.91).cos());
    let layers = || {
        vec![
            Layer::Dense(Dense::new(
                w1.clone(),
                Some(Array1::from(vec![0.1, -0.2, 0.3, 0.0, 0.05])),
            )),
            Layer::Relu(lrp_core::Relu),
            Layer::Dense(Dense::new(w2.clone(), None)),
        ]
    };
    let mut with_norm = vec![
        Layer::Arith(Arith {
            op: ArithOp::Sub,
            value: ArrayD::from_elem(IxDyn(&[]), 0.5),
        }),
        Layer::Arith(Arith {
            op: ArithOp::Div,
            value: ArrayD::from_elem(IxDyn(&[1]), 0.25),
        }),
    ];
    with_norm.extend(layers());
    let a = Network::new(vec![4], with_norm).unwrap();
    let b = Network::new(vec![4], layers()).unwrap();
    assert_eq!(lrp_rules::first_layers(&a), vec![2]);
    let x = ArrayD::from_shape_vec(IxDyn(&[2, 4]), vec![0.1, 0.9, 0.45, 0.0, 1.0, 0.3, 0.6, 0.2]).unwrap();
    let xn = x.mapv(|v| (v - 0.5) / 0.25);
    let ra = Explainer::new(&a, &Spec::parse("all=epsilon;first=zbox(0,1)").unwrap())
        .unwrap()
        .explain(x.view(), &Target::Class(1))
        .unwrap()
        .relevance;
    let rb = Explainer::new(&b, &Spec::parse("all=epsilon;first=zbox(-2,2)").unwrap())
        .unwrap()
        .explain(xn.view(), &Target::Class(1))
        .unwrap()
        .relevance;
    // The subtracted mean is a bias: R_x = x ⊙ R / stab(x − 0.5); the division passes relevance unchanged.
    let expected = ndarray::Zip::from(&x).and(&rb).map_collect(|&x, &r| {
        let z = x - 0.5;
        x * r / if z >= 0.0 { z + 1e-6 } else { z - 1e-6 }
    });
    let scale = expected.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    for (g, e) in ra.iter().zip(expected.iter()) {
        assert!((g - e).abs() <= 1e-4 * scale, "{g} vs {e}");
    }
}

/// A product of two computed values, `y = a ⊙ b` with `a = A·x` and `b = B·x` (no biases), checked against the
/// two rules of LRP-RULES.md computed by hand: when `b` comes out of a sigmoid it is a gate and the signal takes
/// all (`R_a = R_y`, nothing for the gate branch); otherwise each factor gets half (`R_a = R_b = R_y / 2`).
/// Each half (or the whole) then goes through its dense layer by LRP-0: `R_x = x ⊙ Wᵀ(R / (W·x))`.
#[test]
fn products_of_two_computed_values_take_the_gate_and_uniform_rules() {
    use lrp_core::Activation;
    let a_w = Array2::from_shape_vec((2, 3), vec![1.0f32, -0.5, 0.25, 0.5, 0.75, -1.0]).unwrap();
    let b_w = Array2::from_shape_vec((2, 3), vec![-0.25f32, 1.0, 0.5, 1.5, -0.5, 0.25]).unwrap();
    let x = [0.8f64, -0.3, 0.6];
    let matvec =
        |w: &Array2<f32>, x: &[f64; 3]| -> [f64; 2] { [0, 1].map(|i| (0..3).map(|j| w[[i, j]] as f64 * x[j]).sum()) };
    // LRP-0 through a dense layer with relevance `r` at its output.
    let lrp0 = |w: &Array2<f32>, r: [f64; 2]| -> [f64; 3] {
        let z = matvec(w, &x);
        [0, 1, 2].map(|j| x[j] * (0..2).map(|i| w[[i, j]] as f64 * r[i] / z[i]).sum::<f64>())
    };
    let a = matvec(&a_w, &x);
    let b = matvec(&b_w, &x);
    let input = ArrayD::from_shape_vec(IxDyn(&[1, 3]), x.iter().map(|&v| v as f32).collect()).unwrap();
    let dense = |w: &Array2<f32>| Layer::Dense(Dense::new(w.clone(), None));
    for gated in [false, true] {
        let mut nodes = vec![(dense(&a_w), vec![0]), (dense(&b_w), vec![0])];
        let factor = if gated {
            nodes.push((Layer::Activation(Activation::Sigmoid), vec![2]));
            3
        } else {
            2
        };
        nodes.push((Layer::Mul(lrp_core::Mul), vec![1, factor]));
        let net = Network::graph(vec![3], nodes).unwrap();
        let e = Explainer::new(&net, &Spec::parse("epsilon(0)").unwrap())
            .unwrap()
            .explain(input.view(), &Target::Class(1))
            .unwrap();
        let g = |v: f64| if gated { 1.0 / (1.0 + (-v).exp()) } else { v };
        let y = a[1] * g(b[1]);
        let expected: Vec<f64> = if gated {
            lrp0(&a_w, [0.0, y]).to_vec()
        } else {
            let ra = lrp0(&a_w, [0.0, y / 2.0]);
            let rb = lrp0(&b_w, [0.0, y / 2.0]);
            (0..3).map(|j| ra[j] + rb[j]).collect()
        };
        for (j, want) in expected.iter().enumerate() {
            let got = e.relevance[[0, j]] as f64;
            assert!(
                (got - want).abs() <= 1e-5 * want.abs().max(1e-3),
                "gated {gated}, input {j}: {got} vs {want}"
            );
        }
        // LRP-0 without biases conserves: the hand computation itself must sum to y.
        let total: f64 = expected.iter().sum();
        assert!(
            (total - y).abs() < 1e-9,
            "the hand computation conserves y: {total} vs {y}"
        );
    }
}

/// ε through a residual join on one photo-sized sample (4 × 256 × 256 values, the size at which lrp-core splits its
/// passes over the threads): `x → conv 1×1 → + x → flatten → dense(2)`, against the rules written out in f64 —
/// dense ε, the sum's proportional split `s = R / stab(z)` to `s ⊙ x` and `s ⊙ conv(x)`, conv ε, and the two parts
/// reaching `x` added. On pools of 1, 2 and 3 threads, the same bits each time.
#[test]
fn epsilon_through_a_residual_join_on_a_photo_sized_sample_matches_the_rules_by_hand() {
    let (c, h, w) = (4usize, 256usize, 256usize);
    let plane = h * w;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let wc = ndarray::Array4::from_shape_fn((c, c, 1, 1), |_| rng.random_range(-1.0f32..1.0));
    let bc = Array1::from_shape_fn(c, |_| rng.random_range(-0.5f32..0.5));
    let wd = Array2::from_shape_fn((2, c * plane), |_| rng.random_range(-0.01f32..0.01));
    let x = ArrayD::from_shape_fn(IxDyn(&[1, c, h, w]), |_| rng.random_range(-1.0f32..1.0));
    let conv = lrp_core::Conv2d::new(wc.clone(), Some(bc.clone()), [1, 1], [0; 4]);
    let net = Network::graph(
        vec![c, h, w],
        vec![
            (Layer::Conv2d(conv), vec![0]),
            (Layer::Add(lrp_core::Add), vec![1, 0]),
            (Layer::Flatten(lrp_core::Flatten), vec![2]),
            (Layer::Dense(Dense::new(wd.clone(), None)), vec![3]),
        ],
    )
    .unwrap();
    let e = 0.25f64;
    let stab = |z: f64, e: f64| if z >= 0.0 { z + e } else { z - e };
    // Forward in f64.
    let xs: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let mut y = vec![0f64; c * plane];
    for o in 0..c {
        for p in 0..plane {
            y[o * plane + p] = bc[o] as f64 + (0..c).map(|i| wc[[o, i, 0, 0]] as f64 * xs[i * plane + p]).sum::<f64>();
        }
    }
    let sum: Vec<f64> = y.iter().zip(&xs).map(|(a, b)| a + b).collect();
    let logits: Vec<f64> = (0..2)
        .map(|k| (0..c * plane).map(|j| wd[[k, j]] as f64 * sum[j]).sum())
        .collect();
    let t = if logits[1] > logits[0] { 1 } else { 0 };
    // Backward: dense ε (the sum's relevance), the join's split (its stabiliser is the library's), conv ε.
    let s_out = logits[t] / stab(logits[t], e);
    let r_sum: Vec<f64> = (0..c * plane).map(|j| sum[j] * wd[[t, j]] as f64 * s_out).collect();
    let s_join: Vec<f64> = (0..c * plane)
        .map(|j| r_sum[j] / stab(sum[j], lrp_rules::STABILIZER as f64))
        .collect();
    let mut r_x: Vec<f64> = (0..c * plane).map(|j| s_join[j] * xs[j]).collect();
    let s_conv: Vec<f64> = (0..c * plane).map(|j| s_join[j] * y[j] / stab(y[j], e)).collect();
    for i in 0..c {
        for p in 0..plane {
            let back: f64 = (0..c).map(|o| wc[[o, i, 0, 0]] as f64 * s_conv[o * plane + p]).sum();
            r_x[i * plane + p] += xs[i * plane + p] * back;
        }
    }
    let scale = r_x.iter().fold(0f64, |m, v| m.max(v.abs()));
    let spec = Spec::parse("all=epsilon(0.25)").unwrap();
    let ex = Explainer::new(&net, &spec).unwrap();
    let mut first: Option<Vec<u32>> = None;
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let got = pool.install(|| ex.explain(x.view(), &Target::Predicted)).unwrap();
        assert_eq!(got.targets, vec![t]);
        let worst = got
            .relevance
            .iter()
            .zip(&r_x)
            .map(|(g, r)| (*g as f64 - r).abs())
            .fold(0f64, |m, d| if d.is_nan() || m.is_nan() { f64::NAN } else { m.max(d) });
        // NaN fails the comparison.
        assert!(
            worst <= 1e-4 * scale,
            "{threads} threads: worst {worst}, relevance up to {scale}"
        );
        let bits: Vec<u32> = got.relevance.iter().map(|v| v.to_bits()).collect();
        match &first {
            None => first = Some(bits),
            Some(b) => assert!(b == &bits, "{threads} threads: not the one-thread bits"),
        }
    }
}
