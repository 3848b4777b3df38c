//! `lrp batch` and `lrp batch merge`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use lrp_batch::{ByteSource, DEFAULT_CHUNK, NpySource, Outcome, RunId, Runner, Source, Targets, digest_file};
use lrp_core::{Split, StreamedDataset};
use lrp_rules::Spec;

use crate::inputs::{SplitArg, check_labels, load_model, load_targets, open_split};
use crate::photos::{PhotoArgs, PhotoSource};
use crate::text::count;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BatchArgs {
    #[command(subcommand)]
    command: Option<BatchCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum BatchCommand {
    /// Join the folders of `--shard I/N` runs into the folder one run would have written.
    Merge {
        /// The shard folders (any order).
        #[arg(required = true, num_args = 1..)]
        dirs: Vec<PathBuf>,
        /// The merged folder.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("inputs").required(true).args(["input", "data", "images"])))]
pub(crate) struct RunArgs {
    /// Model file (native, or .onnx).
    #[arg(long, required = true)]
    pub(crate) model: Option<PathBuf>,
    /// Inputs as a float32 .npy `[N, …input shape]` (memory-mapped).
    #[arg(long, conflicts_with_all = ["data", "images"])]
    pub(crate) input: Option<PathBuf>,
    /// Dataset folder (IDX files).
    #[arg(long, conflicts_with = "images")]
    pub(crate) data: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) photos: PhotoArgs,
    /// Which split of --data.
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    pub(crate) split: SplitArg,
    /// Rule spec; repeat for several rules (one output file each).
    #[arg(long = "rule", required = true)]
    pub(crate) rules: Vec<String>,
    /// Output folder.
    #[arg(long, required = true)]
    pub(crate) out: Option<PathBuf>,
    /// Worker threads (default: all cores). Results are identical for any number.
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Only the first N samples.
    #[arg(long)]
    pub(crate) limit: Option<usize>,
    /// Class to explain: pred, label (with --data) or a class number.
    #[arg(long, default_value = "pred", conflicts_with = "targets")]
    pub(crate) target: String,
    /// One class per sample from an int64 .npy `[N]`.
    #[arg(long)]
    pub(crate) targets: Option<PathBuf>,
    /// Continue an interrupted run in --out (or confirm a finished one; nothing is redone).
    #[arg(long)]
    pub(crate) resume: bool,
    /// Do only the I-th of N contiguous parts (I from 0 to N−1), e.g. --shard 3/8; join with `lrp batch merge`.
    #[arg(long)]
    pub(crate) shard: Option<String>,
    /// Samples per chunk (the unit of parallel work and of resuming).
    #[arg(long, default_value_t = DEFAULT_CHUNK)]
    pub(crate) chunk: usize,
}

pub fn run(a: BatchArgs) -> Result<()> {
    match a.command {
        Some(BatchCommand::Merge { dirs, out }) => {
            let m = lrp_batch::merge(&dirs, &out)?;
            if let Some(c) = &m.concepts {
                crate::commands::concepts::write_rankings(&out, &m, c.top)?;
            }
            println!(
                "merged {}: {} × {} → {}",
                count(dirs.len(), "shard"),
                count(m.run.count, "sample"),
                count(m.rules.len(), "rule"),
                out.display()
            );
            Ok(())
        }
        None => run_job(a.run, None).map(|_| ()),
    }
}

fn parse_shard(s: &str) -> Result<[usize; 2]> {
    let (i, n) = s
        .split_once('/')
        .with_context(|| format!("--shard '{s}' is not I/N (e.g. 0/4)"))?;
    let i: usize = i
        .trim()
        .parse()
        .with_context(|| format!("--shard '{s}': '{i}' is not a number"))?;
    let n: usize = n
        .trim()
        .parse()
        .with_context(|| format!("--shard '{s}': '{n}' is not a number"))?;
    if n == 0 || i >= n {
        bail!("--shard '{s}': I must be between 0 and N−1");
    }
    Ok([i, n])
}

/// Paths by their canonical form: `./m`, `m` and `/abs/m` are one run for --resume.
fn canonical(p: &Path) -> String {
    std::fs::canonicalize(p).map_or_else(|_| p.display().to_string(), |c| c.display().to_string())
}

/// The inputs of a run, opened.
enum Opened {
    /// With the values' range, for the note on their scale once the model is known.
    Npy(NpySource, PathBuf, Option<(f64, f64)>),
    /// The pixels being read on a thread of their own.
    Idx(StreamedDataset, PathBuf, Split),
    /// Photos, prepared a chunk at a time.
    Photos(PhotoSource),
}

/// Opens `--input` or `--data` and works out the digest that identifies them. An `.npy` is digested in the same
/// pass that finds its value range (a note is printed for values outside [0, 1]).
fn open_inputs(a: &RunArgs, shape: &[usize]) -> Result<(Opened, String)> {
    if a.photos.any() {
        let (src, digest) = PhotoSource::open(&a.photos, shape)?;
        return Ok((Opened::Photos(src), digest));
    }
    a.photos.check_without_photos()?;
    match (&a.input, &a.data) {
        (Some(path), _) => {
            let src = NpySource::open(path)?;
            let (digest, range) = src.digest_and_range();
            Ok((Opened::Npy(src, path.clone(), range), digest))
        }
        (None, Some(dir)) => {
            let split: Split = a.split.into();
            let d = open_split(dir, split)?;
            let digest = if crate::shipped::is_mnist(dir) {
                crate::shipped::mnist_digest()
            } else {
                // The files the split was opened from (not looked up again).
                let (images, labels) = d.files();
                format!("{}{}", digest_file(images)?, digest_file(labels)?)
            };
            Ok((Opened::Idx(d, dir.clone(), split), digest))
        }
        (None, None) => bail!("give --input X.npy, --data DIR or --image PHOTO|DIR"),
    }
}

/// The classes a run explains (`--targets`, `--target`) and how the manifest records them.
fn targets_of(a: &RunArgs, net: &lrp_core::Network, labels: Option<&[u8]>) -> Result<(Targets, String)> {
    let (targets, desc) = match (&a.targets, a.target.as_str()) {
        (Some(path), _) => (
            Targets::PerSample(load_targets(path)?),
            format!("file {}", digest_file(path)?),
        ),
        (None, "pred") => (Targets::Predicted, "pred".to_string()),
        (None, "label") => match labels {
            Some(l) => (
                Targets::PerSample(l.iter().map(|&v| v as usize).collect()),
                "label".to_string(),
            ),
            None => bail!("--target label needs --data: an .npy input has no labels (use --targets T.npy)"),
        },
        (None, k) => {
            let k: usize = k
                .parse()
                .with_context(|| format!("--target '{k}' is not pred, label or a class number"))?;
            (Targets::Class(k), format!("class {k}"))
        }
    };
    if let Targets::Class(k) = targets
        && k >= net.num_classes()
    {
        bail!(
            "--target {k} is out of range: the model has {} classes",
            net.num_classes()
        );
    }
    Ok((targets, desc))
}

/// Runs (or resumes) a batch job, or with `concepts` (a layer `#N` and how many reference samples per channel) a
/// concept run; returns the folder's manifest.
pub(crate) fn run_job(a: RunArgs, concepts: Option<(usize, usize)>) -> Result<lrp_batch::Manifest> {
    let model_path = a.model.clone().expect("required by clap");
    let out = a.out.clone().expect("required by clap");
    let specs = a.rules.iter().map(|r| Spec::parse(r)).collect::<Result<Vec<_>, _>>()?;
    let threads = super::worker_threads(a.threads)?;
    // The inputs are opened, checked and digested beside the model's loading, and an IDX split's pixels start
    // being read on a thread of their own: serial, this start-up was 18 of the 78 ms of an MLP run (timed in-process).
    // Photos are prepared for the model's input shape, so they wait for the model.
    let (model, inputs) = if a.photos.any() {
        let model = load_model(&model_path)?;
        let inputs = open_inputs(&a, model.network.input_shape());
        (Ok(model), inputs)
    } else {
        std::thread::scope(|s| {
            let inputs = s.spawn(|| open_inputs(&a, &[]));
            let model = load_model(&model_path);
            (model, inputs.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        })
    };
    let model = model?;
    let net = &model.network;
    let shard = a.shard.as_deref().map(parse_shard).transpose()?;
    let (opened, inputs_digest) = inputs?;
    let (source, inputs, labels): (Box<dyn Source>, String, Option<Vec<u8>>) = match opened {
        Opened::Npy(src, path, range) => {
            crate::inputs::note_npy_values(&path, &src, range, crate::inputs::is_imported(&model_path, &model));
            (Box::new(src), canonical(&path), None)
        }
        Opened::Photos(src) => {
            let desc = match src.files() {
                [one] => canonical(one),
                files => format!("{} photos from {}", files.len(), canonical(&files[0])),
            };
            (Box::new(src), desc, None)
        }
        Opened::Idx(d, dir, split) => {
            check_labels(&dir, d.num_classes(), net)?;
            let desc = format!(
                "{} ({} split)",
                canonical(&dir),
                if matches!(split, Split::Test) { "test" } else { "train" }
            );
            let labels = d.labels.clone();
            // Kept as bytes and converted a chunk at a time (the same floats as a loaded dataset).
            let src = ByteSource::streamed(d, net.input_shape().to_vec())
                .with_context(|| format!("{}: images do not fit the model", dir.display()))?;
            (Box::new(src), desc, Some(labels))
        }
    };
    if source.sample_shape() != net.input_shape() {
        bail!(
            "inputs are {:?} per sample, the model takes {:?}",
            source.sample_shape(),
            net.input_shape()
        );
    }
    let total = a.limit.map_or(source.len(), |l| l.min(source.len()));
    let range = match shard {
        Some([i, n]) => lrp_batch::shard_range(total, i, n)?,
        None => 0..total,
    };
    let (targets, target_desc) = targets_of(&a, net, labels.as_deref())?;
    let id = RunId {
        model: canonical(&model_path),
        model_digest: crate::inputs::model_digest(&model_path)?,
        inputs: inputs.clone(),
        inputs_digest,
        total,
        start: range.start,
        count: range.len(),
        sample_shape: net.input_shape().to_vec(),
        shard,
        target: target_desc,
        rules: specs.iter().map(|s| s.to_string()).collect(),
        chunk_size: a.chunk,
        concepts: concepts.map(|(layer, _)| layer),
    };
    let mut runner = Runner::new(net, &specs, targets, id)?;
    if let Some((_, top)) = concepts {
        runner = runner.with_top(top);
    }
    let bar = crate::text::progress(range.len() as u64, "samples");
    let outcome = runner
        .run(source.as_ref(), &out, threads, a.resume, &|n| {
            bar.set_position(n as u64)
        })
        .with_context(|| {
            format!(
                "explaining {inputs} with {} into {}",
                model_path.display(),
                out.display()
            )
        })?;
    bar.finish_and_clear();
    Ok(match outcome {
        Outcome::AlreadyComplete(m) => {
            println!(
                "{} already holds this complete run ({} × {}); nothing to do",
                out.display(),
                count(m.run.count, "sample"),
                count(m.rules.len(), "rule")
            );
            m
        }
        Outcome::Completed(m) => {
            let t = m.timings.as_ref().expect("a completed run has timings");
            println!(
                "explained {} × {} in {:.2} s ({:.0} explanations/s, {}){} → {}",
                count(t.samples, "sample"),
                count(m.rules.len(), "rule"),
                t.seconds,
                t.explanations_per_second,
                count(t.threads, "thread"),
                if t.samples < m.run.count {
                    format!(", resumed: {} were done before", m.run.count - t.samples)
                } else {
                    String::new()
                },
                out.display()
            );
            m
        }
    })
}
