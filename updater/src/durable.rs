//! File operations that are on disk when they return, for STATE and the ESP
//! alike: a power cut after one of these keeps its effect.

use std::io::Write;
use std::path::{Path, PathBuf};

/// An operation on `path` that failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct FileError {
    action: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

fn fail<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> FileError + 'a {
    move |source| FileError { action, path: path.to_path_buf(), source }
}

/// Creates (or truncates) `path` with `bytes` and flushes the file; the name
/// is durable only once its directory is flushed too ([`sync_dir`]).
pub fn write_flushed(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let mut f = std::fs::File::create(path).map_err(fail("create", path))?;
    f.write_all(bytes).map_err(fail("write", path))?;
    f.sync_all().map_err(fail("flush", path))
}

/// Reads at most `limit` bytes of `path` from the disk, not the page cache:
/// what a write left once it was flushed.
pub fn read_uncached(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).map_err(fail("open", path))?;
    // SAFETY: advice on a descriptor we own; it only drops clean cached
    // pages of this file, so the reads below go to the disk.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    let mut out = Vec::new();
    f.take(limit).read_to_end(&mut out).map_err(fail("read back", path))?;
    Ok(out)
}

/// Flushes a directory, so renames and removals in it are on disk.
pub fn sync_dir(dir: &Path) -> Result<(), FileError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(fail("flush", dir))
}

/// Removes `path` if it is there (not yet durable: see [`sync_dir`]).
pub fn remove(path: &Path) -> Result<(), FileError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(fail("remove", path)(e)),
        _ => Ok(()),
    }
}

/// Replaces `path` whole (temporary file, flush, rename, flush the
/// directory): after a power cut it holds the old bytes or the new, never
/// half of either.
pub fn replace(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let dir = parent(path);
    std::fs::create_dir_all(dir).map_err(fail("create", dir))?;
    let tmp = path.with_extension("tmp");
    write_flushed(&tmp, bytes)?;
    std::fs::rename(&tmp, path).map_err(fail("rename into", path))?;
    sync_dir(dir)
}

/// Removes `path` if it is there, durably.
pub fn remove_synced(path: &Path) -> Result<(), FileError> {
    remove(path)?;
    sync_dir(parent(path))
}

fn parent(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_and_remove() {
        let dir = std::env::temp_dir().join(format!("cairn-durable-{}", std::process::id()));
        let f = dir.join("sub/state");
        replace(&f, b"one").unwrap();
        replace(&f, b"two").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        assert!(!f.with_extension("tmp").exists());
        remove_synced(&f).unwrap();
        remove_synced(&f).unwrap();
        assert!(!f.exists());
        let err = write_flushed(&dir.join("missing/x"), b"").unwrap_err().to_string();
        assert!(err.starts_with("cannot create ") && err.contains("missing/x"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
