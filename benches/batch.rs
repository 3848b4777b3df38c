//! The batch runner's pool over the 10,000 MNIST test images with 2 threads: explanations per second for the
//! shipped CNN and MLP, next to a forward pass over the same images on the same pool (for the LRP ÷ forward ratio).
//! `cargo bench -- batch-10k`

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group};
use lrp_batch::{BatchError, map_chunks};
use lrp_core::{Dataset, Model, Split};
use lrp_rules::{Explainer, Spec, Target};
use ndarray::Axis;

const THREADS: usize = 2;
const CHUNK: usize = 256;

fn batch(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = Dataset::load(&root.join("data/mnist"), Split::Test).expect("shipped MNIST");
    let images = data.images.into_dyn();
    let n = images.shape()[0];
    for (name, rules) in [
        ("mnist-cnn", &["epsilon", "epsilon-gamma-box"][..]),
        ("mnist-mlp", &["epsilon"][..]),
    ] {
        let model = Model::load(&root.join(format!("data/models/{name}.lrpm"))).expect("shipped model");
        let net = &model.network;
        let mut group = c.benchmark_group(format!("batch-10k/{name}"));
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(20))
            .throughput(Throughput::Elements(n as u64));
        group.bench_function("forward", |b| {
            b.iter(|| {
                map_chunks(n, CHUNK, THREADS, |r| -> Result<_, BatchError> {
                    Ok(black_box(
                        net.forward(images.slice_axis(Axis(0), r.into())).expect("valid"),
                    ))
                })
                .expect("runs")
            })
        });
        for rule in rules {
            // As the batch runner makes its explainers: without per-value sums, which nothing in a batch reads.
            let ex = Explainer::new(net, &Spec::parse(rule).expect("preset"))
                .expect("resolves")
                .without_layer_sums();
            group.bench_function(*rule, |b| {
                b.iter(|| {
                    map_chunks(n, CHUNK, THREADS, |r| -> Result<_, BatchError> {
                        let x = images.slice_axis(Axis(0), r.into());
                        Ok(black_box(
                            ex.explain(x, &Target::Predicted).expect("explains").relevance,
                        ))
                    })
                    .expect("runs")
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, batch);
