//! A photo made into a network input, as torchvision's `Resize` → `CenterCrop` → `ToTensor` → `Normalize` does it on a
//! PIL image: the shorter side resized (Pillow's antialiased bilinear, on 8-bit values), the centre cropped (padded
//! with zeros where the crop is larger), values divided by 255, then `(x − mean) / std` per channel in float32.

use lrp_core::ImageLayout;
use ndarray::{Array3, ArrayD, IxDyn};

use crate::ImageError;
use crate::load::{Photo, Pixels};
use crate::resample::{Window, resize_f64, resize_u8};

/// ImageNet's per-channel mean (torchvision's `Normalize`).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's per-channel standard deviation.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// How a photo becomes an input.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    /// Resize so that the shorter side has this length (torchvision's `Resize(int)`; the longer side is
    /// `int(s · long / short)`).
    pub shorter_side: usize,
    /// The centre crop, `(height, width)`.
    pub crop: (usize, usize),
    /// Per channel mean, subtracted after scaling to [0, 1] (one value for every channel, or one per channel).
    pub mean: Vec<f32>,
    /// Per channel standard deviation, divided by after the mean.
    pub std: Vec<f32>,
}

impl Preprocess {
    /// torchvision's ImageNet evaluation transform for crop size `size`: `Resize(round(size / 0.875))` (256 for 224),
    /// `CenterCrop(size)`, `ToTensor()`, `Normalize(IMAGENET_MEAN, IMAGENET_STD)`.
    pub fn imagenet(size: usize) -> Preprocess {
        Preprocess {
            shorter_side: (size as f64 / 0.875).round() as usize,
            crop: (size, size),
            mean: IMAGENET_MEAN.to_vec(),
            std: IMAGENET_STD.to_vec(),
        }
    }

    /// The photo fitted to `(height, width)` without normalization: the shorter side resized to the larger of the
    /// two, the centre cropped, values in [0, 1].
    pub fn plain(height: usize, width: usize) -> Preprocess {
        Preprocess {
            shorter_side: height.max(width),
            crop: (height, width),
            mean: vec![0.0],
            std: vec![1.0],
        }
    }

    fn check(&self, channels: usize) -> Result<(), String> {
        if self.crop.0 == 0 || self.crop.1 == 0 || self.shorter_side == 0 {
            return Err("a size of 0 leaves no pixels".into());
        }
        for (name, v) in [("--mean", &self.mean), ("--std", &self.std)] {
            if v.len() != 1 && v.len() != channels {
                return Err(format!(
                    "{name} gives {} values; the model takes {channels} channel(s) (give 1 or {channels})",
                    v.len()
                ));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(format!("{name} must be finite numbers"));
            }
        }
        if self.std.contains(&0.0) {
            return Err("--std must not be 0 (it divides)".into());
        }
        Ok(())
    }
}

/// A prepared photo: the network's input and the picture it shows.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// One sample in the network's per-sample input shape.
    pub input: ArrayD<f32>,
    /// The resized and cropped photo `[H, W, 3]` in [0, 1] (gray repeated), before normalization: what to draw.
    pub picture: Array3<f32>,
}

/// Python's `round` (half to even) of `v`, as torchvision's `CenterCrop` computes its offsets.
fn round_half_even(v: f64) -> i64 {
    let r = v.round();
    if (v - v.trunc()).abs() == 0.5 && (r as i64) % 2 != 0 {
        (r - v.signum()) as i64
    } else {
        r as i64
    }
}

/// The size after torchvision's `Resize(shorter)` of a `width × height` image.
pub fn resized_size(width: usize, height: usize, shorter: usize) -> (usize, usize) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let new_long = ((shorter * long) as f64 / short as f64) as usize;
    if width <= height {
        (shorter, new_long)
    } else {
        (new_long, shorter)
    }
}

/// Gray values from RGB as Pillow's `convert('L')` computes them for 8 bits (ITU-R 601-2 luma, fixed point).
fn luma_u8(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks(3)
        .map(|p| ((u32::from(p[0]) * 19595 + u32::from(p[1]) * 38470 + u32::from(p[2]) * 7471 + 0x8000) >> 16) as u8)
        .collect()
}

fn luma_u16(rgb: &[u16]) -> Vec<u16> {
    rgb.chunks(3)
        .map(|p| (0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2])).round() as u16)
        .collect()
}

/// The planes of a photo with `channels` channels (gray repeated, or RGB reduced to gray).
fn planes<T: Copy>(
    interleaved: &[T],
    photo_channels: usize,
    want: usize,
    luma: impl Fn(&[T]) -> Vec<T>,
) -> Vec<Vec<T>> {
    match (photo_channels, want) {
        (1, 1) | (1, 3) => vec![interleaved.to_vec()],
        (3, 1) => vec![luma(interleaved)],
        _ => (0..3)
            .map(|c| interleaved.iter().skip(c).step_by(3).copied().collect())
            .collect(),
    }
}

/// Makes `photo` an input of the per-sample shape `shape` (its layout read by [`ImageLayout::of`]).
pub fn prepare(photo: &Photo, p: &Preprocess, shape: &[usize]) -> Result<Prepared, ImageError> {
    let layout = ImageLayout::of(shape).ok_or_else(|| ImageError::Model {
        reason: format!(
            "the model's input {shape:?} is not an image ([C, H, W] or [H, W, C] with 1 or 3 channels, [H, W], or a \
             flat square)"
        ),
    })?;
    let channels = layout.channels();
    p.check(channels).map_err(|reason| ImageError::Model { reason })?;
    let (h, w) = layout.size();
    if p.crop != (h, w) {
        return Err(ImageError::Model {
            reason: format!(
                "the crop is {}×{} but the model takes {h}×{w} images{}",
                p.crop.0,
                p.crop.1,
                if h == w {
                    format!(" (use --size {h})")
                } else {
                    String::new()
                }
            ),
        });
    }
    let (rw, rh) = resized_size(photo.width, photo.height, p.shorter_side);
    if rw == 0 || rh == 0 {
        return Err(ImageError::Model {
            reason: format!(
                "resizing the {}×{} photo to a shorter side of {} gives {rw}×{rh} pixels",
                photo.width, photo.height, p.shorter_side
            ),
        });
    }
    // torchvision's CenterCrop: zero padding where the crop is larger, then offsets int(round((size − crop) / 2)).
    let (ch, cw) = p.crop;
    let pad_left = cw.saturating_sub(rw) / 2;
    let pad_top = ch.saturating_sub(rh) / 2;
    let (pw, ph) = (rw.max(cw), rh.max(ch));
    let top = round_half_even((ph as f64 - ch as f64) / 2.0).max(0) as usize;
    let left = round_half_even((pw as f64 - cw as f64) / 2.0).max(0) as usize;
    // Only the part of the resized photo inside the crop is computed (the same values the whole resize holds there):
    // a photo of extreme proportions is resized to millions of pixels along its long side, of which the crop keeps
    // a few hundred.
    let span = |first: usize, pad: usize, crop: usize, size: usize| {
        let from = first.saturating_sub(pad).min(size);
        from..(first + crop).saturating_sub(pad).clamp(from, size)
    };
    let win = Window {
        width: photo.width,
        height: photo.height,
        out_w: rw,
        out_h: rh,
        xs: span(left, pad_left, cw, rw),
        ys: span(top, pad_top, ch, rh),
    };
    let ww = win.xs.len();
    // Each plane's window resized, in [0, 1] as f32 (8 bits: Pillow's bytes / 255 in float32, as ToTensor divides).
    let resized: Vec<Vec<f32>> = match &photo.pixels {
        Pixels::U8(v) => planes(v, photo.channels, channels, luma_u8)
            .iter()
            .map(|plane| {
                resize_u8(plane, &win)
                    .into_iter()
                    .map(|b| f32::from(b) / 255.0)
                    .collect()
            })
            .collect(),
        Pixels::U16(v) => planes(v, photo.channels, channels, luma_u16)
            .iter()
            .map(|plane| {
                resize_f64(plane, |x| f64::from(x) / 65535.0, &win)
                    .into_iter()
                    .map(|x| x.clamp(0.0, 1.0) as f32)
                    .collect()
            })
            .collect(),
    };
    let value = |plane: &[f32], y: usize, x: usize| -> f32 {
        // (y, x) in the padded image → the resized image's window, or the zero padding.
        let (py, px) = (y + top, x + left);
        match (py.checked_sub(pad_top), px.checked_sub(pad_left)) {
            (Some(sy), Some(sx)) if win.ys.contains(&sy) && win.xs.contains(&sx) => {
                plane[(sy - win.ys.start) * ww + sx - win.xs.start]
            }
            _ => 0.0,
        }
    };
    let mut input = ArrayD::<f32>::zeros(IxDyn(shape));
    let flat = input.as_slice_mut().expect("a new array is contiguous");
    let mut picture = Array3::<f32>::zeros((ch, cw, 3));
    for c in 0..channels {
        let plane = &resized[c.min(resized.len() - 1)];
        let mean = p.mean[c.min(p.mean.len() - 1)];
        let std = p.std[c.min(p.std.len() - 1)];
        for y in 0..ch {
            for x in 0..cw {
                let v = value(plane, y, x);
                flat[layout.index(y, x, c)] = (v - mean) / std;
                if channels == 1 {
                    for k in 0..3 {
                        picture[[y, x, k]] = v;
                    }
                } else {
                    picture[[y, x, c]] = v;
                }
            }
        }
    }
    Ok(Prepared { input, picture })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_rounding_and_torchvision_sizes() {
        assert_eq!(round_half_even(0.5), 0);
        assert_eq!(round_half_even(1.5), 2);
        assert_eq!(round_half_even(2.5), 2);
        assert_eq!(round_half_even(80.0), 80);
        assert_eq!(round_half_even(13.5), 14);
        // chelsea.png is 451×300: Resize(256) gives int(256 · 451 / 300) = 384 × 256.
        assert_eq!(resized_size(451, 300, 256), (384, 256));
        assert_eq!(resized_size(300, 451, 256), (256, 384));
        assert_eq!(Preprocess::imagenet(224).shorter_side, 256);
        assert_eq!(Preprocess::imagenet(160).shorter_side, 183);
    }

    #[test]
    fn a_crop_larger_than_the_image_pads_with_zeros_around_the_centre() {
        // A 2×2 white gray image, no resize (shorter side 2), cropped to 4×4: torchvision pads 1 on each side.
        let photo = Photo {
            width: 2,
            height: 2,
            channels: 1,
            pixels: Pixels::U8(vec![255; 4]),
            orientation: None,
        };
        let p = Preprocess {
            shorter_side: 2,
            crop: (4, 4),
            mean: vec![0.0],
            std: vec![1.0],
        };
        let out = prepare(&photo, &p, &[1, 4, 4]).unwrap();
        let v: Vec<f32> = out.input.iter().copied().collect();
        #[rustfmt::skip]
        let want = [0.0, 0.0, 0.0, 0.0,
                    0.0, 1.0, 1.0, 0.0,
                    0.0, 1.0, 1.0, 0.0,
                    0.0, 0.0, 0.0, 0.0];
        assert_eq!(v, want);
    }

    #[test]
    fn channels_land_where_the_layout_puts_them() {
        // A 4×4 RGB photo whose red is 255, green 0, blue 51.
        let photo = Photo {
            width: 4,
            height: 4,
            channels: 3,
            pixels: Pixels::U8([255u8, 0, 51].repeat(16)),
            orientation: None,
        };
        let p = Preprocess {
            shorter_side: 4,
            crop: (4, 4),
            mean: vec![0.5],
            std: vec![0.5],
        };
        let chw = prepare(&photo, &p, &[3, 4, 4]).unwrap().input;
        let hwc = prepare(&photo, &p, &[4, 4, 3]).unwrap().input;
        let want = [1.0f32, -1.0, (0.2 - 0.5) / 0.5];
        for c in 0..3 {
            assert_eq!(chw[[c, 2, 1]], want[c]);
            assert_eq!(hwc[[2, 1, c]], want[c]);
        }
        // Into a gray model: Pillow's luma (255·19595 + 51·7471 + 32768) >> 16 = 82.
        let gray = prepare(&photo, &p, &[1, 4, 4]).unwrap().input;
        assert_eq!(gray[[0, 0, 0]], (82.0 / 255.0 - 0.5) / 0.5);
        // A crop that is not the model's size is refused by name.
        let err = prepare(&photo, &Preprocess::imagenet(224), &[3, 4, 4])
            .unwrap_err()
            .to_string();
        assert!(err.contains("224×224") && err.contains("4×4"), "{err}");
    }
}
