//! `lrp-image`: photos into `lrp`. PNG and JPEG (gray, RGB, RGBA, 8 or 16 bits) are checked before they are decoded
//! (a regular file, a sane size, the pixel count of the header, no CMYK, a JPEG that ends) and decoded by the `image`
//! crate; torchvision's ImageNet evaluation transform is reproduced exactly (Pillow's antialiased bilinear resize on
//! 8-bit values, centre crop, `ToTensor`, `Normalize`), into NCHW or NHWC inputs.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod jpeg;
pub mod load;
pub mod preprocess;
pub mod resample;

use std::path::PathBuf;

pub use load::{MAX_FILE_BYTES, MAX_PIXELS, Photo, Pixels, decode, load, photo_paths};
pub use preprocess::{IMAGENET_MEAN, IMAGENET_STD, Prepared, Preprocess, prepare, resized_size};

/// Why a photo could not be read or prepared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a photo lrp reads, or is damaged.
    #[error("{}: {reason}", path.display())]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The photo cannot be made into this model's input with these settings.
    #[error("{reason}")]
    Model {
        /// What does not fit.
        reason: String,
    },
}
