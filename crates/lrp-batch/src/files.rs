//! File mechanics: atomic writes, and `.npy` files assembled piece by piece without holding them in memory.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use ndarray::{ArrayViewD, IxDyn};
use ndarray_npy::{ViewNpyExt, WritableElement};

use lrp_core::atomic::write_atomically;

use crate::error::{BatchError, Result};

/// Writes bytes atomically.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(
        path,
        |tmp| std::fs::write(tmp, bytes).map_err(|e| BatchError::io(path, e)),
        |e| BatchError::io(path, e),
    )
}

/// Element types the assembler copies.
pub(crate) trait Elem: WritableElement + Copy + 'static {
    fn le_bytes(self) -> [u8; 8];
    const SIZE: usize;
}

impl Elem for f32 {
    fn le_bytes(self) -> [u8; 8] {
        let b = self.to_le_bytes();
        [b[0], b[1], b[2], b[3], 0, 0, 0, 0]
    }
    const SIZE: usize = 4;
}

impl Elem for i64 {
    fn le_bytes(self) -> [u8; 8] {
        self.to_le_bytes()
    }
    const SIZE: usize = 8;
}

/// Maps an `.npy` part and hands its elements (C order) to `f`; returns its shape.
pub(crate) fn with_part<T, R>(path: &Path, f: impl FnOnce(ArrayViewD<'_, T>) -> R) -> Result<R>
where
    T: Elem + ndarray_npy::ViewElement,
{
    let file = File::open(path).map_err(|e| BatchError::io(path, e))?;
    // SAFETY: read-only mapping of a file this process wrote (or that a merge reads); nobody writes it meanwhile.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| BatchError::io(path, e))?;
    let view = ArrayViewD::<T>::view_npy(&map).map_err(|e| BatchError::Npy {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(f(view))
}

/// Writes `out` (atomically) as one `.npy` of `shape`, filled part after part in order from `parts`,
/// each an `.npy` whose rows continue the previous one. Only one part is mapped at a time.
pub(crate) fn assemble<T>(out: &Path, shape: &[usize], parts: &[PathBuf]) -> Result<()>
where
    T: Elem + ndarray_npy::ViewElement,
{
    write_atomically(
        out,
        |tmp| fill_parts::<T>(tmp, out, shape, parts),
        |e| BatchError::io(out, e),
    )
}

/// Writes the `.npy` of `shape` at `tmp` from `parts` (see [`assemble`]).
fn fill_parts<T>(tmp: &Path, out: &Path, shape: &[usize], parts: &[PathBuf]) -> Result<()>
where
    T: Elem + ndarray_npy::ViewElement,
{
    let io = |e| BatchError::io(out, e);
    {
        let f = File::create(tmp).map_err(io)?;
        ndarray_npy::write_zeroed_npy::<T, _>(&f, IxDyn(shape)).map_err(|e| BatchError::Npy {
            path: out.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    crate::runner::fault_point("in-assembly");
    let total: usize = shape.iter().product::<usize>() * T::SIZE;
    let len = std::fs::metadata(tmp).map_err(io)?.len() as usize;
    let file = OpenOptions::new().write(true).open(tmp).map_err(io)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.seek(SeekFrom::Start((len - total) as u64)).map_err(io)?;
    let mut written = 0usize;
    for part in parts {
        let result = with_part::<T, _>(part, |view| -> std::io::Result<usize> {
            if view.shape()[1..] != shape[1..] {
                return Err(std::io::Error::other(format!(
                    "part {} has rows {:?}, expected {:?}",
                    part.display(),
                    &view.shape()[1..],
                    &shape[1..]
                )));
            }
            // Little-endian bytes gathered in blocks: one write call per 64 KiB, not per element.
            let std = view.as_standard_layout();
            let mut block = Vec::with_capacity(1 << 16);
            for v in std.iter() {
                block.extend_from_slice(&v.le_bytes()[..T::SIZE]);
                if block.len() >= 1 << 16 {
                    w.write_all(&block)?;
                    block.clear();
                }
            }
            w.write_all(&block)?;
            Ok(view.len())
        })?;
        written += result.map_err(|e| BatchError::io(part, e))?;
    }
    w.flush().map_err(io)?;
    if written * T::SIZE != total {
        return Err(BatchError::Npy {
            path: out.to_path_buf(),
            reason: format!("parts hold {} values, the file needs {}", written, total / T::SIZE),
        });
    }
    Ok(())
}

/// The lock file inside an output folder.
pub const LOCK_FILE: &str = ".lrp.lock";

/// An exclusive lock on an output folder: one writer at a time. Held until dropped, and released by the operating
/// system when the process ends in any way (so a killed writer leaves no stale lock).
#[derive(Debug)]
pub struct FolderLock {
    _file: File,
}

/// Creates `dir` if needed and takes its lock, before anything else is written into it. A second writer is
/// refused at once, with the pid of the one holding it.
pub fn lock_folder(dir: &Path) -> Result<FolderLock> {
    std::fs::create_dir_all(dir).map_err(|e| BatchError::io(dir, e))?;
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| BatchError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = std::io::Read::read_to_string(&mut file, &mut holder);
            let holder = holder.trim();
            return Err(BatchError::OutputDir {
                dir: dir.to_path_buf(),
                reason: format!(
                    "is being written by another lrp{}; wait for it to finish or choose another --out",
                    if holder.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {holder})")
                    }
                ),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(BatchError::io(&path, e)),
    }
    use std::io::{Seek, Write};
    let _ = file.set_len(0);
    let _ = file.seek(std::io::SeekFrom::Start(0));
    let _ = write!(file, "{}", std::process::id());
    Ok(FolderLock { _file: file })
}

/// Removes the temporary files (`.NAME.tmpPID`) a killed writer left in `dir`; call it holding the folder's lock.
pub fn remove_stale_temporaries(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| BatchError::io(dir, e))? {
        let entry = entry.map_err(|e| BatchError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".tmp") && entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::remove_file(entry.path()).map_err(|e| BatchError::io(entry.path(), e))?;
        }
    }
    Ok(())
}

/// Refuses to write into `dir` when it exists, is not empty and lacks `marker` (the file that says the folder is
/// one of ours: `manifest.json`, `report.json`): another tool's folder is never written into. The lock file, lrp's
/// temporaries and an empty `chunks` folder (what a writer killed before its manifest landed leaves, or what a
/// writer holding the lock has just begun) do not count.
pub fn refuse_foreign_folder(dir: &Path, marker: &str) -> Result<()> {
    if !dir.exists() || dir.join(marker).exists() {
        return Ok(());
    }
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| BatchError::io(dir, e))?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name();
            let empty_dir = |p: &Path| std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_none());
            let ours_in_flight = {
                // Another lrp's lock, or the temporary of its manifest being written right now.
                let n = name.to_string_lossy();
                n.starts_with('.') && n.contains(".tmp")
            };
            // The marker itself: absent when checked above, it may have been renamed into place since by the lrp
            // holding the folder (a second writer then lost the race and is refused by the lock, not here).
            !(name == LOCK_FILE || name == marker || ours_in_flight || (name == "chunks" && empty_dir(&e.path())))
        });
    if entries.next().is_some() {
        return Err(BatchError::OutputDir {
            dir: dir.to_path_buf(),
            reason: format!(
                "is not empty and has no {marker}, so it is not a folder lrp wrote; refusing to write into it"
            ),
        });
    }
    Ok(())
}

/// The digest of a file's bytes ([`digest_bytes`]): identifies inputs and models in manifests.
pub fn digest_file(path: &Path) -> Result<String> {
    let file = File::open(path).map_err(|e| BatchError::io(path, e))?;
    // SAFETY: read-only mapping, read once.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| BatchError::io(path, e))?;
    Ok(digest_bytes(&map))
}

/// The digest of bytes: XXH3-128, as 32 hex digits. Not cryptographic (a run's identity, not a signature), stable
/// across platforms and builds, and read at memory speed (a 31 MB input in a few milliseconds).
pub fn digest_bytes(bytes: &[u8]) -> String {
    digest_hex(xxhash_rust::xxh3::xxh3_128(bytes))
}

/// How a digest is written: 32 hex digits.
pub(crate) fn digest_hex(hash: u128) -> String {
    format!("{hash:032x}")
}

#[cfg(test)]
mod tests {
    use super::digest_bytes;

    /// The digest is the standard XXH3-128 (values from the reference implementation, Python's `xxhash` 3.x), so
    /// a manifest's digests can be checked with any other tool; pinned, since a change would make every existing
    /// folder look like another run.
    #[test]
    fn digests_are_standard_xxh3_128() {
        assert_eq!(digest_bytes(b""), "99aa06d3014798d86001c324468d497f");
        assert_eq!(digest_bytes(b"lrp"), "a853c79fdb4143afc725c1745ee05a90");
        let twenty: Vec<u8> = (0..20u8).collect();
        assert_eq!(digest_bytes(&twenty), "21773a7052c02d6ccd7648afa6f388d9");
        let long: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 256) as u8).collect();
        assert_eq!(digest_bytes(&long), "abee229cdadad76d10ad30264426c830");
    }
}
