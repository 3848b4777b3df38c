//! Off the UI thread: explanations and predictions computed by a worker, newest request first.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

use lrp_core::Network;
use lrp_rules::{Explainer, Spec, Target};
use ndarray::{Array2, ArrayD, Axis, Ix2};

use crate::app::ClassChoice;
use crate::cells::to_map;
use crate::concept::{ConceptInputs, ConceptKey, ConceptView, ReferenceCache, concept_view};

/// What the viewer shows: models and a labelled dataset, or photos.
pub struct Shared {
    /// Name and network of each model.
    pub models: Vec<(String, Network)>,
    /// `[N, …]` images (the network inputs).
    pub images: ArrayD<f32>,
    /// `N` labels (empty for photos, which have none).
    pub labels: Vec<u8>,
    /// The inputs as colour photos, when they are photos.
    pub photos: Option<PhotoSet>,
    /// Class names, one per output (`--labels`).
    pub class_names: Option<Vec<String>>,
}

/// Photos shown in colour: each input as the picture it was made from, and its file name.
#[derive(Clone, Debug, Default)]
pub struct PhotoSet {
    /// `[H, W, 3]` in [0, 1], one per input.
    pub pictures: Vec<ndarray::Array3<f32>>,
    /// File names.
    pub names: Vec<String>,
}

/// Which input an explanation is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InputRef {
    /// A sample of the dataset.
    Sample(usize),
    /// A version of the drawing (draw mode); the request carries its pixels.
    Drawing(u64),
}

/// One explanation the viewer may need.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    /// Model index.
    pub model: usize,
    /// The input.
    pub input: InputRef,
    /// Rule spec.
    pub rule: String,
    /// Explained class: [`ClassChoice::Predicted`] or a [`ClassChoice::Class`] (a label is resolved first).
    pub class: ClassChoice,
    /// Also the relevance at every layer's input (the layer view).
    pub layers: bool,
    /// A concept to show (the concept screen).
    pub concept: Option<ConceptKey>,
}

/// The relevance at one layer's input, for the layer view.
#[derive(Clone, Debug)]
pub struct LayerData {
    /// The layer (node) number in the network.
    pub node: usize,
    /// Its name, as `lrp info` prints it: `#N` for the `N`-th layer with weights, `nK` for another node.
    pub name: String,
    /// What the layer is (`conv2d`).
    pub kind: String,
    /// The relevance at its input, one sample (no batch axis).
    pub relevance: ArrayD<f32>,
    /// What wrote that input (`matmul` for a transformer's attention output), `None` for the network input.
    pub writer: Option<String>,
}

/// Everything drawn for one explanation.
#[derive(Clone, Debug)]
pub struct ViewData {
    /// The input as a 2-D map.
    pub image: Array2<f32>,
    /// The relevance as a 2-D map.
    pub relevance: Array2<f32>,
    /// The logits.
    pub logits: Vec<f32>,
    /// The explained class.
    pub target: usize,
    /// `(layer, relevance sum at its input)`, the last entry the explained logit; empty for gradient methods.
    pub layer_sums: Vec<(String, f32)>,
    /// The relevance at each layer's input (one-input layers, in order), when the key asked for it.
    pub layers: Vec<LayerData>,
    /// The concept screen's data, when the key asked for a concept.
    pub concept: Option<Box<ConceptView>>,
}

impl ViewData {
    /// The predicted class.
    pub fn predicted(&self) -> usize {
        lrp_core::train::argmax_rows(
            ndarray::ArrayView1::from(&self.logits[..])
                .insert_axis(Axis(0))
                .into_dyn(),
        )[0]
    }

    /// Softmax of the logits.
    pub fn probabilities(&self) -> Vec<f32> {
        let max = self.logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let e: Vec<f32> = self.logits.iter().map(|&v| (v - max).exp()).collect();
        let sum: f32 = e.iter().sum();
        e.iter().map(|v| v / sum).collect()
    }
}

/// The images of samples `range` shaped for `net` (unit axes dropped or added as needed).
fn fit(shared: &Shared, net: &Network, range: std::ops::Range<usize>) -> Result<ArrayD<f32>, String> {
    let x = shared.images.slice_axis(Axis(0), range.clone().into());
    let mut shape = vec![range.len()];
    shape.extend_from_slice(net.input_shape());
    if x.shape() == &shape[..] {
        return Ok(x.to_owned());
    }
    if x.len() != shape.iter().product::<usize>() {
        return Err(format!(
            "images {:?} do not fit the model's input {:?}",
            &x.shape()[1..],
            net.input_shape()
        ));
    }
    x.as_standard_layout()
        .into_owned()
        .into_shape_with_order(shape)
        .map_err(|e| e.to_string())
}

/// A drawing (`H × W`) as a batch of one for `net`.
fn fit_drawing(net: &Network, drawing: &Array2<f32>) -> Result<ArrayD<f32>, String> {
    let mut shape = vec![1];
    shape.extend_from_slice(net.input_shape());
    if drawing.len() != shape.iter().product::<usize>() {
        return Err(format!(
            "a {}×{} drawing does not fit the model's input {:?}",
            drawing.nrows(),
            drawing.ncols(),
            net.input_shape()
        ));
    }
    drawing
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order(shape)
        .map_err(|e| e.to_string())
}

/// Explains one input (used by the worker; also handy in tests and benchmarks). A drawing key needs `drawing`,
/// the preprocessed pixels.
pub fn compute(
    shared: &Shared,
    key: &Key,
    explainer: &Explainer,
    drawing: Option<&Array2<f32>>,
) -> Result<ViewData, String> {
    compute_with(shared, key, explainer, drawing, &mut ReferenceCache::new())
}

/// [`compute`], keeping what reference samples cost in `refs` for the next concept key.
pub fn compute_with(
    shared: &Shared,
    key: &Key,
    explainer: &Explainer,
    drawing: Option<&Array2<f32>>,
    refs: &mut ReferenceCache,
) -> Result<ViewData, String> {
    let (_, net) = &shared.models[key.model];
    let x = match (key.input, drawing) {
        (InputRef::Sample(i), _) => fit(shared, net, i..i + 1)?,
        (InputRef::Drawing(_), Some(d)) => fit_drawing(net, d)?,
        (InputRef::Drawing(_), None) => return Err("no drawing to explain".into()),
    };
    let target = match key.class {
        ClassChoice::Class(c) => Target::Class(c),
        _ => Target::Predicted,
    };
    let layer_nodes: Vec<usize> = if key.layers {
        crate::app::layer_view_nodes(net)
    } else {
        Vec::new()
    };
    let keep: Vec<usize> = layer_nodes.iter().map(|&k| net.inputs_of(k)[0]).collect();
    let e = if key.layers {
        explainer.explain_keeping(x.view(), &target, &keep)
    } else {
        explainer.explain(x.view(), &target)
    }
    .map_err(|e| e.to_string())?;
    let layers = layer_nodes
        .iter()
        .zip(&e.kept)
        .map(|(&k, (_, r))| LayerData {
            node: k,
            name: net.node_name(k),
            kind: net.layers()[k].kind().name().to_string(),
            relevance: r.index_axis(Axis(0), 0).to_owned(),
            writer: net.inputs_of(k)[0]
                .checked_sub(1)
                .map(|w| net.layers()[w].kind().name().to_string()),
        })
        .collect();
    let logits = e
        .logits
        .view()
        .into_dimensionality::<Ix2>()
        .map_err(|e| e.to_string())?;
    let mut layer_sums: Vec<(String, f32)> = e
        .layer_sums
        .iter()
        .enumerate()
        .map(|(i, s)| {
            // Chains: the layer a value enters (`#3 conv2d`); graphs: the node that wrote it (`n13:avgpool2d`).
            let name = if i >= net.layers().len() {
                "logit".to_string()
            } else if net.is_chain() {
                net.value_label(i).split_whitespace().collect::<Vec<_>>().join(" ")
            } else if i == 0 {
                "input".to_string()
            } else {
                format!("{}:{}", net.node_name(i - 1), net.layers()[i - 1].kind().name())
            };
            (name, s[0])
        })
        .collect();
    if layer_sums.is_empty() {
        layer_sums.push(("input sum".into(), e.relevance.sum()));
    }
    let concept = match key.concept {
        Some(c) => {
            let inputs = ConceptInputs {
                net,
                explainer,
                x: &x,
                target: &Target::Class(e.targets[0]),
                pool: &|range| fit(shared, net, range),
                count: shared.images.shape()[0],
                labels: &shared.labels,
            };
            Some(Box::new(concept_view(&inputs, c, refs, (key.model, key.rule.clone()))?))
        }
        None => None,
    };
    Ok(ViewData {
        image: to_map(x.index_axis(Axis(0), 0)),
        relevance: to_map(e.relevance.index_axis(Axis(0), 0)),
        logits: logits.row(0).to_vec(),
        target: e.targets[0],
        layer_sums,
        layers,
        concept,
    })
}

/// Predicted class of every sample for one model.
pub fn predictions(shared: &Shared, model: usize) -> Result<Vec<usize>, String> {
    let (_, net) = &shared.models[model];
    let n = shared.labels.len();
    let mut out = Vec::with_capacity(n);
    for lo in (0..n).step_by(256) {
        let x = fit(shared, net, lo..(lo + 256).min(n))?;
        let logits = net.forward(x.view()).map_err(|e| e.to_string())?;
        out.extend(lrp_core::train::argmax_rows(logits.view()));
    }
    Ok(out)
}

/// A request to the worker.
#[derive(Clone, Debug)]
pub enum Request {
    /// One explanation (of a drawing: with its preprocessed pixels).
    Explain(Key, Option<Arc<Array2<f32>>>),
    /// Every prediction of a model (for `m`).
    Predictions(usize),
}

impl Request {
    fn same(&self, other: &Request) -> bool {
        match (self, other) {
            (Request::Explain(a, _), Request::Explain(b, _)) => {
                a == b
                    // A newer drawing makes the older ones' explanations moot.
                    || (matches!((a.input, b.input), (InputRef::Drawing(_), InputRef::Drawing(_))))
            }
            (Request::Predictions(a), Request::Predictions(b)) => a == b,
            _ => false,
        }
    }
}

/// A finished request.
#[derive(Clone, Debug)]
pub enum Response {
    /// An explanation, or why there is none.
    Explained(Key, Box<Result<ViewData, String>>),
    /// A model's predictions.
    Predictions(usize, Result<Vec<usize>, String>),
}

/// The worker thread and its channels.
pub struct Worker {
    tx: Sender<Request>,
    rx: Receiver<Response>,
}

impl Worker {
    /// Starts the worker.
    pub fn spawn(shared: Arc<Shared>) -> Worker {
        Worker::spawn_with(shared, Vec::new())
    }

    /// Starts the worker with reference samples computed before (`lrp concepts`).
    pub fn spawn_with(shared: Arc<Shared>, references: Vec<crate::concept::Precomputed>) -> Worker {
        let (tx, requests) = channel::<Request>();
        let (answers, rx) = channel::<Response>();
        std::thread::spawn(move || {
            let shared: &Shared = &shared;
            let mut explainers: HashMap<(usize, String), Result<Explainer<'_>, String>> = HashMap::new();
            let mut refs = ReferenceCache::new();
            for p in references {
                refs.insert((p.model, p.rule, p.layer), (p.normalized, p.source));
            }
            let mut stack: Vec<Request> = Vec::new();
            loop {
                if stack.is_empty() {
                    match requests.recv() {
                        Ok(r) => stack.push(r),
                        Err(_) => return,
                    }
                }
                stack.extend(requests.try_iter());
                let Some(req) = stack.pop() else { continue };
                stack.retain(|r| !r.same(&req));
                let answer = match req {
                    Request::Explain(key, drawing) => {
                        let ex = explainers.entry((key.model, key.rule.clone())).or_insert_with(|| {
                            let net = &shared.models[key.model].1;
                            Spec::parse(&key.rule)
                                .and_then(|s| Explainer::new(net, &s))
                                .map_err(|e| e.to_string())
                        });
                        let result = match ex {
                            Ok(ex) => compute_with(shared, &key, ex, drawing.as_deref(), &mut refs),
                            Err(e) => Err(e.clone()),
                        };
                        Response::Explained(key, Box::new(result))
                    }
                    Request::Predictions(m) => Response::Predictions(m, predictions(shared, m)),
                };
                if answers.send(answer).is_err() {
                    return;
                }
            }
        });
        Worker { tx, rx }
    }

    /// Queues a request.
    pub fn request(&self, r: Request) {
        let _ = self.tx.send(r);
    }

    /// A finished request, if any.
    pub fn try_recv(&self) -> Option<Response> {
        self.rx.try_recv().ok()
    }
}
