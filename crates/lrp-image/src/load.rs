//! Reading a photo: the checks made before the decoder runs (a regular file of a sane size, a PNG or JPEG
//! signature, the pixel count the header claims, no CMYK, a JPEG that ends), then the `image` crate's decoder.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use crate::ImageError;

/// The most bytes a photo file may have (a 100-megapixel PNG compresses to well under this).
pub const MAX_FILE_BYTES: u64 = 512 << 20;
/// The most pixels a photo may have: its header is read first and a larger claim is refused before decoding
/// (Pillow refuses above 179 megapixels; a 100-megapixel RGB image is 300 MB decoded).
pub const MAX_PIXELS: u64 = 100_000_000;

/// A decoded photo: 8 or 16 bits per value, gray or RGB (alpha is dropped, as Pillow's `convert('RGB')` does).
#[derive(Clone, Debug, PartialEq)]
pub struct Photo {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// 1 (gray) or 3 (RGB).
    pub channels: usize,
    /// Row-major, channels interleaved (`[height][width][channels]`).
    pub pixels: Pixels,
    /// How the file asks to be shown when that is not as its pixels are stored (a JPEG's EXIF orientation, e.g.
    /// "rotated 90° clockwise"). The pixels are used as stored, as Pillow's `Image.open` (and so torchvision) does.
    pub orientation: Option<&'static str>,
}

/// The values of a photo.
#[derive(Clone, Debug, PartialEq)]
pub enum Pixels {
    /// 8 bits per value (0–255).
    U8(Vec<u8>),
    /// 16 bits per value (0–65535).
    U16(Vec<u16>),
}

impl Photo {
    /// Bits per value.
    pub fn bits(&self) -> u32 {
        match self.pixels {
            Pixels::U8(_) => 8,
            Pixels::U16(_) => 16,
        }
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> ImageError {
    ImageError::Bad {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads a PNG or JPEG photo. Everything that can be checked before decoding is: the file is a regular file (a
/// symlink to one is fine) of at most [`MAX_FILE_BYTES`], starts like a PNG or JPEG, claims at most [`MAX_PIXELS`]
/// pixels and neither zero width nor zero height, is not a CMYK JPEG, and a JPEG has its end-of-image marker.
pub fn load(path: &Path) -> Result<Photo, ImageError> {
    let io = |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_dir() {
        return Err(bad(
            path,
            "is a folder (give the folder itself to --image to read every photo in it)",
        ));
    }
    if !meta.is_file() {
        return Err(bad(
            path,
            "is not a regular file (a device, FIFO or socket is not read)",
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(bad(
            path,
            format!(
                "is {} MB, more than the {} MB a photo may have",
                meta.len() >> 20,
                MAX_FILE_BYTES >> 20
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    decode(path, &bytes)
}

/// [`load`] on bytes already read (`path` names them in errors).
pub fn decode(path: &Path, bytes: &[u8]) -> Result<Photo, ImageError> {
    if bytes.is_empty() {
        return Err(bad(path, "is empty"));
    }
    let format = match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Png | ImageFormat::Jpeg)) => f,
        Ok(other) => {
            return Err(bad(
                path,
                format!("is a {other:?} image; lrp reads PNG and JPEG photos (convert it first)"),
            ));
        }
        Err(_) => {
            let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
            return Err(bad(
                path,
                format!("is not a PNG or JPEG image (it starts with bytes {})", head.join(" ")),
            ));
        }
    };
    if format == ImageFormat::Jpeg {
        crate::jpeg::check(bytes).map_err(|reason| bad(path, reason))?;
    }
    let mut reader = ImageReader::with_format(BufReader::new(std::io::Cursor::new(bytes)), format);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(2 * MAX_PIXELS * 4 * 2);
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| bad(path, format!("cannot read its header: {e}")))?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(bad(path, format!("is {w}×{h} pixels: an image needs at least one")));
    }
    let pixels = u64::from(w) * u64::from(h);
    if pixels > MAX_PIXELS {
        return Err(bad(
            path,
            format!(
                "claims {w}×{h} pixels ({:.1} megapixels), more than the {} megapixels lrp decodes; refused before \
                 decoding",
                pixels as f64 / 1e6,
                MAX_PIXELS / 1_000_000
            ),
        ));
    }
    // A file whose orientation cannot be read is used as stored, as one without any.
    let orientation = decoder.orientation().ok().and_then(turned);
    let image = DynamicImage::from_decoder(decoder).map_err(|e| bad(path, format!("cannot decode: {e}")))?;
    Ok(Photo {
        orientation,
        ..from_dynamic(image, path)?
    })
}

/// What an orientation asks of a viewer, or `None` for the pixels as stored.
fn turned(o: image::metadata::Orientation) -> Option<&'static str> {
    use image::metadata::Orientation as O;
    match o {
        O::NoTransforms => None,
        O::Rotate90 => Some("rotated 90° clockwise"),
        O::Rotate180 => Some("rotated 180°"),
        O::Rotate270 => Some("rotated 90° counter-clockwise"),
        O::FlipHorizontal => Some("mirrored left to right"),
        O::FlipVertical => Some("mirrored top to bottom"),
        O::Rotate90FlipH => Some("rotated 90° clockwise and mirrored"),
        O::Rotate270FlipH => Some("rotated 90° counter-clockwise and mirrored"),
    }
}

fn from_dynamic(image: DynamicImage, path: &Path) -> Result<Photo, ImageError> {
    let (width, height) = (image.width() as usize, image.height() as usize);
    let photo = |channels, pixels| Photo {
        width,
        height,
        channels,
        pixels,
        orientation: None,
    };
    Ok(match image {
        DynamicImage::ImageLuma8(i) => photo(1, Pixels::U8(i.into_raw())),
        DynamicImage::ImageRgb8(i) => photo(3, Pixels::U8(i.into_raw())),
        DynamicImage::ImageLumaA8(i) => photo(1, Pixels::U8(i.into_raw().chunks(2).map(|p| p[0]).collect())),
        DynamicImage::ImageRgba8(i) => photo(3, Pixels::U8(drop_alpha(&i.into_raw()))),
        DynamicImage::ImageLuma16(i) => photo(1, Pixels::U16(i.into_raw())),
        DynamicImage::ImageRgb16(i) => photo(3, Pixels::U16(i.into_raw())),
        DynamicImage::ImageLumaA16(i) => photo(1, Pixels::U16(i.into_raw().chunks(2).map(|p| p[0]).collect())),
        DynamicImage::ImageRgba16(i) => photo(3, Pixels::U16(drop_alpha(&i.into_raw()))),
        other => {
            return Err(bad(
                path,
                format!("has {:?} pixels, which lrp does not read", other.color()),
            ));
        }
    })
}

fn drop_alpha<T: Copy>(rgba: &[T]) -> Vec<T> {
    rgba.chunks(4).flat_map(|p| [p[0], p[1], p[2]]).collect()
}

/// The photos a `--image` argument names: the file itself, or a folder's `.png`, `.jpg` and `.jpeg` files (any
/// case; not its subfolders; hidden files skipped) sorted by name. A folder without photos is an error.
pub fn photo_paths(path: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let meta = std::fs::metadata(path).map_err(|source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    let mut folders = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ImageError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let p = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let photo_ext = p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ["png", "jpg", "jpeg"].contains(&e.to_ascii_lowercase().as_str()));
        if name.starts_with('.') {
            continue;
        }
        if p.is_dir() {
            folders.push(name);
        } else if photo_ext {
            out.push(p);
        }
    }
    if out.is_empty() {
        folders.sort();
        let inside = match folders.len() {
            0 => String::new(),
            n => format!(
                " (subfolders are not searched; it has {n}: {}{}; name them, e.g. --image {})",
                folders.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
                if n > 3 { ", …" } else { "" },
                path.join(&folders[0]).display()
            ),
        };
        return Err(bad(
            path,
            format!("is a folder with no .png, .jpg or .jpeg files{inside}"),
        ));
    }
    out.sort();
    Ok(out)
}
