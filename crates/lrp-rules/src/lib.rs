//! `lrp-rules`: Layer-wise Relevance Propagation on `lrp-core` networks.
//!
//! - [`Rule`]: the rules for dense and conv layers (ε, γ, z⁺, αβ, z^B, w², flat), checked at construction;
//! - [`Spec`]: the rule-spec grammar and presets, parsed once into typed values;
//! - [`Plan`]: a spec resolved against a network, with each rule's modified maps prepared;
//! - [`Explainer`]: relevance from `onehot(target)·logit` back to the input, with per-layer relevance sums
//!   (conservation diagnostics), and the gradient-based baselines (gradient, gradient × input = simple Taylor,
//!   integrated gradients, SmoothGrad).
//!
//! Every rule is written once over [`linear::LinearMap`], which treats dense and conv layers alike.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod composites;
pub mod concepts;
mod error;
mod explain;
pub mod faithfulness;
pub mod linear;
mod numerics;
mod plan;
mod rules;
pub mod spec;
mod walk;

pub use concepts::{Channels, ConceptExplanation, ConceptLayer, Condition};
pub use error::{Result, RulesError};
pub use explain::{Explainer, Explanation, Target};
pub use numerics::STABILIZER;
pub use plan::{Form, Plan, first_layers};
pub use rules::Rule;
pub use spec::{Assign, Attribution, Method, PRESETS, Selector, Spec};
