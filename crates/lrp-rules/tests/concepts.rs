//! Concept Relevance Propagation against zennit-crp 0.6 (float64 references, `tests/fixtures/crp/`): every case of
//! the manifest through the public API, to `1e-5 · max|R_ref|` per sample; RelMax and ActMax rankings over the first
//! 2,000 MNIST test images equal but between samples whose normalized values differ by less than 1e-6; and the
//! partition property (the conditional heatmaps of a partition of a layer's channels add up to the unconditional
//! heatmap) on the CRP CNN, the shipped ResNet and a graph with a depthwise convolution.

use std::path::PathBuf;

use lrp_rules::concepts::{normalized, top_samples};
use lrp_rules::{Channels, ConceptLayer, Condition, Explainer, Spec, Target};
use lrp_testkit::{max_abs, repo_root, worst_relative_error};
use ndarray::{Array1, Array2, ArrayD, Axis};

const TOLERANCE: f32 = 1e-5;

fn crp(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/crp").join(name)
}

fn manifest() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(crp("manifest.json")).unwrap()).unwrap()
}

fn net() -> lrp_core::Network {
    lrp_onnx::import_file(&crp("mnist-cnn-crp.onnx")).unwrap().network
}

fn read<T: ndarray_npy::ReadableElement, D: ndarray::Dimension>(name: &str) -> ndarray::Array<T, D> {
    ndarray_npy::read_npy(crp(name)).unwrap()
}

fn targets() -> Target {
    let t: Array1<i64> = read("mnist-cnn-crp-targets.npy");
    Target::PerSample(t.iter().map(|&t| t as usize).collect())
}

/// A case's channels: one list for every sample, one per sample, or the channels file (one channel per sample).
fn channels_of(case: &serde_json::Value) -> Channels {
    if let Some(file) = case["channels_file"].as_str() {
        let c: Array1<i64> = read(file);
        return Channels::PerSample(c.iter().map(|&c| vec![c as usize]).collect());
    }
    let list = case["channels"].as_array().unwrap();
    if list[0].is_array() {
        Channels::PerSample(
            list.iter()
                .map(|l| {
                    l.as_array()
                        .unwrap()
                        .iter()
                        .map(|c| c.as_u64().unwrap() as usize)
                        .collect()
                })
                .collect(),
        )
    } else {
        Channels::Same(list.iter().map(|c| c.as_u64().unwrap() as usize).collect())
    }
}

#[test]
fn every_crp_case_matches_zennit_crp() {
    let m = manifest();
    let net = net();
    let x: ArrayD<f32> = read("inputs.npy");
    let logits: ArrayD<f32> = read("mnist-cnn-crp-logits.npy");
    let out = net.forward(x.view()).unwrap();
    assert!(
        worst_relative_error(&out, &logits) < 1e-5,
        "the model's logits are not the reference's"
    );
    let mut report = Vec::new();
    let mut checked = 0;
    for case in m["cases"].as_array().unwrap() {
        let kind = case["kind"].as_str().unwrap();
        if kind == "relmax" || kind == "actmax" {
            continue;
        }
        let spec = Spec::parse(case["spec"].as_str().unwrap()).unwrap();
        let ex = Explainer::new(&net, &spec).unwrap();
        let layer = case["layer"].as_u64().unwrap() as usize;
        let (got, reference): (ArrayD<f32>, ArrayD<f32>) = match kind {
            "concept-relevance" => {
                let e = ex.explain_concepts(x.view(), &targets(), &[], &[layer]).unwrap();
                (e.relevance[0].clone().into_dyn(), read(case["file"].as_str().unwrap()))
            }
            "conditional-heatmap" => {
                let cond = Condition {
                    layer,
                    channels: channels_of(case),
                };
                let e = ex.explain_concepts(x.view(), &targets(), &[cond], &[]).unwrap();
                (e.explanation.relevance, read(case["file"].as_str().unwrap()))
            }
            "decomposition" => {
                let cond = Condition {
                    layer: case["condition_layer"].as_u64().unwrap() as usize,
                    channels: channels_of(case),
                };
                let e = ex.explain_concepts(x.view(), &targets(), &[cond], &[layer]).unwrap();
                (e.relevance[0].clone().into_dyn(), read(case["file"].as_str().unwrap()))
            }
            other => panic!("unknown case kind {other}"),
        };
        let err = worst_relative_error(&got, &reference);
        report.push(format!("{} {kind} {}: {err:.2e}", case["rule"], case["file"]));
        checked += 1;
        assert!(err <= TOLERANCE, "{}\n{}", report.last().unwrap(), report.join("\n"));
    }
    assert_eq!(checked, 14, "the manifest has 14 cases on the 16 inputs");
    println!("{}", report.join("\n"));
}

/// Two rankings agree when, wherever they differ, the samples they put there have normalized values within 1e-6.
fn assert_same_ranking(got: &Array2<i64>, reference: &Array2<i64>, values: &Array2<f32>, what: &str) {
    assert_eq!(got.dim(), reference.dim(), "{what}: shapes");
    let mut ties = 0;
    for c in 0..got.ncols() {
        for r in 0..got.nrows() {
            let (a, b) = (got[[r, c]] as usize, reference[[r, c]] as usize);
            if a != b {
                let gap = (values[[a, c]] - values[[b, c]]).abs();
                assert!(
                    gap < 1e-6,
                    "{what}: channel {c}, place {r}: sample {a} here, {b} in the reference ({gap:.2e} apart)"
                );
                ties += 1;
            }
        }
    }
    println!("{what}: rankings equal but for {ties} places between near-ties");
}

#[test]
fn relevance_and_activation_maximization_over_2000_test_images_match_zennit_crp() {
    let m = manifest();
    let net = net();
    let data = lrp_core::Dataset::load(&repo_root().join("data/mnist"), lrp_core::Split::Test).unwrap();
    let x = data.images.slice_axis(Axis(0), (0..2000).into()).into_dyn();
    let labels = Target::PerSample(data.labels[..2000].iter().map(|&l| l as usize).collect());
    for case in m["cases"].as_array().unwrap() {
        let kind = case["kind"].as_str().unwrap();
        if kind != "relmax" && kind != "actmax" {
            continue;
        }
        let layer = case["layer"].as_u64().unwrap() as usize;
        let spec = case["spec"].as_str().unwrap_or("epsilon");
        let ex = Explainer::new(&net, &Spec::parse(spec).unwrap()).unwrap();
        let e = ex.explain_concepts(x.view(), &labels, &[], &[layer]).unwrap();
        let raw = if kind == "relmax" {
            &e.relevance[0]
        } else {
            &e.activation[0]
        };
        let got = normalized(raw);
        let reference: Array2<f32> = read(case["normalized_file"].as_str().unwrap());
        let err = worst_relative_error(&got, &reference);
        assert!(err <= TOLERANCE, "{kind} normalized values: {err:.2e}");
        let k = case["k"].as_u64().unwrap() as usize;
        let top = top_samples(&got, k);
        let ref_top: Array2<i64> = read(case["top_file"].as_str().unwrap());
        assert_same_ranking(&top, &ref_top, &reference, kind);
        println!("{kind}: normalized within {err:.2e}");
    }
}

/// The conditional heatmaps of `#layer` for each part of a partition of its channels.
fn partition_heatmaps(ex: &Explainer, x: &ArrayD<f32>, layer: usize, parts: &[Vec<usize>]) -> Vec<ArrayD<f32>> {
    parts
        .iter()
        .map(|part| {
            let cond = Condition {
                layer,
                channels: Channels::Same(part.clone()),
            };
            ex.explain_concepts(x.view(), &Target::Predicted, &[cond], &[])
                .unwrap()
                .explanation
                .relevance
        })
        .collect()
}

/// Two partitions of `0..channels`: three uneven parts (every third channel, the rest split at the middle) and two
/// (the lower half, the upper half).
fn partitions(channels: usize) -> [Vec<Vec<usize>>; 2] {
    let thirds: Vec<usize> = (0..channels).step_by(3).collect();
    let rest: Vec<usize> = (0..channels).filter(|c| c % 3 != 0).collect();
    let (a, b) = rest.split_at(rest.len() / 2);
    [
        vec![thirds, a.to_vec(), b.to_vec()],
        vec![(0..channels / 2).collect(), (channels / 2..channels).collect()],
    ]
}

fn sum(parts: &[ArrayD<f32>]) -> ArrayD<f32> {
    parts.iter().fold(ArrayD::zeros(parts[0].raw_dim()), |acc, p| acc + p)
}

/// Conditional heatmaps of a partition of the channels of `#layer` add up to the unconditional heatmap, where every
/// path from the output to the input passes through `#layer`.
fn assert_partition_adds_up(net: &lrp_core::Network, spec: &str, x: &ArrayD<f32>, layer: usize) {
    let ex = Explainer::new(net, &Spec::parse(spec).unwrap()).unwrap();
    let whole = ex.explain(x.view(), &Target::Predicted).unwrap().relevance;
    let channels = ConceptLayer::of(net, layer).unwrap().channels;
    let scale = max_abs(whole.iter());
    for parts in partitions(channels) {
        let heatmaps = partition_heatmaps(&ex, x, layer, &parts);
        for h in &heatmaps {
            // A condition that keeps some channels changes the heatmap.
            assert!(lrp_testkit::max_abs_diff(h, &whole) > 1e-3 * scale);
        }
        let err = lrp_testkit::max_abs_diff(&sum(&heatmaps), &whole) / scale;
        assert!(
            err < 1e-5,
            "{spec} at #{layer}: the parts add up to within {err:.2e} of the whole"
        );
    }
}

#[test]
fn conditional_heatmaps_of_a_partition_add_up_to_the_heatmap() {
    let x: ArrayD<f32> = read("inputs.npy");
    let cnn = net();
    for layer in 0..3 {
        assert_partition_adds_up(&cnn, "epsilon-gamma-box", &x, layer);
        assert_partition_adds_up(&cnn, "epsilon-plus-flat", &x, layer);
    }
    // The ResNet's first convolution and its dense layer: every path passes through them.
    let resnet = resnet();
    assert_partition_adds_up(&resnet, "epsilon-plus-flat", &x, 0);
    assert_partition_adds_up(&resnet, "epsilon-gamma-box", &x, 9);
}

fn resnet() -> lrp_core::Network {
    lrp_core::Model::load(&repo_root().join("data/models/mnist-resnet.lrpm"))
        .unwrap()
        .network
}

/// Beside a skip connection the relevance that goes around `#N` is not conditioned (as in zennit-crp, which masks
/// the layer's output only): the parts of a partition add up to the whole plus that bypass once per extra part —
/// the same bypass whatever the partition, and not zero.
#[test]
fn beside_a_skip_connection_the_bypass_is_the_same_for_every_partition() {
    let x: ArrayD<f32> = read("inputs.npy");
    let resnet = resnet();
    let ex = Explainer::new(&resnet, &Spec::parse("epsilon-plus-flat").unwrap()).unwrap();
    let whole = ex.explain(x.view(), &Target::Predicted).unwrap().relevance;
    let scale = max_abs(whole.iter());
    assert!(!ConceptLayer::of(&resnet, 0).unwrap().bypassed(&resnet));
    assert!(!ConceptLayer::of(&resnet, 9).unwrap().bypassed(&resnet));
    assert!((0..4).all(|l| !ConceptLayer::of(&net(), l).unwrap().bypassed(&net())));
    for layer in [1, 2, 4, 8] {
        assert!(ConceptLayer::of(&resnet, layer).unwrap().bypassed(&resnet), "#{layer}");
        let channels = ConceptLayer::of(&resnet, layer).unwrap().channels;
        let [three, two] = partitions(channels);
        let bypass3 = (sum(&partition_heatmaps(&ex, &x, layer, &three)) - &whole) / 2.0;
        let bypass2 = sum(&partition_heatmaps(&ex, &x, layer, &two)) - &whole;
        assert!(
            max_abs(bypass2.iter()) > 1e-3 * scale,
            "#{layer} has a skip connection beside it"
        );
        let err = lrp_testkit::max_abs_diff(&bypass3, &bypass2) / scale;
        assert!(
            err < 1e-5,
            "#{layer}: the bypass differs between partitions by {err:.2e}"
        );
    }
}

#[test]
fn conditions_are_checked() {
    let net = net();
    let x: ArrayD<f32> = read("inputs.npy");
    let ex = Explainer::new(&net, &Spec::parse("epsilon").unwrap()).unwrap();
    let err = |conds: &[Condition], record: &[usize]| {
        ex.explain_concepts(x.view(), &Target::Predicted, conds, record)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let at = |layer, channels| Condition { layer, channels };
    assert!(err(&[at(1, Channels::Same(vec![32]))], &[]).contains("channel 32 does not exist at #1: it has 32"));
    assert!(err(&[at(9, Channels::Same(vec![0]))], &[]).contains("#9: the network has 4 layers with weights"));
    assert!(err(&[at(1, Channels::Same(vec![]))], &[]).contains("keeps no channel"));
    assert!(err(&[at(1, Channels::PerSample(vec![vec![0]; 3]))], &[]).contains("for 3 samples; the batch has 16"));
    assert!(err(&[at(1, Channels::Same(vec![0])), at(1, Channels::Same(vec![1]))], &[]).contains("two conditions"));
    assert!(err(&[], &[7]).contains("#7"));
    let grad = Explainer::new(&net, &Spec::parse("gradient").unwrap()).unwrap();
    assert!(
        grad.explain_concepts(x.view(), &Target::Predicted, &[], &[1])
            .unwrap_err()
            .to_string()
            .contains("need an LRP rule")
    );
}

/// The sums a caller sees are those of the relevance itself: the concept relevance at `#N` adds up to what
/// `explain_keeping` gives at the output of `#N` (by an independent path: the value's own relevance).
#[test]
fn concept_relevance_is_the_relevance_at_the_layer_summed_per_channel() {
    let net = net();
    let x: ArrayD<f32> = read("inputs.npy");
    let ex = Explainer::new(&net, &Spec::parse("epsilon-plus-flat").unwrap()).unwrap();
    let node = net.weighted_layers()[1];
    let kept = ex.explain_keeping(x.view(), &targets(), &[node + 1]).unwrap().kept[0]
        .1
        .clone();
    let c = ex.explain_concepts(x.view(), &targets(), &[], &[1]).unwrap();
    for s in 0..x.shape()[0] {
        for ch in 0..32 {
            let want: f32 = kept.index_axis(Axis(0), s).index_axis(Axis(0), ch).sum();
            let got = c.relevance[0][[s, ch]];
            assert!(
                (got - want).abs() <= 1e-5 * want.abs().max(1e-3),
                "sample {s} channel {ch}: {got} vs {want}"
            );
        }
    }
}

/// The receptive field of a position at a layer's output is where the input can change that output: a pixel just
/// outside it changes nothing, a pixel at each of its corners changes something (checked by forward passes, on the
/// CRP CNN and the shipped ResNet, whose stride-2 blocks have 3×3 and 1×1 paths).
#[test]
fn the_receptive_field_is_where_the_input_reaches_the_position() {
    let x: ArrayD<f32> = read("inputs.npy");
    let x = x.slice_axis(Axis(0), (0..1).into()).to_owned();
    for (net, layer, positions) in [
        (net(), 1, vec![(0, 0), (3, 5), (7, 7)]),
        (resnet(), 4, vec![(0, 0), (3, 4), (6, 6)]),
    ] {
        let l = ConceptLayer::of(&net, layer).unwrap();
        let at = |x: &ArrayD<f32>, y: usize, xx: usize| -> Vec<f32> {
            let t = net.forward_trace(x.view()).unwrap();
            (0..l.channels).map(|c| t.value(l.value)[[0, c, y, xx]]).collect()
        };
        for (py, px) in positions {
            let [rows, cols] = l.receptive_field(&net, py, px).unwrap();
            let base = at(&x, py, px);
            let poke = |r: usize, c: usize| {
                let mut y = x.clone();
                y[[0, 0, r, c]] += 0.73;
                at(&y, py, px) != base
            };
            for (r, c) in [
                (rows.start, cols.start),
                (rows.end - 1, cols.end - 1),
                (rows.start, cols.end - 1),
            ] {
                assert!(
                    poke(r, c),
                    "#{layer} ({py},{px}): pixel ({r},{c}) is inside its field {rows:?}×{cols:?}"
                );
            }
            if rows.end < 28 {
                assert!(
                    !poke(rows.end, cols.start),
                    "#{layer} ({py},{px}): row {} is outside",
                    rows.end
                );
            }
            if cols.start > 0 {
                assert!(
                    !poke(rows.start, cols.start - 1),
                    "#{layer} ({py},{px}): column {} is outside",
                    cols.start - 1
                );
            }
        }
    }
}

/// Per-channel sums of finite values that overflow float32 are refused, never returned: a 1×1 convolution whose
/// four outputs are 2e38 each (finite logits) has an activation sum of 8e38 at `#0`.
#[test]
fn sums_that_overflow_are_refused() {
    use lrp_core::{Conv2d, Flatten, Layer, Network};
    let conv = Conv2d::new(ndarray::Array4::from_elem((1, 1, 1, 1), 2.0), None, [1, 1], [0; 4]);
    let net = Network::new(vec![1, 2, 2], vec![Layer::Conv2d(conv), Layer::Flatten(Flatten)]).unwrap();
    let x = ArrayD::from_elem(ndarray::IxDyn(&[1, 1, 2, 2]), 1e38f32);
    let ex = Explainer::new(&net, &Spec::parse("epsilon").unwrap()).unwrap();
    let err = ex
        .explain_concepts(x.view(), &Target::Class(0), &[], &[0])
        .map(|c| c.activation[0].clone())
        .unwrap_err()
        .to_string();
    assert!(err.contains("sums of sample 0") && err.contains("inf"), "{err}");
}
