//! `rnnlab bench callbacks`: what the default callbacks (`train.default_callbacks`) cost. The
//! real-task pipeline of a cell trains with its callbacks cleared, once with the defaults and once
//! without, alternating, in child processes of this binary: the training seconds of epochs 2..E
//! (the per-step monitors and TensorBoard's writes are inside them) and each whole process's
//! seconds (the spectra, the plots at the end).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::{child, epoch, median};
use rnnlab_pipeline::config;

/// What `rnnlab bench callbacks` runs.
#[derive(Clone, Debug, clap::Args)]
pub struct CallbacksOptions {
    /// The cell of pipelines/rt-CELL.toml: rnn, lstm, gru or cnn.
    #[arg(long, default_value = "rnn")]
    pub cell: String,
    /// Epochs per run (the time is the mean of epochs 2..E).
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Pairs of runs (with, without), alternating. Fewer than about 7 leave the median at the
    /// mercy of a shared machine's noise (3 pairs gave +4.95 % where 7 gave +1.35 %).
    #[arg(long, default_value_t = 7)]
    pub reps: usize,
    /// CPU threads of each run.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

/// One run: mean training seconds of epochs 2..E, and the whole process's seconds.
#[derive(Clone, Copy, Debug)]
struct Run {
    epoch: f64,
    process: f64,
}

fn run(o: &CallbacksOptions, defaults: bool, rep: usize, dir: &Path) -> Result<Run> {
    let exe = std::env::current_exe().context("finding this program (current_exe)")?;
    let pipeline = config::workspace_root().join(format!("pipelines/rt-{}.toml", o.cell));
    if !pipeline.is_file() {
        bail!("{}: no such pipeline", pipeline.display());
    }
    let label = format!(
        "{}-{}-{rep}",
        o.cell,
        if defaults { "with" } else { "without" }
    );
    let out = dir.join(&label);
    let mut c = Command::new(exe);
    c.arg("train").arg(&pipeline);
    for s in [
        "callbacks=[]".to_string(),
        format!("train.default_callbacks={defaults}"),
        format!("train.epochs={}", o.epochs),
        "train.progress=false".into(),
    ] {
        c.arg("--set").arg(s);
    }
    c.arg("--out")
        .arg(&out)
        .arg("--threads")
        .arg(o.threads.to_string());
    let child = child::run_measured(&mut c, dir, &label)?;
    child.check()?;
    let history = rnnlab_core::read_metrics(&out.join(rnnlab_core::METRICS_FILE))?;
    let secs: Vec<f64> = history
        .iter()
        .filter_map(|m| m.get("epoch_seconds"))
        .collect();
    Ok(Run {
        epoch: epoch::mean(epoch::timed(&secs)),
        process: child.seconds,
    })
}

/// Runs the pairs and prints the medians and the cost.
pub fn bench_callbacks(o: &CallbacksOptions) -> Result<String> {
    if o.epochs < 2 || o.reps == 0 || o.threads == 0 {
        bail!("--epochs must be at least 2, --reps and --threads positive");
    }
    let tmp = tempfile::tempdir().context("creating a temporary folder")?;
    let mut with = Vec::new();
    let mut without = Vec::new();
    let mut notes: Vec<String> = super::load_note("before the run").into_iter().collect();
    for rep in 0..o.reps {
        tracing::info!("bench callbacks: pair {} of {}", rep + 1, o.reps);
        without.push(run(o, false, rep, tmp.path())?);
        with.push(run(o, true, rep, tmp.path())?);
    }
    notes.extend(super::load_note("after the run"));
    let med = |v: &[Run], f: fn(&Run) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
    let (e0, e1) = (med(&without, |r| r.epoch), med(&with, |r| r.epoch));
    let (p0, p1) = (med(&without, |r| r.process), med(&with, |r| r.process));
    let cost = 100.0 * (e1 / e0 - 1.0);
    let mut s = format!(
        "# default callbacks: pipelines/rt-{}.toml, {} epochs, {} thread(s), {} pairs (medians)\n\n\
         | | epoch seconds (2..E) | process seconds |\n| --- | ---: | ---: |\n\
         | without (train.default_callbacks=false) | {e0:.3} | {p0:.2} |\n\
         | with the defaults | {e1:.3} | {p1:.2} |\n\n\
         cost per epoch: {cost:+.2} % (target < 3 %: {}); per run: {:+.2} s\n",
        o.cell,
        o.epochs,
        o.threads,
        o.reps,
        if cost < 3.0 { "met" } else { "not met" },
        p1 - p0
    );
    for n in notes {
        s.push_str(&format!("\nnote: {n}"));
    }
    s.push('\n');
    Ok(s)
}
