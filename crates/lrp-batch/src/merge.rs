//! `lrp batch merge`: shards of one job joined into the folder a single run would have written.

use std::path::{Path, PathBuf};

use crate::error::{BatchError, Result};
use crate::files::assemble;
use crate::manifest::{Manifest, RunId, Timings};
use crate::runner::differences;

/// Joins the complete shard folders `dirs` (any order) into `out`.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Manifest> {
    if dirs.is_empty() {
        return Err(BatchError::Merge("no shard folders given".into()));
    }
    let mut shards: Vec<(PathBuf, Manifest)> = Vec::with_capacity(dirs.len());
    for d in dirs {
        let m = Manifest::load(d)?;
        if !m.is_complete() {
            return Err(BatchError::Merge(format!(
                "{} is not complete; finish it with --resume first",
                d.display()
            )));
        }
        let Some([_, n]) = m.run.shard else {
            return Err(BatchError::Merge(format!(
                "{} is not a shard (it was run without --shard)",
                d.display()
            )));
        };
        if n != dirs.len() {
            return Err(BatchError::Merge(format!(
                "{} is one of {n} shards, but {} folders were given",
                d.display(),
                dirs.len()
            )));
        }
        shards.push((d.clone(), m));
    }
    shards.sort_by_key(|(_, m)| m.run.shard.map(|s| s[0]));
    let base = &shards[0].1;
    let whole = |id: &RunId| RunId {
        start: 0,
        count: id.total,
        shard: None,
        ..id.clone()
    };
    let merged = whole(&base.run);
    let mut next = 0;
    for (i, (dir, m)) in shards.iter().enumerate() {
        if whole(&m.run) != merged {
            return Err(BatchError::Merge(format!(
                "{} belongs to another job (it differs in {})",
                dir.display(),
                differences(&whole(&m.run), &merged)
            )));
        }
        if m.run.shard != Some([i, shards.len()]) {
            return Err(BatchError::Merge(format!(
                "shard {i} of {} is missing (or given twice)",
                shards.len()
            )));
        }
        if m.run.start != next {
            return Err(BatchError::Merge(format!(
                "{} starts at sample {}, expected {next}",
                dir.display(),
                m.run.start
            )));
        }
        next += m.run.count;
    }
    if next != merged.total {
        return Err(BatchError::Merge(format!(
            "the shards cover {next} of {} samples",
            merged.total
        )));
    }
    if out.join("manifest.json").exists() {
        let existing = Manifest::load(out)?;
        if existing.run == merged && existing.is_complete_in(out) {
            return Ok(existing);
        }
        // The same merge, interrupted or failed before: do it again (its files are rewritten whole).
        if existing.run != merged {
            return Err(BatchError::OutputDir {
                dir: out.to_path_buf(),
                reason: "holds another run; choose another --out".into(),
            });
        }
    }
    crate::files::refuse_foreign_folder(out, "manifest.json")?;
    let _lock = crate::files::lock_folder(out)?;
    crate::files::remove_stale_temporaries(out)?;
    // The merged run's identity lands first, so a merge that fails or is killed half-way can be retried.
    Manifest {
        run: merged.clone(),
        status: "merging".into(),
        timings: None,
        ..base.clone()
    }
    .save(out)?;
    let parts = |name: &str| shards.iter().map(|(d, _)| d.join(name)).collect::<Vec<_>>();
    let n = merged.total;
    assemble::<f32>(&out.join(&base.logits), &[n, base.classes], &parts(&base.logits))?;
    assemble::<i64>(&out.join(&base.targets), &[n], &parts(&base.targets))?;
    let mut shape = vec![n];
    shape.extend_from_slice(&merged.sample_shape);
    for r in &base.rules {
        assemble::<f32>(&out.join(&r.file), &shape, &parts(&r.file))?;
    }
    let timings: Vec<&Timings> = shards.iter().filter_map(|(_, m)| m.timings.as_ref()).collect();
    let seconds = timings.iter().map(|t| t.seconds).fold(0.0, f64::max);
    let samples = timings.iter().map(|t| t.samples).sum::<usize>();
    let manifest = Manifest {
        run: merged,
        status: "complete".into(),
        timings: Some(Timings {
            seconds,
            samples,
            explanations_per_second: (samples * base.rules.len()) as f64 / seconds.max(1e-9),
            threads: timings.iter().map(|t| t.threads).sum(),
            rule_seconds: (0..base.rules.len())
                .map(|k| {
                    timings
                        .iter()
                        .map(|t| t.rule_seconds.get(k).copied().unwrap_or(0.0))
                        .sum()
                })
                .collect(),
        }),
        ..base.clone()
    };
    manifest.save(out)?;
    Ok(manifest)
}
