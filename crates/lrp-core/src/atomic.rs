//! Replacing files atomically, so a reader never sees half a file and a failure leaves the old one intact.

use std::path::{Path, PathBuf};

/// A temporary name beside `path` (same folder, so the final rename is atomic).
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let pid = std::process::id();
    // A file name may hold 255 bytes: a long name gets a short temporary one (its hash), not a longer one.
    if name.len() + 24 > 255 {
        return path.with_file_name(format!(".lrp{:016x}.tmp{pid}", crate::hash::fnv1a(name.as_bytes())));
    }
    path.with_file_name(format!(".{name}.tmp{pid}"))
}

/// What is at a path a command is about to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Nothing, a regular file, or a symbolic link to one: replaced atomically.
    File,
    /// A character device or a FIFO (`/dev/null`, `/dev/stdout`, a named pipe): written through, never replaced.
    Stream,
}

/// What `path` is, following symbolic links; an error for a folder, a block device or a socket, which a command
/// never writes into or replaces.
pub fn target_kind(path: &Path) -> std::io::Result<Target> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Target::File),
        // A dangling symbolic link: creating the file would write wherever it points.
        Err(e) if std::fs::symlink_metadata(path).is_ok() => {
            return Err(std::io::Error::new(
                e.kind(),
                format!(
                    "{} is a symbolic link to nothing; refusing to write through it",
                    path.display()
                ),
            ));
        }
        // Anything else (a parent that is not a folder, no permission) is reported by the write itself.
        Err(_) => return Ok(Target::File),
    };
    if meta.is_file() {
        return Ok(Target::File);
    }
    if meta.is_dir() {
        return Err(std::io::Error::other(format!(
            "{} is a folder, not a file",
            path.display()
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_char_device() || t.is_fifo() {
            return Ok(Target::Stream);
        }
    }
    Err(std::io::Error::other(format!(
        "{} is a device or socket, not a file; refusing to replace it",
        path.display()
    )))
}

/// Writes `path` atomically: `fill` writes a temporary file beside it (the path it is given), which is renamed
/// over `path` only when `fill` succeeds. On any failure the temporary file is removed and `path` is untouched;
/// a failed rename is reported through `rename_err`. Missing parent folders are created first (a failure to
/// create them is reported through `rename_err` too). Errors from `fill` should name `path`, not the temporary
/// name, which the user never asked for. A character device or FIFO at `path` is written through (`fill` gets
/// `path` itself) and never replaced; a folder, block device or socket is refused (see [`target_kind`]).
pub fn write_atomically<E>(
    path: &Path,
    fill: impl FnOnce(&Path) -> Result<(), E>,
    rename_err: impl FnOnce(std::io::Error) -> E,
) -> Result<(), E> {
    match target_kind(path) {
        Ok(Target::File) => {}
        Ok(Target::Stream) => return fill(path),
        Err(e) => return Err(rename_err(e)),
    }
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.is_dir()
        && let Err(e) = std::fs::create_dir_all(parent)
    {
        let why = std::io::Error::new(e.kind(), format!("cannot create the folder {}: {e}", parent.display()));
        return Err(rename_err(why));
    }
    let tmp = temp_path(path);
    let result = fill(&tmp).and_then(|()| std::fs::rename(&tmp, path).map_err(rename_err));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_fill_leaves_the_old_file_and_no_temporary() {
        let dir = std::env::temp_dir().join(format!("lrp-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.txt");
        std::fs::write(&path, b"old").unwrap();
        let r: Result<(), String> = write_atomically(
            &path,
            |tmp| {
                std::fs::write(tmp, b"half").unwrap();
                Err("disk full".into())
            },
            |e| e.to_string(),
        );
        assert_eq!(r, Err("disk full".to_string()));
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert!(!temp_path(&path).exists());
        write_atomically(
            &path,
            |tmp| std::fs::write(tmp, b"new").map_err(|e| e.to_string()),
            |e| e.to_string(),
        )
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let nested = dir.join("a/b/c.txt");
        write_atomically(
            &nested,
            |tmp| std::fs::write(tmp, b"deep").map_err(|e| e.to_string()),
            |e| e.to_string(),
        )
        .unwrap();
        assert_eq!(std::fs::read(&nested).unwrap(), b"deep");
        // A parent that is a file: the error names the folder that could not be made.
        let blocked = path.join("x.txt");
        let r: Result<(), String> = write_atomically(&blocked, |_| Ok(()), |e| e.to_string());
        assert!(
            r.unwrap_err()
                .contains(&format!("cannot create the folder {}", path.display()))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
