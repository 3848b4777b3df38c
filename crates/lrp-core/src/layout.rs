//! Where the image axes are in a network's per-sample input: what photos are prepared into and heatmaps drawn from.

/// The layout of an image input, read from a per-sample input shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageLayout {
    /// Channels first, `[C, H, W]` (PyTorch, NCHW).
    Chw {
        /// Channels (1 or 3).
        channels: usize,
        /// Height.
        height: usize,
        /// Width.
        width: usize,
    },
    /// Channels last, `[H, W, C]` (Keras, TensorFlow, NHWC).
    Hwc {
        /// Channels (1 or 3).
        channels: usize,
        /// Height.
        height: usize,
        /// Width.
        width: usize,
    },
    /// One gray plane `[H, W]` (an LSTM that reads rows).
    Plane {
        /// Height.
        height: usize,
        /// Width.
        width: usize,
    },
    /// A flat vector of a square number of values, a gray `side × side` image (an MLP on MNIST).
    Flat {
        /// The side of the square.
        side: usize,
    },
}

/// The smallest side an image axis is taken to have (below it, `[3, 3, 3]`-like shapes are not images).
const MIN_SIDE: usize = 4;

impl ImageLayout {
    /// The layout of a per-sample input shape: `[C, H, W]` with 1 or 3 channels first, else `[H, W, C]` with 1 or 3
    /// last, `[H, W]`, or a flat square; `None` for shapes that are not images.
    pub fn of(shape: &[usize]) -> Option<ImageLayout> {
        let image = |c: usize, h: usize, w: usize| matches!(c, 1 | 3) && h >= MIN_SIDE && w >= MIN_SIDE;
        match *shape {
            [c, h, w] if image(c, h, w) => Some(ImageLayout::Chw {
                channels: c,
                height: h,
                width: w,
            }),
            [h, w, c] if image(c, h, w) => Some(ImageLayout::Hwc {
                channels: c,
                height: h,
                width: w,
            }),
            [h, w] if h >= MIN_SIDE && w >= MIN_SIDE => Some(ImageLayout::Plane { height: h, width: w }),
            [n] => {
                let side = (n as f64).sqrt().round() as usize;
                (side >= MIN_SIDE && side * side == n).then_some(ImageLayout::Flat { side })
            }
            _ => None,
        }
    }

    /// Channels (1 for the gray layouts).
    pub fn channels(&self) -> usize {
        match *self {
            ImageLayout::Chw { channels, .. } | ImageLayout::Hwc { channels, .. } => channels,
            _ => 1,
        }
    }

    /// `(height, width)`.
    pub fn size(&self) -> (usize, usize) {
        match *self {
            ImageLayout::Chw { height, width, .. }
            | ImageLayout::Hwc { height, width, .. }
            | ImageLayout::Plane { height, width } => (height, width),
            ImageLayout::Flat { side } => (side, side),
        }
    }

    /// The flat index of pixel `(y, x)`, channel `c` in a sample of this layout.
    pub fn index(&self, y: usize, x: usize, c: usize) -> usize {
        let (h, w) = self.size();
        match *self {
            ImageLayout::Chw { .. } => (c * h + y) * w + x,
            ImageLayout::Hwc { channels, .. } => (y * w + x) * channels + c,
            ImageLayout::Plane { .. } | ImageLayout::Flat { .. } => y * w + x,
        }
    }

    /// A short name: `NCHW`, `NHWC`, `[H, W]` or `flat`.
    pub fn name(&self) -> &'static str {
        match self {
            ImageLayout::Chw { .. } => "NCHW",
            ImageLayout::Hwc { .. } => "NHWC",
            ImageLayout::Plane { .. } => "[H, W]",
            ImageLayout::Flat { .. } => "flat",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ImageLayout;

    #[test]
    fn layouts_of_the_inputs_people_have() {
        assert_eq!(
            ImageLayout::of(&[3, 224, 224]),
            Some(ImageLayout::Chw {
                channels: 3,
                height: 224,
                width: 224
            })
        );
        assert_eq!(
            ImageLayout::of(&[28, 28, 1]),
            Some(ImageLayout::Hwc {
                channels: 1,
                height: 28,
                width: 28
            })
        );
        assert_eq!(ImageLayout::of(&[784]), Some(ImageLayout::Flat { side: 28 }));
        assert_eq!(
            ImageLayout::of(&[28, 28]),
            Some(ImageLayout::Plane { height: 28, width: 28 })
        );
        assert_eq!(ImageLayout::of(&[10]), None);
        assert_eq!(
            ImageLayout::of(&[65, 32]),
            Some(ImageLayout::Plane { height: 65, width: 32 })
        );
        assert_eq!(ImageLayout::of(&[2, 3]), None);
        assert_eq!(ImageLayout::of(&[4, 32, 32]), None, "4 channels are not a photo layout");
        // NHWC: the index walks channels fastest.
        let l = ImageLayout::of(&[5, 6, 3]).unwrap();
        assert_eq!(l.index(1, 2, 1), (6 + 2) * 3 + 1);
        let l = ImageLayout::of(&[3, 5, 6]).unwrap();
        assert_eq!(l.index(1, 2, 1), (5 + 1) * 6 + 2);
    }
}
