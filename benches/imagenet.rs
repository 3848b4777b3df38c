//! ImageNet architecture families: `cargo bench -- imagenet/`.
//!
//! Always: the small variants of `tests/fixtures/scale/` (ResNet bottleneck, VGG, MobileNetV2, EfficientNet-B0,
//! legacy exports), forward pass and LRP-ε of their inputs, in-process, on the threads of the global pool.
//!
//! With `LRP_IMAGENET_DIR` set to a folder of 224×224 exports (`resnet50-legacy.onnx`, `vgg16-legacy.onnx`,
//! `mobilenet_v2-legacy.onnx`, `efficientnet_b0-legacy.onnx`, those present) and `LRP_IMAGENET_INPUTS` to an `.npy`
//! of photos `[N, 3, 224, 224]` (`lrp prepare` makes it): for each network, whole-process `lrp batch --rule
//! epsilon` over the photos with default flags (start-up and model loading included, as a user runs it) and
//! `lrp explain` of the first photo alone. These exports are hundreds of MB, so they live outside the repository;
//! `benches/python/imagenet_table.py` runs the same commands beside Zennit for the README's table.
//!
//! The machine's GEMM rate for these figures comes from `benches/gemm.rs` (`gemm/`) in the same run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use lrp_rules::{Explainer, Spec, Target};
use ndarray::ArrayD;

fn small(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scale");
    let mut group = c.benchmark_group("imagenet/small");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    for name in [
        "resnet_bottleneck_l2",
        "vgg_s",
        "mobilenet_v2_w0.35",
        "efficientnet_b0_w0.25_d0.25",
    ] {
        let net = lrp_onnx::import_file(&root.join(format!("{name}-legacy.onnx")))
            .expect("a fixture model")
            .network;
        let x: ArrayD<f32> = ndarray_npy::read_npy(root.join(format!("{name}-inputs.npy"))).expect("its inputs");
        let ex = Explainer::new(&net, &Spec::parse("epsilon").expect("preset")).expect("resolves");
        group.throughput(Throughput::Elements(x.shape()[0] as u64));
        group.bench_with_input(BenchmarkId::new("forward", name), &x, |b, x| {
            b.iter(|| std::hint::black_box(net.forward(x.view()).expect("valid input")))
        });
        group.bench_with_input(BenchmarkId::new("epsilon", name), &x, |b, x| {
            b.iter(|| std::hint::black_box(ex.explain(x.view(), &Target::Predicted).expect("explains")))
        });
    }
    group.finish();
}

fn full(c: &mut Criterion) {
    let (Some(dir), Some(inputs)) = (
        std::env::var_os("LRP_IMAGENET_DIR").map(PathBuf::from),
        std::env::var_os("LRP_IMAGENET_INPUTS").map(PathBuf::from),
    ) else {
        eprintln!("imagenet/224: set LRP_IMAGENET_DIR and LRP_IMAGENET_INPUTS to measure the 224×224 networks");
        return;
    };
    let x: ArrayD<f32> = ndarray_npy::read_npy(&inputs).expect("the photos");
    let tmp = tempfile::tempdir().expect("temporary folder");
    let one = tmp.path().join("one.npy");
    ndarray_npy::write_npy(&one, &x.slice_axis(ndarray::Axis(0), (0..1).into()).to_owned())
        .expect("writes the first photo");
    let mut group = c.benchmark_group("imagenet/224");
    group.sample_size(10).measurement_time(Duration::from_secs(30));
    for family in ["resnet50", "vgg16", "mobilenet_v2", "efficientnet_b0"] {
        let model = dir.join(format!("{family}-legacy.onnx"));
        if !model.exists() {
            continue;
        }
        let m = model.to_str().expect("utf-8 path");
        group.throughput(Throughput::Elements(x.shape()[0] as u64));
        let mut k = 0u64;
        group.bench_function(BenchmarkId::new("batch-epsilon", family), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    k += 1;
                    let out = tmp.path().join(format!("run-{k}"));
                    let t0 = Instant::now();
                    crate::e2e::run(&[
                        "batch",
                        "--model",
                        m,
                        "--input",
                        inputs.to_str().expect("utf-8 path"),
                        "--rule",
                        "epsilon",
                        "--out",
                        out.to_str().expect("utf-8 path"),
                    ]);
                    total += t0.elapsed();
                    let _ = std::fs::remove_dir_all(&out);
                }
                total
            })
        });
        group.throughput(Throughput::Elements(1));
        let r = tmp.path().join("one-r.npy");
        group.bench_function(BenchmarkId::new("explain-one-photo", family), |b| {
            b.iter(|| {
                crate::e2e::run(&[
                    "explain",
                    "--model",
                    m,
                    "--input",
                    one.to_str().expect("utf-8 path"),
                    "--rule",
                    "epsilon",
                    "--out",
                    r.to_str().expect("utf-8 path"),
                ])
            })
        });
    }
    group.finish();
}

criterion_group!(benches, small, full);
