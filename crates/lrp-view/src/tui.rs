//! The terminal: setup and restore (also after a panic), the event loop, and the cache of explanations.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ratatui::crossterm::event::{self, DisableMouseCapture, EnableMouseCapture, Event, KeyEventKind};
use ratatui::crossterm::execute;

use crate::app::{App, ModelEntry, RuleCheck};
use crate::cells::{ColorMode, map_dims};
use crate::ui::{Sources, canvas_geometry, draw, needed};
use crate::worker::{InputRef, Key, Request, Response, Shared, ViewData, Worker};

/// Why the viewer stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ViewError {
    /// The terminal failed.
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
    /// Nothing to show.
    #[error("{0}")]
    Empty(String),
}

/// Recent explanations, oldest dropped first.
struct Cache {
    map: HashMap<Key, Result<ViewData, String>>,
    order: VecDeque<Key>,
    pending: HashSet<Key>,
}

const CACHE: usize = 512;

impl Cache {
    fn insert(&mut self, k: Key, v: Result<ViewData, String>) {
        self.pending.remove(&k);
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
        }
        while self.order.len() > CACHE {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}

/// Rules as the viewer checks them: parsed by `lrp_rules`, accepted when an explainer can be built.
struct Checker<'a>(&'a Shared);

impl RuleCheck for Checker<'_> {
    fn parse(&self, spec: &str) -> Result<String, String> {
        lrp_rules::Spec::parse(spec)
            .map(|s| s.to_string())
            .map_err(|e| e.to_string())
    }

    fn accepts(&self, model: usize, spec: &str) -> Result<(), String> {
        let (name, net) = &self.0.models[model];
        let spec = lrp_rules::Spec::parse(spec).map_err(|e| e.to_string())?;
        lrp_rules::Explainer::new(net, &spec)
            .map(|_| ())
            .map_err(|e| format!("{name}: {e}"))
    }
}

/// How the viewer starts.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Open in draw mode.
    pub draw: bool,
    /// The rule to start on (when the first model takes it).
    pub rule: Option<String>,
    /// Reference samples computed by `lrp concepts` (`lrp view --concepts DIR`), used instead of computing them.
    pub references: Vec<crate::concept::Precomputed>,
}

/// Saves the drawing's network input as `.npy` (`[1, 1, 28, 28]` float32, for `lrp explain --input`) and a PNG
/// with its relevance, under the first free `drawing-N` name in `dir`; says what it wrote.
pub fn save_drawing(
    dir: &std::path::Path,
    input: &ndarray::Array2<f32>,
    data: Option<&ViewData>,
    rule: &str,
    model: &str,
) -> Result<String, String> {
    let stem = (1..10_000)
        .map(|n| dir.join(format!("drawing-{n}")))
        .find(|p| {
            // A name is free when nothing is there, not even a dangling symbolic link (which a save would follow).
            let free = |q: std::path::PathBuf| std::fs::symlink_metadata(q).is_err();
            free(p.with_extension("npy")) && free(p.with_extension("png"))
        })
        .ok_or("no free drawing-N name in this folder")?;
    let npy = stem.with_extension("npy");
    let x = input
        .clone()
        .into_shape_with_order((1, 1, input.nrows(), input.ncols()))
        .map_err(|e| e.to_string())?;
    lrp_core::atomic::write_atomically(
        &npy,
        |tmp| {
            let f = std::fs::File::create(tmp).map_err(|e| format!("{}: {e}", npy.display()))?;
            use ndarray_npy::WriteNpyExt;
            x.write_npy(std::io::BufWriter::new(f))
                .map_err(|e| format!("{}: {e}", npy.display()))
        },
        |e| format!("{}: {e}", npy.display()),
    )?;
    // Said with the absolute path: the viewer may have been started anywhere.
    let shown = |p: &std::path::Path| {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .display()
            .to_string()
    };
    let mut said = format!("saved {}", shown(&npy));
    if let Some(v) = data {
        let png = stem.with_extension("png");
        let panel = crate::png_out::Panel {
            image: input.clone(),
            picture: None,
            relevance: v.relevance.clone(),
            caption: vec![
                format!("drawing, pred {}", v.predicted()),
                format!("class {}", v.target),
            ],
        };
        crate::png_out::write_png(&png, &format!("{model} · rule {rule}"), &[panel]).map_err(|e| e.to_string())?;
        said.push_str(&format!(" and {}", shown(&png)));
    }
    Ok(said)
}

/// Tells the concept screen what it shows now (the channel, its rank, what feeds it), for the keys that move
/// relative to it.
fn note_concept(app: &mut App, cache: &Cache, width: u16, height: u16, labels: &[u8], size: (usize, usize)) {
    if let Some(c) = needed(app, width, height, labels, size)
        .first()
        .and_then(|k| cache.map.get(k))
        .and_then(|v| v.as_ref().ok())
        .and_then(|v| v.concept.as_ref())
    {
        app.concept.seen = Some(crate::ui::concept::Seen {
            key: app.concept.key,
            channel: c.channel,
            rank: c.rank,
            channels: c.relevance.len(),
            top_below: c.top_below(),
        });
    }
}

/// The viewer's state at the start: the models, where draw mode is not available, the first rule and screen.
fn start_app(shared: &Shared, count: usize, rules: Vec<String>, options: &Options) -> App {
    let models = shared
        .models
        .iter()
        .map(|(name, net)| ModelEntry::of(name.clone(), net))
        .collect();
    let mut app = App::new(models, count, rules);
    let side = crate::canvas::SIDE;
    if shared.photos.is_some() {
        app.no_draw = Some("draw mode draws 28×28 digits; these are photos".into());
    } else if map_dims(&shared.images.shape()[1..]) != (side, side) {
        let (h, w) = map_dims(&shared.images.shape()[1..]);
        app.no_draw = Some(format!(
            "draw mode draws {side}×{side} digits; these images are {h}×{w}"
        ));
    }
    app.check_rules(&Checker(shared), options.rule.as_deref());
    if options.draw {
        app.open_draw();
    }
    app
}

/// Runs the viewer until the user quits. The terminal is restored on return, on error and on panic.
pub fn run(shared: Shared, rules: Vec<String>, options: Options) -> Result<(), ViewError> {
    if shared.models.is_empty() {
        return Err(ViewError::Empty("no models to show".into()));
    }
    let count = shared.images.shape().first().copied().unwrap_or(0);
    if count == 0 {
        return Err(ViewError::Empty("the dataset has no samples".into()));
    }
    let mut app = start_app(&shared, count, rules, &options);
    let labels = shared.labels.clone();
    let images = shared.images.clone();
    let photos = shared.photos.clone();
    let class_names = shared.class_names.clone();
    let shared = Arc::new(shared);
    let worker = Worker::spawn_with(shared.clone(), options.references.clone());
    let color = ColorMode::from_env();
    let mut cache = Cache {
        map: HashMap::new(),
        order: VecDeque::new(),
        pending: HashSet::new(),
    };
    let mut predictions: HashMap<usize, Result<Vec<usize>, String>> = HashMap::new();
    let mut asked_predictions: HashSet<usize> = HashSet::new();

    // ratatui::init installs a panic hook that restores the terminal before the panic message is printed; mouse
    // capture is switched off before it (and on every other way out).
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = execute!(std::io::stdout(), DisableMouseCapture);
        hook(info);
    }));
    let mut terminal = ratatui::init();
    let result = (|| -> Result<(), ViewError> {
        execute!(std::io::stdout(), EnableMouseCapture)?;
        let checker = Checker(&shared);
        let size_of = map_dims(&images.shape()[1..]);
        loop {
            let size = terminal.size()?;
            let drawing = app.on_drawing().then(|| Arc::new(app.draw.canvas.network_input()));
            for key in needed(&app, size.width, size.height, &labels, size_of) {
                if !cache.map.contains_key(&key) && cache.pending.insert(key.clone()) {
                    let pixels = matches!(key.input, InputRef::Drawing(_))
                        .then(|| drawing.clone())
                        .flatten();
                    worker.request(Request::Explain(key, pixels));
                }
            }
            if app.wants_misclassified {
                match predictions.get(&app.model) {
                    Some(Ok(p)) => app.next_misclassified(p, &labels),
                    Some(Err(e)) => {
                        app.wants_misclassified = false;
                        app.message = Some(e.clone());
                    }
                    None => {
                        app.message = Some("finding misclassified samples…".into());
                        if asked_predictions.insert(app.model) {
                            worker.request(Request::Predictions(app.model));
                        }
                    }
                }
            }
            if app.draw.wants_save {
                app.draw.wants_save = false;
                let key = needed(&app, size.width, size.height, &labels, size_of)
                    .into_iter()
                    .next();
                let data = key.and_then(|k| cache.map.get(&k).cloned()).and_then(Result::ok);
                let input = app.draw.canvas.network_input();
                app.message = Some(
                    match save_drawing(
                        std::path::Path::new("."),
                        &input,
                        data.as_ref(),
                        &app.rules[app.rule],
                        &app.models[app.model].name,
                    ) {
                        Ok(said) => format!("{said} (lrp explain --input takes the .npy)"),
                        Err(e) => format!("cannot save the drawing: {e}"),
                    },
                );
            }
            note_concept(&mut app, &cache, size.width, size.height, &labels, size_of);
            let sources = Sources {
                lookup: &|k| cache.map.get(k).cloned(),
                labels: &labels,
                images: &images,
                color,
                photos: photos.as_ref(),
                class_names: class_names.as_deref(),
            };
            terminal.draw(|f| draw(f, &app, &sources))?;
            if event::poll(Duration::from_millis(40))? {
                // Everything already queued (a mouse drag sends many events) before the next draw.
                loop {
                    match event::read()? {
                        Event::Key(k) if k.kind != KeyEventKind::Release => app.handle_key(k, &checker),
                        Event::Mouse(m) => {
                            let size = terminal.size()?;
                            app.handle_mouse(m, Some(canvas_geometry(size.width, size.height)));
                        }
                        _ => {} // resize and others: the next draw adapts
                    }
                    if app.quit || !event::poll(Duration::ZERO)? {
                        break;
                    }
                }
            }
            while let Some(resp) = worker.try_recv() {
                match resp {
                    Response::Explained(k, v) => {
                        if let InputRef::Drawing(version) = k.input {
                            // Older drawings are dropped by the worker: stop waiting for them.
                            cache
                                .pending
                                .retain(|p| !matches!(p.input, InputRef::Drawing(v) if v < version));
                        }
                        cache.insert(k, *v)
                    }
                    Response::Predictions(m, p) => {
                        predictions.insert(m, p);
                    }
                }
            }
            if app.quit {
                return Ok(());
            }
        }
    })();
    let _ = execute!(std::io::stdout(), DisableMouseCapture);
    ratatui::restore();
    result
}
