//! `manifest.json`: what a batch folder holds, so a run can be resumed, refused or merged.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{BatchError, Result};
use crate::files::write_atomic;

/// The format tag of manifests this version writes. `lrp-batch/3` records the digest of every result file (a merge
/// checks each shard's files against it); `lrp-batch/2` did not, and `lrp-batch/1` identified files by FNV-1a.
pub const FORMAT: &str = "lrp-batch/3";

/// Everything that identifies a run. Two folders hold the same results when their runs are [`RunId::same_run`]:
/// equal but for the paths (`model`, `inputs`), which are only how the run was started (a cluster job copies its
/// data to a scratch folder of its own; the built-in `cnn` is `data/models/mnist-cnn.lrpm`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunId {
    /// Model file as given.
    pub model: String,
    /// Digest of the model file.
    pub model_digest: String,
    /// Input description (`.npy` path, or dataset folder and split).
    pub inputs: String,
    /// Digest of the input files.
    pub inputs_digest: String,
    /// Samples in the whole job (after `--limit`), across every shard.
    pub total: usize,
    /// First sample of this folder.
    pub start: usize,
    /// Samples in this folder.
    pub count: usize,
    /// Per-sample input shape.
    pub sample_shape: Vec<usize>,
    /// `[index, of]` for a shard.
    pub shard: Option<[usize; 2]>,
    /// How targets were chosen (`pred`, `label`, `class K`, or a targets file with its digest).
    pub target: String,
    /// The rule specs, in order.
    pub rules: Vec<String>,
    /// Samples per chunk.
    pub chunk_size: usize,
    /// A concept run (`lrp concepts`): the layer `#N` whose channels are summed, instead of heatmaps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concepts: Option<usize>,
}

impl RunId {
    /// Whether `other` is the same run: the same model and inputs by content (digests), the same samples, shard,
    /// targets, rules and chunk size; the paths they were given by do not matter.
    pub fn same_run(&self, other: &RunId) -> bool {
        let strip = |r: &RunId| RunId {
            model: String::new(),
            inputs: String::new(),
            ..r.clone()
        };
        strip(self) == strip(other)
    }
}

/// One rule's output file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleFile {
    /// The rule spec.
    pub spec: String,
    /// File name inside the folder.
    pub file: String,
}

/// How long a run took.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Wall-clock seconds of this invocation (a resumed run counts only its own part).
    pub seconds: f64,
    /// Samples explained by this invocation.
    pub samples: usize,
    /// Explanations (samples × rules) per wall-clock second.
    pub explanations_per_second: f64,
    /// Worker threads.
    pub threads: usize,
    /// Thread-seconds spent in each rule (including its forward pass), in rule order.
    pub rule_seconds: Vec<f64>,
}

/// The manifest of a batch folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// `running` or `complete`.
    pub status: String,
    /// What was run.
    pub run: RunId,
    /// Number of classes of the model.
    pub classes: usize,
    /// One file per rule, `[count, …sample shape]` float32.
    pub rules: Vec<RuleFile>,
    /// Logits `[count, classes]` float32.
    pub logits: String,
    /// Explained class per sample `[count]` int64.
    pub targets: String,
    /// Timings of the invocation that completed the folder (of a merge: the shards' added up).
    pub timings: Option<Timings>,
    /// The digest of every result file of a complete folder, by file name (a merge checks them).
    #[serde(default)]
    pub digests: std::collections::BTreeMap<String, String>,
    /// A concept run's layer and files (the rule files then hold `[count, channels]` concept relevance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concepts: Option<ConceptFiles>,
}

/// What a concept run (`lrp concepts`) holds besides logits and targets: per rule, each sample's relevance at the
/// output of `#layer` summed per channel (the rule files, `[count, channels]` float32), and the activation there
/// summed per channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConceptFiles {
    /// `#N`.
    pub layer: usize,
    /// Channels (or neurons) of the layer.
    pub channels: usize,
    /// `[count, channels]` float32: the output of `#layer` (before its activation) summed per channel.
    pub activation: String,
    /// How many reference samples per channel the rankings hold.
    pub top: usize,
}

impl Manifest {
    /// The shape of every rule file: `[count, …sample shape]`, or `[count, channels]` for a concept run.
    pub fn rule_shape(&self) -> Vec<usize> {
        let mut shape = vec![self.run.count];
        match &self.concepts {
            Some(c) => shape.push(c.channels),
            None => shape.extend_from_slice(&self.run.sample_shape),
        }
        shape
    }

    /// The float32 result files beside logits and targets: one per rule, then a concept run's activations.
    pub fn value_files(&self) -> Vec<&str> {
        self.rules
            .iter()
            .map(|r| r.file.as_str())
            .chain(self.concepts.iter().map(|c| c.activation.as_str()))
            .collect()
    }
}

impl Manifest {
    /// Reads `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|e| BatchError::io(&path, e))?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| BatchError::Manifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if m.format != FORMAT {
            return Err(BatchError::Manifest {
                path,
                reason: format!(
                    "format '{}', this version reads '{FORMAT}' (another version of lrp wrote it; run again into a new \
                     folder)",
                    m.format
                ),
            });
        }
        // File names come from the file: plain names inside the folder only, never a path elsewhere.
        let names = m
            .value_files()
            .into_iter()
            .chain([m.logits.as_str(), m.targets.as_str()]);
        for name in names {
            let plain =
                !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\']) && name.ends_with(".npy");
            if !plain {
                return Err(BatchError::Manifest {
                    path,
                    reason: format!("file name '{name}' is not a plain .npy name inside the folder; refused"),
                });
            }
        }
        Ok(m)
    }

    /// Whether every file was written: the status says so and every result file is there with the size its
    /// shape needs (a complete folder whose files were deleted or cut is not complete).
    pub fn is_complete_in(&self, dir: &Path) -> bool {
        if !self.is_complete() {
            return false;
        }
        let per_file: usize = self.rule_shape().iter().product();
        let sized = |name: &str, values: usize, width: u64| {
            std::fs::metadata(dir.join(name)).is_ok_and(|m| m.len() >= values as u64 * width)
        };
        self.value_files().iter().all(|f| sized(f, per_file, 4))
            && sized(&self.targets, self.run.count, 8)
            && sized(&self.logits, self.run.count, 4)
    }

    /// Writes `dir/manifest.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("manifests serialise");
        write_atomic(&dir.join("manifest.json"), text.as_bytes())
    }

    /// Whether every file was written.
    pub fn is_complete(&self) -> bool {
        self.status == "complete"
    }
}

/// The file name of rule `k`: its index and a readable form of its spec.
pub fn rule_file_name(k: usize, spec: &str) -> String {
    let mut name: String = spec
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    name.truncate(48);
    format!("rule{k}-{}.npy", name.trim_matches('_'))
}
