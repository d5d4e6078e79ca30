//! `lr_monitor`: the learning rate actually used by the steps of each epoch.

use rnnlab_core::{
    BatchStats, Callback, Control, EpochMetrics, PluginConfig, Registry, Result, StateDict,
    TrainView,
};
use serde::{Deserialize, Serialize};

/// Logs `lr_monitor.first`, `lr_monitor.last`, `lr_monitor.min`, `lr_monitor.max` and
/// `lr_monitor.mean` over the epoch's steps (step schedules change it within an epoch).
#[derive(Clone, Debug, Default)]
pub struct LrMonitor {
    lrs: Vec<f64>,
}

impl LrMonitor {
    /// Records one step's learning rate.
    pub fn record(&mut self, lr: f64) {
        self.lrs.push(lr);
    }

    /// Writes the epoch's figures into `m` and starts a new epoch.
    pub fn flush(&mut self, m: &mut EpochMetrics) {
        if let (Some(first), Some(last)) = (self.lrs.first(), self.lrs.last()) {
            m.set("lr_monitor.first", *first);
            m.set("lr_monitor.last", *last);
            m.set(
                "lr_monitor.min",
                self.lrs.iter().copied().fold(f64::INFINITY, f64::min),
            );
            m.set(
                "lr_monitor.max",
                self.lrs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            );
            m.set(
                "lr_monitor.mean",
                self.lrs.iter().sum::<f64>() / self.lrs.len() as f64,
            );
        }
        self.lrs.clear();
    }
}

impl Callback for LrMonitor {
    fn name(&self) -> &str {
        "lr_monitor"
    }

    /// The epoch's rates so far (empty at an epoch end; a mid-epoch snapshot keeps them).
    fn state_dict(&self) -> Result<StateDict> {
        let mut s = StateDict::new();
        s.insert_f64s("lrs", &self.lrs)?;
        Ok(s)
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        self.lrs = state.f64s("lrs")?;
        Ok(())
    }

    fn on_batch_end(&mut self, stats: &BatchStats, _view: &TrainView) -> Result<()> {
        self.record(stats.lr);
        Ok(())
    }

    fn on_epoch_end(&mut self, metrics: &mut EpochMetrics, _view: &TrainView) -> Result<Control> {
        self.flush(metrics);
        Ok(Control::Continue)
    }

    fn metric_names(&self, _ctx: &rnnlab_core::MetricContext) -> Option<Vec<String>> {
        Some(
            ["first", "last", "min", "max", "mean"]
                .iter()
                .map(|f| format!("lr_monitor.{f}"))
                .collect(),
        )
    }
}

/// The keys of `type = "lr_monitor"`: none.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LrMonitorConfig {}

impl PluginConfig for LrMonitorConfig {}

/// Registers `lr_monitor`.
pub fn register(r: &mut Registry) {
    r.callbacks.register(
        "lr_monitor",
        "first, last, min, max and mean learning rate of each epoch's steps",
        LrMonitorConfig::default(),
        |_| Ok(Box::new(LrMonitor::default()) as Box<dyn Callback>),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_of_a_warmup() {
        let mut l = LrMonitor::default();
        for lr in [0.1, 0.2, 0.3, 0.2] {
            l.record(lr);
        }
        let mut m = EpochMetrics::new();
        l.flush(&mut m);
        assert_eq!(m.get("lr_monitor.first"), Some(0.1));
        assert_eq!(m.get("lr_monitor.last"), Some(0.2));
        assert_eq!(m.get("lr_monitor.max"), Some(0.3));
        assert_eq!(m.get("lr_monitor.min"), Some(0.1));
        assert!((m.get("lr_monitor.mean").unwrap() - 0.2).abs() < 1e-12);
    }
}
