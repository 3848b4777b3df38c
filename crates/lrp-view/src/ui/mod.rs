//! Drawing the viewer into a ratatui frame (any backend, so tests draw into a `TestBackend`): one file per screen,
//! each with its state, its keys (see [`crate::keys`]) and its drawing — [`browse`], [`compare`], [`drawing`],
//! [`layers`], [`concept`], [`help`] — and the pieces they share ([`layout`], [`widgets`], [`info`]).

use ndarray::{Array2, ArrayD, Axis};
use ratatui::Frame;
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};

use crate::app::{App, ClassChoice, Mode, Screen};
use crate::cells::{ColorMode, to_map};
use crate::worker::{InputRef, Key, PhotoSet, ViewData};

pub mod browse;
pub mod compare;
pub mod concept;
pub mod drawing;
pub mod help;
mod info;
pub mod layers;
pub mod layout;
pub mod widgets;

pub use layers::{ranked_channels, token_grid, token_map};
pub use layout::{CompareLayout, Layout, canvas_geometry, compare_layout, draw_layout, single_layout};
pub use widgets::{CellsWidget, panel_size, shrink_width, upscale};

use widgets::{class_label, text, truncate};

/// The smallest terminal the viewer draws in.
pub const MIN_SIZE: (u16, u16) = (80, 24);

fn resolve_class(app: &App, labels: &[u8]) -> ClassChoice {
    match app.class {
        ClassChoice::Label if app.on_drawing() => ClassChoice::Predicted,
        ClassChoice::Label => labels
            .get(app.index)
            .map_or(ClassChoice::Predicted, |&l| ClassChoice::Class(l as usize)),
        c => c,
    }
}

fn key_for(app: &App, rule: usize, labels: &[u8]) -> Key {
    Key {
        model: app.model,
        input: if app.on_drawing() {
            InputRef::Drawing(app.draw.canvas.version)
        } else {
            InputRef::Sample(app.index)
        },
        rule: app.rules[rule].clone(),
        class: resolve_class(app, labels),
        layers: app.screen == Screen::Layers,
        concept: (app.screen == Screen::Concept).then_some(app.concept.key),
    }
}

/// The dataset image size the viewer lays out for (`h × w` pixels).
pub type MapSize = (usize, usize);

/// The size maps of `size` pixels are drawn at on a `width × height` terminal, and the factor they are shrunk by
/// (1 for digits; photos are averaged down until two of them and the info fit).
pub fn display_size(width: u16, height: u16, size: MapSize) -> (MapSize, usize) {
    let k = layout::fit_shrink(width, height, size.0, size.1, 2);
    ((size.0.div_ceil(k), size.1.div_ceil(k)), k)
}

/// The explanations the current screen needs, on a `width × height` terminal.
pub fn needed(app: &App, width: u16, height: u16, labels: &[u8], size: MapSize) -> Vec<Key> {
    if app.rules.is_empty() || (app.on_drawing() && app.draw.canvas.is_empty()) {
        return Vec::new();
    }
    if app.compare && app.screen == Screen::Browse {
        let accepted = app.accepted_rules();
        let start = accepted.iter().position(|&r| r == app.rule).unwrap_or(0);
        let (size, _) = display_size(width, height, size);
        let n = compare_layout(width, height, size.0, size.1, accepted.len()).rules_shown(accepted.len());
        (0..n)
            .map(|k| key_for(app, accepted[(start + k) % accepted.len()], labels))
            .collect()
    } else {
        vec![key_for(app, app.rule, labels)]
    }
}

/// What [`draw`] reads besides the state.
pub struct Sources<'a> {
    /// The explanation of a key, once the worker has it.
    pub lookup: &'a dyn Fn(&Key) -> Option<Result<ViewData, String>>,
    /// Dataset labels.
    pub labels: &'a [u8],
    /// Dataset images `[N, …]` (shown while their explanation is computed).
    pub images: &'a ArrayD<f32>,
    /// How colors reach the terminal.
    pub color: ColorMode,
    /// The inputs as colour photos, when they are photos.
    pub photos: Option<&'a PhotoSet>,
    /// Class names, one per output.
    pub class_names: Option<&'a [String]>,
}

impl Sources<'_> {
    fn image(&self, index: usize) -> Option<Array2<f32>> {
        (index < self.images.shape()[0]).then(|| to_map(self.images.index_axis(Axis(0), index)))
    }

    /// The colour picture of input `index`, when the inputs are photos.
    pub fn picture(&self, index: usize) -> Option<&ndarray::Array3<f32>> {
        self.photos.and_then(|p| p.pictures.get(index))
    }

    /// Class `k` as shown: `k name` with class names, else `k`.
    pub fn class(&self, k: usize) -> String {
        match self.class_names.and_then(|n| n.get(k)) {
            Some(name) if !name.is_empty() => format!("{k} {name}"),
            _ => k.to_string(),
        }
    }

    /// `h × w` of the dataset's images as maps (from the shape: nothing is copied on a frame).
    pub fn map_size(&self) -> MapSize {
        crate::cells::map_dims(&self.images.shape()[1..])
    }
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App, src: &Sources) {
    let area = frame.area();
    if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
        let msg = format!(
            "terminal too small: lrp view needs at least {}×{}, this one is {}×{}. Enlarge it, or press q to quit.",
            MIN_SIZE.0, MIN_SIZE.1, area.width, area.height
        );
        frame.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
        return;
    }
    let model = app.models.get(app.model).map_or("-", |m| m.name.as_str());
    let rule = app.rules.get(app.rule).map_or("-", String::as_str);
    let screen = match (app.screen, app.compare) {
        (Screen::Draw, _) => " │ drawing",
        (Screen::Layers, _) => " │ layers",
        (Screen::Concept, _) => " │ concept",
        (Screen::Browse, true) => " │ comparing rules",
        _ => "",
    };
    let title = format!(
        " lrp view │ model {model} │ rule {} │ class {}{screen} ",
        truncate(rule, 28),
        class_label(app.class),
    );
    text(
        frame,
        0,
        0,
        area.width,
        Line::styled(
            truncate(&title, area.width as usize),
            Style::default().add_modifier(Modifier::REVERSED),
        ),
    );
    if app.mode == Mode::Help {
        help::draw(frame, app);
    } else {
        match app.screen {
            Screen::Browse if app.compare => compare::draw(frame, app, src),
            Screen::Browse => browse::draw(frame, app, src),
            Screen::Draw => drawing::draw(frame, app, src),
            Screen::Layers => layers::draw(frame, app, src),
            Screen::Concept => concept::draw(frame, app, src),
        }
    }
    status(frame, app);
}

/// The status line: what is being typed, a message, or the screen's keys.
fn status(frame: &mut Frame, app: &App) {
    let area = frame.area();
    let y = area.height - 1;
    let line = match &app.mode {
        Mode::GoTo(t) => Line::from(format!("go to index: {t}▏  (Enter to go, Esc to cancel)")),
        Mode::Spec(t) => Line::from(format!(":{t}▏  (a rule spec, Enter to use, Esc to cancel)")),
        Mode::Help => Line::from("any key closes the help"),
        Mode::Normal => match &app.message {
            Some(m) => Line::styled(
                format!("{m}  (Esc dismisses)"),
                Style::default().add_modifier(Modifier::BOLD),
            ),
            None => {
                let (own, common) = app.screen_keys();
                Line::from(crate::keys::footer(own, common, area.width as usize))
            }
        },
    };
    text(frame, 0, y, area.width, line);
}
