//! The help screen, generated from the key lists: the keys of every screen and those of the screen it was opened
//! from, then how the colors read.

use ratatui::Frame;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};

use super::widgets::text;
use crate::app::App;
use crate::keys::{Binding, COMMON};

/// The lines of the help for the screen `app` shows: `(keys, what)`, a heading where `keys` is empty.
pub fn lines(app: &App) -> Vec<(&'static str, &'static str)> {
    let (own, _) = app.screen_keys();
    let mut v = vec![("", "keys on this screen")];
    v.extend(own.iter().map(|b: &Binding| (b.keys, b.help)));
    v.push(("", "keys of every screen"));
    v.extend(COMMON.iter().map(|b| (b.keys, b.help)));
    v
}

pub(crate) fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let mut y = 2;
    for (k, what) in lines(app) {
        let line = if k.is_empty() {
            Line::styled(what, bold)
        } else {
            Line::from(vec![Span::styled(format!("{k:<16}"), bold), Span::raw(what)])
        };
        text(frame, 2, y, area.width - 2, line);
        y += 1;
    }
    text(
        frame,
        2,
        y,
        area.width - 2,
        Line::raw("colors: red + / blue −; NO_COLOR: +*#@ positive, -=~% negative (weak → strong)"),
    );
}
