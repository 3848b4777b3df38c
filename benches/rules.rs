//! Every preset on the shipped MLP and CNN at batch 1 and 64, one group per model, the forward pass beside them:
//! `cargo bench -- rules/mnist-cnn` compares rules side by side (throughput = explanations per second).

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use lrp_core::{Dataset, Model, Split};
use lrp_rules::{Explainer, PRESETS, Spec, Target};
use ndarray::s;

fn rules(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = Dataset::load(&root.join("data/mnist"), Split::Test).expect("shipped MNIST");
    for name in ["mnist-cnn", "mnist-mlp"] {
        let model = Model::load(&root.join(format!("data/models/{name}.lrpm"))).expect("shipped model");
        let net = &model.network;
        let mut group = c.benchmark_group(format!("rules/{name}"));
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(2))
            .warm_up_time(Duration::from_millis(500));
        for batch in [1usize, 64] {
            let x = data.images.slice(s![..batch, .., .., ..]).to_owned().into_dyn();
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(BenchmarkId::new("forward", batch), &x, |b, x| {
                b.iter(|| black_box(net.forward(x.view()).expect("valid input")))
            });
            for preset in PRESETS {
                let explainer = Explainer::new(net, &Spec::parse(preset).expect("preset")).expect("resolves");
                group.bench_with_input(BenchmarkId::new(*preset, batch), &x, |b, x| {
                    b.iter(|| black_box(explainer.explain(x.view(), &Target::Predicted).expect("explains")))
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, rules);
