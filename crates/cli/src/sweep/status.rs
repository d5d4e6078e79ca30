//! Where each run of a sweep stands: its state file (`OUT/.sweep/<variant>/seed-S.json`, written
//! by [`super::exec`]) and its run folder's metrics.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{Plan, PlannedRun};

/// What the process running a run last wrote about it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunState {
    /// `running`, `done` or `failed`.
    pub state: String,
    /// The host it ran on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// The Slurm job and array task, when it ran under Slurm.
    #[serde(default)]
    pub slurm_job: Option<String>,
    /// Epochs it was asked to train.
    pub epochs: usize,
    /// Seconds since the Unix epoch when it started.
    pub started: u64,
    /// Seconds since the Unix epoch when it ended.
    #[serde(default)]
    pub finished: Option<u64>,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<String>,
    /// The run's overrides (a run folder shared by sweeps must mean the same run in each).
    #[serde(default)]
    pub sets: Vec<String>,
    /// Its base pipeline.
    #[serde(default)]
    pub base: Option<PathBuf>,
}

/// Where a run stands.
#[derive(Clone, Debug, PartialEq)]
pub enum RunStatus {
    /// Not started.
    Pending,
    /// Every planned epoch is in its metrics (or a callback stopped it and it ended cleanly).
    Done,
    /// A process is running it (on this host: alive; elsewhere: as last written).
    Running {
        /// Host and process id.
        host: String,
        /// Process id.
        pid: u32,
    },
    /// It failed; the error.
    Failed(String),
    /// Started, not finished, nothing running it: it resumes from its snapshot.
    Interrupted,
}

impl RunStatus {
    /// One word: pending, done, running, failed, interrupted.
    pub fn word(&self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Done => "done",
            RunStatus::Running { .. } => "running",
            RunStatus::Failed(_) => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// The state file of `run`.
pub fn state_path(plan: &Plan, run: &PlannedRun) -> PathBuf {
    plan.state_dir().join(format!("{}.json", run.id))
}

/// The log file the local launcher writes `run`'s output to.
pub fn log_path(plan: &Plan, run: &PlannedRun) -> PathBuf {
    plan.state_dir().join(format!("{}.log", run.id))
}

/// The state file's contents, if any (an unreadable file counts as none).
pub fn read_state(plan: &Plan, run: &PlannedRun) -> Option<RunState> {
    let text = std::fs::read_to_string(state_path(plan, run)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes the state file atomically.
pub fn write_state(plan: &Plan, run: &PlannedRun, state: &RunState) -> Result<()> {
    let path = state_path(plan, run);
    let dir = path.parent().unwrap_or(plan.out.as_path());
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    rnnlab_core::write_atomic(&path, serde_json::to_string_pretty(state)?.as_bytes())?;
    Ok(())
}

/// Fails when `run`'s folder was made by a run with other overrides or another base pipeline
/// (sweeps that share `out` share the folders of same-named variants).
pub fn check_owner(plan: &Plan, run: &PlannedRun) -> Result<()> {
    if let Some(old) = read_state(plan, run) {
        if old.sets.is_empty() {
            return Ok(());
        }
        if old.sets != run.sets {
            bail!(
                "{}: this run folder was made with other overrides ({}) than {}'s variant `{}` \
                 ({}): give the variant another name or the sweep another `out`",
                run.dir.display(),
                old.sets.join(" "),
                plan.file.display(),
                run.variant,
                run.sets.join(" ")
            );
        }
        // The same file reached by another path (`a/../b.toml`, a relative path) is the same base.
        // A relative base is relative to the sweep file's folder.
        let dir = plan.file.parent().unwrap_or(std::path::Path::new("."));
        let same = |a: &Option<PathBuf>, b: &Option<PathBuf>| match (a, b) {
            (Some(a), Some(b)) => match (
                std::fs::canonicalize(dir.join(a)),
                std::fs::canonicalize(dir.join(b)),
            ) {
                (Ok(x), Ok(y)) => x == y,
                _ => a == b,
            },
            (a, b) => a == b,
        };
        let shown = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "the embedded default".into())
        };
        if !same(&old.base, &run.base) {
            bail!(
                "{}: this run folder was made from another base pipeline ({}) than {}'s variant \
                 `{}` ({}): give the variant another name or the sweep another `out`",
                run.dir.display(),
                shown(&old.base),
                plan.file.display(),
                run.variant,
                shown(&run.base)
            );
        }
    }
    Ok(())
}

/// Epochs in the run folder's `metrics.jsonl` (0 when there is none).
pub fn epochs_done(run: &PlannedRun) -> usize {
    rnnlab_core::read_metrics(&run.dir.join(rnnlab_core::METRICS_FILE))
        .map(|h| h.len())
        .unwrap_or(0)
}

/// This machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Whether process `pid` of this host is alive and is an rnnlab process.
fn alive(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("sweep"))
        .unwrap_or(false)
}

/// Whether the process that wrote "running" into `state` still runs: on this host, whether it
/// is alive; elsewhere, for a Slurm task, whether Slurm still runs it (a task killed at its time
/// limit never writes its end), else as written.
fn still_running(state: &RunState) -> bool {
    if state.host == hostname() {
        return alive(state.pid);
    }
    match &state.slurm_job {
        Some(task) => super::slurm::job_active(task).unwrap_or(true),
        None => true,
    }
}

/// Where `run` stands.
pub fn status(plan: &Plan, run: &PlannedRun) -> RunStatus {
    let done = epochs_done(run);
    let started = run.dir.exists();
    match read_state(plan, run) {
        None if done >= run.epochs && done > 0 => RunStatus::Done,
        None if started => RunStatus::Interrupted,
        None => RunStatus::Pending,
        Some(s) => match s.state.as_str() {
            "done" if s.epochs >= run.epochs || done >= run.epochs => RunStatus::Done,
            "failed" => RunStatus::Failed(s.error.unwrap_or_default()),
            "running" if still_running(&s) => RunStatus::Running {
                host: s.host,
                pid: s.pid,
            },
            _ if done >= run.epochs && done > 0 => RunStatus::Done,
            _ => RunStatus::Interrupted,
        },
    }
}

/// `rnnlab sweep status`: one line per run and the counts.
pub fn render(plan: &Plan) -> String {
    let mut s = String::new();
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    let width = plan.runs.iter().map(|r| r.id.len()).max().unwrap_or(0);
    let _ = writeln!(s, "sweep {} ({})", plan.file.display(), plan.out.display());
    for run in &plan.runs {
        let st = status(plan, run);
        *counts.entry(st.word()).or_default() += 1;
        let detail = match &st {
            RunStatus::Running { host, pid } => format!(" on {host} (pid {pid})"),
            RunStatus::Failed(e) => format!(": {}", e.lines().next().unwrap_or_default()),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "  {:<width$}  {:<11} {:>3}/{} epochs{detail}",
            run.id,
            st.word(),
            epochs_done(run),
            run.epochs
        );
    }
    let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let _ = writeln!(s, "{} runs: {}", plan.runs.len(), summary.join(", "));
    s
}
