//! Graph networks as today's exporters write them, through `lrp explain`, against the Zennit references of
//! `tests/fixtures/oracle/graph` (PyTorch legacy and dynamo exports), `…/keras` (NHWC Keras exports) and the
//! original LSTM-LRP code (PyTorch `nn.LSTM` exports).

mod common;

use common::*;
use ndarray::ArrayD;
use serde_json::Value;

fn fixture(path: &str) -> String {
    format!("tests/fixtures/oracle/{path}")
}

fn read(path: &str) -> ArrayD<f32> {
    ndarray_npy::read_npy(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn manifest(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join(fixture(path))).unwrap()).unwrap()
}

/// Runs `lrp explain` on all inputs in one call and returns the worst per-sample relative error.
fn explain_error(dir: &str, model: &str, inputs: &str, targets: &str, spec: &str, reference: &str) -> f32 {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r.npy");
    lrp_ok(&[
        "explain",
        "--model",
        &fixture(&format!("{dir}/{model}")),
        "--input",
        &fixture(&format!("{dir}/{inputs}")),
        "--targets",
        &fixture(&format!("{dir}/{targets}")),
        "--rule",
        spec,
        "--out",
        out.to_str().unwrap(),
    ]);
    let got: ArrayD<f32> = ndarray_npy::read_npy(&out).unwrap();
    let want = read(&fixture(&format!("{dir}/{reference}")));
    assert_eq!(
        got.shape(),
        want.shape(),
        "{model} {spec}: relevance has the input's shape"
    );
    worst_relative_error(&got, &want)
}

#[test]
fn graph_fixtures_match_zennit_through_both_exporters() {
    let m = manifest("graph/manifest.json");
    let mut checked = 0;
    for model in m["models"].as_array().unwrap() {
        let s = |k: &str| model[k].as_str().unwrap().to_string();
        for file in [s("model"), s("model_dynamo_export")] {
            for case in model["cases"].as_array().unwrap() {
                let spec = case["spec"].as_str().unwrap();
                let err = explain_error(
                    "graph",
                    &file,
                    &s("inputs"),
                    &s("targets"),
                    spec,
                    case["file"].as_str().unwrap(),
                );
                assert!(err <= 1e-4, "{file} {spec}: worst relative error {err:e}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 38, "every case of the manifest, for both exports");
}

#[test]
fn keras_exports_take_nhwc_input_and_match_zennit() {
    let m = manifest("keras/manifest.json");
    let mut checked = 0;
    for model in m["models"].as_array().unwrap() {
        let s = |k: &str| model[k].as_str().unwrap().to_string();
        let mut files = vec![s("model")];
        files.extend(
            model["also"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string()),
        );
        for file in files {
            for case in model["cases"].as_array().unwrap() {
                let spec = case["spec"].as_str().unwrap();
                let err = explain_error(
                    "keras",
                    &file,
                    &s("inputs"),
                    &s("targets"),
                    spec,
                    case["file"].as_str().unwrap(),
                );
                // Measured 1.1e-6 at worst (the README's figure); about 3 times that.
                assert!(err <= 3.5e-6, "{file} {spec}: worst relative error {err:e}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 8);
}

#[test]
fn pytorch_lstm_exports_match_the_lstm_lrp_reference() {
    for export in ["legacy", "dynamo"] {
        let err = explain_error(
            ".",
            &format!("mnist-rows-lstm-torch-{export}.onnx"),
            "mnist-rows-lstm-inputs.npy",
            "mnist-rows-lstm-targets.npy",
            "all=epsilon(0.001)",
            "mnist-rows-lstm-lstm-epsilon-0.001.npy",
        );
        // The manifest's LSTM tolerance is 1e-3; this implementation lands at 3.1e-5.
        assert!(err <= 1e-4, "{export}: worst relative error {err:e}");
    }
}

#[test]
fn info_numbers_the_weighted_layers_as_specs_do() {
    let out = lrp_ok(&["info", "--model", &fixture("graph/mnist-inception-legacy.onnx")]);
    // Both branch convolutions read the input: #0 and #1; the joins name what they read.
    let conv_lines: Vec<&str> = out.lines().filter(|l| l.contains("conv2d")).collect();
    assert_eq!(conv_lines.len(), 3, "{out}");
    for (n, line) in conv_lines.iter().enumerate() {
        assert!(line.contains(&format!("#{n} ")), "{line}");
    }
    assert!(
        out.lines().any(|l| l.contains("concat") && l.contains("← n1, n3")),
        "{out}"
    );
}

#[test]
fn the_shipped_residual_network_reaches_its_accuracy_and_explains() {
    let out = lrp_ok(&[
        "info",
        "--model",
        "data/models/mnist-resnet.lrpm",
        "--data",
        "data/mnist",
    ]);
    assert!(out.contains("nodes (a graph") && out.contains(" add "), "{out}");
    let acc = number_after(&out, "test accuracy: ");
    assert!(acc >= 0.993, "residual network test accuracy {acc}");
    let out = lrp_ok(&[
        "explain",
        "--model",
        "data/models/mnist-resnet.lrpm",
        "--data",
        "data/mnist",
        "--index",
        "0",
        "--rule",
        "epsilon-gamma-box",
    ]);
    // Each residual join splits its relevance in proportion to the two summands (stabiliser 1e-6), so where the
    // two values it reads are read by nothing else (the blocks with a projection shortcut), their sums add up to
    // the sum of the value it writes.
    assert!(out.contains("relevance sum at each value"), "{out}");
    let sum_after = |name: &str| -> f64 {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("after {name} ")))
            .unwrap_or_else(|| panic!("no line for {name}:\n{out}"));
        line.split_whitespace().nth(3).unwrap().parse().unwrap()
    };
    let info = lrp_ok(&["info", "--model", "data/models/mnist-resnet.lrpm"]);
    let mut joins = 0;
    let readers = |name: &str| {
        info.lines()
            .filter_map(|l| l.split('←').nth(1))
            .flat_map(|r| r.split(',').map(str::trim))
            .filter(|r| *r == name)
            .count()
    };
    for line in info.lines().filter(|l| l.contains(" add ")) {
        let node = line.split_whitespace().next().unwrap();
        let reads: Vec<&str> = line.split('←').nth(1).unwrap().split(',').map(str::trim).collect();
        if reads.iter().any(|r| readers(r) != 1) {
            continue;
        }
        let (a, b, total) = (sum_after(reads[0]), sum_after(reads[1]), sum_after(node));
        assert!(total.abs() > 0.1, "{node}: {total}");
        assert!(
            (a + b - total).abs() <= 1e-3 * total.abs(),
            "{node}: {a} + {b} vs {total}"
        );
        joins += 1;
    }
    assert_eq!(joins, 2, "{info}");
}

#[test]
fn batch_on_a_graph_is_identical_with_one_and_two_threads() {
    let files =
        batch_is_the_same_with_one_and_two_threads("data/models/mnist-resnet.lrpm", &["epsilon", "epsilon-gamma-box"]);
    assert_eq!(files, 4);
}

#[test]
fn a_residual_network_trains_reproducibly_on_an_unseen_dataset() {
    let out = train_twice_on_bars(
        12,
        &[
            "--arch",
            "resnet",
            "--epochs",
            "3",
            "--seed",
            "3",
            "--augment-shift",
            "1",
        ],
    );
    let acc = number_after(&out, "test accuracy: ");
    assert!(acc >= 0.9, "residual network on the bars dataset: test accuracy {acc}");
}
