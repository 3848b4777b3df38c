//! ImageNet architecture families: `cargo bench -- imagenet/`.
//!
//! Always: the small variants of `tests/fixtures/scale/` (ResNet bottleneck, VGG, MobileNetV2, EfficientNet-B0,
//! legacy exports), forward pass and LRP-ε of their inputs, in-process, on the threads of the global pool.
//!
//! With `LRP_IMAGENET_DIR` set to a folder of 224×224 exports (`resnet50-legacy.onnx`, `vgg16-legacy.onnx`,
//! `mobilenet_v2-legacy.onnx`, `efficientnet_b0-legacy.onnx`, those present) and `LRP_IMAGENET_INPUTS` to an `.npy`
//! of photos `[N, 3, 224, 224]` (`lrp prepare` makes it): for each network, whole-process `lrp batch --rule
//! epsilon` over the photos with default flags (start-up and model loading included, as a user runs it) and
//! `lrp explain` of the first photo alone; and in-process (`imagenet/224-in-process`: the model loaded once, the
//! allocator as `lrp` sets it up), ε over the first photo alone and over all the photos, so the two rates show
//! how busy the threads are on one photo, loading apart. These exports are hundreds of MB, so they live outside the repository;
//! `benches/python/imagenet_table.py` runs the same commands beside Zennit for the README's table.
//!
//! The machine's GEMM rate for these figures comes from `benches/gemm.rs` (`gemm/`) in the same run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use lrp_core::Layer;
use lrp_rules::{Explainer, Spec, Target};
use ndarray::ArrayD;

/// A small variant of `tests/fixtures/scale/` (legacy export) and its inputs.
fn fixture(name: &str) -> (lrp_core::Network, ArrayD<f32>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scale");
    let net = lrp_onnx::import_file(&root.join(format!("{name}-legacy.onnx")))
        .expect("a fixture model")
        .network;
    let x = ndarray_npy::read_npy(root.join(format!("{name}-inputs.npy"))).expect("its inputs");
    (net, x)
}

fn small(c: &mut Criterion) {
    let mut group = c.benchmark_group("imagenet/small");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    for name in [
        "resnet_bottleneck_l2",
        "vgg_s",
        "mobilenet_v2_w0.35",
        "efficientnet_b0_w0.25_d0.25",
    ] {
        let (net, x) = fixture(name);
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

/// The networks of the README's table.
const TABLE: [&str; 4] = ["resnet50", "vgg16", "mobilenet_v2", "efficientnet_b0"];

/// `LRP_IMAGENET_DIR` (the folder of exports) and `LRP_IMAGENET_INPUTS` (the photos), when both are set.
fn exports_and_photos() -> Option<(PathBuf, PathBuf)> {
    Some((
        std::env::var_os("LRP_IMAGENET_DIR").map(PathBuf::from)?,
        std::env::var_os("LRP_IMAGENET_INPUTS").map(PathBuf::from)?,
    ))
}

/// Each of `families` whose legacy export is in `dir`, with its path.
fn exports<'a>(dir: &'a Path, families: &'a [&'static str]) -> impl Iterator<Item = (&'static str, PathBuf)> + 'a {
    families
        .iter()
        .map(move |&f| (f, dir.join(format!("{f}-legacy.onnx"))))
        .filter(|(_, model)| model.exists())
}

fn full(c: &mut Criterion) {
    let Some((dir, inputs)) = exports_and_photos() else {
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
    for (family, model) in exports(&dir, &TABLE) {
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
    in_process(c, &dir, &x);
}

/// `imagenet/224-in-process`: ε over the first photo and over all of them, each network loaded once. One photo is
/// one block whose layers split their work across the threads; a batch gives each thread its own samples.
fn in_process(c: &mut Criterion, dir: &Path, x: &ArrayD<f32>) {
    lrp_batch::keep_freed_memory();
    let one = x.slice_axis(ndarray::Axis(0), (0..1).into()).to_owned();
    let mut group = c.benchmark_group("imagenet/224-in-process");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    for (family, model) in exports(dir, &TABLE) {
        let net = lrp_onnx::import_file(&model).expect("an export").network;
        let ex = Explainer::new(&net, &Spec::parse("epsilon").expect("preset")).expect("resolves");
        for (what, input) in [("one-photo", &one), ("all-photos", x)] {
            group.throughput(Throughput::Elements(input.shape()[0] as u64));
            group.bench_function(BenchmarkId::new(format!("epsilon-{what}"), family), |b| {
                b.iter(|| std::hint::black_box(ex.explain(input.view(), &Target::Predicted).expect("explains")))
            });
        }
    }
    group.finish();
}

/// A convolution, the value it reads and its output shape.
type ConvCase = (Layer, ArrayD<f32>, Vec<usize>);

/// The convolutions of a network grouped by kind, each with the value it reads in one forward pass of `x`, and
/// each kind's FLOPs.
fn conv_kinds(net: &lrp_core::Network, x: &ArrayD<f32>) -> Vec<(&'static str, Vec<ConvCase>, u64)> {
    let trace = net.forward_trace(x.view()).expect("valid input");
    let mut kinds: Vec<(&'static str, Vec<ConvCase>, u64)> = Vec::new();
    for (k, (layer, inputs)) in net.nodes().into_iter().enumerate() {
        let Layer::Conv2d(conv) = &layer else { continue };
        let kind = match (conv.groups, conv.window.kernel) {
            (1, [1, 1]) => "1x1",
            (1, [3, 3]) => "3x3",
            (1, _) => "other-dense",
            (g, _) if g == conv.in_channels() && conv.weight.shape()[1] == 1 => "depthwise",
            _ => "grouped",
        };
        let xin = trace.value(inputs[0]).clone();
        let y = trace.value(k + 1).shape().to_vec();
        // Multiply-adds: every output value sums over its group's input channels × the kernel taps.
        let macs = (y.iter().product::<usize>() * conv.weight.len() / conv.out_channels()) as u64;
        match kinds.iter_mut().find(|(name, _, _)| *name == kind) {
            Some((_, cases, flops)) => {
                cases.push((layer.clone(), xin, y));
                *flops += 2 * macs;
            }
            None => kinds.push((kind, vec![(layer.clone(), xin, y)], 2 * macs)),
        }
    }
    kinds
}

/// `imagenet/layers`: GFLOP/s of the convolutions by kind (3×3, 1×1, depthwise, grouped: RegNet's), forward and
/// transposed (the backward pass of ε and of the gradient), over one sample on the threads of the global pool.
/// Criterion's "elem/s" are FLOP/s here. The small variants always; the 224×224 exports with `LRP_IMAGENET_DIR` and
/// `LRP_IMAGENET_INPUTS` (the first photo).
fn layer_kinds(c: &mut Criterion) {
    // The allocator as `lrp` sets it up: freed buffers are kept, so a layer's output is not a fresh mapping whose
    // page faults and zeroing would be counted as the convolution's time (perf: 25–47% of the depthwise figures).
    lrp_batch::keep_freed_memory();
    let mut nets: Vec<(String, lrp_core::Network, ArrayD<f32>)> = Vec::new();
    for name in [
        "resnet_bottleneck_l2",
        "mobilenet_v2_w0.35",
        "efficientnet_b0_w0.25_d0.25",
        "regnet_y_small",
    ] {
        let (net, x) = fixture(name);
        nets.push((
            name.to_string(),
            net,
            x.slice_axis(ndarray::Axis(0), (0..1).into()).to_owned(),
        ));
    }
    if let Some((dir, inputs)) = exports_and_photos() {
        let x: ArrayD<f32> = ndarray_npy::read_npy(&inputs).expect("the photos");
        let one = x.slice_axis(ndarray::Axis(0), (0..1).into()).to_owned();
        for (family, model) in exports(&dir, &[TABLE.as_slice(), &["regnet_y_400mf"]].concat()) {
            let net = lrp_onnx::import_file(&model).expect("an export").network;
            nets.push((family.to_string(), net, one.clone()));
        }
    }
    let mut group = c.benchmark_group("imagenet/layers");
    group.sample_size(10).measurement_time(Duration::from_secs(3));
    for (name, net, x) in &nets {
        for (kind, cases, flops) in conv_kinds(net, x) {
            group.throughput(Throughput::Elements(flops));
            group.bench_function(BenchmarkId::new(format!("forward/{name}"), kind), |b| {
                b.iter(|| {
                    for (layer, xin, y) in &cases {
                        std::hint::black_box(layer.forward(&[xin.view()], &y[1..]));
                    }
                })
            });
            let grads: Vec<ArrayD<f32>> = cases
                .iter()
                .map(|(_, _, y)| ArrayD::from_elem(y.clone(), 0.5))
                .collect();
            group.bench_function(BenchmarkId::new(format!("transposed/{name}"), kind), |b| {
                b.iter(|| {
                    for ((layer, xin, _), g) in cases.iter().zip(&grads) {
                        std::hint::black_box(layer.backward(&[xin.view()], g.view()));
                    }
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, small, full, layer_kinds);
