//! The vision transformer through the command line: training on an unseen dataset, the shipped model's accuracy,
//! AttnLRP with conservation shares in `--print`, the LXT references through `lrp explain`, and batch results
//! identical with one and two threads.

mod common;

use common::*;
use ndarray::ArrayD;

const VIT: &str = "data/models/mnist-vit.lrpm";

#[test]
fn a_vision_transformer_trains_reproducibly_on_an_unseen_dataset() {
    // 21×21 images: 3×3 patches of 7×7, one bar per class.
    let out = train_twice_on_bars(
        21,
        &[
            "--arch",
            "vit",
            "--epochs",
            "10",
            "--seed",
            "3",
            "--optimizer",
            "adamw",
            "--lr",
            "3e-3",
            "--batch-size",
            "32",
            "--warmup-steps",
            "20",
            "--lr-decay",
            "0.9",
        ],
    );
    assert!(
        out.contains("layernorm") && out.contains("matmul") && out.contains("softmax"),
        "{out}"
    );
    let acc = number_after(&out, "test accuracy: ");
    assert!(
        acc >= 0.9,
        "vision transformer on the bars dataset: test accuracy {acc}"
    );
    // Images that do not cut into 7×7 patches are refused by name.
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("odd");
    std::fs::create_dir(&odd).unwrap();
    write_bars_dataset(&odd, 12, 30, 10);
    let err = lrp_err(&[
        "train",
        "--arch",
        "vit",
        "--data",
        odd.to_str().unwrap(),
        "--out",
        dir.path().join("odd.lrpm").to_str().unwrap(),
    ]);
    assert!(err.contains("7×7 patches") && err.contains("12×12"), "{err}");
}

#[test]
fn the_shipped_vision_transformer_reaches_its_accuracy_and_explains_with_shares() {
    let out = lrp_ok(&["info", "--model", VIT, "--data", "data/mnist"]);
    let acc = number_after(&out, "test accuracy: ");
    assert!(acc >= 0.985, "vision transformer test accuracy {acc}");
    let out = lrp_ok(&[
        "explain", "--model", VIT, "--index", "0", "--rule", "attnlrp", "--color", "never",
    ]);
    // The conservation table: every value's sum with its share of the logit, the residual stream after each add.
    assert!(
        out.contains("after") && out.contains(" add ") && out.contains("% of the logit"),
        "{out}"
    );
    assert!(out.contains("gradient form"), "{out}");
    // The explained logit is the one `lrp predict` computes for the predicted class.
    let dir = tempfile::tempdir().unwrap();
    let (image, logits) = (dir.path().join("x.npy"), dir.path().join("l.npy"));
    let digits = lrp_core::Dataset::load(&root().join("data/mnist"), lrp_core::Split::Test).unwrap();
    ndarray_npy::write_npy(
        &image,
        &digits.images.slice_axis(ndarray::Axis(0), (0..1).into()).to_owned(),
    )
    .unwrap();
    lrp_ok(&[
        "predict",
        "--model",
        VIT,
        "--input",
        image.to_str().unwrap(),
        "--out",
        logits.to_str().unwrap(),
    ]);
    let l: ndarray::Array2<f32> = ndarray_npy::read_npy(&logits).unwrap();
    let predicted = (0..10).max_by(|&a, &b| l[[0, a]].total_cmp(&l[[0, b]])).unwrap();
    let explained = number_after(
        &out,
        &format!("predicted {predicted}, label 7, explained class {predicted} (logit "),
    );
    assert!(
        (explained - l[[0, predicted]] as f64).abs() <= 1e-3,
        "{explained} vs {}",
        l[[0, predicted]]
    );
    // LRP-0 on the head (a dense layer `z = W x + b`) passes `Σ_i x_i W_ti = z_t − b_t` of the explained logit to
    // its input: the sum at the value the head reads is the logit less the head's bias for that class.
    let model = lrp_core::Model::load(&root().join(VIT)).unwrap();
    let net = &model.network;
    let head = net.layers().len() - 1;
    let lrp_core::Layer::Dense(d) = &net.layers()[head] else {
        panic!("the head is dense")
    };
    let bias = d.bias.as_ref().map_or(0.0, |b| b[predicted]) as f64;
    let reads = net.inputs_of(head)[0];
    let label = net.value_label(reads);
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with(&label))
        .unwrap_or_else(|| panic!("{label}:\n{out}"));
    let sum: f64 = line[line.find(&label).unwrap() + label.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (sum - (explained - bias)).abs() <= 1e-3 * (1.0 + explained.abs()),
        "{line}: {sum} vs {explained} − {bias}"
    );
}

#[test]
fn the_lxt_references_hold_through_lrp_explain() {
    let tmp = tempfile::tempdir().unwrap();
    for export in ["legacy", "dynamo"] {
        for case in ["attnlrp", "gradient-x-input"] {
            let out = tmp.path().join(format!("{export}-{case}.npy"));
            lrp_ok(&[
                "explain",
                "--model",
                &format!("tests/fixtures/oracle/vit/mnist-vit-{export}.onnx"),
                "--input",
                "tests/fixtures/oracle/vit/inputs.npy",
                "--targets",
                "tests/fixtures/oracle/vit/mnist-vit-targets.npy",
                "--rule",
                case,
                "--out",
                out.to_str().unwrap(),
            ]);
            let got: ArrayD<f32> = ndarray_npy::read_npy(&out).unwrap();
            let reference: ArrayD<f32> =
                ndarray_npy::read_npy(root().join(format!("tests/fixtures/oracle/vit/mnist-vit-{case}.npy"))).unwrap();
            let err = lrp_testkit::worst_relative_error(&got, &reference);
            // Measured 2.2e-6 at worst (the README's figure); about 3 times that.
            assert!(err <= 7e-6, "{export} {case}: {err:.2e}");
        }
    }
}

#[test]
fn batch_on_the_vision_transformer_is_identical_with_one_and_two_threads() {
    assert_eq!(
        batch_is_the_same_with_one_and_two_threads(VIT, &["attnlrp", "epsilon-gamma-box"]),
        4
    );
}
