//! This machine's float32 GEMM rate, 2 threads, the reference every speed figure is given as a share of:
//! `cargo bench -- gemm/`. Three ways, the reference being the fastest: the `gemm` crate that faer and candle use
//! (1024³, its own 2-thread split); `matrixmultiply` (what ndarray and lrp use), one 1024³ product per thread on both
//! threads at once (lrp's batch runs one chunk per thread); and the same with 64 products of 256³ per thread
//! (operands in each core's L2, as lrp's per-sample products are: the cores' peak). On this project's machine the
//! three differ by almost 2×, and a share against the slowest would flatter every figure.
//!
//! Its own bench target, so it runs in a process of its own, apart from the groups that load models and data. (When
//! the matrixmultiply rates were first added they came out at half of a stand-alone program's; the stand-alone
//! program had matrixmultiply's default `avx512` feature and lrp did not. The workspace now switches it on.)

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn gemm_rate(c: &mut Criterion) {
    const N: usize = 1024;
    let a = vec![1.0f32; N * N];
    let b = vec![0.5f32; N * N];
    let mut dst = vec![0.0f32; N * N];
    let mut group = c.benchmark_group("gemm");
    // Throughput in "elements" = floating-point operations: criterion then prints FLOP/s as elem/s.
    group.throughput(Throughput::Elements((2 * N * N * N) as u64));
    group.sample_size(20);
    group.bench_function("sgemm-1024-2-threads", |bench| {
        bench.iter(|| {
            // SAFETY: the three buffers are N×N, row-major (row stride N, column stride 1), and dst does not alias.
            unsafe {
                gemm::gemm(
                    N,
                    N,
                    N,
                    dst.as_mut_ptr(),
                    1,
                    N as isize,
                    false,
                    a.as_ptr(),
                    1,
                    N as isize,
                    b.as_ptr(),
                    1,
                    N as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::Rayon(2),
                )
            }
        })
    });
    // Two threads, each its own product through ndarray (matrixmultiply, single-threaded); throughput counts both.
    // Each thread allocates its own operands (allocated by one thread and used by two, the 256³ rate was 30% lower
    // and varied from run to run).
    for m in [N, 256] {
        let reps = (N / m).pow(3);
        group.throughput(Throughput::Elements((2 * 2 * N * N * N) as u64));
        group.bench_function(format!("matrixmultiply-{m}-2-threads"), |bench| {
            bench.iter(|| {
                std::thread::scope(|scope| {
                    for _ in 0..2 {
                        scope.spawn(move || {
                            let a = ndarray::Array2::<f32>::from_elem((m, m), 1.0);
                            let b = ndarray::Array2::<f32>::from_elem((m, m), 0.5);
                            let mut c = ndarray::Array2::<f32>::zeros((m, m));
                            for _ in 0..reps {
                                ndarray::linalg::general_mat_mul(1.0, &a, &b, 0.0, &mut c);
                            }
                            c[[0, 0]]
                        });
                    }
                })
            })
        });
    }
    group.finish();
}

/// What a fresh 4 KiB page costs this machine: one thread writes a byte into each page of 64 MiB just handed out by
/// the kernel (`calloc` maps blocks this large afresh: they are over glibc's largest mmap threshold, 32 MiB), and
/// the block goes back at the end. Throughput in pages: `1e6 / rate` is microseconds a page, the price a fresh
/// process pays for each 4 KiB of weights and kept values it writes first (`imagenet_table.py` reads it beside the
/// one-photo time).
fn first_touch(c: &mut Criterion) {
    const BYTES: usize = 64 << 20;
    const PAGE: usize = 4096;
    let mut group = c.benchmark_group("memory");
    group.throughput(Throughput::Elements((BYTES / PAGE) as u64));
    group.sample_size(10);
    group.bench_function("first-touch-4KiB-page", |bench| {
        bench.iter(|| {
            let mut block = vec![0u8; BYTES];
            for page in block.chunks_exact_mut(PAGE) {
                // SAFETY: a write to the first byte of a live slice.
                unsafe { std::ptr::write_volatile(page.as_mut_ptr(), 1) };
            }
            std::hint::black_box(block)
        })
    });
    group.finish();
}

criterion_group!(benches, gemm_rate, first_touch);
criterion_main!(benches);
