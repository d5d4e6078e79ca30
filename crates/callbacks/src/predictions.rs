//! `predictions`: per epoch, the share of each predicted class on val and test beside the true
//! shares, and how far the predicted shares moved since the previous epoch.

use candle_core::{Device, Tensor};
use rnnlab_core::{
    Callback, Confusion, Control, EpochMetrics, PluginConfig, Registry, Result, StateDict,
    TrainView,
};
use serde::{Deserialize, Serialize};

/// Shares of one split, in percent.
#[derive(Clone, Debug, PartialEq)]
pub struct Shares {
    /// Predicted share per class.
    pub predicted: Vec<f64>,
    /// True share per class.
    pub truth: Vec<f64>,
}

/// Predicted (column sums) and true (row sums) shares of a confusion matrix, in percent.
pub fn shares(c: &Confusion) -> Shares {
    let n = c.counts.len();
    let total = c.total().max(1) as f64;
    Shares {
        predicted: c.predicted_shares(),
        truth: (0..n)
            .map(|r| 100.0 * c.counts[r].iter().sum::<u64>() as f64 / total)
            .collect(),
    }
}

/// The largest absolute change of a share between two epochs (percentage points).
pub fn max_shift(prev: &[f64], cur: &[f64]) -> f64 {
    prev.iter()
        .zip(cur)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

/// Logs `predictions.<split>.share.<c>`, `predictions.<split>.true_share.<c>`,
/// `predictions.<split>.max_share` and (from the second epoch) `predictions.<split>.max_shift`
/// for `split` in val, test; `<c>` is the class index (see `labels.json`).
#[derive(Clone, Debug, Default)]
pub struct Predictions {
    prev: [Option<Vec<f64>>; 2],
}

const SPLITS: [&str; 2] = ["val", "test"];

impl Predictions {
    /// Adds the figures of one split's confusion matrix to `m`, remembering its shares.
    pub fn record(&mut self, m: &mut EpochMetrics, split: usize, c: &Confusion) {
        let name = SPLITS[split];
        let s = shares(c);
        for (k, v) in s.predicted.iter().enumerate() {
            m.set(format!("predictions.{name}.share.{k}"), *v);
        }
        for (k, v) in s.truth.iter().enumerate() {
            m.set(format!("predictions.{name}.true_share.{k}"), *v);
        }
        m.set(
            format!("predictions.{name}.max_share"),
            s.predicted.iter().copied().fold(0.0, f64::max),
        );
        if let Some(prev) = &self.prev[split] {
            m.set(
                format!("predictions.{name}.max_shift"),
                max_shift(prev, &s.predicted),
            );
        }
        self.prev[split] = Some(s.predicted);
    }
}

impl Callback for Predictions {
    fn name(&self) -> &str {
        "predictions"
    }

    fn on_epoch_end(&mut self, metrics: &mut EpochMetrics, view: &TrainView) -> Result<Control> {
        for (i, ev) in [view.val, view.test].into_iter().enumerate() {
            if let Some(ev) = ev {
                self.record(metrics, i, &ev.confusion);
            }
        }
        Ok(Control::Continue)
    }

    fn metric_names(&self, ctx: &rnnlab_core::MetricContext) -> Option<Vec<String>> {
        let mut names = Vec::new();
        for split in ctx.eval_splits() {
            for k in 0..ctx.num_classes {
                names.push(format!("predictions.{split}.share.{k}"));
                names.push(format!("predictions.{split}.true_share.{k}"));
            }
            names.push(format!("predictions.{split}.max_share"));
            names.push(format!("predictions.{split}.max_shift"));
        }
        Some(names)
    }

    fn state_dict(&self) -> Result<StateDict> {
        let mut s = StateDict::new();
        for (i, p) in self.prev.iter().enumerate() {
            if let Some(p) = p {
                s.insert(
                    format!("prev_{}", SPLITS[i]),
                    Tensor::new(p.as_slice(), &Device::Cpu)?,
                );
            }
        }
        Ok(s)
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        for (i, name) in SPLITS.iter().enumerate() {
            self.prev[i] = match state.tensors.get(&format!("prev_{name}")) {
                Some(t) => Some(t.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?),
                None => None,
            };
        }
        Ok(())
    }
}

/// The keys of `type = "predictions"`: none.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictionsConfig {}

impl PluginConfig for PredictionsConfig {}

/// Registers `predictions`.
pub fn register(r: &mut Registry) {
    r.callbacks.register(
        "predictions",
        "per epoch, predicted vs true class shares on val and test and the largest shift of a predicted share since the previous epoch",
        PredictionsConfig::default(),
        |_| Ok(Box::new(Predictions::default()) as Box<dyn Callback>),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confusion(counts: Vec<Vec<u64>>) -> Confusion {
        Confusion { counts }
    }

    #[test]
    fn shares_and_shift_from_known_matrices() {
        // 10 examples: 6 true class 0, 4 true class 1; predicted 7 as 0, 3 as 1.
        let c1 = confusion(vec![vec![5, 1], vec![2, 2]]);
        let mut p = Predictions::default();
        let mut m = EpochMetrics::new();
        p.record(&mut m, 0, &c1);
        assert_eq!(m.get("predictions.val.share.0"), Some(70.0));
        assert_eq!(m.get("predictions.val.share.1"), Some(30.0));
        assert_eq!(m.get("predictions.val.true_share.0"), Some(60.0));
        assert_eq!(m.get("predictions.val.true_share.1"), Some(40.0));
        assert_eq!(m.get("predictions.val.max_share"), Some(70.0));
        assert_eq!(m.get("predictions.val.max_shift"), None);
        // Next epoch predicts 4 as 0, 6 as 1: shares move by 30 points.
        let c2 = confusion(vec![vec![4, 2], vec![0, 4]]);
        let mut m2 = EpochMetrics::new();
        p.record(&mut m2, 0, &c2);
        assert!((m2.get("predictions.val.max_shift").unwrap() - 30.0).abs() < 1e-12);
        // The shift survives a checkpoint round trip.
        let mut q = Predictions::default();
        q.load_state_dict(&p.state_dict().unwrap()).unwrap();
        let mut m3 = EpochMetrics::new();
        q.record(&mut m3, 0, &c1);
        assert!((m3.get("predictions.val.max_shift").unwrap() - 30.0).abs() < 1e-12);
    }
}
