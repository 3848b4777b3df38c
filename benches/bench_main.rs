//! Criterion benchmarks: `cargo bench`. One module per area.

mod batch;
mod e2e;
mod forward;
mod graphs;
mod imagenet;
mod rules;
mod view;
mod vit;

criterion::criterion_main!(
    forward::benches,
    rules::benches,
    batch::benches,
    graphs::benches,
    view::benches,
    vit::benches,
    e2e::benches,
    imagenet::benches
);
