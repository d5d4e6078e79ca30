//! The `rnnlab` command line: assembles a pipeline from its config through a [`Registry`] and runs
//! it. A downstream binary adds its own plugins and calls [`run`]:
//!
//! ```no_run
//! let mut r = rnnlab_cli::registry();
//! // my_cells::register(&mut r);
//! std::process::exit(rnnlab_cli::run(r));
//! ```
#![warn(missing_docs)]

pub mod config;
pub mod list;
pub mod train;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use rnnlab_core::Registry;

pub use config::{load, PipelineConfig, Source};
pub use train::{train, RunSummary, TrainOptions};

/// Every built-in plugin: cells and models, transforms and schedulers, callbacks.
pub fn registry() -> Registry {
    let mut r = Registry::empty();
    rnnlab_models::register(&mut r);
    rnnlab_optim::register(&mut r);
    rnnlab_callbacks::register(&mut r);
    r
}

/// rnnlab: train recurrent text classifiers and find out why their training is unstable.
#[derive(Parser, Debug)]
#[command(name = "rnnlab", version, about)]
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
    },
    /// List every registered plugin with its parameters and defaults.
    List,
}

/// Parses `args` (program name first) and runs the command.
pub fn run_args<I, S>(registry: &Registry, args: I) -> Result<()>
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(args).map_err(|e| {
        // Help and version are not failures: print them and succeed.
        if matches!(
            e.kind(),
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
        ) {
            let _ = e.print();
            std::process::exit(0);
        }
        anyhow::anyhow!(e.render().to_string())
    })?;
    match cli.command {
        Command::Train {
            pipeline,
            sets,
            out,
            threads,
        } => {
            let opts = TrainOptions {
                pipeline,
                sets,
                out,
                threads,
                progress: true,
            };
            let summary = train(registry, &opts)?;
            println!("{}", summary.line());
            Ok(())
        }
        Command::List => {
            print!("{}", list::render(registry));
            Ok(())
        }
    }
}

/// Runs the command line of this process with `registry`; returns the exit code.
pub fn run(registry: Registry) -> i32 {
    init_tracing();
    match run_args(&registry, std::env::args_os()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// Logs through `tracing` to stderr; `RUST_LOG` sets the level (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
