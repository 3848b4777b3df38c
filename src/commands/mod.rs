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
