//! Geometry of a sliding 2-D window (convolution and pooling).

use serde::{Deserialize, Serialize};

/// No kernel side, stride or pad may be larger than this (checked when a network is built).
pub const MAX_WINDOW_SIDE: usize = 1 << 16;
/// No kernel may cover more positions than this (2²⁰; a global pool over a 1024×1024 map).
pub const MAX_WINDOW_AREA: usize = 1 << 20;

/// Kernel size, stride and zero padding of a 2-D sliding window.
///
/// `pads` follows ONNX: `[top, left, bottom, right]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Vertical and horizontal stride.
    pub stride: [usize; 2],
    /// Padding `[top, left, bottom, right]`.
    pub pads: [usize; 4],
}

impl Window {
    /// A square window with the same stride and symmetric padding on every side.
    pub fn square(kernel: usize, stride: usize, pad: usize) -> Self {
        Window {
            kernel: [kernel, kernel],
            stride: [stride, stride],
            pads: [pad; 4],
        }
    }

    /// Output height and width for an input of `h × w`, or `None` when the window does not fit.
    pub fn output_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let ph = h.checked_add(self.pads[0])?.checked_add(self.pads[2])?;
        let pw = w.checked_add(self.pads[1])?.checked_add(self.pads[3])?;
        if self.kernel[0] == 0 || self.kernel[1] == 0 || self.stride[0] == 0 || self.stride[1] == 0 {
            return None;
        }
        if ph < self.kernel[0] || pw < self.kernel[1] {
            return None;
        }
        Some((
            (ph - self.kernel[0]) / self.stride[0] + 1,
            (pw - self.kernel[1]) / self.stride[1] + 1,
        ))
    }

    /// Checks the window's own settings (non-zero kernel and stride, padding smaller than the kernel).
    pub fn validate(&self) -> Result<(), String> {
        let sides = self.kernel.iter().chain(&self.stride).chain(&self.pads);
        if sides.into_iter().any(|&v| v > MAX_WINDOW_SIDE) {
            return Err(format!(
                "kernel {:?}, stride {:?} and pads {:?} must each be at most {MAX_WINDOW_SIDE}",
                self.kernel, self.stride, self.pads
            ));
        }
        if self.kernel[0] * self.kernel[1] > MAX_WINDOW_AREA {
            return Err(format!(
                "kernel {:?} covers more than {MAX_WINDOW_AREA} positions",
                self.kernel
            ));
        }
        if self.kernel.contains(&0) {
            return Err(format!("kernel {:?} has a zero side", self.kernel));
        }
        if self.stride.contains(&0) {
            return Err(format!("stride {:?} has a zero side", self.stride));
        }
        if self.pads[0] >= self.kernel[0]
            || self.pads[2] >= self.kernel[0]
            || self.pads[1] >= self.kernel[1]
            || self.pads[3] >= self.kernel[1]
        {
            return Err(format!(
                "padding {:?} must be smaller than the kernel {:?}",
                self.pads, self.kernel
            ));
        }
        Ok(())
    }

    /// Input row (or column, with `axis = 1`) touched by output position `o` and kernel offset `k`,
    /// or `None` when it falls into the padding.
    #[inline]
    pub(crate) fn source(&self, axis: usize, o: usize, k: usize, len: usize) -> Option<usize> {
        let i = (o * self.stride[axis] + k) as isize - self.pads[axis] as isize;
        (i >= 0 && (i as usize) < len).then_some(i as usize)
    }
}
