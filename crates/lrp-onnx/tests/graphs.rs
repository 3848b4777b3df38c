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

#[test]
fn depthwise_and_dilated_convolutions_import() {
    let w: Vec<f32> = (0..36).map(|i| (i as f32 * 0.7).sin()).collect();
    let conv = NodeProto {
        op_type: "Conv".into(),
        name: "dw".into(),
        input: vec!["x".into(), "W".into()],
        output: vec!["y".into()],
        attribute: vec![
            AttributeProto {
                name: "group".into(),
                r#type: 2,
                i: 4,
                ..Default::default()
            },
            AttributeProto {
                name: "dilations".into(),
                r#type: 7,
                ints: vec![2, 2],
                ..Default::default()
            },
            AttributeProto {
                name: "auto_pad".into(),
                r#type: 3,
                s: b"SAME_UPPER".to_vec(),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let dims = |d: &[Option<i64>]| TypeProto {
        tensor_type: Some(TypeProtoTensor {
            elem_type: 1,
            shape: Some(TensorShapeProto {
                dim: d
                    .iter()
                    .map(|v| Dimension {
                        dim_value: *v,
                        dim_param: v.is_none().then(|| "N".into()),
                    })
                    .collect(),
            }),
        }),
    };
    let m = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(GraphProto {
            node: vec![conv],
            name: "g".into(),
            initializer: vec![TensorProto {
                name: "W".into(),
                dims: vec![4, 1, 3, 3],
                data_type: data_type::FLOAT,
                float_data: w.clone(),
                ..Default::default()
            }],
            input: vec![ValueInfoProto {
                name: "x".into(),
                r#type: Some(dims(&[None, Some(4), Some(6), Some(6)])),
            }],
            output: vec![ValueInfoProto {
                name: "y".into(),
                r#type: Some(dims(&[None, Some(4), Some(6), Some(6)])),
            }],
        }),
        ..Default::default()
    };
    let net = import_bytes(&m.encode_to_vec()).unwrap().network;
    assert_eq!(
        net.output_shape(),
        &[4, 6, 6],
        "SAME padding keeps the size with a dilated kernel"
    );
    let lrp_core::Layer::Conv2d(c) = &net.layers()[0] else {
        panic!()
    };
    assert_eq!((c.groups, c.dilation, c.window.pads), (4, [2, 2], [2, 2, 2, 2]));
    // Depthwise: channel k of the output sees channel k of the input only.
    let mut x = ArrayD::<f32>::zeros(ndarray::IxDyn(&[1, 4, 6, 6]));
    x[[0, 2, 3, 3]] = 1.0;
    let y = net.forward(x.view()).unwrap();
    for ch in [0, 1, 3] {
        assert!(y.index_axis(ndarray::Axis(1), ch).iter().all(|&v| v == 0.0));
    }
    // The centre tap of channel 2 lands on the same pixel; the corner taps two pixels away (dilation 2).
    assert_eq!(y[[0, 2, 3, 3]], w[2 * 9 + 4]);
    assert_eq!(y[[0, 2, 1, 1]], w[2 * 9 + 8]);
}

/// Bounded fuzzing: byte flips, truncations and field edits of the graph fixtures never panic the importer, and a
/// model that imports runs a forward pass without panicking (it may still refuse the input).
#[test]
fn mutated_graph_models_are_refused_or_run_never_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2026);
    for name in [
        "graph/mnist-resnet-legacy.onnx",
        "graph/mnist-inception-legacy.onnx",
        "graph/mnist-lenet5-dynamo.onnx",
        "keras/keras-cnn-tf2onnx.onnx",
        "mnist-rows-lstm-torch-legacy.onnx",
    ] {
        let original = std::fs::read(fixture(name)).unwrap();
        for trial in 0..150 {
            let mut bytes = original.clone();
            match trial % 3 {
                0 => {
                    for _ in 0..rng.random_range(1..8) {
                        let i = rng.random_range(0..bytes.len());
                        bytes[i] ^= 1 << rng.random_range(0..8);
                    }
                }
                1 => bytes.truncate(rng.random_range(0..bytes.len())),
                _ => {
                    // Edit a decoded model: an attribute's ints or a dimension set to something absurd.
                    let Ok(mut m) = ModelProto::decode(&bytes[..]) else {
                        continue;
                    };
                    let g = m.graph.as_mut().unwrap();
                    let k = rng.random_range(0..g.node.len());
                    let absurd = [0i64, -1, 1 << 40, i64::MAX, i64::MIN, 3];
                    let v = absurd[rng.random_range(0..absurd.len())];
                    if let Some(a) = g.node[k].attribute.first_mut() {
                        a.i = v;
                        for x in a.ints.iter_mut() {
                            *x = v;
                        }
                    } else if let Some(t) = g.initializer.first_mut() {
                        if let Some(d) = t.dims.first_mut() {
                            *d = v;
                        }
                    }
                    bytes = m.encode_to_vec();
                }
            }
            let path_dir = fixture(name).parent().unwrap().to_path_buf();
            let _ = path_dir;
            if let Ok(imported) = import_bytes(&bytes) {
                let shape: Vec<usize> = std::iter::once(2)
                    .chain(imported.network.input_shape().iter().copied())
                    .collect();
                if shape.iter().product::<usize>() <= 1 << 22 {
                    let x = ArrayD::<f32>::from_elem(ndarray::IxDyn(&shape), 0.5);
                    let _ = imported.network.forward(x.view());
                }
            }
        }
    }
}
