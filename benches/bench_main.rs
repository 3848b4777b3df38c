//! Criterion benchmarks: `cargo bench`. One module per area.

mod forward;
mod rules;

criterion::criterion_main!(forward::benches, rules::benches);
