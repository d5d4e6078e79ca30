//! The `rnnlab` command line: assembles a pipeline from its config through a [`Registry`] and runs
//! it. The commands and their arguments live here; the work is done by the libraries beside it:
//! `rnnlab-pipeline` (config, training), `rnnlab-analysis` (diagnose, reports) and
//! `rnnlab-bench` (`rnnlab bench`), re-exported as [`config`], [`train`](mod@train),
//! [`diagnose`], [`report`], [`bench`], ... A downstream binary adds its own plugins and calls
//! [`run`]:
//!
//! ```no_run
//! let mut r = rnnlab_cli::registry();
//! // my_cells::register(&mut r);
//! std::process::exit(rnnlab_cli::run(r));
//! ```
#![warn(missing_docs)]

pub mod data_cmd;
pub mod eval;
pub mod list;
pub mod predict;
pub mod sweep;
mod sweep_cmd;
pub mod watch;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use rnnlab_core::Registry;

// Assembling and training a pipeline: `rnnlab-pipeline`, re-exported at the paths it had here.
pub use rnnlab_pipeline::{config, interrupt, registry, run_dir, train};
pub use rnnlab_pipeline::{load, PipelineConfig, RunSummary, Source, TrainOptions};
// Diagnose, the reports and the end-of-run summary: `rnnlab-analysis`, at their old paths too.
pub use rnnlab_analysis::{diagnose, report, summary};
// `rnnlab bench`'s measurements: `rnnlab-bench`.
pub use rnnlab_bench as bench;

/// rnnlab: train recurrent text classifiers and find out why their training is unstable.
///
/// Bare `rnnlab` (or `rnnlab data`, `rnnlab bench`) prints the help to stderr and exits with 2,
/// as a missing argument does (clap's `arg_required_else_help`).
#[derive(Parser, Debug)]
#[command(name = "rnnlab", version, about, arg_required_else_help = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a pipeline and write a run folder (without PIPELINE: the embedded demo).
    Train {
        /// The pipeline file (TOML).
        pipeline: Option<PathBuf>,
        /// Override a key, the value parsed as TOML: `--set train.epochs=3`,
        /// `--set optim.transforms.0.max_norm=1.0`. Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// The run folder (default: runs/<pipeline>-<UTC time>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// CPU threads (overrides train.threads).
        #[arg(long)]
        threads: Option<usize>,
        /// Continue the run folder RUN from its last snapshot (weights, optimizer, scheduler,
        /// callbacks and random state), appending to its metrics.
        #[arg(long, value_name = "RUN", conflicts_with_all = ["pipeline", "out"])]
        resume: Option<PathBuf>,
    },
    /// List every registered plugin with its parameters and defaults.
    List,
    /// Predict the label and class probabilities of texts with a trained run (texts from the
    /// arguments, or one per line from stdin).
    Predict {
        /// The run folder.
        run: PathBuf,
        /// The texts; none: read stdin.
        texts: Vec<String>,
        /// Which checkpoint: best or last.
        #[arg(long, default_value = "best", value_parser = ["best", "last"])]
        checkpoint: String,
    },
    /// Evaluate a trained run on a data file, read with the run's own reader, tokenizer and
    /// labels: accuracy, loss, per-class precision / recall / F1, predicted beside true class
    /// shares, and the confusion matrix.
    Eval {
        /// The run folder.
        run: PathBuf,
        /// The data file (in the run's format unless --reader / --set say otherwise).
        data: PathBuf,
        /// Which checkpoint: best or last.
        #[arg(long, default_value = "best", value_parser = ["best", "last"])]
        checkpoint: String,
        /// Read the file with this reader (tsv, csv, jsonl, sst-trees) instead of the run's.
        #[arg(long, alias = "format", value_name = "READER")]
        reader: Option<String>,
        /// Change how the file is read: `--set text=Phrase`, `--set header=false`, `--set
        /// label=1` (keys: type, text, label, header, delimiter, quoting, phrases,
        /// skip_bad_rows, eval_batch_size). Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compare runs: a Markdown table (final and best accuracy, swings, gradient norms, spectral
    /// radius, seconds per epoch); with --out, figures overlaying the runs; with --html, one
    /// self-contained report.html.
    Report {
        /// Run folders (each with a metrics.jsonl).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Write report.md and plots/ here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write report.html here: the table, the curves and confusion matrices as inline SVG,
        /// each run's diagnosis and the config differences (no external files, no network).
        #[arg(long, value_name = "DIR")]
        html: Option<PathBuf>,
        /// K: the last epochs the swing and std (and in --html, diagnose) look at.
        #[arg(long, default_value_t = 10)]
        window: usize,
    },
    /// Run a sweep (a base pipeline × variants × seeds, each an ordinary run folder), or look
    /// at one: `rnnlab sweep SWEEP.toml [--jobs N]`, `rnnlab sweep status SWEEP.toml`,
    /// `rnnlab sweep report SWEEP.toml [--out DIR]`, `rnnlab sweep eval SWEEP.toml DATA --name N`.
    Sweep(sweep_cmd::SweepArgs),
    /// Which causes of unstable training hold for a run, with evidence, and the fixes in order.
    Diagnose {
        /// The run folder.
        run: PathBuf,
        /// A threshold, `--set explode=20` (keys: warn, explode, explode_share, radius, window,
        /// spikes, swing, drift, drift_tv, drift_acc_gap, drift_epochs, drift_se, collapse).
        /// Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// A TOML file whose `[diagnose]` table sets thresholds (before --set).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Follow a run folder live in the terminal: accuracy, loss, gradient norms, learning rate,
    /// predicted shares, progress and ETA (`q` quits). Without a terminal: a text snapshot.
    Watch {
        /// The run folder (it may not exist yet).
        run: PathBuf,
        /// Milliseconds between reads of the files.
        #[arg(long, default_value_t = 500)]
        interval_ms: u64,
        /// Print a plain-text snapshot and exit (also when stdout is not a terminal).
        #[arg(long)]
        once: bool,
    },
    /// Look at a pipeline's data (`rnnlab data inspect PIPELINE.toml`).
    #[command(arg_required_else_help = true)]
    Data {
        /// What to do.
        #[command(subcommand)]
        cmd: data_cmd::DataCommand,
    },
    /// Measurements: `rnnlab bench glove FILE`, `bench step`, `bench epoch` (with `--torch
    /// PYTHON`: side by side with PyTorch).
    #[command(arg_required_else_help = true)]
    Bench {
        /// What to measure.
        #[command(subcommand)]
        cmd: bench::BenchCommand,
    },
    /// Download a data set or vectors into the Hugging Face hub cache (feature `hub`).
    #[cfg(feature = "hub")]
    Fetch {
        /// The catalogue name: glove-6b-50d, glove-6b-100d, glove-6b-300d, sst5.
        name: String,
    },
}

/// Parses `args` (program name first) and runs the command. A command line clap rejects (or
/// `--help`, `--version`) is returned as the [`clap::Error`], which [`run`] prints as clap does.
pub fn run_args<I, S>(registry: &Registry, args: I) -> Result<()>
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    match cli.command {
        Command::Train {
            pipeline,
            sets,
            out,
            threads,
            resume,
        } => {
            let opts = TrainOptions {
                pipeline,
                sets,
                out,
                threads,
                progress: true,
                resume,
            };
            let summary = train(registry, &opts)?;
            let bold = use_colour(
                std::io::IsTerminal::is_terminal(&std::io::stdout()),
                std::env::var_os("NO_COLOR").as_deref(),
            );
            print!("{}", summary::render(&summary, bold));
            Ok(())
        }
        Command::List => {
            print!("{}", list::render(registry));
            Ok(())
        }
        Command::Report {
            runs,
            out,
            html,
            window,
        } => {
            print!("{}", report::run(&runs, out.as_deref(), window)?);
            if let Some(dir) = html {
                let path = report::html::write(&runs, &dir, window)?;
                println!("\nwrote {}", path.display());
            }
            Ok(())
        }
        Command::Diagnose { run, sets, config } => {
            let t = diagnose::Thresholds::load(config.as_deref(), &sets)?;
            print!("{}", diagnose::diagnose(&run, &t)?.to_markdown());
            Ok(())
        }
        Command::Predict {
            run,
            texts,
            checkpoint,
        } => predict::run(registry, &run, texts, &checkpoint),
        Command::Eval {
            run,
            data,
            checkpoint,
            reader,
            sets,
            json,
        } => {
            let opts = eval::EvalOptions {
                checkpoint,
                reader,
                sets,
            };
            eval::run(registry, &run, &data, &opts, json)
        }
        Command::Sweep(args) => sweep_cmd::run(registry, args),
        Command::Watch {
            run,
            interval_ms,
            once,
        } => watch::run(&run, std::time::Duration::from_millis(interval_ms), once),
        Command::Data { cmd } => data_cmd::run(registry, cmd),
        Command::Bench { cmd } => bench::run(registry, cmd),
        #[cfg(feature = "hub")]
        Command::Fetch { name } => data_cmd::fetch(&name),
    }
}

/// Runs the command line of this process with `registry`; returns the exit code: 0, 1 for a
/// failed command (`error: ...` on stderr), or clap's code for the command line itself (0 for
/// `--help` and `--version`, 2 for a usage error or a missing subcommand, whose help it prints).
pub fn run(registry: Registry) -> i32 {
    let candle_threads = candle_threads_from_env();
    init_tracing();
    if let Err(e) = candle_threads {
        tracing::warn!("could not restart with CANDLE_NUM_THREADS=1 ({e}): candle's element-wise ops use all cores");
    }
    match run_args(&registry, std::env::args_os()) {
        Ok(()) => 0,
        Err(e) if e.downcast_ref::<interrupt::Interrupted>().is_some() => {
            eprintln!("{e}");
            interrupt::EXIT_INTERRUPTED
        }
        Err(e) => match e.downcast_ref::<clap::Error>() {
            Some(clap_error) => {
                let _ = clap_error.print();
                clap_error.exit_code()
            }
            None => {
                eprintln!("error: {}", error_text(&e));
                1
            }
        },
    }
}

/// Candle runs its element-wise ops in a pool it sizes once, from the `CANDLE_NUM_THREADS`
/// environment variable (default: all cores). That pool spin-waits after every op, which costs
/// more than it gains on rnnlab's tensors and takes a core from the fused kernels (measured with
/// `rnnlab bench step`: twice the CPU time for the same step). So when the variable is unset the
/// binary starts itself again (`execve`) with `CANDLE_NUM_THREADS=1` in the new program's
/// environment; this process's environment is never changed. Returns only when it does not
/// restart: the variable is set (by the user, or by the restart), or the restart failed.
fn candle_threads_from_env() -> std::io::Result<()> {
    if std::env::var_os("CANDLE_NUM_THREADS").is_some() {
        return Ok(());
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let exe = std::env::current_exe()?;
        let mut args = std::env::args_os();
        let mut cmd = std::process::Command::new(exe);
        if let Some(arg0) = args.next() {
            cmd.arg0(arg0);
        }
        // `exec` returns only on failure.
        Err(cmd.args(args).env("CANDLE_NUM_THREADS", "1").exec())
    }
    #[cfg(not(unix))]
    Ok(())
}

/// An error and its causes as one line (`context: cause: ...`), leaving out a cause whose text
/// the message before it already ends with (a library error that prints its source).
pub fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain().map(|c| c.to_string()) {
        if out.is_empty() {
            out = cause;
        } else if !out.ends_with(&cause) {
            out.push_str(": ");
            out.push_str(&cause);
        }
    }
    out
}

/// Whether log lines get ANSI colours: only on a terminal, and never with `NO_COLOR` set to a
/// non-empty value (<https://no-color.org>).
pub fn use_colour(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Logs through `tracing` to stderr; `RUST_LOG` sets the level (default `info`). Colours only
/// when stderr is a terminal and `NO_COLOR` is not set.
pub fn init_tracing() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // No colour codes in log files (the sweep launchers' logs, Slurm's output files).
        .with_ansi(colour)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use bench::BenchCommand;

    #[test]
    fn bench_options_parse_from_the_command_line() {
        use clap::Parser;
        let cli = crate::Cli::try_parse_from([
            "rnnlab",
            "bench",
            "step",
            "--cells",
            "lstm, gru",
            "--kernels",
            "fused",
            "--iters",
            "7",
        ])
        .unwrap();
        let crate::Command::Bench {
            cmd: BenchCommand::Step(o),
        } = cli.command
        else {
            panic!("not bench step: {:?}", cli.command);
        };
        assert_eq!(o.cells, ["lstm", "gru"]);
        assert_eq!(o.kernels, ["fused"]);
        assert_eq!((o.iters, o.batch, o.steps, o.real_steps), (7, 64, 32, 100));

        let cli = crate::Cli::try_parse_from([
            "rnnlab", "bench", "epoch", "--seeds", "3", "--set", "a=1", "--set", "b=2",
        ])
        .unwrap();
        let crate::Command::Bench {
            cmd: BenchCommand::Epoch(o),
        } = cli.command
        else {
            panic!("not bench epoch: {:?}", cli.command);
        };
        assert_eq!(o.cells, ["rnn", "lstm", "gru"]);
        assert_eq!((o.seeds, o.first_seed, o.epochs), (3, 42, 3));
        assert_eq!(o.sets, ["a=1", "b=2"]);
        assert_eq!(o.kernel, "fused");
        let e = crate::Cli::try_parse_from(["rnnlab", "bench", "step", "--cells", ","]);
        assert!(e.is_err());
    }
}
