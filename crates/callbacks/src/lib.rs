//! rnnlab callbacks: monitors, loggers and training controls, one file per callback; [`register`]
//! adds them all.
#![warn(missing_docs)]

pub mod csv_logger;
pub mod early_stopping;
pub mod grad_norm;
pub mod jsonl_logger;
pub mod linalg;
pub mod lr_monitor;
pub mod metrics_logger;
pub mod model_checkpoint;
pub mod plot;
pub mod plots;
pub mod predictions;
pub mod progress;
pub mod spectral;
pub mod stability;
pub mod tensorboard;

use rnnlab_core::Registry;

/// Replaces a file atomically (rnnlab-core's one helper: temporary file, fsync, rename).
pub use rnnlab_core::write_atomic;

/// Registers every callback of this crate.
pub fn register(r: &mut Registry) {
    early_stopping::register(r);
    grad_norm::register(r);
    spectral::register(r);
    predictions::register(r);
    stability::register(r);
    lr_monitor::register(r);
    csv_logger::register(r);
    jsonl_logger::register(r);
    plots::register(r);
    tensorboard::register(r);
}

/// A view with no recurrent weights and no evaluations, for callbacks' tests.
#[cfg(test)]
pub(crate) fn test_view<'a>(
    params: &'a rnnlab_core::Params,
    epoch: usize,
    step: usize,
    run_dir: Option<&'a std::path::Path>,
) -> rnnlab_core::TrainView<'a> {
    rnnlab_core::TrainView {
        params,
        recurrent: &[],
        epoch,
        step,
        run_dir,
        val: None,
        test: None,
        weights: None,
    }
}
