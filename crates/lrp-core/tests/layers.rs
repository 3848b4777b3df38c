//! Layer forward passes against hand-computed cases and naive loops; backward passes against finite differences.

use approx::assert_abs_diff_eq;
use lrp_core::{BatchNorm, Conv2d, Dense, Layer, Network, Pool2d, Window};
use ndarray::{Array1, Array2, Array4, ArrayD, IxDyn, array};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rand_array(rng: &mut ChaCha8Rng, shape: &[usize]) -> ArrayD<f32> {
    ArrayD::from_shape_fn(IxDyn(shape), |_| rng.random_range(-1.0f32..1.0))
}

/// Naive convolution: the definition, loop by loop.
fn naive_conv(
    x: &Array4<f32>,
    w: &Array4<f32>,
    b: Option<&Array1<f32>>,
    stride: [usize; 2],
    pads: [usize; 4],
) -> Array4<f32> {
    let (n, c, h, wd) = x.dim();
    let (o, _, kh, kw) = w.dim();
    let oh = (h + pads[0] + pads[2] - kh) / stride[0] + 1;
    let ow = (wd + pads[1] + pads[3] - kw) / stride[1] + 1;
    Array4::from_shape_fn((n, o, oh, ow), |(ni, oi, y, xx)| {
        let mut acc = b.map_or(0.0, |b| b[oi]);
        for ci in 0..c {
            for ky in 0..kh {
                for kx in 0..kw {
                    let iy = (y * stride[0] + ky) as isize - pads[0] as isize;
                    let ix = (xx * stride[1] + kx) as isize - pads[1] as isize;
                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                        acc += w[[oi, ci, ky, kx]] * x[[ni, ci, iy as usize, ix as usize]];
                    }
                }
            }
        }
        acc
    })
}

/// Naive pooling; `avg` with `count_include_pad` or not, else max.
fn naive_pool(x: &Array4<f32>, win: Window, avg: Option<bool>) -> Array4<f32> {
    let (n, c, h, w) = x.dim();
    let oh = (h + win.pads[0] + win.pads[2] - win.kernel[0]) / win.stride[0] + 1;
    let ow = (w + win.pads[1] + win.pads[3] - win.kernel[1]) / win.stride[1] + 1;
    Array4::from_shape_fn((n, c, oh, ow), |(ni, ci, y, xx)| {
        let mut vals = Vec::new();
        for ky in 0..win.kernel[0] {
            for kx in 0..win.kernel[1] {
                let iy = (y * win.stride[0] + ky) as isize - win.pads[0] as isize;
                let ix = (xx * win.stride[1] + kx) as isize - win.pads[1] as isize;
                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                    vals.push(x[[ni, ci, iy as usize, ix as usize]]);
                }
            }
        }
        match avg {
            None => vals.iter().cloned().fold(f32::NEG_INFINITY, f32::max),
            Some(true) => vals.iter().sum::<f32>() / (win.kernel[0] * win.kernel[1]) as f32,
            Some(false) => vals.iter().sum::<f32>() / vals.len() as f32,
        }
    })
}

#[test]
fn dense_forward_hand_computed() {
    let d = Dense::new(
        array![[1.0, 2.0], [-1.0, 0.5], [0.0, 3.0]],
        Some(array![0.5, 0.0, -1.0]),
    );
    let z = d.forward(array![[1.0, -2.0], [0.0, 1.0]].view(), true);
    // [1·1 + 2·(−2) + 0.5, −1·1 + 0.5·(−2), 3·(−2) − 1], [2 + 0.5, 0.5, 3 − 1]
    assert_eq!(z, array![[-2.5, -2.0, -7.0], [2.5, 0.5, 2.0]]);
    assert_eq!(d.transpose(array![[1.0, 0.0, 1.0]].view()), array![[1.0, 5.0]]);
}

#[test]
fn conv_forward_hand_computed() {
    // One 2×2 kernel over a 3×3 image, stride 1, no padding.
    let w = Array4::from_shape_vec((1, 1, 2, 2), vec![1.0, 0.0, 0.0, -1.0]).unwrap();
    let c = Conv2d::new(w, Some(array![1.0]), [1, 1], [0; 4]);
    let x = Array4::from_shape_vec((1, 1, 3, 3), (1..=9).map(|v| v as f32).collect()).unwrap();
    let z = c.forward(x.view(), true);
    // x[i,j] − x[i+1,j+1] = −4 everywhere, plus bias 1.
    assert_eq!(z.into_raw_vec_and_offset().0, vec![-3.0; 4]);
}

#[test]
fn pool_forward_hand_computed() {
    let x = Array4::from_shape_vec((1, 1, 2, 4), vec![1.0, 5.0, -2.0, -3.0, 2.0, 0.0, -1.0, -4.0]).unwrap();
    let p = Pool2d::square(2, 2);
    assert_eq!(p.max_forward(x.view()).into_raw_vec_and_offset().0, vec![5.0, -1.0]);
    assert_eq!(p.avg_forward(x.view()).into_raw_vec_and_offset().0, vec![2.0, -2.5]);
}

#[test]
fn relu_flatten_reshape_dropout_forward_hand_computed() {
    let x = ArrayD::from_shape_vec(IxDyn(&[1, 2, 1, 2]), vec![-1.0f32, 2.0, 0.0, -0.5]).unwrap();
    assert_eq!(
        Layer::Relu(lrp_core::Relu)
            .forward(&[x.view()], &[2, 1, 2])
            .into_raw_vec_and_offset()
            .0,
        vec![0.0, 2.0, 0.0, 0.0]
    );
    let flat = Layer::Flatten(lrp_core::Flatten).forward(&[x.view()], &[4]);
    assert_eq!(flat.shape(), &[1, 4]);
    assert_eq!(flat.into_raw_vec_and_offset().0, vec![-1.0, 2.0, 0.0, -0.5]);
    let r = Layer::reshape(vec![2, 2]).forward(&[x.view()], &[2, 2]);
    assert_eq!(r.shape(), &[1, 2, 2]);
    assert_eq!(r[[0, 1, 1]], -0.5);
    assert_eq!(
        Layer::dropout(0.5).forward(&[x.view()], &[2, 1, 2]),
        x,
        "dropout is the identity at inference"
    );
}

#[test]
fn conv_matches_naive_loop_over_geometries() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    type Case = (usize, usize, usize, usize, usize, [usize; 2], [usize; 4], bool);
    let cases: &[Case] = &[
        // n, c, h, w, o, stride, pads, bias
        (2, 1, 7, 7, 3, [1, 1], [0, 0, 0, 0], true),
        (3, 3, 8, 6, 4, [2, 1], [1, 0, 2, 1], true),
        (1, 2, 9, 9, 2, [3, 3], [2, 2, 2, 2], false),
        (5, 4, 5, 5, 6, [1, 2], [1, 1, 1, 1], true),
    ];
    for &(n, c, h, w, o, stride, pads, bias) in cases {
        for k in [1usize, 3] {
            let wt = rand_array(&mut rng, &[o, c, k, k]).into_dimensionality().unwrap();
            let b: Option<Array1<f32>> = bias.then(|| rand_array(&mut rng, &[o]).into_dimensionality().unwrap());
            let x: Array4<f32> = rand_array(&mut rng, &[n, c, h, w]).into_dimensionality().unwrap();
            let pads = pads.map(|p| p.min(k - 1));
            let conv = Conv2d::new(wt.clone(), b.clone(), stride, pads);
            let fast = conv.forward(x.view(), true);
            let slow = naive_conv(&x, &wt, b.as_ref(), stride, pads);
            assert_eq!(fast.dim(), slow.dim());
            assert_abs_diff_eq!(fast, slow, epsilon = 1e-5);
        }
    }
}

#[test]
fn pools_match_naive_loop() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let x: Array4<f32> = rand_array(&mut rng, &[2, 3, 7, 6]).into_dimensionality().unwrap();
    for win in [
        Window::square(2, 2, 0),
        Window::square(3, 1, 1),
        Window {
            kernel: [3, 2],
            stride: [2, 1],
            pads: [1, 0, 2, 1],
        },
    ] {
        for include in [false, true] {
            let p = Pool2d {
                window: win,
                count_include_pad: include,
            };
            assert_abs_diff_eq!(
                p.avg_forward(x.view()),
                naive_pool(&x, win, Some(include)),
                epsilon = 1e-6
            );
            assert_eq!(p.max_forward(x.view()), naive_pool(&x, win, None));
        }
    }
}

/// Checks `layer.backward` and `layer.param_grads` against central differences of `L = Σ c ⊙ layer(x)`.
fn check_gradients(mut layer: Layer, in_shape: &[usize], seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let net = Network::new(in_shape[1..].to_vec(), vec![layer.clone()]).unwrap();
    let out_shape = net.output_shape().to_vec();
    // Distinct values 0.05 apart and none near zero, so ±h never crosses a kink of ReLU or a max.
    let count: usize = in_shape.iter().product();
    let mut vals: Vec<f32> = (0..count)
        .map(|i| (i as f32 - (count / 2) as f32) * 0.05 + 0.025)
        .collect();
    use rand::seq::SliceRandom;
    vals.shuffle(&mut rng);
    let x = ArrayD::from_shape_vec(IxDyn(in_shape), vals).unwrap();
    let mut full_out = vec![in_shape[0]];
    full_out.extend(&out_shape);
    let c = rand_array(&mut rng, &full_out);
    let loss = |l: &Layer, x: &ArrayD<f32>| -> f64 {
        let y = l.forward(&[x.view()], &out_shape);
        y.iter().zip(c.iter()).map(|(a, b)| *a as f64 * *b as f64).sum()
    };
    let h = 1e-2f32;
    let gx = layer.backward(&[x.view()], c.view()).remove(0);
    assert_eq!(gx.shape(), x.shape());
    for i in 0..x.len() {
        let mut xp = x.clone();
        let mut xm = x.clone();
        xp.as_slice_mut().unwrap()[i] += h;
        xm.as_slice_mut().unwrap()[i] -= h;
        let fd = (loss(&layer, &xp) - loss(&layer, &xm)) / (2.0 * h as f64);
        let an = gx.as_slice().unwrap()[i] as f64;
        assert!(
            (fd - an).abs() <= 2e-3 * (1.0 + fd.abs()),
            "{:?} input {i}: analytic {an}, numeric {fd}",
            layer.kind()
        );
    }
    if let Some(pg) = layer.param_grads(x.view(), c.view()) {
        let base = layer.clone();
        let sizes: Vec<usize> = layer.params_mut().iter().map(|p| p.len()).collect();
        assert_eq!(pg.len(), sizes.len());
        for (t, &size) in sizes.iter().enumerate() {
            assert_eq!(pg[t].len(), size);
            for i in 0..size {
                let perturb = |delta: f32| {
                    let mut l = base.clone();
                    let mut params = l.params_mut();
                    params[t].as_slice_mut().unwrap()[i] += delta;
                    drop(params);
                    loss(&l, &x)
                };
                let fd = (perturb(h) - perturb(-h)) / (2.0 * h as f64);
                let an = pg[t].as_slice().unwrap()[i] as f64;
                assert!(
                    (fd - an).abs() <= 2e-3 * (1.0 + fd.abs()),
                    "{:?} parameter {t}[{i}]: analytic {an}, numeric {fd}",
                    base.kind()
                );
            }
        }
    }
}

#[test]
fn dense_backward_matches_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let w: Array2<f32> = rand_array(&mut rng, &[4, 5]).into_dimensionality().unwrap();
    check_gradients(
        Layer::Dense(Dense::new(w.clone(), Some(Array1::zeros(4) + 0.3))),
        &[3, 5],
        2,
    );
    check_gradients(Layer::Dense(Dense::new(w, None)), &[2, 5], 3);
}

#[test]
fn conv_backward_matches_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let w: Array4<f32> = rand_array(&mut rng, &[3, 2, 3, 3]).into_dimensionality().unwrap();
    check_gradients(
        Layer::Conv2d(Conv2d::new(w.clone(), Some(array![0.1, -0.2, 0.3]), [1, 1], [1; 4])),
        &[2, 2, 5, 5],
        5,
    );
    check_gradients(
        Layer::Conv2d(Conv2d::new(w, None, [2, 1], [0, 1, 2, 0])),
        &[2, 2, 6, 5],
        6,
    );
}

#[test]
fn pool_relu_flatten_backward_match_finite_differences() {
    check_gradients(Layer::MaxPool2d(Pool2d::square(2, 2)), &[2, 2, 4, 6], 8);
    check_gradients(
        Layer::MaxPool2d(Pool2d {
            window: Window::square(3, 2, 1),
            count_include_pad: false,
        }),
        &[1, 2, 5, 5],
        9,
    );
    for include in [false, true] {
        check_gradients(
            Layer::AvgPool2d(Pool2d {
                window: Window::square(3, 2, 1),
                count_include_pad: include,
            }),
            &[2, 2, 5, 6],
            10,
        );
    }
    check_gradients(Layer::Relu(lrp_core::Relu), &[3, 7], 11);
    check_gradients(Layer::Flatten(lrp_core::Flatten), &[2, 2, 3, 3], 12);
}

#[test]
fn batch_norm_is_folded_and_equals_explicit_normalisation() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let w: Array4<f32> = rand_array(&mut rng, &[3, 1, 3, 3]).into_dimensionality().unwrap();
    let conv = Conv2d::new(w, Some(array![0.1, 0.2, 0.3]), [1, 1], [0; 4]);
    let bn = BatchNorm {
        scale: array![1.5, -0.5, 2.0],
        shift: array![0.1, 0.0, -0.3],
        mean: array![0.2, -0.1, 0.05],
        var: array![0.5, 2.0, 0.1],
        eps: 1e-5,
    };
    let x: Array4<f32> = rand_array(&mut rng, &[2, 1, 5, 5]).into_dimensionality().unwrap();
    let z = conv.forward(x.view(), true);
    let explicit = Array4::from_shape_fn(z.dim(), |(n, c, i, j)| {
        (z[[n, c, i, j]] - bn.mean[c]) * bn.scale[c] / (bn.var[c] + bn.eps).sqrt() + bn.shift[c]
    });
    let net = Network::new(vec![1, 5, 5], vec![Layer::Conv2d(conv), Layer::BatchNorm(bn.clone())]).unwrap();
    assert_eq!(net.layers().len(), 1, "batch norm must be folded away");
    let y = net.forward(x.into_dyn().view()).unwrap();
    assert_abs_diff_eq!(y, explicit.into_dyn(), epsilon = 1e-5);

    // Dense + batch norm over features.
    let d = Dense::new(rand_array(&mut rng, &[3, 4]).into_dimensionality().unwrap(), None);
    let xd = rand_array(&mut rng, &[2, 4]);
    let zd = d.forward(xd.view().into_dimensionality().unwrap(), true);
    let net = Network::new(vec![4], vec![Layer::Dense(d), Layer::BatchNorm(bn.clone())]).unwrap();
    let explicit = Array2::from_shape_fn(zd.dim(), |(n, c)| {
        (zd[[n, c]] - bn.mean[c]) * bn.scale[c] / (bn.var[c] + bn.eps).sqrt() + bn.shift[c]
    });
    assert_abs_diff_eq!(net.forward(xd.view()).unwrap(), explicit.into_dyn(), epsilon = 1e-5);

    // A batch norm with nothing to fold into stays a layer of its own (pre-activation DenseNet) and
    // computes the same normalisation.
    let net = Network::new(vec![3], vec![Layer::Relu(lrp_core::Relu), Layer::BatchNorm(bn.clone())]).unwrap();
    assert_eq!(net.layers().len(), 2, "nothing to fold into: the batch norm stays");
    let xs = array![[-1.0f32, 0.5, 2.0], [0.25, -0.75, 1.0]];
    let explicit = Array2::from_shape_fn((2, 3), |(n, c)| {
        (xs[[n, c]].max(0.0) - bn.mean[c]) * bn.scale[c] / (bn.var[c] + bn.eps).sqrt() + bn.shift[c]
    });
    assert_abs_diff_eq!(
        net.forward(xs.into_dyn().view()).unwrap(),
        explicit.into_dyn(),
        epsilon = 1e-6
    );
}

#[test]
fn network_refuses_inconsistent_shapes() {
    let d = Dense::new(Array2::zeros((3, 5)), None);
    let err = Network::new(vec![4], vec![Layer::Dense(d)]).unwrap_err().to_string();
    assert!(
        err.contains("node n0 (dense)") && err.contains("5") && err.contains("4 features"),
        "{err}"
    );
    let err = Network::new(
        vec![1, 28, 28],
        vec![Layer::Dense(Dense::new(Array2::zeros((3, 784)), None))],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("flatten"), "{err}");
    let c = Conv2d::new(Array4::zeros((2, 3, 3, 3)), None, [1, 1], [0; 4]);
    let err = Network::new(vec![1, 8, 8], vec![Layer::Conv2d(c)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("3 input channels"), "{err}");
    let mut w = Array2::zeros((2, 2));
    w[[1, 1]] = f32::NAN;
    let err = Network::new(vec![2], vec![Layer::Dense(Dense::new(w, None))])
        .unwrap_err()
        .to_string();
    assert!(err.contains("non-finite"), "{err}");
}

#[test]
fn forward_refuses_bad_inputs() {
    let net = Network::new(vec![2], vec![Layer::Dense(Dense::new(Array2::eye(2), None))]).unwrap();
    let err = net
        .forward(ArrayD::zeros(IxDyn(&[1, 3])).view())
        .unwrap_err()
        .to_string();
    assert!(err.contains("[N, 2]") && err.contains("[1, 3]"), "{err}");
    let mut x = ArrayD::zeros(IxDyn(&[2, 2]));
    x[[1, 0]] = f32::NAN;
    let err = net.forward(x.view()).unwrap_err().to_string();
    assert!(
        err.contains("non-finite") && err.contains("sample 1 of the batch") && err.contains("element 0"),
        "{err}"
    );
}

#[test]
fn trace_keeps_every_layer_input() {
    let net = lrp_core::Arch::Cnn.build(&[1, 12, 12], 3, 1).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let x = rand_array(&mut rng, &[2, 1, 12, 12]);
    let t = net.forward_trace(x.view()).unwrap();
    assert_eq!(t.values.len(), net.layers().len());
    assert_eq!(t.values[0], x);
    for (i, inp) in t.values.iter().enumerate() {
        assert_eq!(&inp.shape()[1..], net.shape_at(i));
    }
    assert_eq!(t.output, net.forward(x.view()).unwrap());
}

#[test]
fn networks_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Network>();
    assert_send_sync::<lrp_core::Model>();
}

#[test]
fn transformer_layers_match_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(40);
    // A dense layer on the last axis of tokens [T, D], with its parameter gradients.
    let w: Array2<f32> = rand_array(&mut rng, &[4, 5]).into_dimensionality().unwrap();
    check_gradients(
        Layer::Dense(Dense::new(w, Some(Array1::zeros(4) + 0.3))),
        &[2, 3, 5],
        41,
    );
    // Layer norm over the last axis (scale and shift are parameters).
    let ln = lrp_core::LayerNorm {
        weight: Array1::from(vec![1.0, 0.5, -2.0, 1.5]),
        bias: Array1::from(vec![0.1, -0.2, 0.0, 0.3]),
        eps: 1e-5,
    };
    check_gradients(Layer::LayerNorm(ln), &[2, 3, 4], 42);
    check_gradients(Layer::softmax(1), &[2, 3, 4], 43);
    check_gradients(Layer::softmax(0), &[2, 3, 4], 44);
    check_gradients(Layer::mean(0), &[2, 3, 4], 45);
    check_gradients(Layer::mean(1), &[2, 3, 4], 46);
    // A learned constant added (positions): the constant's gradient sums over the batch and broadcast axes.
    let pos = rand_array(&mut rng, &[3, 1]);
    check_gradients(
        Layer::Arith(lrp_core::Arith {
            op: lrp_core::ArithOp::Add,
            value: pos,
        }),
        &[2, 3, 4],
        47,
    );
}

#[test]
fn transformer_layers_compute_their_definitions() {
    let x = ndarray::arr3(&[[[1.0f32, 2.0, 4.0], [0.0, 0.0, 3.0]]]).into_dyn();
    // Softmax along the last axis sums to 1 and keeps the order.
    let s = Layer::softmax(1).forward(&[x.view()], &[2, 3]);
    for row in s.index_axis(ndarray::Axis(0), 0).outer_iter() {
        assert!((row.sum() - 1.0).abs() < 1e-6);
    }
    assert!(s[[0, 0, 2]] > s[[0, 0, 1]] && s[[0, 0, 1]] > s[[0, 0, 0]]);
    // Layer norm: zero mean, unit (biased) variance per row before scale and shift.
    let ln = lrp_core::LayerNorm {
        weight: Array1::ones(3),
        bias: Array1::zeros(3),
        eps: 0.0,
    };
    let y = ln.forward(x.view());
    let row = y
        .index_axis(ndarray::Axis(0), 0)
        .index_axis(ndarray::Axis(0), 0)
        .to_owned();
    assert!(row.sum().abs() < 1e-5 && (row.mapv(|v| v * v).sum() / 3.0 - 1.0).abs() < 1e-5);
    // Mean over tokens.
    let m = Layer::mean(0).forward(&[x.view()], &[3]);
    assert_eq!(m.into_raw_vec_and_offset().0, vec![0.5, 1.0, 3.5]);
    // The product of two values: [2, 3]·[3, 2] per sample, batched.
    let b = ndarray::arr3(&[[[1.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]]]).into_dyn();
    let p = Layer::MatMul(lrp_core::MatMul).forward(&[x.view(), b.view()], &[2, 2]);
    assert_eq!(p.into_raw_vec_and_offset().0, vec![5.0, 6.0, 3.0, 3.0]);
    // Wrong shapes are refused at construction, naming the node.
    let err = Network::graph(vec![2, 3], vec![(Layer::MatMul(lrp_core::MatMul), vec![0, 0])])
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot multiply [2, 3] by [2, 3]"), "{err}");
    let err = Network::new(
        vec![2, 3],
        vec![Layer::LayerNorm(lrp_core::LayerNorm {
            weight: Array1::ones(4),
            bias: Array1::zeros(4),
            eps: 1e-5,
        })],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("normalizes 4 features"), "{err}");
}

/// `Expr::values` (a step at a time over blocks of elements, the forward pass of activation islands) gives
/// `Expr::value`'s bits for every element, across a block boundary and for NaN, ±∞, ±0 and large inputs, with every
/// unary and binary function and a select; and SiLU its definition in f64.
#[test]
fn expression_values_by_block_are_the_per_element_values() {
    use lrp_core::layers::{BinaryFn, Expr, ExprOp, UnaryFn};
    let unary = [
        UnaryFn::Neg,
        UnaryFn::Abs,
        UnaryFn::Exp,
        UnaryFn::Log,
        UnaryFn::Sqrt,
        UnaryFn::Reciprocal,
        UnaryFn::Sigmoid,
        UnaryFn::Tanh,
        UnaryFn::Erf,
        UnaryFn::Relu,
        UnaryFn::Softplus,
    ];
    let binary = [
        BinaryFn::Add,
        BinaryFn::Sub,
        BinaryFn::Mul,
        BinaryFn::Div,
        BinaryFn::Pow,
        BinaryFn::Min,
        BinaryFn::Max,
        BinaryFn::Greater,
        BinaryFn::Less,
        BinaryFn::GreaterOrEqual,
        BinaryFn::LessOrEqual,
        BinaryFn::Equal,
    ];
    let mut xs: Vec<f32> = (0..700).map(|i| (i as f32 - 350.0) * 0.037).collect();
    xs.extend([
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        1e30,
        -1e30,
        88.0,
        -104.0,
        1.5,
    ]);
    let mut exprs = Vec::new();
    for &u in &unary {
        for &b in &binary {
            // f(x) = b(u(x), 0.75) then where(x > 0.5, that, x · 1.25)
            exprs.push(Expr {
                ops: vec![
                    ExprOp::Unary(u, 0),
                    ExprOp::Const(0.75),
                    ExprOp::Binary(b, 1, 2),
                    ExprOp::Const(0.5),
                    ExprOp::Binary(BinaryFn::Greater, 0, 4),
                    ExprOp::Const(1.25),
                    ExprOp::Binary(BinaryFn::Mul, 0, 6),
                    ExprOp::Where(5, 3, 7),
                ],
            });
        }
    }
    let silu = Expr {
        ops: vec![ExprOp::Unary(UnaryFn::Sigmoid, 0), ExprOp::Binary(BinaryFn::Mul, 0, 1)],
    };
    exprs.push(silu.clone());
    for e in &exprs {
        let mut out = vec![0.0f32; xs.len()];
        e.values(&xs, &mut out);
        for (&x, &y) in xs.iter().zip(&out) {
            assert_eq!(y.to_bits(), e.value(x).to_bits(), "{e:?} at {x}");
        }
    }
    let mut out = vec![0.0f32; xs.len()];
    silu.values(&xs, &mut out);
    for (&x, &y) in xs.iter().zip(&out).filter(|(x, _)| x.abs() < 50.0) {
        let want = x as f64 / (1.0 + (-(x as f64)).exp());
        assert!(
            (y as f64 - want).abs() <= 1e-6 * want.abs().max(1.0),
            "SiLU({x}) = {y}, want {want}"
        );
    }
}

/// Max pooling routes each output's gradient to the first maximum of its window in (row, column) order, padded
/// cells never winning: against a naive router on inputs full of ties, for ResNet's 3×3 stride-2 padded window (whose
/// inner windows take the unpadded loop) and others.
#[test]
fn max_pool_routes_to_the_first_maximum_with_ties() {
    let x = Array4::from_shape_fn((2, 2, 11, 10), |(a, b, y, z)| {
        ((a * 7 + b * 3 + y * 5 + z * 2) % 4) as f32 * 0.5
    });
    for win in [
        Window::square(3, 2, 1),
        Window::square(3, 1, 1),
        Window::square(2, 2, 0),
        Window {
            kernel: [3, 2],
            stride: [2, 3],
            pads: [2, 1, 0, 1],
        },
    ] {
        let p = Pool2d {
            window: win,
            count_include_pad: false,
        };
        let y = p.max_forward(x.view());
        assert_eq!(y, naive_pool(&x, win, None));
        let g = Array4::from_shape_fn(y.dim(), |(a, b, i, j)| 1.0 + (a * 1000 + b * 100 + i * 10 + j) as f32);
        let mut want = Array4::<f32>::zeros(x.dim());
        let (_, _, h, w) = x.dim();
        for ((ni, ci, oy, ox), &gv) in g.indexed_iter() {
            let mut best: Option<(f32, usize, usize)> = None;
            for ky in 0..win.kernel[0] {
                for kx in 0..win.kernel[1] {
                    let iy = (oy * win.stride[0] + ky) as isize - win.pads[0] as isize;
                    let ix = (ox * win.stride[1] + kx) as isize - win.pads[1] as isize;
                    if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                        continue;
                    }
                    let v = x[[ni, ci, iy as usize, ix as usize]];
                    if best.is_none_or(|(b, _, _)| v > b) {
                        best = Some((v, iy as usize, ix as usize));
                    }
                }
            }
            let (_, iy, ix) = best.expect("a window with a cell inside");
            want[[ni, ci, iy, ix]] += gv;
        }
        assert_eq!(p.max_route(x.view(), g.view()), want, "{win:?}");
    }
}

/// Passes over one large value go over both threads of a pool (above `par::PAR_MIN_VALUES`), each value computed as
/// if alone: every activation, and an island (SiLU as x·sigmoid(x)), gives `apply`'s bits value by value; average
/// pooling over whole planes (squeeze-and-excitation) gives a naive loop's bits, its transpose each plane's gradient
/// over the plane's size, and a 3×3 window the same bits on one thread as on two; a value times a per-channel gate,
/// either way round, gives ndarray's broadcast product's bits.
#[test]
fn large_passes_split_over_threads_keep_every_bit() {
    use lrp_core::{Activation, BinaryFn, ExprOp, Mul, Op, UnaryFn};
    let two = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (n, c, h, w) = (2, 4, 181, 183);
    assert!(n * c * h * w > lrp_core::par::PAR_MIN_VALUES);
    let mut x = Array4::from_shape_fn((n, c, h, w), |_| rng.random_range(-8.0f32..8.0));
    for (i, v) in [0.0, -0.0, 6.0, -3.0, 3.0, 1e30, -1e30, 88.5, -104.0]
        .into_iter()
        .enumerate()
    {
        x[[1, 3, 100, i]] = v;
    }
    let silu = Activation::Island(lrp_core::Expr {
        ops: vec![ExprOp::Unary(UnaryFn::Sigmoid, 0), ExprOp::Binary(BinaryFn::Mul, 0, 1)],
    });
    let activations = [
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::LeakyRelu(0.1),
        Activation::Elu(0.7),
        Activation::Gelu,
        Activation::GeluTanh,
        Activation::Silu,
        Activation::Softplus,
        Activation::Clip(0.0, 6.0),
        Activation::HardSigmoid(0.2, 0.5),
        Activation::HardSwish,
        silu,
    ];
    // NaN and infinities only where the activations read (the pools' expected means would be NaN, unequal to
    // themselves): the split loops must treat them as `apply` does (ReLU6 of NaN is 0, not NaN).
    let mut xd = x.clone().into_dyn();
    for (i, v) in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY].into_iter().enumerate() {
        xd[[0, 1, 7, i]] = v;
    }
    two.install(|| {
        for a in &activations {
            let y = a.forward(xd.view());
            assert_eq!(y.shape(), xd.shape());
            for (&v, &o) in xd.iter().zip(y.iter()) {
                assert_eq!(o.to_bits(), a.apply(v).to_bits(), "{a:?} at {v}");
            }
        }
    });
    let whole = Pool2d {
        window: Window {
            kernel: [h, w],
            stride: [1, 1],
            pads: [0, 0, 0, 0],
        },
        count_include_pad: false,
    };
    let means = two.install(|| whole.avg_forward(x.view()));
    assert_eq!(means, naive_pool(&x, whole.window, Some(false)));
    let g = Array4::from_shape_fn((n, c, 1, 1), |(i, j, _, _)| (i * c + j) as f32 - 2.5);
    let spread = two.install(|| whole.avg_transpose(g.view(), (n, c, h, w)));
    for ((i, j, _, _), &v) in spread.indexed_iter() {
        assert_eq!(v.to_bits(), (g[[i, j, 0, 0]] / (h * w) as f32).to_bits());
    }
    let three = Pool2d {
        window: Window::square(3, 1, 1),
        count_include_pad: true,
    };
    let gy = Array4::from_shape_fn((n, c, h, w), |(i, j, y, z)| {
        ((i + 2 * j + 3 * y + 5 * z) % 11) as f32 - 5.0
    });
    let on = |pool: &rayon::ThreadPool| {
        pool.install(|| {
            (
                three.avg_forward(x.view()),
                three.avg_transpose(gy.view(), (n, c, h, w)),
            )
        })
    };
    assert_eq!(on(&one), on(&two));
    let gate = Array4::from_shape_fn((n, c, 1, 1), |(i, j, _, _)| 0.3 * (i * c + j) as f32 - 1.1).into_dyn();
    two.install(|| {
        let xg = Mul.forward(&[xd.view(), gate.view()], &[]);
        let gx = Mul.forward(&[gate.view(), xd.view()], &[]);
        for (got, want) in [(xg, &xd * &gate), (gx, &gate * &xd)] {
            assert_eq!(got.shape(), want.shape());
            assert!(got.iter().zip(want.iter()).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    });
}
