//! `prepare` against torchvision: the three photos of `data/photos` through `Preprocess::imagenet` at crop sizes 224
//! and 160, compared with what torchvision's `Resize` → `CenterCrop` → `ToTensor` → `Normalize` gives on the PIL image
//! (`tests/fixtures/photos/expected`, made by `tests/fixtures/photos/tools/torchvision_prepare.py`).

use std::path::PathBuf;

use ndarray::ArrayD;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn imagenet_preprocessing_matches_torchvision_on_three_photos() {
    for name in ["chelsea.png", "coffee.png", "rocket.jpg"] {
        let photo = lrp_image::load(&root().join("data/photos").join(name)).unwrap();
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
