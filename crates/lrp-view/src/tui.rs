//! The terminal: setup and restore (also after a panic), the event loop, and the cache of explanations.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event, KeyEventKind};

use crate::app::{App, ModelEntry};
use crate::cells::ColorMode;
use crate::ui::{draw, needed};
use crate::worker::{Key, Request, Response, Shared, ViewData, Worker};

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

fn check_spec(s: &str) -> Result<String, String> {
    lrp_rules::Spec::parse(s)
        .map(|s| s.to_string())
        .map_err(|e| e.to_string())
}

/// Runs the viewer until the user quits. The terminal is restored on return, on error and on panic.
pub fn run(shared: Shared, rules: Vec<String>) -> Result<(), ViewError> {
    if shared.models.is_empty() {
        return Err(ViewError::Empty("no models to show".into()));
    }
    if shared.labels.is_empty() {
        return Err(ViewError::Empty("the dataset has no samples".into()));
    }
    let models = shared
        .models
        .iter()
        .map(|(name, net)| ModelEntry {
            name: name.clone(),
            classes: net.num_classes(),
        })
        .collect();
    let mut app = App::new(models, shared.labels.len(), rules);
    let labels = shared.labels.clone();
    let shared = Arc::new(shared);
    let worker = Worker::spawn(shared.clone());
    let color = ColorMode::from_env();
    let mut cache = Cache {
        map: HashMap::new(),
        order: VecDeque::new(),
        pending: HashSet::new(),
    };
    let mut predictions: HashMap<usize, Result<Vec<usize>, String>> = HashMap::new();
    let mut asked_predictions: HashSet<usize> = HashSet::new();

    // ratatui::init installs a panic hook that restores the terminal before the panic message is printed.
    let mut terminal = ratatui::init();
    let result = (|| -> Result<(), ViewError> {
        loop {
            let width = terminal.size()?.width;
            for key in needed(&app, width) {
                if !cache.map.contains_key(&key) && cache.pending.insert(key.clone()) {
                    worker.request(Request::Explain(key));
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
            terminal.draw(|f| draw(f, &app, &|k| cache.map.get(k).cloned(), &labels, color))?;
            if event::poll(Duration::from_millis(40))? {
                match event::read()? {
                    Event::Key(k) if k.kind != KeyEventKind::Release => app.handle_key(k, check_spec),
                    _ => {} // resize and others: the next draw adapts
                }
            }
            while let Some(resp) = worker.try_recv() {
                match resp {
                    Response::Explained(k, v) => cache.insert(k, v),
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
    ratatui::restore();
    result
}
