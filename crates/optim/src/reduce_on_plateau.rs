//! `reduce_on_plateau`: `torch.optim.lr_scheduler.ReduceLROnPlateau`, driven by any metric the
//! trainer logs (`monitor`, default `val_acc`, mode `max`). After each epoch's evaluation the
//! metric is compared with the best so far (`threshold`, `threshold_mode`); after more than
//! `patience` epochs without improvement the rate is multiplied by `factor` (not below `min_lr`,
//! and only when it changes by more than `eps`), then `cooldown` epochs pass before counting again.
//! A metric missing from the epoch's record is an error that names it.

use rnnlab_core::{
    check_value, EpochMetrics, Error, Interval, Mode, ModeSetting, PluginConfig, Registry, Result,
    Scheduler, StateDict, Watched,
};
use serde::{Deserialize, Serialize};

use crate::util::check_non_negative;

/// How `threshold` measures a significant improvement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ThresholdMode {
    /// Relative: better than `best · (1 ∓ threshold)`.
    Rel,
    /// Absolute: better than `best ∓ threshold`.
    Abs,
}

/// ReduceLROnPlateau: its settings ([`ReduceOnPlateauConfig`]) and state. Built by
/// [`ReduceOnPlateauConfig::build`].
#[derive(Clone, Debug)]
pub struct ReduceOnPlateau {
    cfg: ReduceOnPlateauConfig,
    /// Which way the monitor improves (`mode`, resolved).
    mode: Mode,
    /// The config path of `monitor`, for the missing-metric error.
    monitor_at: String,
    lr: f64,
    best: f64,
    num_bad_epochs: usize,
    cooldown_counter: usize,
    last_epoch: usize,
}

impl ReduceOnPlateau {
    /// Whether `a` improves significantly on `best` (torch's `is_better`).
    pub fn is_better(&self, a: f64, best: f64) -> bool {
        let threshold = self.cfg.threshold;
        match (self.mode, self.cfg.threshold_mode) {
            (Mode::Min, ThresholdMode::Rel) => a < best * (1.0 - threshold),
            (Mode::Min, ThresholdMode::Abs) => a < best - threshold,
            (Mode::Max, ThresholdMode::Rel) => a > best * (threshold + 1.0),
            (Mode::Max, ThresholdMode::Abs) => a > best + threshold,
        }
    }

    /// Feeds one epoch's value of the metric (torch's `step(metrics)`).
    pub fn observe(&mut self, current: f64) {
        self.last_epoch += 1;
        if self.is_better(current, self.best) {
            self.best = current;
            self.num_bad_epochs = 0;
        } else {
            self.num_bad_epochs += 1;
        }
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.num_bad_epochs = 0;
        }
        if self.num_bad_epochs > self.cfg.patience {
            let new_lr = (self.lr * self.cfg.factor).max(self.cfg.min_lr);
            if self.lr - new_lr > self.cfg.eps {
                tracing::info!(
                    "reduce_on_plateau: {} has not improved for {} epochs; lr {} -> {new_lr}",
                    self.cfg.monitor,
                    self.num_bad_epochs,
                    self.lr
                );
                self.lr = new_lr;
            }
            self.cooldown_counter = self.cfg.cooldown;
            self.num_bad_epochs = 0;
        }
    }

    /// The best value of the metric so far.
    pub fn best(&self) -> f64 {
        self.best
    }
}

fn worst(mode: Mode) -> f64 {
    match mode {
        Mode::Min => f64::INFINITY,
        Mode::Max => f64::NEG_INFINITY,
    }
}

impl Scheduler for ReduceOnPlateau {
    fn interval(&self) -> Interval {
        self.cfg.interval
    }

    fn lr(&self, _t: usize) -> f64 {
        self.lr
    }

    fn watched_metrics(&self) -> Vec<Watched> {
        vec![Watched::new(
            self.monitor_at.clone(),
            self.cfg.monitor.clone(),
        )]
    }

    fn on_epoch_end(&mut self, metrics: &EpochMetrics) -> Result<()> {
        match metrics.get(&self.cfg.monitor) {
            Some(v) => {
                self.observe(v);
                Ok(())
            }
            None => {
                let logged: Vec<&str> = metrics.iter().map(|(k, _)| k).collect();
                Err(Error::invalid(
                    self.monitor_at.clone(),
                    format!(
                        "reduce_on_plateau watches `{}`, which is not in this epoch's metrics \
                         (is there a validation split?); logged: {}",
                        self.cfg.monitor,
                        logged.join(", ")
                    ),
                ))
            }
        }
    }

    fn state_dict(&self) -> Result<StateDict> {
        let mut s = StateDict::new();
        s.insert_scalar("lr", self.lr)?;
        s.insert_scalar("best", self.best)?;
        s.insert_scalar("num_bad_epochs", self.num_bad_epochs as f64)?;
        s.insert_scalar("cooldown_counter", self.cooldown_counter as f64)?;
        s.insert_scalar("last_epoch", self.last_epoch as f64)?;
        Ok(s)
    }

    fn load_state_dict(&mut self, s: &StateDict) -> Result<()> {
        self.lr = s.scalar("lr")?;
        self.best = s.scalar("best")?;
        self.num_bad_epochs = s.scalar("num_bad_epochs")? as usize;
        self.cooldown_counter = s.scalar("cooldown_counter")? as usize;
        self.last_epoch = s.scalar("last_epoch")? as usize;
        Ok(())
    }
}

/// The keys of `type = "reduce_on_plateau"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReduceOnPlateauConfig {
    /// The logged metric watched (val_acc, val_loss, val_macro_f1, ...).
    pub monitor: String,
    /// max (accuracies), min (losses), or auto: min when the monitor's name contains `loss`,
    /// else max.
    pub mode: ModeSetting,
    /// Factor of each reduction, in (0, 1).
    pub factor: f64,
    /// Epochs without improvement tolerated.
    pub patience: usize,
    /// Smallest significant improvement (>= 0).
    pub threshold: f64,
    /// rel (a fraction of the best) or abs.
    pub threshold_mode: ThresholdMode,
    /// Epochs after a reduction before bad epochs count again.
    pub cooldown: usize,
    /// The rate never goes below this (>= 0).
    pub min_lr: f64,
    /// Reductions smaller than this are skipped (>= 0).
    pub eps: f64,
    /// step or epoch (no effect: the rate changes after each epoch's evaluation).
    pub interval: Interval,
}

impl Default for ReduceOnPlateauConfig {
    fn default() -> Self {
        ReduceOnPlateauConfig {
            monitor: "val_acc".into(),
            mode: ModeSetting::Auto,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lr: 0.0,
            eps: 1e-8,
            interval: Interval::Epoch,
        }
    }
}

impl PluginConfig for ReduceOnPlateauConfig {
    fn validate(&self, at: &str) -> Result<()> {
        let m = &self.monitor;
        check_value(at, "monitor", m, !m.is_empty(), "must name a logged metric")?;
        let f = self.factor;
        check_value(at, "factor", &f, f > 0.0 && f < 1.0, "must be in (0, 1)")?;
        check_non_negative(at, "threshold", self.threshold)?;
        check_non_negative(at, "min_lr", self.min_lr)?;
        check_non_negative(at, "eps", self.eps)
    }
}

impl ReduceOnPlateauConfig {
    /// The scheduler these keys describe, at `base_lr`; `at` is the config path, which the
    /// missing-metric error names.
    pub fn build(&self, base_lr: f64, at: &str) -> Result<ReduceOnPlateau> {
        let mode = Mode::resolve(self.mode, &self.monitor, &format!("{at}.mode"));
        Ok(ReduceOnPlateau {
            cfg: self.clone(),
            mode,
            monitor_at: format!("{at}.monitor"),
            lr: base_lr,
            best: worst(mode),
            num_bad_epochs: 0,
            cooldown_counter: 0,
            last_epoch: 0,
        })
    }
}

/// Registers `reduce_on_plateau`.
pub fn register(r: &mut Registry) {
    r.schedulers.register(
        "reduce_on_plateau",
        "ReduceLROnPlateau: multiply the rate by factor when `monitor` stops improving for more than `patience` epochs",
        ReduceOnPlateauConfig::default(),
        |c, a| Ok(Box::new(c.build(a.base_lr, a.at)?)),
    );
}

#[cfg(test)]
mod tests {
    use crate::util::sched_test::{build, build_err};
    use rnnlab_core::{EpochMetrics, Result, Scheduler};

    // def plateau(kw, metrics, base=1.0):      # torch 2.15
    //     w = torch.zeros(1, requires_grad=True); opt = torch.optim.SGD([w], lr=base)
    //     s = ReduceLROnPlateau(opt, **kw); out = []
    //     for m in metrics:
    //         s.step(m); out.append(opt.param_groups[0]["lr"])
    //     return out
    const M_MIN: [f64; 18] = [
        1.0, 0.95, 0.94, 0.93, 0.92, 0.80, 0.79, 0.79, 0.78, 0.78, 0.70, 0.70, 0.70, 0.70, 0.70,
        0.70, 0.70, 0.70,
    ];
    const M_MAX: [f64; 18] = [
        50.0, 51.0, 51.5, 51.9, 52.5, 52.6, 52.7, 53.8, 53.8, 53.8, 53.8, 54.0, 54.1, 54.2, 54.3,
        54.4, 54.5, 54.6,
    ];

    fn run(s: &mut dyn Scheduler, key: &str, values: &[f64]) -> Result<Vec<f64>> {
        values
            .iter()
            .map(|&v| {
                let mut m = EpochMetrics::new();
                m.set("epoch", 1.0);
                m.set(key, v);
                s.on_epoch_end(&m)?;
                Ok(s.lr(0))
            })
            .collect()
    }

    fn assert_close(got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() <= 1e-12 * w.abs(),
                "{got:?}\nvs torch {want:?}"
            );
        }
    }

    #[test]
    fn min_mode_rel_threshold_cooldown_and_min_lr_match_torch() -> Result<()> {
        // plateau(dict(mode="min", factor=0.5, patience=1, threshold=0.05, threshold_mode="rel",
        //              cooldown=1, min_lr=0.2), M_MIN)
        let mut s = build(
            "type = \"reduce_on_plateau\"\nmonitor = \"val_loss\"\nmode = \"min\"\nfactor = 0.5\npatience = 1\nthreshold = 0.05\ncooldown = 1\nmin_lr = 0.2",
            1.0,
        )?;
        let got = run(s.as_mut(), "val_loss", &M_MIN)?;
        assert_close(
            &got,
            &[
                1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2,
                0.2, 0.2, 0.2,
            ],
        );
        Ok(())
    }

    #[test]
    fn max_mode_abs_threshold_matches_torch() -> Result<()> {
        // plateau(dict(mode="max", factor=0.1, patience=2, threshold=0.5, threshold_mode="abs",
        //              cooldown=0, min_lr=1e-3, eps=1e-8), M_MAX)
        let mut s = build(
            "type = \"reduce_on_plateau\"\nfactor = 0.1\npatience = 2\nthreshold = 0.5\nthreshold_mode = \"abs\"\nmin_lr = 1e-3",
            1.0,
        )?;
        let got = run(s.as_mut(), "val_acc", &M_MAX)?;
        let mut want = vec![1.0; 10];
        want.extend([0.1; 3]);
        want.extend([0.010000000000000002; 5]);
        assert_close(&got, &want);
        Ok(())
    }

    #[test]
    fn eps_stops_tiny_reductions_as_torch() -> Result<()> {
        // plateau(dict(mode="min", patience=0), M_MIN)
        let mut s = build(
            "type = \"reduce_on_plateau\"\nmonitor = \"train_loss\"\nmode = \"min\"\npatience = 0",
            1.0,
        )?;
        let got = run(s.as_mut(), "train_loss", &M_MIN)?;
        assert_close(
            &got,
            &[
                1.0,
                1.0,
                1.0,
                1.0,
                1.0,
                1.0,
                1.0,
                0.1,
                0.1,
                0.010000000000000002,
                0.010000000000000002,
                0.0010000000000000002,
                0.00010000000000000003,
                1.0000000000000004e-05,
                1.0000000000000004e-06,
                1.0000000000000005e-07,
                1.0000000000000005e-08,
                1.0000000000000005e-08,
            ],
        );
        Ok(())
    }

    #[test]
    fn state_round_trip_resumes_the_counters() -> Result<()> {
        let cfg = "type = \"reduce_on_plateau\"\nmode = \"min\"\nmonitor = \"val_loss\"\nfactor = 0.5\npatience = 1\nthreshold = 0.05\ncooldown = 1\nmin_lr = 0.2";
        let mut whole = build(cfg, 1.0)?;
        let want = run(whole.as_mut(), "val_loss", &M_MIN)?;
        let mut first = build(cfg, 1.0)?;
        let mut got = run(first.as_mut(), "val_loss", &M_MIN[..8])?;
        let mut second = build(cfg, 1.0)?;
        second.load_state_dict(&first.state_dict()?)?;
        got.extend(run(second.as_mut(), "val_loss", &M_MIN[8..])?);
        assert_eq!(got, want);
        Ok(())
    }

    #[test]
    fn a_missing_metric_is_named() -> Result<()> {
        let mut s = build("type = \"reduce_on_plateau\"", 1.0)?;
        let mut m = EpochMetrics::new();
        m.set("train_loss", 0.5);
        let e = s.on_epoch_end(&m).unwrap_err().to_string();
        assert!(
            e.contains("optim.scheduler.monitor")
                && e.contains("`val_acc`")
                && e.contains("train_loss"),
            "{e}"
        );
        Ok(())
    }

    #[test]
    fn factor_outside_the_unit_interval_is_rejected() {
        for f in ["1.0", "0.0", "2.5", "-0.5"] {
            let e = build_err(&format!("type = \"reduce_on_plateau\"\nfactor = {f}"));
            assert!(
                e.contains("optim.scheduler.factor") && e.contains("(0, 1)"),
                "{e}"
            );
        }
        let e = build_err("type = \"reduce_on_plateau\"\nmode = \"maximum\"");
        assert!(e.contains("optim.scheduler.mode"), "{e}");
    }
}
