//! Two facts about a JPEG read from its marker segments before the decoder runs (the decoder itself would turn a CMYK
//! image into wrong colours and a truncated one into gray rows without an error): the number of colour components of
//! the frame, and whether the image data ends with the end-of-image marker.

/// Checks that `bytes` hold a JPEG frame of 1 or 3 components whose data ends with an end-of-image marker.
pub(crate) fn check(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return Err("is not a JPEG (no start-of-image marker)".into());
    }
    let mut i = 2;
    let mut components = None;
    loop {
        // Fill bytes (0xFF repeated) may precede a marker.
        while i < bytes.len() && bytes[i] == 0xFF && bytes.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        if i + 1 >= bytes.len() {
            return Err("is truncated: it ends inside its header segments".into());
        }
        if bytes[i] != 0xFF {
            return Err(format!("is not a valid JPEG: expected a marker at byte {i}"));
        }
        let marker = bytes[i + 1];
        i += 2;
        match marker {
            // Markers without a length.
            0x01 | 0xD0..=0xD7 => continue,
            0xD9 => return Err("is not a valid JPEG: it ends before any image data".into()),
            _ => {}
        }
        if i + 2 > bytes.len() {
            return Err("is truncated: it ends inside a marker segment".into());
        }
        let len = usize::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
        if len < 2 || i + len > bytes.len() {
            return Err("is truncated: a marker segment runs past the end of the file".into());
        }
        let segment = &bytes[i + 2..i + len];
        // Start of frame: every SOFn except DHT (C4), JPG (C8) and DAC (CC).
        if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            if segment.len() < 6 {
                return Err("is not a valid JPEG: its frame header is too short".into());
            }
            let (height, width) = (
                u16::from_be_bytes([segment[1], segment[2]]),
                u16::from_be_bytes([segment[3], segment[4]]),
            );
            if width == 0 || height == 0 {
                return Err(format!("is {width}×{height} pixels: an image needs at least one"));
            }
            components = Some(segment[5]);
        }
        i += len;
        if marker == 0xDA {
            break;
        }
    }
    match components {
        None => return Err("is not a valid JPEG: image data starts before a frame header".into()),
        Some(4) => {
            return Err(
                "is a CMYK JPEG (4 colour components); lrp reads gray and RGB photos: convert it to RGB \
                        first (e.g. with ImageMagick: convert in.jpg -colorspace sRGB out.jpg)"
                    .into(),
            );
        }
        Some(1 | 3) => {}
        Some(n) => {
            return Err(format!(
                "has {n} colour components; lrp reads gray (1) and RGB (3) JPEGs"
            ));
        }
    }
    // The entropy-coded data (and any later scans of a progressive JPEG) must end with FF D9.
    if !bytes[i..].windows(2).any(|w| w == [0xFF, 0xD9]) {
        return Err("is truncated: its image data has no end-of-image marker (the file was cut short)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    /// A minimal marker sequence: SOI, SOF0 with `components`, SOS, two data bytes, then `tail`.
    fn jpeg(components: u8, tail: &[u8]) -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8];
        let mut sof = vec![0xFF, 0xC0, 0x00, 8 + 3 * components, 8, 0, 2, 0, 3, components];
        for c in 0..components {
            sof.extend_from_slice(&[c + 1, 0x11, 0]);
        }
        v.extend_from_slice(&sof);
        v.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 63, 0]);
        v.extend_from_slice(&[0x12, 0x34]);
        v.extend_from_slice(tail);
        v
    }

    #[test]
    fn frames_of_one_and_three_components_that_end_pass() {
        assert_eq!(check(&jpeg(3, &[0xFF, 0xD9])), Ok(()));
        assert_eq!(check(&jpeg(1, &[0xFF, 0xD9, 0, 0])), Ok(()));
    }

    #[test]
    fn cmyk_truncation_and_zero_size_are_named() {
        assert!(check(&jpeg(4, &[0xFF, 0xD9])).unwrap_err().contains("CMYK"));
        assert!(check(&jpeg(3, &[])).unwrap_err().contains("truncated"));
        let mut zero = jpeg(3, &[0xFF, 0xD9]);
        zero[8] = 0; // the low byte of the height
        assert!(check(&zero).unwrap_err().contains("3×0"));
        let whole = jpeg(3, &[0xFF, 0xD9]);
        for cut in 2..14 {
            assert!(check(&whole[..cut]).is_err(), "cut at {cut}");
        }
    }
}
