//! ONNX models built in the tests, node by node (what an exporter would write).

use lrp_onnx::proto::*;
use prost::Message;

/// A float tensor.
pub fn f32s(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type::FLOAT,
        raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>().into(),
        ..Default::default()
    }
}

/// A 1-D int64 tensor.
pub fn i64s(name: &str, v: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![v.len() as i64],
        data_type: data_type::INT64,
        raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>().into(),
        ..Default::default()
    }
}

/// A node named after its first output.
pub fn op(op: &str, ins: &[&str], outs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: outs[0].into(),
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: outs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

/// An integer attribute.
pub fn int_attr(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 2,
        i,
        ..Default::default()
    }
}

/// An attribute holding a list of integers.
pub fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 7,
        ints: v.to_vec(),
        ..Default::default()
    }
}

/// A float value of shape `dims` (`None`: a symbolic dimension, the batch).
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
                            dim_param: d.is_none().then(|| "N".into()),
                        })
                        .collect(),
                }),
            }),
        }),
    }
}

/// The bytes of a model of opset `opset`: `nodes` over the input `x` of shape `input`, to the output `output` of
/// shape `output_dims`.
pub fn model(
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    opset: i64,
    input: &[Option<i64>],
    (output, output_dims): (&str, &[Option<i64>]),
) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        producer_name: "test".into(),
        producer_version: String::new(),
        graph: Some(GraphProto {
            node: nodes,
            name: "g".into(),
            initializer: inits,
            input: vec![value("x", input)],
            output: vec![value(output, output_dims)],
        }),
    }
    .encode_to_vec()
}
