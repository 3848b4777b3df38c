//! A whole file's bytes, mapped instead of copied where that is safe.
//!
//! Reading a 100 MB model copies every byte from the page cache into fresh memory, and each 4 KiB of that memory
//! costs a page fault when first touched: half of `lrp info`'s time on ResNet-50. A read-only mapping of the file
//! shows the page cache itself. Its danger is the file changing underneath: if another process truncated it, touching
//! a mapped page past the new end would kill this one with `SIGBUS`. So a file is mapped only while this process holds
//! a *read lease* on it (Linux `F_SETLEASE`): the kernel grants one only when no one has the file open for writing,
//! and while it is held, anyone who opens the file for writing or truncates it waits until it is released (up to
//! `/proc/sys/fs/lease-break-time`, 45 s by default). The lease goes with the mapping.
//!
//! Where no lease can be had (a file of another owner without `CAP_LEASE`, a file open for writing elsewhere, a
//! network file system, leases switched off, another system than Linux) or the file is small, the bytes are read as
//! before. Either way the caller sees the same bytes.

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Files smaller than this are read: mapping and the lease cost more than the copy saves.
pub const MAP_FROM_BYTES: u64 = 4 << 20;

/// A whole file's bytes.
pub enum WholeFile {
    /// Mapped read-only under a read lease; unmapped and the lease released when dropped.
    Mapped(Mapped),
    /// Read into memory.
    Read(Vec<u8>),
}

/// A read-only mapping with the open file that holds its lease. Fields drop in order: the mapping before the file,
/// so the lease outlives every access.
pub struct Mapped {
    map: memmap2::Mmap,
    _file: File,
}

impl AsRef<[u8]> for WholeFile {
    fn as_ref(&self) -> &[u8] {
        match self {
            WholeFile::Mapped(m) => &m.map,
            WholeFile::Read(v) => v,
        }
    }
}

impl std::fmt::Debug for WholeFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = if self.is_mapped() { "mapped" } else { "read" };
        write!(f, "WholeFile({how}, {} bytes)", self.as_ref().len())
    }
}

impl WholeFile {
    /// Whether the bytes are a mapping of the file (else a copy).
    pub fn is_mapped(&self) -> bool {
        matches!(self, WholeFile::Mapped(_))
    }
}

/// The bytes of the regular file at `path`: mapped under a read lease where the file is at least
/// [`MAP_FROM_BYTES`] long and a lease can be had, read otherwise. Anything but a regular file is refused (a FIFO or
/// device could block or never end).
pub fn whole_file(path: &Path) -> std::io::Result<WholeFile> {
    whole_file_from(path, MAP_FROM_BYTES)
}

/// [`whole_file`] of a file of at most `max` bytes: a longer one is refused before anything is read or mapped
/// (`ErrorKind::FileTooLarge`, "is N bytes"), so a sparse file of terabytes is not paged in to find out.
pub fn whole_file_at_most(path: &Path, max: u64) -> std::io::Result<WholeFile> {
    let (file, len) = open_regular(path)?;
    if len > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("is {len} bytes"),
        ));
    }
    read_or_map(file, len, MAP_FROM_BYTES)
}

/// [`whole_file`] with the size from which mapping is tried.
pub fn whole_file_from(path: &Path, map_from: u64) -> std::io::Result<WholeFile> {
    let (file, len) = open_regular(path)?;
    read_or_map(file, len, map_from)
}

/// `file` (`len` bytes) mapped if it is at least `map_from` long and a lease can be had, read otherwise.
fn read_or_map(file: File, len: u64, map_from: u64) -> std::io::Result<WholeFile> {
    match map_file(file, len, map_from) {
        Ok(mapped) => Ok(mapped),
        Err(mut file) => {
            // Reserved exactly and at once, as `std::fs::read` does: a file larger than memory fails here with "out
            // of memory" instead of after reading gigabytes.
            let mut bytes = Vec::new();
            let len = usize::try_from(len).map_err(|_| std::io::ErrorKind::OutOfMemory)?;
            bytes
                .try_reserve_exact(len)
                .map_err(|_| std::io::ErrorKind::OutOfMemory)?;
            file.read_to_end(&mut bytes)?;
            Ok(WholeFile::Read(bytes))
        }
    }
}

/// The regular file at `path` mapped under a read lease, or `None` where its length is outside `lengths` or it cannot
/// be mapped safely (no lease): for callers that then read only the parts they need.
pub fn mapped(path: &Path, lengths: std::ops::RangeInclusive<u64>) -> std::io::Result<Option<WholeFile>> {
    let (file, len) = open_regular(path)?;
    if len > *lengths.end() {
        return Ok(None);
    }
    Ok(map_file(file, len, *lengths.start()).ok())
}

/// The message of the error [`whole_file`] refuses anything but a regular file with.
const NOT_REGULAR: &str = "not a regular file";

/// Whether `e` is [`whole_file`]'s refusal of something that is not a regular file (a FIFO, a device, a folder).
pub fn is_not_regular(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::InvalidInput && e.get_ref().is_some_and(|inner| inner.to_string() == NOT_REGULAR)
}

/// Opens `path` for reading, refusing anything but a regular file; with its length.
fn open_regular(path: &Path) -> std::io::Result<(File, u64)> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // Non-blocking, so that opening a FIFO put in the path's place returns at once (it is then refused below).
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path)?;
    // The opened file itself is checked, so a path swapped after an earlier check cannot slip a FIFO in.
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, NOT_REGULAR));
    }
    Ok((file, meta.len()))
}

/// `file` (`len` bytes) mapped under a read lease, or back if it is shorter than `map_from` or no lease or mapping
/// can be had.
fn map_file(file: File, len: u64, map_from: u64) -> Result<WholeFile, File> {
    if len >= map_from
        && let Some(map) = map_leased(&file, len)
    {
        return Ok(WholeFile::Mapped(Mapped { map, _file: file }));
    }
    Err(file)
}

/// Takes a read lease on `file` and maps it, if both succeed and the file is still `len` bytes long under the lease.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64")
))]
fn map_leased(file: &File, len: u64) -> Option<memmap2::Mmap> {
    use std::os::fd::AsRawFd;
    // Not in the libc crate: <asm-generic/fcntl.h>'s value, which these architectures use.
    const F_SETSIG: libc::c_int = 10;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function borrows, with integer arguments. The lease-break signal is set to
    // SIGURG, which is ignored unless a handler is installed: the default (SIGIO) would end the process when a
    // writer comes along, which must instead just wait for the lease.
    let leased = unsafe {
        libc::fcntl(fd, F_SETSIG, libc::SIGURG) == 0 && libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) == 0
    };
    if !leased {
        return None;
    }
    // Truncated between the open and the lease: read instead (the read sees the new length).
    if file.metadata().ok()?.len() != len {
        return None;
    }
    // SAFETY: the mapping is read-only and the file cannot change while the lease is held: no one had it open for
    // writing when the lease was granted, and opening it for writing or truncating it now waits for the lease, which
    // `Mapped` releases (by closing the file) only after unmapping.
    // Not populated up front (`MAP_POPULATE`): the threads converting the weights fault their pages in side by side
    // instead of one thread mapping all of them first (`lrp info` ResNet-50 0.91×, VGG-16 0.94×).
    unsafe { memmap2::MmapOptions::new().map(file) }.ok()
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64")
)))]
fn map_leased(_file: &File, _len: u64) -> Option<memmap2::Mmap> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::mpsc;
    use std::time::Duration;

    fn file_of(len: usize) -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.bin");
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        (dir, path, bytes)
    }

    #[test]
    fn a_large_file_is_mapped_and_has_its_bytes() {
        let (_dir, path, bytes) = file_of(3 << 20);
        let whole = whole_file_from(&path, 1 << 20).unwrap();
        assert!(whole.is_mapped(), "{whole:?}");
        assert_eq!(whole.as_ref(), &bytes[..]);
        let small = whole_file_from(&path, 4 << 20).unwrap();
        assert!(!small.is_mapped());
        assert_eq!(small.as_ref(), &bytes[..]);
        assert_eq!(
            mapped(&path, 1 << 20..=3 << 20).unwrap().expect("mapped").as_ref(),
            &bytes[..]
        );
        assert!(mapped(&path, 4 << 20..=u64::MAX).unwrap().is_none());
        assert!(mapped(&path, 1 << 20..=2 << 20).unwrap().is_none());
    }

    #[test]
    fn a_file_open_for_writing_is_read_not_mapped() {
        let (_dir, path, bytes) = file_of(2 << 20);
        let writer = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        let whole = whole_file_from(&path, 1 << 20).unwrap();
        assert!(!whole.is_mapped(), "a lease was granted on a file open for writing");
        assert_eq!(whole.as_ref(), &bytes[..]);
        assert!(mapped(&path, 1 << 20..=u64::MAX).unwrap().is_none());
        drop(writer);
    }

    #[test]
    fn truncating_a_mapped_file_waits_until_it_is_dropped() {
        let (_dir, path, bytes) = file_of(2 << 20);
        let whole = whole_file_from(&path, 1 << 20).unwrap();
        assert!(whole.is_mapped());
        let (done, finished) = mpsc::channel();
        let (opening, started) = mpsc::channel();
        let p = path.clone();
        let writer = std::thread::spawn(move || {
            opening.send(()).unwrap();
            let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(&p).unwrap();
            f.write_all(b"short").unwrap();
            done.send(()).unwrap();
        });
        // Once the writer is about to open the file, it must still be waiting for the lease 300 ms later, and every
        // mapped byte must be as it was.
        started.recv().unwrap();
        assert!(
            finished.recv_timeout(Duration::from_millis(300)).is_err(),
            "the truncation did not wait"
        );
        assert_eq!(whole.as_ref(), &bytes[..]);
        drop(whole);
        finished
            .recv_timeout(Duration::from_secs(20))
            .expect("the truncation still waits after the drop");
        writer.join().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"short");
    }

    #[test]
    fn only_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let err = whole_file(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("regular") || err.kind() == std::io::ErrorKind::IsADirectory,
            "{err}"
        );
        assert!(whole_file(&dir.path().join("absent")).is_err());
    }
}
