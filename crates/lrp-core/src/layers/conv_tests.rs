//! Tests of the convolution: unfolding, folding, and the direct path against im2col + GEMM.

use super::*;
use ndarray::Array2;

/// The whole-row unfold and fold of stride-1 unpadded convolutions give the general loops' bits.
#[test]
fn dense_unfold_and_fold_are_the_general_ones_bit_for_bit() {
    for (g, c, h, w, kh, kw) in [
        (3, 2, 7, 9, 3, 2),
        (2, 1, 28, 28, 5, 5),
        (1, 4, 5, 5, 5, 5),
        (2, 3, 6, 4, 1, 3),
    ] {
        let taps = Taps {
            kernel: [kh, kw],
            stride: [1, 1],
            pads: [0; 4],
            dilation: [1, 1],
        };
        assert!(taps.is_dense());
        let (oh, ow) = (h - kh + 1, w - kw + 1);
        let x = Array4::from_shape_fn((g, c, h, w), |(a, b, y, z)| {
            ((a * 131 + b * 31 + y * 7 + z) % 23) as f32 * 0.37 - 3.1
        });
        let rows = c * kh * kw;
        let mut fast = Array2::<f32>::from_elem((rows, g * oh * ow), f32::NAN);
        let mut general = Array2::<f32>::from_elem((rows, g * oh * ow), f32::NAN);
        im2col(x.view(), &taps, oh, ow, &mut fast.view_mut(), true);
        im2col_general(
            x.as_slice().unwrap(),
            x.dim(),
            &taps,
            oh,
            ow,
            &mut general.view_mut(),
            true,
        );
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(fast.as_slice().unwrap()), bits(general.as_slice().unwrap()));
        // Fold a matrix of distinct values back (overlapping taps add): the same sums in the same order.
        let m = Array2::from_shape_fn((rows, g * oh * ow), |(r, q)| {
            ((r * 17 + q * 5) % 29) as f32 * 0.113 + 0.01
        });
        let mut fast = vec![0.5f32; g * c * h * w];
        let mut general = fast.clone();
        col2im(m.view(), &taps, oh, ow, &mut fast, (c, h, w), true);
        col2im_general(m.view(), &taps, oh, ow, &mut general, (c, h, w), true);
        assert_eq!(bits(&fast), bits(&general));
    }
}

/// Inputs, weights and output-side values of mixed sign and magnitude for a convolution test.
fn case(n: usize, c: usize, h: usize, w: usize, o: usize, kh: usize, kw: usize) -> (Array4<f32>, Conv2d) {
    let x = Array4::from_shape_fn((n, c, h, w), |(a, b, y, z)| {
        let v = ((a * 131 + b * 31 + y * 7 + z * 3) % 23) as f32 * 0.37 - 3.1;
        if (y + z) % 5 == 0 { v * 1e-3 } else { v }
    });
    let weight = Array4::from_shape_fn((o, c, kh, kw), |(a, b, y, z)| {
        ((a * 17 + b * 13 + y * 5 + z * 11) % 19) as f32 * 0.071 - 0.6
    });
    let bias = Array1::from_shape_fn(o, |i| i as f32 * 0.25 - 1.0);
    (x, Conv2d::new(weight, Some(bias), [1, 1], [0; 4]))
}

fn bits(v: &Array4<f32>) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

/// The direct convolution with `kernels` gives im2col + GEMM's bits, forward (with and without the bias) and,
/// where the transposed direct path takes the shape, transposed — also over an output full of NaN (it is not
/// zeroed: every value must be written).
fn direct_is_gemm(kernels: Kernels, (n, c, h, w, o, kh, kw): (usize, usize, usize, usize, usize, usize, usize)) {
    let (x, conv) = case(n, c, h, w, o, kh, kw);
    for with_bias in [false, true] {
        let direct = conv.forward_with(x.view(), with_bias, Paths::direct(kernels));
        let gemm = conv.forward_with(x.view(), with_bias, Paths::GEMM);
        assert_eq!(
            bits(&direct),
            bits(&gemm),
            "{kernels:?}: {n}×{c}×{h}×{w} → {o}, {kh}×{kw}, bias {with_bias}"
        );
    }
    // The transposed product on values of mixed sign, some exact zeros (as after a ReLU and max pooling).
    let (oh, ow) = (h - kh + 1, w - kw + 1);
    let s = Array4::from_shape_fn((n, o, oh, ow), |(a, b, y, z)| {
        let v = ((a * 7 + b * 29 + y * 13 + z * 3) % 17) as f32 * 0.29 - 2.3;
        if (b + y * 3 + z) % 4 == 0 { 0.0 } else { v }
    });
    let direct = conv.transpose_with(s.view(), (h, w), Paths::direct(kernels));
    let gemm = conv.transpose_with(s.view(), (h, w), Paths::GEMM);
    assert_eq!(
        bits(&direct),
        bits(&gemm),
        "{kernels:?}: transposed {n}×{o}×{oh}×{ow} → {c}×{h}×{w}, {kh}×{kw}"
    );
    let wm: Vec<f32> = conv.weight.iter().copied().collect();
    if let Some(pt) = super::super::direct::PreparedT::new(&wm, o, (c, h, w), (kh, kw)) {
        let ss = s.as_slice().unwrap();
        let mut out = vec![std::mem::MaybeUninit::new(f32::NAN); n * c * h * w];
        for (sj, oj) in ss.chunks_exact(o * oh * ow).zip(out.chunks_exact_mut(c * h * w)) {
            super::super::direct::transpose_sample(sj, &pt, oj, kernels);
        }
        // SAFETY: every element was initialised (to NaN) before the call.
        let out: Vec<u32> = out.iter().map(|v| unsafe { v.assume_init() }.to_bits()).collect();
        assert_eq!(
            out,
            bits(&gemm),
            "{kernels:?} over NaN: {n}×{o}×{oh}×{ow} → {c}×{h}×{w}, {kh}×{kw}"
        );
    }
}

/// Channel counts below, at and above one and two vectors, depths below and above matrixmultiply's block of 256
/// (one and two blocks summed), widths that need every tile width.
const SHAPES: [(usize, usize, usize, usize, usize, usize, usize); 13] = [
    (2, 1, 28, 28, 16, 5, 5),
    (3, 16, 12, 12, 32, 5, 5),
    (1, 3, 9, 40, 20, 3, 3),
    (2, 30, 7, 11, 48, 3, 3),
    (1, 2, 5, 31, 1, 1, 2),
    (1, 12, 6, 6, 33, 5, 5),
    (2, 3, 9, 6, 5, 2, 3),
    (1, 5, 4, 20, 7, 1, 5),
    (2, 2, 3, 3, 4, 1, 3),
    (2, 3, 11, 28, 16, 5, 5),
    (1, 2, 9, 40, 5, 4, 6),
    (2, 4, 7, 19, 6, 3, 4),
    (1, 1, 30, 30, 3, 3, 2),
];

/// Every output channel count from 1 to 130 (a tail of fewer than 32 channels after whole pairs of vectors
/// once panicked: `tile 1×12 is not in the width lists`), on rows that need each tile width, and the
/// pointwise (1×1) convolutions of MobileNet, SqueezeNet and ShuffleNet, which take the direct path.
fn sweep() -> Vec<(usize, usize, usize, usize, usize, usize, usize)> {
    let mut v: Vec<_> = (1..=130).map(|o| (1, 3, 5, 14, o, 3, 3)).collect();
    v.extend((1..=130).step_by(7).map(|o| (2, 4, 3, 13, o, 1, 1)));
    for (c, o, hw) in [
        (16, 96, 14),
        (24, 144, 7),
        (32, 192, 7),
        (96, 576, 4),
        (320, 1280, 2),
        (64, 16, 9),
        (16, 64, 9),
        (58, 58, 7),
        (232, 1024, 2),
    ] {
        v.push((1, c, hw, hw, o, 1, 1));
    }
    v
}

/// The portable kernels, on every machine: the bits of im2col + GEMM.
#[test]
fn portable_direct_convolution_is_gemm_bit_for_bit() {
    for shape in SHAPES.into_iter().chain(sweep()) {
        direct_is_gemm(Kernels::Portable, shape);
    }
}

/// The AVX-512 kernels (where this machine has them): the bits of im2col + GEMM.
#[test]
#[cfg_attr(not(lrp_avx512_host), ignore = "this machine has no AVX-512F")]
fn avx512_direct_convolution_is_gemm_bit_for_bit() {
    let kernels = Kernels::fast().expect("the build found AVX-512F on this machine, the run does not");
    for shape in SHAPES.into_iter().chain(sweep()) {
        direct_is_gemm(kernels, shape);
    }
}

/// Strided, padded, dilated and grouped convolutions (depthwise among them, which take the depthwise path where
/// the processor has FMA): the layer's path gives the GEMM path's bits for every shape of the sweep.
#[test]
fn other_convolutions_keep_to_gemm() {
    for (groups, stride, pad, dilation, c, o) in [
        (1, 2, 1, 1, 3, 33),
        (4, 1, 1, 1, 8, 12),
        (8, 2, 1, 1, 8, 8),
        (16, 1, 1, 1, 16, 16),
        (1, 1, 2, 2, 3, 70),
        (2, 1, 0, 1, 4, 130),
    ] {
        let x = Array4::from_shape_fn((2, c, 9, 11), |(a, b, y, z)| {
            ((a * 5 + b * 3 + y * 7 + z) % 13) as f32 * 0.3 - 1.7
        });
        let w = Array4::from_shape_fn((o, c / groups, 3, 3), |(a, b, y, z)| {
            ((a + b * 3 + y * 5 + z * 7) % 11) as f32 * 0.1 - 0.5
        });
        let mut conv = Conv2d::new(w, None, [stride; 2], [pad; 4]);
        conv.groups = groups;
        conv.dilation = [dilation; 2];
        let fast = conv.forward_with(x.view(), false, Paths::fast());
        let gemm = conv.forward_with(x.view(), false, Paths::GEMM);
        assert_eq!(
            bits(&fast),
            bits(&gemm),
            "groups {groups}, stride {stride}, pad {pad}, dilation {dilation}"
        );
        let s = fast.mapv(|v| v * 0.5 - 0.1);
        let t_fast = conv.transpose_with(s.view(), (9, 11), Paths::fast());
        let t_gemm = conv.transpose_with(s.view(), (9, 11), Paths::GEMM);
        assert_eq!(bits(&t_fast), bits(&t_gemm));
    }
}

/// The shapes the transposed direct paths are written for, and the shipped CNN's two convolutions among them
/// (its second a small plane, its first rows of 24), so the bit-for-bit comparisons cover what runs.
#[test]
fn the_transposed_direct_path_takes_the_shapes_it_is_written_for() {
    for (_, c, h, w, o, kh, kw) in SHAPES {
        let (oh, ow) = (h - kh + 1, w - kw + 1);
        let wm = vec![0.5f32; o * c * kh * kw];
        let takes_direct = super::super::direct::PreparedT::new(&wm, o, (c, h, w), (kh, kw)).is_some();
        let small = ow.is_power_of_two() && ow <= 16 && oh * ow <= 64 && ow + kw <= 17 && kw <= 6;
        assert_eq!(takes_direct, small || (ow <= 32 && w <= 48 && kw <= 6));
    }
    for (c, h, w, o) in [(16, 12, 12, 32), (1, 28, 28, 16)] {
        let wm = vec![0.5f32; o * c * 25];
        assert!(
            super::super::direct::PreparedT::new(&wm, o, (c, h, w), (5, 5)).is_some(),
            "{c}×{h}×{w} → {o}"
        );
    }
}

/// A photo-sized sample (more multiply-adds than one thread takes) split into bands of output rows over the threads
/// of a pool of 2 and of 3, and a large padded product split by rows: the bits of the one-thread paths.
#[test]
#[cfg_attr(not(lrp_avx512_host), ignore = "this machine has no AVX-512F")]
fn large_samples_split_over_threads_give_the_same_bits() {
    let kernels = Kernels::fast().expect("the build found AVX-512F on this machine, the run does not");
    // 1×1 (ResNet's bottlenecks) and 3×3, 2 samples, about 8 M and 33 M multiply-adds each.
    for (c, h, o, k) in [(64, 56, 256, 1), (32, 30, 64, 3)] {
        let (x, conv) = case(2, c, h, h, o, k, k);
        let serial = conv.forward_with(x.view(), true, Paths::GEMM);
        for threads in [2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let split = pool.install(|| conv.forward_with(x.view(), true, Paths::direct(kernels)));
            assert_eq!(bits(&split), bits(&serial), "{c}→{o} {k}×{k} on {threads} threads");
        }
    }
    let (x, mut conv) = case(1, 64, 28, 28, 128, 3, 3);
    conv.window.pads = [1, 1, 1, 1];
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let serial = one.install(|| conv.forward_with(x.view(), false, Paths::GEMM));
    let serial_t = one.install(|| conv.transpose_with(serial.view(), (28, 28), Paths::GEMM));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let split = pool.install(|| conv.forward_with(x.view(), false, Paths::GEMM));
    let split_t = pool.install(|| conv.transpose_with(serial.view(), (28, 28), Paths::GEMM));
    assert_eq!(bits(&split), bits(&serial), "padded 3×3 product split by rows");
    assert_eq!(bits(&split_t), bits(&serial_t), "its transpose split by rows");
}

/// `conv`'s fast path gives im2col + GEMM's values on `x`, forward (with the bias) and transposed (of a gradient made
/// from GEMM's output), on one thread and split over a pool of two: the same bits. Then the same on `x` with a NaN
/// and an infinity planted: NaN exactly where GEMM has NaN (whose payload the order of a sum may choose), the same
/// bits elsewhere, so a path that drops or invents a non-finite value fails.
fn fast_path_gives_gemms_values(conv: &Conv2d, x: &Array4<f32>, case: &str) {
    let (n, c, h, w) = x.dim();
    let mut planted = x.clone();
    planted[(0, 0, 0, 0)] = f32::NAN;
    planted[(n - 1, c - 1, h / 2, w / 2)] = f32::INFINITY;
    let nan_as_one = |v: &Array4<f32>| -> Vec<u32> {
        v.iter()
            .map(|f| if f.is_nan() { u32::MAX } else { f.to_bits() })
            .collect()
    };
    for (x, input) in [(x, "finite"), (&planted, "NaN and ∞ planted")] {
        let gemm = conv.forward_with(x.view(), true, Paths::GEMM);
        let s = gemm.mapv(|v| v * 0.5 - 0.1);
        let t_gemm = conv.transpose_with(s.view(), (h, w), Paths::GEMM);
        let finite = input == "finite";
        if !finite {
            assert!(
                gemm.iter().any(|v| v.is_nan()) && t_gemm.iter().any(|v| v.is_nan()),
                "{case}: no NaN"
            );
        }
        // Depthwise planes side by side where they are small, and every plane on its own.
        for (threads, paths) in [1, 2]
            .into_iter()
            .flat_map(|t| Paths::depthwise_variants().into_iter().map(move |p| (t, p)))
        {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let fast = pool.install(|| conv.forward_with(x.view(), true, paths));
            let t_fast = pool.install(|| conv.transpose_with(s.view(), (h, w), paths));
            let case = format!("{case}, {threads} thread(s), depthwise {:?}", paths.depthwise);
            if finite {
                assert_eq!(bits(&fast), bits(&gemm), "forward, {case}");
                assert_eq!(bits(&t_fast), bits(&t_gemm), "transposed, {case}");
            } else {
                assert_eq!(nan_as_one(&fast), nan_as_one(&gemm), "forward, {input}, {case}");
                assert_eq!(nan_as_one(&t_fast), nan_as_one(&t_gemm), "transposed, {input}, {case}");
            }
        }
    }
}

/// The depthwise path (MobileNet's and EfficientNet's 3×3 and 5×5, strided, padded on one side only, dilated, a
/// channel multiplier of 2, planes smaller than the kernel's reach) gives im2col + GEMM's values, forward and
/// transposed, on one thread and split over a pool (a plane per task).
#[test]
fn depthwise_convolutions_give_gemms_values() {
    let mut ran = 0;
    for (c, per, k, stride, pads, dilation, (h, w)) in [
        (8, 1, 3, 1, [1, 1, 1, 1], 1, (9, 11)),
        (8, 1, 3, 2, [1, 1, 1, 1], 1, (9, 11)),
        (6, 1, 5, 2, [2, 2, 2, 2], 1, (13, 12)),
        (6, 1, 5, 1, [2, 2, 2, 2], 1, (3, 4)),
        (4, 1, 3, 2, [0, 0, 1, 1], 1, (8, 8)),
        (4, 1, 3, 1, [0, 2, 1, 0], 2, (10, 9)),
        (3, 2, 3, 1, [1, 1, 1, 1], 1, (7, 7)),
        (4, 1, 5, 2, [2, 2, 2, 2], 1, (3, 3)),
        (4, 1, 5, 2, [2, 2, 2, 2], 1, (2, 2)),
        (4, 1, 3, 2, [1, 1, 1, 1], 1, (1, 1)),
        (96, 1, 3, 1, [1, 1, 1, 1], 1, (112, 112)),
        // Small planes go 16 side by side: a last group of 4, of 4 with a multiplier of 2 (36 outputs), and 100
        // channels split over the pool.
        (20, 1, 3, 1, [1, 1, 1, 1], 1, (7, 7)),
        (18, 2, 3, 2, [1, 1, 1, 1], 1, (9, 9)),
        (40, 1, 5, 2, [2, 2, 2, 2], 1, (14, 13)),
        (100, 1, 3, 1, [1, 1, 1, 1], 1, (14, 14)),
        // Full groups of 16 are interleaved in blocks of 8 × 8: whole blocks and a tail, and a last group of 1
        // value by value, at stride 2 with padding on one side.
        (32, 1, 3, 1, [1, 1, 1, 1], 1, (28, 28)),
        (33, 1, 3, 2, [0, 1, 1, 0], 1, (27, 25)),
        // ConvNeXt's 7×7 kernels on 56×56 planes, and EfficientNet's 5×5 at stride 2 on an odd plane (side by side
        // forward, plane by plane transposed): in 512-bit registers, runs of 64 values and more at a time and a
        // remainder.
        (17, 1, 7, 1, [3, 3, 3, 3], 1, (56, 56)),
        (18, 1, 5, 2, [2, 1, 2, 2], 1, (53, 55)),
    ] {
        let x = Array4::from_shape_fn((2, c, h, w), |(a, b, y, z)| {
            let v = ((a * 5 + b * 3 + y * 7 + z) % 13) as f32 * 0.3 - 1.7;
            if (y * 3 + z) % 7 == 0 { v * 1e-4 } else { v }
        });
        let wt = Array4::from_shape_fn((c * per, 1, k, k), |(a, _, y, z)| {
            ((a + y * 5 + z * 7) % 11) as f32 * 0.1 - 0.5
        });
        // A bias of its own per channel: one taken from another channel fails.
        let bias = Array1::from_shape_fn(c * per, |i| 0.25 + i as f32 * 0.125);
        let mut conv = Conv2d::new(wt, Some(bias), [stride; 2], pads);
        conv.groups = c;
        conv.dilation = [dilation; 2];
        let case = format!("{c}×{per} channels, {k}×{k}, stride {stride}, pads {pads:?}, dilation {dilation}");
        fast_path_gives_gemms_values(&conv, &x, &case);
        ran += usize::from(conv.is_depthwise());
    }
    // Where the processor has FMA, every case ran the depthwise path, not GEMM twice.
    assert_eq!(ran, if super::super::depthwise::available() { 19 } else { 0 });
}

/// The grouped path (RegNet's groups of 8 channels, strided; fewer outputs than inputs a group and the reverse;
/// 5×5 dilated with padding on one side; planes smaller than the kernel's reach; sums as deep as GEMM's block of
/// 256, and one deeper, which keeps to GEMM) gives im2col + GEMM's values, forward and transposed, on one thread
/// and split over a pool (a group per task).
#[test]
fn grouped_convolutions_give_gemms_values() {
    let mut ran = 0;
    for (groups, cg, og, k, stride, pads, dilation, (h, w)) in [
        (2, 8, 8, 3, 1, [1, 1, 1, 1], 1, (14, 14)),
        (3, 8, 8, 3, 2, [1, 1, 1, 1], 1, (15, 13)),
        (3, 4, 2, 3, 1, [1, 1, 1, 1], 1, (9, 11)),
        (2, 2, 5, 5, 2, [2, 0, 1, 2], 2, (12, 10)),
        (2, 3, 3, 5, 1, [2, 2, 2, 2], 1, (2, 3)),
        (4, 16, 16, 4, 1, [0, 0, 0, 0], 1, (6, 6)),
        (2, 29, 3, 3, 1, [1, 1, 1, 1], 1, (5, 5)),
        (40, 8, 8, 3, 1, [1, 1, 1, 1], 1, (28, 28)),
    ] {
        let (c, o) = (groups * cg, groups * og);
        let x = Array4::from_shape_fn((2, c, h, w), |(a, b, y, z)| {
            let v = ((a * 5 + b * 3 + y * 7 + z) % 13) as f32 * 0.3 - 1.7;
            if (y * 3 + z) % 7 == 0 { v * 1e-4 } else { v }
        });
        let wt = Array4::from_shape_fn((o, cg, k, k), |(a, b, y, z)| {
            ((a * 3 + b + y * 5 + z * 7) % 11) as f32 * 0.1 - 0.5
        });
        // A bias of its own per channel: one taken from another channel fails.
        let bias = Array1::from_shape_fn(o, |i| 0.25 + i as f32 * 0.125);
        let mut conv = Conv2d::new(wt, Some(bias), [stride; 2], pads);
        conv.groups = groups;
        conv.dilation = [dilation; 2];
        let case =
            format!("{groups} groups of {cg} → {og}, {k}×{k}, stride {stride}, pads {pads:?}, dilation {dilation}");
        fast_path_gives_gemms_values(&conv, &x, &case);
        ran += usize::from(conv.is_grouped());
    }
    // Where the processor has FMA, every case but the one deeper than 256 ran the grouped path.
    assert_eq!(ran, if super::super::depthwise::available() { 7 } else { 0 });
}

/// Two groups of `cg` inputs and `og` outputs over every small geometry (kernel 1–`kmax`, stride 1–3, dilation 1–2,
/// `pads`, planes 1–`side` on a side, so planes smaller than the kernel's reach and outputs of one value): the fast
/// path's values are GEMM's, forward with and without the bias, and transposed. Returns the number of geometries.
fn sweep_small_geometries((cg, og): (usize, usize), kmax: usize, side: usize, pads: &[[usize; 4]]) -> usize {
    let mut cases = 0;
    for k in 1..=kmax {
        for stride in 1..=3 {
            for dilation in 1..=2 {
                for &pads in pads {
                    for (h, w) in (1..=side).flat_map(|h| (1..=side).map(move |w| (h, w))) {
                        let mut conv = Conv2d::new(
                            Array4::from_shape_fn((2 * og, cg, k, k), |(a, b, y, z)| {
                                (a * 2 + b + y * 3 + z) as f32 * 0.3 - 0.7
                            }),
                            Some(Array1::from_shape_fn(2 * og, |i| i as f32 * 0.3 - 0.7)),
                            [stride; 2],
                            pads,
                        );
                        conv.groups = 2;
                        conv.dilation = [dilation; 2];
                        let Some((oh, ow)) = conv.output_hw(h, w) else { continue };
                        let x = Array4::from_shape_fn((1, 2 * cg, h, w), |(_, b, y, z)| {
                            (b * 7 + y * 5 + z) as f32 * 0.1 - 1.3
                        });
                        let s = Array4::from_shape_fn((1, 2 * og, oh, ow), |(_, b, y, z)| {
                            (b + y * 2 + z * 3) as f32 * 0.2 - 0.9
                        });
                        let case = format!("{k}×{k}, stride {stride}, dilation {dilation}, pads {pads:?}, {h}×{w}");
                        // Depthwise planes side by side (these are all small) and each on its own.
                        for paths in Paths::depthwise_variants() {
                            let case = format!("{case}, depthwise {:?}", paths.depthwise);
                            for with_bias in [false, true] {
                                let fast = conv.forward_with(x.view(), with_bias, paths);
                                let gemm = conv.forward_with(x.view(), with_bias, Paths::GEMM);
                                assert_eq!(bits(&fast), bits(&gemm), "forward, bias {with_bias}, {case}");
                            }
                            let t_fast = conv.transpose_with(s.view(), (h, w), paths);
                            let t_gemm = conv.transpose_with(s.view(), (h, w), Paths::GEMM);
                            assert_eq!(bits(&t_fast), bits(&t_gemm), "transposed, {case}");
                        }
                        cases += 1;
                    }
                }
            }
        }
    }
    cases
}

/// Every small grouped geometry (two groups of 2 inputs and 3 outputs; kernel 1–4, planes 1–7 on a side): the
/// grouped path's values are GEMM's.
#[test]
fn grouped_sweep_of_small_geometries() {
    let cases = sweep_small_geometries((2, 3), 4, 7, &[[0, 0, 0, 0], [1, 1, 1, 1], [2, 0, 1, 2]]);
    assert!(cases > 1500, "{cases} geometries");
}

/// Every small depthwise geometry (kernel 1–5, planes 1–9 on a side, padding on any side): the depthwise path's
/// values are GEMM's.
#[test]
fn depthwise_sweep_of_small_geometries() {
    let cases = sweep_small_geometries((1, 1), 5, 9, &[[0, 0, 0, 0], [1, 1, 1, 1], [2, 0, 1, 2], [0, 2, 2, 1]]);
    assert!(cases > 5000, "{cases} geometries");
}

/// Padded stride-1 convolutions on planes of 20×20 and more take the direct path over the zero-padded input
/// (ResNet's and VGG's 3×3): the bits of im2col + GEMM, with and without the bias, asymmetric padding included.
#[test]
#[cfg_attr(not(lrp_avx512_host), ignore = "this machine has no AVX-512F")]
fn padded_convolutions_on_the_direct_path_are_gemm_bit_for_bit() {
    for (c, hw, o, k, pads) in [
        (16, 24, 32, 3, [1, 1, 1, 1]),
        (3, 30, 20, 5, [2, 1, 0, 2]),
        (40, 21, 17, 3, [0, 1, 1, 0]),
    ] {
        let (x, mut conv) = case(2, c, hw, hw, o, k, k);
        conv.window.pads = pads;
        let (oh, ow) = conv.output_hw(hw, hw).unwrap();
        assert!(
            oh * ow >= PADDED_DIRECT_MIN_HW,
            "the case must take the padded direct path"
        );
        for with_bias in [false, true] {
            let fast = conv.forward_with(x.view(), with_bias, Paths::fast());
            let gemm = conv.forward_with(x.view(), with_bias, Paths::GEMM);
            assert_eq!(
                bits(&fast),
                bits(&gemm),
                "{c}→{o} {k}×{k} pads {pads:?} bias {with_bias}"
            );
        }
    }
}

/// On small planes several samples share a GEMM (their columns gathered, the product copied back): each sample's
/// output is the bits it has computed alone (one GEMM a sample, straight into its planes), forward with and
/// without the bias and transposed, for 1×1, padded, strided and grouped convolutions, over a batch that leaves a
/// partial group, on one thread and on two.
#[test]
fn small_planes_several_samples_a_gemm_are_each_sample_alone() {
    // (input channels, side, output channels, kernel, stride, pads, groups)
    for (c, hw, o, k, stride, pad, groups) in [
        (64, 7, 40, 1, 1, 0, 1),
        (20, 7, 24, 3, 1, 1, 1),
        (8, 15, 12, 3, 2, 1, 1),
        (8, 9, 12, 3, 1, 1, 2),
        (64, 14, 16, 1, 1, 0, 1),
    ] {
        let n = 13;
        let (x, dense) = case(n, c, hw, hw, o, k, k);
        let weight = dense.weight.slice(s![.., ..c / groups, .., ..]).to_owned();
        let mut conv = Conv2d::new(weight, dense.bias.clone(), [stride; 2], [pad; 4]);
        conv.groups = groups;
        let (oh, ow) = conv.output_hw(hw, hw).unwrap();
        assert!(gemm_samples(n, oh * ow) > 1, "the case must share GEMMs");
        let s = Array4::from_shape_fn((n, o, oh, ow), |(a, b, y, z)| {
            ((a * 7 + b * 3 + y * 5 + z) % 11) as f32 * 0.31 - 1.4
        });
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                for with_bias in [false, true] {
                    let all = conv.forward_with(x.view(), with_bias, Paths::fast());
                    for j in 0..n {
                        let one = conv.forward_with(x.slice(s![j..j + 1, .., .., ..]), with_bias, Paths::fast());
                        let got = all.slice(s![j..j + 1, .., .., ..]).to_owned();
                        assert_eq!(bits(&got), bits(&one), "{c}→{o} {k}×{k}/{stride} g{groups} sample {j}");
                    }
                }
                let all = conv.transpose_with(s.view(), (hw, hw), Paths::fast());
                for j in 0..n {
                    let one = conv.transpose_with(s.slice(s![j..j + 1, .., .., ..]), (hw, hw), Paths::fast());
                    let got = all.slice(s![j..j + 1, .., .., ..]).to_owned();
                    assert_eq!(
                        bits(&got),
                        bits(&one),
                        "transposed {c}→{o} {k}×{k}/{stride} g{groups} sample {j}"
                    );
                }
            });
        }
    }
}

/// `W ⋆ x + b` in f64 by its definition, with stride and zero padding: an expectation independent of every path.
fn naive(x: &Array4<f32>, conv: &Conv2d) -> Array4<f64> {
    let (n, c, h, w) = x.dim();
    let (o, _, kh, kw) = conv.weight.dim();
    let ([sh, sw], [pt, pl, _, _]) = (conv.window.stride, conv.window.pads);
    let (oh, ow) = conv.output_hw(h, w).unwrap();
    Array4::from_shape_fn((n, o, oh, ow), |(j, q, oy, ox)| {
        let mut acc = conv.bias.as_ref().map_or(0.0, |b| b[q] as f64);
        for ci in 0..c {
            for ky in 0..kh {
                for kx in 0..kw {
                    let (iy, ix) = (
                        (oy * sh + ky) as isize - pt as isize,
                        (ox * sw + kx) as isize - pl as isize,
                    );
                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                        acc += conv.weight[[q, ci, ky, kx]] as f64 * x[[j, ci, iy as usize, ix as usize]] as f64;
                    }
                }
            }
        }
        acc
    })
}

/// One photo's unfolding (rows), folding (planes), bias addition (planes), zeroing and max pooling (planes) split
/// over pools of 2 and 3 threads: the one-thread bits, and values that agree with the definitions (a convolution
/// in f64; the transposed map through `⟨W ⋆ x, s⟩ = ⟨x, Wᵀ s⟩`).
#[test]
fn one_photos_passes_split_over_threads_give_the_one_thread_bits() {
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    // Stride 2 and padding (im2col_general, col2im_general), and stride 1 unpadded (the whole-row unfold and fold),
    // each with more than `par::PAR_MIN_VALUES` values in the unfolded matrix and in the folded input.
    for (stride, pad, c, h, o) in [(2, 1, 48, 96, 32), (1, 0, 40, 90, 64)] {
        let (x, mut conv) = case(1, c, h, h, o, 3, 3);
        conv.window.stride = [stride, stride];
        conv.window.pads = [pad; 4];
        assert!(x.len() >= crate::par::PAR_MIN_VALUES);
        let y1 = one.install(|| conv.forward_with(x.view(), true, Paths::GEMM));
        let s = y1.mapv(|v| (v * 0.37).sin());
        let t1 = one.install(|| conv.transpose_with(s.view(), (h, h), Paths::GEMM));
        let reference = naive(&x, &conv);
        let worst = y1
            .iter()
            .zip(&reference)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(
            worst < 1e-4,
            "forward against the definition: {worst} (stride {stride})"
        );
        // ⟨W ⋆ x, s⟩ without the bias = ⟨x, Wᵀ s⟩.
        let bias: Vec<f64> = conv.bias.as_ref().unwrap().iter().map(|&v| v as f64).collect();
        let lhs: f64 = reference
            .indexed_iter()
            .map(|((j, q, oy, ox), v)| (v - bias[q]) * s[[j, q, oy, ox]] as f64)
            .sum();
        let rhs: f64 = x.iter().zip(&t1).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!(
            (lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0),
            "transpose: {lhs} against {rhs} (stride {stride})"
        );
        for threads in [2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let y = pool.install(|| conv.forward_with(x.view(), true, Paths::GEMM));
            let t = pool.install(|| conv.transpose_with(s.view(), (h, h), Paths::GEMM));
            assert_eq!(bits(&y), bits(&y1), "forward, stride {stride}, {threads} threads");
            assert_eq!(bits(&t), bits(&t1), "transposed, stride {stride}, {threads} threads");
        }
    }
}
