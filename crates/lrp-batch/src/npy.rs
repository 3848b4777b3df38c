//! `.npy` files checked before they are read: a regular file (never a FIFO or device, which would hang or stream
//! forever), a header whose length field fits the file (the `ndarray-npy` reader allocates whatever that field
//! says before reading it: a v2 header claiming `0xFFFFFFFF` bytes was a 4 GiB allocation), a header `ndarray-npy`
//! parses, and data exactly as long as the header's shape and type say.

use std::io::Read;
use std::path::Path;

use ndarray_npy::npy::header::{Header, Layout};

use crate::error::{BatchError, Result};

/// The longest header accepted (numpy writes a few hundred bytes; the format allows up to 4 GiB).
pub const MAX_HEADER: u64 = 1 << 20;

/// What an `.npy` file holds, from its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyInfo {
    /// The array's shape.
    pub shape: Vec<usize>,
    /// The type descriptor (`<f4`, `<f8`, `<i8`, …).
    pub descr: String,
    /// Fortran (column-major) order.
    pub fortran: bool,
    /// Where the data starts.
    pub data_offset: u64,
    /// The file's length.
    pub file_len: u64,
}

impl NpyInfo {
    /// Bytes per element of a type descriptor lrp reads, `None` for others.
    pub fn element_size(&self) -> Option<u64> {
        match self.descr.as_str() {
            "<f4" | "<i4" | "|u1" | "<u1" => Some(if self.descr.ends_with('1') { 1 } else { 4 }),
            "<f8" | "<i8" => Some(8),
            _ => None,
        }
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> BatchError {
    BatchError::Npy {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Opens `path` for reading after checking it is a regular file (a symlink to one is fine).
pub fn open_regular(path: &Path) -> Result<std::fs::File> {
    let meta = std::fs::metadata(path).map_err(|e| BatchError::io(path, e))?;
    if !meta.is_file() {
        return Err(bad(
            path,
            if meta.is_dir() {
                "is a folder, not a file"
            } else {
                "is not a regular file (a FIFO, device or socket is not read)"
            },
        ));
    }
    std::fs::File::open(path).map_err(|e| BatchError::io(path, e))
}

/// Checks an `.npy` file as the module says and returns its header. Nothing larger than [`MAX_HEADER`] is
/// allocated.
pub fn inspect(path: &Path) -> Result<NpyInfo> {
    let mut file = open_regular(path)?;
    let file_len = file.metadata().map_err(|e| BatchError::io(path, e))?.len();
    let mut pre = [0u8; 12];
    let got = read_up_to(&mut file, &mut pre).map_err(|e| BatchError::io(path, e))?;
    if got < 10 || &pre[..6] != b"\x93NUMPY" {
        return Err(bad(path, "is not an .npy file (no \\x93NUMPY magic at its start)"));
    }
    let (len_bytes, header_len) = match pre[6] {
        1 => (2u64, u64::from(u16::from_le_bytes([pre[8], pre[9]]))),
        2 | 3 if got == 12 => (4, u64::from(u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]]))),
        v => {
            return Err(bad(
                path,
                format!("is an .npy of format version {v}, which numpy never wrote"),
            ));
        }
    };
    let data_offset = 8 + len_bytes + header_len;
    if header_len > MAX_HEADER || data_offset > file_len {
        return Err(bad(
            path,
            format!(
                "its header claims {header_len} bytes but the file has {file_len}: the file is damaged or not an \
                 .npy"
            ),
        ));
    }
    let mut head = vec![0u8; data_offset as usize];
    let have = got.min(head.len());
    head[..have].copy_from_slice(&pre[..have]);
    if have < head.len() {
        file.read_exact(&mut head[have..])
            .map_err(|e| BatchError::io(path, e))?;
    }
    let header = Header::from_reader(&mut &head[..]).map_err(|e| bad(path, format!("unreadable header: {e}")))?;
    // The descriptor as numpy writes it, a quoted string (`'<f4'`); a structured type is a list.
    let text = header.type_descriptor.to_string();
    let descr = match text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
        Some(d) if !d.contains('\'') => d.to_string(),
        _ => {
            return Err(bad(
                path,
                format!("a structured type ({text}) is not an array of numbers"),
            ));
        }
    };
    let info = NpyInfo {
        shape: header.shape.clone(),
        descr,
        fortran: header.layout == Layout::Fortran,
        data_offset,
        file_len,
    };
    if let Some(size) = info.element_size() {
        let count = info.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
        let need = count.and_then(|c| c.checked_mul(size));
        if need != Some(file_len - data_offset) {
            return Err(bad(
                path,
                format!(
                    "its header says shape {:?} of {} ({} bytes of data) but the file holds {} bytes after the \
                     header: truncated or damaged",
                    info.shape,
                    info.descr,
                    need.map_or("more than 2^64".to_string(), |n| n.to_string()),
                    file_len - data_offset
                ),
            ));
        }
    }
    Ok(info)
}

/// Reads into `buf` until it is full or the file ends; returns the bytes read.
fn read_up_to(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads a whole `.npy` with `ndarray-npy` once [`inspect`] has passed (so its allocation is the file's size).
pub fn read_checked<T, D>(path: &Path) -> Result<ndarray::Array<T, D>>
where
    T: ndarray_npy::ReadableElement,
    D: ndarray::Dimension,
{
    inspect(path)?;
    let file = open_regular(path)?;
    <ndarray::Array<T, D> as ndarray_npy::ReadNpyExt>::read_npy(std::io::BufReader::new(file))
        .map_err(|e| bad(path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let mut v = b"\x93NUMPY".to_vec();
        v.push(version);
        v.push(0);
        let h = header.as_bytes();
        if version == 1 {
            v.extend_from_slice(&(h.len() as u16).to_le_bytes());
        } else {
            v.extend_from_slice(&(h.len() as u32).to_le_bytes());
        }
        v.extend_from_slice(h);
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn header_lengths_are_checked_against_the_file_before_anything_is_allocated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n";
        std::fs::write(&p, npy(1, header, &[0; 8])).unwrap();
        let info = inspect(&p).unwrap();
        assert_eq!(
            (info.shape.clone(), info.descr.as_str(), info.file_len),
            (vec![2], "<f4", 8 + 10 + 58)
        );
        // Version 2 and 3 with a length field of 0xFFFFFFFF: refused from the 12 bytes read, no 4 GiB buffer.
        for v in [2u8, 3] {
            let mut b = npy(v, header, &[0; 8]);
            b[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
            std::fs::write(&p, &b).unwrap();
            let e = inspect(&p).unwrap_err().to_string();
            assert!(e.contains("4294967295") && e.contains("damaged"), "{e}");
        }
        // Data shorter or longer than the shape says.
        std::fs::write(&p, npy(1, header, &[0; 7])).unwrap();
        assert!(inspect(&p).unwrap_err().to_string().contains("truncated"));
        std::fs::write(&p, npy(1, header, &[0; 12])).unwrap();
        assert!(
            inspect(&p)
                .unwrap_err()
                .to_string()
                .contains("12 bytes after the header")
        );
        // A shape whose byte count overflows.
        let huge = "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }\n";
        std::fs::write(&p, npy(1, huge, &[])).unwrap();
        assert!(inspect(&p).unwrap_err().to_string().contains("more than 2^64"));
        std::fs::write(&p, b"\x93NUMPY\x09\x00\x10\x00").unwrap();
        assert!(inspect(&p).unwrap_err().to_string().contains("version 9"));
    }

    #[test]
    fn fifos_and_folders_are_refused_without_opening_them() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f.npy");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        assert!(inspect(&fifo).unwrap_err().to_string().contains("not a regular file"));
        assert!(inspect(dir.path()).unwrap_err().to_string().contains("folder"));
    }
}
