//! `rnnlab bench ...`: measurements that do not belong in the test suite.
//!
//! `rnnlab bench glove FILE`: the project's loader against `gzip -dc FILE > /dev/null`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

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
}

/// Runs a `bench` subcommand, printing to stdout.
pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Glove { file, reps } => {
            let r = bench_glove(&file, reps)?;
            print!("{}", r.render());
            Ok(())
        }
    }
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

fn median(v: &[f64]) -> f64 {
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
