//! ONNX import: the oracle models give their reference logits; every unsupported graph is refused by name.

use std::path::PathBuf;

use lrp_onnx::proto::*;
use lrp_onnx::{OnnxError, import_bytes, import_file};
use ndarray::{Array2, ArrayD};
use prost::Message;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/oracle")
        .join(name)
}

fn max_abs(a: &ArrayD<f32>) -> f32 {
    lrp_testkit::max_abs(a.iter())
}

#[test]
fn oracle_models_give_reference_logits() {
    let inputs: ArrayD<f32> = ndarray_npy::read_npy(fixture("inputs.npy")).unwrap();
    for (model, logits) in [
        ("mnist-mlp.onnx", "mnist-mlp-logits.npy"),
        ("mnist-cnn.onnx", "mnist-cnn-logits.npy"),
        ("mnist-cnn-bn-split.onnx", "mnist-cnn-logits.npy"),
    ] {
        let imported = import_file(&fixture(model)).unwrap();
        let reference: ArrayD<f32> = ndarray_npy::read_npy(fixture(logits)).unwrap();
        let got = imported.network.forward(inputs.view()).unwrap();
        let err = lrp_testkit::max_abs((&got - &reference).iter());
        assert!(err <= 1e-4 * max_abs(&reference), "{model}: max error {err}");
    }
}

#[test]
fn the_reference_lstm_imports_with_its_transposes_absorbed() {
    let imported = import_file(&fixture("mnist-rows-lstm.onnx")).unwrap();
    let kinds: Vec<_> = imported.network.layers().iter().map(|l| l.kind().name()).collect();
    assert_eq!(kinds, ["lstm", "flatten", "dense"]);
    assert_eq!(imported.network.input_shape(), &[28, 28]);
    let inputs: ArrayD<f32> = ndarray_npy::read_npy(fixture("mnist-rows-lstm-inputs.npy")).unwrap();
    let logits: ArrayD<f32> = ndarray_npy::read_npy(fixture("mnist-rows-lstm-logits.npy")).unwrap();
    let got = imported.network.forward(inputs.view()).unwrap();
    let err = lrp_testkit::max_abs((&got - &logits).iter());
    assert!(err <= 1e-4 * max_abs(&logits), "{err}");
}

/// The reference LSTM graph with one node or attribute changed.
fn lstm_variant(change: impl FnOnce(&mut GraphProto)) -> String {
    let mut m = ModelProto::decode(&std::fs::read(fixture("mnist-rows-lstm.onnx")).unwrap()[..]).unwrap();
    change(m.graph.as_mut().unwrap());
    refused(&m.encode_to_vec())
}

fn lstm_node(g: &mut GraphProto) -> &mut NodeProto {
    g.node.iter_mut().find(|n| n.op_type == "LSTM").unwrap()
}

#[test]
fn lstm_variants_are_refused_by_name() {
    let e = lstm_variant(|g| {
        lstm_node(g).attribute.push(AttributeProto {
            name: "clip".into(),
            r#type: 1,
            f: 3.0,
            ..Default::default()
        })
    });
    assert!(e.contains("(LSTM)") && e.contains("clip"), "{e}");
    let e = lstm_variant(|g| {
        lstm_node(g).attribute.push(AttributeProto {
            name: "activations".into(),
            r#type: 8,
            strings: vec![b"Sigmoid".to_vec(), b"Relu".to_vec(), b"Tanh".to_vec()],
            ..Default::default()
        })
    });
    assert!(e.contains("custom activations"), "{e}");
    let e = lstm_variant(|g| {
        g.initializer.push(f32_tensor("P", &[1, 192], &[0.0; 192]));
        let n = lstm_node(g);
        n.input.resize(7, String::new());
        n.input.push("P".into());
    });
    assert!(e.contains("peephole"), "{e}");
    let e = lstm_variant(|g| {
        g.initializer.push(TensorProto {
            name: "lens".into(),
            dims: vec![1],
            data_type: data_type::INT32,
            int32_data: vec![28],
            ..Default::default()
        });
        let n = lstm_node(g);
        n.input.push("lens".into());
    });
    assert!(e.contains("sequence_lens"), "{e}");
    // Y_c continuing the chain instead of Y_h.
    let e = lstm_variant(|g| {
        let yc = lstm_node(g).output[2].clone();
        let t = g
            .node
            .iter_mut()
            .find(|n| n.op_type == "Transpose" && n.input[0] == "Y_h")
            .unwrap();
        t.input[0] = yc;
    });
    assert!(e.contains("Y_c"), "{e}");
    // A Transpose that reorders features instead of moving the batch: the LSTM sees the wrong layout.
    let e = lstm_variant(|g| {
        let t = g.node.iter_mut().find(|n| n.op_type == "Transpose").unwrap();
        t.attribute[0].ints = vec![0, 2, 1];
    });
    assert!(e.contains("(LSTM)") && e.contains("layout 0"), "{e}");
}

#[test]
fn batch_norm_split_model_folds_to_the_plain_model() {
    let plain = import_file(&fixture("mnist-cnn.onnx")).unwrap().network;
    let split = import_file(&fixture("mnist-cnn-bn-split.onnx")).unwrap().network;
    assert_eq!(
        split.layers().len(),
        plain.layers().len(),
        "the batch norm is folded away"
    );
    let kinds = |n: &lrp_core::Network| n.layers().iter().map(|l| l.kind()).collect::<Vec<_>>();
    assert_eq!(kinds(&split), kinds(&plain));
}

// ---- small graphs built in the test, to check each refusal ----

fn f32_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type::FLOAT,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into(),
        ..Default::default()
    }
}

fn value(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: 1,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            dim_value: *d,
                            dim_param: d.is_none().then(|| "batch".into()),
                        })
                        .collect(),
                }),
            }),
        }),
    }
}

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
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

/// input [N, 3] → Gemm(W [2, 3], transB) → nodes… → output.
fn model(nodes: Vec<NodeProto>, initializers: Vec<TensorProto>, output: &str) -> Vec<u8> {
    model_of(nodes, initializers, 3, (output, 2))
}

/// A model of `nodes` from input `x` `[N, inputs]` to `output` `[N, outputs]`.
fn model_of(
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: i64,
    (output, outputs): (&str, i64),
) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        producer_name: "test".into(),
        producer_version: String::new(),
        graph: Some(GraphProto {
            node: nodes,
            name: "g".into(),
            initializer: initializers,
            input: vec![value("x", &[None, Some(inputs)])],
            output: vec![value(output, &[None, Some(outputs)])],
        }),
    }
    .encode_to_vec()
}

fn gemm(name: &str, input: &str, output: &str) -> NodeProto {
    let mut n = node("Gemm", name, &[input, "W", "b"], &[output]);
    n.attribute.push(int_attr("transB", 1));
    n
}

fn weights() -> Vec<TensorProto> {
    vec![
        f32_tensor("W", &[2, 3], &[1.0, 2.0, 3.0, -1.0, 0.0, 1.0]),
        f32_tensor("b", &[2], &[0.5, -0.5]),
    ]
}

fn refused(bytes: &[u8]) -> String {
    match import_bytes(bytes) {
        Ok(_) => panic!("the model should be refused"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_small_chain_imports_and_computes_gemm_exactly() {
    let bytes = model(
        vec![gemm("fc", "x", "h"), node("Softmax", "sm", &["h"], &["y"])],
        weights(),
        "y",
    );
    let imported = import_bytes(&bytes).unwrap();
    assert!(
        imported
            .notes
            .iter()
            .any(|n| n.contains("Softmax") && n.contains("dropped")),
        "{:?}",
        imported.notes
    );
    let x = Array2::from_shape_vec((1, 3), vec![1.0f32, 1.0, 1.0])
        .unwrap()
        .into_dyn();
    let y = imported.network.forward(x.view()).unwrap();
    assert_eq!(y.into_raw_vec_and_offset().0, vec![6.5, -0.5]);
}

#[test]
fn matmul_plus_add_becomes_one_dense_layer() {
    let bytes = model(
        vec![
            node("MatMul", "mm", &["x", "Wt"], &["m"]),
            node("Add", "add", &["bias", "m"], &["y"]),
        ],
        vec![
            f32_tensor("Wt", &[3, 2], &[1.0, -1.0, 2.0, 0.0, 3.0, 1.0]),
            f32_tensor("bias", &[2], &[0.5, -0.5]),
        ],
        "y",
    );
    let net = import_bytes(&bytes).unwrap().network;
    assert_eq!(net.layers().len(), 1);
    let x = Array2::from_shape_vec((1, 3), vec![1.0f32, 1.0, 1.0])
        .unwrap()
        .into_dyn();
    assert_eq!(
        net.forward(x.view()).unwrap().into_raw_vec_and_offset().0,
        vec![6.5, -0.5]
    );
}

#[test]
fn unsupported_operator_is_named_with_its_node() {
    let bytes = model(
        vec![gemm("fc", "x", "h"), node("Hardmax", "act/Hardmax", &["h"], &["y"])],
        weights(),
        "y",
    );
    let err = refused(&bytes);
    assert!(
        err.contains("unsupported operator Hardmax") && err.contains("'act/Hardmax'"),
        "{err}"
    );
}

#[test]
fn truncated_and_foreign_files_are_refused() {
    let bytes = model(vec![gemm("fc", "x", "y")], weights(), "y");
    for cut in [bytes.len() / 3, bytes.len() - 5] {
        let err = refused(&bytes[..cut]);
        assert!(err.contains("truncated or corrupt"), "cut {cut}: {err}");
    }
    let err = refused(b"LRPMODEL\x01\x00\x00\x00 not onnx");
    assert!(
        err.contains("truncated or corrupt") || err.contains("no default-domain opset"),
        "{err}"
    );
}

#[test]
fn weight_shape_contradicting_the_graph_is_refused() {
    let mut w = weights();
    w[0] = f32_tensor("W", &[2, 4], &[0.0; 8]);
    let err = refused(&model(vec![gemm("fc", "x", "y")], w, "y"));
    assert!(
        err.contains("'fc'") && err.contains("4 inputs") && err.contains("3 features"),
        "{err}"
    );

    let mut w = weights();
    w[0].raw_data.truncate(12);
    let err = refused(&model(vec![gemm("fc", "x", "y")], w, "y"));
    assert!(err.contains("initializer 'W'") && err.contains("12 bytes"), "{err}");
}

#[test]
fn a_branch_and_a_join_import_as_a_graph() {
    // x feeds two Gemms whose results are added: a branch and a join.
    let bytes = model(
        vec![
            gemm("a", "x", "h1"),
            gemm("b", "x", "h2"),
            node("Add", "join", &["h1", "h2"], &["y"]),
        ],
        weights(),
        "y",
    );
    let net = import_bytes(&bytes).unwrap().network;
    assert!(!net.is_chain());
    assert_eq!(net.inputs_of(2), &[1, 2]);
    let x = Array2::from_shape_vec((1, 3), vec![1.0f32, 1.0, 1.0])
        .unwrap()
        .into_dyn();
    assert_eq!(
        net.forward(x.view()).unwrap().into_raw_vec_and_offset().0,
        vec![13.0, -1.0]
    );
    // Two computed values multiplied (a gate) become a product node: h1 = h2 = W·x + b = [6.5, -0.5].
    let bytes = model(
        vec![
            gemm("a", "x", "h1"),
            gemm("b", "x", "h2"),
            node("Mul", "gate", &["h1", "h2"], &["y"]),
        ],
        weights(),
        "y",
    );
    let net = import_bytes(&bytes).unwrap().network;
    assert_eq!(
        net.forward(x.view()).unwrap().into_raw_vec_and_offset().0,
        vec![42.25, 0.25]
    );
}

#[test]
fn missing_initializer_is_refused() {
    let mut w = weights();
    w.remove(1);
    let err = refused(&model(vec![gemm("fc", "x", "y")], w, "y"));
    assert!(err.contains("'fc'") && err.contains("input 'b' is missing"), "{err}");
}

#[test]
fn other_refusals_name_the_problem() {
    // A softmax in the middle is a node (attention weights); over the batch axis it is refused.
    let bytes = model(
        vec![node("Softmax", "sm", &["x"], &["s"]), gemm("fc", "s", "y")],
        weights(),
        "y",
    );
    let net = import_bytes(&bytes).unwrap().network;
    let x = ndarray::arr2(&[[1.0f32, 2.0, 3.0], [0.5, -1.0, 0.0]]).into_dyn();
    let y = net.forward(x.view()).unwrap();
    for (row, out) in x.outer_iter().zip(y.outer_iter()) {
        let e: Vec<f32> = row.iter().map(|v| v.exp()).collect();
        let s: Vec<f32> = e.iter().map(|v| v / e.iter().sum::<f32>()).collect();
        let want = [s[0] + 2.0 * s[1] + 3.0 * s[2] + 0.5, -s[0] + s[2] - 0.5];
        assert!(
            (out[0] - want[0]).abs() < 1e-6 && (out[1] - want[1]).abs() < 1e-6,
            "{out} vs {want:?}"
        );
    }
    let mut sm = node("Softmax", "sm", &["x"], &["s"]);
    sm.attribute.push(int_attr("axis", 0));
    let bytes = model(vec![sm, gemm("fc", "s", "y")], weights(), "y");
    let err = refused(&bytes);
    assert!(err.contains("'sm'") && err.contains("axis 0"), "{err}");
    // An opset outside 11–21.
    let mut m = ModelProto::decode(&model(vec![gemm("fc", "x", "y")], weights(), "y")[..]).unwrap();
    m.opset_import[0].version = 9;
    assert!(refused(&m.encode_to_vec()).contains("opset 9 is not supported"));
    // A node reading a value nothing provides.
    let bytes = model(
        vec![gemm("fc", "x", "y"), node("Relu", "stray", &["q"], &["r"])],
        weights(),
        "y",
    );
    let err = refused(&bytes);
    assert!(err.contains("'stray'") && err.contains("input 'q' is missing"), "{err}");
    assert!(matches!(import_bytes(&m.encode_to_vec()), Err(OnnxError::Graph(_))));
}

fn scalar(name: &str, v: f32) -> TensorProto {
    f32_tensor(name, &[], &[v])
}

/// `Gemm` then an activation written as several elementwise nodes (`nodes` read `h`, write `y`): imports as a dense
/// layer and one activation, whose values and gradients equal the built-in activation's.
fn check_island(what: &str, nodes: Vec<NodeProto>, mut consts: Vec<TensorProto>, builtin: lrp_core::Activation) {
    let mut all = vec![gemm("fc", "x", "h")];
    all.extend(nodes);
    consts.extend(weights());
    let imported = import_bytes(&model(all, consts, "y")).unwrap_or_else(|e| panic!("{what}: {e}"));
    let net = imported.network;
    let kinds: Vec<_> = net.layers().iter().map(|l| l.kind().name()).collect();
    assert_eq!(kinds, ["dense", "activation"], "{what}");
    let mut nodes = net.nodes();
    nodes[1].0 = lrp_core::Layer::Activation(builtin);
    let reference = lrp_core::Network::graph(net.input_shape().to_vec(), nodes).unwrap();
    let x = Array2::from_shape_fn((7, 3), |(i, j)| (i as f32 - 3.0) * 0.9 + j as f32 * 0.35 - 0.2).into_dyn();
    let (a, b) = (net.forward(x.view()).unwrap(), reference.forward(x.view()).unwrap());
    for (p, q) in a.iter().zip(b.iter()) {
        assert!((p - q).abs() <= 1e-5 * (1.0 + q.abs()), "{what}: {p} vs {q}");
    }
    let g = ArrayD::from_elem(a.raw_dim(), 1.0f32);
    let ga = net
        .input_gradient(&net.forward_trace(x.view()).unwrap(), g.clone())
        .unwrap();
    let gb = reference
        .input_gradient(&reference.forward_trace(x.view()).unwrap(), g)
        .unwrap();
    for (p, q) in ga.iter().zip(gb.iter()) {
        assert!((p - q).abs() <= 1e-4 * (1.0 + q.abs()), "{what} gradient: {p} vs {q}");
    }
}

#[test]
fn decomposed_activations_import_as_one_island() {
    use lrp_core::Activation;
    check_island(
        "SiLU",
        vec![
            node("Sigmoid", "s", &["h"], &["s"]),
            node("Mul", "m", &["h", "s"], &["y"]),
        ],
        vec![],
        Activation::Silu,
    );
    check_island(
        "GELU (erf)",
        vec![
            node("Div", "d", &["h", "sqrt2"], &["d"]),
            node("Erf", "e", &["d"], &["e"]),
            node("Add", "a", &["e", "one"], &["a"]),
            node("Mul", "m", &["h", "a"], &["m"]),
            node("Mul", "half", &["m", "half"], &["y"]),
        ],
        vec![
            scalar("sqrt2", std::f32::consts::SQRT_2),
            scalar("one", 1.0),
            scalar("half", 0.5),
        ],
        Activation::Gelu,
    );
    check_island(
        "Softplus behind a threshold",
        vec![
            node("Greater", "g", &["h", "twenty"], &["g"]),
            node("Exp", "e", &["h"], &["e"]),
            node("Add", "a", &["e", "one"], &["a"]),
            node("Log", "l", &["a"], &["l"]),
            node("Where", "w", &["g", "h", "l"], &["y"]),
        ],
        vec![scalar("twenty", 20.0), scalar("one", 1.0)],
        Activation::Softplus,
    );
    check_island(
        "HardSwish",
        vec![
            node("Add", "a", &["h", "three"], &["a"]),
            node("Clip", "c", &["a", "zero", "six"], &["c"]),
            node("Mul", "m", &["h", "c"], &["m"]),
            node("Div", "d", &["m", "six"], &["y"]),
        ],
        vec![scalar("three", 3.0), scalar("zero", 0.0), scalar("six", 6.0)],
        Activation::HardSwish,
    );
}

#[test]
fn a_bias_before_an_island_stays_the_dense_layers_bias() {
    let bytes = model(
        vec![
            node("MatMul", "mm", &["x", "Wt"], &["m"]),
            node("Add", "bias", &["m", "b"], &["h"]),
            node("Sigmoid", "s", &["h"], &["s"]),
            node("Mul", "silu", &["h", "s"], &["y"]),
        ],
        vec![
            f32_tensor("Wt", &[3, 2], &[1.0, -1.0, 2.0, 0.0, 3.0, 1.0]),
            f32_tensor("b", &[2], &[0.5, -0.5]),
        ],
        "y",
    );
    let net = import_bytes(&bytes).unwrap().network;
    let kinds: Vec<_> = net.layers().iter().map(|l| l.kind().name()).collect();
    assert_eq!(kinds, ["dense", "activation"]);
    match &net.layers()[0] {
        lrp_core::Layer::Dense(d) => assert!(d.bias.is_some()),
        other => panic!("{other:?}"),
    }
    // An island with a non-scalar constant is refused by name.
    let bytes = model(
        vec![
            gemm("fc", "x", "h"),
            node("Mul", "scale", &["h", "v"], &["hv"]),
            node("Sigmoid", "s", &["hv"], &["s"]),
            node("Mul", "gate", &["h", "s"], &["y"]),
        ],
        {
            let mut w = weights();
            w.push(f32_tensor("v", &[2], &[1.0, 2.0]));
            w
        },
        "y",
    );
    let err = refused(&bytes);
    assert!(
        err.contains("'gate'") && err.contains("island") && err.contains("not a scalar"),
        "{err}"
    );
}

/// The reference LSTM model, changed by `change`, imported.
fn lstm_imported(change: impl FnOnce(&mut GraphProto)) -> lrp_core::Network {
    let mut m = ModelProto::decode(&std::fs::read(fixture("mnist-rows-lstm.onnx")).unwrap()[..]).unwrap();
    change(m.graph.as_mut().unwrap());
    import_bytes(&m.encode_to_vec()).unwrap().network
}

fn string_attr(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 3,
        s: s.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn set_attr(n: &mut NodeProto, a: AttributeProto) {
    n.attribute.retain(|x| x.name != a.name);
    n.attribute.push(a);
}

/// A float initializer of the graph as an array.
fn init(g: &GraphProto, name: &str) -> ArrayD<f32> {
    let t = g.initializer.iter().find(|t| t.name == name).unwrap();
    let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    let v: Vec<f32> = if t.raw_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    ArrayD::from_shape_vec(ndarray::IxDyn(&dims), v).unwrap()
}

fn replace_init(g: &mut GraphProto, name: &str, a: &ArrayD<f32>) {
    g.initializer.retain(|t| t.name != name);
    let dims: Vec<i64> = a.shape().iter().map(|&d| d as i64).collect();
    g.initializer
        .push(f32_tensor(name, &dims, &a.iter().copied().collect::<Vec<_>>()));
}

#[test]
fn reverse_bidirectional_and_batch_first_lstms_import() {
    let x: ArrayD<f32> = ndarray_npy::read_npy(fixture("mnist-rows-lstm-inputs.npy")).unwrap();
    let x = x.slice_axis(ndarray::Axis(0), (0..5).into()).to_owned();
    let mut reversed = x.clone();
    reversed.invert_axis(ndarray::Axis(1));
    let forward = lstm_imported(|_| {});
    let close = |a: &ArrayD<f32>, b: &ArrayD<f32>, what: &str| {
        let err = lrp_testkit::max_abs((a - b).iter());
        assert!(err <= 1e-5 * (1.0 + max_abs(b)), "{what}: {err}");
    };
    // direction=reverse: the final state of the reversed pass is the forward pass over the reversed sequence.
    let reverse = lstm_imported(|g| set_attr(lstm_node(g), string_attr("direction", "reverse")));
    close(
        &reverse.forward(x.view()).unwrap(),
        &forward.forward(reversed.view()).unwrap(),
        "reverse",
    );
    // bidirectional with the same weights both ways and the dense layer halved over [h_fwd, h_rev].
    let bidirectional = lstm_imported(|g| {
        for name in ["lstm.W", "lstm.R", "lstm.B"] {
            let a = init(g, name);
            let both = ndarray::concatenate(ndarray::Axis(0), &[a.view(), a.view()]).unwrap();
            replace_init(g, name, &both);
        }
        let fc = init(g, "fc.weight") * 0.5;
        let fc2 = ndarray::concatenate(ndarray::Axis(1), &[fc.view(), fc.view()]).unwrap();
        replace_init(g, "fc.weight", &fc2);
        g.initializer.retain(|t| t.name != "flat_shape");
        g.initializer.push(TensorProto {
            name: "flat_shape".into(),
            dims: vec![2],
            data_type: data_type::INT64,
            int64_data: vec![0, 128],
            ..Default::default()
        });
        set_attr(lstm_node(g), string_attr("direction", "bidirectional"));
    });
    // W/2·h_f + W/2·h_r + b = ((W h_f + b) + (W h_r + b)) / 2 = (fwd(x) + fwd(reversed x)) / 2.
    let want = (&forward.forward(x.view()).unwrap() + &forward.forward(reversed.view()).unwrap()) * 0.5;
    close(&bidirectional.forward(x.view()).unwrap(), &want, "bidirectional");
    // layout=1 (batch first): no transposes around the LSTM.
    let batch_first = lstm_imported(|g| {
        g.node.retain(|n| n.op_type != "Transpose");
        let l = lstm_node(g);
        l.input[0] = "input".into();
        set_attr(
            l,
            AttributeProto {
                name: "layout".into(),
                r#type: 2,
                i: 1,
                ..Default::default()
            },
        );
        let r = g.node.iter_mut().find(|n| n.op_type == "Reshape").unwrap();
        r.input[0] = "Y_h".into();
    });
    close(
        &batch_first.forward(x.view()).unwrap(),
        &forward.forward(x.view()).unwrap(),
        "layout 1",
    );
}

/// A model of more than `MAP_FROM_BYTES` is read through a mapping of its file (where the lease is granted, as on a
/// file this test has just written): its weights must arrive value for value, and its refusals must stay the same.
#[test]
fn a_mapped_model_file_gives_its_weights_exactly() {
    let (inputs, outputs) = (1100usize, 1000usize);
    let w: Vec<f32> = (0..inputs * outputs)
        .map(|k| (k % 9973) as f32 * 0.25 - (k / 9973) as f32)
        .collect();
    let b: Vec<f32> = (0..outputs).map(|i| i as f32 * -0.5).collect();
    let mut n = node("Gemm", "fc", &["x", "W", "b"], &["y"]);
    n.attribute.push(int_attr("transB", 1));
    let initializers = vec![
        f32_tensor("W", &[outputs as i64, inputs as i64], &w),
        f32_tensor("b", &[outputs as i64], &b),
    ];
    let bytes = model_of(vec![n], initializers, inputs as i64, ("y", outputs as i64));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.onnx");
    std::fs::write(&path, &bytes).unwrap();
    let whole = lrp_core::whole_file::whole_file(&path).unwrap();
    assert!(
        whole.is_mapped(),
        "the test's file must take the mapped path: {whole:?}"
    );
    drop(whole);
    let net = import_file(&path).unwrap().network;
    // One-hot inputs pick out columns of W: y_i = W[i, j] + b_i, computed here from the values written.
    for j in [0, 1, 547, inputs - 1] {
        let mut x = Array2::<f32>::zeros((1, inputs));
        x[[0, j]] = 1.0;
        let y = net.forward(x.into_dyn().view()).unwrap().into_raw_vec_and_offset().0;
        let want: Vec<f32> = (0..outputs).map(|i| w[i * inputs + j] + b[i]).collect();
        assert_eq!(y, want, "column {j}");
    }
    // A cut copy of the same file is refused as before.
    std::fs::write(&path, &bytes[..bytes.len() - 4096]).unwrap();
    let err = import_file(&path).unwrap_err().to_string();
    assert!(err.contains("truncated or corrupt"), "{err}");
}

/// A file past protobuf's 2 GiB is refused by its length, before anything is read or mapped (a sparse one here: 3 GiB
/// of holes, which reading would page in), and a folder or a character device as not a regular file.
#[test]
fn files_past_two_gib_and_special_files_are_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("huge.onnx");
    std::fs::File::create(&big).unwrap().set_len(3 << 30).unwrap();
    let Err(OnnxError::Decode(e)) = import_file(&big) else {
        panic!("a 3 GiB file was not refused")
    };
    assert!(e.contains("is 3221225472 bytes, more than the 2 GiB"), "{e}");
    for special in [dir.path().to_path_buf(), PathBuf::from("/dev/null")] {
        let Err(OnnxError::Decode(e)) = import_file(&special) else {
            panic!("{} was not refused", special.display())
        };
        assert!(e.contains("is not a regular file"), "{}: {e}", special.display());
    }
}
