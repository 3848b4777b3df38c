//! The viewer's state and its key and mouse handling, as pure state changes (no terminal, no computation).

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};

use crate::keys::{Binding, COMMON};
use crate::ui::concept::ConceptState;
use crate::ui::drawing::DrawState;
use crate::ui::layers::LayersState;

/// Which class is explained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClassChoice {
    /// The model's prediction.
    Predicted,
    /// The sample's true label (dataset samples; a drawing has none, so its prediction).
    Label,
    /// A fixed class.
    Class(usize),
}

/// What the keyboard is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Browsing.
    Normal,
    /// The help screen.
    Help,
    /// Typing an index after `g`.
    GoTo(String),
    /// Typing a rule spec after `:`.
    Spec(String),
}

/// Which screen is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    /// Dataset samples, one rule or several side by side.
    Browse,
    /// The drawing canvas and its explanation.
    Draw,
    /// Relevance at a hidden layer's input.
    Layers,
    /// One channel of a layer with weights as a concept (CRP).
    Concept,
}

/// A model as the viewer knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelEntry {
    /// Shown name (file stem).
    pub name: String,
    /// Number of classes.
    pub classes: usize,
    /// Layers the layer view lists (the nodes that read one value).
    pub layers: usize,
    /// The positions in that list of each attention block's head panel (a transformer; empty otherwise).
    pub head_layers: Vec<usize>,
    /// The rule the model opens on when the viewer comes to it: `attnlrp` for a transformer, else
    /// `epsilon-gamma-box`.
    pub default_rule: String,
    /// The layers with weights whose channels can be shown as concepts (`#N`, convolutions and dense layers).
    pub concept_layers: Vec<usize>,
    /// For each layer the layer view lists, the concept layer it opens on (`k`): the layer with weights that wrote
    /// its input, or the layer itself.
    pub concept_of_layer: Vec<Option<usize>>,
}

/// The nodes the layer view lists, in order: those that read one value (the relevance at that value is theirs).
pub fn layer_view_nodes(net: &lrp_core::Network) -> Vec<usize> {
    (0..net.layers().len())
        .filter(|&k| net.inputs_of(k).len() == 1)
        .collect()
}

impl ModelEntry {
    /// The entry of a network: its classes, the layers the layer view lists, and where each attention block's
    /// output is among them (the layer reading what `softmax · V` wrote).
    pub fn of(name: String, net: &lrp_core::Network) -> ModelEntry {
        let listed = layer_view_nodes(net);
        let writes_attention = |v: usize| {
            v > 0
                && matches!(net.layers()[v - 1], lrp_core::Layer::MatMul(lrp_core::MatMul))
                && net.inputs_of(v - 1)[0]
                    .checked_sub(1)
                    .is_some_and(|w| matches!(net.layers()[w], lrp_core::Layer::Softmax(_)))
        };
        let head_layers = listed
            .iter()
            .enumerate()
            .filter(|&(_, &k)| writes_attention(net.inputs_of(k)[0]))
            .map(|(i, _)| i)
            .collect();
        let transformer = net.layers().iter().any(lrp_core::Layer::needs_gradient_form);
        let concept_layers: Vec<usize> = (0..net.weighted_layers().len())
            .filter(|&n| lrp_rules::ConceptLayer::of(net, n).is_ok())
            .collect();
        let concept = |k: usize| -> Option<usize> {
            let of = |node: usize| net.weighted_index(node).filter(|n| concept_layers.contains(n));
            net.inputs_of(k)[0].checked_sub(1).and_then(of).or_else(|| of(k))
        };
        ModelEntry {
            name,
            classes: net.num_classes(),
            layers: listed.len(),
            head_layers,
            default_rule: if transformer { "attnlrp" } else { "epsilon-gamma-box" }.to_string(),
            concept_of_layer: listed.iter().map(|&k| concept(k)).collect(),
            concept_layers,
        }
    }
}

/// What the viewer asks about rules: the canonical form of a typed spec, and whether a model accepts a rule.
pub trait RuleCheck {
    /// The canonical spec, or why it does not parse.
    fn parse(&self, spec: &str) -> Result<String, String>;
    /// Whether model `model` can be explained by `spec` (or why not).
    fn accepts(&self, model: usize, spec: &str) -> Result<(), String>;
}

/// Where the canvas is on screen: its top-left cell and cells per canvas pixel (columns; rows hold two pixels
/// at scale 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CanvasGeometry {
    /// Column of the canvas's left edge.
    pub x: u16,
    /// Row of the canvas's top edge.
    pub y: u16,
    /// The integer scale.
    pub scale: u16,
}

impl CanvasGeometry {
    /// The canvas position `(row, column)` in pixels (continuous) under a terminal cell, or `None` outside.
    pub fn pixel_at(&self, column: u16, row: u16) -> Option<(f32, f32)> {
        let s = self.scale.max(1) as f32;
        let side = crate::canvas::SIDE as f32;
        let px = (column as f32 - self.x as f32 + 0.5) / s;
        let py = (row as f32 - self.y as f32 + 0.5) * 2.0 / s;
        (column >= self.x && row >= self.y && px < side && py < side).then_some((py, px))
    }
}

/// The whole state of the viewer.
#[derive(Clone, Debug)]
pub struct App {
    /// The models, in Tab order.
    pub models: Vec<ModelEntry>,
    /// Current model.
    pub model: usize,
    /// Samples in the dataset.
    pub count: usize,
    /// Current sample.
    pub index: usize,
    /// Rule specs, in `r` order (the presets, then any typed after `:`).
    pub rules: Vec<String>,
    /// `accepts[model][rule]`: rules a model refuses are skipped by `r`.
    pub accepts: Vec<Vec<bool>>,
    /// Current rule.
    pub rule: usize,
    /// Explained class.
    pub class: ClassChoice,
    /// Several rules side by side.
    pub compare: bool,
    /// Keyboard mode.
    pub mode: Mode,
    /// Which screen.
    pub screen: Screen,
    /// The draw screen's state (the canvas).
    pub draw: DrawState,
    /// The layer view's state (which layer, and where `l` returns to).
    pub layers: LayersState,
    /// The concept screen's state (which layer and channel, the way down, and what was last shown).
    pub concept: ConceptState,
    /// A message for the status line.
    pub message: Option<String>,
    /// Set when the user asked to leave.
    pub quit: bool,
    /// Set by `m` until the current model's predictions are known.
    pub wants_misclassified: bool,
    /// Why draw mode is not available (photos: the canvas draws 28×28 digits), `None` when it is.
    pub no_draw: Option<String>,
    /// A rule typed after `:` (or given with `--rule`) stays when Tab moves to another model; otherwise each model
    /// opens on its own default rule.
    pub rule_pinned: bool,
}

impl App {
    /// A viewer on `count` samples with these models and rules, on the first model and rule; every rule accepted.
    pub fn new(models: Vec<ModelEntry>, count: usize, rules: Vec<String>) -> App {
        let accepts = vec![vec![true; rules.len()]; models.len()];
        App {
            models,
            model: 0,
            count,
            index: 0,
            rules,
            accepts,
            rule: 0,
            class: ClassChoice::Predicted,
            compare: false,
            mode: Mode::Normal,
            screen: Screen::Browse,
            draw: DrawState::default(),
            layers: LayersState::default(),
            concept: ConceptState::default(),
            message: None,
            quit: false,
            wants_misclassified: false,
            no_draw: None,
            rule_pinned: false,
        }
    }

    /// Asks `check` which rules each model accepts (so `r` offers only those), and starts on `rule` if the first
    /// model accepts it.
    pub fn check_rules(&mut self, check: &dyn RuleCheck, rule: Option<&str>) {
        self.accepts = (0..self.models.len())
            .map(|m| self.rules.iter().map(|r| check.accepts(m, r).is_ok()).collect())
            .collect();
        match rule.and_then(|r| self.rules.iter().position(|x| x == r)) {
            Some(i) => {
                self.rule = i;
                self.rule_pinned = true;
            }
            None => self.open_default_rule(),
        }
        self.ensure_accepted_rule();
    }

    pub(crate) fn accepted(&self, rule: usize) -> bool {
        self.accepts
            .get(self.model)
            .and_then(|a| a.get(rule))
            .copied()
            .unwrap_or(true)
    }

    /// The rules the current model accepts, in `r` order.
    pub fn accepted_rules(&self) -> Vec<usize> {
        (0..self.rules.len()).filter(|&r| self.accepted(r)).collect()
    }

    pub(crate) fn step_rule(&mut self, forward: bool) {
        let n = self.rules.len();
        for k in 1..=n {
            let r = if forward {
                (self.rule + k) % n
            } else {
                (self.rule + n * k - k) % n
            };
            if self.accepted(r) {
                self.rule = r;
                return;
            }
        }
    }

    pub(crate) fn ensure_accepted_rule(&mut self) {
        if !self.rules.is_empty() && !self.accepted(self.rule) {
            let before = self.rules[self.rule].clone();
            self.step_rule(true);
            if self.accepted(self.rule) {
                self.message = Some(format!(
                    "{} does not take {before}; showing {}",
                    self.models[self.model].name, self.rules[self.rule]
                ));
            }
        }
    }

    /// Classes of the current model.
    pub fn classes(&self) -> usize {
        self.models.get(self.model).map_or(0, |m| m.classes)
    }

    /// Whether the explained input is the drawing.
    pub fn on_drawing(&self) -> bool {
        self.screen == Screen::Draw
            || (matches!(self.screen, Screen::Layers | Screen::Concept) && self.layers.from == Screen::Draw)
    }

    pub(crate) fn step_index(&mut self, delta: isize) {
        if self.count == 0 {
            return;
        }
        let n = self.count as isize;
        self.index = ((self.index as isize + delta).rem_euclid(n)) as usize;
    }

    pub(crate) fn step_class(&mut self, forward: bool) {
        let k = self.classes();
        // pred → label → 0 … k−1 → pred (a drawing has no label).
        let mut order = vec![ClassChoice::Predicted];
        if !self.on_drawing() {
            order.push(ClassChoice::Label);
        }
        order.extend((0..k).map(ClassChoice::Class));
        let i = order.iter().position(|&c| c == self.class).unwrap_or(0);
        let n = order.len();
        self.class = order[if forward { (i + 1) % n } else { (i + n - 1) % n }];
    }

    /// Moves to the next sample after the current one (wrapping) whose prediction differs from its label.
    pub fn next_misclassified(&mut self, predictions: &[usize], labels: &[u8]) {
        self.wants_misclassified = false;
        let n = self.count.min(predictions.len()).min(labels.len());
        let found = (1..=n)
            .map(|k| (self.index + k) % n.max(1))
            .find(|&i| predictions[i] != labels[i] as usize);
        match found {
            Some(i) => {
                self.index = i;
                self.message = Some(format!(
                    "misclassified: predicted {}, label {}",
                    predictions[i], labels[i]
                ));
            }
            None => {
                self.message = Some(format!(
                    "no misclassified sample: {} classifies all {n} correctly",
                    self.models[self.model].name
                ))
            }
        }
    }

    fn add_rule(&mut self, canonical: String, check: &dyn RuleCheck) {
        let i = match self.rules.iter().position(|r| *r == canonical) {
            Some(i) => i,
            None => {
                for (m, acc) in self.accepts.iter_mut().enumerate() {
                    acc.push(check.accepts(m, &canonical).is_ok());
                }
                self.rules.push(canonical);
                self.rules.len() - 1
            }
        };
        match check.accepts(self.model, &self.rules[i]) {
            Ok(()) => {
                self.rule = i;
                self.rule_pinned = true;
                self.message = None;
            }
            Err(e) => self.message = Some(e),
        }
    }

    /// Applies one key press.
    pub fn handle_key(&mut self, key: KeyEvent, check: &dyn RuleCheck) {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return;
        }
        match std::mem::replace(&mut self.mode, Mode::Normal) {
            // Any key closes the help, as it says.
            Mode::Help => {}
            Mode::GoTo(mut text) => match key.code {
                KeyCode::Char(d) if d.is_ascii_digit() => {
                    text.push(d);
                    self.mode = Mode::GoTo(text);
                }
                KeyCode::Backspace => {
                    text.pop();
                    self.mode = Mode::GoTo(text);
                }
                KeyCode::Enter => match text.parse::<usize>() {
                    Ok(i) if i < self.count => self.index = i,
                    Ok(i) => {
                        self.message = Some(format!(
                            "index {i} is out of range (0 to {})",
                            self.count.saturating_sub(1)
                        ))
                    }
                    Err(_) => self.message = Some("type an index, then Enter".into()),
                },
                KeyCode::Esc => {}
                _ => self.mode = Mode::GoTo(text),
            },
            Mode::Spec(mut text) => match key.code {
                KeyCode::Enter => match check.parse(&text) {
                    Ok(canonical) => self.add_rule(canonical, check),
                    Err(e) => self.message = Some(e),
                },
                KeyCode::Esc => {}
                KeyCode::Backspace => {
                    text.pop();
                    self.mode = Mode::Spec(text);
                }
                KeyCode::Char(ch) => {
                    text.push(ch);
                    self.mode = Mode::Spec(text);
                }
                _ => self.mode = Mode::Spec(text),
            },
            Mode::Normal => {
                // Esc first dismisses a message, then leaves a screen, then quits.
                if key.code == KeyCode::Esc && self.message.take().is_some() {
                    return;
                }
                self.message = None;
                let handled = match self.screen {
                    Screen::Draw => crate::ui::drawing::on_key(self, key.code),
                    Screen::Layers => crate::ui::layers::on_key(self, key.code),
                    Screen::Concept => crate::ui::concept::on_key(self, key.code),
                    Screen::Browse if self.compare => crate::ui::compare::on_key(self, key.code),
                    Screen::Browse => crate::ui::browse::on_key(self, key.code),
                };
                if !handled {
                    self.common_key(key.code);
                }
            }
        }
    }

    /// Keys of every screen ([`COMMON`]).
    fn common_key(&mut self, code: KeyCode) {
        match code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Esc if self.screen != Screen::Browse => {
                self.screen = match self.screen {
                    Screen::Layers => self.layers.from,
                    Screen::Concept => Screen::Layers,
                    _ => Screen::Browse,
                }
            }
            KeyCode::Esc => self.quit = true,
            KeyCode::Right => self.step_index(1),
            KeyCode::Left => self.step_index(-1),
            KeyCode::PageDown => self.step_index(100),
            KeyCode::PageUp => self.step_index(-100),
            KeyCode::Home => self.index = 0,
            KeyCode::End => self.index = self.count.saturating_sub(1),
            KeyCode::Char('g') => self.mode = Mode::GoTo(String::new()),
            KeyCode::Char('m') => self.wants_misclassified = true,
            KeyCode::Char('r') if !self.rules.is_empty() => self.step_rule(true),
            KeyCode::Char('R') if !self.rules.is_empty() => self.step_rule(false),
            KeyCode::Char(':') => self.mode = Mode::Spec(String::new()),
            KeyCode::Char('c') => self.step_class(true),
            KeyCode::Char('C') => self.step_class(false),
            KeyCode::Tab | KeyCode::BackTab if !self.models.is_empty() => {
                let n = self.models.len();
                self.model = if code == KeyCode::Tab {
                    (self.model + 1) % n
                } else {
                    (self.model + n - 1) % n
                };
                if let ClassChoice::Class(c) = self.class
                    && c >= self.classes()
                {
                    self.class = ClassChoice::Predicted;
                }
                self.layers.layer = self.layers.layer.min(self.models[self.model].layers.saturating_sub(1));
                if self.screen == Screen::Concept {
                    // Another model has other layers: back to the layer view, which opens its concepts with k.
                    self.screen = Screen::Layers;
                }
                self.open_default_rule();
                self.ensure_accepted_rule();
            }
            KeyCode::Char('?') => self.mode = Mode::Help,
            _ => {}
        }
    }

    /// Moves to the current model's default rule, unless the user chose one (see [`App::rule_pinned`]).
    pub(crate) fn open_default_rule(&mut self) {
        if self.rule_pinned {
            return;
        }
        let default = &self.models[self.model].default_rule;
        if let Some(i) = self.rules.iter().position(|r| r == default)
            && self.accepted(i)
        {
            self.rule = i;
        }
    }

    /// Opens draw mode, or says why it is not available.
    pub fn open_draw(&mut self) {
        match &self.no_draw {
            Some(why) => self.message = Some(why.clone()),
            None => self.screen = Screen::Draw,
        }
    }

    /// Opens the layer view, to return to the current screen.
    pub(crate) fn open_layers(&mut self) {
        self.layers.from = self.screen;
        self.screen = Screen::Layers;
    }

    /// Applies one mouse event; `canvas` is where the canvas is drawn (draw mode), from the layout.
    pub fn handle_mouse(&mut self, ev: MouseEvent, canvas: Option<CanvasGeometry>) {
        if self.screen != Screen::Draw || self.mode != Mode::Normal {
            return;
        }
        let at = canvas.and_then(|g| g.pixel_at(ev.column, ev.row));
        let c = &mut self.draw.canvas;
        match (ev.kind, at) {
            (MouseEventKind::Down(MouseButton::Left), Some((y, x))) => c.begin_stroke(y, x),
            (MouseEventKind::Drag(MouseButton::Left), Some((y, x))) if c.stroking() => c.stroke_to(y, x),
            (MouseEventKind::Up(_), _) => c.end_stroke(),
            _ => {}
        }
    }

    /// The keys of the screen shown now (the common ones apart): what its footer and help list.
    pub fn screen_keys(&self) -> (&'static [Binding], bool) {
        match self.screen {
            Screen::Draw => (crate::ui::drawing::KEYS, false),
            Screen::Layers => (crate::ui::layers::KEYS, true),
            Screen::Concept => (crate::ui::concept::KEYS, true),
            Screen::Browse if self.compare => (crate::ui::compare::KEYS, true),
            Screen::Browse => (crate::ui::browse::KEYS, true),
        }
    }
}

/// Every key of the help screen: those of every screen, then each screen's own.
pub fn help_keys() -> Vec<(&'static str, Vec<Binding>)> {
    vec![
        ("every screen", COMMON.to_vec()),
        ("browsing", crate::ui::browse::KEYS.to_vec()),
        ("comparing rules (v)", crate::ui::compare::KEYS.to_vec()),
        ("drawing (d)", crate::ui::drawing::KEYS.to_vec()),
        ("layer view (l)", crate::ui::layers::KEYS.to_vec()),
        ("concept (k in the layer view)", crate::ui::concept::KEYS.to_vec()),
    ]
}
