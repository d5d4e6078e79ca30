//! The Slurm launcher: one job array, one array task per unfinished run; each task runs
//! `rnnlab sweep exec SWEEP --index $SLURM_ARRAY_TASK_ID`, the code path of the local launcher.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::status::{self, RunStatus};
use super::Plan;

/// `[slurm]` of a sweep file; `rnnlab sweep --launcher slurm` flags override each key.
#[derive(Clone, Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SlurmSettings {
    /// `--partition` (default: the cluster's default partition).
    #[serde(default)]
    pub partition: Option<String>,
    /// `--cpus-per-task` (default 2); also each run's threads.
    #[serde(default)]
    pub cpus_per_task: Option<usize>,
    /// `--mem`, e.g. `4G` (default 4G).
    #[serde(default)]
    pub mem: Option<String>,
    /// `--time`, e.g. `04:00:00` (default 04:00:00).
    #[serde(default)]
    pub time: Option<String>,
    /// At most this many array tasks at once (`--array=...%N`).
    #[serde(default)]
    pub max_parallel: Option<usize>,
    /// More `#SBATCH` lines, e.g. `--qos=normal` or `#SBATCH --account=x`.
    #[serde(default)]
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

/// The job-array script for the runs `indices` of `plan`, run by `exe`.
pub fn script(plan: &Plan, settings: &SlurmSettings, indices: &[usize], exe: &Path) -> String {
    let cpus = settings.cpus_per_task.unwrap_or(2);
    let abs = |p: &Path| -> PathBuf { std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()) };
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
        abs(&plan.state_dir()).join("slurm-%A_%a.out").display()
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
    let _ = writeln!(
        s,
        "exec {} sweep exec {} --index \"$SLURM_ARRAY_TASK_ID\" --threads \"${{SLURM_CPUS_PER_TASK:-{cpus}}}\"",
        shell_quote(&abs(exe).display().to_string()),
        shell_quote(&abs(&plan.file).display().to_string()),
    );
    s
}

/// Writes the script of the unfinished runs and submits it with `sbatch` (with `wait`, blocks
/// until the array ends, as `sbatch --wait`); with `dry_run`, returns the script unsubmitted.
/// Returns the script and the job id.
pub fn launch(
    plan: &Plan,
    settings: &SlurmSettings,
    dry_run: bool,
    wait: bool,
) -> Result<(String, Option<String>)> {
    let indices = unfinished(plan);
    let exe = std::env::current_exe().context("finding the rnnlab executable")?;
    let text = script(plan, settings, &indices, &exe);
    if dry_run {
        return Ok((text, None));
    }
    if indices.is_empty() {
        println!("every run of {} is finished", plan.file.display());
        return Ok((text, None));
    }
    let dir = plan.state_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("slurm-array.sh");
    rnnlab_core::write_atomic(&path, text.as_bytes())?;
    let mut cmd = Command::new("sbatch");
    cmd.arg("--parsable");
    if wait {
        cmd.arg("--wait");
    }
    let out = cmd
        .arg(&path)
        .output()
        .context("running sbatch (is Slurm installed and on PATH?)")?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // With --wait, sbatch exits with the array's worst task status after printing the id.
    let submitted = out.status.success() || (wait && !stdout.is_empty());
    if !submitted {
        bail!(
            "sbatch {} failed ({}): {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let job = stdout.split(';').next().unwrap_or_default().to_string();
    println!(
        "submitted job array {job} ({} runs) from {}",
        indices.len(),
        path.display()
    );
    Ok((text, Some(job)))
}
