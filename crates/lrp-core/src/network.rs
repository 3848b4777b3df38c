//! `Network`: an ordered list of layers with shapes inferred and checked at construction.

use ndarray::{ArrayD, ArrayViewD};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::layers::{Layer, LayerKind};

/// [`Network::forward`] splits large batches so that the widest intermediate holds about this many floats.
const BLOCK_FLOATS: usize = 1 << 19;

/// A feed-forward network. Built by [`Network::new`], which folds batch norms and checks every shape,
/// so a `Network` value is always consistent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "NetworkRepr", into = "NetworkRepr")]
pub struct Network {
    input_shape: Vec<usize>,
    layers: Vec<Layer>,
    /// `shapes[i]` is the per-sample input shape of layer `i`; the last entry is the output shape.
    shapes: Vec<Vec<usize>>,
}

/// What is stored in model files: the layers before validation.
#[derive(Serialize, Deserialize)]
struct NetworkRepr {
    input_shape: Vec<usize>,
    layers: Vec<Layer>,
}

impl TryFrom<NetworkRepr> for Network {
    type Error = CoreError;
    fn try_from(r: NetworkRepr) -> Result<Self> {
        Network::new(r.input_shape, r.layers)
    }
}

impl From<Network> for NetworkRepr {
    fn from(n: Network) -> Self {
        NetworkRepr {
            input_shape: n.input_shape,
            layers: n.layers,
        }
    }
}

/// Every layer's input from one forward pass, and the output: what LRP walks back through.
#[derive(Clone, Debug)]
pub struct Trace {
    /// `inputs[i]` is the input of layer `i` (so `inputs[0]` is the network input).
    pub inputs: Vec<ArrayD<f32>>,
    /// The network output (logits).
    pub output: ArrayD<f32>,
}

impl Network {
    /// Builds a network for per-sample inputs of `input_shape` (e.g. `[1, 28, 28]`).
    ///
    /// Batch norms are folded into the dense/conv layer right before them (an error if there is none);
    /// every layer's parameters are checked against the shape that reaches it.
    pub fn new(input_shape: Vec<usize>, layers: Vec<Layer>) -> Result<Self> {
        if input_shape.is_empty() || input_shape.contains(&0) {
            return Err(CoreError::InvalidNetwork(format!(
                "input shape {input_shape:?} must have at least one dimension and no zero"
            )));
        }
        if layers.is_empty() {
            return Err(CoreError::InvalidNetwork("a network needs at least one layer".into()));
        }
        let mut folded: Vec<Layer> = Vec::with_capacity(layers.len());
        let mut shapes = vec![input_shape.clone()];
        for (index, layer) in layers.into_iter().enumerate() {
            let current = shapes.last().expect("non-empty").clone();
            // Validates the layer (batch norm included) against the shape that reaches it.
            let out = layer.output_shape(index, &current)?;
            if let Layer::BatchNorm(bn) = &layer {
                match folded.last_mut() {
                    Some(Layer::Dense(d)) => bn.fold_into_dense(d),
                    Some(Layer::Conv2d(c)) => bn.fold_into_conv(c),
                    _ => {
                        return Err(CoreError::InvalidLayer {
                            index,
                            kind: "batchnorm",
                            reason: "has no dense or conv layer right before it to fold into".into(),
                        });
                    }
                }
                continue;
            }
            folded.push(layer);
            shapes.push(out);
        }
        Ok(Network {
            input_shape,
            layers: folded,
            shapes,
        })
    }

    /// Per-sample input shape.
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// Per-sample output shape.
    pub fn output_shape(&self) -> &[usize] {
        self.shapes.last().expect("non-empty")
    }

    /// Number of outputs (classes).
    pub fn num_classes(&self) -> usize {
        self.output_shape().iter().product()
    }

    /// The layers, in forward order.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Per-sample input shape of layer `i` (`i = layers().len()` gives the output shape).
    pub fn shape_at(&self, i: usize) -> &[usize] {
        &self.shapes[i]
    }

    /// Total number of parameters.
    pub fn param_count(&self) -> usize {
        self.layers.iter().map(Layer::param_count).sum()
    }

    /// Indices of the layers with weights (dense, conv), in forward order.
    pub fn weighted_layers(&self) -> Vec<usize> {
        (0..self.layers.len())
            .filter(|&i| self.layers[i].has_weights())
            .collect()
    }

    /// Checks that `x` is a batch of this network's inputs (`[N, input_shape…]`) with finite values.
    pub fn check_input(&self, x: &ArrayViewD<f32>) -> Result<()> {
        if x.ndim() != self.input_shape.len() + 1 || x.shape()[1..] != self.input_shape[..] {
            let mut expected = vec!["N".to_string()];
            expected.extend(self.input_shape.iter().map(|d| d.to_string()));
            return Err(CoreError::ShapeMismatch {
                context: "network input".into(),
                expected: format!("[{}]", expected.join(", ")),
                got: format!("{:?}", x.shape()),
            });
        }
        if let Some((index, &value)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            let per_sample = self.input_shape.iter().product::<usize>().max(1);
            return Err(CoreError::NonFinite {
                context: format!("network input (sample {} of the batch)", index / per_sample),
                index: index % per_sample,
                value,
            });
        }
        Ok(())
    }

    /// Forward pass: logits `[N, classes…]` for inputs `[N, input_shape…]`.
    pub fn forward(&self, x: ArrayViewD<f32>) -> Result<ArrayD<f32>> {
        self.check_input(&x)?;
        let n = x.shape()[0];
        // Blocks whose largest intermediate is about 2 MiB stay in cache (64 samples at least).
        let widest = self
            .shapes
            .iter()
            .map(|s| s.iter().product::<usize>())
            .max()
            .unwrap_or(1);
        let block = (BLOCK_FLOATS / widest.max(1)).max(64);
        if n <= block {
            return Ok(self.forward_unchecked(x));
        }
        // Large batches run in blocks whose intermediates stay in cache; the kernels do not depend on the
        // batch size, so the result is the same bits.
        let mut shape = vec![n];
        shape.extend_from_slice(self.output_shape());
        let mut out = ArrayD::<f32>::zeros(ndarray::IxDyn(&shape));
        for start in (0..n).step_by(block) {
            let end = (start + block).min(n);
            let y = self.forward_unchecked(x.slice_axis(ndarray::Axis(0), (start..end).into()));
            out.slice_axis_mut(ndarray::Axis(0), (start..end).into()).assign(&y);
        }
        Ok(out)
    }

    fn forward_unchecked(&self, x: ArrayViewD<f32>) -> ArrayD<f32> {
        let mut cur = x.to_owned();
        for (i, layer) in self.layers.iter().enumerate() {
            cur = layer.forward(cur.view(), &self.shapes[i + 1]);
        }
        cur
    }

    /// Forward pass that keeps every layer's input.
    pub fn forward_trace(&self, x: ArrayViewD<f32>) -> Result<Trace> {
        self.check_input(&x)?;
        let mut inputs = Vec::with_capacity(self.layers.len());
        let mut cur = x.to_owned();
        for (i, layer) in self.layers.iter().enumerate() {
            let next = layer.forward(cur.view(), &self.shapes[i + 1]);
            inputs.push(cur);
            cur = next;
        }
        Ok(Trace { inputs, output: cur })
    }

    /// Backward pass from the output gradient `g` through a trace: the input gradient and each layer's
    /// parameter gradients (`None` for layers without parameters).
    pub fn backward(&self, trace: &Trace, g: ArrayD<f32>) -> Result<(ArrayD<f32>, Vec<Option<crate::ParamGrads>>)> {
        if g.shape() != trace.output.shape() {
            return Err(CoreError::shape("output gradient", trace.output.shape(), g.shape()));
        }
        let mut grads = vec![None; self.layers.len()];
        let mut g = g;
        for i in (0..self.layers.len()).rev() {
            let x = trace.inputs[i].view();
            grads[i] = self.layers[i].param_grads(x.view(), g.view());
            g = self.layers[i].backward(x, g.view());
        }
        Ok((g, grads))
    }

    /// Gradient of `Σ g ⊙ output` with respect to the input, through a trace (no parameter gradients).
    pub fn input_gradient(&self, trace: &Trace, g: ArrayD<f32>) -> Result<ArrayD<f32>> {
        if g.shape() != trace.output.shape() {
            return Err(CoreError::shape("output gradient", trace.output.shape(), g.shape()));
        }
        let mut g = g;
        for i in (0..self.layers.len()).rev() {
            g = self.layers[i].backward(trace.inputs[i].view(), g.view());
        }
        Ok(g)
    }

    /// Mutable access to the layers for training. Shapes must not change.
    pub(crate) fn layers_mut(&mut self) -> &mut [Layer] {
        &mut self.layers
    }

    /// A one-line description of each layer with its output shape.
    pub fn summary(&self) -> Vec<String> {
        self.layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let detail = match l {
                    Layer::Dense(d) => format!("{} → {}{}", d.inputs(), d.outputs(), bias_note(d.bias.is_some())),
                    Layer::Conv2d(c) => format!(
                        "{}→{} channels, kernel {}×{}, stride {:?}, pads {:?}{}",
                        c.in_channels(),
                        c.out_channels(),
                        c.window.kernel[0],
                        c.window.kernel[1],
                        c.window.stride,
                        c.window.pads,
                        bias_note(c.bias.is_some())
                    ),
                    Layer::MaxPool2d(p) | Layer::AvgPool2d(p) => format!(
                        "kernel {}×{}, stride {:?}, pads {:?}{}",
                        p.window.kernel[0],
                        p.window.kernel[1],
                        p.window.stride,
                        p.window.pads,
                        if l.kind() == LayerKind::AvgPool2d && p.count_include_pad {
                            ", padding counted"
                        } else {
                            ""
                        }
                    ),
                    Layer::Dropout(p) => format!("p = {p}"),
                    Layer::Lstm(l) => format!(
                        "{} → {} hidden, {}{}",
                        l.features(),
                        l.hidden(),
                        if l.directions.len() == 2 {
                            "bidirectional"
                        } else {
                            "one direction"
                        },
                        if l.return_sequence {
                            ", returns the sequence"
                        } else {
                            ""
                        }
                    ),
                    _ => String::new(),
                };
                format!(
                    "#{i:<2} {:<10} {:<16} {:>9} params  {}",
                    l.kind().name(),
                    format!("{:?}", self.shapes[i + 1]),
                    l.param_count(),
                    detail
                )
            })
            .collect()
    }
}

fn bias_note(has: bool) -> &'static str {
    if has { "" } else { ", no bias" }
}
