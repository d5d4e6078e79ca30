//! `early_stopping`: stops training when a monitored metric has not improved for `patience` epochs,
//! as Lightning's `EarlyStopping`.

use rnnlab_core::{
    check_value, Callback, Control, EpochMetrics, Error, Mode, ModeSetting, PluginConfig, Registry,
    Result, StateDict, TrainView, Watched,
};
use serde::{Deserialize, Serialize};

/// Stops when `monitor` has not improved by more than `min_delta` for `patience` epochs.
#[derive(Clone, Debug)]
pub struct EarlyStopping {
    /// The metric watched, e.g. `val_acc`.
    pub monitor: String,
    /// Which way it improves.
    pub mode: Mode,
    /// Epochs without improvement tolerated.
    pub patience: usize,
    /// The smallest change that counts as an improvement.
    pub min_delta: f64,
    /// The config path of `monitor`, for errors.
    pub monitor_at: String,
    best: Option<f64>,
    bad_epochs: usize,
}

/// An `early_stopping` callback.
pub fn early_stopping(monitor: &str, mode: Mode, patience: usize, min_delta: f64) -> EarlyStopping {
    EarlyStopping {
        monitor: monitor.to_string(),
        mode,
        patience,
        min_delta,
        monitor_at: "monitor".into(),
        best: None,
        bad_epochs: 0,
    }
}

impl Callback for EarlyStopping {
    fn name(&self) -> &str {
        "early_stopping"
    }

    fn on_epoch_end(&mut self, metrics: &mut EpochMetrics, _view: &TrainView) -> Result<Control> {
        let v = metrics.get(&self.monitor).ok_or_else(|| {
            Error::invalid(
                &self.monitor_at,
                format!("metric `{}` is not logged by this run", self.monitor),
            )
        })?;
        let improved = match self.best {
            None => true,
            Some(b) => match self.mode {
                Mode::Max => v > b + self.min_delta,
                Mode::Min => v < b - self.min_delta,
            },
        };
        if improved {
            self.best = Some(v);
            self.bad_epochs = 0;
        } else {
            self.bad_epochs += 1;
        }
        if self.bad_epochs >= self.patience {
            Ok(Control::Stop(format!(
                "{} has not improved on {:.4} for {} epochs",
                self.monitor,
                self.best.unwrap_or(f64::NAN),
                self.bad_epochs
            )))
        } else {
            Ok(Control::Continue)
        }
    }

    fn watched_metrics(&self) -> Vec<Watched> {
        vec![Watched::new(self.monitor_at.clone(), self.monitor.clone())]
    }

    fn metric_names(&self, _ctx: &rnnlab_core::MetricContext) -> Option<Vec<String>> {
        Some(Vec::new())
    }

    fn state_dict(&self) -> Result<StateDict> {
        let mut s = StateDict::new();
        s.insert_scalar("best", self.best.unwrap_or(f64::NAN))?;
        s.insert_scalar("bad_epochs", self.bad_epochs as f64)?;
        Ok(s)
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        let best = state.scalar("best")?;
        self.best = (!best.is_nan()).then_some(best);
        self.bad_epochs = state.scalar("bad_epochs")? as usize;
        Ok(())
    }
}

/// The keys of `type = "early_stopping"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EarlyStoppingConfig {
    /// The metric watched.
    pub monitor: String,
    /// max or min: which way the metric improves; auto: min when the monitor's name contains
    /// `loss`, else max.
    pub mode: ModeSetting,
    /// Epochs without improvement before stopping (>= 1).
    pub patience: usize,
    /// Smallest change that counts as improvement (>= 0).
    pub min_delta: f64,
}

impl Default for EarlyStoppingConfig {
    fn default() -> Self {
        EarlyStoppingConfig {
            monitor: "val_acc".into(),
            mode: ModeSetting::Auto,
            patience: 5,
            min_delta: 0.0,
        }
    }
}

impl PluginConfig for EarlyStoppingConfig {
    fn validate(&self, at: &str) -> Result<()> {
        let (p, d) = (self.patience, self.min_delta);
        check_value(at, "patience", &p, p >= 1, "must be at least 1")?;
        check_value(at, "min_delta", &d, d >= 0.0, "must be >= 0")
    }
}

/// Registers `early_stopping` (with its config path, which the missing-metric error and the `mode`
/// warning name).
pub fn register(r: &mut Registry) {
    r.callbacks.register_at(
        "early_stopping",
        "stop when a metric has not improved by min_delta for patience epochs",
        EarlyStoppingConfig::default(),
        |c, at| {
            let mode = Mode::resolve(c.mode, &c.monitor, &format!("{at}.mode"));
            let mut cb = early_stopping(&c.monitor, mode, c.patience, c.min_delta);
            cb.monitor_at = format!("{at}.monitor");
            Ok(Box::new(cb) as Box<dyn Callback>)
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use rnnlab_core::Params;

    fn feed(cb: &mut EarlyStopping, values: &[f64]) -> Vec<bool> {
        let params = Params::new();
        let view = TrainView {
            params: &params,
            recurrent: &[],
            epoch: 0,
            step: 0,
            run_dir: None,
            val: None,
            test: None,
            weights: None,
        };
        values
            .iter()
            .map(|v| {
                let mut m = EpochMetrics::new();
                m.set("val_acc", *v);
                cb.on_epoch_end(&mut m, &view).unwrap() != Control::Continue
            })
            .collect()
    }

    #[test]
    fn stops_after_patience_epochs_without_improvement() {
        let mut cb = early_stopping("val_acc", Mode::Max, 2, 0.5);
        // 60 → 61 improves; 61.3 is within min_delta (not an improvement); 60 is worse: stop.
        assert_eq!(
            feed(&mut cb, &[60.0, 61.0, 61.3, 60.0]),
            vec![false, false, false, true]
        );
    }

    #[test]
    fn a_missing_metric_is_an_error_naming_it() {
        let mut cb = early_stopping("val_f1", Mode::Max, 2, 0.0);
        let params = Params::new();
        let view = TrainView {
            params: &params,
            recurrent: &[],
            epoch: 1,
            step: 0,
            run_dir: None,
            val: None,
            test: None,
            weights: None,
        };
        let e = cb
            .on_epoch_end(&mut EpochMetrics::new(), &view)
            .unwrap_err();
        assert!(e.to_string().contains("`val_f1`"), "{e}");
    }
}
