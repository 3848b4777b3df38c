//! File mechanics: atomic writes, and `.npy` files assembled piece by piece without holding them in memory.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ndarray::IxDyn;
use ndarray_npy::WritableElement;

use lrp_core::atomic::write_atomically;

use crate::error::{BatchError, Result};

/// Refuses a file of a batch folder that is not a regular file (a FIFO or device planted there would hang or
/// swallow the run's results); a missing one is fine.
pub(crate) fn refuse_special(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.is_file() => Err(BatchError::OutputDir {
            dir: path.to_path_buf(),
            reason: "is not a regular file (a link, folder, FIFO or device); lrp's folders hold only files it wrote"
                .into(),
        }),
        _ => Ok(()),
    }
}

/// Writes bytes atomically (into a batch folder: only over a regular file).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    refuse_special(path)?;
    write_atomically(
        path,
        |tmp| std::fs::write(tmp, bytes).map_err(|e| BatchError::io(path, e)),
        |e| BatchError::io(path, e),
    )
}

/// Writes a chunk marker into its folder, which must exist (a temporary beside it, renamed): unlike
/// [`write_atomic`] it never creates the folder, so a run whose folder was moved away cannot recreate it.
pub(crate) fn write_marker(path: &Path, bytes: &[u8]) -> Result<()> {
    refuse_special(path)?;
    let tmp = lrp_core::atomic::temp_path(path);
    let result = std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| BatchError::io(path, e));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Element types the assembler copies.
pub(crate) trait Elem: WritableElement + Copy + 'static {
    const SIZE: usize;
    /// The `.npy` type descriptor.
    const DESCR: &'static str;
}

impl Elem for f32 {
    const SIZE: usize = 4;
    const DESCR: &'static str = "<f4";
}

impl Elem for i64 {
    const SIZE: usize = 8;
    const DESCR: &'static str = "<i8";
}

/// Writes `out` (atomically) as one `.npy` of `shape`, filled part after part in order from `parts`, each an
/// `.npy` whose rows continue the previous one and whose whole-file digest must be the one its shard's manifest
/// recorded (`digests`, in the order of `parts`). A part that is not a regular file (a link to another shard's file,
/// a FIFO), whose digest differs (changed since its run wrote it), or whose float values are not finite is refused
/// and nothing is written. Parts are read a block at a time, never held whole.
pub(crate) fn assemble<T: Elem>(out: &Path, shape: &[usize], parts: &[PathBuf], digests: &[String]) -> Result<()> {
    refuse_special(out)?;
    write_atomically(
        out,
        |tmp| fill_parts::<T>(tmp, out, shape, parts, digests),
        |e| BatchError::io(out, e),
    )
}

/// Writes the `.npy` of `shape` at `tmp` from `parts` (see [`assemble`]).
fn fill_parts<T: Elem>(tmp: &Path, out: &Path, shape: &[usize], parts: &[PathBuf], digests: &[String]) -> Result<()> {
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
    for (part, digest) in parts.iter().zip(digests) {
        written += copy_part::<T>(part, digest, &shape[1..], &mut w)?;
    }
    w.flush().map_err(io)?;
    if written != total {
        return Err(BatchError::Npy {
            path: out.to_path_buf(),
            reason: format!(
                "parts hold {} values, the file needs {}",
                written / T::SIZE,
                total / T::SIZE
            ),
        });
    }
    Ok(())
}

/// Copies the data of one part into `w` after checking it (see [`assemble`]); returns the bytes copied.
fn copy_part<T: Elem>(part: &Path, digest: &str, rows: &[usize], w: &mut impl Write) -> Result<usize> {
    use std::io::Read;
    let bad = |reason: String| BatchError::Merge(format!("{}: {reason}", part.display()));
    if !std::fs::symlink_metadata(part).is_ok_and(|m| m.is_file()) {
        return Err(bad(
            "is not a regular file (a link, FIFO or device); a shard's files are the ones its run wrote".into(),
        ));
    }
    let info = crate::npy::inspect(part)?;
    if info.shape.get(1..) != Some(rows) || info.fortran || info.descr != T::DESCR {
        return Err(bad(format!(
            "holds {:?} of {}, expected rows {rows:?} of {}",
            info.shape,
            info.descr,
            T::DESCR
        )));
    }
    let mut file = crate::npy::open_regular(part)?;
    let mut hash = xxhash_rust::xxh3::Xxh3::new();
    let mut head = vec![0u8; info.data_offset as usize];
    file.read_exact(&mut head).map_err(|e| BatchError::io(part, e))?;
    hash.update(&head);
    let mut buf = vec![0u8; 1 << 18];
    let mut copied = 0usize;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BatchError::io(part, e)),
        };
        hash.update(&buf[..n]);
        w.write_all(&buf[..n]).map_err(|e| BatchError::io(part, e))?;
        copied += n;
    }
    if copied as u64 != info.file_len - info.data_offset || digest_hex(hash.digest128()) != digest {
        return Err(bad(
            "is not the file its run wrote (its digest differs from the one in its manifest.json): it was changed \
             or replaced; run that shard again"
                .into(),
        ));
    }
    Ok(copied)
}

/// The lock file inside an output folder.
pub const LOCK_FILE: &str = ".lrp.lock";

/// An exclusive lock on an output folder: one writer at a time. The lock is taken on the folder itself (`flock` on
/// its descriptor), so deleting or replacing the lock file does not let a second writer in; the lock file only says
/// who holds it. Held until dropped, and released by the operating system when the process ends in any way (so a
/// killed writer leaves no stale lock).
#[derive(Debug)]
pub struct FolderLock {
    _dir: File,
    _file: Option<File>,
    /// The folder's device and inode when locked: a folder moved or replaced during the run is noticed.
    id: (u64, u64),
    path: PathBuf,
}

impl FolderLock {
    /// Errors when the locked folder is no longer at its path (moved, renamed or deleted during the run): writing on
    /// would put a stray `chunks/` folder at the old path.
    pub fn check(&self) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == self.id => Ok(()),
            _ => Err(BatchError::OutputDir {
                dir: self.path.clone(),
                reason: "was moved, renamed or deleted while lrp was writing it; the run stops (run it again where \
                         the folder is now, with --resume)"
                    .into(),
            }),
        }
    }
}

/// The first bytes of a lock file (the pid of its holder), escaped for printing: at most 64 bytes are read.
fn read_holder(file: &mut File) -> String {
    use std::io::Read;
    let mut buf = Vec::new();
    let _ = file.take(64).read_to_end(&mut buf);
    let text: String = String::from_utf8_lossy(&buf).trim().escape_default().collect();
    if text.is_empty() {
        String::new()
    } else {
        format!(" (pid {text})")
    }
}

/// Creates `dir` if needed and takes its lock, before anything else is written into it. A second writer is
/// refused at once with [`BatchError::Busy`], naming the pid of the one holding it. A lock file that is not a
/// regular file (a symbolic link planted to make lrp write elsewhere, a FIFO) is refused, never followed.
pub fn lock_folder(dir: &Path) -> Result<FolderLock> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    std::fs::create_dir_all(dir).map_err(|e| BatchError::io(dir, e))?;
    let folder = File::open(dir).map_err(|e| BatchError::io(dir, e))?;
    let meta = folder.metadata().map_err(|e| BatchError::io(dir, e))?;
    if !meta.is_dir() {
        return Err(BatchError::OutputDir {
            dir: dir.to_path_buf(),
            reason: "is not a folder".into(),
        });
    }
    let path = dir.join(LOCK_FILE);
    refuse_special(&path)?;
    let open = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
    };
    match folder.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = open().map(|mut f| read_holder(&mut f)).unwrap_or_default();
            return Err(BatchError::Busy {
                dir: dir.to_path_buf(),
                holder,
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(BatchError::io(dir, e)),
    }
    let mut file = open().map_err(|e| BatchError::io(&path, e))?;
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err(BatchError::OutputDir {
            dir: path.clone(),
            reason: "is not a regular file; remove it".into(),
        });
    }
    use std::io::{Seek, Write};
    let _ = file.set_len(0);
    let _ = file.seek(std::io::SeekFrom::Start(0));
    let _ = write!(file, "{}", std::process::id());
    Ok(FolderLock {
        _dir: folder,
        _file: Some(file),
        id: (meta.dev(), meta.ino()),
        path: dir.to_path_buf(),
    })
}

/// Whether another process holds `dir`'s lock (without taking it): `Some(" (pid N)")` when one does.
pub fn held_by_another(dir: &Path) -> Option<String> {
    let folder = File::open(dir).ok()?;
    match folder.try_lock() {
        Ok(()) => None,
        Err(std::fs::TryLockError::WouldBlock) => {
            use std::os::unix::fs::OpenOptionsExt;
            let holder = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(dir.join(LOCK_FILE))
                .map(|mut f| read_holder(&mut f))
                .unwrap_or_default();
            Some(holder)
        }
        Err(_) => None,
    }
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
    use std::io::Read;
    let mut file = crate::npy::open_regular(path)?;
    let mut hash = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 18];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BatchError::io(path, e)),
        };
        hash.update(&buf[..n]);
    }
    Ok(digest_hex(hash.digest128()))
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
