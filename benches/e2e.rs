//! Whole-process `lrp batch` over the 10,000 MNIST test images, 2 threads, LRP-ε: the shipped CNN and MLP from the
//! IDX files (`--data`) and from the same images as one float32 `.npy` (`--input`), and the CNN under
//! `epsilon-gamma-box`. Each iteration is a fresh process writing a fresh folder (start-up, reading, writing
//! included), as a user runs it; removing the folder afterwards is not timed. `cargo bench -- e2e/`
//!
//! Beside them, `benches/gemm.rs` (`gemm/`, its own process) measures this machine's float32 GEMM rate in the same
//! run, the reference the figures are given as shares of.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use lrp_core::{Dataset, Split};

/// One explanation of the shipped CNN under LRP-ε, in floating-point operations: the forward pass (2.23 MFLOP)
/// and the transposed pass of the same size.
#[allow(dead_code)]
pub const CNN_EPSILON_FLOP: f64 = 4.46e6;

/// Runs the `lrp` binary from the repository root and asserts it succeeded.
pub(crate) fn run(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_lrp"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("lrp runs");
    assert!(
        out.status.success(),
        "lrp {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn e2e(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().expect("temporary folder");
    let data = Dataset::load(&root.join("data/mnist"), Split::Test).expect("shipped MNIST");
    let npy = tmp.path().join("test.npy");
    ndarray_npy::write_npy(&npy, &data.images).expect("writes the .npy");
    let npy = npy.to_str().expect("utf-8 path").to_string();
    let n = data.len() as u64;
    let mut group = c.benchmark_group("e2e");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15))
        .throughput(Throughput::Elements(n));
    let mut k = 0u64;
    for (model, rule, source) in [
        ("cnn", "epsilon", "data"),
        ("cnn", "epsilon", "input"),
        ("cnn", "epsilon-gamma-box", "data"),
        ("mlp", "epsilon", "data"),
        ("mlp", "epsilon", "input"),
    ] {
        let path = format!("data/models/mnist-{model}.lrpm");
        let (flag, value) = if source == "data" {
            ("--data", "data/mnist")
        } else {
            ("--input", npy.as_str())
        };
        group.bench_function(format!("{model}/{rule}/{source}"), |b| {
            // Timed: the process, from its start to its exit. Not timed: removing its folder afterwards (a few
            // milliseconds for the 31 MB of an MLP run, which no user's run includes).
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    k += 1;
                    let out = tmp.path().join(format!("run-{k}"));
                    let started = Instant::now();
                    run(&[
                        "batch",
                        "--model",
                        &path,
                        flag,
                        value,
                        "--rule",
                        rule,
                        "--threads",
                        "2",
                        "--out",
                        out.to_str().expect("utf-8 path"),
                    ]);
                    timed += started.elapsed();
                    std::fs::remove_dir_all(&out).expect("removes the run");
                }
                timed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, e2e);
