//! `resolve`: a spec checked against a network once, with every rule's modified maps prepared.

use lrp_core::{Activation, ArithOp, Layer, LayerKind, LayerNorm, Network, Pool2d};
use ndarray::{ArrayD, IxDyn};

use crate::error::{Result, RulesError};
use crate::linear::{LinearMap, Modifier};
use crate::rules::Rule;
use crate::spec::{Attribution, Method, Selector, Spec};

/// What the explainer does at one layer.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // one per layer, built once per plan
pub(crate) enum Step<'a> {
    /// ReLU, flatten, reshape, dropout: relevance passes unchanged (reshaped to the input).
    Pass,
    /// Winner-take-all.
    MaxPool(Pool2d),
    /// Proportional to the inputs.
    AvgPool(Pool2d),
    /// A rule on a dense or conv layer, with its maps prepared.
    Linear(Prepared<'a>),
    /// The LSTM rule of Arras et al. (2017) with this ε.
    Lstm(lrp_core::Lstm, f32),
    /// Sum of two values: split in proportion to each summand.
    Add,
    /// A constant added (`sign` = 1) or subtracted from (`sign` = −1) the input: it acts as a bias.
    Bias(f32),
    /// Pad, transpose, slice, concat: relevance goes back to where each output element came from.
    Route,
    /// An elementwise activation other than ReLU: relevance passes unchanged (the identity rule).
    Act(Activation),
    /// The mean over an axis: proportional, as average pooling.
    Mean(usize),
    /// Layer normalization with `σ` held constant (gradient form only).
    LayerNorm(LayerNorm),
    /// Softmax along an axis, linearized at its input (gradient form only).
    Softmax(usize),
    /// The product of two computed values, each factor taking half (gradient form only).
    MatMul,
    /// The elementwise product of two computed values: with `gate: Some(i)`, a gate (the other input is the
    /// output of a sigmoid or hard sigmoid) and input `i`, the signal, takes all the relevance (as an LSTM's gates
    /// do); with `None`, each factor takes half.
    Mul { gate: Option<usize> },
}

/// How relevance travels through a plan's network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// Relevance itself, divided by pre-activations at each rule (the classic form, for networks without
    /// transformer nodes).
    Relevance,
    /// A modified gradient `ĝ` with `R = x ⊙ ĝ` at every value (AttnLRP's form, needed by layer norms,
    /// softmaxes and products of two values; no stabilizer divides).
    Gradient,
}

/// A rule with the modified maps it needs, computed once.
#[derive(Clone, Debug)]
pub(crate) struct Prepared<'a> {
    pub rule: Rule,
    pub maps: Maps<'a>,
}

#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // one per layer, built once per plan
pub(crate) enum Maps<'a> {
    /// ε: the layer itself (its output comes from the trace).
    Plain(LinearMap<'a>),
    /// z⁺ and αβ: `W⁺, b⁺` and `W⁻, b⁻`.
    Signed { pos: LinearMap<'a>, neg: LinearMap<'a> },
    /// γ: `W + γW⁺, b + γb⁺` and `W + γW⁻, b + γb⁻`, and both stacked into one map (one product for the two
    /// forward maps and one for the two transposed ones), when the layer allows it.
    Gamma {
        p: LinearMap<'a>,
        n: LinearMap<'a>,
        both: Option<LinearMap<'a>>,
        plus: Option<GammaPlus>,
    },
    /// z^B: `W`, `W⁺`, `W⁻` (no bias), and the bounds at the layer's input (one sample, broadcast over the batch):
    /// the rule's scalars, mapped through any input normalization before the layer.
    /// `W⁺ low` and `W⁻ high` are computed once (`[1, …output]`), and terms whose bound is 0 everywhere are
    /// skipped (they contribute exact zeros).
    ZBox {
        w: LinearMap<'a>,
        pos: LinearMap<'a>,
        neg: LinearMap<'a>,
        low: ArrayD<f32>,
        high: ArrayD<f32>,
        pos_low: Option<ArrayD<f32>>,
        neg_high: Option<ArrayD<f32>>,
        bias: Option<ArrayD<f32>>,
    },
    /// w² and flat: the modified map and its (input-independent) denominator `M·1` for one sample.
    Uniform { map: LinearMap<'a>, denom: ArrayD<f32> },
}

impl<'a> Maps<'a> {
    /// The layer's own map, or the modified one the rule uses (all share the layer's kind and shapes).
    pub(crate) fn map(&self) -> &LinearMap<'a> {
        match self {
            Maps::Plain(m) | Maps::Uniform { map: m, .. } | Maps::ZBox { w: m, .. } => m,
            Maps::Signed { pos, .. } => pos,
            Maps::Gamma { p, .. } => p,
        }
    }
}

/// The γ rule's two forward maps from one product: with `P = W⁺x` and the layer's own output `z = Wx + b`
/// (from the trace), `z⁺ = z + γ(P + b⁺)` and `z⁻ = z + γ(z − b − P + b⁻)` (as `W⁻ = W − W⁺`). Biases one value
/// per output channel.
#[derive(Clone, Debug)]
pub(crate) struct GammaPlus {
    pub w_pos: LinearMap<'static>,
    pub gamma: f32,
    pub bias: Vec<f32>,
    pub bias_pos: Vec<f32>,
    pub bias_neg: Vec<f32>,
}

/// A layer's bias shaped to broadcast over its output `[N, O, …]` of rank `ndim`.
fn shaped_bias(map: &LinearMap, ndim: usize) -> Option<ArrayD<f32>> {
    let mut shape = vec![1, map.outputs()];
    shape.resize(ndim.max(2), 1);
    map.bias().map(|b| {
        b.clone()
            .into_shape_with_order(IxDyn(&shape))
            .expect("one value per output")
    })
}

impl GammaPlus {
    pub(crate) fn new(map: &LinearMap, gamma: f32) -> GammaPlus {
        let b: Vec<f32> = map.bias().map_or_else(|| vec![0.0; map.outputs()], |b| b.to_vec());
        GammaPlus {
            w_pos: map.modified(Modifier::Positive),
            gamma,
            bias_pos: b.iter().map(|v| v.max(0.0)).collect(),
            bias_neg: b.iter().map(|v| v.min(0.0)).collect(),
            bias: b,
        }
    }
}

/// How a spec is carried out on a particular network.
#[derive(Clone, Debug)]
pub struct Plan<'a> {
    spec: Spec,
    kind: PlanKind<'a>,
    layer_count: usize,
    form: Form,
    /// The stabilizer of the proportional nodes (sums, biases, average pooling, means) in the gradient form: 0
    /// when every layer takes LRP-0 (AttnLRP: no stabilizer anywhere), else the Graphs convention's 1e-6.
    node_stab: f32,
}

#[derive(Clone, Debug)]
pub(crate) enum PlanKind<'a> {
    Lrp(Vec<Step<'a>>),
    Attribution(Attribution),
}

/// The bounds `low`/`high` (in the units of the network input) at the input of node `k`: mapped through the
/// constant `Add`/`Sub`/`Mul`/`Div` (input normalization) and reshapes between the network input and the node.
/// Where anything else stands between them, the bounds are taken as given, in the units of the node's input.
fn zbox_bounds(net: &Network, k: usize, low: f32, high: f32) -> (ArrayD<f32>, ArrayD<f32>) {
    let target = net.inputs_of(k)[0];
    let scalar = |v: f32| ArrayD::from_elem(IxDyn(net.shape_at(target)), v);
    // The nodes from the input to node k's input, if they form such a chain.
    let mut path = Vec::new();
    let mut v = target;
    while v != 0 {
        let j = v - 1;
        match net.layers()[j] {
            Layer::Arith(_) | Layer::Reshape(_) | Layer::Flatten(lrp_core::Flatten) | Layer::Dropout(_) => path.push(j),
            _ => return (scalar(low), scalar(high)),
        }
        v = net.inputs_of(j)[0];
    }
    let mut lo = ArrayD::from_elem(IxDyn(net.input_shape()), low);
    let mut hi = ArrayD::from_elem(IxDyn(net.input_shape()), high);
    for &j in path.iter().rev() {
        let shape = IxDyn(net.shape_at(j + 1));
        match &net.layers()[j] {
            Layer::Arith(a) => {
                let c = &a.value;
                let (l, h) = match a.op {
                    ArithOp::Add => (&lo + c, &hi + c),
                    ArithOp::Sub => (&lo - c, &hi - c),
                    ArithOp::SubFrom => (c - &hi, c - &lo),
                    ArithOp::Mul => (&lo * c, &hi * c),
                    ArithOp::Div => (&lo / c, &hi / c),
                };
                // A negative scale swaps the ends.
                lo = ndarray::Zip::from(&l).and(&h).map_collect(|&a, &b| a.min(b));
                hi = ndarray::Zip::from(&l).and(&h).map_collect(|&a, &b| a.max(b));
            }
            _ => {
                lo = lo.into_shape_with_order(shape.clone()).expect("same element count");
                hi = hi.into_shape_with_order(shape).expect("same element count");
            }
        }
    }
    (lo, hi)
}

fn prepare<'a>(rule: Rule, layer: &'a Layer, in_shape: &[usize], net: &Network, k: usize) -> Prepared<'a> {
    let map = LinearMap::of(layer).expect("rules are only assigned to layers with weights");
    // A dense layer on the last axis of a larger value works on rows: its maps see one row per sample.
    let rows = matches!(layer, Layer::Dense(_)) && in_shape.len() > 1;
    let in_shape = if rows {
        &in_shape[in_shape.len() - 1..]
    } else {
        in_shape
    };
    let maps = match rule {
        Rule::Epsilon(_) => Maps::Plain(map),
        Rule::ZPlus | Rule::AlphaBeta(..) => Maps::Signed {
            pos: map.modified(Modifier::Positive),
            neg: map.modified(Modifier::Negative),
        },
        Rule::Gamma(g) => {
            let p = map.modified(Modifier::GammaPositive(g));
            let n = map.modified(Modifier::GammaNegative(g));
            let both = LinearMap::stacked(&p, &n);
            let plus = both.is_some().then(|| GammaPlus::new(&map, g));
            Maps::Gamma { p, n, both, plus }
        }
        Rule::ZBox(l, h) => {
            let (low, high) = zbox_bounds(net, k, l, h);
            let (low, high) = if rows {
                (row_bound(low, l), row_bound(high, h))
            } else {
                (low, high)
            };
            let pos = map.modified(Modifier::Positive);
            let neg = map.modified(Modifier::Negative);
            let once = |m: &LinearMap, bound: &ArrayD<f32>| {
                (bound.iter().any(|&v| v != 0.0)).then(|| m.forward(bound.view().insert_axis(ndarray::Axis(0)), false))
            };
            let (pos_low, neg_high) = (once(&pos, &low), once(&neg, &high));
            let bias = shaped_bias(&map, in_shape.len() + 1);
            Maps::ZBox {
                bias,
                pos,
                neg,
                w: map,
                low,
                high,
                pos_low,
                neg_high,
            }
        }
        Rule::WSquare | Rule::Flat => {
            let m = map.modified(if rule == Rule::Flat {
                Modifier::Ones
            } else {
                Modifier::Square
            });
            let mut one = vec![1];
            one.extend_from_slice(in_shape);
            let denom = m.forward(ArrayD::ones(IxDyn(&one)).view(), false);
            Maps::Uniform { map: m, denom }
        }
    };
    Prepared { rule, maps }
}

/// For a product of two values (node `k`): the input that is the signal when the other is a gate, the output of a
/// sigmoid or hard sigmoid (a squeeze-excitation block; an activation `x ⊙ σ(x)` of one value is imported as one
/// activation, not as a product).
fn gate_of(net: &Network, k: usize) -> Option<usize> {
    let is_gate = |v: usize| {
        v > 0
            && matches!(
                net.layers()[v - 1],
                Layer::Activation(Activation::Sigmoid | Activation::HardSigmoid(..))
            )
    };
    match *net.inputs_of(k) {
        [a, b] if is_gate(b) && !is_gate(a) => Some(0),
        [a, b] if is_gate(a) && !is_gate(b) => Some(1),
        _ => None,
    }
}

/// Whether value `v` is the network input, directly or through flattens, reshapes and dropouts only (the same
/// elements in another shape).
pub(crate) fn reshaped_input(net: &Network, mut v: usize) -> bool {
    while v != 0 {
        match net.layers()[v - 1] {
            Layer::Flatten(lrp_core::Flatten) | Layer::Reshape(_) | Layer::Dropout(_) => v = net.inputs_of(v - 1)[0],
            _ => return false,
        }
    }
    true
}

/// Bounds for a dense layer on rows: its last axis, when every row has the same bounds; else the rule's scalar.
fn row_bound(b: ArrayD<f32>, scalar: f32) -> ArrayD<f32> {
    let d = *b.shape().last().expect("at least one axis");
    let flat: Vec<f32> = b.iter().copied().collect();
    let first = flat[..d].to_vec();
    if flat.chunks(d).all(|c| c == &first[..]) {
        ArrayD::from_shape_vec(IxDyn(&[d]), first).expect("d values")
    } else {
        ArrayD::from_elem(IxDyn(&[d]), scalar)
    }
}

/// The layers with weights that read the network input directly or through nodes without weights only
/// (in a chain, the first layer with weights; in an inception block, every branch's first convolution).
pub fn first_layers(net: &Network) -> Vec<usize> {
    let n = net.layers().len();
    // behind[v]: whether computing value v passes through a layer with weights.
    let mut behind = vec![false; n + 1];
    let mut first = Vec::new();
    for (k, layer) in net.layers().iter().enumerate() {
        let after_weights = net.inputs_of(k).iter().any(|&v| behind[v]);
        if layer.has_weights() {
            if !after_weights {
                first.push(k);
            }
            behind[k + 1] = true;
        } else {
            behind[k + 1] = after_weights;
        }
    }
    first
}

impl<'a> Plan<'a> {
    /// Checks `spec` against `net` and prepares every rule. Errors name the layer, selector or number at fault.
    pub fn resolve(spec: &Spec, net: &'a Network) -> Result<Plan<'a>> {
        let form = if net.layers().iter().any(Layer::needs_gradient_form) {
            Form::Gradient
        } else {
            Form::Relevance
        };
        Plan::resolve_in(spec, net, form)
    }

    /// Like [`Plan::resolve`], in the given form. Networks with transformer nodes need the gradient form (asking
    /// for the relevance form is an error); any other network can be explained in either, with the same result
    /// up to float rounding (the proportional rules of sums, biases and average pooling then have no stabilizer).
    pub fn resolve_in(spec: &Spec, net: &'a Network, form: Form) -> Result<Plan<'a>> {
        if form == Form::Relevance
            && let Some(k) = net.layers().iter().position(Layer::needs_gradient_form)
        {
            return Err(RulesError::RuleNotForLayer {
                spec: spec.to_string(),
                layer: k,
                name: net.node_name(k),
                kind: net.layers()[k].kind().name(),
                rule: spec.to_string(),
                reason: "this node's rule exists only in the gradient form".into(),
            });
        }
        let layer_count = net.layers().len();
        let assigns = match spec.method() {
            Method::Attribution(a) => {
                return Ok(Plan {
                    spec: spec.clone(),
                    kind: PlanKind::Attribution(*a),
                    layer_count,
                    form: Form::Gradient,
                    node_stab: 0.0,
                });
            }
            Method::Lrp(assigns) => assigns,
        };
        let weighted = net.weighted_layers();
        let first = first_layers(net);
        let mut chosen: Vec<Option<Rule>> = vec![None; weighted.len()];
        for a in assigns {
            if let Selector::Index(n) = a.selector
                && n >= weighted.len()
            {
                return Err(RulesError::IndexOutOfRange {
                    spec: spec.to_string(),
                    index: n,
                    count: weighted.len(),
                });
            }
            for (pos, &layer) in weighted.iter().enumerate() {
                let kind = net.layers()[layer].kind();
                let hit = match a.selector {
                    Selector::All => true,
                    Selector::First => first.contains(&layer),
                    // A standalone batch norm takes the dense layers' rule (an affine map of one input each).
                    Selector::Dense => matches!(kind, LayerKind::Dense | LayerKind::BatchNorm),
                    Selector::Conv => kind == LayerKind::Conv2d,
                    Selector::Lstm => kind == LayerKind::Lstm,
                    Selector::Index(n) => n == pos,
                };
                if hit {
                    chosen[pos] = Some(a.rule);
                }
            }
        }
        let mut steps = Vec::with_capacity(layer_count);
        let mut pos = 0;
        for (i, layer) in net.layers().iter().enumerate() {
            // The rule of the next layer with weights; every such layer must have one.
            let mut next_rule = || {
                let rule = chosen[pos].ok_or_else(|| RulesError::Unassigned {
                    spec: spec.to_string(),
                    layer: i,
                    weighted: pos,
                    kind: layer.kind().name(),
                });
                pos += 1;
                rule
            };
            steps.push(match layer {
                Layer::Dense(_) | Layer::Conv2d(_) | Layer::BatchNorm(_) => {
                    let rule = next_rule()?;
                    // In the gradient form a rule whose result is not `x ⊙ (something)` can only end the pass.
                    if form == Form::Gradient
                        && matches!(rule, Rule::ZBox(..) | Rule::WSquare | Rule::Flat)
                        && !reshaped_input(net, net.inputs_of(i)[0])
                    {
                        return Err(RulesError::RuleNotForLayer {
                            spec: spec.to_string(),
                            layer: i,
                            name: net.node_name(i),
                            kind: layer.kind().name(),
                            rule: rule.to_string(),
                            reason: "in the gradient form (transformers) this rule applies only to a layer that reads \
                                     the network input, directly or through reshapes"
                                .into(),
                        });
                    }
                    Step::Linear(prepare(rule, layer, net.shape_at(net.inputs_of(i)[0]), net, i))
                }
                Layer::Lstm(_) if form == Form::Gradient => {
                    return Err(RulesError::RuleNotForLayer {
                        spec: spec.to_string(),
                        layer: i,
                        name: net.node_name(i),
                        kind: "lstm",
                        rule: next_rule()?.to_string(),
                        reason: "an LSTM in a network with transformer nodes is not supported".into(),
                    });
                }
                Layer::Lstm(l) => match next_rule()? {
                    Rule::Epsilon(e) => Step::Lstm(l.clone(), e),
                    other => {
                        return Err(RulesError::RuleNotForLayer {
                            spec: spec.to_string(),
                            layer: i,
                            name: net.node_name(i),
                            kind: "lstm",
                            rule: other.to_string(),
                            reason: "an LSTM takes epsilon only (Arras et al. 2017); assign it with 'lstm=epsilon(e)'"
                                .into(),
                        });
                    }
                },
                Layer::MaxPool2d(p) => Step::MaxPool(*p),
                Layer::AvgPool2d(p) => Step::AvgPool(*p),
                Layer::Add(lrp_core::Add) => Step::Add,
                Layer::Arith(a) => match a.op {
                    ArithOp::Add | ArithOp::Sub => Step::Bias(1.0),
                    ArithOp::SubFrom => Step::Bias(-1.0),
                    ArithOp::Mul | ArithOp::Div => Step::Pass,
                },
                Layer::Concat(_)
                | Layer::Pad(_)
                | Layer::Transpose(_)
                | Layer::Slice(_)
                | Layer::Insert(_)
                | Layer::Take(_) => Step::Route,
                Layer::Mul(_) => Step::Mul { gate: gate_of(net, i) },
                Layer::Activation(a) => Step::Act(a.clone()),
                Layer::Mean(m) => Step::Mean(m.axis),
                Layer::LayerNorm(l) => Step::LayerNorm(l.clone()),
                Layer::Softmax(s) => Step::Softmax(s.axis),
                Layer::MatMul(lrp_core::MatMul) => Step::MatMul,
                _ => Step::Pass,
            });
        }
        let lrp0 = chosen.iter().all(|r| matches!(r, Some(Rule::Epsilon(e)) if *e == 0.0));
        Ok(Plan {
            spec: spec.clone(),
            kind: PlanKind::Lrp(steps),
            layer_count,
            form,
            node_stab: if lrp0 { 0.0 } else { crate::numerics::STABILIZER },
        })
    }

    /// The spec this plan carries out.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The rule of each layer with weights, as `(layer index, rule)`; empty for gradient-based attributions.
    pub fn rules(&self) -> Vec<(usize, Rule)> {
        match &self.kind {
            PlanKind::Lrp(steps) => steps
                .iter()
                .enumerate()
                .filter_map(|(i, s)| match s {
                    Step::Linear(p) => Some((i, p.rule)),
                    Step::Lstm(_, e) => Some((i, Rule::Epsilon(*e))),
                    _ => None,
                })
                .collect(),
            PlanKind::Attribution(_) => Vec::new(),
        }
    }

    /// How relevance travels: as itself, or as a modified gradient (networks with transformer nodes).
    pub fn form(&self) -> Form {
        self.form
    }

    /// The stabilizer of sums, biases, average pooling and means in the gradient form (0 under LRP-0 everywhere).
    pub fn node_stabilizer(&self) -> f32 {
        self.node_stab
    }

    /// Whether this is an LRP plan (with per-layer relevance) rather than a gradient-based attribution.
    pub fn is_lrp(&self) -> bool {
        matches!(self.kind, PlanKind::Lrp(_))
    }

    pub(crate) fn kind(&self) -> &PlanKind<'a> {
        &self.kind
    }

    pub(crate) fn layer_count(&self) -> usize {
        self.layer_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lrp_core::{Conv2d, Dense, Flatten};
    use ndarray::{Array1, Array2, Array4};

    /// The weights each step's maps read from, by address.
    fn weight_addresses(m: &LinearMap) -> *const f32 {
        match m {
            LinearMap::Dense(d) => d.weight.as_ptr(),
            LinearMap::Conv(c) => c.weight.as_ptr(),
            LinearMap::Affine { scale, .. } => scale.as_ptr(),
        }
    }

    /// ε and z^B use a layer's own weights as they are: the plan reads them where the network keeps them instead of
    /// copying them (for VGG-16 a copy was 528 MB of fresh memory per plan). The rules that modify weights own
    /// their modified copies.
    #[test]
    fn rules_on_the_layers_own_weights_borrow_them() {
        let conv = Conv2d::new(
            Array4::from_shape_fn((4, 2, 3, 3), |(o, i, y, x)| ((o * 7 + i * 3 + y + x) % 5) as f32 - 2.0),
            Some(Array1::from_elem(4, 0.1)),
            [1, 1],
            [1, 1, 1, 1],
        );
        let dense = Dense::new(
            Array2::from_shape_fn((3, 4 * 5 * 5), |(o, i)| ((o + i) % 3) as f32 - 1.0),
            None,
        );
        let net = Network::new(
            vec![2, 5, 5],
            vec![Layer::Conv2d(conv), Layer::Flatten(Flatten), Layer::Dense(dense)],
        )
        .unwrap();
        let own = [
            match &net.layers()[0] {
                Layer::Conv2d(c) => c.weight.as_ptr(),
                _ => unreachable!(),
            },
            match &net.layers()[2] {
                Layer::Dense(d) => d.weight.as_ptr(),
                _ => unreachable!(),
            },
        ];
        let maps_of = |spec: &str| -> Vec<Vec<*const f32>> {
            let spec = Spec::parse(spec).unwrap();
            let plan = Plan::resolve(&spec, &net).unwrap();
            let PlanKind::Lrp(steps) = plan.kind() else {
                panic!("an LRP plan")
            };
            steps
                .iter()
                .filter_map(|s| match s {
                    Step::Linear(p) => Some(match &p.maps {
                        Maps::Plain(m) => vec![weight_addresses(m)],
                        Maps::ZBox { w, pos, neg, .. } => {
                            vec![weight_addresses(w), weight_addresses(pos), weight_addresses(neg)]
                        }
                        Maps::Signed { pos, neg } => vec![weight_addresses(pos), weight_addresses(neg)],
                        Maps::Gamma { p, n, .. } => vec![weight_addresses(p), weight_addresses(n)],
                        Maps::Uniform { map, .. } => vec![weight_addresses(map)],
                    }),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(maps_of("epsilon"), vec![vec![own[0]], vec![own[1]]]);
        let zbox = maps_of("first=zbox(-1,1); dense=epsilon");
        assert_eq!((zbox[0][0], zbox[1][0]), (own[0], own[1]));
        assert!(
            zbox[0][1..].iter().all(|p| !own.contains(p)),
            "W⁺ and W⁻ are new weights"
        );
        for p in maps_of("gamma(0.25)").concat() {
            assert!(!own.contains(&p), "γ's modified weights must not alias the layer's");
        }
    }
}
