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
    /// Also draw an atlas, DIR/atlas.png: the channels most relevant for a class (--class), each with its
    /// reference samples and their conditional heatmaps, cropped to the receptive field of the position where
    /// the channel's relevance is largest.
    #[arg(long)]
    png: bool,
    /// The class of the atlas (default: the class explained most often in the run).
    #[arg(long, requires = "png")]
    class: Option<usize>,
}

/// Channels in the atlas, and reference samples per channel.
const ATLAS_CHANNELS: usize = 6;
const ATLAS_SAMPLES: usize = 6;

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
    write_rankings(&a.out, &m, a.top)?;
    if a.png {
        atlas(&a, &m)?;
    }
    Ok(())
}

/// Colour pictures of inputs, where they are photos.
type Pictures = Vec<Option<ndarray::Array3<f32>>>;

/// The inputs of samples `idx` of the run (its --data split, --input or photos) and their pictures.
fn fetch(
    a: &ConceptsArgs,
    net: &lrp_core::Network,
    imported: bool,
    idx: &[usize],
) -> Result<(ndarray::ArrayD<f32>, Pictures)> {
    use ndarray::Axis;
    let (all, pictures) = if a.photos.any() {
        let p = crate::photos::load_photos(&a.photos, net)?;
        let pics = p.pictures.into_iter().map(Some).collect::<Vec<_>>();
        (p.x, pics)
    } else if let Some(dir) = &a.data {
        let d = crate::inputs::load_split_for(dir, a.split.into(), net)?;
        let n = d.images.shape()[0];
        (d.images, vec![None; n])
    } else {
        let path = a.input.as_ref().context("the run's inputs")?;
        let x = crate::inputs::load_npy_input(path, net, imported)?;
        let n = x.shape()[0];
        let norm = a
            .photos
            .normalization(crate::photos::layout_of(net.input_shape()).map_or(0, |l| l.channels()));
        let pics = crate::photos::pictures_of(&x, net.input_shape(), norm.as_ref());
        (
            x,
            pics.map_or_else(|| vec![None; n], |p| p.into_iter().map(Some).collect()),
        )
    };
    let x = all.select(Axis(0), idx);
    Ok((x, idx.iter().map(|&i| pictures[i].clone()).collect()))
}

/// `DIR/atlas.png`: the channels most relevant for a class on average (relmax-normalized over the samples explained
/// for it), each with its reference samples (relmax-top) and their conditional heatmaps, cropped to the receptive
/// field of the position with the largest relevance of the channel.
fn atlas(a: &ConceptsArgs, m: &Manifest) -> Result<()> {
    use lrp_rules::{Channels, ConceptLayer, Condition, Explainer, Spec, Target};
    use ndarray::{Array1, Axis, s};
    let c = m.concepts.as_ref().context("a concept folder")?;
    let model = crate::inputs::load_model(&a.model)?;
    let net = &model.network;
    let layer = ConceptLayer::of(net, c.layer)?;
    let ex = Explainer::new(net, &Spec::parse(&a.rule)?)?;
    let targets: Array1<i64> = lrp_batch::npy::read_checked(&a.out.join(&m.targets))?;
    let norm: Array2<f32> = lrp_batch::npy::read_checked(&a.out.join("relmax-normalized.npy"))?;
    let top: Array2<i64> = lrp_batch::npy::read_checked(&a.out.join("relmax-top.npy"))?;
    let class = match a.class {
        Some(k) if k < net.num_classes() => k,
        Some(k) => bail!("--class {k}: the model has {} classes", net.num_classes()),
        None => {
            let mut counts = vec![0usize; net.num_classes()];
            for &t in &targets {
                counts[t as usize] += 1;
            }
            (0..counts.len())
                .max_by_key(|&k| (counts[k], std::cmp::Reverse(k)))
                .unwrap_or(0)
        }
    };
    let rows: Vec<usize> = (0..targets.len()).filter(|&i| targets[i] as usize == class).collect();
    if rows.is_empty() {
        bail!("--class {class}: no sample of the run was explained for it");
    }
    let means: Vec<f32> = (0..layer.channels)
        .map(|ch| rows.iter().map(|&i| norm[[i, ch]]).sum::<f32>() / rows.len() as f32)
        .collect();
    let channels: Vec<usize> = lrp_rules::concepts::ranked(&means)
        .into_iter()
        .take(ATLAS_CHANNELS)
        .collect();
    // The crop: the receptive field of a position in the middle of the layer's output (a field clipped at an edge is
    // moved inside the image, so every crop has one size).
    let out = net.shape_at(layer.value);
    let full = (out.len() == 3)
        .then(|| layer.receptive_field(net, out[1] / 2, out[2] / 2))
        .flatten();
    let mut panels = Vec::new();
    // Every reference sample of the atlas, read from the run's inputs once (row r of `all` is sample `wanted[r]`).
    let rows_of = |ch: usize| -> Vec<usize> {
        top.column(ch)
            .iter()
            .take(ATLAS_SAMPLES)
            .map(|&i| i as usize - m.run.start)
            .collect()
    };
    let mut wanted: Vec<usize> = channels.iter().flat_map(|&ch| rows_of(ch)).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let imported = crate::inputs::is_imported(&a.model, &model);
    let (all, all_pictures) = fetch(
        a,
        net,
        imported,
        &wanted.iter().map(|&i| i + m.run.start).collect::<Vec<_>>(),
    )?;
    for &ch in &channels {
        let idx = rows_of(ch);
        let at: Vec<usize> = idx.iter().map(|i| wanted.binary_search(i).expect("fetched")).collect();
        let x = all.select(Axis(0), &at);
        let pictures: Pictures = at.iter().map(|&r| all_pictures[r].clone()).collect();
        let t = Target::PerSample(idx.iter().map(|&i| targets[i] as usize).collect());
        let cond = Condition {
            layer: c.layer,
            channels: Channels::Same(vec![ch]),
        };
        let heat = ex.explain_concepts(x.view(), &t, &[cond], &[])?.explanation.relevance;
        let kept = ex.explain_keeping(x.view(), &t, &[layer.value])?.kept.remove(0).1;
        for (k, &i) in idx.iter().enumerate() {
            let mut image = lrp_view::cells::to_map(x.index_axis(Axis(0), k));
            let mut relevance = lrp_view::cells::to_map(heat.index_axis(Axis(0), k));
            let mut picture = pictures[k].clone();
            if let Some([fr, fc]) = &full {
                let map = kept.index_axis(Axis(0), k);
                let map = map.index_axis(Axis(0), ch);
                let (mut best, mut at) = (f32::NEG_INFINITY, (0, 0));
                for ((y, xx), &v) in map.into_dimensionality::<ndarray::Ix2>()?.indexed_iter() {
                    if v > best {
                        (best, at) = (v, (y, xx));
                    }
                }
                let [rows, cols] = layer.receptive_field(net, at.0, at.1).context("a receptive field")?;
                let (h, w) = image.dim();
                let r0 = rows.start.min(h.saturating_sub(fr.len()));
                let c0 = cols.start.min(w.saturating_sub(fc.len()));
                let (r1, c1) = (r0 + fr.len().min(h), c0 + fc.len().min(w));
                image = image.slice(s![r0..r1, c0..c1]).to_owned();
                relevance = relevance.slice(s![r0..r1, c0..c1]).to_owned();
                picture = picture.map(|p| p.slice(s![r0..r1, c0..c1, ..]).to_owned());
            }
            panels.push(lrp_view::png_out::Panel {
                image,
                picture,
                relevance,
                caption: vec![
                    format!("channel {ch} · sample {}", i + m.run.start),
                    format!("class {} · {:.3}", targets[i], norm[[i, ch]]),
                ],
            });
        }
    }
    let path = a.out.join("atlas.png");
    let title = format!(
        "#{}: the {} channels most relevant for class {class}, their reference samples and conditional heatmaps{}{}",
        c.layer,
        channels.len(),
        if full.is_some() {
            " (cropped to the receptive field)"
        } else {
            ""
        },
        if layer.bypassed(net) {
            "; a skip connection goes around this layer: the heatmaps hold what passes it too"
        } else {
            ""
        }
    );
    lrp_view::png_out::write_png(&path, &title, &panels)?;
    println!("wrote {} (class {class}; channels {:?})", path.display(), channels);
    Ok(())
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
            let shown: Vec<String> = lrp_rules::concepts::ranked(&means)
                .into_iter()
                .take(5)
                .map(|ch| format!("channel {ch} ({:.3}; best samples {})", means[ch], samples(&best, ch)))
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
