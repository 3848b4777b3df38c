//! Drawing the viewer into a ratatui frame (any backend, so tests draw into a `TestBackend`).
//!
//! Pictures scale with the terminal by an integer factor (each image pixel becomes `s` columns and `s` half
//! rows): 1× at 80×24, 2× at 120×40, 3× at 200×60. The info column sits beside the pictures when it fits, else
//! under them.

use ndarray::{Array2, ArrayD, Axis};
use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color as TColor, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget, Wrap};

use crate::app::{App, CanvasGeometry, ClassChoice, HELP, Mode, Screen};
use crate::cells::{Cell, Color, ColorMode, MapKind, max_abs, no_color_legend, render, to_map};
use crate::worker::{InputRef, Key, LayerData, ViewData};

/// The smallest terminal the viewer draws in.
pub const MIN_SIZE: (u16, u16) = (80, 24);
/// Width of the info column beside the pictures.
const INFO_W: u16 = 20;
/// Rows of the info block under the pictures.
const BELOW_H: u16 = 8;
/// Width of one conservation-sum column.
const SUM_W: u16 = 20;
/// The largest picture scale.
const MAX_SCALE: u16 = 8;

/// Draws rows of cells at the top-left of its area (clipped to it).
pub struct CellsWidget<'a>(pub &'a [Vec<Cell>]);

fn tcolor(c: Color) -> TColor {
    match c {
        Color::Default => TColor::Reset,
        Color::Rgb(r, g, b) => TColor::Rgb(r, g, b),
        Color::Indexed(i) => TColor::Indexed(i),
    }
}

impl Widget for CellsWidget<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        for (dy, row) in self.0.iter().enumerate().take(area.height as usize) {
            for (dx, cell) in row.iter().enumerate().take(area.width as usize) {
                if let Some(c) = buf.cell_mut((area.x + dx as u16, area.y + dy as u16)) {
                    c.set_char(cell.symbol).set_fg(tcolor(cell.fg)).set_bg(tcolor(cell.bg));
                }
            }
        }
    }
}

/// A map narrowed to at most `width` columns, each keeping the strongest value of the columns it covers.
pub fn shrink_width(map: &Array2<f32>, width: usize) -> Array2<f32> {
    let (h, w) = map.dim();
    if w <= width || width == 0 {
        return map.clone();
    }
    Array2::from_shape_fn((h, width), |(y, j)| {
        let (lo, hi) = (j * w / width, ((j + 1) * w / width).max(j * w / width + 1));
        (lo..hi)
            .map(|x| map[[y, x]])
            .fold(0.0f32, |best, v| if v.abs() > best.abs() { v } else { best })
    })
}

/// A map enlarged `s` times in both directions (nearest neighbour).
pub fn upscale(map: &Array2<f32>, s: usize) -> Array2<f32> {
    if s <= 1 {
        return map.clone();
    }
    let (h, w) = map.dim();
    Array2::from_shape_fn((h * s, w * s), |(y, x)| map[[y / s, x / s]])
}

/// Size in cells `(columns, rows)` of a `h × w` map drawn at scale `s`.
pub fn panel_size(h: usize, w: usize, s: u16) -> (u16, u16) {
    let s = s as usize;
    ((w * s) as u16, (h * s).div_ceil(2) as u16)
}

/// How the single-input screens (browse, draw) are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Picture scale.
    pub scale: u16,
    /// Pictures side by side.
    pub panels: u16,
    /// The info column is beside the pictures (else under them).
    pub side: bool,
    /// Width of one picture in cells.
    pub panel_w: u16,
    /// Height of one picture in cells.
    pub panel_h: u16,
}

impl Layout {
    /// Columns the pictures take, with their gaps.
    pub fn maps_w(&self) -> u16 {
        self.panels * self.panel_w + 2 * (self.panels - 1)
    }
}

fn fits(width: u16, height: u16, h: usize, w: usize, s: u16, panels: u16) -> Option<bool> {
    let (pw, ph) = panel_size(h, w, s);
    let maps_w = panels * pw + 2 * (panels - 1);
    // Rows: title, panel titles, the pictures, the legend, at least four rows of sums, the status line.
    let side = maps_w + 2 + INFO_W <= width && 2 + ph + 1 + 4 < height && height >= 19;
    let below = maps_w <= width && 2 + ph + 1 + BELOW_H < height;
    if side {
        Some(true)
    } else if below {
        Some(false)
    } else {
        None
    }
}

/// The largest integer scale at which `panels` pictures of `h × w` pixels and the info fit in `width × height`
/// (scale 1 when nothing fits, narrowed by the caller).
pub fn single_layout(width: u16, height: u16, h: usize, w: usize, panels: u16) -> Layout {
    let (scale, side) = (1..=MAX_SCALE)
        .rev()
        .find_map(|s| fits(width, height, h, w, s, panels).map(|side| (s, side)))
        .unwrap_or((1, true));
    let (pw, ph) = panel_size(h, w, scale);
    let pw = pw.min(width.saturating_sub(2 * (panels - 1)) / panels).max(1);
    Layout {
        scale,
        panels,
        side,
        panel_w: pw,
        panel_h: ph,
    }
}

/// Draw mode's layout: canvas, network input and relevance side by side when the three fit at 2× or more,
/// else canvas and one of the two (`p` switches) as large as they fit.
pub fn draw_layout(width: u16, height: u16) -> Layout {
    let side = crate::canvas::SIDE;
    let three = single_layout(width, height, side, side, 3);
    if three.scale >= 2 && fits(width, height, side, side, three.scale, 3).is_some() {
        three
    } else {
        single_layout(width, height, side, side, 2)
    }
}

/// Where draw mode puts the canvas on a `width × height` terminal.
pub fn canvas_geometry(width: u16, height: u16) -> CanvasGeometry {
    let l = draw_layout(width, height);
    CanvasGeometry {
        x: 0,
        y: 2,
        scale: l.scale,
    }
}

/// Compare mode's grid: the input then the rules, `per_row × rows` panels of `panel_w` columns at `scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompareLayout {
    /// Picture scale.
    pub scale: u16,
    /// Panels per row.
    pub per_row: u16,
    /// Rows of panels.
    pub rows: u16,
    /// Width of a panel (narrower than the picture when it is narrowed to fit).
    pub panel_w: u16,
    /// Height of a picture in cells.
    pub map_h: u16,
}

impl CompareLayout {
    /// Rules shown (the first panel is the input).
    pub fn rules_shown(&self, rules: usize) -> usize {
        ((self.per_row * self.rows) as usize).saturating_sub(1).min(rules)
    }
}

/// The compare grid for `rules` rules of `h × w` maps: the largest scale that shows the input and at least
/// three rules (or all of them, if fewer); at 80 columns four narrowed panels.
pub fn compare_layout(width: u16, height: u16, h: usize, w: usize, rules: usize) -> CompareLayout {
    let wanted = 1 + rules.clamp(1, 3);
    for s in (1..=MAX_SCALE).rev() {
        let (pw, ph) = panel_size(h, w, s);
        let per_row = (width + 1) / (pw + 1);
        // A panel: its title, the picture, two lines of numbers; two lines at the bottom.
        let rows = height.saturating_sub(2 + 2) / (ph + 3);
        if (per_row * rows) as usize >= wanted {
            return CompareLayout {
                scale: s,
                per_row,
                rows,
                panel_w: pw,
                map_h: ph,
            };
        }
    }
    let n = wanted as u16;
    let (_, ph) = panel_size(h, w, 1);
    CompareLayout {
        scale: 1,
        per_row: n,
        rows: 1,
        panel_w: ((width + 1) / n).saturating_sub(1).max(1),
        map_h: ph,
    }
}

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
            InputRef::Drawing(app.canvas.version)
        } else {
            InputRef::Sample(app.index)
        },
        rule: app.rules[rule].clone(),
        class: resolve_class(app, labels),
        layers: app.screen == Screen::Layers,
    }
}

/// The dataset image size the viewer lays out for (`h × w` pixels).
pub type MapSize = (usize, usize);

/// The explanations the current screen needs, on a `width × height` terminal.
pub fn needed(app: &App, width: u16, height: u16, labels: &[u8], size: MapSize) -> Vec<Key> {
    if app.rules.is_empty() || (app.on_drawing() && app.canvas.is_empty()) {
        return Vec::new();
    }
    if app.compare && app.screen == Screen::Browse {
        let accepted = app.accepted_rules();
        let start = accepted.iter().position(|&r| r == app.rule).unwrap_or(0);
        let n = compare_layout(width, height, size.0, size.1, accepted.len()).rules_shown(accepted.len());
        (0..n)
            .map(|k| key_for(app, accepted[(start + k) % accepted.len()], labels))
            .collect()
    } else {
        vec![key_for(app, app.rule, labels)]
    }
}

fn text(frame: &mut Frame, x: u16, y: u16, width: u16, line: Line) {
    let area = frame.area();
    if y >= area.height || x >= area.width {
        return;
    }
    let w = width.min(area.width - x);
    frame.render_widget(Paragraph::new(line), Rect::new(x, y, w, 1));
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn class_label(c: ClassChoice) -> String {
    match c {
        ClassChoice::Predicted => "pred".into(),
        ClassChoice::Label => "label".into(),
        ClassChoice::Class(k) => k.to_string(),
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
}

impl Sources<'_> {
    fn image(&self, index: usize) -> Option<Array2<f32>> {
        (index < self.images.shape()[0]).then(|| to_map(self.images.index_axis(Axis(0), index)))
    }

    /// `h × w` of the dataset's images as maps (from the shape: nothing is copied on a frame).
    pub fn map_size(&self) -> MapSize {
        crate::cells::map_dims(&self.images.shape()[1..])
    }
}

fn draw_map(frame: &mut Frame, rect: Rect, map: &Array2<f32>, kind: MapKind, scale: u16, color: ColorMode) {
    let big = upscale(map, scale as usize);
    let fitted = shrink_width(&big, rect.width as usize);
    let cells = render(fitted.view(), kind, color);
    frame.render_widget(CellsWidget(&cells), rect);
}

fn heat_kind(map: &Array2<f32>) -> MapKind {
    MapKind::Heatmap {
        scale: max_abs(map.view()),
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
        draw_help(frame);
    } else {
        match app.screen {
            Screen::Browse if app.compare => draw_compare(frame, app, src),
            Screen::Browse => draw_single(frame, app, src),
            Screen::Draw => draw_drawing(frame, app, src),
            Screen::Layers => draw_layers(frame, app, src),
        }
    }
    status(frame, app);
}

fn draw_help(frame: &mut Frame) {
    let area = frame.area();
    let bold = Style::default().add_modifier(Modifier::BOLD);
    text(frame, 2, 2, area.width - 2, Line::styled("keys", bold));
    for (i, (k, what)) in HELP.iter().enumerate() {
        text(
            frame,
            2,
            3 + i as u16,
            area.width - 2,
            Line::from(vec![Span::styled(format!("{k:<16}"), bold), Span::raw(*what)]),
        );
    }
    text(
        frame,
        2,
        4 + HELP.len() as u16,
        area.width - 2,
        Line::raw("colors: red = positive relevance, blue = negative; NO_COLOR gives characters:"),
    );
    text(
        frame,
        2,
        5 + HELP.len() as u16,
        area.width - 2,
        Line::raw("  +*#@ positive, -=~% negative (weak → strong), blank ≈ 0"),
    );
}

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
            None => Line::from(match app.screen {
                Screen::Draw => "mouse or arrows+space draw  x erase  u undo  c clear  s save  p panel  d back",
                Screen::Layers => "[ ] layer  h heads  ←→ sample  r rule  c class  Tab model  l/Esc back  ? help",
                Screen::Browse => "←→ sample g go m wrong r rule c class Tab model v compare d draw l layers ? help",
            }),
        },
    };
    text(frame, 0, y, area.width, line);
}

/// The legend under a heatmap: the colors, or the character ramp without them.
fn legend(color: ColorMode, scale: f32) -> String {
    if color == ColorMode::NoColor {
        // The character ramps, weak to strong (the help and `lrp explain` spell them out).
        format!("|R|≤{scale:.3} +*#@ pos -=~% neg")
    } else {
        format!("max |R| {scale:.4}  red + blue −")
    }
}

/// Index, label, prediction, class, logit, then the probabilities.
fn facts(app: &App, v: Option<&ViewData>, label: Option<u8>) -> Vec<Line<'static>> {
    let mut lines = vec![
        if app.on_drawing() {
            Line::from("your drawing")
        } else {
            Line::from(format!("index {}/{}", app.index, app.count.saturating_sub(1)))
        },
        Line::from(format!("label {}", label.map_or("-".into(), |l| l.to_string()))),
    ];
    if let Some(v) = v {
        let pred = v.predicted();
        let wrong = label.is_some_and(|l| l as usize != pred);
        lines.push(Line::from(format!("pred  {pred}{}", if wrong { "  ✗" } else { "" })));
        lines.push(Line::from(format!("class {} ({})", v.target, class_label(app.class))));
        lines.push(Line::from(format!("logit {:.3}", v.logits[v.target])));
    }
    lines
}

fn probability_lines(v: &ViewData, width: u16, rows: u16) -> Vec<Line<'static>> {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let probs = v.probabilities();
    let n = probs.len().min(10);
    let columns = if rows as usize >= n {
        1
    } else {
        n.div_ceil(rows.max(1) as usize)
    };
    let per_col = n.div_ceil(columns);
    let col_w = (width as usize / columns).max(10);
    let bar_w = col_w.saturating_sub(9).max(1);
    (0..per_col)
        .map(|r| {
            let spans: Vec<Span> = (0..columns)
                .filter_map(|c| {
                    let k = c * per_col + r;
                    (k < n).then(|| {
                        let p = probs[k];
                        let filled = ((p * bar_w as f32).round() as usize).min(bar_w);
                        let bar = "█".repeat(filled) + &"·".repeat(bar_w - filled);
                        let style = if k == v.target { bold } else { Style::default() };
                        Span::styled(format!("{k} {bar} {:>3.0}% ", p * 100.0), style)
                    })
                })
                .collect();
            Line::from(spans)
        })
        .collect()
}

/// The conservation sums in columns; when they do not all fit, the first ones, `…`, and the logit.
fn draw_sums(frame: &mut Frame, rect: Rect, sums: &[(String, f32)]) {
    if rect.height < 2 || rect.width < SUM_W {
        return;
    }
    let bold = Style::default().add_modifier(Modifier::BOLD);
    text(
        frame,
        rect.x,
        rect.y,
        rect.width,
        Line::styled("relevance sums, conservation (last: the logit)", bold),
    );
    let cols = (rect.width + 1) / SUM_W;
    let rows = rect.height - 1;
    let capacity = (cols * rows) as usize;
    let mut shown: Vec<String> = sums
        .iter()
        .map(|(name, s)| format!("{:<11}{:>8.3}", truncate(name, 11), s))
        .collect();
    if shown.len() > capacity && capacity >= 3 {
        let hidden = shown.len() - (capacity - 1);
        let last = shown.pop().expect("non-empty");
        shown.truncate(capacity - 2);
        shown.push(format!("… {hidden} more (l)"));
        shown.push(last);
    }
    for (i, s) in shown.iter().enumerate().take(capacity) {
        let (col, row) = (i as u16 / rows, i as u16 % rows);
        text(
            frame,
            rect.x + col * SUM_W,
            rect.y + 1 + row,
            SUM_W - 1,
            Line::from(s.clone()),
        );
    }
}

/// The info beside or under the pictures of the single-input screens.
fn draw_info(frame: &mut Frame, layout: &Layout, app: &App, data: Option<&ViewData>, label: Option<u8>) {
    let area = frame.area();
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let maps_w = layout.maps_w();
    let facts = facts(app, data, label);
    let below_y = 2 + layout.panel_h + 1;
    if layout.side {
        let x = maps_w + 2;
        let w = area.width - x;
        let mut y = 1;
        for line in facts {
            text(frame, x, y, w, line);
            y += 1;
        }
        if let Some(v) = data {
            text(frame, x, y, w, Line::styled("probabilities", bold));
            for line in probability_lines(v, w, 10) {
                y += 1;
                text(frame, x, y, w, line);
            }
            let sums_y = below_y.max(y + 1).min(area.height.saturating_sub(3));
            let sums_w = if sums_y > y { area.width } else { maps_w };
            draw_sums(
                frame,
                Rect::new(0, sums_y, sums_w, area.height - 1 - sums_y),
                &v.layer_sums,
            );
        }
    } else {
        let rows = area.height - 1 - below_y;
        for (i, line) in facts.into_iter().enumerate().take(rows as usize) {
            text(frame, 0, below_y + i as u16, 22, line);
        }
        if let Some(v) = data {
            let probs_w = 36.min(area.width.saturating_sub(24));
            for (i, line) in probability_lines(v, probs_w, rows).into_iter().enumerate() {
                text(frame, 24, below_y + i as u16, probs_w, line);
            }
            let sx = 24 + probs_w + 2;
            if sx + SUM_W <= area.width {
                draw_sums(frame, Rect::new(sx, below_y, area.width - sx, rows), &v.layer_sums);
            }
        }
    }
}

fn draw_state(frame: &mut Frame, rect: Rect, data: &Option<Result<ViewData, String>>) {
    match data {
        None => frame.render_widget(Paragraph::new("computing…"), rect),
        Some(Err(e)) => frame.render_widget(Paragraph::new(e.clone()).wrap(Wrap { trim: true }), rect),
        Some(Ok(_)) => {}
    }
}

fn draw_single(frame: &mut Frame, app: &App, src: &Sources) {
    let area = frame.area();
    let size = src.map_size();
    let layout = single_layout(area.width, area.height, size.0, size.1, 2);
    let key = needed(app, area.width, area.height, src.labels, size)
        .into_iter()
        .next();
    let data = key.as_ref().and_then(|k| (src.lookup)(k));
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let (pw, ph) = (layout.panel_w, layout.panel_h);
    text(frame, 0, 1, pw, Line::styled("input", bold));
    text(frame, pw + 2, 1, pw, Line::styled("relevance", bold));
    // The input is drawn from the dataset at once; only the relevance waits for the worker.
    if let Some(img) = src.image(app.index) {
        draw_map(
            frame,
            Rect::new(0, 2, pw, ph),
            &img,
            MapKind::Image,
            layout.scale,
            src.color,
        );
    }
    let rel_rect = Rect::new(pw + 2, 2, pw, ph);
    let ok = match &data {
        Some(Ok(v)) => {
            let kind = heat_kind(&v.relevance);
            draw_map(frame, rel_rect, &v.relevance, kind, layout.scale, src.color);
            text(
                frame,
                pw + 2,
                2 + ph,
                pw.max(28),
                Line::from(legend(src.color, max_abs(v.relevance.view()))),
            );
            Some(v)
        }
        other => {
            draw_state(frame, rel_rect, other);
            None
        }
    };
    draw_info(frame, &layout, app, ok, src.labels.get(app.index).copied());
}

fn draw_drawing(frame: &mut Frame, app: &App, src: &Sources) {
    let area = frame.area();
    let layout = draw_layout(area.width, area.height);
    let key = needed(app, area.width, area.height, src.labels, src.map_size())
        .into_iter()
        .next();
    let data = key.as_ref().and_then(|k| (src.lookup)(k));
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let (pw, ph, s) = (layout.panel_w, layout.panel_h, layout.scale);
    text(frame, 0, 1, pw, Line::styled("draw here", bold));
    draw_map(
        frame,
        Rect::new(0, 2, pw, ph),
        &app.canvas.ink,
        MapKind::Image,
        s,
        src.color,
    );
    // The keyboard cursor.
    let (cy, cx) = app.canvas.cursor;
    let (col, row) = (cx as u16 * s, 2 + (cy as u16 * s) / 2);
    if let Some(cell) = frame.buffer_mut().cell_mut((col, row)) {
        cell.set_char('+').set_fg(TColor::Yellow).set_bg(TColor::Reset);
    }
    let net_input = app.canvas.network_input();
    let mut x = pw + 2;
    let show_input = layout.panels == 3 || app.show_network_input;
    let show_relevance = layout.panels == 3 || !app.show_network_input;
    if show_input {
        text(frame, x, 1, pw, Line::styled("network input", bold));
        draw_map(frame, Rect::new(x, 2, pw, ph), &net_input, MapKind::Image, s, src.color);
        x += pw + 2;
    }
    let ok = if show_relevance {
        text(frame, x, 1, pw, Line::styled("relevance", bold));
        let rect = Rect::new(x, 2, pw, ph);
        match &data {
            _ if app.canvas.is_empty() => {
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
    let ok = if app.canvas.is_empty() { None } else { ok };
    draw_info(frame, &layout, app, ok, None);
}

fn draw_compare(frame: &mut Frame, app: &App, src: &Sources) {
    let area = frame.area();
    let size = src.map_size();
    let accepted = app.accepted_rules().len();
    let g = compare_layout(area.width, area.height, size.0, size.1, accepted);
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let keys = needed(app, area.width, area.height, src.labels, size);
    let cell = |i: usize| {
        let (c, r) = (i as u16 % g.per_row, i as u16 / g.per_row);
        (c * (g.panel_w + 1), 1 + r * (g.map_h + 3))
    };
    text(frame, 0, 1, g.panel_w, Line::styled("input", bold));
    if let Some(img) = src.image(app.index) {
        draw_map(
            frame,
            Rect::new(0, 2, g.panel_w, g.map_h),
            &img,
            MapKind::Image,
            g.scale,
            src.color,
        );
    }
    let mut summary = None;
    for (k, key) in keys.iter().enumerate() {
        let (x, y) = cell(k + 1);
        text(
            frame,
            x,
            y,
            g.panel_w,
            Line::styled(truncate(&key.rule, g.panel_w as usize), bold),
        );
        let data = (src.lookup)(key);
        let rect = Rect::new(x, y + 1, g.panel_w, g.map_h);
        match &data {
            Some(Ok(v)) => {
                draw_map(frame, rect, &v.relevance, heat_kind(&v.relevance), g.scale, src.color);
                text(
                    frame,
                    x,
                    y + 1 + g.map_h,
                    g.panel_w,
                    Line::from(format!("max |R| {:.4}", max_abs(v.relevance.view()))),
                );
                let sum: f32 = v.relevance.sum();
                text(
                    frame,
                    x,
                    y + 2 + g.map_h,
                    g.panel_w,
                    Line::from(format!("sum R {sum:.3}")),
                );
                summary.get_or_insert_with(|| (v.predicted(), v.target, v.logits[v.target]));
            }
            other => draw_state(frame, rect, other),
        }
    }
    let label = src.labels.get(app.index).copied();
    let mut line = format!(
        "index {}/{}  label {}",
        app.index,
        app.count.saturating_sub(1),
        label.map_or("-".into(), |l| l.to_string())
    );
    if let Some((pred, target, logit)) = summary {
        line.push_str(&format!(
            "  predicted {pred}  explaining class {target} (logit {logit:.3})"
        ));
    }
    let hidden = accepted.saturating_sub(keys.len());
    let bottom = area.height - 3;
    text(frame, 0, bottom, area.width, Line::from(line));
    let hint = if src.color == ColorMode::NoColor {
        no_color_legend()
    } else {
        "red + blue −; each map scaled by its own max |R|".to_string()
    };
    text(
        frame,
        0,
        bottom + 1,
        area.width,
        Line::from(format!(
            "{hint}  ·  r/R shifts the rules{}",
            if hidden > 0 {
                format!(" ({hidden} more)")
            } else {
                String::new()
            }
        )),
    );
}

/// Relevance per channel of a `[C, H, W]` layer input: `(channel, sum)` most relevant first.
pub fn ranked_channels(r: &ArrayD<f32>) -> Vec<(usize, f32)> {
    let mut v: Vec<(usize, f32)> = r.outer_iter().map(|c| c.sum()).enumerate().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v
}

fn draw_layers(frame: &mut Frame, app: &App, src: &Sources) {
    let area = frame.area();
    let key = needed(app, area.width, area.height, src.labels, src.map_size())
        .into_iter()
        .next();
    let data = key.as_ref().and_then(|k| (src.lookup)(k));
    let body = Rect::new(0, 3, area.width, area.height - 4);
    let v = match &data {
        Some(Ok(v)) => v,
        other => {
            if app.on_drawing() && app.canvas.is_empty() {
                frame.render_widget(Paragraph::new("draw a digit first (l returns to the canvas)"), body);
            } else {
                draw_state(frame, body, other);
            }
            return;
        }
    };
    if v.layers.is_empty() {
        frame.render_widget(Paragraph::new("this network has no layer with one input"), body);
        return;
    }
    let idx = app.layer.min(v.layers.len() - 1);
    let layer = &v.layers[idx];
    let total: f32 = layer.relevance.sum();
    let bold = Style::default().add_modifier(Modifier::BOLD);
    text(
        frame,
        0,
        1,
        area.width,
        Line::styled(
            format!(
                "layer {} {} ({}/{}): R at its input {:?}, sum {total:.3}, logit {:.3}",
                layer.node,
                layer.kind,
                idx + 1,
                v.layers.len(),
                layer.relevance.shape(),
                v.logits[v.target]
            ),
            bold,
        ),
    );
    text(
        frame,
        0,
        2,
        area.width,
        Line::from(format!(
            "{}  ·  [ / ] other layers",
            legend(src.color, max_abs_d(&layer.relevance))
        )),
    );
    let grid = token_grid(layer.relevance.shape());
    match layer.relevance.ndim() {
        3 if layer.writer.as_deref() == Some("matmul") && grid.is_some() => {
            draw_heads(frame, body, layer, total, src.color)
        }
        3 => draw_channels(frame, body, layer, total, src.color),
        2 if token_grid(&layer.relevance.shape()[..1]).is_some() => draw_tokens(frame, body, layer, total, src.color),
        1 => draw_neurons(frame, body, layer, total, src.color),
        _ => {
            let map = to_map(layer.relevance.view());
            let (h, w) = map.dim();
            let s = (1..=MAX_SCALE)
                .rev()
                .find(|&s| {
                    let (pw, ph) = panel_size(h, w, s);
                    pw <= body.width && ph <= body.height
                })
                .unwrap_or(1);
            draw_map(frame, body, &map, heat_kind(&map), s, src.color);
        }
    }
}

/// The side `g` of a square grid of tokens when the second-to-last axis (or the only one) holds `g²` of them,
/// `g ≥ 2`: a transformer's patches over the image.
pub fn token_grid(shape: &[usize]) -> Option<usize> {
    let t = match shape.len() {
        1 => shape[0],
        n => shape[n - 2],
    };
    let g = (t as f64).sqrt().round() as usize;
    (g >= 2 && g * g == t).then_some(g)
}

/// Relevance per token (summed over the last axis of `[…, T, D]`) as a `g × g` map over the image.
pub fn token_map(r: ndarray::ArrayViewD<f32>, g: usize) -> Array2<f32> {
    let sums = r.sum_axis(Axis(r.ndim() - 1));
    let flat: Vec<f32> = sums.iter().copied().collect();
    Array2::from_shape_vec((g, g), flat).expect("g² tokens")
}

/// A transformer's token values `[T, D]`: the relevance of each token as a grid over the image (each patch one
/// square), with the strongest tokens' shares beside it.
fn draw_tokens(frame: &mut Frame, body: Rect, layer: &LayerData, total: f32, color: ColorMode) {
    let g = token_grid(&layer.relevance.shape()[..1]).expect("checked by the caller");
    let map = token_map(layer.relevance.view(), g);
    // Each token enlarged to about a patch of a 28-pixel image, smaller if the body is small.
    let scale = (1..=(28 / g.max(1)).max(1) as u16)
        .rev()
        .find(|&s| {
            let (pw, ph) = panel_size(g, g, s);
            pw <= body.width && ph < body.height
        })
        .unwrap_or(1);
    let (pw, ph) = panel_size(g, g, scale);
    text(
        frame,
        body.x,
        body.y,
        body.width,
        Line::from(format!("relevance per token ({g}×{g} patches)")),
    );
    draw_map(
        frame,
        Rect::new(body.x, body.y + 1, pw, ph),
        &map,
        heat_kind(&map),
        scale,
        color,
    );
    let mut ranked: Vec<(usize, f32)> = map.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    let x = body.x + pw + 2;
    if x + 20 <= body.x + body.width {
        for (i, &(t, r)) in ranked.iter().take(body.height.saturating_sub(1) as usize).enumerate() {
            let share = if total != 0.0 { 100.0 * r / total } else { 0.0 };
            text(
                frame,
                x,
                body.y + 1 + i as u16,
                body.x + body.width - x,
                Line::from(format!("token {t:>3} (row {}, col {}) {share:>6.1}%", t / g, t % g)),
            );
        }
    }
}

/// A block's attention output `[heads, T, d]` (the input of the layer after `softmax · V`): each head's share of
/// the relevance that flows through the block's attention, largest first, with its tokens as a grid.
fn draw_heads(frame: &mut Frame, body: Rect, layer: &LayerData, total: f32, color: ColorMode) {
    let g = token_grid(layer.relevance.shape()).expect("checked by the caller");
    let heads = layer.relevance.shape()[0];
    // Heads ranked as channels are, each one's tokens as a map, all on one color scale.
    let ranked = ranked_channels(&layer.relevance);
    let maps: Vec<Array2<f32>> = layer.relevance.outer_iter().map(|r| token_map(r, g)).collect();
    let common = MapKind::Heatmap {
        scale: maps.iter().map(|m| max_abs(m.view())).fold(0.0, f32::max),
    };
    let scale = (1..=(28 / g.max(1)).max(1) as u16)
        .rev()
        .find(|&s| {
            let (pw, ph) = panel_size(g, g, s);
            let per_row = (body.width + 1) / (pw + 1);
            per_row as usize >= heads.min(4) && ph + 3 <= body.height
        })
        .unwrap_or(1);
    let (pw, ph) = panel_size(g, g, scale);
    let pw = pw.max(12);
    let per_row = ((body.width + 1) / (pw + 1)).max(1);
    text(
        frame,
        body.x,
        body.y,
        body.width,
        Line::from("attention heads: each head's share of the relevance through this block's attention"),
    );
    for (i, &(h, sum)) in ranked.iter().enumerate() {
        let (col, row) = (i as u16 % per_row, i as u16 / per_row);
        let (x, y) = (body.x + col * (pw + 1), body.y + 1 + row * (ph + 2));
        if y + ph + 1 > body.y + body.height {
            break;
        }
        let share = if total != 0.0 { 100.0 * sum / total } else { 0.0 };
        text(
            frame,
            x,
            y,
            pw,
            Line::from(truncate(&format!("head {h} {share:.1}%"), pw as usize)),
        );
        draw_map(frame, Rect::new(x, y + 1, pw, ph), &maps[h], common, scale, color);
    }
}

fn max_abs_d(a: &ArrayD<f32>) -> f32 {
    a.iter().filter(|v| !v.is_nan()).fold(0.0, |m, v| m.max(v.abs()))
}

/// A conv layer's input: its channels ranked by relevance, the top ones' maps side by side (enlarged to about
/// a digit's size, all on one color scale), each with its share of the total.
fn draw_channels(frame: &mut Frame, body: Rect, layer: &LayerData, total: f32, color: ColorMode) {
    let ranked = ranked_channels(&layer.relevance);
    let (h, w) = (layer.relevance.shape()[1], layer.relevance.shape()[2]);
    // Enlarge small maps towards 28 columns, and further while two rows of them fit.
    let base = (28 / w.max(1)).max(1) as u16;
    let scale = (1..=MAX_SCALE)
        .rev()
        .map(|k| base * k)
        .find(|&s| {
            let (pw, ph) = panel_size(h, w, s);
            let per_row = (body.width + 1) / (pw + 1);
            let rows = body.height / (ph + 2);
            (per_row * rows) as usize >= ranked.len().min(8)
        })
        .unwrap_or(1);
    let (pw, ph) = panel_size(h, w, scale);
    let per_row = ((body.width + 1) / (pw + 1)).max(1);
    let rows = (body.height / (ph + 2)).max(1);
    let shown = ((per_row * rows) as usize).min(ranked.len());
    let common = MapKind::Heatmap {
        scale: max_abs_d(&layer.relevance),
    };
    for (i, &(c, sum)) in ranked.iter().take(shown).enumerate() {
        let (col, row) = (i as u16 % per_row, i as u16 / per_row);
        let (x, y) = (body.x + col * (pw + 1), body.y + row * (ph + 2));
        let share = if total != 0.0 { 100.0 * sum / total } else { 0.0 };
        text(
            frame,
            x,
            y,
            pw,
            Line::from(truncate(&format!("ch {c} {share:.1}%"), pw as usize)),
        );
        let map = layer
            .relevance
            .index_axis(Axis(0), c)
            .into_dimensionality::<ndarray::Ix2>()
            .expect("[H, W]")
            .to_owned();
        draw_map(frame, Rect::new(x, y + 1, pw, ph), &map, common, scale, color);
    }
    if shown < ranked.len() {
        let rest: f32 = ranked[shown..].iter().map(|&(_, s)| s).sum();
        text(
            frame,
            body.x,
            body.y + body.height - 1,
            body.width,
            Line::from(format!(
                "top {shown} of {} channels shown; the other {} hold {:.1}% of the relevance",
                ranked.len(),
                ranked.len() - shown,
                if total != 0.0 { 100.0 * rest / total } else { 0.0 }
            )),
        );
    }
}

/// A dense layer's input: its neurons' relevances as a bar chart, strongest |R| first.
fn draw_neurons(frame: &mut Frame, body: Rect, layer: &LayerData, total: f32, color: ColorMode) {
    let mut v: Vec<(usize, f32)> = layer.relevance.iter().copied().enumerate().collect();
    v.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    let max = v.first().map_or(0.0, |x| x.1.abs());
    let rows = body.height.saturating_sub(1) as usize;
    let label_w = 26usize;
    let bar_w = (body.width as usize).saturating_sub(label_w + 2).max(4);
    for (i, &(n, r)) in v.iter().take(rows).enumerate() {
        let len = if max > 0.0 {
            ((r.abs() / max) * bar_w as f32).round() as usize
        } else {
            0
        };
        let share = if total != 0.0 { 100.0 * r / total } else { 0.0 };
        let (ch, fg) = match (color, r >= 0.0) {
            (ColorMode::NoColor, true) => ('+', TColor::Reset),
            (ColorMode::NoColor, false) => ('-', TColor::Reset),
            (_, true) => ('█', TColor::Red),
            (_, false) => ('█', TColor::Blue),
        };
        let line = Line::from(vec![
            Span::raw(format!(
                "{:<label_w$}",
                format!("neuron {n:<5} {r:>+9.4} {share:>5.1}%")
            )),
            Span::styled(ch.to_string().repeat(len), Style::default().fg(fg)),
        ]);
        text(frame, body.x, body.y + i as u16, body.width, line);
    }
    if v.len() > rows {
        text(
            frame,
            body.x,
            body.y + body.height - 1,
            body.width,
            Line::from(format!("{} of {} neurons, strongest |R| first", rows, v.len())),
        );
    }
}
