//! The LRP rules for linear layers, checked at construction so an invalid rule cannot exist.

use std::fmt;

use crate::error::{Result, RulesError};

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
