//! The two backward walks over a network: relevance itself ([`relevance`], the classic form) and a modified gradient
//! ([`gradient`], AttnLRP's form). Each node's rule is the plan's step for it; the rules for layers with weights are
//! in [`crate::rules`].

use ndarray::ArrayD;

pub(crate) mod gradient;
pub(crate) mod relevance;

/// A caller's look at every value's relevance during the backward pass.
pub(crate) type Keep<'a> = &'a mut dyn FnMut(usize, &ArrayD<f32>);

/// What the backward pass reports besides the input relevance.
pub(crate) struct Visit<'a> {
    /// Each value's per-sample relevance sum.
    pub sums: bool,
    pub keep: Option<Keep<'a>>,
}
