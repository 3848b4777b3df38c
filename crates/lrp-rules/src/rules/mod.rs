//! The LRP rules for layers with weights: [`Rule`], checked at construction so an invalid rule cannot exist, and
//! each rule's two forms side by side in its own file — the relevance form (relevance divided by pre-activations,
//! for networks without transformer nodes) and the gradient form (a modified gradient `ĝ` with `R = x ⊙ ĝ`, for
//! every network):
//! [`epsilon`] (ε and LRP-0), [`signed`] (z⁺ and αβ), [`gamma`], [`zbox`] (z^B), [`uniform`] (w² and flat), and
//! [`lstm`] (Arras et al.'s LSTM rule, relevance form only).

use std::fmt;

use ndarray::ArrayD;

use crate::error::{Result, RulesError};
use crate::linear::LinearMap;
use crate::numerics::to_rows;
use crate::plan::{Maps, Prepared};

pub(crate) mod epsilon;
pub(crate) mod gamma;
pub(crate) mod lstm;
pub(crate) mod signed;
pub(crate) mod uniform;
pub(crate) mod zbox;

/// A rule for a layer with weights (see `LRP-RULES.md` for each formula).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Rule {
    /// LRP-ε (Bach et al. 2015, eq. 58): `x ⊙ Wᵀ(R / stab(Wx + b, ε))`. ε = 0 is LRP-0.
    Epsilon(f32),
    /// LRP-γ (Montavon et al. 2019, sec. 10.2.3): favours positive contributions by `W + γW⁺`.
    Gamma(f32),
    /// z⁺ (Montavon et al. 2017, Deep Taylor): positive contributions only, bias `b⁺`.
    ZPlus,
    /// LRP-αβ (Bach et al. 2015, eq. 60) with `α − β = 1`.
    AlphaBeta(f32, f32),
    /// z^B (Montavon et al. 2017): Deep Taylor for inputs bounded in `[low, high]`.
    ZBox(f32, f32),
    /// w² (Montavon et al. 2017): relevance by squared weights, independent of the input.
    WSquare,
    /// Flat (Lapuschkin et al. 2019): relevance spread uniformly over each receptive field.
    Flat,
}

fn finite(name: &str, v: f32) -> Result<f32> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(RulesError::BadNumber {
            spec: String::new(),
            reason: format!("{name} must be finite, got {v}"),
        })
    }
}

impl Rule {
    /// ε-rule; refuses ε < 0 or non-finite.
    pub fn epsilon(e: f32) -> Result<Rule> {
        if finite("epsilon", e)? < 0.0 {
            return Err(RulesError::BadNumber {
                spec: String::new(),
                reason: format!("epsilon must be ≥ 0, got {e}"),
            });
        }
        Ok(Rule::Epsilon(e))
    }

    /// γ-rule; refuses γ < 0 or non-finite.
    pub fn gamma(g: f32) -> Result<Rule> {
        if finite("gamma", g)? < 0.0 {
            return Err(RulesError::BadNumber {
                spec: String::new(),
                reason: format!("gamma must be ≥ 0, got {g}"),
            });
        }
        Ok(Rule::Gamma(g))
    }

    /// αβ-rule; refuses `α − β ≠ 1` or negative parameters.
    pub fn alpha_beta(a: f32, b: f32) -> Result<Rule> {
        let (a, b) = (finite("alpha", a)?, finite("beta", b)?);
        if a < 0.0 || b < 0.0 || ((a - b) - 1.0).abs() > 1e-6 {
            return Err(RulesError::AlphaBeta { alpha: a, beta: b });
        }
        Ok(Rule::AlphaBeta(a, b))
    }

    /// z^B-rule; refuses `low > high` or non-finite bounds.
    pub fn zbox(low: f32, high: f32) -> Result<Rule> {
        let (l, h) = (finite("low", low)?, finite("high", high)?);
        if l > h {
            return Err(RulesError::BadNumber {
                spec: String::new(),
                reason: format!("zbox needs low ≤ high, got zbox({l},{h})"),
            });
        }
        Ok(Rule::ZBox(l, h))
    }

    /// The rule's name in the spec grammar.
    pub fn name(&self) -> &'static str {
        match self {
            Rule::Epsilon(_) => "epsilon",
            Rule::Gamma(_) => "gamma",
            Rule::ZPlus => "zplus",
            Rule::AlphaBeta(..) => "alphabeta",
            Rule::ZBox(..) => "zbox",
            Rule::WSquare => "wsquare",
            Rule::Flat => "flat",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Epsilon(e) => write!(f, "epsilon({e})"),
            Rule::Gamma(g) => write!(f, "gamma({g})"),
            Rule::AlphaBeta(a, b) => write!(f, "alphabeta({a},{b})"),
            Rule::ZBox(l, h) => write!(f, "zbox({l},{h})"),
            other => f.write_str(other.name()),
        }
    }
}

/// What a rule on a layer with weights gives in the gradient form.
pub(crate) enum Share {
    /// The modified gradient at the layer's input (`R_x = x ⊙ ĝ_x`).
    Grad(ArrayD<f32>),
    /// Relevance itself, for rules whose result is not `x ⊙ (something)` (z^B, w², flat): only on a layer that
    /// reads the network input (through reshapes at most), where it is added to the input's relevance.
    Direct(ArrayD<f32>),
}

/// Whether a dense layer works on the rows of a larger value (the tokens of a transformer).
fn on_rows(p: &Prepared, x: &ArrayD<f32>) -> bool {
    matches!(p.maps.map(), LinearMap::Dense(_)) && x.ndim() > 2
}

/// One rule on one layer with weights, relevance form: input `x`, its output `z = Wx + b` (from the trace),
/// output relevance `r`.
pub(crate) fn relevance(p: &Prepared, x: &ArrayD<f32>, z: &ArrayD<f32>, r: ArrayD<f32>) -> ArrayD<f32> {
    if on_rows(p, x) {
        let out = relevance(p, &to_rows(x), &to_rows(z), to_rows(&r));
        return out.into_shape_with_order(x.raw_dim()).expect("same element count");
    }
    match (&p.maps, p.rule) {
        (Maps::Plain(w), Rule::Epsilon(e)) => epsilon::relevance(w, e, x, z, r),
        (Maps::Signed { pos, neg }, rule) => signed::relevance(pos, neg, signed::weights(rule), x, &r),
        (
            Maps::Gamma {
                p: pm,
                n: nm,
                both,
                plus,
            },
            _,
        ) => gamma::relevance(pm, nm, both, plus, x, z, &r),
        (maps @ Maps::ZBox { .. }, Rule::ZBox(..)) => zbox::relevance(maps, x, z, &r),
        (Maps::Uniform { map, denom }, _) => uniform::relevance(map, denom, x, &r),
        (maps, rule) => unreachable!("rule {rule} prepared with the wrong maps {maps:?}"),
    }
}

/// One rule on one layer with weights, gradient form: input `x`, output `z`, the modified gradient `g` at the
/// output (so `R = z ⊙ g`). Each rule is the same formula as [`relevance`] with the final `x ⊙` left out.
pub(crate) fn gradient(p: &Prepared, x: &ArrayD<f32>, z: &ArrayD<f32>, g: &ArrayD<f32>) -> Share {
    if on_rows(p, x) {
        return match gradient(p, &to_rows(x), &to_rows(z), &to_rows(g)) {
            Share::Grad(a) => Share::Grad(a.into_shape_with_order(x.raw_dim()).expect("same element count")),
            Share::Direct(a) => Share::Direct(a.into_shape_with_order(x.raw_dim()).expect("same element count")),
        };
    }
    match (&p.maps, p.rule) {
        (Maps::Plain(w), Rule::Epsilon(e)) => Share::Grad(epsilon::gradient(w, e, x, z, g)),
        (Maps::Signed { pos, neg }, rule) => Share::Grad(signed::gradient(pos, neg, signed::weights(rule), x, z, g)),
        (Maps::Gamma { p: pm, n: nm, .. }, _) => Share::Grad(gamma::gradient(pm, nm, x, z, g)),
        _ => Share::Direct(relevance(p, x, z, z * g)),
    }
}
