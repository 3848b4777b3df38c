//! `prepare` against torchvision: the three photos of `data/photos` and two of extreme proportions through `Preprocess::imagenet` at crop sizes 224
//! and 160, compared with what torchvision's `Resize` → `CenterCrop` → `ToTensor` → `Normalize` gives on the PIL image
//! (`tests/fixtures/photos/expected`, made by `tests/fixtures/photos/tools/torchvision_prepare.py`).

use std::path::PathBuf;

use ndarray::ArrayD;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn imagenet_preprocessing_matches_torchvision_on_photos_of_every_shape() {
    for (folder, name) in [
        ("data/photos", "chelsea.png"),
        ("data/photos", "coffee.png"),
        ("data/photos", "rocket.jpg"),
        // Extreme proportions: 1500×4 becomes 96,000×256 before the crop, 3×900 becomes 256×76,800.
        ("tests/fixtures/photos/extreme", "wide.png"),
        ("tests/fixtures/photos/extreme", "tall.png"),
    ] {
        let photo = lrp_image::load(&root().join(folder).join(name)).unwrap();
        for size in [224usize, 160] {
            let got = lrp_image::prepare(&photo, &lrp_image::Preprocess::imagenet(size), &[3, size, size])
                .unwrap()
                .input;
            let stem = name.split('.').next().unwrap();
            let want: ArrayD<f32> = ndarray_npy::read_npy(
                root().join(format!("tests/fixtures/photos/expected/{stem}-imagenet-{size}.npy")),
            )
            .unwrap();
            assert_eq!(got.shape(), want.shape());
            let diffs: Vec<f32> = got.iter().zip(want.iter()).map(|(a, b)| (a - b).abs()).collect();
            let worst = diffs
                .iter()
                .fold(0.0f32, |m, &d| if d.is_nan() { f32::NAN } else { m.max(d) });
            let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
            let exact = diffs.iter().filter(|&&d| d == 0.0).count() as f32 / diffs.len() as f32;
            println!(
                "{name} {size}: max |diff| {worst:.2e}, mean {mean:.2e}, {:.2}% identical",
                100.0 * exact
            );
            // The bounds, in normalized units; PNG decoding and Pillow's resize are reproduced exactly, so the
            // PNGs must match bit for bit; the JPEG decoder (zune-jpeg, not libjpeg) may differ by a level here and
            // there.
            assert!(
                worst <= 0.05 && mean <= 0.005,
                "{name} {size}: max {worst}, mean {mean}"
            );
            if name.ends_with(".png") {
                assert_eq!(
                    worst, 0.0,
                    "{name} {size}: a PNG goes through the same arithmetic as Pillow"
                );
            }
        }
    }
}

#[test]
fn a_photo_of_extreme_proportions_costs_no_more_than_its_crop() {
    // 100,000×1 and 1×100,000 pixels of one colour: resized to a shorter side of 256 they would be 25.6 million
    // pixels long (6.5 gigapixels; refused before, and gigabytes of memory if it had been done). Only the crop is
    // computed, and a uniform photo stays uniform under Pillow's normalized weights.
    for (w, h) in [(100_000usize, 1usize), (1, 100_000)] {
        let photo = lrp_image::Photo {
            width: w,
            height: h,
            channels: 3,
            pixels: lrp_image::Pixels::U8([90u8, 160, 230].repeat(w * h)),
            orientation: None,
        };
        let x = lrp_image::prepare(&photo, &lrp_image::Preprocess::imagenet(224), &[3, 224, 224])
            .unwrap()
            .input;
        for (c, v) in [90.0f32, 160.0, 230.0].into_iter().enumerate() {
            let want = (v / 255.0 - lrp_image::IMAGENET_MEAN[c]) / lrp_image::IMAGENET_STD[c];
            assert!(
                x.index_axis(ndarray::Axis(0), c).iter().all(|&got| got == want),
                "{w}×{h}, channel {c}"
            );
        }
    }
}
