//! Pillow's antialiased bilinear resize (`Image.resize(size, Image.BILINEAR)`, which torchvision's `Resize` calls on a
//! PIL image), reproduced operation for operation so that an 8-bit image comes out with the same bytes: the filter
//! support grows with the downscaling factor, each output pixel's weights are normalized to sum to 1 and quantized to
//! 22-bit fixed point, the horizontal pass runs first and rounds to 8 bits, then the vertical pass. 16-bit images take
//! Pillow's floating-point path (the same weights, unquantized, no rounding between passes).

/// Bits of the fixed-point weights of 8-bit resampling (Pillow's `PRECISION_BITS`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// The weights of one output pixel along one axis: the first input index and the weights from there on.
struct Taps {
    start: usize,
    weights: Vec<f64>,
}

/// Pillow's bilinear (triangle) filter.
fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// The taps of each of `out_size` pixels resampled from `in_size` (Pillow's `precompute_coeffs`, box `[0, in_size]`).
fn taps(in_size: usize, out_size: usize) -> Vec<Taps> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // the triangle's support is 1
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // C's (int) truncates toward zero; both bounds are clamped to the image.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let mut weights: Vec<f64> = (xmin..xmax).map(|x| triangle((x as f64 - center + 0.5) * ss)).collect();
            let total: f64 = weights.iter().sum();
            if total != 0.0 {
                for w in &mut weights {
                    *w /= total;
                }
            }
            Taps { start: xmin, weights }
        })
        .collect()
}

/// Weights as Pillow's 8-bit path uses them: rounded half away from zero to `PRECISION_BITS` fixed point.
fn fixed(weights: &[f64]) -> Vec<i32> {
    let one = (1u32 << PRECISION_BITS) as f64;
    weights
        .iter()
        .map(|&w| {
            if w < 0.0 {
                (-0.5 + w * one) as i32
            } else {
                (0.5 + w * one) as i32
            }
        })
        .collect()
}

/// Pillow's `clip8`: the fixed-point sum shifted down (arithmetic shift, as C does on these values) and clamped.
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One channel plane `[height][width]` of 8-bit values resized to `out_w × out_h`, byte for byte as Pillow does.
pub fn resize_u8(plane: &[u8], width: usize, height: usize, out_w: usize, out_h: usize) -> Vec<u8> {
    debug_assert_eq!(plane.len(), width * height);
    let half = 1i32 << (PRECISION_BITS - 1);
    let horizontal: Vec<u8> = if out_w != width {
        let taps: Vec<(usize, Vec<i32>)> = taps(width, out_w)
            .into_iter()
            .map(|t| (t.start, fixed(&t.weights)))
            .collect();
        let mut out = vec![0u8; out_w * height];
        for y in 0..height {
            let row = &plane[y * width..(y + 1) * width];
            for (xx, (start, k)) in taps.iter().enumerate() {
                let mut sum = half;
                for (i, &w) in k.iter().enumerate() {
                    sum = sum.wrapping_add(i32::from(row[start + i]).wrapping_mul(w));
                }
                out[y * out_w + xx] = clip8(sum);
            }
        }
        out
    } else {
        plane.to_vec()
    };
    if out_h == height {
        return horizontal;
    }
    let taps: Vec<(usize, Vec<i32>)> = taps(height, out_h)
        .into_iter()
        .map(|t| (t.start, fixed(&t.weights)))
        .collect();
    let mut out = vec![0u8; out_w * out_h];
    for (yy, (start, k)) in taps.iter().enumerate() {
        for x in 0..out_w {
            let mut sum = half;
            for (i, &w) in k.iter().enumerate() {
                sum = sum.wrapping_add(i32::from(horizontal[(start + i) * out_w + x]).wrapping_mul(w));
            }
            out[yy * out_w + x] = clip8(sum);
        }
    }
    out
}

/// One channel plane of floating-point values resized as Pillow's 32-bit float path does (the same weights, no
/// quantization, no rounding between the passes).
pub fn resize_f64(plane: &[f64], width: usize, height: usize, out_w: usize, out_h: usize) -> Vec<f64> {
    debug_assert_eq!(plane.len(), width * height);
    let horizontal: Vec<f64> = if out_w != width {
        let taps = taps(width, out_w);
        let mut out = vec![0.0; out_w * height];
        for y in 0..height {
            let row = &plane[y * width..(y + 1) * width];
            for (xx, t) in taps.iter().enumerate() {
                out[y * out_w + xx] = t.weights.iter().enumerate().map(|(i, w)| row[t.start + i] * w).sum();
            }
        }
        out
    } else {
        plane.to_vec()
    };
    if out_h == height {
        return horizontal;
    }
    let taps = taps(height, out_h);
    let mut out = vec![0.0; out_w * out_h];
    for (yy, t) in taps.iter().enumerate() {
        for x in 0..out_w {
            out[yy * out_w + x] = t
                .weights
                .iter()
                .enumerate()
                .map(|(i, w)| horizontal[(t.start + i) * out_w + x] * w)
                .sum();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halving_averages_pairs_with_the_wider_triangle() {
        // 4 → 2: scale 2, support 2; output pixel 0 has center 1.0 and taps x = 0..3 (xmax = int(3.5) = 3) with
        // triangle((x − 1 + 0.5)/2) = 0.75, 0.75, 0.25 → normalized 3/7, 3/7, 1/7.
        let t = taps(4, 2);
        assert_eq!(t[0].start, 0);
        let want = [3.0 / 7.0, 3.0 / 7.0, 1.0 / 7.0];
        assert_eq!(t[0].weights.len(), 3);
        for (w, v) in t[0].weights.iter().zip(want) {
            assert!((w - v).abs() < 1e-15, "{w} vs {v}");
        }
        // Output pixel 1: center 3.0, taps 1..4 → weights 1/7, 3/7, 3/7.
        assert_eq!(t[1].start, 1);
        // A row 0, 70, 140, 210: pixel 0 = (0·3 + 70·3 + 140)/7 = 50, pixel 1 = (70 + 140·3 + 210·3)/7 = 160.
        let out = resize_u8(&[0, 70, 140, 210], 4, 1, 2, 1);
        assert_eq!(out, vec![50, 160]);
    }

    #[test]
    fn the_same_size_is_a_copy_and_a_constant_stays_constant() {
        let plane: Vec<u8> = (0..30).map(|v| (v * 7 % 256) as u8).collect();
        assert_eq!(resize_u8(&plane, 6, 5, 6, 5), plane);
        let flat = vec![137u8; 40 * 30];
        assert!(resize_u8(&flat, 40, 30, 17, 11).iter().all(|&v| v == 137));
        assert!(resize_u8(&flat, 40, 30, 83, 61).iter().all(|&v| v == 137));
    }

    #[test]
    fn upscaling_interpolates_linearly_between_neighbours() {
        // 2 → 4: scale 0.5, support 1. Output 1 (center 0.75) has taps 0, 1 with triangle(−0.25) = 0.75 and
        // triangle(0.75) = 0.25 → 25; output 2 (center 1.25) mirrors it → 75; outputs 0 and 3 (centers 0.25, 1.75)
        // have one tap each (xmax = int(1.5) = 1, xmin = int(1.25) = 1) → 0 and 100.
        let out = resize_f64(&[0.0, 100.0], 2, 1, 4, 1);
        assert_eq!(out, vec![0.0, 25.0, 75.0, 100.0]);
        assert_eq!(resize_u8(&[0, 100], 2, 1, 4, 1), vec![0, 25, 75, 100]);
    }
}
