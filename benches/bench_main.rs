//! Criterion benchmarks: `cargo bench`. One module per area.

mod forward;

criterion::criterion_main!(forward::benches);
