//! The two backward walks over a network: relevance itself ([`relevance`], the classic form) and a modified gradient
//! ([`gradient`], AttnLRP's form). Each node's rule is the plan's step for it; the rules for layers with weights are
//! in [`crate::rules`].

use ndarray::ArrayD;

pub(crate) mod gradient;
pub(crate) mod relevance;

/// A caller's look at every value's relevance during the backward pass.
pub(crate) type Keep<'a> = &'a mut dyn FnMut(usize, &ArrayD<f32>);

/// A change to what flows back at a value (relevance, or the modified gradient in the gradient form), made once the
/// value's relevance is complete and before the nodes below read it: a concept condition's channel mask. Every
/// rule is linear in what it receives, so masking `ĝ` masks the relevance `value ⊙ ĝ` alike.
pub(crate) type Mask<'a> = &'a dyn Fn(usize, &mut ArrayD<f32>);

/// What the backward pass reports besides the input relevance.
pub(crate) struct Visit<'a> {
    /// Each value's per-sample relevance sum.
    pub sums: bool,
    pub keep: Option<Keep<'a>>,
    /// Applied before the sums and `keep` see the value.
    pub mask: Option<Mask<'a>>,
}
