//! The shipped vision transformer: forward passes and AttnLRP explanations per second at batch 1 and 256, one
//! thread, and gradient × input beside them (the same backward pass with the true Jacobians), so LRP ÷ forward is
//! read from one run. `cargo bench -- vit/`

use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use lrp_core::{Dataset, Model, Split};
use lrp_rules::{Explainer, Spec, Target};
use ndarray::s;

fn vit(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = Dataset::load(&root.join("data/mnist"), Split::Test).expect("shipped MNIST");
    let model = Model::load(&root.join("data/models/mnist-vit.lrpm")).expect("shipped model");
    let net = &model.network;
    let attn = Explainer::new(net, &Spec::parse("attnlrp").expect("preset")).expect("resolves");
    let gxi = Explainer::new(net, &Spec::parse("gradient-x-input").expect("preset")).expect("resolves");
    let mut group = c.benchmark_group("vit/mnist-vit");
    for batch in [1usize, 256] {
        let x = data.images.slice(s![..batch, .., .., ..]).to_owned().into_dyn();
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("forward", batch), &x, |b, x| {
            b.iter(|| black_box(net.forward(x.view()).expect("valid input")))
        });
        group.bench_with_input(BenchmarkId::new("attnlrp", batch), &x, |b, x| {
            b.iter(|| black_box(attn.explain(x.view(), &Target::Predicted).expect("explains")))
        });
        group.bench_with_input(BenchmarkId::new("gradient-x-input", batch), &x, |b, x| {
            b.iter(|| black_box(gxi.explain(x.view(), &Target::Predicted).expect("explains")))
        });
    }
    group.finish();
}

criterion_group!(benches, vit);
