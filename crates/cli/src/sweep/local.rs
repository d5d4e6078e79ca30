//! The local launcher: `--jobs` runs at a time on this machine, each a child process
//! `rnnlab sweep exec SWEEP --run ID --threads T` writing its output to `OUT/.sweep/ID.log`.
//!
//! A failed run is reported with its error and the others go on. Ctrl-C stops starting runs
//! and passes one interrupt to each running child (they run in their own process group, so the
//! terminal's interrupt reaches the launcher only); a second Ctrl-C exits at once. A child dies
//! with the launcher (`PR_SET_PDEATHSIG`). Whatever was interrupted resumes from its snapshot
//! when the same sweep runs again.

use std::collections::VecDeque;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::status::{self, RunStatus};
use super::{Plan, PlannedRun};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// How the local launcher runs a sweep.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    /// Runs at a time.
    pub jobs: usize,
    /// CPU threads in all; each run gets `threads / jobs` (at least 1).
    pub threads: usize,
}

/// What a launch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Launched {
    /// Runs that were already finished.
    pub skipped: usize,
    /// Runs that trained to the end.
    pub finished: usize,
    /// Runs that failed: `(id, error)`.
    pub failed: Vec<(String, String)>,
    /// Runs stopped by an interrupt (resumable).
    pub interrupted: usize,
}

impl Launched {
    /// Records that `run` failed with `error` and prints it after `progress`.
    pub(super) fn fail(&mut self, progress: &str, run: &PlannedRun, error: String, log: &Path) {
        println!(
            "{progress} FAILED {}: {} (log: {})",
            run.id,
            error.lines().next().unwrap_or_default(),
            log.display()
        );
        self.failed.push((run.id.clone(), error));
    }
}

fn install_interrupt_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                eprintln!("second interrupt: exiting now");
                std::process::exit(130);
            }
            eprintln!(
                "interrupt: no new runs start; running runs are being stopped (Ctrl-C again to exit at once)"
            );
        });
    });
}

fn spawn(plan: &Plan, run: &PlannedRun, threads: usize) -> Result<Child> {
    let log = status::log_path(plan, run);
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    let exe = std::env::current_exe().context("finding the rnnlab executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("sweep")
        .arg("exec")
        .arg(&plan.file)
        .arg("--run")
        .arg(&run.id)
        .arg("--threads")
        .arg(threads.to_string())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill this child when
        // its parent exits.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    cmd.spawn()
        .with_context(|| format!("starting run {}", run.id))
}

fn interrupt(child: &Child) {
    #[cfg(unix)]
    // SAFETY: sends a signal to our own child process.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    #[cfg(not(unix))]
    let _ = child;
}

/// `N epochs, final val_acc A test_acc B` of `run`'s metrics.
pub(super) fn final_line(run: &PlannedRun) -> String {
    let history =
        rnnlab_core::read_metrics(&run.dir.join(rnnlab_core::METRICS_FILE)).unwrap_or_default();
    let last = history.last();
    let get = |k: &str| {
        last.and_then(|m| m.get(k))
            .map(|v| format!("{v:.2}"))
            .unwrap_or_else(|| "-".into())
    };
    format!(
        "{} epochs, final val_acc {} test_acc {}",
        history.len(),
        get("val_acc"),
        get("test_acc")
    )
}

/// Runs every unfinished run of `plan`, `opts.jobs` at a time; prints a line as each ends.
pub fn launch(plan: &Plan, opts: &LocalOptions) -> Result<Launched> {
    install_interrupt_handler();
    let jobs = opts.jobs.max(1);
    let threads = (opts.threads / jobs).max(1);
    let mut outcome = Launched::default();
    if let Some(job) = super::slurm::active_array(plan) {
        bail!(
            "job array {job} of this sweep is still queued or running under Slurm (squeue -j {job}): \
             wait for it or cancel it (scancel {job}) first"
        );
    }
    let mut queue: VecDeque<&PlannedRun> = VecDeque::new();
    for run in &plan.runs {
        match status::status(plan, run) {
            RunStatus::Done => outcome.skipped += 1,
            RunStatus::Running { host, pid } => {
                bail!(
                    "run {} is running on {host} (pid {pid}): wait for it or stop it first",
                    run.id
                )
            }
            _ => queue.push_back(run),
        }
    }
    println!(
        "sweep {}: {} runs, {} finished, {} to run, {jobs} at a time with {threads} threads each; logs in {}",
        plan.file.display(),
        plan.runs.len(),
        outcome.skipped,
        queue.len(),
        plan.state_dir().display()
    );
    let total = queue.len();
    let mut active: Vec<(Child, &PlannedRun, Instant)> = Vec::new();
    let mut forwarded = false;
    let mut ended = 0;
    loop {
        let stop = INTERRUPTED.load(Ordering::SeqCst);
        while !stop && active.len() < jobs {
            let Some(run) = queue.pop_front() else { break };
            let resumed = run
                .dir
                .join(rnnlab_core::CHECKPOINT_DIR)
                .join(rnnlab_core::SNAPSHOT);
            let how = if resumed.is_file() {
                "resuming"
            } else {
                "starting"
            };
            println!("{how} {}", run.id);
            active.push((spawn(plan, run, threads)?, run, Instant::now()));
        }
        if stop && !forwarded {
            for (child, _, _) in &active {
                interrupt(child);
            }
            forwarded = true;
        }
        if active.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut i = 0;
        while i < active.len() {
            let Some(exit) = active[i].0.try_wait()? else {
                i += 1;
                continue;
            };
            let (_, run, started) = active.swap_remove(i);
            ended += 1;
            let secs = started.elapsed().as_secs_f64();
            let log = status::log_path(plan, run);
            match status::status(plan, run) {
                RunStatus::Done if exit.success() => {
                    outcome.finished += 1;
                    println!(
                        "[{ended}/{total}] done {} in {secs:.0} s: {}",
                        run.id,
                        final_line(run)
                    );
                }
                _ if forwarded => {
                    outcome.interrupted += 1;
                    println!("[{ended}/{total}] interrupted {} (resumable)", run.id);
                }
                st => {
                    let error = match st {
                        RunStatus::Failed(e) => e,
                        _ => format!("exited with {exit}"),
                    };
                    outcome.fail(&format!("[{ended}/{total}]"), run, error, &log);
                }
            }
        }
    }
    outcome.interrupted += queue.len();
    Ok(outcome)
}

/// The message and exit status of a launch: an error when a run failed or it was interrupted.
pub fn conclude(file: &Path, done: &Launched) -> Result<()> {
    println!(
        "{} trained, {} already finished, {} failed, {} interrupted",
        done.finished,
        done.skipped,
        done.failed.len(),
        done.interrupted
    );
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!(
            "interrupted: run `rnnlab sweep {}` again to resume",
            file.display()
        );
    }
    if !done.failed.is_empty() {
        let list: Vec<String> = done
            .failed
            .iter()
            .map(|(id, e)| format!("{id}: {}", e.lines().next().unwrap_or_default()))
            .collect();
        bail!(
            "{} of the sweep's runs failed:\n  {}",
            done.failed.len(),
            list.join("\n  ")
        );
    }
    Ok(())
}
