//! Draw mode, the scaled layouts and the layer view, driven by synthetic key and mouse events and drawn into
//! ratatui's `TestBackend`, on the shipped models.

use std::path::PathBuf;

use lrp_core::{Dataset, Model, Split};
use lrp_view::app::{App, ClassChoice, Mode, ModelEntry, RuleCheck, Screen};
use lrp_view::canvas::{Canvas, center_of_mass, preprocess};
use lrp_view::cells::ColorMode;
use lrp_view::ui::{Sources, canvas_geometry, draw, needed, single_layout};
use lrp_view::worker::{InputRef, Key, Shared, ViewData, compute};
use ndarray::Array2;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shipped CNN and MLP and the first 50 MNIST test digits.
fn shipped() -> Shared {
    let load = |f: &str| Model::load(&repo().join("data/models").join(f)).unwrap().network;
    let data = Dataset::load(&repo().join("data/mnist"), Split::Test).unwrap();
    let images = data
        .images
        .slice_axis(ndarray::Axis(0), (0..50).into())
        .to_owned()
        .into_dyn();
    Shared {
        models: vec![
            ("mnist-cnn".into(), load("mnist-cnn.lrpm")),
            ("mnist-mlp".into(), load("mnist-mlp.lrpm")),
        ],
        images,
        labels: data.labels[..50].to_vec(),
        photos: None,
        class_names: None,
    }
}

struct Check<'a>(&'a Shared);

impl RuleCheck for Check<'_> {
    fn parse(&self, s: &str) -> Result<String, String> {
        lrp_rules::Spec::parse(s)
            .map(|s| s.to_string())
            .map_err(|e| e.to_string())
    }
    fn accepts(&self, model: usize, spec: &str) -> Result<(), String> {
        let spec = lrp_rules::Spec::parse(spec).map_err(|e| e.to_string())?;
        lrp_rules::Explainer::new(&self.0.models[model].1, &spec)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

fn app_for(shared: &Shared) -> App {
    let models = shared
        .models
        .iter()
        .map(|(n, net)| ModelEntry::of(n.clone(), net))
        .collect();
    let rules = lrp_rules::PRESETS.iter().map(|s| s.to_string()).collect();
    let mut app = App::new(models, shared.labels.len(), rules);
    app.check_rules(&Check(shared), Some("epsilon-gamma-box"));
    app
}

/// Explains what the screen needs right now (as the worker would), then draws it.
fn render(app: &App, shared: &Shared, width: u16, height: u16, color: ColorMode) -> (String, Vec<ViewData>) {
    let size = (28, 28);
    let drawing = app.draw.canvas.network_input();
    let mut got = Vec::new();
    for key in needed(app, width, height, &shared.labels, size) {
        let spec = lrp_rules::Spec::parse(&key.rule).unwrap();
        let ex = lrp_rules::Explainer::new(&shared.models[key.model].1, &spec).unwrap();
        let d = matches!(key.input, InputRef::Drawing(_)).then_some(&drawing);
        got.push((key.clone(), compute(shared, &key, &ex, d)));
    }
    let lookup = |k: &Key| got.iter().find(|(g, _)| g == k).map(|(_, v)| v.clone());
    let src = Sources {
        lookup: &lookup,
        labels: &shared.labels,
        images: &shared.images,
        color,
        photos: None,
        class_names: None,
    };
    let mut term = Terminal::new(TestBackend::new(width, height)).unwrap();
    term.draw(|f| draw(f, app, &src)).unwrap();
    let buf = term.backend().buffer();
    let text = (0..height)
        .map(|y| (0..width).map(|x| buf[(x, y)].symbol().to_string()).collect::<String>() + "\n")
        .collect();
    (text, got.into_iter().filter_map(|(_, v)| v.ok()).collect())
}

fn mouse(kind: MouseEventKind, column: u16, row: u16) -> MouseEvent {
    MouseEvent {
        kind,
        column,
        row,
        modifiers: KeyModifiers::NONE,
    }
}

/// A stroke from cell `from` to cell `to` (column, row), as a terminal reports a press, drags and a release.
fn stroke(app: &mut App, from: (u16, u16), to: (u16, u16), width: u16, height: u16) {
    let g = Some(canvas_geometry(width, height));
    app.handle_mouse(mouse(MouseEventKind::Down(MouseButton::Left), from.0, from.1), g);
    let steps = 12;
    for k in 1..=steps {
        let c = from.0 as i32 + (to.0 as i32 - from.0 as i32) * k / steps;
        let r = from.1 as i32 + (to.1 as i32 - from.1 as i32) * k / steps;
        app.handle_mouse(mouse(MouseEventKind::Drag(MouseButton::Left), c as u16, r as u16), g);
    }
    app.handle_mouse(mouse(MouseEventKind::Up(MouseButton::Left), to.0, to.1), g);
}

fn press(app: &mut App, shared: &Shared, codes: &[KeyCode]) {
    for &c in codes {
        app.handle_key(KeyEvent::new(c, KeyModifiers::NONE), &Check(shared));
    }
}

#[test]
fn a_mouse_stroke_changes_the_input_and_the_preprocessing_centres_it() {
    let shared = shipped();
    let mut app = app_for(&shared);
    press(&mut app, &shared, &[KeyCode::Char('d')]);
    assert_eq!(app.screen, Screen::Draw);
    assert!(app.draw.canvas.is_empty());
    let before = app.draw.canvas.version;
    // A short stroke in the canvas's upper-left corner (80×24: the canvas is columns 0–27, rows 2–15).
    stroke(&mut app, (3, 3), (8, 6), 80, 24);
    assert!(!app.draw.canvas.is_empty() && app.draw.canvas.version > before);
    let (cy, cx) = center_of_mass(&app.draw.canvas.ink).unwrap();
    assert!(cy < 10.0 && cx < 10.0, "the ink is where it was drawn: ({cy}, {cx})");
    let input = app.draw.canvas.network_input();
    let (py, px) = center_of_mass(&input).unwrap();
    assert!(
        (py - 14.0).abs() <= 1.0 && (px - 14.0).abs() <= 1.0,
        "centre of mass of the network input at ({py}, {px})"
    );
    // Scaled into the 20-pixel box: the longer side of the ink spans 19–20 pixels.
    let rows: Vec<usize> = (0..28).filter(|&y| input.row(y).iter().any(|&v| v > 0.0)).collect();
    let cols: Vec<usize> = (0..28).filter(|&x| input.column(x).iter().any(|&v| v > 0.0)).collect();
    let span = (rows.last().unwrap() - rows[0] + 1).max(cols.last().unwrap() - cols[0] + 1);
    assert!((19..=20).contains(&span), "longer side {span}");
    // A press outside the canvas draws nothing.
    let v = app.draw.canvas.version;
    stroke(&mut app, (60, 20), (70, 22), 80, 24);
    assert_eq!(app.draw.canvas.version, v);
}

#[test]
fn the_keyboard_draws_erases_clears_and_undoes() {
    let shared = shipped();
    let mut app = app_for(&shared);
    app.screen = Screen::Draw;
    press(&mut app, &shared, &[KeyCode::Up, KeyCode::Up, KeyCode::Char(' ')]);
    assert_eq!(app.draw.canvas.cursor, (12, 14));
    assert!(app.draw.canvas.ink[[12, 14]] > 0.9, "space paints under the cursor");
    assert!(
        app.draw.canvas.ink[[12, 16]] > 0.0 && app.draw.canvas.ink[[12, 17]] == 0.0,
        "soft edge, limited reach"
    );
    press(&mut app, &shared, &[KeyCode::Char('x')]);
    assert!(app.draw.canvas.is_empty(), "x erases");
    press(&mut app, &shared, &[KeyCode::Char('u')]);
    assert!(app.draw.canvas.ink[[12, 14]] > 0.9, "u undoes the erase");
    press(&mut app, &shared, &[KeyCode::Char('c')]);
    assert!(app.draw.canvas.is_empty(), "c clears");
    press(&mut app, &shared, &[KeyCode::Char('u'), KeyCode::Char('u')]);
    assert!(app.draw.canvas.is_empty(), "undo reaches the empty canvas");
    press(&mut app, &shared, &[KeyCode::Char('u')]);
    assert_eq!(app.message.as_deref(), Some("nothing to undo"));
    // Arrows move the cursor in draw mode, not the sample.
    assert_eq!(app.index, 0);
    press(&mut app, &shared, &[KeyCode::Char('s')]);
    assert!(!app.draw.wants_save && app.message.as_deref().unwrap().contains("nothing to save"));
    press(&mut app, &shared, &[KeyCode::Char(' '), KeyCode::Char('s')]);
    assert!(app.draw.wants_save);
    press(&mut app, &shared, &[KeyCode::Char('d')]);
    assert_eq!(app.screen, Screen::Browse);
}

#[test]
fn a_drawn_one_is_explained_and_the_panels_follow_each_stroke() {
    let shared = shipped();
    let mut app = app_for(&shared);
    app.screen = Screen::Draw;
    let (empty, none) = render(&app, &shared, 80, 24, ColorMode::TrueColor);
    assert!(none.is_empty() && empty.contains("draw a digit"), "{empty}");
    // A vertical stroke down the middle of the canvas: a "1".
    stroke(&mut app, (14, 4), (14, 14), 80, 24);
    let (one, data) = render(&app, &shared, 80, 24, ColorMode::TrueColor);
    assert_eq!(data[0].predicted(), 1, "{one}");
    assert!(one.contains("pred  1") && one.contains("your drawing"), "{one}");
    let relevance_one = data[0].relevance.clone();
    // Another stroke: a new version, a new explanation.
    let v = app.draw.canvas.version;
    stroke(&mut app, (8, 4), (20, 4), 80, 24);
    assert!(app.draw.canvas.version > v);
    let (_, data) = render(&app, &shared, 80, 24, ColorMode::TrueColor);
    assert_ne!(data[0].relevance, relevance_one);
    // Save: the .npy is the network input and explains the same in `lrp explain --input`.
    let dir = tempfile::tempdir().unwrap();
    let said = lrp_view::tui::save_drawing(
        dir.path(),
        &app.draw.canvas.network_input(),
        Some(&data[0]),
        "epsilon-gamma-box",
        "mnist-cnn",
    )
    .unwrap();
    assert!(
        said.contains("drawing-1.npy") && said.contains("drawing-1.png"),
        "{said}"
    );
    let saved: ndarray::Array4<f32> = ndarray_npy::read_npy(dir.path().join("drawing-1.npy")).unwrap();
    assert_eq!(saved.shape(), &[1, 1, 28, 28]);
    assert_eq!(
        saved.index_axis(ndarray::Axis(0), 0).index_axis(ndarray::Axis(0), 0),
        app.draw.canvas.network_input()
    );
    let again = lrp_view::tui::save_drawing(dir.path(), &app.draw.canvas.network_input(), None, "e", "m").unwrap();
    assert!(again.contains("drawing-2.npy"), "never overwrites: {again}");
    // Said with the absolute path; a dangling symbolic link in the way is not written through (the next free name
    // is taken and the link's target is never created).
    assert!(said.contains(&dir.path().display().to_string()), "{said}");
    let target = dir.path().join("elsewhere.npy");
    std::os::unix::fs::symlink(&target, dir.path().join("drawing-3.npy")).unwrap();
    let third = lrp_view::tui::save_drawing(dir.path(), &app.draw.canvas.network_input(), None, "e", "m").unwrap();
    assert!(third.contains("drawing-4.npy"), "{third}");
    assert!(!target.exists(), "nothing written through the dangling link");
}

#[test]
fn pictures_scale_with_the_terminal() {
    let shared = shipped();
    let app = app_for(&shared);
    for (w, h, scale) in [(80u16, 24u16, 1u16), (120, 40, 2), (200, 60, 3)] {
        let l = single_layout(w, h, 28, 28, 2);
        assert_eq!(l.scale, scale, "{w}×{h}");
        let (text, _) = render(&app, &shared, w, h, ColorMode::TrueColor);
        let row: Vec<char> = text.lines().nth(2).unwrap().chars().collect();
        let input_cells = row.iter().take_while(|&&c| c == '▀').count();
        assert_eq!(input_cells, 28 * scale as usize, "{w}×{h}:\n{text}");
        let relevance_cells = row.iter().skip(input_cells + 2).take_while(|&&c| c == '▀').count();
        assert_eq!(relevance_cells, 28 * scale as usize, "{w}×{h}:\n{text}");
        let map_rows = text.lines().skip(2).filter(|l| l.starts_with('▀')).count();
        assert_eq!(map_rows, 14 * scale as usize, "{w}×{h}");
        // The prediction's probability bar (digit 0 of the test set is a 7, predicted with ~100%).
        assert!(text.contains("7 █"), "{w}×{h}:\n{text}");
        assert!(text.contains("logit"), "{w}×{h}:\n{text}");
    }
    // Draw mode at 200×60: canvas, network input and relevance side by side at 2×.
    let mut app = app_for(&shared);
    app.screen = Screen::Draw;
    stroke(&mut app, (28, 8), (28, 40), 200, 60);
    let (text, _) = render(&app, &shared, 200, 60, ColorMode::TrueColor);
    let row1 = text.lines().nth(1).unwrap();
    assert!(
        row1.contains("draw here") && row1.contains("network input") && row1.contains("relevance"),
        "{row1}"
    );
}

#[test]
fn the_layer_view_ranks_channels_and_neurons() {
    let shared = shipped();
    let mut app = app_for(&shared);
    press(&mut app, &shared, &[KeyCode::Char('l')]);
    assert_eq!(app.screen, Screen::Layers);
    // CNN layer 3 (the second conv): 16 channels of 12×12, ranked, with shares.
    press(
        &mut app,
        &shared,
        &[KeyCode::Char(']'), KeyCode::Char(']'), KeyCode::Char(']')],
    );
    let (text, data) = render(&app, &shared, 120, 40, ColorMode::TrueColor);
    let layer = &data[0].layers[app.layers.layer];
    assert_eq!(
        (layer.node, layer.kind.as_str(), layer.relevance.shape()),
        (3, "conv2d", &[16, 12, 12][..])
    );
    assert!(
        text.contains("layer #1 conv2d") && text.contains("[16, 12, 12]"),
        "{text}"
    );
    let ranked = lrp_view::ui::ranked_channels(&layer.relevance);
    let top = format!("ch {} ", ranked[0].0);
    assert!(
        text.contains(&top),
        "the most relevant channel {top} comes first:\n{text}"
    );
    assert!(ranked.windows(2).all(|w| w[0].1 >= w[1].1));
    // Its sum is the conservation sum at that value.
    let total: f32 = layer.relevance.sum();
    assert!((total - data[0].layer_sums[3].1).abs() < 1e-3);
    // MLP, the second dense layer's input: neurons as bars, strongest first.
    press(&mut app, &shared, &[KeyCode::Tab]);
    app.layers.layer = 3;
    let (text, data) = render(&app, &shared, 80, 24, ColorMode::TrueColor);
    let layer = &data[0].layers[3];
    assert_eq!((layer.kind.as_str(), layer.relevance.ndim()), ("dense", 1));
    assert!(text.contains("neuron") && text.contains('█'), "{text}");
    // ] stops at the last layer (no dead presses to come back from); l goes back.
    for _ in 0..30 {
        press(&mut app, &shared, &[KeyCode::Char(']')]);
    }
    assert_eq!(app.layers.layer, app.models[1].layers - 1);
    press(&mut app, &shared, &[KeyCode::Char('[')]);
    assert_eq!(app.layers.layer, app.models[1].layers - 2);
    press(&mut app, &shared, &[KeyCode::Char('l')]);
    assert_eq!(app.screen, Screen::Browse);
}

#[test]
fn rough_edges_of_the_viewer_keys() {
    let shared = shipped();
    let mut app = app_for(&shared);
    // Opens on the first model (the CNN) with epsilon-gamma-box.
    assert_eq!((app.model, app.rules[app.rule].as_str()), (0, "epsilon-gamma-box"));
    // Esc after a message dismisses it, it does not quit.
    press(
        &mut app,
        &shared,
        &[
            KeyCode::Char('g'),
            KeyCode::Char('9'),
            KeyCode::Char('9'),
            KeyCode::Char('9'),
            KeyCode::Enter,
        ],
    );
    assert!(app.message.is_some());
    press(&mut app, &shared, &[KeyCode::Esc]);
    assert!(!app.quit && app.message.is_none());
    // The help closes on any key, q included.
    press(&mut app, &shared, &[KeyCode::Char('?')]);
    assert_eq!(app.mode, Mode::Help);
    press(&mut app, &shared, &[KeyCode::Char('q')]);
    assert!(!app.quit && app.mode == Mode::Normal);
    // c reaches the label.
    press(&mut app, &shared, &[KeyCode::Char('c')]);
    assert_eq!(app.class, ClassChoice::Label);
    // No NO_COLOR "red + blue −": the character legend instead.
    let (text, _) = render(&app, &shared, 80, 24, ColorMode::NoColor);
    assert!(!text.contains("red +") && text.contains("+*#@ pos -=~% neg"), "{text}");
    // r offers only rules the model takes: every preset on the CNN.
    let accepted = app.accepted_rules().len();
    assert_eq!(accepted, app.rules.len());
    press(&mut app, &shared, &[KeyCode::Esc]);
    assert!(app.quit, "Esc with nothing to dismiss quits");
}

#[test]
fn r_offers_only_the_rules_a_model_takes() {
    // A model that refuses some presets: the shipped LSTM.
    let load = |f: &str| Model::load(&repo().join("data/models").join(f)).unwrap().network;
    let mut shared = shipped();
    shared.models.push(("mnist-lstm".into(), load("mnist-lstm.lrpm")));
    let mut app = app_for(&shared);
    press(&mut app, &shared, &[KeyCode::Tab, KeyCode::Tab]);
    assert_eq!(app.model, 2);
    let accepted = app.accepted_rules();
    assert!(accepted.len() < app.rules.len(), "the LSTM refuses some presets");
    for _ in 0..2 * app.rules.len() {
        press(&mut app, &shared, &[KeyCode::Char('r')]);
        assert!(accepted.contains(&app.rule), "r offered {}", app.rules[app.rule]);
        let (text, data) = render(&app, &shared, 80, 24, ColorMode::TrueColor);
        assert_eq!(data.len(), 1, "the explanation failed:\n{text}");
    }
}

#[test]
fn the_input_stays_on_screen_while_its_explanation_is_computed() {
    let shared = shipped();
    let app = app_for(&shared);
    let lookup = |_: &Key| None;
    let src = Sources {
        lookup: &lookup,
        labels: &shared.labels,
        images: &shared.images,
        color: ColorMode::TrueColor,
        photos: None,
        class_names: None,
    };
    let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
    term.draw(|f| draw(f, &app, &src)).unwrap();
    let buf = term.backend().buffer();
    // A bright pixel of the 7 in the input panel, and "computing…" where the heatmap will be.
    let bright = (0..28).flat_map(|x| (2..16).map(move |y| (x, y))).any(|(x, y)| {
        matches!(buf[(x, y)].fg, ratatui::style::Color::Indexed(c) if c >= 250)
            || matches!(buf[(x, y)].fg, ratatui::style::Color::Rgb(r, _, _) if r > 200)
    });
    assert!(bright, "the input is drawn before its explanation arrives");
    let row: String = (30..50).map(|x| buf[(x, 2)].symbol().to_string()).collect();
    assert!(row.contains("computing"), "{row}");
}

#[test]
fn preprocessing_keeps_the_aspect_ratio_and_an_empty_canvas_empty() {
    assert!(preprocess(&Array2::zeros((28, 28))).iter().all(|&v| v == 0.0));
    let mut c = Canvas::default();
    // A wide flat bar: scaled to 20 wide, still a few pixels tall.
    c.begin_stroke(10.0, 3.0);
    c.stroke_to(10.0, 25.0);
    c.end_stroke();
    let p = preprocess(&c.ink);
    let rows = (0..28).filter(|&y| p.row(y).iter().any(|&v| v > 0.05)).count();
    let cols = (0..28).filter(|&x| p.column(x).iter().any(|&v| v > 0.0)).count();
    assert!((19..=20).contains(&cols) && rows <= 5, "{rows} rows × {cols} columns");
}

#[test]
fn the_layer_view_of_a_vision_transformer_shows_tokens_and_heads() {
    let net = lrp_core::Arch::Vit.build(&[1, 28, 28], 10, 1).unwrap();
    let mut shared = shipped();
    shared.models = vec![("vit".into(), net)];
    let mut app = app_for(&shared);
    press(&mut app, &shared, &[KeyCode::Char('l')]);
    let (_, data) = render(&app, &shared, 120, 40, ColorMode::TrueColor);
    let layers = &data[0].layers;
    // A block's attention output [heads, tokens, d] (what `softmax · V` wrote): the head panel.
    let heads = layers
        .iter()
        .position(|l| l.writer.as_deref() == Some("matmul") && l.kind == "transpose")
        .expect("the layer after softmax · V");
    assert_eq!(layers[heads].relevance.shape(), &[4, 16, 16]);
    // h jumps to each block's head panel in turn, and wraps.
    assert_eq!(app.models[0].head_layers.len(), 2, "two blocks");
    press(&mut app, &shared, &[KeyCode::Char('h')]);
    assert_eq!(app.layers.layer, heads);
    press(&mut app, &shared, &[KeyCode::Char('h')]);
    assert_eq!(app.layers.layer, app.models[0].head_layers[1]);
    press(&mut app, &shared, &[KeyCode::Char('h')]);
    assert_eq!(app.layers.layer, heads);
    let (text, data) = render(&app, &shared, 120, 40, ColorMode::TrueColor);
    assert!(
        text.contains("attention heads") && text.contains("head 0") && text.contains("head 3"),
        "{text}"
    );
    // The most relevant head comes first, with its share of the relevance through the attention.
    let layer = &data[0].layers[heads];
    let per_head: Vec<f64> = layer
        .relevance
        .outer_iter()
        .map(|h| h.iter().map(|&v| v as f64).sum())
        .collect();
    let top = (0..per_head.len())
        .max_by(|&a, &b| per_head[a].total_cmp(&per_head[b]))
        .unwrap();
    let total: f64 = per_head.iter().sum();
    let first = format!("head {top} {:.1}%", 100.0 * per_head[top] / total);
    let row = text.lines().find(|l| l.contains("head ")).unwrap();
    assert!(row.trim_start().starts_with(&first), "{first} first:\n{text}");
    // Token values [16, 64]: the relevance of each 7×7 patch as a 4×4 grid.
    let tokens = data[0]
        .layers
        .iter()
        .position(|l| l.relevance.shape() == [16, 64])
        .expect("a token value");
    app.layers.layer = tokens;
    let (text, data) = render(&app, &shared, 80, 24, ColorMode::NoColor);
    assert!(
        text.contains("relevance per token (4×4 patches)") && text.contains("token"),
        "{text}"
    );
    // Token t = 4·row + col of the grid holds that token's relevance summed over its features.
    let r = &data[0].layers[tokens].relevance;
    let map = lrp_view::ui::token_map(r.view(), 4);
    for t in [0, 6, 15] {
        let want: f32 = r.index_axis(ndarray::Axis(0), t).sum();
        assert!(
            (map[[t / 4, t % 4]] - want).abs() <= 1e-6 * (1.0 + want.abs()),
            "token {t}"
        );
    }
}

/// The LSTM's layer view: the value the dense head reads (`[1, 128]`, the final hidden state) is drawn as the
/// neuron bar chart, strongest first, not as one unlabelled row of cells.
#[test]
fn the_lstms_state_is_drawn_as_neuron_bars() {
    let mut shared = shipped();
    let lstm = Model::load(&repo().join("data/models/mnist-lstm.lrpm"))
        .unwrap()
        .network;
    shared.models = vec![("mnist-lstm".into(), lstm)];
    let mut app = app_for(&shared);
    press(&mut app, &shared, &[KeyCode::Char('l')]);
    let mut seen = false;
    for _ in 0..app.models[0].layers {
        let (text, data) = render(&app, &shared, 120, 40, ColorMode::TrueColor);
        let layer = &data[0].layers[app.layers.layer];
        if layer.relevance.shape().iter().filter(|&&d| d > 1).count() == 1 && layer.relevance.ndim() == 2 {
            seen = true;
            assert!(text.contains("neuron "), "{:?}: {text}", layer.relevance.shape());
            assert!(text.contains("strongest |R| first"), "{text}");
        }
        press(&mut app, &shared, &[KeyCode::Char(']')]);
    }
    assert!(seen, "the LSTM has a [1, N] value in its layer view");
}

/// Sets what the event loop sets after drawing the concept screen (the channel shown, its rank, what feeds it).
fn saw(app: &mut App, data: &[ViewData]) {
    let c = data[0].concept.as_ref().expect("the concept screen's data");
    app.concept.seen = Some(lrp_view::ui::concept::Seen {
        key: app.concept.key,
        channel: c.channel,
        rank: c.rank,
        channels: c.relevance.len(),
        top_below: c.top_below(),
    });
}

/// Each channel's relevance at the output of `#layer` for sample `i`, by another path than the concept code: the
/// relevance the layer view keeps at the value that layer writes, summed per channel.
fn channel_sums(shared: &Shared, rule: &str, layer: usize, i: usize, class: Option<usize>) -> Vec<f32> {
    let net = &shared.models[0].1;
    let ex = lrp_rules::Explainer::new(net, &lrp_rules::Spec::parse(rule).unwrap()).unwrap();
    let x = shared.images.slice_axis(ndarray::Axis(0), (i..i + 1).into()).to_owned();
    let target = class.map_or(lrp_rules::Target::Predicted, lrp_rules::Target::Class);
    let node = net.weighted_layers()[layer];
    let e = ex.explain_keeping(x.view(), &target, &[node + 1]).unwrap();
    e.kept[0]
        .1
        .index_axis(ndarray::Axis(0), 0)
        .outer_iter()
        .map(|c| c.sum())
        .collect()
}

#[test]
fn the_concept_screen_shows_a_channel_its_decomposition_and_reference_samples() {
    let shared = shipped();
    let mut app = app_for(&shared);
    // Digit 0 of the test split is a 7. From the layer view at the relu after the second convolution, k opens #1.
    press(&mut app, &shared, &[KeyCode::Char('l')]);
    while app.models[0].concept_of_layer[app.layers.layer] != Some(1) {
        press(&mut app, &shared, &[KeyCode::Char(']')]);
    }
    press(&mut app, &shared, &[KeyCode::Char('k')]);
    assert_eq!((app.screen, app.concept.key.layer), (Screen::Concept, 1));
    let (text, data) = render(&app, &shared, 120, 40, ColorMode::TrueColor);
    let c = data[0].concept.as_ref().unwrap();
    // The channel shown first is the most relevant one, by the independent sums.
    let sums = channel_sums(&shared, "epsilon-gamma-box", 1, 0, Some(7));
    let best = (0..sums.len()).max_by(|&a, &b| sums[a].total_cmp(&sums[b])).unwrap();
    assert_eq!((c.channel, c.rank, c.relevance.len()), (best, 0, 32));
    for (got, want) in c.relevance.iter().zip(&sums) {
        assert!((got - want).abs() <= 1e-5 * want.abs().max(1e-2), "{got} vs {want}");
    }
    let title = format!("concept #1 conv2d · channel {best} · rank 1 of 32");
    assert!(text.contains(&title), "{text}");
    assert!(text.contains("fed by #0 (Enter ↓)"), "{text}");
    assert!(text.contains(&format!("reference samples of channel {best}")), "{text}");
    // Reference samples: the largest normalized relevance for the channel among the 50 samples, each for its
    // label, largest first — checked against the independent sums.
    let norm = |i: usize| {
        let s = channel_sums(&shared, "epsilon-gamma-box", 1, i, Some(shared.labels[i] as usize));
        s[best] / (s.iter().map(|v| v.abs()).sum::<f32>() + 1e-10)
    };
    let all: Vec<f32> = (0..50).map(norm).collect();
    let mut order: Vec<usize> = (0..50).collect();
    order.sort_by(|&a, &b| all[b].total_cmp(&all[a]));
    let shown: Vec<usize> = c.references.iter().map(|r| r.index).collect();
    assert_eq!(shown, order[..8].to_vec(), "reference samples");
    let thumbs = c
        .references
        .iter()
        .filter(|r| text.contains(&format!("#{} ", r.index)))
        .count();
    assert!(thumbs >= 4, "at 120×40 at least four thumbnails are captioned:\n{text}");
    // ↓ shows the second most relevant channel; Enter steps down to what feeds it most; u comes back.
    saw(&mut app, &data);
    press(&mut app, &shared, &[KeyCode::Down]);
    let (_, data) = render(&app, &shared, 120, 40, ColorMode::TrueColor);
    let second = data[0].concept.as_ref().unwrap();
    assert_eq!(second.rank, 1);
    assert!(sums[second.channel] <= sums[best]);
    saw(&mut app, &data);
    let feeder = second.top_below().unwrap();
    press(&mut app, &shared, &[KeyCode::Enter]);
    let (text, data) = render(&app, &shared, 200, 60, ColorMode::TrueColor);
    let below = data[0].concept.as_ref().unwrap();
    assert_eq!((below.layer, below.channel), (0, feeder), "{text}");
    assert!(text.contains("(no layer with channels below)"), "{text}");
    press(&mut app, &shared, &[KeyCode::Char('u')]);
    assert_eq!(app.concept.key.layer, 1);
    // At 80×24 the reference samples are listed by number; Esc goes back to the layer view.
    let (text, _) = render(&app, &shared, 80, 24, ColorMode::NoColor);
    assert!(text.contains("a taller terminal draws them"), "{text}");
    press(&mut app, &shared, &[KeyCode::Esc]);
    assert_eq!(app.screen, Screen::Layers);
}
