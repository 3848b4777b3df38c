//! Pillow's antialiased bilinear resize (`Image.resize(size, Image.BILINEAR)`, which torchvision's `Resize` calls on a
//! PIL image), reproduced operation for operation so that an 8-bit image comes out with the same bytes: the filter
//! support grows with the downscaling factor, each output pixel's weights are normalized to sum to 1 and quantized to
//! 22-bit fixed point, the horizontal pass runs first and rounds to 8 bits, then the vertical pass. 16-bit images take
//! Pillow's floating-point path (the same weights, unquantized, no rounding between passes).

use std::ops::Range;

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

/// The taps of the output pixels `outputs` of `out_size` resampled from `in_size` (Pillow's `precompute_coeffs`, box
/// `[0, in_size]`): each pixel's taps depend only on its own index, so any range of them is what the whole row
/// would give there.
fn taps(in_size: usize, out_size: usize, outputs: Range<usize>) -> Vec<Taps> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // the triangle's support is 1
    outputs
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

/// A window of a resize: the output columns `xs` and rows `ys` of a `width × height` plane resized to
/// `out_w × out_h` (`xs` within `0..out_w`, `ys` within `0..out_h`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// The plane's width.
    pub width: usize,
    /// The plane's height.
    pub height: usize,
    /// The width of the whole resized plane.
    pub out_w: usize,
    /// The height of the whole resized plane.
    pub out_h: usize,
    /// The resized columns to compute.
    pub xs: Range<usize>,
    /// The resized rows to compute.
    pub ys: Range<usize>,
}

impl Window {
    /// The vertical pass's taps for the window's rows (none where the height stays), and the input rows the
    /// horizontal pass must produce for them.
    fn rows(&self) -> (Option<Vec<Taps>>, Range<usize>) {
        if self.out_h == self.height {
            return (None, self.ys.clone());
        }
        let taps = taps(self.height, self.out_h, self.ys.clone());
        let first = taps.iter().map(|t| t.start).min().unwrap_or(0);
        let end = taps.iter().map(|t| t.start + t.weights.len()).max().unwrap_or(first);
        (Some(taps), first..end.max(first))
    }
}

/// The arithmetic of one resampled value: Pillow's 8-bit path ([`Fixed8`]) or its floating-point path ([`Float`]).
trait Arithmetic {
    /// A value between and after the passes.
    type V: Copy + Default;
    /// A weight as the sums use it.
    type W;
    /// One output's weights.
    fn weights(w: &[f64]) -> Vec<Self::W>;
    /// One output from the values under its taps, in tap order.
    fn sum(values: impl Iterator<Item = Self::V>, w: &[Self::W]) -> Self::V;
}

/// 22-bit fixed-point weights, a rounding offset, clipped to 8 bits after each pass.
struct Fixed8;

impl Arithmetic for Fixed8 {
    type V = u8;
    type W = i32;
    fn weights(w: &[f64]) -> Vec<i32> {
        fixed(w)
    }
    fn sum(values: impl Iterator<Item = u8>, w: &[i32]) -> u8 {
        let half = 1i32 << (PRECISION_BITS - 1);
        clip8(
            w.iter()
                .zip(values)
                .fold(half, |s, (&w, v)| s.wrapping_add(i32::from(v).wrapping_mul(w))),
        )
    }
}

/// Unquantized weights, no rounding between the passes.
struct Float;

impl Arithmetic for Float {
    type V = f64;
    type W = f64;
    fn weights(w: &[f64]) -> Vec<f64> {
        w.to_vec()
    }
    fn sum(values: impl Iterator<Item = f64>, w: &[f64]) -> f64 {
        w.iter().zip(values).map(|(w, v)| v * w).sum()
    }
}

/// The window `win` of one plane resized in two passes with `A`'s arithmetic, each stored value read as `read(v)`:
/// the horizontal pass over the rows the vertical taps read (the window's columns only), then the vertical pass.
fn two_passes<A: Arithmetic, T: Copy>(plane: &[T], read: impl Fn(T) -> A::V, win: &Window) -> Vec<A::V> {
    debug_assert_eq!(plane.len(), win.width * win.height);
    let ww = win.xs.len();
    let (vertical, rows) = win.rows();
    let mut horizontal = vec![A::V::default(); ww * rows.len()];
    let across: Option<Vec<(usize, Vec<A::W>)>> = (win.out_w != win.width).then(|| {
        taps(win.width, win.out_w, win.xs.clone())
            .into_iter()
            .map(|t| (t.start, A::weights(&t.weights)))
            .collect()
    });
    for (y, out) in rows.clone().zip(horizontal.chunks_exact_mut(ww.max(1))) {
        let row = &plane[y * win.width..(y + 1) * win.width];
        match &across {
            Some(taps) => {
                for ((start, k), o) in taps.iter().zip(out.iter_mut()) {
                    *o = A::sum(row[*start..].iter().map(|&v| read(v)), k);
                }
            }
            None => {
                for (o, &v) in out.iter_mut().zip(&row[win.xs.clone()]) {
                    *o = read(v);
                }
            }
        }
    }
    let Some(vertical) = vertical else {
        return horizontal;
    };
    let mut out = vec![A::V::default(); ww * win.ys.len()];
    for (t, dst) in vertical.iter().zip(out.chunks_exact_mut(ww.max(1))) {
        let k = A::weights(&t.weights);
        for (x, o) in dst.iter_mut().enumerate() {
            *o = A::sum((t.start - rows.start..).map(|y| horizontal[y * ww + x]), &k);
        }
    }
    out
}

/// The window `win` of one channel plane `[height][width]` of 8-bit values resized byte for byte as Pillow does:
/// `[ys.len()][xs.len()]`, the values the whole resized plane holds there. Only the window and the rows its vertical
/// taps read are computed, so a photo of extreme proportions (5000×1 resized to a shorter side of 256 is
/// 1,280,000×256) costs no more than the crop.
pub fn resize_u8(plane: &[u8], win: &Window) -> Vec<u8> {
    two_passes::<Fixed8, u8>(plane, |v| v, win)
}

/// The window `win` of one channel plane resized as Pillow's 32-bit float path does (the same weights, no
/// quantization, no rounding between the passes), each stored value read as `value(v)`; computed as [`resize_u8`]
/// is, window only (so a large 16-bit photo is not first copied whole into floating point).
pub fn resize_f64<T: Copy>(plane: &[T], value: impl Fn(T) -> f64, win: &Window) -> Vec<f64> {
    two_passes::<Float, T>(plane, value, win)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(width: usize, height: usize, out_w: usize, out_h: usize) -> Window {
        Window {
            width,
            height,
            out_w,
            out_h,
            xs: 0..out_w,
            ys: 0..out_h,
        }
    }

    /// The whole plane resized the way Pillow's `ImagingResample` runs (and this module did before it computed
    /// windows): the horizontal pass over every row into a full intermediate, rounded to 8 bits, then the vertical
    /// pass over every column. The reference the windows are held to.
    fn pillow_u8(plane: &[u8], width: usize, height: usize, out_w: usize, out_h: usize) -> Vec<u8> {
        let half = 1i32 << (PRECISION_BITS - 1);
        let sum = |values: &mut dyn Iterator<Item = u8>, k: &[i32]| {
            clip8(
                k.iter()
                    .zip(values)
                    .fold(half, |s, (&w, v)| s.wrapping_add(i32::from(v).wrapping_mul(w))),
            )
        };
        let mut horizontal = plane.to_vec();
        if out_w != width {
            let taps = taps(width, out_w, 0..out_w);
            horizontal = (0..height)
                .flat_map(|y| {
                    let row = &plane[y * width..(y + 1) * width];
                    taps.iter()
                        .map(|t| sum(&mut row[t.start..].iter().copied(), &fixed(&t.weights)))
                        .collect::<Vec<_>>()
                })
                .collect();
        }
        if out_h == height {
            return horizontal;
        }
        let taps = taps(height, out_h, 0..out_h);
        taps.iter()
            .flat_map(|t| {
                let k = fixed(&t.weights);
                let h = &horizontal;
                (0..out_w)
                    .map(|x| sum(&mut (t.start..).map(|y| h[y * out_w + x]), &k))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The float path the same way: every row, then every column, sums in tap order.
    fn pillow_f64(plane: &[f64], width: usize, height: usize, out_w: usize, out_h: usize) -> Vec<f64> {
        let mut horizontal = plane.to_vec();
        if out_w != width {
            let taps = taps(width, out_w, 0..out_w);
            horizontal = (0..height)
                .flat_map(|y| {
                    let row = &plane[y * width..(y + 1) * width];
                    taps.iter()
                        .map(|t| {
                            t.weights
                                .iter()
                                .enumerate()
                                .map(|(i, w)| row[t.start + i] * w)
                                .sum::<f64>()
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
        }
        if out_h == height {
            return horizontal;
        }
        let taps = taps(height, out_h, 0..out_h);
        let h = &horizontal;
        taps.iter()
            .flat_map(|t| {
                (0..out_w)
                    .map(|x| {
                        t.weights
                            .iter()
                            .enumerate()
                            .map(|(i, w)| h[(t.start + i) * out_w + x] * w)
                            .sum::<f64>()
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn halving_averages_pairs_with_the_wider_triangle() {
        // 4 → 2: scale 2, support 2; output pixel 0 has center 1.0 and taps x = 0..3 (xmax = int(3.5) = 3) with
        // triangle((x − 1 + 0.5)/2) = 0.75, 0.75, 0.25 → normalized 3/7, 3/7, 1/7.
        let t = taps(4, 2, 0..2);
        assert_eq!(t[0].start, 0);
        let want = [3.0 / 7.0, 3.0 / 7.0, 1.0 / 7.0];
        assert_eq!(t[0].weights.len(), 3);
        for (w, v) in t[0].weights.iter().zip(want) {
            assert!((w - v).abs() < 1e-15, "{w} vs {v}");
        }
        // Output pixel 1: center 3.0, taps 1..4 → weights 1/7, 3/7, 3/7.
        assert_eq!(t[1].start, 1);
        // A row 0, 70, 140, 210: pixel 0 = (0·3 + 70·3 + 140)/7 = 50, pixel 1 = (70 + 140·3 + 210·3)/7 = 160.
        let out = resize_u8(&[0, 70, 140, 210], &whole(4, 1, 2, 1));
        assert_eq!(out, vec![50, 160]);
        // The second pixel alone.
        let mut win = whole(4, 1, 2, 1);
        win.xs = 1..2;
        assert_eq!(resize_u8(&[0, 70, 140, 210], &win), vec![160]);
    }

    #[test]
    fn the_same_size_is_a_copy_and_a_constant_stays_constant() {
        let plane: Vec<u8> = (0..30).map(|v| (v * 7 % 256) as u8).collect();
        assert_eq!(resize_u8(&plane, &whole(6, 5, 6, 5)), plane);
        let flat = vec![137u8; 40 * 30];
        assert!(resize_u8(&flat, &whole(40, 30, 17, 11)).iter().all(|&v| v == 137));
        assert!(resize_u8(&flat, &whole(40, 30, 83, 61)).iter().all(|&v| v == 137));
    }

    #[test]
    fn upscaling_interpolates_linearly_between_neighbours() {
        // 2 → 4: scale 0.5, support 1. Output 1 (center 0.75) has taps 0, 1 with triangle(−0.25) = 0.75 and
        // triangle(0.75) = 0.25 → 25; output 2 (center 1.25) mirrors it → 75; outputs 0 and 3 (centers 0.25, 1.75)
        // have one tap each (xmax = int(1.5) = 1, xmin = int(1.25) = 1) → 0 and 100.
        let out = resize_f64(&[0.0, 100.0], |v| v, &whole(2, 1, 4, 1));
        assert_eq!(out, vec![0.0, 25.0, 75.0, 100.0]);
        assert_eq!(resize_u8(&[0, 100], &whole(2, 1, 4, 1)), vec![0, 25, 75, 100]);
    }

    #[test]
    fn every_window_holds_the_whole_resize_s_values_there() {
        // Sizes up, down, kept and mixed per axis; windows at the edges, inside, of one pixel, and empty.
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x2545_f491);
        let mut next = move |m: usize| rng.random_range(0..m);
        for (w, h, ow, oh) in [
            (9, 7, 4, 3),
            (5, 8, 13, 8),
            (6, 6, 6, 11),
            (31, 3, 7, 19),
            (1, 1, 5, 3),
            (12, 1, 3, 64),
        ] {
            let plane: Vec<u8> = (0..w * h).map(|_| next(256) as u8).collect();
            let full = pillow_u8(&plane, w, h, ow, oh);
            let floats: Vec<f64> = plane.iter().map(|&v| f64::from(v) / 255.0).collect();
            let full_f = pillow_f64(&floats, w, h, ow, oh);
            for _ in 0..25 {
                let (x0, y0) = (next(ow + 1), next(oh + 1));
                let (x1, y1) = (x0 + next(ow + 1 - x0), y0 + next(oh + 1 - y0));
                let win = Window {
                    width: w,
                    height: h,
                    out_w: ow,
                    out_h: oh,
                    xs: x0..x1,
                    ys: y0..y1,
                };
                let got = resize_u8(&plane, &win);
                let got_f = resize_f64(&plane, |v| f64::from(v) / 255.0, &win);
                assert_eq!(got.len(), (x1 - x0) * (y1 - y0));
                for (j, y) in (y0..y1).enumerate() {
                    for (i, x) in (x0..x1).enumerate() {
                        let at = format!("{w}x{h} -> {ow}x{oh}, window {x0}..{x1} x {y0}..{y1}, pixel ({x}, {y})");
                        assert_eq!(got[j * (x1 - x0) + i], full[y * ow + x], "{at}");
                        assert_eq!(got_f[j * (x1 - x0) + i].to_bits(), full_f[y * ow + x].to_bits(), "{at}");
                    }
                }
            }
        }
        // The whole plane through the windowed code is Pillow's order of operations too.
        let plane: Vec<u8> = (0..23 * 17).map(|_| next(256) as u8).collect();
        assert_eq!(
            resize_u8(&plane, &whole(23, 17, 10, 29)),
            pillow_u8(&plane, 23, 17, 10, 29)
        );
    }
}
