//! `lrp predict` and `lrp convert` on the oracle's ONNX models.

mod common;

use common::*;
use ndarray::ArrayD;

fn oracle(name: &str) -> String {
    format!("tests/fixtures/oracle/{name}")
}

/// (model, inputs, logits) of every dense/conv model in the oracle manifest, plus the batch-norm split model.
fn oracle_models() -> Vec<(String, String, String)> {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join(oracle("manifest.json"))).unwrap()).unwrap();
    let mut out: Vec<(String, String, String)> = manifest["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap().to_string();
            (s("model"), s("inputs"), s("logits"))
        })
        .collect();
    out.push((
        "mnist-cnn-bn-split.onnx".into(),
        "inputs.npy".into(),
        "mnist-cnn-logits.npy".into(),
    ));
    let lstm: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join(oracle("manifest-lstm.json"))).unwrap()).unwrap();
    for m in lstm["models"].as_array().unwrap() {
        let s = |k: &str| m[k].as_str().unwrap().to_string();
        out.push((s("model"), s("inputs"), s("logits")));
    }
    out
}

#[test]
fn predict_on_onnx_models_gives_the_reference_logits() {
    let dir = tempfile::tempdir().unwrap();
    let models = oracle_models();
    assert!(models.len() >= 4, "dense, conv, batch-norm split and LSTM models");
    for (model, inputs, logits) in models {
        let out = dir.path().join(format!("{model}.npy"));
        lrp_ok(&[
            "predict",
            "--model",
            &oracle(&model),
            "--input",
            &oracle(&inputs),
            "--out",
            out.to_str().unwrap(),
        ]);
        let got: ArrayD<f32> = ndarray_npy::read_npy(&out).unwrap();
        let reference: ArrayD<f32> = ndarray_npy::read_npy(root().join(oracle(&logits))).unwrap();
        assert_eq!(got.shape(), reference.shape());
        let scale = lrp_testkit::max_abs(reference.iter());
        let err = lrp_testkit::max_abs((&got - &reference).iter());
        assert!(err <= 1e-4 * scale, "{model}: max error {err} (scale {scale})");
    }
}

#[test]
fn convert_writes_a_native_model_with_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    let native = dir.path().join("cnn.lrpm");
    let out = lrp_ok(&[
        "convert",
        "--model",
        &oracle("mnist-cnn-bn-split.onnx"),
        "--out",
        native.to_str().unwrap(),
    ]);
    assert!(out.contains("wrote"), "{out}");
    let info = lrp_ok(&["info", "--model", native.to_str().unwrap()]);
    assert!(info.contains("imported from mnist-cnn-bn-split.onnx"), "{info}");
    assert!(!info.contains("batchnorm"), "batch norm must be folded: {info}");
    let a = dir.path().join("a.npy");
    let b = dir.path().join("b.npy");
    lrp_ok(&[
        "predict",
        "--model",
        native.to_str().unwrap(),
        "--input",
        &oracle("inputs.npy"),
        "--out",
        a.to_str().unwrap(),
    ]);
    lrp_ok(&[
        "predict",
        "--model",
        &oracle("mnist-cnn-bn-split.onnx"),
        "--input",
        &oracle("inputs.npy"),
        "--out",
        b.to_str().unwrap(),
    ]);
    let (a, b): (ArrayD<f32>, ArrayD<f32>) = (ndarray_npy::read_npy(&a).unwrap(), ndarray_npy::read_npy(&b).unwrap());
    assert_eq!(a, b);
}

#[test]
fn broken_onnx_files_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(root().join(oracle("mnist-mlp.onnx"))).unwrap();
    let cut = dir.path().join("cut.onnx");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = lrp_err(&["info", "--model", cut.to_str().unwrap()]);
    assert!(
        err.contains("cut.onnx") && err.contains("truncated or corrupt"),
        "{err}"
    );
}

/// A small residual CNN exported by torch with dynamic height and width (`tests/fixtures/dynamic`): refused with the
/// way out named; `lrp convert --input-shape` fixes the size once, and the native file gives torch's logits and
/// gradient.
#[test]
fn an_export_with_dynamic_height_and_width_is_fixed_by_convert_and_gives_torchs_logits() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = "tests/fixtures/dynamic/small-dynamic-hw.onnx";
    let err = lrp_err(&["info", "--model", onnx]);
    assert!(
        err.contains("axis 2 has no fixed size (h)") && err.contains("--input-shape 3,224,224"),
        "{err}"
    );
    for (shape, why) in [
        ("4,48,48", "axis 1 is 4, which the file fixes at 3"),
        ("3,48", "[3, 48] has 2 axes; input 'input' has 3 besides the batch"),
        ("3,0,48", "axis 2 is 0"),
    ] {
        let out = dir.path().join("bad.lrpm");
        let err = lrp_err(&[
            "convert",
            "--model",
            onnx,
            "--input-shape",
            shape,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(err.contains(why), "{shape}: {err}");
        assert!(!out.exists(), "{shape}: a file was written");
    }
    assert!(
        lrp_err(&[
            "convert",
            "--model",
            "cnn",
            "--input-shape",
            "1,28,28",
            "--out",
            "x.lrpm"
        ])
        .contains("not one")
    );
    let fixed = dir.path().join("fixed.lrpm");
    lrp_ok(&[
        "convert",
        "--model",
        onnx,
        "--input-shape",
        "3,48,48",
        "--out",
        fixed.to_str().unwrap(),
    ]);
    let text = logits_and_gradient_match_torch(fixed.to_str().unwrap(), "tests/fixtures/dynamic");
    // Its inputs are normalized values, as an imported model's are: no warning meant for the shipped models.
    assert!(!text.contains("outside [0, 1]"), "{text}");
    // Another size is another network from the same file.
    let other = dir.path().join("other.lrpm");
    lrp_ok(&[
        "convert",
        "--model",
        onnx,
        "--input-shape",
        "3,64,40",
        "--out",
        other.to_str().unwrap(),
    ]);
    assert!(lrp_ok(&["info", "--model", other.to_str().unwrap()]).contains("[3, 64, 40]"));
}

/// Runs `predict` and `explain --rule gradient` on `model` with `references`' `inputs.npy`, compares them with
/// torch's logits (`logits-torch.npy`) and autograd gradient of each sample's predicted logit (`gradient-torch.npy`)
/// there, and returns what `predict` printed.
fn logits_and_gradient_match_torch(model: &str, references: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let inputs = format!("{references}/inputs.npy");
    let (logits, gradient) = (dir.path().join("logits.npy"), dir.path().join("gradient.npy"));
    let printed = lrp_ok(&[
        "predict",
        "--model",
        model,
        "--input",
        &inputs,
        "--out",
        logits.to_str().unwrap(),
    ]);
    lrp_ok(&[
        "explain",
        "--model",
        model,
        "--input",
        &inputs,
        "--rule",
        "gradient",
        "--out",
        gradient.to_str().unwrap(),
    ]);
    for (got, want, tol) in [
        (&logits, "logits-torch.npy", 1e-5f32),
        (&gradient, "gradient-torch.npy", 1e-6),
    ] {
        let got: ArrayD<f32> = ndarray_npy::read_npy(got).unwrap();
        let want: ArrayD<f32> = ndarray_npy::read_npy(root().join(references).join(want)).unwrap();
        assert!(
            want.iter().any(|v| v.abs() > 1e-3),
            "{model}: a reference of zeros tests nothing"
        );
        let worst = lrp_testkit::max_abs_diff(&got, &want);
        assert!(worst <= tol, "{model}: max |lrp − torch| {worst}");
    }
    printed
}

/// Attention written with `torch.einsum` (MaxViT's way; `tests/fixtures/einsum`): its two Einsum nodes import as
/// batched matrix products, and the logits and the gradient of the predicted logit are torch's (autograd). An Einsum
/// that is no matrix product is refused by name.
#[test]
fn einsum_attention_gives_torchs_logits_and_gradient() {
    logits_and_gradient_match_torch("tests/fixtures/einsum/einsum-attention.onnx", "tests/fixtures/einsum");
    let err = lrp_err(&["info", "--model", "tests/fixtures/einsum/einsum-dot.onnx"]);
    assert!(
        err.contains("equation 'bi,bi->b' is not a batched matrix product"),
        "{err}"
    );
}

/// Windows partitioned and reversed as timm's Swin does, the batch folded into them by a literal `reshape(-1, …)`
/// (`tests/fixtures/windows`): torch's logits and gradient.
#[test]
fn windows_folded_by_a_minus_one_give_torchs_logits_and_gradient() {
    logits_and_gradient_match_torch("tests/fixtures/windows/windows.onnx", "tests/fixtures/windows");
}
