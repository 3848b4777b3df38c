//! `lrp concepts`: relevance and activation maximization over a dataset (Concept Relevance Propagation's reference
//! samples, `LRP-RULES.md` "Concepts"), parallel, resumable and shardable like `lrp batch` (it is a batch run whose
//! rows are each sample's concept relevance and activation at one layer).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use ndarray::Array2;

use lrp_batch::{DEFAULT_CHUNK, Manifest};
use lrp_rules::concepts::{normalized, top_samples};

use crate::commands::batch::RunArgs;
use crate::inputs::{SplitArg, write_npy_atomic};
use crate::photos::PhotoArgs;

/// Reference samples per channel by default.
const DEFAULT_TOP: usize = 8;
/// More reference samples than this per channel is a typo (the rankings are `[K, channels]`).
const MAX_TOP: usize = 10_000;

#[derive(Args)]
#[command(group(clap::ArgGroup::new("inputs").required(true).args(["input", "data", "images"])))]
pub struct ConceptsArgs {
    /// Model file (native, or .onnx).
    #[arg(long)]
    model: PathBuf,
    /// Inputs as a float32 .npy `[N, …input shape]`.
    #[arg(long, conflicts_with_all = ["data", "images"])]
    input: Option<PathBuf>,
    /// Dataset folder (IDX files); each sample is explained for its label.
    #[arg(long, conflicts_with = "images")]
    data: Option<PathBuf>,
    #[command(flatten)]
    photos: PhotoArgs,
    /// Which split of --data.
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    split: SplitArg,
    /// The layer whose channels (or neurons) are the concepts: `#N`, the N-th layer with weights (as rule specs
    /// and `lrp info` number them).
    #[arg(long)]
    layer: String,
    /// Rule spec (CRP's usual composite by default).
    #[arg(long, default_value = "epsilon-plus-flat")]
    rule: String,
    /// Class to explain: label (the default with --data, as RelMax is defined), pred, or a class number.
    #[arg(long, conflicts_with = "targets")]
    target: Option<String>,
    /// One class per sample from an int64 .npy `[N]` (the labels of an .npy input).
    #[arg(long)]
    targets: Option<PathBuf>,
    /// Reference samples per channel in the rankings.
    #[arg(long, default_value_t = DEFAULT_TOP)]
    top: usize,
    /// Only the first N samples.
    #[arg(long)]
    limit: Option<usize>,
    /// Do only the I-th of N contiguous parts, e.g. --shard 3/8; join with `lrp batch merge` (which writes the
    /// rankings of the whole).
    #[arg(long)]
    shard: Option<String>,
    /// Continue an interrupted run in --out.
    #[arg(long)]
    resume: bool,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Worker threads (default: all cores). Results are identical for any number.
    #[arg(long)]
    threads: Option<usize>,
    /// Samples per chunk (the unit of parallel work and of resuming).
    #[arg(long, default_value_t = DEFAULT_CHUNK)]
    chunk: usize,
}

/// `#N` as a layer number.
pub fn parse_layer(text: &str, flag: &str) -> Result<usize> {
    let n = text.trim().strip_prefix('#').and_then(|n| n.parse::<usize>().ok());
    n.with_context(|| {
        format!(
            "{flag} '{text}': write #N for the N-th layer with weights (#0 is the first; lrp info lists them); concepts \
             are the channels of a convolution or the neurons of a dense layer"
        )
    })
}

pub fn run(a: ConceptsArgs) -> Result<()> {
    let layer = parse_layer(&a.layer, "--layer")?;
    if a.top == 0 || a.top > MAX_TOP {
        bail!("--top {}: give 1 to {MAX_TOP} reference samples per channel", a.top);
    }
    let target = match (&a.target, &a.targets, &a.data) {
        (Some(t), _, _) => t.clone(),
        (None, Some(_), _) => "pred".into(),
        (None, None, Some(_)) => "label".into(),
        (None, None, None) => {
            eprintln!(
                "note: these inputs have no labels, so each sample is explained for its prediction (RelMax explains \
                 the label: give --targets T.npy)"
            );
            "pred".into()
        }
    };
    let run = RunArgs {
        model: Some(a.model.clone()),
        input: a.input.clone(),
        data: a.data.clone(),
        photos: a.photos.clone(),
        split: a.split,
        rules: vec![a.rule.clone()],
        out: Some(a.out.clone()),
        threads: a.threads,
        limit: a.limit,
        target,
        targets: a.targets.clone(),
        resume: a.resume,
        shard: a.shard.clone(),
        chunk: a.chunk,
    };
    let m = crate::commands::batch::run_job(run, Some((layer, a.top)))?;
    if m.run.shard.is_some() {
        println!(
            "a shard: join every shard with `lrp batch merge DIRS… --out DIR`, which writes the rankings of the whole"
        );
        return Ok(());
    }
    write_rankings(&a.out, &m, a.top)
}

/// Reads a `[rows, channels]` float32 file of a concept folder, checked against the manifest.
fn read_sums(dir: &Path, file: &str, m: &Manifest) -> Result<Array2<f32>> {
    let path = dir.join(file);
    let a: Array2<f32> = lrp_batch::npy::read_checked(&path)?;
    let want = m.rule_shape();
    if a.shape() != want.as_slice() {
        bail!(
            "{}: holds {:?}, the manifest says {want:?}; the folder was changed after the run",
            path.display(),
            a.shape()
        );
    }
    if let Some(v) = a.iter().find(|v| !v.is_finite()) {
        bail!("{}: holds {v}; the folder was changed after the run", path.display());
    }
    Ok(a)
}

/// Writes the rankings of a complete concept folder: `relmax-normalized.npy` / `actmax-normalized.npy`
/// (`[samples, channels]`, each row divided by the sum of its absolute values + 1e-10) and `relmax-top.npy` /
/// `actmax-top.npy` (`[K, channels]` int64 sample indices, largest first, lower index first on ties).
pub fn write_rankings(dir: &Path, m: &Manifest, top: usize) -> Result<()> {
    let c = m
        .concepts
        .as_ref()
        .context("not a concept folder (lrp concepts writes them)")?;
    let rule = m.rules.first().context("the manifest names no rule file")?;
    let mut lines = Vec::new();
    for (name, file) in [("relmax", rule.file.as_str()), ("actmax", c.activation.as_str())] {
        let sums = read_sums(dir, file, m)?;
        let norm = normalized(&sums);
        let mut best = top_samples(&norm, top);
        best.mapv_inplace(|i| i + m.run.start as i64);
        write_npy_atomic(&dir.join(format!("{name}-normalized.npy")), &norm)?;
        write_npy_atomic(&dir.join(format!("{name}-top.npy")), &best)?;
        lines.push(format!(
            "{name}-normalized.npy {:?}, {name}-top.npy {:?}",
            norm.shape(),
            best.shape()
        ));
        if name == "relmax" {
            // The channels that matter most over the dataset: the mean of each column.
            let means = norm.mean_axis(ndarray::Axis(0)).expect("at least one sample");
            let mut order: Vec<usize> = (0..means.len()).collect();
            order.sort_by(|&i, &j| means[j].total_cmp(&means[i]).then(i.cmp(&j)));
            let shown: Vec<String> = order
                .iter()
                .take(5)
                .map(|&ch| format!("channel {ch} ({:.3}; best samples {})", means[ch], samples(&best, ch)))
                .collect();
            lines.push(format!(
                "most relevant channels of #{} on average: {}",
                c.layer,
                shown.join(", ")
            ));
        }
    }
    println!("wrote {} → {}", lines.join("; "), dir.display());
    Ok(())
}

fn samples(best: &ndarray::Array2<i64>, ch: usize) -> String {
    let v: Vec<String> = best.column(ch).iter().take(3).map(|i| i.to_string()).collect();
    v.join(", ")
}

/// `#N=C` (`--condition`): `C` a channel list (`3`, `0,5,7`) or `@FILE.npy` (int64, one channel per sample `[N]`
/// or several `[N, k]`), for a batch of `n` samples.
pub fn parse_condition(text: &str, n: usize) -> Result<lrp_rules::Condition> {
    let (layer, channels) = text
        .split_once('=')
        .with_context(|| format!("--condition '{text}' is not #N=C (e.g. '#1=3', '#1=0,5,7' or '#1=@top.npy')"))?;
    let layer = parse_layer(layer, "--condition")?;
    let channels = match channels.trim().strip_prefix('@') {
        Some(file) => per_sample_channels(Path::new(file), n)?,
        None => {
            let list = channels
                .split(',')
                .map(|c| c.trim().parse::<usize>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| {
                    anyhow::anyhow!(
                        "--condition '{text}': '{channels}' is not a channel list (e.g. 3 or 0,5,7) or @FILE.npy"
                    )
                })?;
            lrp_rules::Channels::Same(list)
        }
    };
    Ok(lrp_rules::Condition { layer, channels })
}

/// One channel list per sample from an int64 `.npy`: `[N]` (one channel each) or `[N, k]`.
fn per_sample_channels(path: &Path, n: usize) -> Result<lrp_rules::Channels> {
    crate::inputs::require_extension(path, "npy", "--condition @FILE", "int64 channel numbers as NumPy .npy")?;
    let a: ndarray::ArrayD<i64> = lrp_batch::npy::read_checked(path)?;
    let rows: Vec<Vec<i64>> = match a.ndim() {
        1 => a.iter().map(|&c| vec![c]).collect(),
        2 => a.outer_iter().map(|r| r.iter().copied().collect()).collect(),
        d => bail!(
            "{}: {d}-D; give one channel per sample [N] or several [N, k]",
            path.display()
        ),
    };
    if rows.len() != n {
        bail!(
            "{}: channels for {} samples; the input has {n}",
            path.display(),
            rows.len()
        );
    }
    let mut out = Vec::with_capacity(n);
    for (s, row) in rows.into_iter().enumerate() {
        let row = row
            .into_iter()
            .map(|c| {
                usize::try_from(c).map_err(|_| anyhow::anyhow!("{}: sample {s} names channel {c}", path.display()))
            })
            .collect::<Result<Vec<_>>>()?;
        out.push(row);
    }
    Ok(lrp_rules::Channels::PerSample(out))
}
