//! Model files and IDX datasets: exact round trips, and every malformed file refused with a clear error.

use std::io::Write;
use std::path::Path;

use lrp_core::idx::read_idx;
use lrp_core::model_file::{FORMAT_VERSION, GRAPH_FORMAT_VERSION, MAGIC};
use lrp_core::{Arch, Dataset, Model, ModelMeta, Split};

fn model() -> Model {
    Model {
        meta: ModelMeta {
            description: "test".into(),
            notes: vec!["a note".into()],
        },
        network: Arch::Cnn.build(&[1, 12, 12], 4, 3).unwrap(),
    }
}

fn decode_err(bytes: &[u8]) -> String {
    Model::from_bytes(bytes, Path::new("m.lrpm")).unwrap_err().to_string()
}

#[test]
fn model_round_trip_is_exact() {
    let m = model();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.lrpm");
    m.save(&path).unwrap();
    let back = Model::load(&path).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.to_bytes().unwrap(), std::fs::read(&path).unwrap());
}

#[test]
fn truncated_model_files_are_refused_at_every_length() {
    let bytes = model().to_bytes().unwrap();
    // Every cut inside the header and a spread of cuts inside the payload.
    let cuts: Vec<usize> = (0..16).chain((16..bytes.len()).step_by(97)).collect();
    for cut in cuts {
        let err = decode_err(&bytes[..cut]);
        assert!(err.starts_with("m.lrpm: "), "{err}");
        assert!(
            err.contains("truncated") || err.contains("not an lrp model") || err.contains("corrupt"),
            "cut {cut}: {err}"
        );
    }
    assert!(decode_err(&bytes[..bytes.len() - 1]).contains("truncated"));
}

#[test]
fn trailing_bytes_other_versions_and_foreign_files_are_refused() {
    let mut bytes = model().to_bytes().unwrap();
    bytes.extend_from_slice(&[0, 0, 0]);
    assert!(
        decode_err(&bytes).contains("3 trailing bytes"),
        "{}",
        decode_err(&bytes)
    );

    let mut other = model().to_bytes().unwrap();
    other[8..12].copy_from_slice(&(GRAPH_FORMAT_VERSION + 1).to_le_bytes());
    let err = decode_err(&other);
    assert!(err.contains(&format!("version {}", GRAPH_FORMAT_VERSION + 1)), "{err}");

    let err = decode_err(b"\x08\x07\x12\x07pytorch and more bytes of an onnx file");
    assert!(err.contains("not an lrp model file"), "{err}");
    assert!(decode_err(b"").contains("not an lrp model file"));
}

#[test]
fn corrupt_payloads_are_refused_without_panicking() {
    let good = model().to_bytes().unwrap();
    // Overwrite bytes in the structure at the start and across the weights: each result is either refused
    // with an error or decodes to a valid network.
    for i in (12..300).chain((300..good.len()).step_by(997)) {
        for v in [0x00u8, 0xff, 0x7f] {
            let mut b = good.clone();
            b[i] = v;
            match Model::from_bytes(&b, Path::new("m.lrpm")) {
                Ok(m) => assert_eq!(m.network.layers().len(), model().network.layers().len()),
                Err(e) => assert!(e.to_string().starts_with("m.lrpm: "), "{e}"),
            }
        }
    }
    // A payload that claims an absurd vector length.
    let mut b = MAGIC.to_vec();
    b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    b.extend_from_slice(&[0xfc, 0xff, 0xff, 0xff, 0xff]);
    let err = decode_err(&b);
    assert!(err.contains("truncated") || err.contains("corrupt"), "{err}");
}

#[test]
fn model_with_inconsistent_shapes_is_refused_on_load() {
    use lrp_core::{Dense, Layer};
    use ndarray::{Array1, Array2};
    // Encode a network whose dense layer does not fit its input, bypassing Network::new by editing the bytes:
    // build two valid models that differ only in the input shape, then graft.
    let a = Model {
        meta: ModelMeta::default(),
        network: lrp_core::Network::new(
            vec![3],
            vec![Layer::Dense(Dense::new(Array2::zeros((2, 3)), Some(Array1::zeros(2))))],
        )
        .unwrap(),
    };
    let mut bytes = a.to_bytes().unwrap();
    // The input shape [3] is encoded as varint length 1 then varint 3; find and change it to [4].
    let pos = bytes.windows(2).position(|w| w == [1, 3]).unwrap();
    bytes[pos + 1] = 4;
    let err = decode_err(&bytes);
    assert!(err.contains("node n0 (dense)") && err.contains("4 features"), "{err}");
}

fn write_idx(path: &Path, dims: &[u32], data: &[u8], gzip: bool) {
    let mut bytes = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    if gzip {
        let f = std::fs::File::create(path).unwrap();
        let mut enc = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        enc.write_all(&bytes).unwrap();
        enc.finish().unwrap();
    } else {
        std::fs::write(path, bytes).unwrap();
    }
}

#[test]
fn idx_reads_raw_and_gzip_and_refuses_malformed_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a");
    for gzip in [false, true] {
        write_idx(&p, &[2, 3], &[1, 2, 3, 4, 5, 6], gzip);
        let a = read_idx(&p).unwrap();
        assert_eq!(a.dims, vec![2, 3]);
        assert_eq!(a.data, vec![1, 2, 3, 4, 5, 6]);
        write_idx(&p, &[2, 3], &[1, 2, 3, 4, 5], gzip);
        assert!(read_idx(&p).unwrap_err().to_string().contains("truncated"));
        write_idx(&p, &[2, 3], &[1, 2, 3, 4, 5, 6, 7], gzip);
        assert!(read_idx(&p).unwrap_err().to_string().contains("trailing bytes"));
    }
    std::fs::write(&p, [0u8, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0]).unwrap();
    assert!(read_idx(&p).unwrap_err().to_string().contains("element type 0x0d"));
    std::fs::write(&p, b"PK\x03\x04 zip file").unwrap();
    assert!(read_idx(&p).unwrap_err().to_string().contains("not an IDX file"));
    std::fs::write(&p, [0u8, 0, 8, 3, 0, 0]).unwrap();
    assert!(read_idx(&p).unwrap_err().to_string().contains("before dimension 0"));
    // Headers that announce far more than the file can hold are refused before anything is allocated.
    write_idx(&p, &[1 << 30], &[1, 2, 3], false);
    let err = read_idx(&p).unwrap_err().to_string();
    assert!(err.contains("truncated") && err.contains("holds 3"), "{err}");
    write_idx(&p, &[1 << 30], &[1, 2, 3], true);
    let err = read_idx(&p).unwrap_err().to_string();
    assert!(err.contains("gzip file") && err.contains("cannot hold"), "{err}");
    std::fs::write(&p, [0u8, 0, 8, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap();
    assert!(
        read_idx(&p)
            .unwrap_err()
            .to_string()
            .contains("more than this reader accepts")
    );
}

#[test]
fn dataset_checks_images_against_labels() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_idx(
        &d.join("t10k-images-idx3-ubyte"),
        &[2, 2, 2],
        &[0, 255, 51, 102, 0, 0, 0, 0],
        false,
    );
    write_idx(&d.join("t10k-labels-idx1-ubyte.gz"), &[2], &[1, 4], true);
    let ds = Dataset::load(d, Split::Test).unwrap();
    assert_eq!(ds.images.shape(), &[2, 1, 2, 2]);
    assert_eq!(ds.images[[0, 0, 0, 1]], 1.0);
    assert_eq!(ds.images[[0, 0, 1, 0]], 0.2);
    assert_eq!(ds.num_classes(), 5);
    write_idx(&d.join("t10k-labels-idx1-ubyte.gz"), &[3], &[1, 4, 0], true);
    assert!(
        Dataset::load(d, Split::Test)
            .unwrap_err()
            .to_string()
            .contains("3 labels for 2 images")
    );
    let err = Dataset::load(d, Split::Train).unwrap_err().to_string();
    assert!(err.contains("train-images-idx3-ubyte"), "{err}");
}

/// A split of `n` images of 28×28 whose pixels are `i·7 mod 256`, gzip or raw, and its labels.
fn write_split(dir: &Path, n: u32, gzip: bool, damage: impl FnOnce(&mut Vec<u8>)) {
    let images = dir.join(if gzip {
        "t10k-images-idx3-ubyte.gz"
    } else {
        "t10k-images-idx3-ubyte"
    });
    let _ = std::fs::remove_file(dir.join("t10k-images-idx3-ubyte"));
    let _ = std::fs::remove_file(dir.join("t10k-images-idx3-ubyte.gz"));
    let pixels: Vec<u8> = (0..n as usize * 784).map(|i| (i * 7 % 256) as u8).collect();
    write_idx(&images, &[n, 28, 28], &pixels, gzip);
    let mut bytes = std::fs::read(&images).unwrap();
    damage(&mut bytes);
    std::fs::write(&images, bytes).unwrap();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    write_idx(&dir.join("t10k-labels-idx1-ubyte"), &[n], &labels, false);
}

/// The images of `d` as floats, read range by range in `step`s; the first error, if any.
fn streamed_floats(d: &lrp_core::StreamedDataset, step: usize) -> Result<Vec<f32>, String> {
    let mut all = vec![0.0; d.len() * 784];
    for lo in (0..d.len()).step_by(step) {
        let hi = (lo + step).min(d.len());
        d.floats_into(lo..hi, &mut all[lo * 784..hi * 784])
            .map_err(|e| e.to_string())?;
    }
    Ok(all)
}

/// A streamed split reads the floats a loaded one holds, bit for bit, in ranges across the reading thread's 1 MiB
/// blocks (1,337.5 images of 28×28 each), gzip or raw; a damaged file is refused as `read_idx` refuses it.
#[test]
fn a_streamed_split_reads_what_a_loaded_one_holds_and_refuses_damage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for gzip in [false, true] {
        write_split(d, 3000, gzip, |_| {});
        let loaded = Dataset::load(d, Split::Test).unwrap();
        let want: Vec<u32> = loaded.images.iter().map(|v| v.to_bits()).collect();
        for step in [1, 256, 1337, 1338, 3000] {
            let s = lrp_core::StreamedDataset::open(d, Split::Test).unwrap();
            assert_eq!((s.dims, s.len(), s.num_classes()), ((3000, 28, 28), 3000, 10));
            assert_eq!(s.labels, loaded.labels);
            let image_file = if gzip {
                "t10k-images-idx3-ubyte.gz"
            } else {
                "t10k-images-idx3-ubyte"
            };
            assert_eq!(
                s.files(),
                (d.join(image_file).as_path(), d.join("t10k-labels-idx1-ubyte").as_path())
            );
            let got: Vec<u32> = streamed_floats(&s, step).unwrap().iter().map(|v| v.to_bits()).collect();
            assert!(got == want, "gzip {gzip}, step {step}");
            s.check_whole().unwrap();
        }
        // Dropped before anything is read: the reading thread stops on its own (nothing waits for it).
        drop(lrp_core::StreamedDataset::open(d, Split::Test).unwrap());
    }
    // Damage past the header: refused with the loader's reason, when the split is opened (a raw file shorter than
    // its header says) or when its images are read — at the latest for the last images, whose pixels are handed
    // over only after the end of the file was checked.
    type Damage = fn(&mut Vec<u8>);
    let cases: [(bool, &str, Damage); 4] = [
        (false, "truncated", |b| b.truncate(b.len() - 100)),
        (false, "trailing bytes", |b| b.push(0)),
        (true, "cannot read the data", |b| b.truncate(b.len() - 3)),
        // The gzip trailer's checksum.
        (true, "cannot read the data", |b| {
            let n = b.len();
            b[n - 6] ^= 0x55;
        }),
    ];
    for (gzip, reason, damage) in cases {
        write_split(d, 3000, gzip, damage);
        let loaded = Dataset::load(d, Split::Test).unwrap_err().to_string();
        assert!(loaded.contains(reason), "{loaded}");
        let err = match lrp_core::StreamedDataset::open(d, Split::Test) {
            Err(e) => e.to_string(),
            Ok(s) => {
                let mut last = vec![0.0; 784];
                assert!(s.floats_into(2999..3000, &mut last).is_err(), "{reason}");
                assert!(s.check_whole().is_err(), "{reason}");
                streamed_floats(&s, 256).unwrap_err()
            }
        };
        assert!(err.contains(reason) && err.contains("t10k-images-idx3-ubyte"), "{err}");
    }
    // Header damage is refused when the split is opened, as when it is loaded.
    write_split(d, 3000, true, |b| b.truncate(20));
    assert!(lrp_core::StreamedDataset::open(d, Split::Test).is_err());
    write_split(d, 2999, false, |b| b[7] = 0xb6);
    let err = lrp_core::StreamedDataset::open(d, Split::Test)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("labels for"), "{err}");
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// gzip allows several members (`cat a.gz b.gz`): an IDX file split over two members reads as the whole, by both
/// readers; bytes after the last member that are not another member are an error, never ignored.
#[test]
fn a_gzip_idx_file_of_two_members_is_read_whole_and_trailing_garbage_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut images = vec![0u8, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28];
    images.extend((0..2 * 784).map(|i| (i * 7 % 256) as u8));
    let (a, b) = images.split_at(700);
    let two = [gz(a), gz(b)].concat();
    std::fs::write(d.join("t10k-images-idx3-ubyte.gz"), &two).unwrap();
    write_idx(&d.join("t10k-labels-idx1-ubyte.gz"), &[2], &[3, 9], true);
    let whole = read_idx(&d.join("t10k-images-idx3-ubyte.gz")).unwrap();
    assert_eq!((whole.dims.clone(), &whole.data[..]), (vec![2, 28, 28], &images[16..]));
    let ds = Dataset::load(d, Split::Test).unwrap();
    assert_eq!(
        ds.images[[1, 0, 27, 27]],
        lrp_core::pixel_value(images[16 + 2 * 784 - 1])
    );
    assert_eq!(
        streamed_floats(&lrp_core::StreamedDataset::open(d, Split::Test).unwrap(), 1)
            .unwrap()
            .len(),
        2 * 784
    );
    // One member and then garbage.
    let mut garbage = gz(&images);
    garbage.extend_from_slice(b"not gzip at all");
    std::fs::write(d.join("t10k-images-idx3-ubyte.gz"), &garbage).unwrap();
    let err = read_idx(&d.join("t10k-images-idx3-ubyte.gz")).unwrap_err().to_string();
    assert!(
        err.contains("t10k-images-idx3-ubyte.gz") && err.contains("not another gzip member"),
        "{err}"
    );
    assert!(Dataset::load(d, Split::Test).is_err());
    assert!(streamed_floats(&lrp_core::StreamedDataset::open(d, Split::Test).unwrap(), 1).is_err());
}
