//! Photos that must be refused by name before or while decoding (truncated, zero-sized, absurdly large, CMYK, not an
//! image, special files), and the formats that must be read (gray, RGB, RGBA, 16 bits) with the values they hold.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// CRC-32 (IEEE) of PNG chunks.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

/// A PNG of `w × h` pixels of `color` at `depth` bits, from the `png` crate.
fn png(w: u32, h: u32, color: png::ColorType, depth: png::BitDepth, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(color);
        enc.set_depth(depth);
        let mut writer = enc.write_header().unwrap();
        writer.write_image_data(data).unwrap();
    }
    out
}

/// `bytes` (a PNG) with the size in its IHDR chunk replaced, the chunk's CRC recomputed.
fn with_header_size(mut bytes: Vec<u8>, w: u32, h: u32) -> Vec<u8> {
    // Signature (8), length (4), "IHDR" (4), then width and height.
    bytes[16..20].copy_from_slice(&w.to_be_bytes());
    bytes[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

fn refused(name: &str, bytes: &[u8]) -> String {
    match lrp_image::decode(Path::new(name), bytes) {
        Ok(p) => panic!("{name} was decoded ({}×{})", p.width, p.height),
        Err(e) => e.to_string(),
    }
}

#[test]
fn truncated_photos_are_refused() {
    let jpeg = std::fs::read(root().join("data/photos/rocket.jpg")).unwrap();
    for cut in [jpeg.len() / 2, jpeg.len() - 2, 1000] {
        let e = refused("cut.jpg", &jpeg[..cut]);
        assert!(e.contains("cut.jpg") && e.contains("truncated"), "{e}");
    }
    let png = std::fs::read(root().join("data/photos/chelsea.png")).unwrap();
    for cut in [png.len() / 2, png.len() - 20, 40] {
        let e = refused("cut.png", &png[..cut]);
        assert!(e.contains("cut.png"), "{e}");
    }
}

#[test]
fn a_zero_sized_image_and_a_huge_header_are_refused_before_decoding() {
    let small = png(2, 2, png::ColorType::Rgb, png::BitDepth::Eight, &[0; 12]);
    let e = refused("zero.png", &with_header_size(small.clone(), 0, 2));
    assert!(e.contains("zero.png"), "{e}");
    // 100,000 × 100,000 pixels claimed by a 70-byte file: refused by the pixel count, nothing allocated (this test
    // would take 30 GB and minutes otherwise).
    let start = std::time::Instant::now();
    let e = refused("huge.png", &with_header_size(small, 100_000, 100_000));
    assert!(e.contains("100000×100000") && e.contains("before decoding"), "{e}");
    assert!(start.elapsed().as_secs() < 5);
}

#[test]
fn cmyk_jpegs_and_files_that_are_not_photos_are_refused_by_name() {
    // The header of a 4-component (CMYK) baseline JPEG; a decoder would turn it into wrong colours.
    let mut cmyk = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x14, 8, 0, 16, 0, 16, 4];
    for c in 1..=4u8 {
        cmyk.extend_from_slice(&[c, 0x11, 0]);
    }
    cmyk.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 63, 0, 0x12, 0xFF, 0xD9]);
    let e = refused("cmyk.jpg", &cmyk);
    assert!(e.contains("CMYK"), "{e}");
    let e = refused("notes.jpg", b"these are my notes, not a photo\n");
    assert!(e.contains("not a PNG or JPEG"), "{e}");
    assert!(refused("empty.png", b"").contains("empty"));
    let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;";
    assert!(refused("a.gif", gif).contains("PNG and JPEG"));
}

#[test]
fn special_files_and_folders_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.png");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    // Opening a FIFO for reading would block until a writer comes: it must be refused from its metadata.
    let e = lrp_image::load(&fifo).unwrap_err().to_string();
    assert!(e.contains("not a regular file"), "{e}");
    let e = lrp_image::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("is a folder"), "{e}");
    // A folder lists the FIFO among its photos (it is refused when read, not skipped in silence); an empty folder
    // is refused.
    assert_eq!(lrp_image::photo_paths(dir.path()).unwrap(), vec![fifo.clone()]);
    let empty = tempfile::tempdir().unwrap();
    let e = lrp_image::photo_paths(empty.path()).unwrap_err().to_string();
    assert!(e.contains("no .png") && !e.contains("subfolders"), "{e}");
    // Photos only in class subfolders (ImageNet's layout): the refusal names the subfolders and how to give them.
    for class in ["dog", "cat"] {
        std::fs::create_dir(empty.path().join(class)).unwrap();
        std::fs::copy(
            root().join("data/photos/chelsea.png"),
            empty.path().join(class).join("a.png"),
        )
        .unwrap();
    }
    let e = lrp_image::photo_paths(empty.path()).unwrap_err().to_string();
    let first = empty.path().join("cat").display().to_string();
    assert!(
        e.contains("has 2: cat, dog") && e.contains(&format!("--image {first}")),
        "{e}"
    );
    let e = lrp_image::load(&dir.path().join("missing.png"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.png"), "{e}");
}

#[test]
fn gray_rgba_and_sixteen_bit_photos_are_read_with_their_values() {
    // A uniform gray 8-bit image of value 51 into an RGB model: every channel (51/255 − mean)/std.
    let gray = png(8, 6, png::ColorType::Grayscale, png::BitDepth::Eight, &[51; 48]);
    let photo = lrp_image::decode(Path::new("gray.png"), &gray).unwrap();
    assert_eq!((photo.channels, photo.bits()), (1, 8));
    let p = lrp_image::Preprocess::imagenet(4);
    let x = lrp_image::prepare(&photo, &p, &[3, 4, 4]).unwrap().input;
    for c in 0..3 {
        let want = (51.0f32 / 255.0 - lrp_image::IMAGENET_MEAN[c]) / lrp_image::IMAGENET_STD[c];
        assert!(
            x.index_axis(ndarray::Axis(0), c).iter().all(|&v| v == want),
            "channel {c}"
        );
    }
    // RGBA: the alpha channel is dropped (as Pillow's convert('RGB') does), whatever it holds.
    let rgba: Vec<u8> = (0..48).flat_map(|i| [200u8, 100, 0, (i * 5) as u8]).collect();
    let photo = lrp_image::decode(
        Path::new("rgba.png"),
        &png(8, 6, png::ColorType::Rgba, png::BitDepth::Eight, &rgba),
    )
    .unwrap();
    let x = lrp_image::prepare(&photo, &lrp_image::Preprocess::plain(4, 4), &[4, 4, 3])
        .unwrap()
        .input;
    assert_eq!(x[[1, 2, 0]], 200.0 / 255.0);
    assert_eq!(x[[1, 2, 1]], 100.0 / 255.0);
    assert_eq!(x[[3, 3, 2]], 0.0);
    // 16 bits: 0x8000 of 0xFFFF, kept at 16-bit precision (not clipped to 8 bits).
    let sixteen: Vec<u8> = (0..48).flat_map(|_| [0x80u8, 0x00, 0xFF, 0xFF, 0x00, 0x01]).collect();
    let photo = lrp_image::decode(
        Path::new("16.png"),
        &png(8, 6, png::ColorType::Rgb, png::BitDepth::Sixteen, &sixteen),
    )
    .unwrap();
    assert_eq!(photo.bits(), 16);
    let x = lrp_image::prepare(&photo, &lrp_image::Preprocess::plain(6, 6), &[3, 6, 6])
        .unwrap()
        .input;
    assert!((x[[0, 2, 2]] - 32768.0 / 65535.0).abs() < 1e-6);
    assert!((x[[1, 2, 2]] - 1.0).abs() < 1e-6);
    assert!((x[[2, 2, 2]] - 1.0 / 65535.0).abs() < 1e-7);
}
