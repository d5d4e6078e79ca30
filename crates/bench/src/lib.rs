//! rnnlab benchmarks, `rnnlab bench ...`: measurements that do not belong in the test suite. The
//! command line parses a [`BenchCommand`] (its options are clap `Args`) and calls [`run`].
//!
//! - `rnnlab bench glove FILE`: the project's loader against `gzip -dc FILE > /dev/null`.
//! - `rnnlab bench step`: one training step at batch 64 × 32 steps per cell, fused and reference
//!   kernels, GFLOP/s of the recurrent layer, tokens per second; with `--torch PYTHON` the same
//!   from PyTorch and the ratios ([`step`]).
//! - `rnnlab bench epoch`: epochs of the real task against `torch_reference.py`: time, accuracy,
//!   peak memory ([`epoch`]).
//! - `rnnlab bench callbacks`: what the default callbacks cost per epoch ([`callbacks`]).
#![warn(missing_docs)]

pub mod callbacks;
pub mod child;
pub mod epoch;
pub mod step;
pub mod torch;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use rnnlab_core::Registry;

pub(crate) fn split_list(s: &str) -> Result<Vec<String>, String> {
    let v: Vec<String> = s
        .split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect();
    if v.is_empty() {
        Err("give at least one value".into())
    } else {
        Ok(v)
    }
}

/// `rnnlab bench ...`.
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Load a GloVe / word2vec text file (plain or gzip) in full with rnnlab's loader (every row,
    /// every value parsed) and, in turn, decompress it with `gzip -dc FILE > /dev/null`; print
    /// both times and their ratio (target ≤ 1.5×).
    Glove {
        /// The vectors file (`.txt` or `.txt.gz`).
        file: PathBuf,
        /// Repetitions of each.
        #[arg(long, default_value_t = 3)]
        reps: usize,
    },
    /// Time one full training step (embedding 16000×50 → cell 50→128 → linear 128→5 →
    /// cross-entropy → backward → clip 5 → Adam) through rnnlab's trainer, per cell and kernel,
    /// with the recurrent layer's GFLOP/s and tokens per second; with --torch, the same from
    /// PyTorch and the ratios; then per-step times on the real data's padded random batches
    /// beside torch_reference.py.
    Step(step::StepOptions),
    /// Train epochs of the real task (pipelines/rt-CELL.toml on the peer's random 80/20 split)
    /// as a child process and, with --torch, torch_reference.py: seconds of epochs 2..E, test
    /// accuracy after E (mean over seeds), peak resident memory, and the ratios.
    Epoch(epoch::EpochOptions),
    /// What the default callbacks cost: the real-task pipeline of a cell with its callbacks
    /// cleared, with and without `train.default_callbacks`, alternating; training seconds of
    /// epochs 2..E and whole-process seconds, medians, and the cost per epoch (target < 3 %).
    Callbacks(callbacks::CallbacksOptions),
}

/// Runs a `bench` subcommand with the plugins of `registry`, printing to stdout.
pub fn run(registry: &Registry, cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Glove { file, reps } => {
            let r = bench_glove(&file, reps)?;
            print!("{}", r.render());
            Ok(())
        }
        BenchCommand::Step(o) => {
            print!("{}", step::bench_step(registry, &o)?.render());
            Ok(())
        }
        BenchCommand::Epoch(o) => {
            print!("{}", epoch::bench_epoch(&o)?.render());
            Ok(())
        }
        BenchCommand::Callbacks(o) => {
            print!("{}", callbacks::bench_callbacks(&o)?);
            Ok(())
        }
    }
}

/// `a / b`, when both are finite and `b` is positive.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (a.is_finite() && b.is_finite() && b > 0.0).then(|| a / b)
}

/// The 1-minute load average against the cores (from `/proc/loadavg`), as a note: timings on a
/// machine already busy with other work are not comparable. Read before the bench starts (its own
/// threads count in the average afterwards). None where `/proc/loadavg` is unreadable.
pub fn load_note(when: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let load = parse_loadavg(&text)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let warn = if load > 0.5 * cores as f64 {
        " (other work is running: the timings are not reliable)"
    } else {
        ""
    };
    Some(format!(
        "load average {load:.2} on {cores} core(s) {when}{warn}."
    ))
}

/// The 1-minute load average: the first field of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

/// Times of `rnnlab bench glove`.
#[derive(Clone, Debug)]
pub struct GloveBench {
    /// The file.
    pub file: PathBuf,
    /// Rows and width loaded.
    pub rows: usize,
    /// Vector width.
    pub dim: usize,
    /// Seconds of each load with rnnlab's loader.
    pub loader: Vec<f64>,
    /// Seconds of each `gzip -dc FILE > /dev/null`.
    pub gzip: Vec<f64>,
}

/// The median (the upper one of an even count); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

impl GloveBench {
    /// Median loader time over median gzip time.
    pub fn ratio(&self) -> f64 {
        median(&self.loader) / median(&self.gzip)
    }

    /// The printed summary.
    pub fn render(&self) -> String {
        let fmt = |v: &[f64]| {
            v.iter()
                .map(|s| format!("{s:.3}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        format!(
            "file: {}\nrnnlab loader (full file: {} rows × {}, every value parsed): median {:.3} s (runs: {})\n\
             gzip -dc > /dev/null: median {:.3} s (runs: {})\nratio loader / gzip: {:.2}× (target ≤ 1.5×)\n",
            self.file.display(),
            self.rows,
            self.dim,
            median(&self.loader),
            fmt(&self.loader),
            median(&self.gzip),
            fmt(&self.gzip),
            self.ratio()
        )
    }
}

fn gzip_once(file: &Path) -> Result<f64> {
    let start = Instant::now();
    let status = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(file)
        .stdout(std::process::Stdio::null())
        .status()
        .context("running gzip -dc (is gzip installed?)")?;
    if !status.success() {
        bail!("gzip -dc {} failed: {status}", file.display());
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Alternates `reps` full loads with `reps` runs of `gzip -dc FILE > /dev/null`.
pub fn bench_glove(file: &Path, reps: usize) -> Result<GloveBench> {
    if !file.is_file() {
        bail!("{}: no such file", file.display());
    }
    let mut b = GloveBench {
        file: file.to_path_buf(),
        rows: 0,
        dim: 0,
        loader: Vec::new(),
        gzip: Vec::new(),
    };
    for _ in 0..reps.max(1) {
        b.gzip.push(gzip_once(file)?);
        let start = Instant::now();
        let all = rnnlab_data::glove::load_all(file, None)?;
        b.loader.push(start.elapsed().as_secs_f64());
        b.rows = all.words.len();
        b.dim = all.dim;
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn median_and_ratio() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 3.0);
        assert!(median(&[]).is_nan());
        assert_eq!(ratio(3.0, 4.0), Some(0.75));
        assert_eq!(ratio(3.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
        assert_eq!(parse_loadavg("4.53 4.10 3.97 3/412 19278\n"), Some(4.53));
        assert_eq!(parse_loadavg(""), None);
    }

    #[test]
    fn bench_runs_on_a_small_gzip_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.txt.gz");
        let f = std::fs::File::create(&path).unwrap();
        let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        for i in 0..1000 {
            writeln!(gz, "w{i} 0.1 -0.2 {i}").unwrap();
        }
        gz.finish().unwrap();
        let b = bench_glove(&path, 2).unwrap();
        assert_eq!((b.rows, b.dim), (1000, 3));
        assert_eq!((b.loader.len(), b.gzip.len()), (2, 2));
        assert!(b.render().contains("ratio loader / gzip"));
    }
}
