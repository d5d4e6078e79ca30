//! One run of a sweep, the same way under every launcher: skip it when finished, resume it from
//! its snapshot when started, else start it; its state file says how it went.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use rnnlab_core::{Registry, SNAPSHOT};

use super::status::{self, RunState, RunStatus};
use super::{Plan, PlannedRun};
use crate::train::{train, TrainOptions};

/// What [`exec`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Executed {
    /// The run was already finished.
    Skipped,
    /// It trained (from the start, or resumed) and finished.
    Trained,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs `run` of `plan` in this process with `threads` CPU threads: skipped when done,
/// resumed from `checkpoints/last.state.safetensors` when there is one (with the planned
/// `train.epochs`, so a sweep given more epochs extends its runs), else started afresh (a
/// folder left without a snapshot is cleared first). Writes the run's state file as it goes.
pub fn exec(
    registry: &Registry,
    plan: &Plan,
    run: &PlannedRun,
    threads: Option<usize>,
) -> Result<Executed> {
    status::check_owner(plan, run)?;
    match status::status(plan, run) {
        RunStatus::Done => return Ok(Executed::Skipped),
        RunStatus::Running { host, pid } => {
            bail!(
                "{}: already running on {host} (pid {pid})",
                run.dir.display()
            )
        }
        _ => {}
    }
    let mut state = RunState {
        state: "running".into(),
        host: status::hostname(),
        pid: std::process::id(),
        slurm_job: std::env::var("SLURM_ARRAY_JOB_ID").ok().map(|j| {
            match std::env::var("SLURM_ARRAY_TASK_ID") {
                Ok(t) => format!("{j}_{t}"),
                Err(_) => j,
            }
        }),
        epochs: run.epochs,
        started: now(),
        finished: None,
        error: None,
        sets: run.sets.clone(),
        base: run.base.clone(),
    };
    status::write_state(plan, run, &state)?;
    let result = train_run(registry, run, threads);
    state.finished = Some(now());
    match &result {
        Ok(()) => state.state = "done".into(),
        Err(e) => {
            state.state = "failed".into();
            state.error = Some(format!("{e:#}"));
        }
    }
    status::write_state(plan, run, &state)?;
    result.map(|()| Executed::Trained)
}

fn train_run(registry: &Registry, run: &PlannedRun, threads: Option<usize>) -> Result<()> {
    let snapshot = run.dir.join(rnnlab_core::CHECKPOINT_DIR).join(SNAPSHOT);
    let opts = if snapshot.is_file() {
        tracing::info!("{}: resuming from its snapshot", run.id);
        TrainOptions {
            sets: vec![format!("train.epochs={}", run.epochs)],
            threads,
            resume: Some(run.dir.clone()),
            ..Default::default()
        }
    } else {
        if run.dir.exists() {
            // Started, but stopped before its first snapshot: nothing to keep.
            std::fs::remove_dir_all(&run.dir)
                .with_context(|| format!("clearing {}", run.dir.display()))?;
        }
        if let Some(parent) = run.dir.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        TrainOptions {
            pipeline: run.base.clone(),
            sets: run.sets.clone(),
            out: Some(run.dir.clone()),
            threads,
            ..Default::default()
        }
    };
    let summary = train(registry, &opts)?;
    tracing::info!("{}: {}", run.id, summary.line());
    Ok(())
}
