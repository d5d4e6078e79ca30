//! Helpers shared by rnnlab's integration tests.

use std::path::{Path, PathBuf};

use rnnlab_cli::{RunSummary, TrainOptions};

/// The workspace's `pipelines/NAME`.
pub fn pipeline(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pipelines")
        .join(name)
}

/// The real data folder (`RNNLAB_DATA`, default `../shared/data` beside the workspace); panics
/// with a clear message when it is missing.
pub fn real_data() -> PathBuf {
    let dir = rnnlab_cli::config::data_dir();
    assert!(
        dir.join("rt-kaggle-phrases/train.tsv").is_file(),
        "real data not found at {} (rt-kaggle-phrases/train.tsv missing): set RNNLAB_DATA to the \
         folder holding rt-kaggle-phrases/ and glove-6b-50d/",
        dir.display()
    );
    dir
}

/// Trains `pipelines/NAME` with overrides into `out`, with the built-in plugins.
pub fn train(name: &str, sets: &[&str], out: &Path) -> anyhow::Result<RunSummary> {
    train_with(&rnnlab_cli::registry(), name, sets, out)
}

/// Trains `pipelines/NAME` with overrides into `out`, with the plugins of `registry`.
pub fn train_with(
    registry: &rnnlab_core::Registry,
    name: &str,
    sets: &[&str],
    out: &Path,
) -> anyhow::Result<RunSummary> {
    let opts = TrainOptions {
        pipeline: Some(pipeline(name)),
        sets: sets.iter().map(|s| s.to_string()).collect(),
        out: Some(out.to_path_buf()),
        threads: Some(2),
        progress: false,
        resume: None,
    };
    rnnlab_cli::train(registry, &opts)
}

/// The metrics of a run without the timing figures, for determinism checks.
pub fn untimed(summary: &RunSummary) -> Vec<Vec<(String, f64)>> {
    summary
        .history
        .iter()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| {
                    !matches!(*k, "epoch_seconds" | "eval_seconds" | "tokens_per_second")
                })
                .map(|(k, v)| (k.to_string(), v))
                .collect()
        })
        .collect()
}
