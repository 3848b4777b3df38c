//! The architectures `lrp train` builds, adapted to the image size and class count.

use ndarray::{Array1, Array2, Array4};
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::error::{CoreError, Result};
use crate::layers::{Activation, Arith, ArithOp, Conv2d, Dense, Layer, LayerNorm, Lstm, LstmDirection, Pool2d};
use crate::network::Network;

/// A trainable architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// Flatten → 256 → ReLU → 128 → ReLU → classes.
    Mlp,
    /// Two 5×5 conv (16, 32 channels) + ReLU + 2×2 max-pool blocks, then 128 → ReLU → dropout → classes.
    /// Images smaller than 16 pixels on a side get "same" padding so the blocks still fit.
    Cnn,
    /// Row-sequential LSTM: each image row is a time step (input `[H, W]`), 128 hidden units, then a dense
    /// layer on the final hidden state. Single-channel images only.
    Lstm,
    /// A small residual network (a graph): a 3×3 stem convolution (16 channels), two blocks that halve the
    /// resolution with a strided 1×1 projection shortcut (24, then 48 channels), one block with an identity
    /// shortcut, global average pooling and a dense layer. Each block is conv 3×3 → ReLU → conv 3×3, added to the
    /// shortcut, then ReLU. No batch norm.
    Resnet,
    /// A vision transformer (a graph): 7×7 patches embedded by a strided convolution (64 channels), learned
    /// positions, two pre-norm blocks (4-head self-attention, then a GELU MLP with 128 hidden units, each added
    /// back to the stream), the mean over tokens, a layer norm and a dense head. Images whose sides are multiples
    /// of 7.
    Vit,
}

/// Width of [`Arch::Vit`]'s token vectors.
pub const VIT_DIM: usize = 64;
/// Attention heads of [`Arch::Vit`].
pub const VIT_HEADS: usize = 4;
/// Blocks of [`Arch::Vit`].
pub const VIT_DEPTH: usize = 2;
/// Hidden units of [`Arch::Vit`]'s MLPs.
pub const VIT_HIDDEN: usize = 128;
/// Patch side of [`Arch::Vit`].
pub const VIT_PATCH: usize = 7;

/// Hidden units of [`Arch::Lstm`].
pub const LSTM_HIDDEN: usize = 128;

fn he_normal(rng: &mut ChaCha8Rng, fan_in: usize, n: usize) -> Vec<f32> {
    let std = (2.0 / fan_in as f32).sqrt();
    let normal = Normal::new(0.0f32, std).expect("std is positive and finite");
    (0..n).map(|_| normal.sample(rng)).collect()
}

fn dense(rng: &mut ChaCha8Rng, inputs: usize, outputs: usize) -> Layer {
    let w = Array2::from_shape_vec((outputs, inputs), he_normal(rng, inputs, inputs * outputs)).expect("sized");
    Layer::Dense(Dense::new(w, Some(Array1::zeros(outputs))))
}

fn conv(rng: &mut ChaCha8Rng, cin: usize, cout: usize, k: usize, pad: usize) -> Layer {
    strided_conv(rng, cin, cout, k, pad, 1)
}

fn strided_conv(rng: &mut ChaCha8Rng, cin: usize, cout: usize, k: usize, pad: usize, stride: usize) -> Layer {
    let fan_in = cin * k * k;
    let w = Array4::from_shape_vec((cout, cin, k, k), he_normal(rng, fan_in, fan_in * cout)).expect("sized");
    Layer::Conv2d(Conv2d::new(w, Some(Array1::zeros(cout)), [stride, stride], [pad; 4]))
}

/// Appends a residual block reading value `from` (`cin` channels) and returns the value of its output.
/// `stride` 2 halves the resolution and gets a 1×1 projection shortcut; stride 1 with `cin == cout` an identity.
fn residual_block(
    rng: &mut ChaCha8Rng,
    nodes: &mut Vec<(Layer, Vec<usize>)>,
    from: usize,
    cin: usize,
    cout: usize,
    stride: usize,
) -> usize {
    let push = |nodes: &mut Vec<(Layer, Vec<usize>)>, layer: Layer, ins: Vec<usize>| {
        nodes.push((layer, ins));
        nodes.len()
    };
    let a = push(nodes, strided_conv(rng, cin, cout, 3, 1, stride), vec![from]);
    let a = push(nodes, Layer::Relu(crate::Relu), vec![a]);
    let a = push(nodes, conv(rng, cout, cout, 3, 1), vec![a]);
    let shortcut = if stride == 1 && cin == cout {
        from
    } else {
        push(nodes, strided_conv(rng, cin, cout, 1, 0, stride), vec![from])
    };
    let sum = push(nodes, Layer::Add(crate::Add), vec![a, shortcut]);
    push(nodes, Layer::Relu(crate::Relu), vec![sum])
}

/// LeCun-normal weights (variance 1/fan-in) and zero biases: for the transformer's layers, which feed layer norms
/// and attention rather than ReLUs.
fn lecun_dense(rng: &mut ChaCha8Rng, inputs: usize, outputs: usize) -> Layer {
    let normal = Normal::new(0.0f32, (1.0 / inputs as f32).sqrt()).expect("std is positive and finite");
    let w = Array2::from_shape_fn((outputs, inputs), |_| normal.sample(rng));
    Layer::Dense(Dense::new(w, Some(Array1::zeros(outputs))))
}

fn layer_norm(d: usize) -> Layer {
    Layer::LayerNorm(LayerNorm {
        weight: Array1::ones(d),
        bias: Array1::zeros(d),
        eps: 1e-5,
    })
}

/// Appends one pre-norm transformer block reading value `x` (`[T, D]` tokens) and returns its output value.
fn vit_block(rng: &mut ChaCha8Rng, nodes: &mut Vec<(Layer, Vec<usize>)>, x: usize, tokens: usize) -> usize {
    let (d, heads) = (VIT_DIM, VIT_HEADS);
    let dh = d / heads;
    let push = |nodes: &mut Vec<(Layer, Vec<usize>)>, layer: Layer, ins: Vec<usize>| {
        nodes.push((layer, ins));
        nodes.len()
    };
    let a = push(nodes, layer_norm(d), vec![x]);
    let qkv = push(nodes, lecun_dense(rng, d, 3 * d), vec![a]);
    let split = push(nodes, Layer::reshape(vec![tokens, 3, heads, dh]), vec![qkv]);
    let split = push(nodes, Layer::transpose(vec![1, 2, 0, 3]), vec![split]); // [3, heads, T, dh]
    let part = |nodes: &mut Vec<(Layer, Vec<usize>)>, i: usize| {
        let s = push(nodes, Layer::slice(0, i, i + 1), vec![split]);
        push(nodes, Layer::reshape(vec![heads, tokens, dh]), vec![s])
    };
    let (q, k, v) = (part(nodes, 0), part(nodes, 1), part(nodes, 2));
    let kt = push(nodes, Layer::transpose(vec![0, 2, 1]), vec![k]);
    let scores = push(nodes, Layer::MatMul(crate::MatMul), vec![q, kt]);
    let scale = Arith {
        op: ArithOp::Mul,
        value: ndarray::ArrayD::from_elem(ndarray::IxDyn(&[]), 1.0 / (dh as f32).sqrt()),
    };
    let scores = push(nodes, Layer::Arith(scale), vec![scores]);
    let attn = push(nodes, Layer::softmax(2), vec![scores]);
    let mixed = push(nodes, Layer::MatMul(crate::MatMul), vec![attn, v]); // [heads, T, dh]
    let mixed = push(nodes, Layer::transpose(vec![1, 0, 2]), vec![mixed]);
    let mixed = push(nodes, Layer::reshape(vec![tokens, d]), vec![mixed]);
    let out = push(nodes, lecun_dense(rng, d, d), vec![mixed]);
    let x = push(nodes, Layer::Add(crate::Add), vec![x, out]);
    let h = push(nodes, layer_norm(d), vec![x]);
    let h = push(nodes, lecun_dense(rng, d, VIT_HIDDEN), vec![h]);
    let h = push(nodes, Layer::Activation(Activation::Gelu), vec![h]);
    let h = push(nodes, lecun_dense(rng, VIT_HIDDEN, d), vec![h]);
    push(nodes, Layer::Add(crate::Add), vec![x, h])
}

fn lstm(rng: &mut ChaCha8Rng, features: usize, hidden: usize) -> Layer {
    // PyTorch's initialisation: uniform in ±1/√H for every weight and bias.
    let k = 1.0 / (hidden as f32).sqrt();
    let mut u = |r: usize, c: usize| Array2::from_shape_fn((r, c), |_| rng.random_range(-k..k));
    let w = u(4 * hidden, features);
    let r = u(4 * hidden, hidden);
    let b = u(4 * hidden, 1).column(0).to_owned();
    Layer::Lstm(Lstm {
        directions: vec![LstmDirection {
            w,
            r,
            b,
            reverse: false,
        }],
        return_sequence: false,
    })
}

impl Arch {
    /// The per-sample input shape the network takes for images `[C, H, W]` (the LSTM reads `[H, W]`).
    pub fn input_shape(self, image_shape: &[usize]) -> Result<Vec<usize>> {
        match (self, image_shape) {
            (Arch::Lstm, &[1, h, w]) => Ok(vec![h, w]),
            (Arch::Lstm, other) => Err(CoreError::InvalidNetwork(format!(
                "the LSTM reads single-channel images row by row; got images {other:?}"
            ))),
            (_, other) => Ok(other.to_vec()),
        }
    }

    /// Builds a freshly initialised network (He-normal weights, zero biases) for images `[C, H, W]`.
    pub fn build(self, input_shape: &[usize], classes: usize, seed: u64) -> Result<Network> {
        let &[c, h, w] = input_shape else {
            return Err(CoreError::InvalidNetwork(format!(
                "training expects images [channels, height, width], got {input_shape:?}"
            )));
        };
        if classes < 2 {
            return Err(CoreError::InvalidNetwork(format!(
                "a classifier needs at least 2 classes, got {classes}"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let net_input = self.input_shape(input_shape)?;
        if self == Arch::Vit {
            if h % VIT_PATCH != 0 || w % VIT_PATCH != 0 {
                return Err(CoreError::InvalidNetwork(format!(
                    "the vision transformer cuts images into {VIT_PATCH}×{VIT_PATCH} patches; {h}×{w} is not a \
                     multiple of {VIT_PATCH} on each side"
                )));
            }
            let tokens = (h / VIT_PATCH) * (w / VIT_PATCH);
            let d = VIT_DIM;
            let fan_in = c * VIT_PATCH * VIT_PATCH;
            let normal = Normal::new(0.0f32, (1.0 / fan_in as f32).sqrt()).expect("positive");
            let kernel = Array4::from_shape_fn((d, c, VIT_PATCH, VIT_PATCH), |_| normal.sample(&mut rng));
            let embed = Conv2d::new(kernel, Some(Array1::zeros(d)), [VIT_PATCH; 2], [0; 4]);
            let pos_normal = Normal::new(0.0f32, 0.02).expect("positive");
            let pos = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[tokens, d]), |_| pos_normal.sample(&mut rng));
            let mut nodes: Vec<(Layer, Vec<usize>)> = vec![
                (Layer::Conv2d(embed), vec![0]),
                (Layer::reshape(vec![d, tokens]), vec![1]),
                (Layer::transpose(vec![1, 0]), vec![2]),
                (
                    Layer::Arith(Arith {
                        op: ArithOp::Add,
                        value: pos,
                    }),
                    vec![3],
                ),
            ];
            let mut x = nodes.len();
            for _ in 0..VIT_DEPTH {
                x = vit_block(&mut rng, &mut nodes, x, tokens);
            }
            nodes.push((Layer::mean(0), vec![x]));
            nodes.push((layer_norm(d), vec![nodes.len()]));
            nodes.push((lecun_dense(&mut rng, d, classes), vec![nodes.len()]));
            return Network::graph(net_input, nodes);
        }
        if self == Arch::Resnet {
            if h < 4 || w < 4 {
                return Err(CoreError::InvalidNetwork(format!(
                    "the residual network needs images of at least 4×4 pixels, got {h}×{w}"
                )));
            }
            let mut nodes: Vec<(Layer, Vec<usize>)> = Vec::new();
            nodes.push((conv(&mut rng, c, 16, 3, 1), vec![0]));
            nodes.push((Layer::Relu(crate::Relu), vec![1]));
            let v = residual_block(&mut rng, &mut nodes, 2, 16, 24, 2);
            let v = residual_block(&mut rng, &mut nodes, v, 24, 48, 2);
            let v = residual_block(&mut rng, &mut nodes, v, 48, 48, 1);
            let (oh, ow) = (h.div_ceil(2).div_ceil(2), w.div_ceil(2).div_ceil(2));
            nodes.push((
                Layer::AvgPool2d(Pool2d {
                    window: crate::layers::Window {
                        kernel: [oh, ow],
                        stride: [1, 1],
                        pads: [0; 4],
                    },
                    count_include_pad: false,
                }),
                vec![v],
            ));
            nodes.push((Layer::Flatten(crate::Flatten), vec![nodes.len()]));
            nodes.push((dense(&mut rng, 48, classes), vec![nodes.len()]));
            return Network::graph(net_input, nodes);
        }
        let layers = match self {
            Arch::Resnet | Arch::Vit => unreachable!("built above"),
            Arch::Lstm => vec![
                lstm(&mut rng, w, LSTM_HIDDEN),
                Layer::Flatten(crate::Flatten),
                dense(&mut rng, LSTM_HIDDEN, classes),
            ],
            Arch::Mlp => vec![
                Layer::Flatten(crate::Flatten),
                dense(&mut rng, c * h * w, 256),
                Layer::Relu(crate::Relu),
                dense(&mut rng, 256, 128),
                Layer::Relu(crate::Relu),
                dense(&mut rng, 128, classes),
            ],
            Arch::Cnn => {
                if h < 4 || w < 4 {
                    return Err(CoreError::InvalidNetwork(format!(
                        "the CNN needs images of at least 4×4 pixels, got {h}×{w}"
                    )));
                }
                let pad = if h.min(w) >= 16 { 0 } else { 2 };
                let after = |s: usize| ((s + 2 * pad - 4) / 2 + 2 * pad - 4) / 2;
                let flat = 32 * after(h) * after(w);
                vec![
                    conv(&mut rng, c, 16, 5, pad),
                    Layer::Relu(crate::Relu),
                    Layer::MaxPool2d(Pool2d::square(2, 2)),
                    conv(&mut rng, 16, 32, 5, pad),
                    Layer::Relu(crate::Relu),
                    Layer::MaxPool2d(Pool2d::square(2, 2)),
                    Layer::Flatten(crate::Flatten),
                    dense(&mut rng, flat, 128),
                    Layer::Relu(crate::Relu),
                    Layer::dropout(0.25),
                    dense(&mut rng, 128, classes),
                ]
            }
        };
        Network::new(net_input, layers)
    }
}
