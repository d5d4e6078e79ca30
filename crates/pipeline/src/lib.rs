//! rnnlab pipelines: a pipeline file layered and validated ([`config`]), its plugins looked up in a
//! [`Registry`] and assembled, and the run trained into a self-contained, locked run folder
//! ([`train()`], [`run_dir`]), stopping cleanly on Ctrl-C ([`interrupt`]). Library code: every
//! failure is an error for the caller. The `rnnlab` command line (`rnnlab-cli`) and the
//! benchmarks (`rnnlab-bench`) train through it.
#![warn(missing_docs)]

pub mod config;
pub mod interrupt;
pub mod run_dir;
pub mod train;

use rnnlab_core::Registry;

pub use config::{load, PipelineConfig, Source};
pub use train::{train, RunSummary, TrainOptions};

/// Every built-in plugin: cells and models, transforms and schedulers, callbacks.
pub fn registry() -> Registry {
    let mut r = Registry::empty();
    rnnlab_models::register(&mut r);
    rnnlab_optim::register(&mut r);
    rnnlab_callbacks::register(&mut r);
    rnnlab_data::readers::register(&mut r);
    r
}
