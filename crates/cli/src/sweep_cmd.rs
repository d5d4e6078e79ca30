//! The `rnnlab sweep` command line.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use rnnlab_core::Registry;

use crate::eval::EvalOptions;
use crate::sweep::{self, evaluate, exec, local, report, slurm, status};

/// `rnnlab sweep`: run a sweep file, or one of the subcommands.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SweepArgs {
    /// What to do with a sweep (none: run it).
    #[command(subcommand)]
    pub cmd: Option<SweepCommand>,
    /// Run it (as `rnnlab sweep run`).
    #[command(flatten)]
    pub run: RunArgs,
}

/// `rnnlab sweep run` (the default).
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The sweep file (TOML).
    pub file: Option<PathBuf>,
    /// Where the runs run.
    #[arg(long, value_enum, default_value_t = Launcher::Local)]
    pub launcher: Launcher,
    /// Local: runs at a time (default: the sweep file's `jobs`, else 1).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Local: CPU threads shared by the runs (default: the file's `threads`, else all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Slurm: print the job script instead of submitting it.
    #[arg(long)]
    pub dry_run: bool,
    /// Slurm: wait until the job array ends, printing each run's outcome; exits 1 if one failed.
    #[arg(long)]
    pub wait: bool,
    /// Slurm: `--partition`.
    #[arg(long)]
    pub partition: Option<String>,
    /// Slurm: `--cpus-per-task` (also each run's threads).
    #[arg(long)]
    pub cpus_per_task: Option<usize>,
    /// Slurm: `--mem`, e.g. 4G.
    #[arg(long)]
    pub mem: Option<String>,
    /// Slurm: `--time`, e.g. 04:00:00.
    #[arg(long)]
    pub time: Option<String>,
    /// Slurm: an extra `#SBATCH` line, e.g. `--qos=normal`. Repeatable.
    #[arg(long = "sbatch", value_name = "LINE", allow_hyphen_values = true)]
    pub sbatch: Vec<String>,
}

/// Where a sweep's runs run.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launcher {
    /// On this machine, `--jobs` at a time.
    Local,
    /// As one Slurm job array (`sbatch`).
    Slurm,
}

/// The subcommands of `rnnlab sweep`.
#[derive(Subcommand, Debug)]
pub enum SweepCommand {
    /// Run the sweep: skip finished runs, resume started ones, start the rest.
    Run(RunArgs),
    /// Which runs are done, running, failed, interrupted or pending.
    Status {
        /// The sweep file.
        file: PathBuf,
    },
    /// One row per variant (mean ± std over seeds), as Markdown; with --out also CSV and figures.
    Report {
        /// The sweep file.
        file: PathBuf,
        /// Write sweep.md, sweep.csv and plots/ here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// K: the last epochs the swing and std look at (default: the file's `window`, else 10).
        #[arg(long)]
        window: Option<usize>,
    },
    /// Evaluate every finished run's checkpoint on a data file (as `rnnlab eval`), kept as
    /// `evals/<name>.json` in the run folder; the report shows it as a column.
    Eval {
        /// The sweep file.
        file: PathBuf,
        /// The data file (in the runs' format unless --reader / --set say otherwise).
        data: PathBuf,
        /// The evaluation's name: `evals/<name>.json` and the report's column.
        #[arg(long)]
        name: String,
        /// Which checkpoint: best or last.
        #[arg(long, default_value = "best", value_parser = ["best", "last"])]
        checkpoint: String,
        /// Read the file with this reader (tsv, csv, jsonl, sst-trees) instead of the run's.
        #[arg(long)]
        reader: Option<String>,
        /// Change how the file is read, as `rnnlab eval --set` (`text=sentence`). Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Evaluate again runs that have `evals/<name>.json` already.
        #[arg(long)]
        force: bool,
    },
    /// Run one run of the sweep in this process (what every launcher runs per run).
    #[command(hide = true)]
    Exec {
        /// The sweep file.
        file: PathBuf,
        /// The run's index in the sweep (the Slurm array task id).
        #[arg(long, conflicts_with = "run", required_unless_present = "run")]
        index: Option<usize>,
        /// The run's name, `<variant>/seed-<seed>`.
        #[arg(long)]
        run: Option<String>,
        /// CPU threads.
        #[arg(long)]
        threads: Option<usize>,
    },
}

/// Runs `rnnlab sweep ...`.
pub fn run(registry: &Registry, args: SweepArgs) -> Result<()> {
    match args.cmd {
        None => run_sweep(registry, args.run),
        Some(SweepCommand::Run(a)) => run_sweep(registry, a),
        Some(SweepCommand::Status { file }) => {
            let plan = sweep::load(registry, &file)?;
            print!("{}", status::render(&plan));
            Ok(())
        }
        Some(SweepCommand::Report { file, out, window }) => {
            let plan = sweep::load(registry, &file)?;
            let window = window.or(plan.sweep.window).unwrap_or(10);
            let runs = plan.report_runs();
            print!("{}", report::run(&runs, out.as_deref(), window)?);
            Ok(())
        }
        Some(SweepCommand::Eval {
            file,
            data,
            name,
            checkpoint,
            reader,
            sets,
            force,
        }) => {
            let plan = sweep::load(registry, &file)?;
            let opts = evaluate::SweepEvalOptions {
                name,
                data,
                eval: EvalOptions {
                    checkpoint,
                    reader,
                    sets,
                },
                force,
            };
            evaluate::run(registry, &plan, &opts)?;
            Ok(())
        }
        Some(SweepCommand::Exec {
            file,
            index,
            run,
            threads,
        }) => {
            let plan = sweep::load(registry, &file)?;
            let r = match (index, run) {
                (Some(i), _) => plan.runs.get(i).ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}: no run {i} (the sweep has {})",
                        file.display(),
                        plan.runs.len()
                    )
                })?,
                (None, Some(id)) => plan.run(&id)?,
                (None, None) => bail!("give --index or --run"),
            };
            match exec::exec(registry, &plan, r, threads)? {
                exec::Executed::Skipped => println!("{}: already finished", r.id),
                exec::Executed::Trained => println!("{}: finished", r.id),
            }
            Ok(())
        }
    }
}

fn run_sweep(registry: &Registry, a: RunArgs) -> Result<()> {
    let Some(file) = a.file else {
        bail!("give the sweep file: rnnlab sweep SWEEP.toml (see rnnlab sweep --help)");
    };
    // Every variant's whole pipeline is checked before the first run starts.
    let plan = sweep::load(registry, &file)?;
    match a.launcher {
        Launcher::Local => {
            let opts = local::LocalOptions {
                jobs: a.jobs.or(plan.sweep.jobs).unwrap_or(1),
                threads: a
                    .threads
                    .or(plan.sweep.threads)
                    .unwrap_or_else(sweep::cores),
            };
            let done = local::launch(&plan, &opts)?;
            local::conclude(&file, &done)
        }
        Launcher::Slurm => {
            let flags = slurm::SlurmSettings {
                partition: a.partition,
                cpus_per_task: a.cpus_per_task,
                mem: a.mem,
                time: a.time,
                max_parallel: None,
                extra: a.sbatch,
            };
            let settings = plan.sweep.slurm.overridden(&flags);
            match slurm::launch(&plan, &settings, a.dry_run, a.wait)? {
                slurm::Submission::DryRun(script) => print!("{script}"),
                slurm::Submission::Submitted {
                    waited: Some(done), ..
                } => local::conclude(&file, &done)?,
                _ => {}
            }
            Ok(())
        }
    }
}
