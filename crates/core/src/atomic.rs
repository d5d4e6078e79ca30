//! Replacing a file so that a reader (or a run killed half-way) sees the old file or the new one,
//! never a mix: write a fresh temporary file beside it, fsync it, rename it over the target, fsync
//! the folder.

use std::io::Write;
use std::path::Path;

use crate::{Error, Result};

/// Replaces `path` with `bytes`, atomically and durably (see [`write_atomic_with`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(tmp)
            .map_err(|e| Error::io(path, e))?;
        f.write_all(bytes).map_err(|e| Error::io(path, e))
    })
}

/// Replaces `path` with what `write` puts into the temporary file whose path it is given (for
/// libraries that write to a path themselves: safetensors, tokenizers, plotters).
///
/// The temporary file is created in `path`'s folder with a unique name that keeps `path`'s
/// extension (`.name.XXXXXX.tmp.ext`), so concurrent writers never share one; it is fsynced,
/// renamed over `path` (`tempfile`'s `persist`), and the folder is fsynced so the rename survives
/// a crash. On any error the temporary file is removed and `path` is left as it was.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix = match path.extension() {
        Some(ext) => format!(".tmp.{}", ext.to_string_lossy()),
        None => ".tmp".to_string(),
    };
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(&suffix);
    // The mode of any new file (0666 less the umask), not tempfile's private 0600.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let tmp = builder.tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
    write(tmp.path())?;
    // The writer may have replaced the file at the temporary path (a library writing its own
    // temporary file and renaming it there): fsync what the path names now, not the descriptor
    // tempfile opened.
    std::fs::File::open(tmp.path())
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    sync_dir(dir)
}

/// fsyncs a folder, so that renames and new entries in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        write_atomic(&p, b"a = 1\n").unwrap();
        write_atomic(&p, b"b").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"b");
        assert_eq!(entries(dir.path()), ["config.toml"]);
    }

    /// Run folders are read by other tools and people: the files get the usual mode of a new
    /// file, as `std::fs::write` gives them, not a temporary file's private one.
    #[cfg(unix)]
    #[test]
    fn the_file_gets_the_mode_of_a_new_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"x").unwrap();
        let p = dir.path().join("atomic");
        write_atomic(&p, b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), mode(&plain));
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        write_atomic(&p, b"old").unwrap();
        let e = write_atomic_with(&p, |tmp| {
            std::fs::write(tmp, b"half").unwrap();
            Err(Error::Mismatch("disk full".into()))
        })
        .unwrap_err();
        assert!(e.to_string().contains("disk full"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(entries(dir.path()), ["x.json"]);
    }

    #[test]
    fn the_temporary_file_keeps_the_extension() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("plot.png");
        write_atomic_with(&p, |tmp| {
            assert_eq!(tmp.parent(), Some(dir.path()));
            assert_eq!(tmp.extension().unwrap(), "png", "{}", tmp.display());
            std::fs::write(tmp, b"png").map_err(|e| Error::io(tmp, e))
        })
        .unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"png");
    }

    /// Two writers replacing one file at once (two callbacks, or a run and a resume) each write
    /// their own temporary file: every write succeeds and the file is always one of the two
    /// contents, never a mix. With one fixed `.tmp` name they truncate each other's temporary
    /// file and one rename fails.
    #[test]
    fn concurrent_writers_never_mix_or_fail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.csv");
        let a = vec![b'a'; 1 << 20];
        let b = vec![b'b'; 1 << 19];
        std::thread::scope(|s| {
            for content in [&a, &b] {
                let p = &p;
                s.spawn(move || {
                    for _ in 0..40 {
                        write_atomic(p, content).unwrap();
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..200 {
                    if let Ok(got) = std::fs::read(&p) {
                        assert!(got == a || got == b, "a reader saw a mixed file");
                    }
                }
            });
        });
        let got = std::fs::read(&p).unwrap();
        assert!(got == a || got == b);
        assert_eq!(entries(dir.path()), ["metrics.csv"]);
    }
}
