//! Photos as inputs (`--image`, `--preprocess`, `--size`, `--mean`, `--std`) and class names (`--labels`), shared by
//! every command that takes inputs.

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use ndarray::{Array3, ArrayD, CowArray, IxDyn};

use lrp_core::{ImageLayout, Network};
use lrp_image::Preprocess;

/// The photo options of a command.
#[derive(Args, Clone, Debug, Default)]
pub struct PhotoArgs {
    /// A photo (PNG or JPEG; gray, RGB or RGBA; 8 or 16 bits) or a folder of them, as the model's input; repeat
    /// for more. Prepared as --preprocess says.
    #[arg(long = "image", value_name = "FILE|DIR")]
    pub images: Vec<PathBuf>,
    /// How a photo becomes the input: `imagenet` is torchvision's evaluation transform (Resize(256) with
    /// antialiasing, CenterCrop(224), ToTensor, Normalize with ImageNet's mean and std; other crop sizes with
    /// --size); `plain` resizes the shorter side to the model's input, crops the centre and keeps values in [0, 1].
    /// With an .npy --input it says how the input was normalized, to draw it.
    #[arg(long, value_enum)]
    pub preprocess: Option<PresetArg>,
    /// The crop size S: the shorter side is resized to round(S / 0.875) (imagenet) or S (plain), and the centre
    /// S×S cropped. Default: the model's input size.
    #[arg(long, value_name = "S")]
    pub size: Option<usize>,
    /// Per-channel mean subtracted after scaling to [0, 1], e.g. 0.5,0.5,0.5 (one value for all channels, or one
    /// per channel); replaces the preset's.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true, value_name = "M[,M,M]")]
    pub mean: Option<Vec<f32>>,
    /// Per-channel standard deviation divided by after the mean; replaces the preset's.
    #[arg(long, value_delimiter = ',', value_name = "S[,S,S]")]
    pub std: Option<Vec<f32>>,
}

/// The preprocessing presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PresetArg {
    /// torchvision's ImageNet evaluation transform.
    Imagenet,
    /// Resize and crop to the model's input, values in [0, 1].
    Plain,
}

impl PhotoArgs {
    /// Whether photos were given.
    pub fn any(&self) -> bool {
        !self.images.is_empty()
    }

    /// Refuses photo options without photos where they mean nothing (`--size` only prepares photos).
    pub fn check_without_photos(&self) -> Result<()> {
        if !self.any() && self.size.is_some() {
            bail!("--size prepares photos: give --image FILE (an .npy input is used as it is)");
        }
        Ok(())
    }

    /// The preprocessing for a network input of `shape`.
    pub fn preprocess(&self, shape: &[usize]) -> Result<Preprocess> {
        let layout = layout_of(shape)?;
        let (h, w) = layout.size();
        if let Some(s) = self.size {
            if s == 0 {
                bail!("--size 0 leaves no pixels");
            }
            if (s, s) != (h, w) {
                bail!(
                    "--size {s}: the model takes {h}×{w} inputs (its input shape is {shape:?}); a crop of another \
                     size cannot go in"
                );
            }
        }
        let mut p = match self.preprocess.unwrap_or(PresetArg::Plain) {
            PresetArg::Imagenet => Preprocess {
                shorter_side: (h.max(w) as f64 / 0.875).round() as usize,
                crop: (h, w),
                mean: lrp_image::IMAGENET_MEAN.to_vec(),
                std: lrp_image::IMAGENET_STD.to_vec(),
            },
            PresetArg::Plain => Preprocess::plain(h, w),
        };
        if let Some(m) = &self.mean {
            p.mean = m.clone();
        }
        if let Some(s) = &self.std {
            p.std = s.clone();
        }
        if self.preprocess == Some(PresetArg::Imagenet)
            && layout.channels() != 3
            && self.mean.is_none()
            && self.std.is_none()
        {
            bail!(
                "--preprocess imagenet normalizes the 3 colour channels of ImageNet photos, but this model takes \
                 {}-channel {h}×{w} images (its input shape is {shape:?}); use --preprocess plain (values in [0, 1]), \
                 or give --mean and --std with {} value(s)",
                layout.channels(),
                layout.channels()
            );
        }
        if p.mean.len() != 1 && p.mean.len() != layout.channels() {
            bail!(
                "{} mean values for a model with {} channel(s): give 1 or {}",
                p.mean.len(),
                layout.channels(),
                layout.channels()
            );
        }
        if p.std.len() != 1 && p.std.len() != layout.channels() {
            bail!(
                "{} std values for a model with {} channel(s): give 1 or {}",
                p.std.len(),
                layout.channels(),
                layout.channels()
            );
        }
        if p.mean.iter().chain(&p.std).any(|v| !v.is_finite()) || p.std.contains(&0.0) {
            bail!("--mean and --std must be finite, and --std not 0");
        }
        Ok(p)
    }

    /// The normalization an input was made with (to draw it as a photo): the preset's or --mean/--std; `None` when
    /// nothing says (the values are drawn as they are).
    pub fn normalization(&self, channels: usize) -> Option<(Vec<f32>, Vec<f32>)> {
        let preset = match self.preprocess {
            Some(PresetArg::Imagenet) if channels == 3 => {
                Some((lrp_image::IMAGENET_MEAN.to_vec(), lrp_image::IMAGENET_STD.to_vec()))
            }
            Some(_) => Some((vec![0.0], vec![1.0])),
            None => None,
        };
        match (preset, &self.mean, &self.std) {
            (p, None, None) => p,
            (p, m, s) => {
                let (pm, ps) = p.unwrap_or((vec![0.0], vec![1.0]));
                Some((m.clone().unwrap_or(pm), s.clone().unwrap_or(ps)))
            }
        }
    }
}

/// The image layout of a network input, or an error saying it is not an image.
pub fn layout_of(shape: &[usize]) -> Result<ImageLayout> {
    ImageLayout::of(shape).with_context(|| {
        format!(
            "the model's input {shape:?} is not an image ([C, H, W] or [H, W, C] with 1 or 3 channels, [H, W], or a \
             flat square): photos cannot go in"
        )
    })
}

/// Photos read and prepared for a network: its inputs, their pictures, their names.
pub struct Photos {
    /// `[N, …input shape]`.
    pub x: ArrayD<f32>,
    /// What each photo looks like after resizing and cropping, `[H, W, 3]` in [0, 1].
    pub pictures: Vec<Array3<f32>>,
    /// The file names.
    pub names: Vec<String>,
}

/// Every file the `--image` arguments name (folders expanded, sorted), refusing a run with none.
pub fn photo_files(images: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in images {
        files.extend(lrp_image::photo_paths(p)?);
    }
    if files.is_empty() {
        bail!("--image: no photos");
    }
    Ok(files)
}

/// Reads and prepares every photo `args` names (the files in parallel) for `net`.
pub fn load_photos(args: &PhotoArgs, net: &Network) -> Result<Photos> {
    let files = photo_files(&args.images)?;
    let p = args.preprocess(net.input_shape())?;
    note_preset(args, net.input_shape());
    use rayon::prelude::*;
    let (prepared, turned): (Vec<lrp_image::Prepared>, Vec<Option<&str>>) = files
        .par_iter()
        .map(|f| prepare_file(f, &p, net.input_shape()))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .unzip();
    note_orientations(&files, &turned);
    let mut shape = vec![prepared.len()];
    shape.extend_from_slice(net.input_shape());
    let mut x = ArrayD::<f32>::zeros(IxDyn(&shape));
    for (mut row, pr) in x.outer_iter_mut().zip(&prepared) {
        row.assign(&pr.input);
    }
    Ok(Photos {
        x,
        pictures: prepared.into_iter().map(|p| p.picture).collect(),
        names: files.iter().map(|f| display_name(f)).collect(),
    })
}

/// A photo file prepared, with the orientation its file asks for (see [`note_orientations`]).
fn prepare_file(f: &Path, p: &Preprocess, shape: &[usize]) -> Result<(lrp_image::Prepared, Option<&'static str>)> {
    let photo = lrp_image::load(f)?;
    let prepared =
        lrp_image::prepare(&photo, p, shape).with_context(|| format!("{}: cannot be made an input", f.display()))?;
    Ok((prepared, photo.orientation))
}

/// Says on standard error which photos ask (by their EXIF orientation, as phone cameras write it) to be shown
/// turned: their pixels are used as stored, as torchvision's PIL loader uses them, so the network sees them and the
/// heatmaps show them that way. One note for all of them.
fn note_orientations(files: &[PathBuf], turned: &[Option<&str>]) {
    let named: Vec<(String, &str)> = files
        .iter()
        .zip(turned)
        .filter_map(|(f, t)| t.map(|t| (display_name(f), t)))
        .collect();
    let Some((first, how)) = named.first() else {
        return;
    };
    let which = if named.len() == 1 {
        format!("{first} asks (EXIF orientation) to be shown {how}")
    } else {
        let shown: Vec<&str> = named.iter().take(3).map(|(n, _)| n.as_str()).collect();
        format!(
            "{} photos ({}{}) ask (EXIF orientation) to be shown turned ({first}: {how})",
            named.len(),
            shown.join(", "),
            if named.len() > 3 { ", …" } else { "" }
        )
    };
    eprintln!(
        "note: {which}; lrp uses pixels as stored, as torchvision's PIL loader does, so the network sees and the \
         heatmaps show the unturned picture (turn the file itself first, e.g. with `exiftran -ai` or ImageMagick's \
         `-auto-orient`, to explain the upright view)"
    );
}

/// A file's name for captions.
pub fn display_name(f: &Path) -> String {
    f.file_name()
        .map_or_else(|| f.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Says on standard error when a 3-channel model gets photos without normalization (an ImageNet model then sees
/// inputs it was not trained on).
fn note_preset(args: &PhotoArgs, shape: &[usize]) {
    if args.preprocess.is_none() && args.mean.is_none() && args.std.is_none() && layout_channels(shape) == 3 {
        eprintln!(
            "note: photos are prepared with --preprocess plain (values in [0, 1], no normalization); a model trained \
             on ImageNet wants --preprocess imagenet"
        );
    }
}

fn layout_channels(shape: &[usize]) -> usize {
    ImageLayout::of(shape).map_or(0, |l| l.channels())
}

/// The pictures of `.npy` inputs of a 3-channel image model: the values un-normalized with `norm` (mean, std) and
/// clamped to [0, 1]; `None` when the model does not take colour images.
pub fn pictures_of(x: &ArrayD<f32>, shape: &[usize], norm: Option<&(Vec<f32>, Vec<f32>)>) -> Option<Vec<Array3<f32>>> {
    let layout = ImageLayout::of(shape)?;
    if layout.channels() != 3 {
        return None;
    }
    let (h, w) = layout.size();
    let (mean, std) = norm.cloned().unwrap_or((vec![0.0], vec![1.0]));
    Some(
        x.outer_iter()
            .map(|s| {
                let flat: Vec<f32> = s.iter().copied().collect();
                Array3::from_shape_fn((h, w, 3), |(y, xx, c)| {
                    let v = flat[layout.index(y, xx, c)];
                    let (m, sd) = (mean[c.min(mean.len() - 1)], std[c.min(std.len() - 1)]);
                    (v * sd + m).clamp(0.0, 1.0)
                })
            })
            .collect(),
    )
}

/// Photos as a batch source: each chunk's files are read, checked against the digest they had when the run
/// started (a photo replaced during a run is an error, not a silent mix), and prepared when the chunk is explained,
/// so a folder of any size takes the memory of a chunk.
pub struct PhotoSource {
    files: Vec<PathBuf>,
    digests: Vec<String>,
    preprocess: Preprocess,
    shape: Vec<usize>,
}

impl PhotoSource {
    /// Opens the photos `args` names for `net`: each file is read, digested and prepared once (so a bad photo fails
    /// the run before it starts). Returns the source and the digest of the whole set (files and settings).
    pub fn open(args: &PhotoArgs, shape: &[usize]) -> Result<(PhotoSource, String)> {
        let files = photo_files(&args.images)?;
        let preprocess = args.preprocess(shape)?;
        note_preset(args, shape);
        use rayon::prelude::*;
        let (digests, turned): (Vec<String>, Vec<Option<&str>>) = files
            .par_iter()
            .map(|f| {
                let bytes = read_photo_bytes(f)?;
                let photo = lrp_image::decode(f, &bytes)?;
                lrp_image::prepare(&photo, &preprocess, shape)
                    .with_context(|| format!("{}: cannot be made an input", f.display()))?;
                Ok((lrp_batch::digest_bytes(&bytes), photo.orientation))
            })
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .unzip();
        note_orientations(&files, &turned);
        let whole =
            lrp_batch::digest_bytes(format!("photos {digests:?} preprocess {preprocess:?} shape {shape:?}").as_bytes());
        Ok((
            PhotoSource {
                files,
                digests,
                preprocess,
                shape: shape.to_vec(),
            },
            whole,
        ))
    }

    /// The photo files, in sample order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

/// A photo file's bytes, within [`lrp_image::MAX_FILE_BYTES`] (the checks of [`lrp_image::load`] that need the
/// file itself: a regular file, not too large).
fn read_photo_bytes(f: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(f).with_context(|| f.display().to_string())?;
    if !meta.is_file() {
        bail!("{}: is not a regular file", f.display());
    }
    if meta.len() > lrp_image::MAX_FILE_BYTES {
        bail!(
            "{}: is {} MB, more than the {} MB a photo may have",
            f.display(),
            meta.len() >> 20,
            lrp_image::MAX_FILE_BYTES >> 20
        );
    }
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(f)
        .and_then(|file| file.take(lrp_image::MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .with_context(|| f.display().to_string())?;
    Ok(bytes)
}

impl lrp_batch::Source for PhotoSource {
    fn len(&self) -> usize {
        self.files.len()
    }
    fn sample_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }
    fn chunk(&self, range: Range<usize>) -> lrp_batch::Result<CowArray<'_, f32, IxDyn>> {
        let mut shape = vec![range.len()];
        shape.extend_from_slice(&self.shape);
        let mut out = ArrayD::<f32>::zeros(IxDyn(&shape));
        for (i, mut row) in range.zip(out.outer_iter_mut()) {
            let f = &self.files[i];
            let fail = |reason: String| lrp_batch::BatchError::Input {
                path: f.clone(),
                reason,
            };
            let bytes = read_photo_bytes(f).map_err(|e| fail(format!("{e:#}")))?;
            if lrp_batch::digest_bytes(&bytes) != self.digests[i] {
                return Err(fail(
                    "changed while the run was going on; start again (or --resume) on the final files".into(),
                ));
            }
            let photo = lrp_image::decode(f, &bytes).map_err(|e| fail(e.to_string()))?;
            let p = lrp_image::prepare(&photo, &self.preprocess, &self.shape).map_err(|e| fail(e.to_string()))?;
            row.assign(&p.input);
        }
        Ok(out.into())
    }
}

/// Class names, one a line (`--labels`), for a model's outputs.
pub struct Labels(Vec<String>);

impl Labels {
    /// Reads a labels file: UTF-8 text with exactly one name per output of a model with `classes` outputs (blank
    /// lines at the end are ignored).
    pub fn load(path: &Path, classes: usize) -> Result<Labels> {
        let meta = std::fs::metadata(path).with_context(|| format!("--labels {}", path.display()))?;
        if !meta.is_file() {
            bail!("--labels {}: is not a regular file", path.display());
        }
        if meta.len() > 16 << 20 {
            bail!(
                "--labels {}: {} MB is not a list of class names",
                path.display(),
                meta.len() >> 20
            );
        }
        let text = std::fs::read(path).with_context(|| format!("--labels {}", path.display()))?;
        let text = String::from_utf8(text)
            .map_err(|e| anyhow::anyhow!("--labels {}: not UTF-8 text ({e})", path.display()))?;
        let mut names: Vec<String> = text.lines().map(|l| l.trim_end_matches('\r').to_string()).collect();
        while names.last().is_some_and(|n| n.trim().is_empty()) {
            names.pop();
        }
        if names.len() != classes {
            bail!(
                "--labels {}: {} names for a model with {classes} outputs (one name a line, in class order)",
                path.display(),
                names.len()
            );
        }
        Ok(Labels(names))
    }

    /// The names, in class order.
    pub fn into_names(self) -> Vec<String> {
        self.0
    }

    /// The class named `name` (`--target tabby`): the one whose name is `name`, or failing that the one whose name
    /// is `name` ignoring case; an error naming the classes whose names contain it when none or several match.
    pub fn find(&self, name: &str) -> Result<usize> {
        let exact: Vec<usize> = (0..self.0.len()).filter(|&k| self.0[k] == name).collect();
        let found = if exact.is_empty() {
            (0..self.0.len())
                .filter(|&k| self.0[k].eq_ignore_ascii_case(name))
                .collect()
        } else {
            exact
        };
        match found[..] {
            [k] => Ok(k),
            [] => {
                let low = name.to_lowercase();
                let near: Vec<String> = (0..self.0.len())
                    .filter(|&k| !low.is_empty() && self.0[k].to_lowercase().contains(&low))
                    .map(|k| self.of(k))
                    .collect();
                if near.is_empty() {
                    bail!("--target '{name}': no class has that name in --labels (give its name or number)");
                }
                bail!(
                    "--target '{name}': no class has that name in --labels; names containing it: {}{}",
                    near.iter().take(8).cloned().collect::<Vec<_>>().join(", "),
                    if near.len() > 8 { ", …" } else { "" }
                )
            }
            _ => bail!(
                "--target '{name}': {} classes have that name ({}); give the number",
                found.len(),
                found.iter().map(|&k| self.of(k)).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// `k name`, e.g. `281 tabby`.
    pub fn of(&self, k: usize) -> String {
        match self.0.get(k) {
            Some(n) if !n.is_empty() => format!("{k} {n}"),
            _ => k.to_string(),
        }
    }
}

/// A class as printed: `k name` with labels, else `k`.
pub fn class_name(labels: Option<&Labels>, k: usize) -> String {
    labels.map_or_else(|| k.to_string(), |l| l.of(k))
}
