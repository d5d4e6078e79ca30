//! `stability`: loss spikes per epoch, and at the end of a run the swings, spread, best and final
//! epoch of val and test accuracy over the last `window` epochs, written to `stability.json`.

use std::collections::VecDeque;

use rnnlab_core::{
    check_value, quantile, BatchStats, Callback, Control, EpochMetrics, Error, PluginConfig,
    Registry, Result, StateDict, TrainView,
};
use serde::{Deserialize, Serialize};

/// How one accuracy series behaved over the last epochs of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SeriesStability {
    /// The metric, e.g. `val_acc`.
    pub metric: String,
    /// Epochs looked at (the last `window`, or all when fewer).
    pub epochs: usize,
    /// Largest |change| between consecutive epochs in the window (points).
    pub max_swing: f64,
    /// The epoch that ended that swing.
    pub max_swing_epoch: usize,
    /// Population standard deviation over the window (points).
    pub std: f64,
    /// Best value of the whole run.
    pub best: f64,
    /// First epoch that reached it.
    pub best_epoch: usize,
    /// Value at the last epoch.
    pub last: f64,
    /// The last epoch.
    pub last_epoch: usize,
}

/// A batch whose loss was above `factor ×` the median of the batches before it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Spike {
    /// 1-based epoch.
    pub epoch: usize,
    /// The optimizer step after the batch.
    pub step: usize,
    /// The batch loss.
    pub loss: f64,
    /// The median it was compared with.
    pub median: f64,
}

/// What `stability.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StabilityReport {
    /// The window K.
    pub window: usize,
    /// Figures per accuracy metric (val_acc, test_acc, when logged).
    pub series: Vec<SeriesStability>,
    /// Spike rule: factor over the median.
    pub spike_factor: f64,
    /// Spike rule: batches in the median.
    pub spike_window: usize,
    /// Spike rule: least excess over the median.
    pub spike_min_delta: f64,
    /// Every spike of the run.
    pub spikes: Vec<Spike>,
}

/// The stability of `metric` over the last `window` epochs of `history` (`None` when never logged).
pub fn series_stability(
    history: &[EpochMetrics],
    metric: &str,
    window: usize,
) -> Option<SeriesStability> {
    let pts: Vec<(usize, f64)> = history
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let e = m.get("epoch").map(|e| e as usize).unwrap_or(i + 1);
            m.get(metric).filter(|v| v.is_finite()).map(|v| (e, v))
        })
        .collect();
    let &(last_epoch, last) = pts.last()?;
    let (mut best_epoch, mut best) = pts[0];
    for &(e, v) in &pts {
        if v > best {
            best = v;
            best_epoch = e;
        }
    }
    let tail = &pts[pts.len().saturating_sub(window.max(1))..];
    let (mut max_swing, mut max_swing_epoch) = (0.0, tail[0].0);
    for w in tail.windows(2) {
        let d = (w[1].1 - w[0].1).abs();
        if d > max_swing {
            max_swing = d;
            max_swing_epoch = w[1].0;
        }
    }
    let mean = tail.iter().map(|p| p.1).sum::<f64>() / tail.len() as f64;
    let var = tail.iter().map(|p| (p.1 - mean).powi(2)).sum::<f64>() / tail.len() as f64;
    Some(SeriesStability {
        metric: metric.to_string(),
        epochs: tail.len(),
        max_swing,
        max_swing_epoch,
        std: var.sqrt(),
        best,
        best_epoch,
        last,
        last_epoch,
    })
}

/// Counts batch losses above `factor ×` the median of the previous `window` batches (once at
/// least `min_history` are there).
#[derive(Clone, Debug)]
pub struct SpikeDetector {
    /// Factor over the median.
    pub factor: f64,
    /// Batches in the median.
    pub window: usize,
    /// Batches needed before the rule applies.
    pub min_history: usize,
    /// A spike must also exceed the median by this much (so a converged run's tiny losses do not spike).
    pub min_delta: f64,
    recent: VecDeque<f64>,
}

impl SpikeDetector {
    /// A detector with no history.
    pub fn new(factor: f64, window: usize, min_history: usize, min_delta: f64) -> Self {
        SpikeDetector {
            factor,
            window,
            min_history,
            min_delta,
            recent: VecDeque::with_capacity(window),
        }
    }

    /// Feeds one batch loss; returns the median it exceeded when it is a spike.
    pub fn push(&mut self, loss: f64) -> Option<f64> {
        let mut spike = None;
        if self.recent.len() >= self.min_history.max(1) {
            let v: Vec<f64> = self.recent.iter().copied().collect();
            let median = quantile(&v, 0.5);
            if !loss.is_finite() || (loss > self.factor * median && loss - median > self.min_delta)
            {
                spike = Some(median);
            }
        }
        if self.recent.len() == self.window {
            self.recent.pop_front();
        }
        self.recent.push_back(loss);
        spike
    }
}

/// Logs `stability.loss_spikes` (spikes in the epoch) and, from the second epoch,
/// `stability.val_acc_swing` / `stability.test_acc_swing` (|change| from the previous epoch);
/// writes `stability.json` to the run folder at the end.
#[derive(Clone, Debug)]
pub struct Stability {
    /// The window K of the end-of-run figures.
    pub window: usize,
    detector: SpikeDetector,
    spikes: Vec<Spike>,
    epoch_spikes: usize,
    prev: [Option<f64>; 2],
    /// The report of the finished run.
    pub report: Option<StabilityReport>,
}

/// A `stability` callback.
pub fn stability(
    window: usize,
    spike_factor: f64,
    spike_window: usize,
    spike_min_delta: f64,
) -> Stability {
    Stability {
        window,
        detector: SpikeDetector::new(
            spike_factor,
            spike_window,
            spike_window.min(10),
            spike_min_delta,
        ),
        spikes: Vec::new(),
        epoch_spikes: 0,
        prev: [None, None],
        report: None,
    }
}

impl Callback for Stability {
    fn name(&self) -> &str {
        "stability"
    }

    /// The spike detector's recent losses, the spikes so far (this epoch's count too) and the
    /// previous accuracies, so a resumed run, even one resumed mid-epoch, logs what an
    /// uninterrupted one does.
    fn state_dict(&self) -> Result<StateDict> {
        let mut s = StateDict::new();
        let recent: Vec<f64> = self.detector.recent.iter().copied().collect();
        s.insert_f64s("recent", &recent)?;
        s.insert_scalar("epoch_spikes", self.epoch_spikes as f64)?;
        for (key, prev) in ["prev_val_acc", "prev_test_acc"].iter().zip(self.prev) {
            if let Some(v) = prev {
                s.insert_scalar(*key, v)?;
            }
        }
        let col = |f: fn(&Spike) -> f64| self.spikes.iter().map(f).collect::<Vec<f64>>();
        s.insert_f64s("spike_epoch", &col(|x| x.epoch as f64))?;
        s.insert_f64s("spike_step", &col(|x| x.step as f64))?;
        s.insert_f64s("spike_loss", &col(|x| x.loss))?;
        s.insert_f64s("spike_median", &col(|x| x.median))?;
        Ok(s)
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        if state.is_empty() {
            return Ok(()); // a snapshot from before this state was kept
        }
        self.detector.recent = state.f64s("recent")?.into_iter().collect();
        self.epoch_spikes = state.scalar("epoch_spikes")? as usize;
        for (key, prev) in ["prev_val_acc", "prev_test_acc"]
            .iter()
            .zip(self.prev.iter_mut())
        {
            *prev = match state.tensors.get(*key) {
                Some(_) => Some(state.scalar(key)?),
                None => None,
            };
        }
        let (epochs, steps) = (state.f64s("spike_epoch")?, state.f64s("spike_step")?);
        let (losses, medians) = (state.f64s("spike_loss")?, state.f64s("spike_median")?);
        if [steps.len(), losses.len(), medians.len()] != [epochs.len(); 3] {
            return Err(Error::Mismatch(
                "stability state: spike columns of different lengths".into(),
            ));
        }
        self.spikes = (0..epochs.len())
            .map(|i| Spike {
                epoch: epochs[i] as usize,
                step: steps[i] as usize,
                loss: losses[i],
                median: medians[i],
            })
            .collect();
        Ok(())
    }

    fn on_batch_end(&mut self, stats: &BatchStats, view: &TrainView) -> Result<()> {
        if let Some(median) = self.detector.push(stats.loss) {
            self.epoch_spikes += 1;
            self.spikes.push(Spike {
                epoch: view.epoch,
                step: view.step,
                loss: stats.loss,
                median,
            });
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, metrics: &mut EpochMetrics, _view: &TrainView) -> Result<Control> {
        metrics.set("stability.loss_spikes", self.epoch_spikes as f64);
        self.epoch_spikes = 0;
        for (i, key) in ["val_acc", "test_acc"].iter().enumerate() {
            if let Some(v) = metrics.get(key) {
                if let Some(p) = self.prev[i] {
                    metrics.set(format!("stability.{key}_swing"), (v - p).abs());
                }
                self.prev[i] = Some(v);
            }
        }
        Ok(Control::Continue)
    }

    fn metric_names(&self, ctx: &rnnlab_core::MetricContext) -> Option<Vec<String>> {
        let mut names = vec!["stability.loss_spikes".to_string()];
        names.extend(
            ctx.eval_splits()
                .iter()
                .map(|s| format!("stability.{s}_acc_swing")),
        );
        Some(names)
    }

    fn on_train_end(&mut self, history: &[EpochMetrics], view: &TrainView) -> Result<()> {
        let report = StabilityReport {
            window: self.window,
            series: ["val_acc", "test_acc"]
                .iter()
                .filter_map(|k| series_stability(history, k, self.window))
                .collect(),
            spike_factor: self.detector.factor,
            spike_window: self.detector.window,
            spike_min_delta: self.detector.min_delta,
            spikes: self.spikes.clone(),
        };
        if let Some(dir) = view.run_dir {
            let path = dir.join("stability.json");
            let text = serde_json::to_string_pretty(&report)
                .map_err(|e| Error::Mismatch(format!("stability.json: {e}")))?;
            crate::write_atomic(&path, text.as_bytes())?;
        }
        self.report = Some(report);
        Ok(())
    }
}

/// The keys of `type = "stability"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StabilityConfig {
    /// K: the last epochs the swing and std look at (>= 2).
    pub window: usize,
    /// A batch loss above this times the median of the previous batches is a spike (> 1).
    pub spike_factor: f64,
    /// A spike must also exceed that median by this much in loss (>= 0).
    pub spike_min_delta: f64,
    /// Batches in that median (>= 1; the rule starts after min(10, spike_window)).
    pub spike_window: usize,
}

impl Default for StabilityConfig {
    fn default() -> Self {
        StabilityConfig {
            window: 10,
            spike_factor: 3.0,
            spike_min_delta: 0.1,
            spike_window: 100,
        }
    }
}

impl PluginConfig for StabilityConfig {
    fn validate(&self, at: &str) -> Result<()> {
        let (window, factor) = (self.window, self.spike_factor);
        let (sw, md) = (self.spike_window, self.spike_min_delta);
        check_value(at, "window", &window, window >= 2, "must be at least 2")?;
        check_value(at, "spike_factor", &factor, factor > 1.0, "must be > 1")?;
        check_value(at, "spike_window", &sw, sw >= 1, "must be at least 1")?;
        check_value(at, "spike_min_delta", &md, md >= 0.0, "must be >= 0")
    }
}

/// Registers `stability`.
pub fn register(r: &mut Registry) {
    r.callbacks.register(
        "stability",
        "loss spikes per epoch; at the end, swing / std / best / final of val and test accuracy over the last K epochs in stability.json",
        StabilityConfig::default(),
        |c| {
            Ok(Box::new(stability(
                c.window,
                c.spike_factor,
                c.spike_window,
                c.spike_min_delta,
            )) as Box<dyn Callback>)
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(vals: &[f64]) -> Vec<EpochMetrics> {
        vals.iter()
            .enumerate()
            .map(|(i, v)| {
                let mut m = EpochMetrics::new();
                m.set("epoch", (i + 1) as f64);
                m.set("val_acc", *v);
                m
            })
            .collect()
    }

    #[test]
    fn swing_std_best_and_last_over_the_window() {
        let h = hist(&[50.0, 90.0, 80.0, 84.0, 81.0, 83.0]);
        let s = series_stability(&h, "val_acc", 4).unwrap();
        // Window: 80, 84, 81, 83 → swings 4, 3, 2; mean 82, var (4+4+1+1)/4 = 2.5.
        assert_eq!(s.epochs, 4);
        assert_eq!((s.max_swing, s.max_swing_epoch), (4.0, 4));
        assert!((s.std - 2.5f64.sqrt()).abs() < 1e-12);
        assert_eq!((s.best, s.best_epoch), (90.0, 2));
        assert_eq!((s.last, s.last_epoch), (83.0, 6));
        assert!(series_stability(&h, "test_acc", 4).is_none());
    }

    #[test]
    fn spikes_are_3x_the_median_of_the_previous_batches() {
        let mut d = SpikeDetector::new(3.0, 4, 2, 0.1);
        // Not enough history for the first two.
        assert_eq!(d.push(1.0), None);
        assert_eq!(d.push(10.0), None);
        // Median of [1, 10] = 5.5: 16 is below 16.5; then median of [1, 10, 16] = 10: 31 spikes.
        assert_eq!(d.push(16.0), None);
        assert_eq!(d.push(31.0), Some(10.0));
        // Window of 4: [10, 16, 31, 0.5] → median 13; NaN is always a spike.
        assert_eq!(d.push(0.5), None);
        assert_eq!(d.push(f64::NAN), Some(13.0));
        // A converged run: 0.05 is 5x a median of 0.01 but only 0.04 above it.
        let mut c = SpikeDetector::new(3.0, 4, 2, 0.1);
        for _ in 0..3 {
            c.push(0.01);
        }
        assert_eq!(c.push(0.05), None);
        assert_eq!(c.push(0.5), Some(0.01));
    }
}
