//! `metrics_logger`: `metrics.jsonl` in the run folder, one JSON object per epoch, each synced
//! to disk before the epoch's snapshot is written. The command line adds it to every run; it is
//! not a pipeline callback, and it keeps no state: a resumed run's file is written again from
//! the history the trainer resumes with.

use rnnlab_core::{
    Callback, EpochMetrics, MetricContext, MetricsWriter, Result, TrainView, METRICS_FILE,
};

/// Writes the epoch records.
#[derive(Default)]
pub struct MetricsLogger {
    writer: Option<MetricsWriter>,
}

/// A logger of the run folder's `metrics.jsonl`.
pub fn metrics_logger() -> MetricsLogger {
    MetricsLogger::default()
}

impl Callback for MetricsLogger {
    fn name(&self) -> &str {
        "metrics_logger"
    }

    /// Replaces the file with `history` (atomically, so a run killed here keeps its old one).
    fn on_train_start(&mut self, history: &[EpochMetrics], view: &TrainView) -> Result<()> {
        if let Some(dir) = view.run_dir {
            self.writer = Some(MetricsWriter::create_with(
                &dir.join(METRICS_FILE),
                history,
            )?);
        }
        Ok(())
    }

    /// Every epoch's complete record, and the partial one a diverged step logs.
    fn on_epoch_logged(&mut self, metrics: &EpochMetrics, _view: &TrainView) -> Result<()> {
        match self.writer.as_mut() {
            Some(w) => w.append(metrics),
            None => Ok(()),
        }
    }

    fn metric_names(&self, _ctx: &MetricContext) -> Option<Vec<String>> {
        Some(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use rnnlab_core::{read_metrics, Params};

    use super::*;

    fn epoch(e: f64, acc: f64) -> EpochMetrics {
        let mut m = EpochMetrics::new();
        m.set("epoch", e);
        m.set("val_acc", acc);
        m
    }

    /// A resumed run's file holds its history (an epoch the snapshot did not reach is gone), then
    /// one line per logged epoch; without a run folder nothing is written.
    #[test]
    fn starts_with_the_history_then_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        std::fs::write(&path, "{\"epoch\":1}\n{\"epoch\":2}\n{\"epoch\":3}\n").unwrap();
        let params = Params::new();
        let view = crate::test_view(&params, 0, 0, Some(dir.path()));
        let mut logger = metrics_logger();
        logger
            .on_train_start(&[epoch(1.0, 50.0), epoch(2.0, 55.5)], &view)
            .unwrap();
        logger.on_epoch_logged(&epoch(3.0, 61.25), &view).unwrap();
        let got: Vec<(Option<f64>, Option<f64>)> = read_metrics(&path)
            .unwrap()
            .iter()
            .map(|m| (m.get("epoch"), m.get("val_acc")))
            .collect();
        assert_eq!(
            got,
            [
                (Some(1.0), Some(50.0)),
                (Some(2.0), Some(55.5)),
                (Some(3.0), Some(61.25))
            ]
        );

        let mut none = metrics_logger();
        let view = crate::test_view(&params, 0, 0, None);
        none.on_train_start(&[], &view).unwrap();
        none.on_epoch_logged(&epoch(1.0, 1.0), &view).unwrap();
    }
}
