//! Bounded fuzzing of every loader, seeded and run in CI: mutated and truncated model files (`.lrpm`), `.npy`
//! inputs, IDX datasets and rule specs. Each input must give a value or an error — never a panic — and a model
//! that loads must run a forward pass and an explanation without panicking.

use std::path::Path;

use lrp_batch::{NpySource, Source};
use lrp_core::Model;
use lrp_rules::{Explainer, Spec, Target};
use ndarray::ArrayD;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Every fuzz test runs under an address-space limit of 6 GiB (this test binary is a process of its own): a loader
/// that believed a header and allocated for it would abort the run instead of passing.
fn limit_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(target_os = "linux")]
        {
            let limit = libc::rlimit {
                rlim_cur: 6 << 30,
                rlim_max: 6 << 30,
            };
            // SAFETY: setrlimit with a valid struct; it only lowers this process's own limit.
            let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
            assert_eq!(rc, 0, "setrlimit");
        }
    });
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `bytes` with a few bits flipped, a few bytes set to extreme values, or cut short.
fn mutate(rng: &mut ChaCha8Rng, bytes: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    match rng.random_range(0..4) {
        0 => {
            for _ in 0..rng.random_range(1..6) {
                let i = rng.random_range(0..b.len());
                b[i] ^= 1 << rng.random_range(0..8);
            }
        }
        1 => b.truncate(rng.random_range(0..b.len())),
        2 => {
            // A run of 0xff or 0x00 (absurd lengths and counts in headers).
            let i = rng.random_range(0..b.len());
            let v = if rng.random_bool(0.5) { 0xff } else { 0x00 };
            for x in b.iter_mut().skip(i).take(rng.random_range(1..9)) {
                *x = v;
            }
        }
        _ => {
            let i = rng.random_range(0..b.len());
            b.insert(i, rng.random());
        }
    }
    b
}

#[test]
fn mutated_model_files_load_or_are_refused_and_loaded_ones_run() {
    limit_memory();
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let x = ArrayD::<f32>::from_elem(ndarray::IxDyn(&[2, 1, 28, 28]), 0.5);
    let mut loaded = 0;
    // The small shipped models (a chain, a residual graph, a transformer); 1,500 mutations of each.
    for name in ["mnist-cnn.lrpm", "mnist-resnet.lrpm", "mnist-vit.lrpm"] {
        let original = std::fs::read(root().join("data/models").join(name)).unwrap();
        for _ in 0..1500 {
            let bytes = mutate(&mut rng, &original);
            if let Ok(model) = Model::from_bytes(&bytes, Path::new(name)) {
                loaded += 1;
                let net = &model.network;
                if net.input_shape() == [1, 28, 28] {
                    let _ = net.forward(x.view());
                    for spec in ["epsilon-gamma-box", "attnlrp"] {
                        if let Ok(ex) = Explainer::new(net, &Spec::parse(spec).unwrap()) {
                            let _ = ex.explain(x.view(), &Target::Predicted);
                        }
                    }
                }
            }
        }
    }
    // Flips inside the weights load (and must run); the count shows the harness reached that path.
    assert!(loaded > 100, "only {loaded} mutated files loaded");
}

fn npy_bytes(shape: &[usize], descr: &str, payload: usize) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple}, }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(h.len() as u16).to_le_bytes());
    b.extend_from_slice(h.as_bytes());
    b.extend(std::iter::repeat_n(0u8, payload));
    b
}

#[test]
fn mutated_npy_inputs_open_or_are_refused_within_their_size() {
    limit_memory();
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    let seeds = [
        npy_bytes(&[3, 1, 28, 28], "<f4", 3 * 784 * 4),
        npy_bytes(&[2, 784], "<f8", 2 * 784 * 8),
        npy_bytes(&[5102041, 1, 28, 28], "<f4", 12_000),
        npy_bytes(&[usize::MAX / 2, 2], "<f4", 64),
    ];
    for _ in 0..3000 {
        let seed = &seeds[rng.random_range(0..seeds.len())];
        let bytes = mutate(&mut rng, seed);
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(src) = NpySource::open_for(&path, &[1, 28, 28]) {
            // Whatever opens is backed by the file: reading all of it stays within its size.
            let n: usize = src.len() * src.sample_shape().iter().product::<usize>();
            assert!(n * 4 <= bytes.len() * 2 + 64, "{n} values from {} bytes", bytes.len());
            let _ = src.all();
        }
    }
}

/// Mutated IDX splits, raw and gzip: loaded whole ([`lrp_core::Dataset::load`]) and streamed (the batch runner's
/// [`lrp_core::StreamedDataset`], read on a thread of its own) they give the same images or both an error.
#[test]
fn mutated_idx_datasets_load_or_are_refused() {
    limit_memory();
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let dir = tempfile::tempdir().unwrap();
    // A 20-image split.
    let mut images = vec![0, 0, 8, 3];
    for d in [20u32, 28, 28] {
        images.extend_from_slice(&d.to_be_bytes());
    }
    images.extend((0..20 * 784).map(|i| (i % 251) as u8));
    let mut labels = vec![0, 0, 8, 1];
    labels.extend_from_slice(&20u32.to_be_bytes());
    labels.extend((0..20).map(|i| (i % 10) as u8));
    let gzipped = {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&images).unwrap();
        enc.finish().unwrap()
    };
    let (raw_name, gz_name) = ("t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz");
    for _ in 0..1500 {
        let gzip = rng.random_bool(0.5);
        let base = if gzip { &gzipped } else { &images };
        let (img, lab) = if rng.random_bool(0.5) {
            (mutate(&mut rng, base), labels.clone())
        } else {
            (base.clone(), mutate(&mut rng, &labels))
        };
        let (name, other) = if gzip { (gz_name, raw_name) } else { (raw_name, gz_name) };
        let _ = std::fs::remove_file(dir.path().join(other));
        std::fs::write(dir.path().join(name), &img).unwrap();
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), &lab).unwrap();
        let loaded = lrp_core::Dataset::load(dir.path(), lrp_core::Split::Test);
        let streamed = lrp_core::StreamedDataset::open(dir.path(), lrp_core::Split::Test).and_then(|s| {
            let mut floats = vec![0.0f32; s.len() * s.dims.1 * s.dims.2];
            s.floats_into(0..s.len(), &mut floats)
                .map(|()| (floats, s.labels.clone()))
        });
        match (loaded, streamed) {
            (Ok(d), Ok((floats, labels))) => {
                assert_eq!(d.images.as_slice().unwrap(), &floats[..]);
                assert_eq!(d.labels, labels);
            }
            (Err(_), Err(_)) => {}
            (a, b) => panic!("loaded {:?}, streamed {:?}", a.err(), b.err()),
        }
    }
}

#[test]
fn random_rule_specs_parse_or_are_refused() {
    limit_memory();
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let pieces = [
        "all",
        "first",
        "dense",
        "conv",
        "lstm",
        "#0",
        "#99999999999999999999",
        "=",
        ";",
        "(",
        ")",
        ",",
        "epsilon",
        "gamma",
        "zbox",
        "alphabeta",
        "flat",
        "wsquare",
        "zplus",
        "1e-6",
        "-1",
        "nan",
        "inf",
        "1e39",
        "0",
        "2",
        " ",
        "epsilon-gamma-box",
        "smoothgrad",
        "integrated-gradients",
        "18446744073709551616",
        "é",
        "\u{0}",
    ];
    let net = Model::load(&root().join("data/models/mnist-mlp.lrpm")).unwrap().network;
    for _ in 0..5000 {
        let text: String = (0..rng.random_range(0..10))
            .map(|_| pieces[rng.random_range(0..pieces.len())])
            .collect();
        if let Ok(spec) = Spec::parse(&text) {
            let _ = Explainer::new(&net, &spec);
        }
    }
}

/// Mutated and truncated photos (the shipped PNG and JPEG, a JPEG with EXIF, a PNG of extreme proportions): each decodes or is refused by name, and one that decodes
/// is prepared for a small NCHW and NHWC input without panicking.
#[test]
fn mutated_photos_decode_or_are_refused_and_decoded_ones_prepare() {
    limit_memory();
    let mut rng = ChaCha8Rng::seed_from_u64(25);
    let p = lrp_image::Preprocess::imagenet(32);
    // turned.jpg carries EXIF (its orientation is read), wide.png has extreme proportions (a window is resized).
    for (folder, name) in [
        ("data/photos", "chelsea.png"),
        ("data/photos", "rocket.jpg"),
        ("tests/fixtures/photos/extreme", "turned.jpg"),
        ("tests/fixtures/photos/extreme", "wide.png"),
    ] {
        let bytes = std::fs::read(root().join(folder).join(name)).unwrap();
        let (mut decoded, mut refused) = (0, 0);
        for _ in 0..120 {
            let b = mutate(&mut rng, &bytes);
            match lrp_image::decode(Path::new(name), &b) {
                Ok(photo) => {
                    decoded += 1;
                    for shape in [[3, 32, 32], [32, 32, 3]] {
                        let x = lrp_image::prepare(&photo, &p, &shape).unwrap().input;
                        assert!(x.iter().all(|v| v.is_finite()));
                    }
                }
                Err(e) => {
                    refused += 1;
                    assert!(e.to_string().starts_with(name), "{e}");
                }
            }
        }
        assert!(
            decoded > 0 && refused > 0,
            "{name}: {decoded} decoded, {refused} refused"
        );
    }
}
