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
    let logit_line = out
        .lines()
        .find(|l| l.trim_start().starts_with("output (logit)"))
        .unwrap();
    assert!(logit_line.contains("100.0% of the logit"), "{logit_line}");
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
            assert!(err <= 1e-4, "{export} {case}: {err:.2e}");
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
