//! Composites: the presets that give each kind of layer its rule (Zennit's `composites.py`), as lists of
//! `selector = rule` assignments applied in order (later ones override earlier ones).

use crate::rules::Rule;
use crate::spec::{Assign, DEFAULT_EPSILON, DEFAULT_GAMMA, Selector};

/// Every preset name, in the order `lrp` lists them.
pub const PRESETS: &[&str] = &[
    "epsilon",
    "zplus",
    "gamma",
    "alpha1beta0",
    "alpha2beta1",
    "epsilon-plus",
    "epsilon-plus-flat",
    "epsilon-gamma-box",
    "epsilon-alpha2-beta1",
    "epsilon-alpha2-beta1-flat",
    "deep-taylor",
    "attnlrp",
    "gradient",
    "gradient-x-input",
    "integrated-gradients",
    "smoothgrad",
];

/// The assignments of an LRP composite preset, `None` for any other name. Composite presets give dense layers
/// epsilon, convolutions the named rule, then the first layer its own; LSTMs take epsilon last, so that a first
/// layer that is an LSTM keeps the only rule it takes.
pub(crate) fn assigns(name: &str) -> Option<Vec<Assign>> {
    let a = |selector, rule| Assign { selector, rule };
    let eps = Rule::Epsilon(DEFAULT_EPSILON);
    let composite = |conv: Rule, first: Option<Rule>| {
        let mut v = vec![a(Selector::Dense, eps), a(Selector::Conv, conv)];
        v.extend(first.map(|r| a(Selector::First, r)));
        v.push(a(Selector::Lstm, eps));
        v
    };
    let ab21 = Rule::AlphaBeta(2.0, 1.0);
    Some(match name {
        "alpha1beta0" => vec![a(Selector::All, Rule::AlphaBeta(1.0, 0.0))],
        "alpha2beta1" => vec![a(Selector::All, ab21)],
        "epsilon-plus" => composite(Rule::ZPlus, None),
        "epsilon-plus-flat" => composite(Rule::ZPlus, Some(Rule::Flat)),
        "epsilon-gamma-box" => composite(Rule::Gamma(DEFAULT_GAMMA), Some(Rule::ZBox(0.0, 1.0))),
        "epsilon-alpha2-beta1" => composite(ab21, None),
        "epsilon-alpha2-beta1-flat" => composite(ab21, Some(Rule::Flat)),
        "deep-taylor" => vec![a(Selector::All, Rule::ZPlus), a(Selector::First, Rule::ZBox(0.0, 1.0))],
        // AttnLRP (Achtibat et al. 2024): LRP-0 on every layer with weights; a network's transformer nodes take
        // their own rules in the gradient form whatever the preset.
        "attnlrp" => vec![a(Selector::All, Rule::Epsilon(0.0))],
        _ => return None,
    })
}
