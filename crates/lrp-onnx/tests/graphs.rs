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
    lrp_testkit::max_abs(a.iter())
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
        let err = lrp_testkit::max_abs((&got - &reference).iter());
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
    external_variant_padded(change, false)
}

/// [`external_variant`], the data file padded with zeros past its weights to more than `MAP_FROM_BYTES` when `pad`
/// is set, so that it is mapped instead of read tensor by tensor.
fn external_variant_padded(change: impl FnOnce(&mut TensorProto), pad: bool) -> (tempfile::TempDir, PathBuf, String) {
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
    let data = dir.path().join("mnist-act-mlp-dynamo.onnx.data");
    std::fs::copy(fixture("graph/mnist-act-mlp-dynamo.onnx.data"), &data).unwrap();
    if pad {
        let file = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
        file.set_len(lrp_core::whole_file::MAP_FROM_BYTES + 4096).unwrap();
    }
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

/// External data in a file large enough to be mapped: the same network as when it is read tensor by tensor (the
/// fixture's logits), and the same refusals.
#[test]
fn mapped_external_data_gives_the_same_network_and_refusals() {
    let (d, model, _) = external_variant_padded(|_| {}, true);
    let data = d.path().join("mnist-act-mlp-dynamo.onnx.data");
    let mapped = lrp_core::whole_file::mapped(&data, lrp_core::whole_file::MAP_FROM_BYTES..=u64::MAX).unwrap();
    assert!(mapped.is_some(), "the padded data file must take the mapped path");
    drop(mapped);
    let (_e, plain, _) = external_variant(|_| {});
    let x = npy(&fixture("graph/inputs.npy"));
    let via_map = import_file(&model).unwrap().network.forward(x.view()).unwrap();
    let via_read = import_file(&plain).unwrap().network.forward(x.view()).unwrap();
    assert_eq!(via_map, via_read);
    let reference = npy(&fixture("graph/mnist-act-mlp-logits.npy"));
    let err = lrp_testkit::max_abs((&via_map - &reference).iter());
    assert!(err <= 1e-4 * max_abs(&reference), "max logit error {err}");
    let (_d, model, name) = external_variant_padded(|t| set(t, "offset", "99999999"), true);
    let err = import_file(&model).unwrap_err().to_string();
    assert!(err.contains(&name) && err.contains("past the end"), "{err}");
    let (_d, model, name) = external_variant_padded(|t| set(t, "location", "../x"), true);
    let err = import_file(&model).unwrap_err().to_string();
    assert!(err.contains(&name) && err.contains("refused"), "{err}");
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
        "vit/mnist-vit-legacy.onnx",
        "vit/mnist-vit-dynamo.onnx",
        "../transformer/layernorm-decomposed-opset18.onnx",
        "../einsum/einsum-attention.onnx",
        "../dynamic/small-dynamic-hw.onnx",
        "../windows/windows.onnx",
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
                    } else if let Some(t) = g.initializer.first_mut()
                        && let Some(d) = t.dims.first_mut()
                    {
                        *d = v;
                    }
                    bytes = m.encode_to_vec();
                }
            }
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

/// A one-input model `x` of per-sample shape `dims` through `nodes` to `y`.
fn tiny(dims: &[i64], nodes: Vec<NodeProto>, initializers: Vec<TensorProto>, opset: i64) -> Vec<u8> {
    let ty = |d: Vec<Option<i64>>| TypeProto {
        tensor_type: Some(TypeProtoTensor {
            elem_type: 1,
            shape: Some(TensorShapeProto {
                dim: d
                    .into_iter()
                    .map(|v| Dimension {
                        dim_value: v,
                        dim_param: v.is_none().then(|| "N".into()),
                    })
                    .collect(),
            }),
        }),
    };
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        graph: Some(GraphProto {
            node: nodes,
            name: "g".into(),
            initializer: initializers,
            input: vec![ValueInfoProto {
                name: "x".into(),
                r#type: Some(ty(std::iter::once(None).chain(dims.iter().map(|&d| Some(d))).collect())),
            }],
            output: vec![ValueInfoProto {
                name: "y".into(),
                r#type: Some(ty(vec![None])),
            }],
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn op(op_type: &str, inputs: &[&str], output: &str, attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op_type.into(),
        name: format!("{op_type}-node"),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute: attrs,
        ..Default::default()
    }
}

fn float_attr(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 1,
        f,
        ..Default::default()
    }
}

fn int_attr(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 2,
        i,
        ..Default::default()
    }
}

fn ints_attr(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 7,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

fn int_tensor(name: &str, v: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![v.len() as i64],
        data_type: data_type::INT64,
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

fn float_tensor(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type::FLOAT,
        float_data: v.to_vec(),
        ..Default::default()
    }
}

/// Imports `bytes` and runs it on `x`.
fn run(bytes: &[u8], x: &ArrayD<f32>) -> (lrp_onnx::Imported, ArrayD<f32>) {
    let imported = import_bytes(bytes).unwrap_or_else(|e| panic!("{e}"));
    let y = imported.network.forward(x.view()).unwrap();
    (imported, y)
}

fn ramp(shape: &[usize]) -> ArrayD<f32> {
    let n: usize = shape.iter().product();
    ArrayD::from_shape_vec(ndarray::IxDyn(shape), (0..n).map(|i| i as f32 * 0.37 - 2.5).collect()).unwrap()
}

/// The ONNX definitions of the activations, written out in float64 (independent of `lrp_core::Activation`).
fn onnx_definition(op: &str, alpha: f64, beta: f64, x: f64) -> f64 {
    let sigmoid = |v: f64| 1.0 / (1.0 + (-v).exp());
    match op {
        "Tanh" => x.tanh(),
        "Sigmoid" => sigmoid(x),
        "LeakyRelu" => {
            if x >= 0.0 {
                x
            } else {
                alpha * x
            }
        }
        "Elu" => {
            if x > 0.0 {
                x
            } else {
                alpha * (x.exp() - 1.0)
            }
        }
        "Gelu" => 0.5 * x * (1.0 + libm::erf(x / 2f64.sqrt())),
        "GeluTanh" => 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh()),
        "Softplus" => (1.0 + x.exp()).ln(),
        "HardSigmoid" => (alpha * x + beta).clamp(0.0, 1.0),
        "HardSwish" => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
        "Clip" => x.clamp(alpha, beta),
        other => panic!("no definition for {other}"),
    }
}

#[test]
fn every_listed_activation_operator_imports_with_its_definition() {
    use lrp_core::Activation as A;
    let x = ramp(&[2, 12]);
    let gelu_tanh = AttributeProto {
        name: "approximate".into(),
        r#type: 3,
        s: b"tanh".to_vec(),
        ..Default::default()
    };
    let cases: Vec<(&str, Vec<AttributeProto>, Vec<&str>, A)> = vec![
        ("Tanh", vec![], vec![], A::Tanh),
        ("Sigmoid", vec![], vec![], A::Sigmoid),
        ("LeakyRelu", vec![float_attr("alpha", 0.2)], vec![], A::LeakyRelu(0.2)),
        ("Elu", vec![float_attr("alpha", 0.7)], vec![], A::Elu(0.7)),
        ("Gelu", vec![], vec![], A::Gelu),
        ("Gelu", vec![gelu_tanh], vec![], A::GeluTanh),
        ("Softplus", vec![], vec![], A::Softplus),
        (
            "HardSigmoid",
            vec![float_attr("alpha", 0.3), float_attr("beta", 0.4)],
            vec![],
            A::HardSigmoid(0.3, 0.4),
        ),
        ("HardSwish", vec![], vec![], A::HardSwish),
        ("Clip", vec![], vec!["lo", "hi"], A::Clip(-1.0, 2.0)),
    ];
    for (name, attrs, extra, act) in cases {
        let mut inputs = vec!["x"];
        inputs.extend(extra);
        let bytes = tiny(
            &[12],
            vec![op(name, &inputs, "y", attrs)],
            vec![float_tensor("lo", &[], &[-1.0]), float_tensor("hi", &[], &[2.0])],
            20,
        );
        let (imported, y) = run(&bytes, &x);
        // The operator became the activation of that name and parameters,
        let layers = imported.network.layers();
        assert!(
            matches!(&layers[0], lrp_core::Layer::Activation(a) if *a == act),
            "{name}: {layers:?}"
        );
        // and computes the ONNX definition.
        let (alpha, beta) = match act {
            A::LeakyRelu(a) | A::Elu(a) => (a as f64, 0.0),
            A::HardSigmoid(a, b) | A::Clip(a, b) => (a as f64, b as f64),
            _ => (0.0, 0.0),
        };
        let def = if act == A::GeluTanh { "GeluTanh" } else { name };
        for (a, b) in y.iter().zip(x.iter()) {
            let want = onnx_definition(def, alpha, beta, *b as f64);
            assert!(
                ((*a as f64) - want).abs() <= 2e-6 * (1.0 + want.abs()),
                "{name}({b}): {a} vs {want}"
            );
        }
    }
    // Clip to [0, ∞) is a ReLU (ReLU6 is Clip(0, 6) above with other bounds).
    let bytes = tiny(
        &[12],
        vec![op("Clip", &["x", "zero"], "y", vec![])],
        vec![float_tensor("zero", &[], &[0.0])],
        17,
    );
    let (imported, y) = run(&bytes, &x);
    assert_eq!(imported.network.layers()[0].kind(), lrp_core::LayerKind::Relu);
    assert_eq!(y, x.mapv(|v| v.max(0.0)));
}

#[test]
fn every_listed_shape_and_constant_operator_imports_with_its_definition() {
    // Sub, Mul, Div, Add by constants (input normalization): per-channel constants with the batch axis.
    let x = ramp(&[2, 3, 2, 2]);
    let mean = float_tensor("mean", &[1, 3, 1, 1], &[0.1, 0.2, 0.3]);
    let std = float_tensor("std", &[3, 1, 1], &[2.0, 4.0, 8.0]);
    let bytes = tiny(
        &[3, 2, 2],
        vec![
            op("Sub", &["x", "mean"], "a", vec![]),
            op("Div", &["a", "std"], "b", vec![]),
            op("Mul", &["b", "three"], "c", vec![]),
            op("Add", &["c", "one"], "d", vec![]),
            op("Flatten", &["d"], "y", vec![]),
        ],
        vec![
            mean,
            std,
            float_tensor("three", &[], &[3.0]),
            float_tensor("one", &[1], &[1.0]),
        ],
        17,
    );
    let (_, y) = run(&bytes, &x);
    for n in 0..2 {
        for c in 0..3 {
            for i in 0..4 {
                let v = x[[n, c, i / 2, i % 2]];
                let want = (v - [0.1, 0.2, 0.3][c]) / [2.0, 4.0, 8.0][c] * 3.0 + 1.0;
                assert!((y[[n, c * 4 + i]] - want).abs() < 1e-5);
            }
        }
    }
    // Pad (opset 11+: pads as an input), then ReduceMean over H and W without keepdims.
    let bytes = tiny(
        &[3, 2, 2],
        vec![
            op("Pad", &["x", "pads"], "p", vec![]),
            op(
                "ReduceMean",
                &["p"],
                "y",
                vec![
                    ints_attr("axes", &[2, 3]),
                    AttributeProto {
                        name: "keepdims".into(),
                        r#type: 2,
                        i: 0,
                        ..Default::default()
                    },
                ],
            ),
        ],
        vec![int_tensor("pads", &[0, 0, 1, 0, 0, 0, 1, 2])],
        17,
    );
    let (imported, y) = run(&bytes, &x);
    assert_eq!(imported.network.shape_at(1), &[3, 4, 4], "H padded 1 + 1, W 0 + 2");
    assert_eq!(imported.network.output_shape(), &[3]);
    for n in 0..2 {
        for c in 0..3 {
            // The padded 4×4 plane holds the 4 values and 12 zeros.
            let sum: f32 = (0..4).map(|i| x[[n, c, i / 2, i % 2]]).sum();
            assert!((y[[n, c]] - sum / 16.0).abs() < 1e-5);
        }
    }
    // Transpose of feature axes, Unsqueeze, Squeeze, Slice and Gather of a feature axis, Identity, Dropout, and a
    // final LogSoftmax (dropped).
    let x = ramp(&[2, 3, 4]);
    let bytes = tiny(
        &[3, 4],
        vec![
            op("Transpose", &["x"], "t", vec![ints_attr("perm", &[0, 2, 1])]),
            op("Unsqueeze", &["t", "ax1"], "u", vec![]),
            op("Squeeze", &["u", "ax1"], "s", vec![]),
            op("Slice", &["s", "st", "en", "ax1"], "sl", vec![]),
            op("Gather", &["sl", "two"], "g", vec![int_attr("axis", 2)]),
            op("Identity", &["g"], "i", vec![]),
            op("Dropout", &["i"], "d", vec![]),
            op("LogSoftmax", &["d"], "y", vec![]),
        ],
        vec![
            int_tensor("ax1", &[1]),
            int_tensor("st", &[1]),
            int_tensor("en", &[3]),
            TensorProto {
                name: "two".into(),
                dims: vec![],
                data_type: data_type::INT64,
                int64_data: vec![2],
                ..Default::default()
            },
        ],
        17,
    );
    let (imported, y) = run(&bytes, &x);
    assert!(
        imported.notes.iter().any(|n| n.contains("LogSoftmax")),
        "{:?}",
        imported.notes
    );
    // t[n, j, i] = x[n, i, j]; rows 1..3 of t; then entry 2 of the last axis: x[n, 2, j] for j in 1..3.
    assert_eq!(y.shape(), &[2, 2]);
    for n in 0..2 {
        for (k, j) in (1..3).enumerate() {
            assert_eq!(y[[n, k]], x[[n, 2, j]]);
        }
    }
}

#[test]
fn constant_arithmetic_folds_with_broadcasting() {
    // x · max(min(2^[1, 3], 5), [[3], [1]])… folded at import to the constant [[3, 5], [2, 5]] (broadcast [2, 2]).
    let bytes = tiny(
        &[2, 2],
        vec![
            op("Pow", &["two", "e"], "p", vec![]),
            op("Min", &["p", "five"], "m", vec![]),
            op("Max", &["m", "col"], "c", vec![]),
            op("Mul", &["x", "c"], "y", vec![]),
        ],
        vec![
            float_tensor("two", &[], &[2.0]),
            float_tensor("e", &[2], &[1.0, 3.0]),
            float_tensor("five", &[], &[5.0]),
            float_tensor("col", &[2, 1], &[3.0, 1.0]),
        ],
        17,
    );
    let x = ArrayD::from_elem(ndarray::IxDyn(&[1, 2, 2]), 1.0f32);
    let (imported, y) = run(&bytes, &x);
    assert_eq!(imported.network.layers().len(), 1, "one Mul by a folded constant");
    assert_eq!(y.iter().copied().collect::<Vec<_>>(), vec![3.0, 5.0, 2.0, 5.0]);
}

#[test]
fn a_layer_norm_written_as_several_nodes_imports_as_one_layer_norm() {
    let x = npy(&fixture("../transformer/inputs.npy"));
    let reference = npy(&fixture("../transformer/logits.npy"));
    for model in [
        "layernorm-op-opset17.onnx",
        "layernorm-decomposed-opset13.onnx",
        "layernorm-decomposed-opset18.onnx",
    ] {
        let imported = import_file(&fixture(&format!("../transformer/{model}"))).unwrap();
        let kinds: Vec<&str> = imported.network.layers().iter().map(|l| l.kind().name()).collect();
        assert_eq!(kinds, ["layernorm", "mean", "dense"], "{model}");
        if model.contains("decomposed") {
            assert!(
                imported.notes.iter().any(|n| n.contains("1 layer norm")),
                "{model}: {:?}",
                imported.notes
            );
        }
        let got = imported.network.forward(x.view()).unwrap();
        let err = lrp_testkit::max_abs((&got - &reference).iter());
        assert!(err <= 1e-5 * max_abs(&reference), "{model}: logit error {err}");
    }
}

#[test]
fn transformer_operators_import_or_are_refused_by_name() {
    // Split into equal halves, joined again: the identity.
    let mut split = op("Split", &["x"], "a", vec![int_attr("axis", 1)]);
    split.output = vec!["a".into(), "b".into()];
    let bytes = tiny(
        &[4],
        vec![split.clone(), op("Concat", &["a", "b"], "y", vec![int_attr("axis", 1)])],
        vec![],
        18,
    );
    let x = ndarray::Array2::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as f32).into_dyn();
    let net = import_bytes(&bytes).unwrap().network;
    assert_eq!(net.forward(x.view()).unwrap(), x);
    // Sizes that do not add up to the axis are refused with the node's name.
    let mut bad = split.clone();
    bad.input.push("sizes".into());
    let bytes = tiny(
        &[3],
        vec![bad, op("Add", &["a", "b"], "y", vec![])],
        vec![int_tensor("sizes", &[2, 2])],
        18,
    );
    let err = import_bytes(&bytes).unwrap_err().to_string();
    assert!(err.contains("Split-node") && err.contains("axis of length 3"), "{err}");
    // A product of two values whose inner sizes differ.
    let bytes = tiny(&[2, 3], vec![op("MatMul", &["x", "x"], "y", vec![])], vec![], 17);
    let err = import_bytes(&bytes).unwrap_err().to_string();
    assert!(
        err.contains("MatMul-node") && err.contains("cannot multiply [2, 3] by [2, 3]"),
        "{err}"
    );
    // xᵀ·x per sample imports as a transpose and a product.
    let t = op("Transpose", &["x"], "t", vec![ints_attr("perm", &[0, 2, 1])]);
    let bytes = tiny(&[2, 3], vec![t, op("MatMul", &["t", "x"], "y", vec![])], vec![], 17);
    let net = import_bytes(&bytes).unwrap().network;
    assert_eq!(net.output_shape(), [3, 3]);
    // A layer norm over two axes is refused (only the last axis is supported).
    let ln = op("LayerNormalization", &["x"], "y", vec![int_attr("axis", 1)]);
    let err = import_bytes(&tiny(&[2, 3], vec![ln], vec![], 17))
        .unwrap_err()
        .to_string();
    assert!(err.contains("only the last axis"), "{err}");
}
