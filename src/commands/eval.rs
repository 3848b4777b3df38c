//! `lrp eval`: faithfulness of rules by region perturbation (pixel flipping), on the batch runner.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use ndarray::Axis;
use serde_json::json;

use lrp_rules::faithfulness::{Regions, aopc, perturbation_curve};
use lrp_rules::{Explainer, Spec, Target};
use lrp_view::plot::{Series, write_line_plot};

use crate::inputs::{SplitArg, load_model, load_split_for};

#[derive(Args)]
pub struct EvalArgs {
    /// Model file (native, or .onnx).
    #[arg(long)]
    model: PathBuf,
    /// Dataset folder (IDX files).
    #[arg(long)]
    data: PathBuf,
    /// Which split of --data.
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    split: SplitArg,
    /// Rule specs to compare; repeat.
    #[arg(long = "rule", required = true)]
    rules: Vec<String>,
    /// The first N samples (default 1000).
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    /// Output folder for report.json, report.md and curves.png.
    #[arg(long)]
    out: PathBuf,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Side of the square regions removed per step, in pixels.
    #[arg(long, default_value_t = 4)]
    region: usize,
    /// Regions removed in all (default: every region).
    #[arg(long)]
    steps: Option<usize>,
    /// Value that replaces removed regions (0 is MNIST's background).
    #[arg(long, default_value_t = 0.0)]
    baseline: f32,
    /// Seed of the random ordering.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Replace a report already in --out.
    #[arg(long)]
    force: bool,
}

/// Curves of one chunk: per rule, per sample; then the random ordering per sample.
type ChunkCurves = (Vec<Vec<Vec<f32>>>, Vec<Vec<f32>>);

fn mean_curve(curves: &[Vec<f32>]) -> Vec<f32> {
    let len = curves.iter().map(Vec::len).min().unwrap_or(0);
    (0..len)
        .map(|k| curves.iter().map(|c| c[k] as f64).sum::<f64>() as f32 / curves.len().max(1) as f32)
        .collect()
}

pub fn run(a: EvalArgs) -> Result<()> {
    if a.region == 0 {
        bail!("--region 0: give the side of the removed squares, 1 pixel or more");
    }
    if a.steps == Some(0) {
        bail!("--steps 0: give 1 or more (0 removes nothing, so there is no curve to score)");
    }
    if !a.baseline.is_finite() {
        bail!("--baseline {}: give a finite value", a.baseline);
    }
    let specs = a.rules.iter().map(|r| Spec::parse(r)).collect::<Result<Vec<_>, _>>()?;
    let threads = super::worker_threads(a.threads)?;
    let model = load_model(&a.model)?;
    let net = &model.network;
    let explainers = specs
        .iter()
        .map(|s| Explainer::new(net, s))
        .collect::<Result<Vec<_>, _>>()?;
    let data = load_split_for(&a.data, a.split.into(), net)?;
    let n = a.limit.min(data.len());
    if n == 0 {
        bail!("--limit 0: nothing to evaluate");
    }
    let regions = Regions::new(net.input_shape(), a.region)?;
    let steps = a.steps.unwrap_or(regions.count()).min(regions.count());
    lrp_batch::refuse_foreign_folder(&a.out, "report.json")?;
    // One writer per folder until the report is written.
    let _lock = lrp_batch::lock_folder(&a.out)?;
    let json_path = a.out.join("report.json");
    if json_path.exists() && !a.force {
        bail!(
            "{} already holds a report; pass --force to replace it, or choose another --out",
            a.out.display()
        );
    }
    let started = std::time::Instant::now();
    let bar = crate::text::progress(n as u64, "images");
    let chunks: Vec<ChunkCurves> = lrp_batch::map_chunks(n, 32, threads, |range| -> Result<ChunkCurves> {
        let x = data.images.slice_axis(Axis(0), range.clone().into());
        let explanations = explainers
            .iter()
            .map(|ex| ex.explain(x.view(), &Target::Predicted))
            .collect::<Result<Vec<_>, _>>()?;
        // Every rule explains the prediction, so the targets agree.
        let targets = &explanations[0].targets;
        let curve = |s: usize, order: &[usize]| {
            perturbation_curve(
                net,
                x.index_axis(Axis(0), s),
                targets[s],
                &regions,
                order,
                steps,
                a.baseline,
            )
        };
        let per_rule = explanations
            .iter()
            .map(|e| {
                e.relevance
                    .outer_iter()
                    .enumerate()
                    .map(|(s, r)| curve(s, &regions.most_relevant_first(r)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let random = range
            .clone()
            .enumerate()
            .map(|(s, global)| {
                curve(
                    s,
                    &regions.random(a.seed ^ (global as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        bar.inc(range.len() as u64);
        Ok((per_rule, random))
    })?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let rule_curves: Vec<Vec<Vec<f32>>> = (0..specs.len())
        .map(|k| chunks.iter().flat_map(|(r, _)| r[k].iter().cloned()).collect())
        .collect();
    let random_curves: Vec<Vec<f32>> = chunks.iter().flat_map(|(_, r)| r.iter().cloned()).collect();
    let summarize = |curves: &[Vec<f32>]| {
        let mean = mean_curve(curves);
        let score = curves.iter().map(|c| aopc(c) as f64).sum::<f64>() / curves.len().max(1) as f64;
        (score, mean)
    };
    let rules: Vec<Scored> = specs
        .iter()
        .zip(&rule_curves)
        .map(|(s, c)| {
            let (score, mean) = summarize(c);
            (s.to_string(), score, mean)
        })
        .collect();
    let (random_aopc, random_curve) = summarize(&random_curves);
    let md = write_reports(&a, &json_path, (n, steps, seconds), &rules, (random_aopc, random_curve))?;
    print!("{md}");
    println!(
        "\nwrote {}, report.md and curves.png ({seconds:.1} s, {})",
        json_path.display(),
        crate::text::count(threads, "thread")
    );
    Ok(())
}

/// What one rule scored: its spec, its AOPC, its mean curve.
type Scored = (String, f64, Vec<f32>);

/// Writes `report.json`, `report.md` and `curves.png` into `--out`; returns the Markdown table.
fn write_reports(
    a: &EvalArgs,
    json_path: &std::path::Path,
    (n, steps, seconds): (usize, usize, f64),
    rules: &[Scored],
    (random_aopc, random_curve): (f64, Vec<f32>),
) -> Result<String> {
    let report = json!({
        "model": a.model.display().to_string(),
        "data": a.data.display().to_string(),
        "count": n,
        "region": a.region,
        "steps": steps,
        "baseline": a.baseline,
        "target": "pred",
        "method": "region perturbation, most relevant first (Samek et al. 2017); AOPC = mean over k of f(x0) - f(xk)",
        "seconds": seconds,
        "rules": rules.iter().map(|(spec, s, c)| json!({"spec": spec, "aopc": s, "curve": c})).collect::<Vec<_>>(),
        "random": {"aopc": random_aopc, "curve": random_curve},
    });
    crate::inputs::write_atomic(json_path, serde_json::to_string_pretty(&report)?.as_bytes())?;
    let mut ranked: Vec<&Scored> = rules.iter().collect();
    ranked.sort_by(|x, y| y.1.total_cmp(&x.1));
    let mut md = format!(
        "# Faithfulness by region perturbation\n\nModel `{}`, {n} images of `{}`, {}×{} regions replaced by {} \
         most relevant first, {steps} steps; AOPC is the mean drop of the explained logit (higher is better).\n\n\
         | rank | rule | AOPC |\n|---|---|---|\n",
        a.model.display(),
        a.data.display(),
        a.region,
        a.region,
        a.baseline
    );
    for (i, (spec, score, _)) in ranked.iter().enumerate() {
        md.push_str(&format!("| {} | `{spec}` | {score:.4} |\n", i + 1));
    }
    md.push_str(&format!("| – | random order | {random_aopc:.4} |\n"));
    crate::inputs::write_atomic(&a.out.join("report.md"), md.as_bytes())?;
    let mut series: Vec<Series> = rules
        .iter()
        .map(|(spec, score, c)| Series {
            name: format!("{spec} (AOPC {score:.3})"),
            values: c.clone(),
        })
        .collect();
    series.push(Series {
        name: format!("random (AOPC {random_aopc:.3})"),
        values: random_curve,
    });
    write_line_plot(
        &a.out.join("curves.png"),
        &format!(
            "Region perturbation of {}, {}, most relevant first",
            a.model
                .file_name()
                .map_or_else(|| a.model.display().to_string(), |f| f.to_string_lossy().into_owned()),
            crate::text::count(n, "image")
        ),
        "regions removed",
        "mean explained logit",
        &series,
        (900, 600),
    )?;
    Ok(md)
}
