//! Graph imports: every fixture model gives its reference logits; external data is read only from inside the
//! model's folder; shape subgraphs, fixed batches and NHWC inputs are handled.

use std::path::{Path, PathBuf};

use lrp_onnx::proto::*;
use lrp_onnx::{import_bytes, import_file};
use ndarray::ArrayD;
use prost::Message;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/oracle")
        .join(name)
}

fn npy(path: &Path) -> ArrayD<f32> {
    ndarray_npy::read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn max_abs(a: &ArrayD<f32>) -> f32 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

#[test]
fn every_fixture_model_gives_its_reference_logits() {
    let graph_models = ["resnet", "lenet5", "inception", "act-mlp"];
    let mut cases: Vec<(String, &str, String)> = Vec::new();
    for m in graph_models {
        for export in ["legacy", "dynamo"] {
            cases.push((
                format!("graph/mnist-{m}-{export}.onnx"),
                "graph/inputs.npy",
                format!("graph/mnist-{m}-logits.npy"),
            ));
        }
    }
    for k in ["keras-cnn-tf2onnx.onnx", "keras-cnn-export.onnx"] {
        cases.push((
            format!("keras/{k}"),
            "keras/keras-inputs.npy",
            "keras/keras-cnn-logits.npy".into(),
        ));
    }
    for export in ["legacy", "dynamo"] {
        cases.push((
            format!("mnist-rows-lstm-torch-{export}.onnx"),
            "mnist-rows-lstm-inputs.npy",
            "mnist-rows-lstm-logits.npy".into(),
        ));
    }
    for (model, inputs, logits) in &cases {
        let imported = import_file(&fixture(model)).unwrap_or_else(|e| panic!("{model}: {e}"));
        let x = npy(&fixture(inputs));
        let reference = npy(&fixture(logits));
        // All 32 samples in one batch, also for the dynamo exports whose graph says batch 1.
        let got = imported.network.forward(x.view()).unwrap();
        assert_eq!(got.shape(), reference.shape(), "{model}");
        let err = (&got - &reference).iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(err <= 1e-4 * max_abs(&reference), "{model}: max logit error {err}");
    }
}

#[test]
fn keras_input_stays_nhwc_and_graphs_are_graphs() {
    let keras = import_file(&fixture("keras/keras-cnn-tf2onnx.onnx")).unwrap();
    assert_eq!(keras.network.input_shape(), &[28, 28, 1]);
    assert!(keras.notes.iter().any(|n| n.contains("Softmax")), "{:?}", keras.notes);
    let resnet = import_file(&fixture("graph/mnist-resnet-legacy.onnx")).unwrap();
    assert!(!resnet.network.is_chain());
    let adds = resnet
        .network
        .layers()
        .iter()
        .filter(|l| l.kind() == lrp_core::LayerKind::Add)
        .count();
    assert_eq!(adds, 2, "two residual joins");
    // The legacy export builds the flatten from Shape/Gather/Concat: no node of it survives but the reshape.
    let inception = import_file(&fixture("graph/mnist-inception-legacy.onnx")).unwrap();
    assert_eq!(inception.network.layers().len(), 11);
}

/// A copy of the dynamo act-mlp export and its data file in a fresh folder, with one initializer's external
/// data entries changed by `change`.
fn external_variant(change: impl FnOnce(&mut TensorProto)) -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut m = ModelProto::decode(&std::fs::read(fixture("graph/mnist-act-mlp-dynamo.onnx")).unwrap()[..]).unwrap();
    let g = m.graph.as_mut().unwrap();
    let t = g
        .initializer
        .iter_mut()
        .find(|t| t.data_location == 1)
        .expect("the dynamo export stores weights externally");
    let name = t.name.clone();
    change(t);
    let model = dir.path().join("model.onnx");
    std::fs::write(&model, m.encode_to_vec()).unwrap();
    std::fs::copy(
        fixture("graph/mnist-act-mlp-dynamo.onnx.data"),
        dir.path().join("mnist-act-mlp-dynamo.onnx.data"),
    )
    .unwrap();
    (dir, model, name)
}

fn set(t: &mut TensorProto, key: &str, value: &str) {
    match t.external_data.iter_mut().find(|e| e.key == key) {
        Some(e) => e.value = value.to_string(),
        None => t.external_data.push(StringStringEntryProto {
            key: key.into(),
            value: value.into(),
        }),
    }
}

#[test]
fn external_data_outside_the_folder_or_past_the_end_is_refused_by_name() {
    // Unchanged, the copy imports.
    let (_d, model, _) = external_variant(|_| {});
    import_file(&model).unwrap();
    for (what, location) in [
        ("parent", "../x"),
        ("absolute", "/etc/passwd"),
        ("nested parent", "sub/../../x"),
    ] {
        let (_d, model, name) = external_variant(|t| set(t, "location", location));
        let err = import_file(&model).unwrap_err().to_string();
        assert!(
            err.contains(&name) && err.contains("refused") && err.contains(location),
            "{what}: {err}"
        );
    }
    let (_d, model, name) = external_variant(|t| set(t, "offset", "99999999"));
    let err = import_file(&model).unwrap_err().to_string();
    assert!(err.contains(&name) && err.contains("past the end"), "{err}");
    let (_d, model, name) = external_variant(|t| set(t, "length", "18446744073709551615"));
    let err = import_file(&model).unwrap_err().to_string();
    assert!(err.contains(&name) && err.contains("past the end"), "{err}");
    // A truncated data file.
    let (d, model, _) = external_variant(|_| {});
    let data = d.path().join("mnist-act-mlp-dynamo.onnx.data");
    let len = std::fs::metadata(&data).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let err = import_file(&model).unwrap_err().to_string();
    assert!(err.contains("past the end") && err.contains("truncated"), "{err}");
    // No folder to read from.
    let err = import_bytes(&std::fs::read(fixture("graph/mnist-act-mlp-dynamo.onnx")).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("external data"), "{err}");
}

#[cfg(unix)]
#[test]
fn a_symlink_out_of_the_folder_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.bin");
    std::fs::write(&secret, vec![0u8; 1 << 20]).unwrap();
    let (d, model, name) = external_variant(|t| set(t, "location", "link.bin"));
    std::os::unix::fs::symlink(&secret, d.path().join("link.bin")).unwrap();
    let err = import_file(&model).unwrap_err().to_string();
    assert!(err.contains(&name) && err.contains("outside"), "{err}");
}
