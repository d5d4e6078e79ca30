//! `rnnlab sweep eval`: every finished run's checkpoint evaluated on another data file, as
//! `rnnlab eval` does it, kept in the run folder as `evals/<name>.json` (the eval report as JSON);
//! `rnnlab sweep report` shows each name as a column. Made for a held-out test set, e.g. SST's
//! test sentences for runs trained on the Kaggle phrases.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rnnlab_core::Registry;

use super::status::{self, RunStatus};
use super::{Plan, PlannedRun};
use crate::eval::{evaluate_file, EvalOptions};
pub use rnnlab_analysis::sweep_report::EVALS_DIR;

/// What `rnnlab sweep eval` was asked to do.
#[derive(Clone, Debug)]
pub struct SweepEvalOptions {
    /// The evaluation's name: the file stem under `evals/` and the report's column.
    pub name: String,
    /// The data file.
    pub data: PathBuf,
    /// Checkpoint, reader and read options, as `rnnlab eval`.
    pub eval: EvalOptions,
    /// Evaluate again runs that already have `evals/<name>.json`.
    pub force: bool,
}

/// What happened to one run.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Evaluated now: accuracy in percent.
    Evaluated(f64),
    /// It had `evals/<name>.json` already.
    Kept,
    /// Not evaluated, and why.
    Skipped(String),
}

/// Checks that `name` can be a file stem and a column: letters, digits, `-`, `_`, `.`.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        bail!("--name {name:?}: use letters, digits, `-`, `_` and `.` (it names evals/<name>.json and the report's column)");
    }
    Ok(())
}

/// `evals/<name>.json` of `run`.
pub fn eval_file(run: &Path, name: &str) -> PathBuf {
    run.join(EVALS_DIR).join(format!("{name}.json"))
}

fn evaluate_run(
    registry: &Registry,
    plan: &Plan,
    run: &PlannedRun,
    opts: &SweepEvalOptions,
) -> Result<Outcome> {
    match status::status(plan, run) {
        RunStatus::Done => {}
        other => return Ok(Outcome::Skipped(format!("{} (not finished)", other.word()))),
    }
    let file = eval_file(&run.dir, &opts.name);
    if file.is_file() && !opts.force {
        return Ok(Outcome::Kept);
    }
    if !crate::predict::checkpoint_path(&run.dir, &opts.eval.checkpoint).is_file() {
        return Ok(Outcome::Skipped(format!(
            "no checkpoints/{}.safetensors (train the run again with the same seed to get it back)",
            opts.eval.checkpoint
        )));
    }
    let report = evaluate_file(registry, &run.dir, &opts.data, &opts.eval)
        .with_context(|| format!("evaluating {}", run.id))?;
    let mut json = report.to_json();
    json["name"] = opts.name.clone().into();
    json["run"] = run.id.clone().into();
    json["data"] = portable(&opts.data).into();
    let dir = run.dir.join(EVALS_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = serde_json::to_string_pretty(&json)? + "\n";
    rnnlab_core::write_atomic(&file, text.as_bytes())?;
    Ok(Outcome::Evaluated(report.accuracy()))
}

/// `data` as a pipeline would write it: below `$RNNLAB_DATA`, as `${RNNLAB_DATA}/...`, so a
/// report kept in a repository names no machine's folders.
fn portable(data: &Path) -> String {
    if let Some(root) = std::env::var_os("RNNLAB_DATA") {
        if let Ok(rest) = data.strip_prefix(&root) {
            return format!("${{RNNLAB_DATA}}/{}", rest.display());
        }
    }
    data.display().to_string()
}

/// Evaluates every run of `plan`, printing a line per run; stops at the first run whose
/// evaluation fails (a bad data file fails for every run alike). Returns each run's outcome.
pub fn run(
    registry: &Registry,
    plan: &Plan,
    opts: &SweepEvalOptions,
) -> Result<Vec<(String, Outcome)>> {
    check_name(&opts.name)?;
    if !opts.data.is_file() {
        bail!("{}: no such data file", opts.data.display());
    }
    let width = plan.runs.iter().map(|r| r.id.len()).max().unwrap_or(0);
    let mut out = Vec::new();
    for r in &plan.runs {
        let outcome = evaluate_run(registry, plan, r, opts)?;
        let line = match &outcome {
            Outcome::Evaluated(acc) => format!("accuracy {acc:.2} %"),
            Outcome::Kept => format!("kept {}", eval_file(Path::new(""), &opts.name).display()),
            Outcome::Skipped(why) => format!("skipped: {why}"),
        };
        println!("  {:<width$}  {line}", r.id);
        out.push((r.id.clone(), outcome));
    }
    let count = |f: fn(&Outcome) -> bool| out.iter().filter(|(_, o)| f(o)).count();
    println!(
        "{} runs: {} evaluated, {} kept, {} skipped",
        out.len(),
        count(|o| matches!(o, Outcome::Evaluated(_))),
        count(|o| matches!(o, Outcome::Kept)),
        count(|o| matches!(o, Outcome::Skipped(_)))
    );
    Ok(out)
}
