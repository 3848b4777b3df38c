//! `lrp-view`: how explanations are shown. Renders; never computes relevance itself.
//!
//! - [`cells`]: heatmaps and images as terminal cells (half blocks in 24-bit or 256 colors, or a signed
//!   character ramp with `NO_COLOR`), shared by `lrp explain --print` and the terminal viewer;
//! - [`colormap`]: the blue-white-red heatmap, grayscale and the xterm palette;
//! - [`png_out`]: input and heatmap side by side as a PNG;
//! - [`plot`]: line plots (perturbation curves) as PNG.
#![warn(missing_docs)]

pub mod cells;
pub mod colormap;
pub mod plot;
pub mod png_out;
