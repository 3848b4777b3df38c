//! Criterion benchmarks: `cargo bench`. One module per area.

mod batch;
mod forward;
mod rules;

criterion::criterion_main!(forward::benches, rules::benches, batch::benches);
