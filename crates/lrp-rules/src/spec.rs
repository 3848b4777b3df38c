//! The rule-spec grammar (see the oracle README), parsed once into typed values.
//!
//! ```text
//! spec     := preset | mapping
//! preset   := NAME [ "(" args ")" ]
//! mapping  := assign ( ";" assign )*          later assignments override earlier ones
//! assign   := selector "=" rule
//! selector := "all" | "first" | "dense" | "conv" | "lstm" | "#" N
//! rule     := "epsilon" ["(" e ")"] | "gamma" ["(" g ")"] | "zplus" | "alphabeta(" a "," b ")"
//!           | "zbox(" low "," high ")" | "wsquare" | "flat"
//! ```

use std::fmt;
use std::str::FromStr;

use crate::error::{Result, RulesError};
use crate::rules::Rule;

pub use crate::composites::PRESETS;

/// Which layers with weights an assignment reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selector {
    /// Every layer with weights.
    All,
    /// The first layer with weights, whatever its kind.
    First,
    /// Dense layers.
    Dense,
    /// Convolutions.
    Conv,
    /// LSTM layers.
    Lstm,
    /// The N-th layer with weights (0-based, forward order).
    Index(usize),
}

/// `selector = rule`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Assign {
    /// Which layers.
    pub selector: Selector,
    /// Which rule.
    pub rule: Rule,
}

/// Attribution methods that are not LRP rules (same output convention).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Attribution {
    /// `∂ logit / ∂x`.
    Gradient,
    /// `x ⊙ ∂ logit / ∂x`: simple Taylor decomposition at the zero root.
    GradientXInput,
    /// Integrated gradients (Sundararajan et al. 2017), zero baseline, midpoint Riemann sum.
    IntegratedGradients {
        /// Number of steps.
        steps: usize,
    },
    /// SmoothGrad (Smilkov et al. 2017): mean gradient over noisy copies, seeded by each sample's content.
    SmoothGrad {
        /// Number of noisy copies.
        n: usize,
        /// Standard deviation of the noise.
        sigma: f32,
    },
}

/// What a spec asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Method {
    /// LRP with these assignments (presets expanded), applied in order.
    Lrp(Vec<Assign>),
    /// A gradient-based attribution.
    Attribution(Attribution),
}

/// A parsed rule spec.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    text: String,
    method: Method,
}

/// Default ε of the epsilon rule.
pub const DEFAULT_EPSILON: f32 = 1e-6;
/// Default γ of the gamma rule.
pub const DEFAULT_GAMMA: f32 = 0.25;
/// The most steps of integrated gradients and copies of SmoothGrad a spec may ask for.
pub const MAX_STEPS: usize = 10_000;
/// The largest noise of SmoothGrad (beyond it every copy is noise, and float32 overflows near 1e38).
pub const MAX_SIGMA: f32 = 1e6;
/// Default steps of integrated gradients.
pub const DEFAULT_IG_STEPS: usize = 32;
/// Default copies of SmoothGrad.
pub const DEFAULT_SMOOTHGRAD_N: usize = 32;
/// Default noise of SmoothGrad (inputs lie in [0, 1]).
pub const DEFAULT_SMOOTHGRAD_SIGMA: f32 = 0.15;

const RULES: &str = "epsilon, gamma, zplus, alphabeta, zbox, wsquare, flat";
const SELECTORS: &str = "all, first, dense, conv, lstm, #N";

impl Spec {
    /// Parses a spec; errors name the part at fault.
    pub fn parse(text: &str) -> Result<Spec> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let p = Parser { spec: &compact };
        if compact.is_empty() {
            return Err(p.syntax("the spec is empty"));
        }
        let method = if compact.contains('=') {
            p.mapping()?
        } else {
            p.preset(&compact)?
        };
        Ok(Spec { text: compact, method })
    }

    /// What the spec asks for.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The spec as written (whitespace removed).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for Spec {
    type Err = RulesError;
    fn from_str(s: &str) -> Result<Spec> {
        Spec::parse(s)
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

struct Parser<'a> {
    spec: &'a str,
}

impl Parser<'_> {
    fn syntax(&self, reason: impl Into<String>) -> RulesError {
        RulesError::Syntax {
            spec: self.spec.to_string(),
            reason: reason.into(),
        }
    }

    fn number_err(&self, reason: String) -> RulesError {
        RulesError::BadNumber {
            spec: self.spec.to_string(),
            reason,
        }
    }

    /// Splits `name(a,b)` into the name and its arguments.
    fn call<'s>(&self, s: &'s str) -> Result<(&'s str, Option<Vec<&'s str>>)> {
        match s.find('(') {
            None => {
                if s.contains(')') || s.contains(',') {
                    return Err(self.syntax(format!("'{s}' has a stray ')' or ','")));
                }
                Ok((s, None))
            }
            Some(open) => {
                if !s.ends_with(')') {
                    return Err(self.syntax(format!("'{s}' has no closing ')' at its end")));
                }
                let inner = &s[open + 1..s.len() - 1];
                if inner.contains('(') || inner.contains(')') {
                    return Err(self.syntax(format!("'{s}' has nested or extra parentheses")));
                }
                let args = if inner.is_empty() {
                    Vec::new()
                } else {
                    inner.split(',').collect()
                };
                Ok((&s[..open], Some(args)))
            }
        }
    }

    fn float(&self, what: &str, text: &str) -> Result<f32> {
        let v: f32 = text
            .parse()
            .map_err(|_| self.number_err(format!("{what}: '{text}' is not a number")))?;
        if !v.is_finite() {
            return Err(self.number_err(format!("{what}: '{text}' is not a finite number")));
        }
        Ok(v)
    }

    fn count(&self, what: &str, text: &str) -> Result<usize> {
        let v: usize = text
            .parse()
            .map_err(|_| self.number_err(format!("{what}: '{text}' is not a whole number")))?;
        if v == 0 {
            return Err(self.number_err(format!("{what} must be at least 1")));
        }
        Ok(v)
    }

    fn arity<'s>(&self, name: &str, args: &Option<Vec<&'s str>>, allowed: &[usize]) -> Result<Vec<&'s str>> {
        let got = args.as_ref().map_or(0, Vec::len);
        if args.as_ref().is_some_and(Vec::is_empty) {
            return Err(self.syntax(format!(
                "{name}() has empty parentheses; write {name} or give the arguments"
            )));
        }
        if !allowed.contains(&got) {
            let want = allowed.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" or ");
            return Err(self.syntax(format!("{name} takes {want} argument(s), got {got}")));
        }
        Ok(args.clone().unwrap_or_default())
    }

    /// A rule, or `None` when `name` is not a rule name.
    fn rule(&self, name: &str, args: &Option<Vec<&str>>) -> Result<Option<Rule>> {
        let with_spec = |e: RulesError| match e {
            RulesError::BadNumber { reason, .. } => self.number_err(reason),
            other => other,
        };
        let rule = match name {
            "epsilon" => {
                let a = self.arity(name, args, &[0, 1])?;
                let e = a
                    .first()
                    .map(|t| self.float("epsilon", t))
                    .transpose()?
                    .unwrap_or(DEFAULT_EPSILON);
                Rule::epsilon(e).map_err(with_spec)?
            }
            "gamma" => {
                let a = self.arity(name, args, &[0, 1])?;
                let g = a
                    .first()
                    .map(|t| self.float("gamma", t))
                    .transpose()?
                    .unwrap_or(DEFAULT_GAMMA);
                Rule::gamma(g).map_err(with_spec)?
            }
            "alphabeta" => {
                let a = self.arity(name, args, &[2])?;
                Rule::alpha_beta(self.float("alpha", a[0])?, self.float("beta", a[1])?).map_err(with_spec)?
            }
            "zbox" => {
                let a = self.arity(name, args, &[2])?;
                Rule::zbox(self.float("low", a[0])?, self.float("high", a[1])?).map_err(with_spec)?
            }
            "zplus" | "wsquare" | "flat" => {
                self.arity(name, args, &[0])?;
                match name {
                    "zplus" => Rule::ZPlus,
                    "wsquare" => Rule::WSquare,
                    _ => Rule::Flat,
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(rule))
    }

    fn mapping(&self) -> Result<Method> {
        let mut assigns = Vec::new();
        for part in self.spec.split(';') {
            if part.is_empty() {
                return Err(self.syntax("an empty assignment (two ';' in a row, or one at an end)"));
            }
            let Some((sel, rule)) = part.split_once('=') else {
                return Err(self.syntax(format!("'{part}' is not an assignment 'selector=rule'")));
            };
            if rule.contains('=') {
                return Err(self.syntax(format!("'{part}' has more than one '='")));
            }
            let selector = match sel {
                "all" => Selector::All,
                "first" => Selector::First,
                "dense" => Selector::Dense,
                "conv" => Selector::Conv,
                "lstm" => Selector::Lstm,
                s if s.starts_with('#') => Selector::Index(
                    s[1..]
                        .parse()
                        .map_err(|_| self.number_err(format!("selector '{s}': '{}' is not a layer index", &s[1..])))?,
                ),
                "" => return Err(self.syntax(format!("'{part}' has no selector before '='"))),
                other => {
                    return Err(RulesError::UnknownName {
                        spec: self.spec.to_string(),
                        what: "selector",
                        name: other.to_string(),
                        known: SELECTORS.to_string(),
                    });
                }
            };
            if rule.is_empty() {
                return Err(self.syntax(format!("'{part}' has no rule after '='")));
            }
            let (name, args) = self.call(rule)?;
            let rule = self.rule(name, &args)?.ok_or_else(|| RulesError::UnknownName {
                spec: self.spec.to_string(),
                what: "rule",
                name: name.to_string(),
                known: RULES.to_string(),
            })?;
            assigns.push(Assign { selector, rule });
        }
        Ok(Method::Lrp(assigns))
    }

    fn preset(&self, text: &str) -> Result<Method> {
        let (name, args) = self.call(text)?;
        // A rule name alone applies that rule to every layer with weights.
        if let Some(rule) = self.rule(name, &args)? {
            return Ok(Method::Lrp(vec![Assign {
                selector: Selector::All,
                rule,
            }]));
        }
        let no_args = |m: Method| -> Result<Method> {
            self.arity(name, &args, &[0])?;
            Ok(m)
        };
        if let Some(assigns) = crate::composites::assigns(name) {
            return no_args(Method::Lrp(assigns));
        }
        match name {
            "gradient" => no_args(Method::Attribution(Attribution::Gradient)),
            "gradient-x-input" => no_args(Method::Attribution(Attribution::GradientXInput)),
            "integrated-gradients" => {
                let a = self.arity(name, &args, &[0, 1])?;
                let steps = a
                    .first()
                    .map(|t| self.count("steps", t))
                    .transpose()?
                    .unwrap_or(DEFAULT_IG_STEPS);
                if steps > MAX_STEPS {
                    return Err(self.number_err(format!(
                        "{steps} steps is more than the {MAX_STEPS} integrated gradients takes (each step is a \
                         forward and backward pass; 32 to 256 are usual)"
                    )));
                }
                Ok(Method::Attribution(Attribution::IntegratedGradients { steps }))
            }
            "smoothgrad" => {
                let a = self.arity(name, &args, &[0, 2])?;
                let (n, sigma) = if a.is_empty() {
                    (DEFAULT_SMOOTHGRAD_N, DEFAULT_SMOOTHGRAD_SIGMA)
                } else {
                    let sigma = self.float("sigma", a[1])?;
                    if !(0.0..=MAX_SIGMA).contains(&sigma) {
                        return Err(self.number_err(format!(
                            "sigma must be between 0 and {MAX_SIGMA} (the noise's standard deviation in the input's \
                             units), got {sigma}"
                        )));
                    }
                    (self.count("n", a[0])?, sigma)
                };
                if n > MAX_STEPS {
                    return Err(self.number_err(format!(
                        "{n} noisy copies is more than the {MAX_STEPS} smoothgrad takes (each is a forward and \
                         backward pass; 16 to 64 are usual)"
                    )));
                }
                Ok(Method::Attribution(Attribution::SmoothGrad { n, sigma }))
            }
            other => Err(RulesError::UnknownName {
                spec: self.spec.to_string(),
                what: "rule or preset",
                name: other.to_string(),
                known: format!(
                    "presets {}; rules {RULES}; or a mapping like 'all=epsilon;first=zbox(0,1)'",
                    PRESETS.join(", ")
                ),
            }),
        }
    }
}
