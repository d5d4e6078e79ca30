//! Ctrl-C during a run: the first SIGINT asks the trainer to stop after the current step (it
//! writes a snapshot that resumes mid-epoch, and the run exits with [`EXIT_INTERRUPTED`]); a
//! second one exits at once.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// The exit status of a run stopped by SIGINT (128 + 2, as shells report it).
pub const EXIT_INTERRUPTED: i32 = 130;

/// The process's stop flag, set by the first SIGINT. The first call installs the handler (a
/// thread that waits for the signal); later calls, from any thread, share it.
pub fn stop_flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        if let Err(e) = install(flag.clone()) {
            tracing::warn!("cannot catch Ctrl-C ({e}): it will end a run without a snapshot");
        }
        flag
    })
    .clone()
}

#[cfg(unix)]
fn install(flag: Arc<AtomicBool>) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT])?;
    std::thread::Builder::new()
        .name("rnnlab-sigint".into())
        .spawn(move || {
            for _ in signals.forever() {
                if flag.swap(true, Ordering::SeqCst) {
                    eprintln!("interrupted again: exiting now");
                    signal_hook::low_level::exit(EXIT_INTERRUPTED);
                }
                eprintln!(
                    "interrupted: finishing the current step and writing a snapshot (Ctrl-C again to quit at once)"
                );
            }
        })?;
    Ok(())
}

#[cfg(not(unix))]
fn install(_flag: Arc<AtomicBool>) -> std::io::Result<()> {
    Err(std::io::Error::other(
        "SIGINT is not caught on this platform",
    ))
}

/// A run that stopped on request (Ctrl-C): where, and how to go on. `rnnlab` prints it and exits
/// with [`EXIT_INTERRUPTED`]; a caller of [`crate::train()`] finds it with
/// `error.downcast_ref::<Interrupted>()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interrupted {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Where training stopped.
    pub at: rnnlab_core::Interruption,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = &self.at;
        if a.batch == a.batches {
            write!(f, "interrupted after epoch {} (step {})", a.epoch, a.step)?;
        } else {
            write!(
                f,
                "interrupted in epoch {} after batch {} of {} (step {})",
                a.epoch, a.batch, a.batches, a.step
            )?;
        }
        write!(
            f,
            "; the snapshot is {}\nresume with: rnnlab train --resume {}",
            self.run_dir
                .join(rnnlab_core::CHECKPOINT_DIR)
                .join(rnnlab_core::SNAPSHOT)
                .display(),
            self.run_dir.display()
        )
    }
}

impl std::error::Error for Interrupted {}
