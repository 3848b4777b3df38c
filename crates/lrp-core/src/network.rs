//! `Network`: a directed acyclic graph of layers with shapes inferred and checked at construction.
//!
//! Values are numbered: value 0 is the network input and value `k + 1` is the output of node `k`; the output of
//! the last node is the network output. Node `k` reads values with numbers at most `k`, so the node list is in
//! topological order. A chain (node `k` reads value `k`, the common case) runs on a fast path.

use ndarray::{ArrayD, ArrayViewD};

use crate::error::{CoreError, Result};
use crate::layers::{Layer, LayerKind};

/// No value of a network may hold more than this many elements per sample (2²⁶, 256 MiB of float32): checked when
/// the network is built, so a model file cannot make a forward pass allocate without bound.
pub const MAX_VALUE_ELEMENTS: usize = 1 << 26;

/// [`Network::forward`] splits large batches so that the widest intermediate holds about this many floats.
const BLOCK_FLOATS: usize = 1 << 19;

/// A feed-forward network. Built by [`Network::new`] (a chain) or [`Network::graph`], which fold batch norms
/// and check every shape, so a `Network` value is always consistent.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    input_shape: Vec<usize>,
    layers: Vec<Layer>,
    /// `wiring[k]`: the values node `k` reads.
    wiring: Vec<Vec<usize>>,
    /// `shapes[v]` is the per-sample shape of value `v`; the last entry is the output shape.
    shapes: Vec<Vec<usize>>,
    /// `last_use[v]`: the last node that reads value `v` (the output: the node count).
    last_use: Vec<usize>,
    /// `first_use[v]`: the first node that reads value `v` (the output: the node count).
    first_use: Vec<usize>,
    chain: bool,
}

/// Every value of one forward pass: what LRP walks back through.
#[derive(Clone, Debug)]
pub struct Trace {
    /// `values[v]` for `v` below the node count: value `v` (for a chain, the input of layer `v`; `values[0]` is
    /// the network input).
    pub values: Vec<ArrayD<f32>>,
    /// The network output (logits), the last value.
    pub output: ArrayD<f32>,
}

/// The first NaN or infinity in a batch `[N, …]`, as (sample, flat index within the sample, value): the one scan
/// every input goes through.
pub fn first_non_finite(x: &ArrayViewD<f32>) -> Option<(usize, usize, f32)> {
    let per_sample = x.shape().iter().skip(1).product::<usize>().max(1);
    let (i, v) = match x.as_slice() {
        Some(sl) => crate::simd::first_non_finite(sl).map(|i| (i, sl[i])),
        None => x.iter().enumerate().find(|(_, v)| !v.is_finite()).map(|(i, &v)| (i, v)),
    }?;
    Some((i / per_sample, i % per_sample, v))
}

impl Trace {
    /// Value `v` (the node count gives the output).
    pub fn value(&self, v: usize) -> &ArrayD<f32> {
        self.values.get(v).unwrap_or(&self.output)
    }
}

impl Network {
    /// Builds a chain for per-sample inputs of `input_shape` (e.g. `[1, 28, 28]`): layer `k` reads the output of
    /// layer `k − 1`.
    ///
    /// Batch norms are folded into the dense/conv layer right before them (an error if there is none);
    /// every layer's parameters are checked against the shape that reaches it.
    pub fn new(input_shape: Vec<usize>, layers: Vec<Layer>) -> Result<Self> {
        let nodes = layers.into_iter().enumerate().map(|(k, l)| (l, vec![k])).collect();
        Network::graph(input_shape, nodes)
    }

    /// Builds a graph: node `k` is `(layer, values it reads)`, where value 0 is the network input and value
    /// `j + 1` the output of node `j` (so a node reads only values numbered `k` or less). The last node gives the
    /// network output; every other node's output must be read by some node.
    ///
    /// A batch norm is folded into the dense/conv node whose output it reads, if nothing else reads that output.
    pub fn graph(input_shape: Vec<usize>, nodes: Vec<(Layer, Vec<usize>)>) -> Result<Self> {
        if input_shape.is_empty() || input_shape.contains(&0) {
            return Err(CoreError::InvalidNetwork(format!(
                "input shape {input_shape:?} must have at least one dimension and no zero"
            )));
        }
        if input_shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .is_none_or(|n| n > MAX_VALUE_ELEMENTS)
        {
            return Err(CoreError::InvalidNetwork(format!(
                "input shape {input_shape:?} is too large"
            )));
        }
        if nodes.is_empty() {
            return Err(CoreError::InvalidNetwork("a network needs at least one layer".into()));
        }
        let count = nodes.len();
        let mut readers = vec![0usize; count + 1];
        for (k, (layer, inputs)) in nodes.iter().enumerate() {
            if let Some(&v) = inputs.iter().find(|&&v| v > k) {
                return Err(CoreError::InvalidLayer {
                    index: k,
                    kind: layer.kind().name(),
                    reason: format!("reads value {v}, which is not computed before it (values 0 to {k} are)"),
                });
            }
            for &v in inputs {
                readers[v] += 1;
            }
        }
        if let Some(v) = (1..count).find(|&v| readers[v] == 0) {
            return Err(CoreError::InvalidNetwork(format!(
                "the output of node n{} ({}) is read by nothing and is not the network output",
                v - 1,
                nodes[v - 1].0.kind().name()
            )));
        }
        // `map[v]`: the value of the built network that original value `v` became.
        let mut map: Vec<usize> = Vec::with_capacity(count + 1);
        map.push(0);
        let mut layers: Vec<Layer> = Vec::with_capacity(count);
        let mut wiring: Vec<Vec<usize>> = Vec::with_capacity(count);
        let mut shapes = vec![input_shape.clone()];
        // Layers whose weights a batch norm was folded into (by built index): `output_shape` checked them before.
        let mut refolded = vec![false; count];
        for (index, (layer, inputs)) in nodes.into_iter().enumerate() {
            let ins: Vec<usize> = inputs.iter().map(|&v| map[v]).collect();
            let in_shapes: Vec<&[usize]> = ins.iter().map(|&v| shapes[v].as_slice()).collect();
            // Validates the layer (batch norm included) against the shapes that reach it.
            let out = layer.output_shape(index, &in_shapes)?;
            let count = out.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if count.is_none_or(|n| n > MAX_VALUE_ELEMENTS) {
                return Err(CoreError::InvalidLayer {
                    index,
                    kind: layer.kind().name(),
                    reason: format!(
                        "its output {out:?} holds more than {MAX_VALUE_ELEMENTS} values per sample (the limit of this \
                         build)"
                    ),
                });
            }
            if let Layer::BatchNorm(bn) = &layer {
                let src = ins[0];
                let foldable = src > 0 && src == layers.len() && readers[inputs[0]] == 1;
                let folded = match layers.last_mut() {
                    Some(Layer::Dense(d)) if foldable && d.outputs() == bn.channels() && out.len() == 1 => {
                        bn.fold_into_dense(d);
                        true
                    }
                    Some(Layer::Conv2d(c)) if foldable => {
                        bn.fold_into_conv(c);
                        true
                    }
                    // No dense or conv layer right before it (a pre-activation DenseNet's batch norm after a
                    // concatenation): it stays, an affine map per channel with weights of its own.
                    _ => false,
                };
                if folded {
                    refolded[layers.len() - 1] = true;
                    map.push(src);
                    continue;
                }
            }
            layers.push(layer);
            wiring.push(ins);
            shapes.push(out);
            map.push(layers.len());
        }
        // Folding a batch norm can overflow (a huge scale over a tiny variance): refuse what would compute NaN.
        // (Scanned in place: collecting references to 138 M VGG-16 weights first was half of its loading.) Only the
        // layers folded into, and batch norms' own maps, change after `output_shape` checked them.
        // With the vectorised count where the values are in standard order (stored parameters are).
        fn finite<D: ndarray::Dimension>(v: &ndarray::Array<f32, D>) -> bool {
            match v.as_slice() {
                Some(s) => crate::simd::count_non_finite(s) == 0,
                None => v.iter().all(|x| x.is_finite()),
            }
        }
        for (index, layer) in layers.iter().enumerate() {
            if !refolded[index] && !matches!(layer, Layer::BatchNorm(_)) {
                continue;
            }
            let ok = match layer {
                Layer::Dense(d) => finite(&d.weight) && d.bias.as_ref().is_none_or(finite),
                Layer::Conv2d(c) => finite(&c.weight) && c.bias.as_ref().is_none_or(finite),
                Layer::BatchNorm(b) => {
                    let affine = b.affine();
                    finite(&affine.0) && finite(&affine.1)
                }
                _ => continue,
            };
            if !ok {
                return Err(CoreError::InvalidLayer {
                    index,
                    kind: layer.kind().name(),
                    reason: "has a non-finite weight or bias after folding its batch norm".into(),
                });
            }
        }
        let n = layers.len();
        let mut last_use = vec![0usize; n + 1];
        for (k, ins) in wiring.iter().enumerate() {
            for &v in ins {
                last_use[v] = last_use[v].max(k);
            }
        }
        last_use[n] = n;
        let mut first_use = vec![n; n + 1];
        for (k, ins) in wiring.iter().enumerate().rev() {
            for &v in ins {
                first_use[v] = k;
            }
        }
        let chain = wiring.iter().enumerate().all(|(k, ins)| ins == &[k]);
        Ok(Network {
            input_shape,
            layers,
            wiring,
            shapes,
            last_use,
            first_use,
            chain,
        })
    }

    /// Whether every layer reads the output of the one before it (no branches or joins).
    pub fn is_chain(&self) -> bool {
        self.chain
    }

    /// The values node `k` reads.
    pub fn inputs_of(&self, k: usize) -> &[usize] {
        &self.wiring[k]
    }

    /// The one name of node `k` everywhere (printouts, the viewer, `--layer`, messages): `#N` for the `N`-th layer
    /// with weights (0-based, in node order: the number rule specs use), `nK` for any other node.
    pub fn node_name(&self, k: usize) -> String {
        match self.weighted_index(k) {
            Some(n) => format!("#{n}"),
            None => format!("n{k}"),
        }
    }

    /// The position of node `k` among the layers with weights, if it has weights (the `#N` of rule specs).
    pub fn weighted_index(&self, k: usize) -> Option<usize> {
        if !self.layers.get(k)?.has_weights() {
            return None;
        }
        Some(self.layers[..k].iter().filter(|l| l.has_weights()).count())
    }

    /// The node that `name` (`#N` or `nK`) names, or why there is none.
    pub fn node_named(&self, name: &str) -> std::result::Result<usize, String> {
        let weighted = self.weighted_layers();
        let parse = |t: &str| t.parse::<usize>().ok();
        match (
            name.strip_prefix('#').and_then(parse),
            name.strip_prefix('n').and_then(parse),
        ) {
            (Some(n), _) => weighted.get(n).copied().ok_or_else(|| {
                format!(
                    "{name}: the network has {} layers with weights (#0 to #{})",
                    weighted.len(),
                    weighted.len().saturating_sub(1)
                )
            }),
            (_, Some(k)) if k < self.layers.len() => Ok(k),
            (_, Some(_)) => Err(format!(
                "{name}: the network has nodes n0 to n{}",
                self.layers.len().saturating_sub(1)
            )),
            _ => Err(format!(
                "'{name}' names no node: write #N for the N-th layer with weights (as rule specs do) or nK for node K \
                 (see lrp info)"
            )),
        }
    }

    /// A short name for value `v` in conservation tables: for a chain the node it enters (`#3 conv2d`,
    /// `n4 relu`), for a graph the node that wrote it (`after n3 add`); `input` and `output (logit)` at the ends.
    pub fn value_label(&self, v: usize) -> String {
        let n = self.layers.len();
        if v >= n {
            "output (logit)".to_string()
        } else if self.chain {
            format!("{:<3} {}", self.node_name(v), self.layers[v].kind().name())
        } else if v == 0 {
            "input".to_string()
        } else {
            format!("after {} {}", self.node_name(v - 1), self.layers[v - 1].kind().name())
        }
    }

    /// The nodes as `(layer, values it reads)`, the form [`Network::graph`] takes.
    pub fn nodes(&self) -> Vec<(Layer, Vec<usize>)> {
        self.layers.iter().cloned().zip(self.wiring.iter().cloned()).collect()
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

    /// Per-sample shape of value `v` (for a chain, the input of layer `v`; `v = layers().len()` gives the
    /// output shape).
    pub fn shape_at(&self, v: usize) -> &[usize] {
        &self.shapes[v]
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
        if let Some((sample, index, value)) = first_non_finite(x) {
            return Err(CoreError::NonFiniteInput { sample, index, value });
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
        if self.chain {
            let mut cur = x.to_owned();
            for (i, layer) in self.layers.iter().enumerate() {
                cur = layer.forward(&[cur.view()], &self.shapes[i + 1]);
            }
            return cur;
        }
        // Values are dropped after their last reader.
        let mut values: Vec<Option<ArrayD<f32>>> = vec![None; self.layers.len() + 1];
        values[0] = Some(x.to_owned());
        for k in 0..self.layers.len() {
            let out = self.node_forward(k, |v| values[v].as_ref().expect("read before its last use").view());
            for &v in &self.wiring[k] {
                if self.last_use[v] == k {
                    values[v] = None;
                }
            }
            values[k + 1] = Some(out);
        }
        values.pop().flatten().expect("the output is computed")
    }

    /// Runs node `k` on the values `get` returns.
    pub(crate) fn node_forward<'a>(&self, k: usize, get: impl Fn(usize) -> ArrayViewD<'a, f32>) -> ArrayD<f32> {
        let layer = &self.layers[k];
        match &self.wiring[k][..] {
            &[v] => layer.forward(&[get(v)], &self.shapes[k + 1]),
            many => {
                let xs: Vec<ArrayViewD<f32>> = many.iter().map(|&v| get(v)).collect();
                layer.forward(&xs, &self.shapes[k + 1])
            }
        }
    }

    /// Forward pass that keeps every value.
    pub fn forward_trace(&self, x: ArrayViewD<f32>) -> Result<Trace> {
        self.check_input(&x)?;
        let mut values: Vec<ArrayD<f32>> = Vec::with_capacity(self.layers.len() + 1);
        values.push(x.to_owned());
        for k in 0..self.layers.len() {
            let out = self.node_forward(k, |v| values[v].view());
            values.push(out);
        }
        let output = values.pop().expect("the output is computed");
        Ok(Trace { values, output })
    }

    /// Gradients of node `k`'s inputs for the gradient `g` of its output, through a trace.
    pub fn node_backward(&self, k: usize, trace: &Trace, g: ArrayViewD<f32>) -> Vec<ArrayD<f32>> {
        let xs: Vec<ArrayViewD<f32>> = self.wiring[k].iter().map(|&v| trace.value(v).view()).collect();
        self.layers[k].backward(&xs, g)
    }

    /// Runs `step` for every node from the last to the first with the gradient (or relevance) reaching its
    /// output, and sums what it returns for each input into that value (fan-out adds). Returns the network input's.
    /// A node whose output receives nothing gets zeros. `visit` sees each value's complete gradient (or relevance)
    /// once, before any node below reads it, and may change it (a concept condition masks channels there).
    pub fn reverse_accumulate(
        &self,
        seed: ArrayD<f32>,
        mut step: impl FnMut(usize, ArrayD<f32>) -> Vec<ArrayD<f32>>,
        mut visit: impl FnMut(usize, &mut ArrayD<f32>),
    ) -> ArrayD<f32> {
        let n = self.layers.len();
        let mut seed = seed;
        visit(n, &mut seed);
        if self.chain {
            let mut g = seed;
            for k in (0..n).rev() {
                g = step(k, g).pop().expect("one input");
                visit(k, &mut g);
            }
            return g;
        }
        let batch = seed.shape()[0];
        let mut acc: Vec<Option<ArrayD<f32>>> = vec![None; n + 1];
        acc[n] = Some(seed);
        for k in (0..n).rev() {
            let g = match acc[k + 1].take() {
                Some(g) => g,
                None => {
                    let mut shape = vec![batch];
                    shape.extend_from_slice(&self.shapes[k + 1]);
                    ArrayD::zeros(ndarray::IxDyn(&shape))
                }
            };
            let parts = step(k, g);
            for (&v, part) in self.wiring[k].iter().zip(parts) {
                match &mut acc[v] {
                    Some(a) => crate::par::zip_with(a, &part, |a, b| *a += b),
                    slot => *slot = Some(part),
                }
            }
            // A value is complete once its first reader has run.
            for (i, &v) in self.wiring[k].iter().enumerate() {
                if self.first_use[v] == k
                    && !self.wiring[k][..i].contains(&v)
                    && let Some(a) = acc[v].as_mut()
                {
                    visit(v, a);
                }
            }
        }
        acc[0].take().expect("the input is read by some node")
    }

    /// Gradient of `Σ g ⊙ output` with respect to the input, through a trace (no parameter gradients).
    pub fn input_gradient(&self, trace: &Trace, g: ArrayD<f32>) -> Result<ArrayD<f32>> {
        if g.shape() != trace.output.shape() {
            return Err(CoreError::shape("output gradient", trace.output.shape(), g.shape()));
        }
        Ok(self.reverse_accumulate(g, |k, g| self.node_backward(k, trace, g.view()), |_, _| {}))
    }

    /// Mutable access to the layers for training. Shapes must not change.
    pub(crate) fn layers_mut(&mut self) -> &mut [Layer] {
        &mut self.layers
    }

    /// A one-line description of each node: its name ([`Network::node_name`]), kind, output shape, parameters,
    /// details, and (in a graph) the nodes it reads.
    pub fn summary(&self) -> Vec<String> {
        self.layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let detail = match l {
                    Layer::Dense(d) => format!("{} → {}{}", d.inputs(), d.outputs(), bias_note(d.bias.is_some())),
                    Layer::Conv2d(c) => format!(
                        "{}→{} channels, kernel {}×{}, stride {:?}, pads {:?}{}{}{}",
                        c.in_channels(),
                        c.out_channels(),
                        c.window.kernel[0],
                        c.window.kernel[1],
                        c.window.stride,
                        c.window.pads,
                        if c.dilation == [1, 1] {
                            String::new()
                        } else {
                            format!(", dilation {:?}", c.dilation)
                        },
                        if c.groups == 1 {
                            String::new()
                        } else {
                            format!(", {} groups", c.groups)
                        },
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
                    Layer::Dropout(d) => format!("p = {}", d.p),
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
                    Layer::Concat(c) => format!("axis {}", c.axis),
                    Layer::Arith(a) => a.describe(),
                    Layer::Activation(a) => a.name(),
                    Layer::Pad(p) => format!("pads {:?}", p.pads),
                    Layer::Transpose(t) => format!("perm {:?}", t.perm),
                    Layer::Slice(s) => format!("axis {}, {}..{}", s.axis, s.start, s.end),
                    _ => String::new(),
                };
                let name = self.node_name(i);
                let from = if self.chain {
                    String::new()
                } else {
                    let names: Vec<String> = self.wiring[i]
                        .iter()
                        .map(|&v| {
                            if v == 0 {
                                "input".to_string()
                            } else {
                                self.node_name(v - 1)
                            }
                        })
                        .collect();
                    format!("  ← {}", names.join(", "))
                };
                format!(
                    "{name:<5} {:<10} {:<16} {:>9} params{}{from}",
                    l.kind().name(),
                    format!("{:?}", self.shapes[i + 1]),
                    l.param_count(),
                    if detail.is_empty() {
                        String::new()
                    } else {
                        format!("  {detail}")
                    }
                )
            })
            .collect()
    }
}

fn bias_note(has: bool) -> &'static str {
    if has { "" } else { ", no bias" }
}

#[cfg(test)]
mod first_non_finite_tests {
    use super::first_non_finite;
    use ndarray::ArrayD;

    #[test]
    fn finds_the_first_nan_or_infinity_anywhere() {
        let mut a = ArrayD::<f32>::from_shape_fn(ndarray::IxDyn(&[3, 1500]), |d| (d[0] * 7 + d[1]) as f32 * 1e-3);
        assert_eq!(first_non_finite(&a.view()), None);
        a[[0, 0]] = f32::MAX;
        a[[2, 1499]] = f32::MIN_POSITIVE / 2.0;
        assert_eq!(
            first_non_finite(&a.view()),
            None,
            "large and subnormal values are finite"
        );
        for (at, bad) in [
            ((2, 1499), f32::NAN),
            ((1, 1030), f32::INFINITY),
            ((0, 3), f32::NEG_INFINITY),
        ] {
            a[[at.0, at.1]] = bad;
            let (s, i, v) = first_non_finite(&a.view()).expect("found");
            assert_eq!((s, i), at);
            assert!(v.is_nan() == bad.is_nan() && (v.is_nan() || v == bad));
        }
        // A non-contiguous view takes the element-by-element path.
        let t = a.t();
        assert!(first_non_finite(&t.view()).is_some());
    }
}
