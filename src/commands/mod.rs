//! One module per subcommand.

pub mod batch;
pub mod concepts;
pub mod convert;
pub mod eval;
pub mod explain;
pub mod info;
pub mod predict;
pub mod prepare;
pub mod train;
pub mod view;

/// The worker count of `--threads` (default: every core), checked, with rayon's global pool bounded to it
/// ([`limit_global_pool`]). More than 4× the cores only costs memory and thread start-up; an absurd count is a typo.
pub(crate) fn worker_threads(threads: Option<usize>) -> anyhow::Result<usize> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let n = threads.unwrap_or(cores);
    if n == 0 || n > 4 * cores {
        anyhow::bail!(
            "--threads {n}: give 1 to {} (4 × the {cores} cores of this machine)",
            4 * cores
        );
    }
    limit_global_pool(threads);
    Ok(n)
}

/// Bounds rayon's global pool to `--threads` when given, before the model is loaded: loading converts large
/// weights on the pool it runs in (lrp-onnx), and `--threads 1` on a shared node must mean one thread there too.
/// The job's own pool (lrp-batch) is built with the same count.
pub(crate) fn limit_global_pool(threads: Option<usize>) {
    if let Some(t) = threads {
        // An error only says the global pool already exists (it is built on first use): nothing ran on it yet in
        // a command that calls this first, and a second call keeps the first count.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(t.max(1)).build_global();
    }
}
