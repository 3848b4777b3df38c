//! The shipped residual network (a graph): forward passes and LRP-ε explanations per second at batch 1 and 256,
//! one thread, next to the shipped CNN (a chain) measured the same way in the same run.
//! `cargo bench -- graphs/`

use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use lrp_core::{Dataset, Model, Split};
use lrp_rules::{Explainer, Spec, Target};
use ndarray::s;

fn graphs(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = Dataset::load(&root.join("data/mnist"), Split::Test).expect("shipped MNIST");
    for name in ["mnist-resnet", "mnist-cnn"] {
        let model = Model::load(&root.join(format!("data/models/{name}.lrpm"))).expect("shipped model");
        let net = &model.network;
        let ex = Explainer::new(net, &Spec::parse("epsilon").expect("preset")).expect("resolves");
        let mut group = c.benchmark_group(format!("graphs/{name}"));
        for batch in [1usize, 256] {
            let x = data.images.slice(s![..batch, .., .., ..]).to_owned().into_dyn();
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(BenchmarkId::new("forward", batch), &x, |b, x| {
                b.iter(|| black_box(net.forward(x.view()).expect("valid input")))
            });
            group.bench_with_input(BenchmarkId::new("epsilon", batch), &x, |b, x| {
                b.iter(|| black_box(ex.explain(x.view(), &Target::Predicted).expect("explains")))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, graphs);
