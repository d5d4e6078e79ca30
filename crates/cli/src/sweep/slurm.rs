//! The Slurm launcher: one job array, one array task per unfinished run; each task runs
//! `rnnlab sweep exec SWEEP --index $SLURM_ARRAY_TASK_ID`, the code path of the local launcher.
//!
//! With `--wait` it polls `squeue` until the array has ended (faster than `sbatch --wait`, which
//! checks rarely) and prints each run's outcome as its task leaves the queue, from the run's
//! state file (`OUT/.sweep/<id>.json`, which names the task that wrote it) or, when the task
//! never got to write one (a launch failure, a time limit, a cancel), from `scontrol`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

use super::local::{self, Launched};
use super::status::{self, RunStatus};
use super::{Plan, PlannedRun};

/// `[slurm]` of a sweep file; `rnnlab sweep --launcher slurm` flags override each key.
#[derive(Clone, Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmSettings {
    /// `--partition` (default: the cluster's default partition).
    pub partition: Option<String>,
    /// `--cpus-per-task` (default 2); also each run's threads.
    pub cpus_per_task: Option<usize>,
    /// `--mem`, e.g. `4G` (default 4G).
    pub mem: Option<String>,
    /// `--time`, e.g. `04:00:00` (default 04:00:00).
    pub time: Option<String>,
    /// At most this many array tasks at once (`--array=...%N`).
    pub max_parallel: Option<usize>,
    /// More `#SBATCH` lines, e.g. `--qos=normal` or `#SBATCH --account=x`.
    pub extra: Vec<String>,
}

impl SlurmSettings {
    /// `self`, with every key `over` sets replacing it.
    pub fn overridden(&self, over: &SlurmSettings) -> SlurmSettings {
        let mut extra = self.extra.clone();
        extra.extend(over.extra.iter().cloned());
        SlurmSettings {
            partition: over.partition.clone().or_else(|| self.partition.clone()),
            cpus_per_task: over.cpus_per_task.or(self.cpus_per_task),
            mem: over.mem.clone().or_else(|| self.mem.clone()),
            time: over.time.clone().or_else(|| self.time.clone()),
            max_parallel: over.max_parallel.or(self.max_parallel),
            extra,
        }
    }
}

/// Indices (into `plan.runs`) of the runs that are not finished.
pub fn unfinished(plan: &Plan) -> Vec<usize> {
    plan.runs
        .iter()
        .enumerate()
        .filter(|(_, r)| status::status(plan, r) != RunStatus::Done)
        .map(|(i, _)| i)
        .collect()
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=+,:@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The job-array script for the runs `indices` of `plan`, run by `exe`. `RNNLAB_DATA`, when
/// set, is written into it as an absolute path, so the tasks read the data the sweep was
/// validated with whatever environment and working directory the cluster gives them.
pub fn script(plan: &Plan, settings: &SlurmSettings, indices: &[usize], exe: &Path) -> String {
    let cpus = settings.cpus_per_task.unwrap_or(2);
    let stem = plan
        .file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sweep".into());
    let list: Vec<String> = indices.iter().map(|i| i.to_string()).collect();
    let mut array = list.join(",");
    if let Some(n) = settings.max_parallel {
        let _ = write!(array, "%{n}");
    }
    let mut s = String::from("#!/bin/bash\n");
    let _ = writeln!(s, "#SBATCH --job-name=rnnlab-{stem}");
    let _ = writeln!(s, "#SBATCH --array={array}");
    let _ = writeln!(s, "#SBATCH --cpus-per-task={cpus}");
    let _ = writeln!(
        s,
        "#SBATCH --mem={}",
        settings.mem.as_deref().unwrap_or("4G")
    );
    let _ = writeln!(
        s,
        "#SBATCH --time={}",
        settings.time.as_deref().unwrap_or("04:00:00")
    );
    if let Some(p) = &settings.partition {
        let _ = writeln!(s, "#SBATCH --partition={p}");
    }
    let _ = writeln!(
        s,
        "#SBATCH --output={}",
        absolute(&plan.state_dir())
            .join("slurm-%A_%a.out")
            .display()
    );
    for line in &settings.extra {
        let line = line.trim();
        if line.starts_with("#SBATCH") {
            let _ = writeln!(s, "{line}");
        } else {
            let _ = writeln!(s, "#SBATCH {line}");
        }
    }
    let _ = writeln!(
        s,
        "# one array task per run: the task id is the run's index in the sweep file"
    );
    let _ = writeln!(s, "set -euo pipefail");
    if let Some(data) = std::env::var_os("RNNLAB_DATA").filter(|v| !v.is_empty()) {
        let data = absolute(Path::new(&data));
        let _ = writeln!(
            s,
            "export RNNLAB_DATA={}",
            shell_quote(&data.display().to_string())
        );
    }
    let _ = writeln!(
        s,
        "exec {} sweep exec {} --index \"$SLURM_ARRAY_TASK_ID\" --threads \"${{SLURM_CPUS_PER_TASK:-{cpus}}}\"",
        shell_quote(&absolute(exe).display().to_string()),
        shell_quote(&absolute(&plan.file).display().to_string()),
    );
    s
}

/// What [`launch`] did.
#[derive(Clone, Debug)]
pub enum Submission {
    /// `--dry-run`: the script that would be submitted.
    DryRun(String),
    /// Every run is finished: nothing submitted.
    NothingToRun,
    /// Submitted as job array `job`; with `--wait`, how its runs ended.
    Submitted {
        /// The array's job id.
        job: String,
        /// With `--wait`: the runs' outcomes.
        waited: Option<Launched>,
    },
}

/// The file holding the job id of the sweep's last array.
fn job_file(plan: &Plan) -> PathBuf {
    plan.state_dir().join("slurm-array.jobid")
}

/// Whether Slurm still has job (or array task) `id` queued or running; `None` when `squeue`
/// cannot tell (not installed, controller unreachable).
pub fn job_active(id: &str) -> Option<bool> {
    let out = Command::new("squeue")
        .args(["-h", "-j", id, "-o", "%i"])
        .output()
        .ok()?;
    if out.status.success() {
        Some(!String::from_utf8_lossy(&out.stdout).trim().is_empty())
    } else if String::from_utf8_lossy(&out.stderr).contains("Invalid job id") {
        // Ended longer ago than the controller remembers.
        Some(false)
    } else {
        None
    }
}

/// The sweep's last job array, if Slurm still has some of its tasks queued or running.
pub fn active_array(plan: &Plan) -> Option<String> {
    let id = std::fs::read_to_string(job_file(plan)).ok()?;
    let id = id.trim();
    (!id.is_empty() && job_active(id) == Some(true)).then(|| id.to_string())
}

/// Writes the script of the unfinished runs to `OUT/.sweep/slurm-array.sh` and submits it with
/// `sbatch`; with `wait`, blocks until the array has ended and reports every run. Refuses while
/// a run is running or the sweep's previous array is still queued (the tasks would collide).
pub fn launch(
    plan: &Plan,
    settings: &SlurmSettings,
    dry_run: bool,
    wait: bool,
) -> Result<Submission> {
    let indices = unfinished(plan);
    if indices.is_empty() {
        println!(
            "every run of {} is finished: nothing to submit",
            plan.file.display()
        );
        return Ok(Submission::NothingToRun);
    }
    let exe = std::env::current_exe().context("finding the rnnlab executable")?;
    let text = script(plan, settings, &indices, &exe);
    if dry_run {
        return Ok(Submission::DryRun(text));
    }
    if let Some(job) = active_array(plan) {
        bail!(
            "job array {job} of {} is still queued or running (squeue -j {job}): wait for it \
             (rnnlab sweep status {}) or cancel it (scancel {job}) before submitting again",
            plan.file.display(),
            plan.file.display()
        );
    }
    for &i in &indices {
        let run = &plan.runs[i];
        if let RunStatus::Running { host, pid } = status::status(plan, run) {
            bail!(
                "run {} is running on {host} (pid {pid}): wait for it or stop it first",
                run.id
            );
        }
    }
    // The output folder must exist before the tasks start: Slurm fails a task whose output
    // file it cannot open, before running anything.
    let dir = plan.state_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("slurm-array.sh");
    rnnlab_core::write_atomic(&path, text.as_bytes())?;
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg(&path)
        .output()
        .context("running sbatch (is Slurm installed and on PATH?)")?;
    if !out.status.success() {
        bail!(
            "sbatch {} failed ({}): {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // `--parsable` prints `JOBID` or `JOBID;CLUSTER`.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let job = stdout
        .trim()
        .split(';')
        .next()
        .filter(|j| !j.is_empty())
        .ok_or_else(|| anyhow!("sbatch {} printed no job id", path.display()))?
        .to_string();
    std::fs::write(job_file(plan), format!("{job}\n"))
        .with_context(|| format!("writing {}", job_file(plan).display()))?;
    let finished = plan.runs.len() - indices.len();
    let runs = match indices.len() {
        1 => "1 run".to_string(),
        n => format!("{n} runs"),
    };
    println!(
        "submitted job array {job}: {runs} ({finished} already finished) from {}; logs {}",
        path.display(),
        dir.join(format!("slurm-{job}_<task>.out")).display()
    );
    if !wait {
        println!(
            "follow it with `rnnlab sweep status {}` or `squeue -j {job}`",
            plan.file.display()
        );
        return Ok(Submission::Submitted { job, waited: None });
    }
    println!("waiting for it (Ctrl-C stops waiting, not the array: scancel {job} stops it)");
    let waited = wait_for(plan, &job, &indices, finished)?;
    Ok(Submission::Submitted {
        job,
        waited: Some(waited),
    })
}

/// First and longest pause between two `squeue` calls while nothing changes.
const POLL: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(15));
/// How long `squeue` may keep failing (e.g. a controller restart) before waiting gives up.
const SQUEUE_PATIENCE: Duration = Duration::from_secs(600);

/// Tasks of array `job` that Slurm still has: index → state (`PENDING`, `RUNNING`, ...).
fn queued_tasks(job: &str) -> Result<BTreeMap<usize, String>> {
    let out = Command::new("squeue")
        .args(["-h", "-r", "-j", job, "-o", "%K %T"])
        .output()
        .context("running squeue")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stderr.contains("Invalid job id") {
            return Ok(BTreeMap::new());
        }
        bail!("squeue -j {job} failed ({}): {}", out.status, stderr.trim());
    }
    let mut tasks = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut parts = line.split_whitespace();
        let (Some(index), Some(state)) = (parts.next(), parts.next()) else {
            continue;
        };
        let index = index
            .parse()
            .map_err(|_| anyhow!("squeue -j {job}: unexpected line `{line}`"))?;
        tasks.insert(index, state.to_string());
    }
    Ok(tasks)
}

/// Polls `squeue` until no task of `job` is left, printing a line as each starts and ends.
fn wait_for(plan: &Plan, job: &str, indices: &[usize], skipped: usize) -> Result<Launched> {
    let total = indices.len();
    let mut outcome = Launched {
        skipped,
        ..Default::default()
    };
    let mut left: BTreeSet<usize> = indices.iter().copied().collect();
    let mut started: BTreeSet<usize> = BTreeSet::new();
    let mut ended = 0;
    let mut pause = POLL.0;
    let mut failing_since: Option<Instant> = None;
    while !left.is_empty() {
        let queued = match queued_tasks(job) {
            Ok(q) => {
                failing_since = None;
                q
            }
            Err(e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > SQUEUE_PATIENCE {
                    return Err(e.context(format!(
                        "gave up waiting for job array {job} (it may still run: rnnlab sweep \
                         status {})",
                        plan.file.display()
                    )));
                }
                tracing::warn!("{e:#} (retrying)");
                std::thread::sleep(POLL.1);
                continue;
            }
        };
        let mut changed = false;
        for (&i, state) in &queued {
            if state == "RUNNING" && left.contains(&i) && started.insert(i) {
                println!("running {} (task {job}_{i})", plan.runs[i].id);
                changed = true;
            }
        }
        let gone: Vec<usize> = left
            .iter()
            .filter(|i| !queued.contains_key(i))
            .copied()
            .collect();
        for i in gone {
            left.remove(&i);
            ended += 1;
            changed = true;
            let run = &plan.runs[i];
            match task_outcome(plan, run, job, i) {
                TaskEnd::Trained(secs) => {
                    outcome.finished += 1;
                    println!(
                        "[{ended}/{total}] done {} in {secs} s: {}",
                        run.id,
                        local::final_line(run)
                    );
                }
                TaskEnd::AlreadyDone => {
                    outcome.skipped += 1;
                    println!("[{ended}/{total}] {} was already finished", run.id);
                }
                TaskEnd::Failed { error, log } => {
                    outcome.fail(&format!("[{ended}/{total}]"), run, error, &log)
                }
            }
        }
        if left.is_empty() {
            break;
        }
        pause = if changed {
            POLL.0
        } else {
            (pause * 2).min(POLL.1)
        };
        std::thread::sleep(pause);
    }
    Ok(outcome)
}

/// How an array task ended, for its run.
enum TaskEnd {
    /// It trained the run to the end, in this many seconds.
    Trained(u64),
    /// The run was finished before the task started.
    AlreadyDone,
    /// It failed, or ended without finishing the run.
    Failed {
        /// Why.
        error: String,
        /// Where its output went.
        log: PathBuf,
    },
}

/// The outcome of task `index` of `job`: from the run's state file when this task wrote it,
/// else from Slurm's account of the task.
fn task_outcome(plan: &Plan, run: &PlannedRun, job: &str, index: usize) -> TaskEnd {
    let task = format!("{job}_{index}");
    let mut log = plan.state_dir().join(format!("slurm-{task}.out"));
    // A shared file system may show the task's last write a moment late.
    for attempt in 0..3 {
        let state = status::read_state(plan, run).filter(|s| s.slurm_job.as_deref() == Some(&task));
        match (status::status(plan, run), state) {
            (RunStatus::Done, Some(s)) => {
                return TaskEnd::Trained(s.finished.unwrap_or(s.started).saturating_sub(s.started))
            }
            (RunStatus::Done, None) => return TaskEnd::AlreadyDone,
            (RunStatus::Failed(error), Some(_)) => return TaskEnd::Failed { error, log },
            _ if attempt < 2 => std::thread::sleep(Duration::from_secs(1)),
            _ => {}
        }
    }
    let account = match slurm_account(job, index) {
        Some(fields) => {
            if let Some(out) = fields.get("StdOut") {
                log = PathBuf::from(out);
            }
            let get = |k: &str| fields.get(k).map(String::as_str).unwrap_or("?");
            format!(
                "Slurm: JobState={} ExitCode={} Reason={}",
                get("JobState"),
                get("ExitCode"),
                get("Reason")
            )
        }
        None => "Slurm no longer knows the task".to_string(),
    };
    let resumable = match status::status(plan, run) {
        RunStatus::Interrupted => "; it resumes from its snapshot when submitted again",
        _ => "",
    };
    TaskEnd::Failed {
        error: format!("task {task} ended without finishing the run ({account}){resumable}"),
        log,
    }
}

/// `scontrol show job -o JOB`'s fields for array task `index` (kept `MinJobAge` after its end).
fn slurm_account(job: &str, index: usize) -> Option<BTreeMap<String, String>> {
    let out = Command::new("scontrol")
        .args(["show", "job", "-o", job])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let wanted = format!("ArrayTaskId={index}");
    text.lines()
        .find(|l| l.split_whitespace().any(|f| f == wanted))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|f| f.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
}
