//! The one map from an ONNX operator's name to the handler that translates it.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::context::Handler;
use crate::ops;

fn registry() -> &'static BTreeMap<&'static str, Handler> {
    static REGISTRY: OnceLock<BTreeMap<&'static str, Handler>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut reg = Vec::new();
        ops::activation::register(&mut reg);
        ops::arith::register(&mut reg);
        ops::linear::register(&mut reg);
        ops::logic::register(&mut reg);
        ops::pool::register(&mut reg);
        ops::rec::register(&mut reg);
        ops::route::register(&mut reg);
        ops::shape::register(&mut reg);
        ops::transformer::register(&mut reg);
        let map: BTreeMap<_, _> = reg.iter().copied().collect();
        assert_eq!(map.len(), reg.len(), "an operator is registered twice");
        map
    })
}

/// The handler of an operator of the default domain.
pub(crate) fn handler(op_type: &str) -> Option<Handler> {
    registry().get(op_type).copied()
}

/// Every supported operator, in alphabetical order (for messages).
pub(crate) fn supported() -> Vec<&'static str> {
    registry().keys().copied().collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_operator_has_one_handler() {
        let ops = super::supported();
        assert!(ops.len() >= 40, "{ops:?}");
        for op in ["Conv", "Gemm", "MatMul", "Softmax", "Reshape", "LSTM", "Add", "Clip"] {
            assert!(super::handler(op).is_some(), "{op}");
        }
        assert!(super::handler("Hardmax").is_none());
    }
}
