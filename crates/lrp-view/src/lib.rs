//! `lrp-view`: how explanations are shown. Renders; never computes relevance itself (the viewer's worker asks
//! `lrp-rules` for it).
//!
//! - [`cells`]: heatmaps and images as terminal cells (half blocks in 24-bit or 256 colors, or a signed
//!   character ramp with `NO_COLOR`), shared by `lrp explain --print` and the terminal viewer;
//! - [`colormap`]: the blue-white-red heatmap, grayscale and the xterm palette;
//! - [`png_out`]: input and heatmap side by side as a PNG; [`plot`]: line plots as PNG;
//! - [`canvas`]: draw mode's canvas and MNIST's preprocessing of a drawing;
//! - [`app`] (state, keys and mouse), [`ui`] (drawing), [`worker`] (explanations off the UI thread) and [`tui`]
//!   (the terminal and the event loop): the viewer `lrp view`.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod app;
pub mod canvas;
pub mod cells;
pub mod colormap;
pub mod concept;
pub mod keys;
pub mod plot;
pub mod png_out;
pub mod tui;
pub mod ui;
pub mod worker;
