//! `lrp batch merge`: shards of one job joined into the folder a single run would have written.

use std::path::{Path, PathBuf};

use crate::error::{BatchError, Result};
use crate::files::assemble;
use crate::manifest::{Manifest, RunId, Timings};
use crate::runner::differences;

/// Reads every shard folder's manifest (sorted by shard index), refusing a folder that is not a complete shard
/// with digests.
fn load_shards(dirs: &[PathBuf]) -> Result<Vec<(PathBuf, Manifest)>> {
    let mut shards: Vec<(PathBuf, Manifest)> = Vec::with_capacity(dirs.len());
    for d in dirs {
        let m = Manifest::load(d)?;
        if !m.is_complete() {
            return Err(BatchError::Merge(match crate::files::held_by_another(d) {
                Some(holder) => format!(
                    "{} is still being written by another lrp{holder}; merge once it has finished",
                    d.display()
                ),
                None => format!(
                    "{} is not complete (its run stopped); finish it by running its command again with --resume",
                    d.display()
                ),
            }));
        }
        if m.run.shard.is_none() {
            return Err(BatchError::Merge(format!(
                "{} is not a shard (it was run without --shard)",
                d.display()
            )));
        }
        if m.digests.len() != m.value_files().len() + 2 {
            return Err(BatchError::Merge(format!(
                "{} has no digests of its files (an older lrp wrote it); run that shard again",
                d.display()
            )));
        }
        shards.push((d.clone(), m));
    }
    shards.sort_by_key(|(_, m)| m.run.shard.map(|s| s[0]));
    Ok(shards)
}

/// Checks that `shards` are every shard of one job, once each and in order; returns the whole job's run.
fn check_shards(shards: &[(PathBuf, Manifest)], given: usize) -> Result<RunId> {
    // Every folder must be a shard of the same split (a 1/4 among eighths is another job), then each index once.
    let shard_of = |m: &Manifest| m.run.shard.expect("checked above");
    let n = shard_of(&shards[0].1)[1];
    if let Some((d, m)) = shards.iter().find(|(_, m)| shard_of(m)[1] != n) {
        let [i, k] = shard_of(m);
        return Err(BatchError::Merge(format!(
            "{} is shard {i}/{k} and {} is shard {}/{n}: these are shards of two different splits",
            d.display(),
            shards[0].0.display(),
            shard_of(&shards[0].1)[0]
        )));
    }
    for i in 0..n {
        let holders: Vec<&PathBuf> = shards
            .iter()
            .filter(|(_, m)| m.run.shard == Some([i, n]))
            .map(|(d, _)| d)
            .collect();
        match holders.as_slice() {
            [_] => {}
            [] => {
                return Err(BatchError::Merge(format!(
                    "shard {i}/{n} is missing ({} of {n} shard folders were given; give every shard from 0/{n} to \
                     {}/{n})",
                    given,
                    n - 1
                )));
            }
            [a, b, ..] => {
                return Err(BatchError::Merge(format!(
                    "shard {i}/{n} is given twice: {} and {}",
                    a.display(),
                    b.display()
                )));
            }
        }
    }
    let base = &shards[0].1;
    let whole = |id: &RunId| RunId {
        start: 0,
        count: id.total,
        shard: None,
        ..id.clone()
    };
    let merged = whole(&base.run);
    let mut next = 0;
    for (dir, m) in shards {
        if !whole(&m.run).same_run(&merged) {
            return Err(BatchError::Merge(format!(
                "{} belongs to another job (it differs in {})",
                dir.display(),
                differences(&whole(&m.run), &merged)
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
    Ok(merged)
}

/// Joins the complete shard folders `dirs` (any order) into `out`.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Manifest> {
    if dirs.is_empty() {
        return Err(BatchError::Merge("no shard folders given".into()));
    }
    let shards = load_shards(dirs)?;
    let merged = check_shards(&shards, dirs.len())?;
    let base = &shards[0].1;
    if out.join("manifest.json").exists() {
        let existing = Manifest::load(out)?;
        if existing.run.same_run(&merged) && existing.is_complete_in(out) {
            return Ok(existing);
        }
        // The same merge, interrupted or failed before: do it again (its files are rewritten whole).
        if !existing.run.same_run(&merged) {
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
    let digests = |name: &str| {
        shards
            .iter()
            .map(|(_, m)| m.digests.get(name).cloned().unwrap_or_default())
            .collect::<Vec<_>>()
    };
    let n = merged.total;
    assemble::<f32>(
        &out.join(&base.logits),
        &[n, base.classes],
        &parts(&base.logits),
        &digests(&base.logits),
    )?;
    assemble::<i64>(
        &out.join(&base.targets),
        &[n],
        &parts(&base.targets),
        &digests(&base.targets),
    )?;
    let whole = Manifest {
        run: merged.clone(),
        ..base.clone()
    };
    let shape = whole.rule_shape();
    for file in base.value_files() {
        assemble::<f32>(&out.join(file), &shape, &parts(file), &digests(file))?;
    }
    let mut merged_digests = std::collections::BTreeMap::new();
    for name in base
        .value_files()
        .into_iter()
        .chain([base.logits.as_str(), base.targets.as_str()])
    {
        merged_digests.insert(name.to_string(), crate::files::digest_file(&out.join(name))?);
    }
    // The shards' timings added up: the seconds each spent, the samples each explained, so the rate is the work
    // per second of one shard's worth of threads (shards run at the same time or one after another).
    let timings: Vec<&Timings> = shards.iter().filter_map(|(_, m)| m.timings.as_ref()).collect();
    let seconds = timings.iter().map(|t| t.seconds).sum::<f64>();
    let samples = timings.iter().map(|t| t.samples).sum::<usize>();
    let manifest = Manifest {
        run: merged,
        status: "complete".into(),
        digests: merged_digests,
        timings: Some(Timings {
            seconds,
            samples,
            explanations_per_second: (samples * base.rules.len()) as f64 / seconds.max(1e-9),
            threads: timings.iter().map(|t| t.threads).max().unwrap_or(1),
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
