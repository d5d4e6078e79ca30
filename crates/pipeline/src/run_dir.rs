//! Run folders: claiming one for a run, and the lock a training process holds on it for its
//! whole life, so that two runs (or a run and a resume) never write into one folder; the record
//! of its best checkpoint.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The lock file inside a run folder. A process that trains into the folder holds an exclusive
/// advisory lock on it (`flock`) until it exits; the kernel releases it when the process dies, so a
/// killed run leaves no stale lock.
pub const LOCK_FILE: &str = ".rnnlab.lock";

/// An exclusive lock on a run folder, held until dropped.
#[derive(Debug)]
pub struct RunLock {
    dir: PathBuf,
    _file: File,
}

impl RunLock {
    /// The locked folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Locks `dir` (which must exist), or fails at once when another process holds it.
    fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(RunLock {
                dir: dir.to_path_buf(),
                _file: file,
            }),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "run folder {} is in use by another rnnlab process (it holds {}); wait for it \
                 to finish or choose another --out",
                dir.display(),
                path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
    }

    /// Locks an existing run folder to resume it.
    pub fn existing(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            bail!("{}: no such run folder", dir.display());
        }
        Self::acquire(dir)
    }
}

/// Whether `dir` holds nothing but (maybe) the lock file.
fn is_unused(dir: &Path) -> Result<bool> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        if entry.file_name() != LOCK_FILE {
            return Ok(false);
        }
    }
    Ok(true)
}

fn not_empty(dir: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "run folder {} exists and is not empty: choose another --out or remove it",
        dir.display()
    )
}

/// Fails early (before the data is read) when `--out DIR` already holds a run.
pub fn check_free(dir: &Path) -> Result<()> {
    if dir.exists() && !is_unused(dir)? {
        return Err(not_empty(dir));
    }
    Ok(())
}

/// Claims `dir` for a new run: creates it (and its parents) if needed and locks it; fails when
/// it holds anything but the lock file or another process holds the lock. Of two processes
/// claiming one folder at once exactly one succeeds: the loser finds the lock held, or, if the
/// winner already finished, the folder no longer empty.
pub fn claim(dir: &Path) -> Result<RunLock> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {
            check_free(dir)?;
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
    }
    let lock = RunLock::acquire(dir)?;
    // Checked again under the lock: a run that held it may have finished in between.
    if !is_unused(dir)? {
        return Err(not_empty(dir));
    }
    Ok(lock)
}

/// Claims a fresh folder `base`, or `base-2`, `base-3`, ... when taken (runs started in the same
/// second).
pub fn claim_new(base: &Path) -> Result<RunLock> {
    if let Some(parent) = base.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    for n in 1.. {
        let dir = if n == 1 {
            base.to_path_buf()
        } else {
            PathBuf::from(format!("{}-{n}", base.display()))
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return RunLock::acquire(&dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    unreachable!("the loop returns")
}

/// `checkpoints/best.json`, which the model checkpoint callback writes with `best.safetensors`.
pub fn best_record(run: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(
        run.join(rnnlab_core::CHECKPOINT_DIR)
            .join(rnnlab_core::BEST_RECORD),
    )
    .ok()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two runs on one `--out` both pass the emptiness check before either writes (they read and
    /// validate their data first): the second claim must fail while the first run holds the
    /// folder, even though the folder is still empty.
    #[test]
    fn a_claimed_folder_cannot_be_claimed_again() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("runs/a");
        let first = claim(&dir).unwrap();
        assert_eq!(first.dir(), dir);
        let e = claim(&dir).unwrap_err().to_string();
        assert!(e.contains("in use by another rnnlab process"), "{e}");
        // Nor can it be resumed while the run goes on.
        let e = RunLock::existing(&dir).unwrap_err().to_string();
        assert!(e.contains("in use"), "{e}");
        drop(first);
        // Free again, and still empty: it can be claimed.
        let again = claim(&dir).unwrap();
        std::fs::write(dir.join(rnnlab_core::METRICS_FILE), "{}\n").unwrap();
        drop(again);
        // Once a run wrote into it, it is taken.
        let e = claim(&dir).unwrap_err().to_string();
        assert!(e.contains("is not empty"), "{e}");
        assert!(RunLock::existing(&dir).is_ok());
    }

    #[test]
    fn new_folders_get_a_suffix_when_taken() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("demo-20260101-000000");
        let a = claim_new(&base).unwrap();
        let b = claim_new(&base).unwrap();
        assert_eq!(a.dir(), base);
        assert_eq!(b.dir(), tmp.path().join("demo-20260101-000000-2"));
    }
}
