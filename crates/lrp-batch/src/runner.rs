//! The runner: chunks explained in parallel on a rayon pool, each written straight into its rows of the result
//! files (kept in `chunks/` until the run completes), then a marker; at the end the files are renamed into place.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use lrp_core::{CoreError, Network};
use lrp_rules::{ConceptLayer, Explainer, RulesError, Spec, Target};
use rayon::prelude::*;

use crate::error::{BatchError, Result};
use crate::manifest::{ConceptFiles, FORMAT, Manifest, RuleFile, RunId, Timings, rule_file_name};
use crate::source::Source;

/// Default samples per chunk.
pub const DEFAULT_CHUNK: usize = 256;

/// Which class each sample is explained for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Targets {
    /// The prediction.
    Predicted,
    /// One class for all.
    Class(usize),
    /// One class per sample of the whole job (indexed like the source).
    PerSample(Vec<usize>),
}

/// What happened.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// This invocation explained `samples` samples (and skipped chunks an earlier one had finished).
    Completed(Manifest),
    /// The folder already held this complete run; nothing was changed.
    AlreadyComplete(Manifest),
}

/// A job: a network, its rules and targets, and the slice of the source it covers.
pub struct Runner<'a> {
    explainers: Vec<Explainer<'a>>,
    id: RunId,
    targets: Targets,
    classes: usize,
    /// A concept run's layer (`RunId::concepts`).
    concepts: Option<ConceptLayer>,
    /// A concept run's reference samples per channel.
    top: usize,
}

/// The file of a concept run's activations.
pub const ACTIVATION_FILE: &str = "activation.npy";

/// The `i`-th of `n` contiguous parts of `0..total`.
pub fn shard_range(total: usize, i: usize, n: usize) -> Result<std::ops::Range<usize>> {
    if n == 0 || i >= n {
        return Err(BatchError::Config(format!(
            "shard {i}/{n}: the index must be in 0..{n} and N at least 1"
        )));
    }
    Ok(i * total / n..(i + 1) * total / n)
}

fn chunks_dir(out: &Path) -> PathBuf {
    out.join("chunks")
}

/// A result file being filled: an `.npy` of the final shape in `chunks/`, each chunk writing its rows.
struct Partial {
    name: String,
    file: std::sync::Mutex<std::fs::File>,
    /// Where the data starts (after the header).
    data_offset: u64,
    /// Bytes per row (per sample).
    row_bytes: u64,
}

impl Partial {
    /// The bytes of `count` rows from row `row`.
    fn read_rows(&self, row: usize, count: usize) -> Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let mut buf = vec![0u8; count * self.row_bytes as usize];
        f.read_exact_at(&mut buf, self.data_offset + row as u64 * self.row_bytes)
            .map_err(|e| BatchError::io(&self.name, e))?;
        Ok(buf)
    }

    /// Writes `bytes` (whole rows, little-endian) at row `row` of the data.
    fn write_rows(&self, row: usize, bytes: &[u8]) -> Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let io = |e| BatchError::io(&self.name, e);
        f.seek(SeekFrom::Start(self.data_offset + row as u64 * self.row_bytes))
            .map_err(io)?;
        f.write_all(bytes).map_err(io)
    }
}

/// Calls `f` with the little-endian bytes of `a`'s values in standard order: on a little-endian machine the array's
/// own memory (no copy; a chunk's relevance was copied value by value before, 4% of an MLP run).
fn with_f32_bytes<R>(a: &ndarray::ArrayD<f32>, f: impl FnOnce(&[u8]) -> R) -> R {
    let a = a.as_standard_layout();
    let values = a.as_slice().expect("standard layout");
    if cfg!(target_endian = "little") {
        f(bytemuck::cast_slice(values))
    } else {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        f(&bytes)
    }
}

fn chunk_marker(out: &Path, c: usize) -> PathBuf {
    chunks_dir(out).join(format!("{c:06}.done"))
}

impl<'a> Runner<'a> {
    /// Resolves every spec against the network (errors before any work) and checks the settings.
    pub fn new(net: &'a Network, specs: &[Spec], targets: Targets, id: RunId) -> Result<Self> {
        if specs.is_empty() {
            return Err(BatchError::Config("give at least one --rule".into()));
        }
        if id.chunk_size == 0 {
            return Err(BatchError::Config("chunk size must be at least 1".into()));
        }
        if id.sample_shape != net.input_shape() {
            return Err(BatchError::Config(format!(
                "inputs are {:?} per sample, the model takes {:?}",
                id.sample_shape,
                net.input_shape()
            )));
        }
        if let Targets::PerSample(v) = &targets
            && v.len() < id.start + id.count
        {
            return Err(BatchError::Config(format!(
                "{} targets for {} inputs",
                v.len(),
                id.start + id.count
            )));
        }
        let explainers = specs
            .iter()
            .map(|s| Explainer::new(net, s).map(Explainer::without_layer_sums))
            .collect::<Result<Vec<_>, _>>()?;
        let concepts = id.concepts.map(|n| ConceptLayer::of(net, n)).transpose()?;
        if concepts.is_some()
            && let Some(ex) = explainers.iter().find(|e| !e.plan().is_lrp())
        {
            return Err(BatchError::Config(format!(
                "concepts need an LRP rule; {} is a gradient method",
                ex.plan().spec()
            )));
        }
        Ok(Runner {
            explainers,
            id,
            targets,
            classes: net.num_classes(),
            concepts,
            top: 8,
        })
    }

    /// A concept run that ranks `k` reference samples per channel (8 by default); recorded in the manifest, not
    /// part of the run's identity (the rankings are computed from the files).
    pub fn with_top(mut self, k: usize) -> Self {
        self.top = k;
        self
    }

    fn manifest(&self, status: &str, timings: Option<Timings>) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            status: status.into(),
            run: self.id.clone(),
            classes: self.classes,
            rules: self
                .id
                .rules
                .iter()
                .enumerate()
                .map(|(k, spec)| RuleFile {
                    spec: spec.clone(),
                    file: rule_file_name(k, spec),
                })
                .collect(),
            logits: "logits.npy".into(),
            targets: "targets.npy".into(),
            timings,
            digests: Default::default(),
            concepts: self.concepts.map(|c| ConceptFiles {
                layer: c.index,
                channels: c.channels,
                activation: ACTIVATION_FILE.into(),
                top: self.top,
            }),
        }
    }

    fn chunk_count(&self) -> usize {
        self.id.count.div_ceil(self.id.chunk_size)
    }

    /// Absolute sample indices of chunk `c`.
    fn chunk_range(&self, c: usize) -> std::ops::Range<usize> {
        let lo = self.id.start + c * self.id.chunk_size;
        lo..(lo + self.id.chunk_size).min(self.id.start + self.id.count)
    }

    /// Decides what to do with `out`: start fresh, resume, or refuse.
    fn prepare(&self, out: &Path, resume: bool) -> Result<Option<Manifest>> {
        let refuse = |reason: String| BatchError::OutputDir {
            dir: out.to_path_buf(),
            reason,
        };
        if out.join("manifest.json").exists() {
            let existing = Manifest::load(out)?;
            if !existing.run.same_run(&self.id) {
                let diff = differences(&existing.run, &self.id);
                return Err(refuse(format!(
                    "holds a different run (it differs in {diff}); choose another --out"
                )));
            }
            if !resume {
                return Err(refuse(format!(
                    "already holds this run ({}); pass --resume to continue or keep it",
                    existing.status
                )));
            }
            return Ok(existing.is_complete_in(out).then_some(existing));
        }
        crate::files::refuse_foreign_folder(out, "manifest.json")?;
        // The run's identity lands first, so a folder killed at any later point can be resumed.
        self.manifest("running", None).save(out)?;
        fault_point("after-manifest");
        Ok(None)
    }

    /// Runs (or resumes) the job into `out` on `threads` worker threads. `progress` is told how many samples are
    /// done after every chunk (including chunks finished by an earlier, interrupted invocation).
    pub fn run(
        &self,
        source: &dyn Source,
        out: &Path,
        threads: usize,
        resume: bool,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Outcome> {
        if source.sample_shape() != self.id.sample_shape || source.len() < self.id.start + self.id.count {
            return Err(BatchError::Config(format!(
                "the source has {} samples of {:?}; the run needs {} of {:?}",
                source.len(),
                source.sample_shape(),
                self.id.start + self.id.count,
                self.id.sample_shape
            )));
        }
        // One writer per folder, from before anything is written to the end (another tool's folder is refused
        // before even the lock file is made in it).
        crate::files::refuse_foreign_folder(out, "manifest.json")?;
        let _lock = crate::files::lock_folder(out)?;
        fault_point("after-lock");
        if let Some(done) = self.prepare(out, resume)? {
            return Ok(Outcome::AlreadyComplete(done));
        }
        crate::files::remove_stale_temporaries(out)?;
        let chunks = chunks_dir(out);
        if std::fs::symlink_metadata(&chunks).is_ok_and(|m| !m.is_dir()) {
            return Err(BatchError::OutputDir {
                dir: chunks,
                reason: "is not a folder (a link or a file); lrp's folders hold only what it wrote".into(),
            });
        }
        std::fs::create_dir_all(&chunks).map_err(|e| BatchError::io(out, e))?;
        let files = self.partials(out)?;
        let started = Instant::now();
        // A chunk is done when its marker holds the digest of its rows as they are in the files now (a marker
        // planted or left from other rows is not trusted: the chunk is done again).
        let (landed, pending): (Vec<usize>, Vec<usize>) =
            (0..self.chunk_count()).partition(|&c| self.landed(out, c, &files));
        let already: usize = landed.iter().map(|&c| self.chunk_range(c).len()).sum();
        let done = AtomicUsize::new(already);
        progress(already);
        let rule_nanos: Vec<AtomicU64> = self.explainers.iter().map(|_| AtomicU64::new(0)).collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build()
            .map_err(|e| BatchError::Config(format!("cannot start {threads} threads: {e}")))?;
        // Chunks are claimed in order (a streamed source delivers its samples front to back), each worker taking
        // the next one when it is done; after a failure no new chunk starts, and of the chunks that failed the
        // first in order is reported.
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let failed: Mutex<Option<(usize, BatchError)>> = Mutex::new(None);
        pool.broadcast(|_| {
            while !stop.load(Ordering::Relaxed) {
                let Some(&c) = pending.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                let range = self.chunk_range(c);
                match _lock
                    .check()
                    .and_then(|()| self.process(source, out, c, &rule_nanos, &files))
                {
                    Ok(()) => progress(done.fetch_add(range.len(), Ordering::Relaxed) + range.len()),
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        let mut first = failed.lock().unwrap_or_else(|p| p.into_inner());
                        if first.as_ref().is_none_or(|(k, _)| c < *k) {
                            let e = BatchError::Chunk {
                                start: range.start,
                                end: range.end,
                                source: Box::new(e),
                            };
                            *first = Some((c, e));
                        }
                    }
                }
            }
        });
        if let Some((_, e)) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        // A run over part of a source still read as it runs ends only once the whole of it has been checked.
        source.check_whole()?;
        _lock.check()?;
        drop(files);
        self.finish(out)?;
        let mut digests = std::collections::BTreeMap::new();
        for (name, _, _) in self.result_files() {
            digests.insert(name.clone(), crate::files::digest_file(&out.join(&name))?);
        }
        let seconds = started.elapsed().as_secs_f64();
        let samples = self.id.count - already;
        let timings = Timings {
            seconds,
            samples,
            explanations_per_second: (samples * self.explainers.len()) as f64 / seconds.max(1e-9),
            threads: threads.max(1),
            rule_seconds: rule_nanos
                .iter()
                .map(|n| n.load(Ordering::Relaxed) as f64 * 1e-9)
                .collect(),
        };
        let mut manifest = self.manifest("complete", Some(timings));
        manifest.digests = digests;
        manifest.save(out)?;
        let _ = std::fs::remove_dir_all(chunks_dir(out));
        Ok(Outcome::Completed(manifest))
    }

    /// Explains one chunk under every rule and writes its rows into the result files, then its marker (the
    /// marker says the rows are there; a chunk without one is done again on resume).
    fn process(
        &self,
        source: &dyn Source,
        out: &Path,
        c: usize,
        rule_nanos: &[AtomicU64],
        files: &[Partial],
    ) -> Result<()> {
        let range = self.chunk_range(c);
        let x = source.chunk(range.clone())?;
        let target = match &self.targets {
            Targets::Predicted => Target::Predicted,
            Targets::Class(k) => Target::Class(*k),
            Targets::PerSample(v) => Target::PerSample(v[range.clone()].to_vec()),
        };
        let mut hash = xxhash_rust::xxh3::Xxh3::new();
        let mut activation = None;
        for (k, ex) in self.explainers.iter().enumerate() {
            let t0 = Instant::now();
            // The network looks at every input for NaN and ∞ (the one scan); a bad one is named by its index in
            // the whole input.
            let named = |e: RulesError| match e.shifted(range.start) {
                RulesError::Core(CoreError::NonFiniteInput { sample, index, value }) => BatchError::NonFinite {
                    sample,
                    element: index,
                    value,
                },
                e => e.into(),
            };
            let (e, sums) = match &self.concepts {
                None => (ex.explain(x.view(), &target).map_err(named)?, None),
                Some(layer) => {
                    let mut c = ex
                        .explain_concepts(x.view(), &target, &[], &[layer.index])
                        .map_err(named)?;
                    activation = c.activation.pop();
                    let r = c.relevance.pop().expect("one layer recorded").into_dyn();
                    (c.explanation, Some(r))
                }
            };
            rule_nanos[k].fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
            let row = range.start - self.id.start;
            // The marker's digest is of the bytes as written, in file order (logits, targets, one file per rule,
            // a concept run's activations).
            if k == 0 {
                with_f32_bytes(&e.logits, |b| {
                    hash.update(b);
                    files[0].write_rows(row, b)
                })?;
                let t: Vec<u8> = e.targets.iter().flat_map(|&t| (t as i64).to_le_bytes()).collect();
                hash.update(&t);
                files[1].write_rows(row, &t)?;
            }
            with_f32_bytes(sums.as_ref().unwrap_or(&e.relevance), |b| {
                hash.update(b);
                files[2 + k].write_rows(row, b)
            })?;
        }
        if let Some(a) = activation {
            with_f32_bytes(&a.into_dyn(), |b| {
                hash.update(b);
                files[2 + self.explainers.len()].write_rows(row_of(&range, &self.id), b)
            })?;
        }
        fault_point("mid-chunk");
        // Into the chunks folder as it is: never created again at a path the folder was moved away from.
        let marker = chunk_marker(out, c);
        if !marker.parent().is_some_and(Path::is_dir) {
            return Err(BatchError::OutputDir {
                dir: out.to_path_buf(),
                reason: "was moved, renamed or deleted while lrp was writing it; the run stops (run it again where \
                         the folder is now, with --resume)"
                    .into(),
            });
        }
        crate::files::write_marker(&marker, crate::files::digest_hex(hash.digest128()).as_bytes())?;
        Ok(())
    }

    /// The digest of chunk `c`'s rows in every result file, as they are in the files.
    fn chunk_digest(&self, c: usize, files: &[Partial]) -> Result<String> {
        let range = self.chunk_range(c);
        let row = range.start - self.id.start;
        let mut hash = xxhash_rust::xxh3::Xxh3::new();
        for f in files {
            hash.update(&f.read_rows(row, range.len())?);
        }
        Ok(crate::files::digest_hex(hash.digest128()))
    }

    /// Whether chunk `c` landed: its marker is a regular file holding the digest of its rows.
    fn landed(&self, out: &Path, c: usize, files: &[Partial]) -> bool {
        let marker = chunk_marker(out, c);
        if !std::fs::symlink_metadata(&marker).is_ok_and(|m| m.is_file() && m.len() <= 64) {
            return false;
        }
        let Ok(said) = std::fs::read_to_string(&marker) else {
            return false;
        };
        self.chunk_digest(c, files).is_ok_and(|d| d == said)
    }

    /// The result files, in order logits, targets, one per rule, a concept run's activations: `(name, shape,
    /// element size)`.
    fn result_files(&self) -> Vec<(String, Vec<usize>, usize)> {
        let n = self.id.count;
        let shape = self.manifest("running", None).rule_shape();
        let mut v = vec![
            ("logits.npy".to_string(), vec![n, self.classes], 4),
            ("targets.npy".to_string(), vec![n], 8),
        ];
        for (k, spec) in self.id.rules.iter().enumerate() {
            v.push((rule_file_name(k, spec), shape.clone(), 4));
        }
        if self.concepts.is_some() {
            v.push((ACTIVATION_FILE.to_string(), shape, 4));
        }
        v
    }

    /// Opens the result files being filled in `chunks/`, creating them (zero-filled, sparse) where they are
    /// missing or not of the run's shape; then every chunk marker is removed, since the rows they vouch for are
    /// gone.
    fn partials(&self, out: &Path) -> Result<Vec<Partial>> {
        let specs = self.result_files();
        let valid = |path: &Path, shape: &[usize], size: usize| -> bool {
            // A regular file (not a link planted in the folder) with the run's header and length.
            let regular = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file());
            let descr = if size == 8 { "<i8" } else { "<f4" };
            regular && crate::npy::inspect(path).is_ok_and(|i| i.shape == shape && i.descr == descr && !i.fortran)
        };
        let dir = chunks_dir(out);
        if !specs
            .iter()
            .all(|(name, shape, size)| valid(&dir.join(name), shape, *size))
        {
            for entry in std::fs::read_dir(&dir).map_err(|e| BatchError::io(&dir, e))? {
                let path = entry.map_err(|e| BatchError::io(&dir, e))?.path();
                if path.extension().is_some_and(|x| x == "done")
                    && std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file())
                {
                    std::fs::remove_file(&path).map_err(|e| BatchError::io(&path, e))?;
                }
            }
            for (name, shape, size) in &specs {
                let path = dir.join(name);
                crate::files::refuse_special(&path)?;
                let f = std::fs::File::create(&path).map_err(|e| BatchError::io(&path, e))?;
                let written = if *size == 8 {
                    ndarray_npy::write_zeroed_npy::<i64, _>(&f, ndarray::IxDyn(shape))
                } else {
                    ndarray_npy::write_zeroed_npy::<f32, _>(&f, ndarray::IxDyn(shape))
                };
                written.map_err(|e| BatchError::Npy {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            }
        }
        specs
            .into_iter()
            .map(|(name, shape, size)| {
                let path = dir.join(&name);
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(|e| BatchError::io(&path, e))?;
                let len = file.metadata().map_err(|e| BatchError::io(&path, e))?.len();
                let per_row: usize = shape[1..].iter().product::<usize>() * size;
                let data = (shape[0] * per_row) as u64;
                Ok(Partial {
                    name: path.display().to_string(),
                    file: std::sync::Mutex::new(file),
                    data_offset: len - data,
                    row_bytes: per_row as u64,
                })
            })
            .collect()
    }

    /// Every chunk is in: the result files move into place (logits first).
    fn finish(&self, out: &Path) -> Result<()> {
        fault_point("in-assembly");
        for (i, (name, _, _)) in self.result_files().iter().enumerate() {
            let from = chunks_dir(out).join(name);
            let to = out.join(name);
            std::fs::rename(&from, &to).map_err(|e| BatchError::io(&to, e))?;
            if i == 0 {
                fault_point("mid-assembly");
            }
        }
        Ok(())
    }
}

/// Crash testing, in builds with the `fault-injection` feature only: when the environment variable `LRP_FAULT_AT`
/// names this point, the process aborts here, as a `kill -9` would stop it. Points: `after-lock`,
/// `after-manifest`, `mid-chunk` (a chunk's rows written, its marker not), `in-assembly` (every chunk in, no result
/// file moved into place), `mid-assembly` (one result file moved). Other builds (what users run) ignore the
/// variable: a job script that inherits it cannot abort their runs.
#[cfg(feature = "fault-injection")]
pub(crate) fn fault_point(point: &str) {
    if std::env::var_os("LRP_FAULT_AT").is_some_and(|v| v == point) {
        std::process::abort();
    }
}

/// Without the `fault-injection` feature: nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn fault_point(_: &str) {}

/// The first row of `range` in the files of the run `id`.
fn row_of(range: &std::ops::Range<usize>, id: &RunId) -> usize {
    range.start - id.start
}

/// Names the fields in which two runs differ.
pub(crate) fn differences(a: &RunId, b: &RunId) -> String {
    let mut d = Vec::new();
    if a.model_digest != b.model_digest {
        d.push("model (its content)");
    }
    if a.inputs_digest != b.inputs_digest || a.sample_shape != b.sample_shape {
        d.push("inputs (their content)");
    }
    if a.total != b.total || a.start != b.start || a.count != b.count {
        d.push("sample range (--limit)");
    }
    if a.shard != b.shard {
        d.push("shard");
    }
    if a.target != b.target {
        d.push("targets");
    }
    if a.rules != b.rules {
        d.push("rules");
    }
    if a.chunk_size != b.chunk_size {
        d.push("chunk size");
    }
    if a.concepts != b.concepts {
        d.push("concept layer");
    }
    d.join(", ")
}

/// Runs `f` over consecutive chunks of `0..count` on `threads` workers and returns the results in chunk order.
/// For jobs that aggregate in memory (e.g. `lrp eval`) rather than write files.
pub fn map_chunks<T, E, F>(count: usize, chunk: usize, threads: usize, f: F) -> std::result::Result<Vec<T>, E>
where
    T: Send,
    E: Send + From<BatchError>,
    F: Fn(std::ops::Range<usize>) -> std::result::Result<T, E> + Sync,
{
    let chunk = chunk.max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| E::from(BatchError::Config(format!("cannot start {threads} threads: {e}"))))?;
    let ranges: Vec<_> = (0..count)
        .step_by(chunk)
        .map(|lo| lo..(lo + chunk).min(count))
        .collect();
    pool.install(|| ranges.into_par_iter().map(&f).collect())
}
