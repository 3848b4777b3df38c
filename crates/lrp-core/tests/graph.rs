//! Graph networks: hand-computed forward passes, gradients of every graph node against central differences,
//! model files (version 2 for graphs, version 1 unchanged for chains), and construction errors.

use lrp_core::{Activation, Arith, ArithOp, BatchNorm, Dense, Layer, Model, ModelMeta, Network};
use ndarray::{Array1, Array2, ArrayD, ArrayViewD, IxDyn, array};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rand_array(rng: &mut ChaCha8Rng, shape: &[usize]) -> ArrayD<f32> {
    ArrayD::from_shape_fn(IxDyn(shape), |_| rng.random_range(-1.0f32..1.0))
}

fn dense(w: Array2<f32>) -> Layer {
    Layer::Dense(Dense::new(w, None))
}

/// input [2] → a = W1 x, b = W2 x, y = relu(a) + b, out = concat(y, a).
fn residual() -> Network {
    Network::graph(
        vec![2],
        vec![
            (dense(array![[1.0, 2.0], [3.0, -4.0]]), vec![0]),
            (dense(array![[-1.0, 0.0], [0.0, 1.0]]), vec![0]),
            (Layer::Relu(lrp_core::Relu), vec![1]),
            (Layer::Add(lrp_core::Add), vec![3, 2]),
            (Layer::concat(0), vec![4, 1]),
        ],
    )
    .unwrap()
}

#[test]
fn a_residual_graph_computes_by_hand() {
    let net = residual();
    assert!(!net.is_chain());
    assert_eq!(net.output_shape(), &[4]);
    let x = array![[1.0f32, 1.0]].into_dyn();
    // a = [3, -1], b = [-1, 1], relu(a) + b = [2, 1], concat with a.
    assert_eq!(
        net.forward(x.view()).unwrap().into_raw_vec_and_offset().0,
        vec![2.0, 1.0, 3.0, -1.0]
    );
    let t = net.forward_trace(x.view()).unwrap();
    assert_eq!(t.values.len(), 5);
    assert_eq!(t.value(5), &t.output);
    // d out[0] / dx: relu(a0) + b0 = (x0 + 2 x1) - x0 → [0, 2]; out[2] = a0 → [1, 2].
    let g = net
        .input_gradient(&t, array![[1.0f32, 0.0, 1.0, 0.0]].into_dyn())
        .unwrap();
    assert_eq!(g.into_raw_vec_and_offset().0, vec![1.0, 4.0]);
}

/// `Σ c ⊙ f(xs)` by central differences against `backward_many` for each input.
fn check_node(layer: Layer, in_shapes: &[&[usize]], seed: u64, keep_away_from_zero: bool) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let per: Vec<&[usize]> = in_shapes.iter().map(|s| &s[1..]).collect();
    let out_shape = layer.output_shape(0, &per).unwrap();
    let xs: Vec<ArrayD<f32>> = in_shapes
        .iter()
        .map(|s| {
            let mut a = rand_array(&mut rng, s);
            if keep_away_from_zero {
                a.mapv_inplace(|v| if v.abs() < 0.1 { v + 0.3 } else { v });
            }
            a
        })
        .collect();
    let mut full = vec![in_shapes[0][0]];
    full.extend(&out_shape);
    let c = rand_array(&mut rng, &full);
    let loss = |xs: &[ArrayD<f32>]| -> f64 {
        let views: Vec<ArrayViewD<f32>> = xs.iter().map(|x| x.view()).collect();
        let y = layer.forward(&views, &out_shape);
        assert_eq!(y.shape(), c.shape(), "{layer:?}");
        y.iter().zip(c.iter()).map(|(a, b)| *a as f64 * *b as f64).sum()
    };
    let views: Vec<ArrayViewD<f32>> = xs.iter().map(|x| x.view()).collect();
    let grads = layer.backward(&views, c.view());
    let h = 1e-3f32;
    for (k, x) in xs.iter().enumerate() {
        assert_eq!(grads[k].shape(), x.shape());
        for i in 0..x.len() {
            let mut p = xs.clone();
            let mut m = xs.clone();
            p[k].as_slice_mut().unwrap()[i] += h;
            m[k].as_slice_mut().unwrap()[i] -= h;
            let fd = (loss(&p) - loss(&m)) / (2.0 * h as f64);
            let an = grads[k].as_slice().unwrap()[i] as f64;
            assert!(
                (fd - an).abs() <= 2e-2 * (1.0 + an.abs()),
                "{layer:?} input {k}[{i}]: {fd} vs {an}"
            );
        }
    }
}

#[test]
fn every_graph_node_has_the_gradient_of_its_forward_pass() {
    let acts = [
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::LeakyRelu(0.1),
        Activation::Elu(1.0),
        Activation::Gelu,
        Activation::GeluTanh,
        Activation::Silu,
        Activation::Softplus,
        Activation::Clip(-0.5, 0.5),
        Activation::HardSigmoid(0.2, 0.5),
        Activation::HardSwish,
    ];
    for (i, a) in acts.into_iter().enumerate() {
        check_node(Layer::Activation(a), &[&[2, 3, 4]], i as u64, true);
    }
    let c = ArrayD::from_shape_vec(IxDyn(&[3, 1]), vec![0.5, -2.0, 1.5]).unwrap();
    for op in [ArithOp::Add, ArithOp::Sub, ArithOp::SubFrom, ArithOp::Mul, ArithOp::Div] {
        check_node(Layer::Arith(Arith { op, value: c.clone() }), &[&[2, 3, 4]], 20, false);
    }
    check_node(Layer::Add(lrp_core::Add), &[&[2, 3, 4], &[2, 3, 4]], 30, false);
    check_node(Layer::concat(1), &[&[2, 3, 4], &[2, 3, 2], &[2, 3, 1]], 31, false);
    check_node(Layer::pad(vec![[0, 0], [1, 2], [2, 0]]), &[&[2, 1, 3, 4]], 32, false);
    check_node(Layer::transpose(vec![2, 0, 1]), &[&[2, 3, 4, 5]], 33, false);
    check_node(Layer::slice(1, 1, 3), &[&[2, 3, 4]], 34, false);
}

#[test]
fn activations_match_their_definitions() {
    let erf_gelu = Activation::Gelu.apply(1.0);
    assert!((erf_gelu - 0.841_344_7).abs() < 1e-6, "{erf_gelu}");
    assert_eq!(Activation::LeakyRelu(0.01).apply(-2.0), -0.02);
    assert!((Activation::Elu(1.0).apply(-1.0) - (-0.632_120_6)).abs() < 1e-6);
    assert_eq!(Activation::Clip(0.0, 6.0).apply(7.0), 6.0);
    assert_eq!(Activation::HardSwish.apply(1.0), 1.0 * (1.0 / 6.0 + 0.5));
    assert!((Activation::Softplus.apply(100.0) - 100.0).abs() < 1e-4, "no overflow");
    // A saturated sigmoid keeps the precision of its derivative (1 − s would cancel in float32).
    let d = Activation::Sigmoid.derivative(12.0);
    assert!((d as f64 - 6.144_174e-6).abs() < 1e-10, "{d}");
    assert!(Activation::Clip(1.0, 0.0).validate().is_err());
    assert!(Activation::LeakyRelu(f32::NAN).validate().is_err());
}

#[test]
fn graph_model_files_round_trip_as_version_2_and_chains_stay_version_1() {
    let m = Model {
        meta: ModelMeta {
            description: "residual".into(),
            notes: vec![],
        },
        network: residual(),
    };
    let bytes = m.to_bytes().unwrap();
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 2);
    let back = Model::from_bytes(&bytes, std::path::Path::new("x.lrpm")).unwrap();
    assert_eq!(back, m);
    // Every truncation is refused, never a panic.
    for cut in 0..bytes.len() {
        assert!(Model::from_bytes(&bytes[..cut], std::path::Path::new("x.lrpm")).is_err());
    }
    // The shipped models are chains: they re-encode to the very bytes on disk.
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/models");
    for name in ["mnist-mlp.lrpm", "mnist-cnn.lrpm", "mnist-lstm.lrpm"] {
        let on_disk = std::fs::read(root.join(name)).unwrap();
        let model = Model::from_bytes(&on_disk, &root.join(name)).unwrap();
        assert!(model.network.is_chain());
        assert_eq!(model.to_bytes().unwrap(), on_disk, "{name}");
    }
}

#[test]
fn graph_construction_errors_name_the_node() {
    let err = Network::graph(vec![2], vec![(Layer::Relu(lrp_core::Relu), vec![1])])
        .unwrap_err()
        .to_string();
    assert!(err.contains("n0") && err.contains("not computed before it"), "{err}");
    // Node 0's output read by nothing.
    let err = Network::graph(
        vec![2],
        vec![
            (Layer::Relu(lrp_core::Relu), vec![0]),
            (Layer::Relu(lrp_core::Relu), vec![0]),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("node n0") && err.contains("read by nothing"), "{err}");
    let err = Network::graph(
        vec![2],
        vec![(dense(Array2::eye(2)), vec![0]), (Layer::Add(lrp_core::Add), vec![1])],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("add") && err.contains("needs 2"), "{err}");
    let err = Network::graph(
        vec![2],
        vec![
            (dense(Array2::zeros((3, 2))), vec![0]),
            (Layer::Add(lrp_core::Add), vec![1, 0]),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("different shapes"), "{err}");
    let err = Network::graph(vec![2], vec![(Layer::pad(vec![[usize::MAX, 1]]), vec![0])])
        .unwrap_err()
        .to_string();
    assert!(err.contains("too large"), "{err}");
}

#[test]
fn batch_norm_folds_into_a_branch_convolution_only_when_nothing_else_reads_it() {
    let bn = BatchNorm {
        scale: Array1::from(vec![2.0, 1.0]),
        shift: Array1::from(vec![0.5, 0.0]),
        mean: Array1::from(vec![1.0, 0.0]),
        var: Array1::from(vec![1.0, 4.0]),
        eps: 0.0,
    };
    let net = Network::graph(
        vec![2],
        vec![
            (dense(Array2::eye(2)), vec![0]),
            (dense(array![[1.0, 1.0], [0.0, 1.0]]), vec![0]),
            (Layer::BatchNorm(bn.clone()), vec![2]),
            (Layer::Add(lrp_core::Add), vec![1, 3]),
        ],
    )
    .unwrap();
    assert_eq!(net.layers().len(), 3, "folded");
    let y = net.forward(array![[1.0f32, 2.0]].into_dyn().view()).unwrap();
    // Branch 2: [3, 2] → bn → [2·(3−1)+0.5, (2−0)/2] = [4.5, 1]; plus [1, 2].
    assert_eq!(y.into_raw_vec_and_offset().0, vec![5.5, 3.0]);
    // Read by another node too: it cannot fold, and stays an affine map per channel, a layer with weights.
    let net = Network::graph(
        vec![2],
        vec![
            (dense(Array2::eye(2)), vec![0]),
            (Layer::BatchNorm(bn), vec![1]),
            (Layer::Add(lrp_core::Add), vec![1, 2]),
        ],
    )
    .unwrap();
    assert_eq!(net.layers().len(), 3, "not folded");
    assert_eq!(net.weighted_layers(), vec![0, 1]);
    let y = net.forward(array![[1.0f32, 2.0]].into_dyn().view()).unwrap();
    // bn([1, 2]) = [2·(1−1)/1 + 0.5, (2−0)/2] = [0.5, 1]; plus [1, 2].
    assert_eq!(y.into_raw_vec_and_offset().0, vec![1.5, 3.0]);
}

/// A batch norm whose fold overflows a finite weight to infinity (a huge scale over a tiny variance) is refused when
/// the network is built, naming the layer folded into; the same values that fold to finite weights build. Only the
/// layers folded into are scanned again after folding, so this is the check that catches it.
#[test]
fn a_batch_norm_that_folds_to_infinity_is_refused() {
    let bn = |scale: f32| BatchNorm {
        scale: Array1::from(vec![scale, 1.0]),
        shift: Array1::from(vec![0.0, 0.0]),
        mean: Array1::from(vec![0.0, 0.0]),
        var: Array1::from(vec![1e-30, 1.0]),
        eps: 0.0,
    };
    let build = |scale: f32| {
        Network::graph(
            vec![2],
            vec![
                (dense(Array2::eye(2)), vec![0]),
                (dense(array![[1.0, 1.0], [0.0, 3.0e20]]), vec![0]),
                (Layer::BatchNorm(bn(scale)), vec![2]),
                (Layer::Add(lrp_core::Add), vec![1, 3]),
            ],
        )
    };
    // 1e15 / sqrt(1e-30) = 1e30 times a weight of 1 stays finite (f32 max ≈ 3.4e38) …
    assert!(build(1e15).is_ok());
    // … 1e25 / 1e-15 = 1e40 does not.
    match build(1e25) {
        Err(lrp_core::CoreError::InvalidLayer { index, reason, .. }) => {
            assert_eq!(index, 1, "the dense layer folded into");
            assert!(reason.contains("non-finite weight or bias after folding"), "{reason}");
        }
        other => panic!("expected a refusal, got {:?}", other.map(|n| n.layers().len())),
    }
}

/// The definition, loop by loop: groups and dilation.
fn naive_grouped_conv(x: &ndarray::Array4<f32>, c: &lrp_core::Conv2d) -> ndarray::Array4<f32> {
    let (n, ch, h, w) = x.dim();
    let (o, cg, kh, kw) = c.weight.dim();
    let og = o / c.groups;
    let (oh, ow) = c.output_hw(h, w).unwrap();
    assert_eq!(cg * c.groups, ch);
    ndarray::Array4::from_shape_fn((n, o, oh, ow), |(ni, oi, y, xx)| {
        let g = oi / og;
        let mut acc = c.bias.as_ref().map_or(0.0, |b| b[oi]);
        for ci in 0..cg {
            for ky in 0..kh {
                for kx in 0..kw {
                    let iy = (y * c.window.stride[0] + ky * c.dilation[0]) as isize - c.window.pads[0] as isize;
                    let ix = (xx * c.window.stride[1] + kx * c.dilation[1]) as isize - c.window.pads[1] as isize;
                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                        acc += c.weight[[oi, ci, ky, kx]] * x[[ni, g * cg + ci, iy as usize, ix as usize]];
                    }
                }
            }
        }
        acc
    })
}

fn grouped(seed: u64, groups: usize, dilation: [usize; 2], stride: [usize; 2], pads: [usize; 4]) -> lrp_core::Conv2d {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let w = rand_array(&mut rng, &[6, 6 / groups, 3, 2])
        .into_dimensionality::<ndarray::Ix4>()
        .unwrap();
    let b = Array1::from_shape_fn(6, |i| i as f32 * 0.1 - 0.2);
    let mut c = lrp_core::Conv2d::new(w, Some(b), stride, pads);
    c.groups = groups;
    c.dilation = dilation;
    c
}

#[test]
fn grouped_and_dilated_convolutions_match_the_definition_and_their_gradients() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let cases = [
        (1, [1, 1], [1, 1], [0; 4]),
        (2, [2, 1], [1, 1], [1, 0, 2, 1]),
        (3, [1, 3], [2, 1], [2, 1, 0, 1]),
        (6, [2, 2], [1, 2], [1, 1, 1, 1]),
    ];
    for (k, &(groups, dilation, stride, pads)) in cases.iter().enumerate() {
        let c = grouped(k as u64, groups, dilation, stride, pads);
        let x = rand_array(&mut rng, &[3, 6, 9, 8])
            .into_dimensionality::<ndarray::Ix4>()
            .unwrap();
        let got = c.forward(x.view(), true);
        let want = naive_grouped_conv(&x, &c);
        for (a, b) in got.iter().zip(want.iter()) {
            assert!(
                (a - b).abs() <= 1e-5,
                "groups {groups} dilation {dilation:?}: {a} vs {b}"
            );
        }
        check_node(Layer::Conv2d(c.clone()), &[&[2, 6, 9, 8]], 40 + k as u64, false);
        // Weight gradient against central differences of Σ g ⊙ conv(x) (linear in W).
        let g = rand_array(&mut rng, got.shape())
            .into_dimensionality::<ndarray::Ix4>()
            .unwrap();
        let (gw, _) = c.param_grads(x.view(), g.view());
        for i in (0..c.weight.len()).step_by(7) {
            let mut p = c.clone();
            p.weight.as_slice_mut().unwrap()[i] += 1.0;
            let delta: f32 = (&p.forward(x.view(), true) - &got)
                .iter()
                .zip(g.iter())
                .map(|(d, g)| d * g)
                .sum();
            let an = gw.as_slice().unwrap()[i];
            assert!(
                (delta - an).abs() <= 1e-3 * (1.0 + an.abs()),
                "weight {i}: {delta} vs {an}"
            );
        }
    }
}

#[test]
fn grouped_convolutions_round_trip_through_graph_model_files() {
    let c = grouped(1, 3, [2, 1], [1, 1], [1, 1, 1, 1]);
    let net = Network::new(vec![6, 7, 7], vec![Layer::Conv2d(c), Layer::Flatten(lrp_core::Flatten)]).unwrap();
    let m = Model {
        meta: ModelMeta::default(),
        network: net,
    };
    let bytes = m.to_bytes().unwrap();
    assert_eq!(
        u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
        2,
        "a chain with a grouped convolution needs the graph format"
    );
    assert_eq!(Model::from_bytes(&bytes, std::path::Path::new("g.lrpm")).unwrap(), m);
    let err = Network::new(
        vec![5, 7, 7],
        vec![Layer::Conv2d(grouped(1, 3, [1, 1], [1, 1], [0; 4]))],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("input channels"), "{err}");
}

/// Layers that load but could not run (absurd sizes, overflowing products) are refused when the network is built,
/// for `.lrpm` and ONNX alike, before any allocation.
#[test]
fn absurd_windows_and_reshapes_are_refused_at_construction() {
    use lrp_core::{Pool2d, Window};
    let pool = |kernel: usize, stride: usize, pad: usize| Pool2d {
        window: Window {
            kernel: [kernel; 2],
            stride: [stride; 2],
            pads: [pad; 4],
        },
        count_include_pad: true,
    };
    for layer in [
        Layer::MaxPool2d(pool(1_000_000_000_000, 1, 999_999_999_999)),
        Layer::AvgPool2d(pool(1_000_000, 1_000_000, 999_999)),
        Layer::AvgPool2d(pool(usize::MAX, 1, usize::MAX - 1)),
        Layer::reshape(vec![4_611_686_018_427_388_100, 4]),
        Layer::reshape(vec![usize::MAX, usize::MAX]),
    ] {
        let err = Network::new(vec![1, 2, 2], vec![layer.clone()]);
        assert!(err.is_err(), "{layer:?} must be refused");
    }
    // A legitimate global pool over a large map is still fine.
    assert!(Network::new(vec![1, 512, 512], vec![Layer::AvgPool2d(pool(512, 1, 0))]).is_ok());
}

#[test]
fn values_too_large_per_sample_are_refused_at_construction() {
    // Zero padding of 5,000 on each side of a 1×1 map: 10,001² values per sample, each axis well within bounds.
    let pad = Layer::pad(vec![[0, 0], [5_000, 5_000], [5_000, 5_000]]);
    let err = Network::new(vec![1, 1, 1], vec![pad]).unwrap_err().to_string();
    assert!(err.contains("values per sample"), "{err}");
    let err = Network::new(vec![1 << 14, 1 << 13], vec![Layer::Relu(lrp_core::Relu)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("too large"), "{err}");
}
