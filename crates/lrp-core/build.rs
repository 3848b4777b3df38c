//! Tells the tests whether the machine that builds them has AVX-512F: tests of the AVX-512 kernels are then run,
//! and reported as ignored (not passed) where it has not.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(lrp_avx512_host)");
    println!("cargo::rerun-if-changed=build.rs");
    let native = std::env::var("TARGET").ok() == std::env::var("HOST").ok();
    #[cfg(target_arch = "x86_64")]
    if native && std::arch::is_x86_feature_detected!("avx512f") {
        println!("cargo::rustc-cfg=lrp_avx512_host");
    }
    let _ = native;
}
