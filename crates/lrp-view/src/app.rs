//! The viewer's state and its key handling, as pure state changes (no terminal, no computation).

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Which class is explained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClassChoice {
    /// The model's prediction.
    Predicted,
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

/// A model as the viewer knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelEntry {
    /// Shown name (file stem).
    pub name: String,
    /// Number of classes.
    pub classes: usize,
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
    /// Current rule.
    pub rule: usize,
    /// Explained class.
    pub class: ClassChoice,
    /// Several rules side by side.
    pub compare: bool,
    /// Keyboard mode.
    pub mode: Mode,
    /// A message for the status line.
    pub message: Option<String>,
    /// Set when the user asked to leave.
    pub quit: bool,
    /// Set by `m` until the current model's predictions are known.
    pub wants_misclassified: bool,
}

/// Checks a typed rule spec; the viewer passes `lrp_rules::Spec::parse`.
pub type SpecCheck = fn(&str) -> Result<String, String>;

impl App {
    /// A viewer on `count` samples with these models and rules.
    pub fn new(models: Vec<ModelEntry>, count: usize, rules: Vec<String>) -> App {
        App {
            models,
            model: 0,
            count,
            index: 0,
            rules,
            rule: 0,
            class: ClassChoice::Predicted,
            compare: false,
            mode: Mode::Normal,
            message: None,
            quit: false,
            wants_misclassified: false,
        }
    }

    /// Classes of the current model.
    pub fn classes(&self) -> usize {
        self.models.get(self.model).map_or(0, |m| m.classes)
    }

    fn step_index(&mut self, delta: isize) {
        if self.count == 0 {
            return;
        }
        let n = self.count as isize;
        self.index = ((self.index as isize + delta).rem_euclid(n)) as usize;
    }

    fn step_class(&mut self, forward: bool) {
        let k = self.classes();
        self.class = match (self.class, forward) {
            (ClassChoice::Predicted, true) => ClassChoice::Class(0),
            (ClassChoice::Predicted, false) => ClassChoice::Class(k.saturating_sub(1)),
            (ClassChoice::Class(c), true) if c + 1 >= k => ClassChoice::Predicted,
            (ClassChoice::Class(c), true) => ClassChoice::Class(c + 1),
            (ClassChoice::Class(0), false) => ClassChoice::Predicted,
            (ClassChoice::Class(c), false) => ClassChoice::Class(c - 1),
        };
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

    /// Applies one key press.
    pub fn handle_key(&mut self, key: KeyEvent, check_spec: SpecCheck) {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return;
        }
        match std::mem::replace(&mut self.mode, Mode::Normal) {
            Mode::Help => {
                if matches!(key.code, KeyCode::Char('q')) {
                    self.quit = true;
                }
            }
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
                KeyCode::Enter => match check_spec(&text) {
                    Ok(canonical) => {
                        match self.rules.iter().position(|r| *r == canonical) {
                            Some(i) => self.rule = i,
                            None => {
                                self.rules.push(canonical);
                                self.rule = self.rules.len() - 1;
                            }
                        }
                        self.message = None;
                    }
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
                self.message = None;
                match key.code {
                    KeyCode::Char('q') | KeyCode::Esc => self.quit = true,
                    KeyCode::Right => self.step_index(1),
                    KeyCode::Left => self.step_index(-1),
                    KeyCode::PageDown => self.step_index(100),
                    KeyCode::PageUp => self.step_index(-100),
                    KeyCode::Home => self.index = 0,
                    KeyCode::End => self.index = self.count.saturating_sub(1),
                    KeyCode::Char('g') => self.mode = Mode::GoTo(String::new()),
                    KeyCode::Char('m') => self.wants_misclassified = true,
                    KeyCode::Char('r') if !self.rules.is_empty() => self.rule = (self.rule + 1) % self.rules.len(),
                    KeyCode::Char('R') if !self.rules.is_empty() => {
                        self.rule = (self.rule + self.rules.len() - 1) % self.rules.len()
                    }
                    KeyCode::Char(':') => self.mode = Mode::Spec(String::new()),
                    KeyCode::Char('c') => self.step_class(true),
                    KeyCode::Char('C') => self.step_class(false),
                    KeyCode::Tab | KeyCode::BackTab if !self.models.is_empty() => {
                        let n = self.models.len();
                        self.model = if key.code == KeyCode::Tab {
                            (self.model + 1) % n
                        } else {
                            (self.model + n - 1) % n
                        };
                        if let ClassChoice::Class(c) = self.class
                            && c >= self.classes()
                        {
                            self.class = ClassChoice::Predicted;
                        }
                    }
                    KeyCode::Char('v') => self.compare = !self.compare,
                    KeyCode::Char('?') => self.mode = Mode::Help,
                    _ => {}
                }
            }
        }
    }
}

/// Every key, for the help screen.
pub const HELP: &[(&str, &str)] = &[
    ("← / →", "previous / next sample (wraps)"),
    ("PgUp / PgDn", "100 samples back / forward"),
    ("Home / End", "first / last sample"),
    ("g", "go to an index (type it, then Enter)"),
    ("m", "next misclassified sample"),
    ("r / R", "next / previous rule"),
    (":", "type any rule spec, e.g. conv=gamma(0.5);dense=epsilon"),
    ("c / C", "next / previous explained class (pred, 0, 1, …)"),
    ("Tab / Shift-Tab", "next / previous model"),
    ("v", "compare rules side by side"),
    ("?", "this help (any key closes it)"),
    ("q / Esc", "quit (Esc cancels typing)"),
];
