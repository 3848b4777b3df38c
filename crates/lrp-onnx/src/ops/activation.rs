//! Elementwise activations of one computed value.

use lrp_core::{Activation, Layer};

use crate::context::{Handler, NodeCtx};
use crate::error::Result;
use crate::tensor::to_f32;

pub(crate) fn register(reg: &mut Vec<(&'static str, Handler)>) {
    reg.extend([
        ("Relu", activation as Handler),
        ("Tanh", activation),
        ("Sigmoid", activation),
        ("LeakyRelu", activation),
        ("Elu", activation),
        ("Gelu", activation),
        ("Softplus", activation),
        ("HardSigmoid", activation),
        ("HardSwish", activation),
        ("Clip", clip),
    ]);
}

/// The activation a node computes.
fn of(c: &NodeCtx) -> Activation {
    match c.op() {
        "Tanh" => Activation::Tanh,
        "Sigmoid" => Activation::Sigmoid,
        "LeakyRelu" => Activation::LeakyRelu(c.float("alpha", 0.01)),
        "Elu" => Activation::Elu(c.float("alpha", 1.0)),
        "Gelu" => match c.string("approximate").as_deref() {
            Some("tanh") => Activation::GeluTanh,
            _ => Activation::Gelu,
        },
        "Softplus" => Activation::Softplus,
        "HardSigmoid" => Activation::HardSigmoid(c.float("alpha", 0.2), c.float("beta", 0.5)),
        _ => Activation::HardSwish,
    }
}

/// The one computed input of an activation (its other inputs, if any, must be constants).
fn input(c: &NodeCtx) -> Result<crate::value::Computed> {
    match c.computed()[..] {
        [0] => Ok(c.node_at(0).expect("computed")),
        [] => Err(c.err(format!(
            "{} on constants is not supported at import (opset {})",
            c.op(),
            c.st.opset
        ))),
        _ => Err(c.err("reads a computed value as a parameter")),
    }
}

fn activation(c: &mut NodeCtx) -> Result<()> {
    let x = input(c)?;
    let layer = if c.op() == "Relu" {
        Layer::Relu(lrp_core::Relu)
    } else {
        let a = of(c);
        a.validate().map_err(|e| c.err(e))?;
        Layer::Activation(a)
    };
    c.push(layer, &x)
}

fn clip(c: &mut NodeCtx) -> Result<()> {
    let x = input(c)?;
    let bound = |i: usize, default: f32| -> Result<f32> {
        match c.input_name(i) {
            None => Ok(default),
            Some(n) => {
                let t = c
                    .const_input(i)
                    .ok_or_else(|| c.err(format!("bound '{n}' must be a constant")))?;
                to_f32(t)?
                    .iter()
                    .next()
                    .copied()
                    .ok_or_else(|| c.err(format!("bound '{n}' is empty")))
            }
        }
    };
    let (lo, hi) = if c.st.opset >= 11 {
        (bound(1, f32::MIN)?, bound(2, f32::MAX)?)
    } else {
        (c.float("min", f32::MIN), c.float("max", f32::MAX))
    };
    let layer = if lo == 0.0 && hi == f32::MAX {
        Layer::Relu(lrp_core::Relu)
    } else {
        let a = Activation::Clip(lo, hi);
        a.validate().map_err(|e| c.err(e))?;
        Layer::Activation(a)
    };
    c.push(layer, &x)
}
