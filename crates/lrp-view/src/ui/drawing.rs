//! The draw screen: a canvas to draw a digit on (mouse or keyboard), the network's input made from it, and its
//! explanation.

use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::Rect;
use ratatui::style::{Color as TColor, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};

use super::info::draw_info;
use super::layout::draw_layout;
use super::widgets::{draw_map, draw_state, heat_kind, legend, text};
use super::{Sources, needed};
use crate::app::{App, Screen};
use crate::canvas::Canvas;
use crate::cells::{MapKind, max_abs};
use crate::keys::{Binding, key};

/// The draw screen's state.
#[derive(Clone, Debug, Default)]
pub struct DrawState {
    /// The drawing.
    pub canvas: Canvas,
    /// On a narrow terminal: show the network's input instead of the relevance (`p`).
    pub show_network_input: bool,
    /// Set by `s` until the drawing is saved.
    pub wants_save: bool,
}

/// The draw screen's keys (they take over the arrows and `c`).
pub const KEYS: &[Binding] = &[
    key(
        "mouse, arrows",
        "draw with the mouse, or move the cursor with the arrows",
        "mouse or arrows",
    ),
    key("space / x", "paint / erase under the cursor", "space draw"),
    key("u", "undo the last stroke", "u undo"),
    key("c", "clear the canvas", "c clear"),
    key("s", "save the drawing (.npy and a PNG with its heatmap)", "s save"),
    key(
        "p",
        "show the network input or the relevance (narrow terminals)",
        "p panel",
    ),
    key("d", "back to browsing", "d back"),
];

/// Keys of draw mode; false for a key it leaves to the common ones.
pub(crate) fn on_key(app: &mut App, code: KeyCode) -> bool {
    let c = &mut app.draw.canvas;
    match code {
        KeyCode::Up => c.move_cursor(-1, 0),
        KeyCode::Down => c.move_cursor(1, 0),
        KeyCode::Left => c.move_cursor(0, -1),
        KeyCode::Right => c.move_cursor(0, 1),
        KeyCode::Char(' ') => c.dab_at_cursor(false),
        KeyCode::Char('x') => c.dab_at_cursor(true),
        KeyCode::Char('c') => c.clear(),
        KeyCode::Char('u') => {
            if !c.undo() {
                app.message = Some("nothing to undo".into());
            }
        }
        KeyCode::Char('s') => {
            if c.is_empty() {
                app.message = Some("nothing to save: draw a digit first".into());
            } else {
                app.draw.wants_save = true;
            }
        }
        KeyCode::Char('p') => app.draw.show_network_input = !app.draw.show_network_input,
        KeyCode::Char('d') => app.screen = Screen::Browse,
        KeyCode::Char('l') => app.open_layers(),
        KeyCode::Char('v') | KeyCode::Char('m') | KeyCode::Char('g') => {}
        KeyCode::PageUp | KeyCode::PageDown | KeyCode::Home | KeyCode::End => {}
        _ => return false,
    }
    true
}

pub(crate) fn draw(frame: &mut Frame, app: &App, src: &Sources) {
    let area = frame.area();
    let layout = draw_layout(area.width, area.height);
    let key = needed(app, area.width, area.height, src.labels, src.map_size())
        .into_iter()
        .next();
    let data = key.as_ref().and_then(|k| (src.lookup)(k));
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let (pw, ph, s) = (layout.panel_w, layout.panel_h, layout.scale);
    text(frame, 0, 1, pw, Line::styled("draw here", bold));
    // The empty canvas is dark gray, not black: it stands out from a black terminal (ink is drawn from there to
    // white; the network gets the ink itself).
    let shown = app.draw.canvas.ink.mapv(|v| 0.18 + 0.82 * v);
    draw_map(frame, Rect::new(0, 2, pw, ph), &shown, MapKind::Image, s, src.color);
    // The keyboard cursor.
    let (cy, cx) = app.draw.canvas.cursor;
    let (col, row) = (cx as u16 * s, 2 + (cy as u16 * s) / 2);
    if let Some(cell) = frame.buffer_mut().cell_mut((col, row)) {
        cell.set_char('+').set_fg(TColor::Yellow).set_bg(TColor::Reset);
    }
    let net_input = app.draw.canvas.network_input();
    let mut x = pw + 2;
    let show_input = layout.panels == 3 || app.draw.show_network_input;
    let show_relevance = layout.panels == 3 || !app.draw.show_network_input;
    if show_input {
        text(frame, x, 1, pw, Line::styled("network input", bold));
        draw_map(frame, Rect::new(x, 2, pw, ph), &net_input, MapKind::Image, s, src.color);
        x += pw + 2;
    }
    let ok = if show_relevance {
        text(frame, x, 1, pw, Line::styled("relevance", bold));
        let rect = Rect::new(x, 2, pw, ph);
        match &data {
            _ if app.draw.canvas.is_empty() => {
                frame.render_widget(
                    Paragraph::new("draw a digit: press and drag the mouse, or move with the arrows and press space")
                        .wrap(Wrap { trim: true }),
                    rect,
                );
                None
            }
            Some(Ok(v)) => {
                draw_map(frame, rect, &v.relevance, heat_kind(&v.relevance), s, src.color);
                text(
                    frame,
                    x,
                    2 + ph,
                    pw.max(28),
                    Line::from(legend(src.color, max_abs(v.relevance.view()))),
                );
                Some(v)
            }
            other => {
                draw_state(frame, rect, other);
                None
            }
        }
    } else {
        data.as_ref().and_then(|d| d.as_ref().ok())
    };
    let ok = if app.draw.canvas.is_empty() { None } else { ok };
    draw_info(frame, &layout, app, ok, src);
}
