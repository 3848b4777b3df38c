//! Draw mode's latency: from one mouse drag event to the updated heatmap, on the shipped CNN with
//! epsilon-gamma-box (the viewer's default) — the stroke applied to the canvas, MNIST's preprocessing, the
//! explanation, and the whole 80×24 screen drawn into a test backend. Beside it, each part alone.
//! `cargo bench -- view/`

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group};
use lrp_core::{Model, Network};
use lrp_rules::{Explainer, Spec};
use lrp_view::app::{App, ClassChoice, ModelEntry};
use lrp_view::cells::ColorMode;
use lrp_view::ui::{Sources, canvas_geometry, draw};
use lrp_view::worker::{InputRef, Key, Shared, compute};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyModifiers, MouseButton, MouseEvent, MouseEventKind};

fn drag(column: u16, row: u16) -> MouseEvent {
    MouseEvent {
        kind: MouseEventKind::Drag(MouseButton::Left),
        column,
        row,
        modifiers: KeyModifiers::NONE,
    }
}

fn view(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let net: Network = Model::load(&root.join("data/models/mnist-cnn.lrpm"))
        .expect("shipped model")
        .network;
    let shared = Shared {
        models: vec![("mnist-cnn".into(), net.clone())],
        images: ndarray::ArrayD::zeros(ndarray::IxDyn(&[1, 1, 28, 28])),
        labels: vec![0],
        photos: None,
        class_names: None,
    };
    let rule = "epsilon-gamma-box";
    let drawing_key = |version| Key {
        model: 0,
        input: InputRef::Drawing(version),
        rule: rule.into(),
        class: ClassChoice::Predicted,
        layers: false,
        concept: None,
    };
    let ex = Explainer::new(&net, &Spec::parse(rule).expect("preset")).expect("resolves");
    let mut app = App::new(vec![ModelEntry::of("mnist-cnn".into(), &net)], 1, vec![rule.into()]);
    app.screen = lrp_view::app::Screen::Draw;
    let geometry = Some(canvas_geometry(80, 24));
    app.handle_mouse(
        MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            ..drag(14, 4)
        },
        geometry,
    );
    let mut term = Terminal::new(TestBackend::new(80, 24)).expect("test backend");
    let mut group = c.benchmark_group("view/draw");
    let mut row = 4u16;
    group.bench_function("stroke-to-heatmap", |b| {
        b.iter(|| {
            // One drag event (alternating rows so every event changes the drawing).
            row = if row >= 14 { 4 } else { row + 1 };
            app.handle_mouse(drag(14, row), geometry);
            let input = app.draw.canvas.network_input();
            let key = drawing_key(app.draw.canvas.version);
            let data = compute(&shared, &key, &ex, Some(&input)).expect("explains");
            let lookup = |k: &Key| (*k == key).then(|| Ok(data.clone()));
            let src = Sources {
                lookup: &lookup,
                labels: &shared.labels,
                images: &shared.images,
                color: ColorMode::TrueColor,
                photos: None,
                class_names: None,
            };
            term.draw(|f| draw(f, &app, &src)).expect("draws");
        })
    });
    let input = app.draw.canvas.network_input();
    let key = drawing_key(app.draw.canvas.version);
    group.bench_function("preprocess", |b| b.iter(|| black_box(app.draw.canvas.network_input())));
    group.bench_function("explain", |b| {
        b.iter(|| black_box(compute(&shared, &key, &ex, Some(&input)).expect("explains")))
    });
    let data = compute(&shared, &key, &ex, Some(&input)).expect("explains");
    group.bench_function("draw-80x24", |b| {
        let lookup = |k: &Key| (*k == key).then(|| Ok(data.clone()));
        let src = Sources {
            lookup: &lookup,
            labels: &shared.labels,
            images: &shared.images,
            color: ColorMode::TrueColor,
            photos: None,
            class_names: None,
        };
        b.iter(|| term.draw(|f| draw(f, &app, &src)).expect("draws").area)
    });
    group.finish();
}

criterion_group!(benches, view);
