//! Forward throughput of the shipped models (images/s) at batch 1 and 256.

use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use lrp_core::{Dataset, Model, Split};
use ndarray::s;

fn forward(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = Dataset::load(&root.join("data/mnist"), Split::Test).expect("shipped MNIST");
    for name in ["mnist-cnn", "mnist-mlp"] {
        let model = Model::load(&root.join(format!("data/models/{name}.lrpm"))).expect("shipped model");
        let mut group = c.benchmark_group(format!("forward/{name}"));
        for batch in [1usize, 256] {
            let x = data.images.slice(s![..batch, .., .., ..]).to_owned().into_dyn();
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(BenchmarkId::from_parameter(batch), &x, |b, x| {
                b.iter(|| black_box(model.network.forward(x.view()).expect("valid input")))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, forward);
