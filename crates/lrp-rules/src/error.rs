//! The error type of `lrp-rules`.

use lrp_core::CoreError;

/// Why a spec could not be parsed or resolved, or an explanation could not be computed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RulesError {
    /// A forward pass or an explanation produced NaN or infinity (overflowing weights or inputs, a zero
    /// stabilizer): refused rather than written.
    #[error(
        "the {what} of sample {sample} holds {value} at element {element}: the model or the input overflows float32 \
         (or the rule's stabilizer is 0); nothing is written"
    )]
    NonFinite {
        /// `logits` or `relevance`.
        what: &'static str,
        /// Index of the sample in the batch.
        sample: usize,
        /// Flat index within the sample.
        element: usize,
        /// The value.
        value: f32,
    },
    /// The spec text does not follow the grammar.
    #[error("rule spec '{spec}': {reason}")]
    Syntax {
        /// The whole spec.
        spec: String,
        /// What is wrong and where.
        reason: String,
    },
    /// A rule or preset name that does not exist.
    #[error("rule spec '{spec}': unknown {what} '{name}' (known: {known})")]
    UnknownName {
        /// The whole spec.
        spec: String,
        /// "rule", "preset" or "selector".
        what: &'static str,
        /// The unknown name.
        name: String,
        /// The names that exist.
        known: String,
    },
    /// A number that does not parse or is out of its range.
    #[error("rule spec '{spec}': {reason}")]
    BadNumber {
        /// The whole spec.
        spec: String,
        /// Which number and why.
        reason: String,
    },
    /// `alphabeta(a, b)` with `a − b ≠ 1` or a negative parameter.
    #[error(
        "alphabeta({alpha},{beta}): needs alpha − beta = 1 and alpha, beta ≥ 0 (e.g. alphabeta(2,1), alphabeta(1,0))"
    )]
    AlphaBeta {
        /// α.
        alpha: f32,
        /// β.
        beta: f32,
    },
    /// A layer with weights that no assignment reaches.
    #[error(
        "rule spec '{spec}': #{weighted} ({kind}, node n{layer}) gets no rule; add an assignment such as '#{weighted}=epsilon' or 'all=…'"
    )]
    Unassigned {
        /// The whole spec.
        spec: String,
        /// Index among all layers.
        layer: usize,
        /// Index among layers with weights (the `#N` of the grammar).
        weighted: usize,
        /// Layer kind.
        kind: &'static str,
    },
    /// `#N` beyond the number of layers with weights.
    #[error("rule spec '{spec}': selector #{index} is out of range: the network has {count} layers with weights (#0 to #{last})", last = count.saturating_sub(1))]
    IndexOutOfRange {
        /// The whole spec.
        spec: String,
        /// N.
        index: usize,
        /// How many layers have weights.
        count: usize,
    },
    /// A rule that a layer kind cannot take.
    #[error("rule spec '{spec}': {name} ({kind}) cannot take rule {rule}: {reason}")]
    RuleNotForLayer {
        /// The whole spec.
        spec: String,
        /// Index among all layers.
        layer: usize,
        /// The node's name (`#N` for a layer with weights, `nK` otherwise).
        name: String,
        /// Layer kind.
        kind: &'static str,
        /// The rule.
        rule: String,
        /// Why not.
        reason: String,
    },
    /// A target class outside the network's outputs, or targets that do not fit the batch.
    #[error("target: {0}")]
    Target(String),
    /// A request this explainer cannot carry out (relevance at hidden layers from a gradient method, a network
    /// too large for the memory of the machine).
    #[error("{0}")]
    Request(String),
    /// Region perturbation cannot run with these settings.
    #[error("region perturbation: {0}")]
    Perturbation(String),
    /// An error from the network core (input shape, NaN, …).
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// Result with [`RulesError`].
pub type Result<T, E = RulesError> = std::result::Result<T, E>;

impl RulesError {
    /// The same error with the sample it names moved by `by`: an error from a block of a batch, named by the
    /// sample's place in the whole batch.
    pub fn shifted(self, by: usize) -> RulesError {
        match self {
            RulesError::NonFinite {
                what,
                sample,
                element,
                value,
            } => RulesError::NonFinite {
                what,
                sample: sample + by,
                element,
                value,
            },
            RulesError::Core(CoreError::NonFiniteInput { sample, index, value }) => {
                RulesError::Core(CoreError::NonFiniteInput {
                    sample: sample + by,
                    index,
                    value,
                })
            }
            e => e,
        }
    }
}
