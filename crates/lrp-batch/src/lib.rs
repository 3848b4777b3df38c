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

/// Has the allocator keep freed memory for reuse. Explaining in chunks allocates and frees the same few megabytes
/// over and over; glibc's defaults hand them back to the kernel after each chunk (mmap for blocks over 128 KiB,
/// trimming of the heap top), and taking them back costs a page fault per 4 KiB: 190,000 faults and a third of a
/// second of system time for the 10,000 MNIST digits from an .npy. Call it at start-up (the `lrp` binary and the
/// benchmarks that measure what it runs do). Elsewhere than glibc on Linux it does nothing.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator's thresholds (glibc takes the arena's lock to change them).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
