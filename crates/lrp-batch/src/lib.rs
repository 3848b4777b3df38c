//! `lrp-batch`: explain whole datasets in parallel, safely.
//!
//! The only crate with a thread pool and a chunking policy. Inputs are split into chunks of samples; a rayon
//! pool explains each chunk under every rule (the core and the rules are single-threaded and deterministic, so
//! any thread count gives the same bits); each chunk writes its rows straight into the result files, which are
//! filled in `DIR/chunks/` (one `.npy` per rule plus `logits.npy` and `targets.npy`), and is then marked done, so an
//! interrupted run (even `kill -9`) resumes where it stopped; at the end the files are renamed into `DIR`, and
//! `manifest.json` says what the folder holds.
//! Memory is bounded by the chunk size times the threads: `.npy` inputs are memory-mapped, outputs streamed.
#![warn(missing_docs)]

mod error;
mod files;
mod manifest;
mod merge;
pub mod npy;
mod runner;
mod source;

pub use error::{BatchError, Result};
pub use files::{FolderLock, LOCK_FILE, digest_bytes, digest_file, lock_folder, refuse_foreign_folder};
pub use manifest::{ConceptFiles, FORMAT, Manifest, RuleFile, RunId, Timings, rule_file_name};
pub use merge::merge;
pub use runner::{ACTIVATION_FILE, DEFAULT_CHUNK, Outcome, Runner, Targets, map_chunks, shard_range};
pub use source::{ArraySource, ByteSource, NpySource, Source};
