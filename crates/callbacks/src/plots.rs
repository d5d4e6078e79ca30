//! `plots`: at the end of a run, the run's figures (PNG and SVG) in `run_dir/plots/`.

use rnnlab_core::{
    check_value, Callback, Control, EpochMetrics, PluginConfig, Registry, Result, TrainView,
};
use serde::{Deserialize, Serialize};

use crate::plot;

/// Writes accuracy, loss, gradient-norm (with the warn/explode lines), spectral-radius, learning
/// rate, predicted-share and confusion-matrix figures into `run_dir/<dir>/` when training ends.
/// The confusion matrices are the last epoch's val and test evaluations, which the trainer hands
/// to `on_train_end` (else the last ones seen in `on_epoch_end`). A figure that fails is a
/// warning, not a failed run.
#[derive(Clone, Debug)]
pub struct Plots {
    /// Folder inside the run folder.
    pub dir: String,
    /// `png`, `svg` or both.
    pub formats: Vec<String>,
    confusions: Vec<(String, Vec<Vec<u64>>)>,
}

impl Plots {
    /// Keeps the confusion matrices of the view's val and test evaluations.
    fn remember(&mut self, view: &TrainView) {
        self.confusions.clear();
        for (name, ev) in [("val", view.val), ("test", view.test)] {
            if let Some(ev) = ev {
                self.confusions
                    .push((name.to_string(), ev.confusion.counts.clone()));
            }
        }
    }
}

impl Callback for Plots {
    fn name(&self) -> &str {
        "plots"
    }

    fn on_epoch_end(&mut self, _metrics: &mut EpochMetrics, view: &TrainView) -> Result<Control> {
        self.remember(view);
        Ok(Control::Continue)
    }

    fn on_train_end(&mut self, history: &[EpochMetrics], view: &TrainView) -> Result<()> {
        if view.val.is_some() || view.test.is_some() {
            self.remember(view);
        }
        let Some(run_dir) = view.run_dir else {
            return Ok(());
        };
        let labels = read_labels(run_dir);
        let dir = run_dir.join(&self.dir);
        match plot::run_plots(history, &self.confusions, &labels, &dir, &self.formats) {
            Ok(files) => tracing::info!("plots: {} figures in {}", files.len(), dir.display()),
            Err(e) => tracing::warn!("plots: {e}"),
        }
        Ok(())
    }
}

/// The class names of a run folder's `labels.json` (empty when absent).
pub fn read_labels(run_dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(run_dir.join("labels.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Vec<serde_json::Value>>(&t).ok())
        .map(|v| {
            v.iter()
                .map(|x| match x {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The keys of `type = "plots"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlotsConfig {
    /// Folder inside the run folder (no path separators).
    pub dir: String,
    /// png, svg or both.
    #[schemars(with = "Vec<String>")]
    pub formats: toml::Value,
}

impl Default for PlotsConfig {
    fn default() -> Self {
        PlotsConfig {
            dir: "plots".into(),
            formats: toml::Value::Array(vec!["png".into(), "svg".into()]),
        }
    }
}

impl PlotsConfig {
    /// The formats asked for; anything but a string reads as `?` (which `validate` rejects).
    fn formats(&self) -> Vec<String> {
        match &self.formats {
            toml::Value::Array(a) => a
                .iter()
                .map(|v| v.as_str().unwrap_or("?").to_string())
                .collect(),
            _ => vec!["?".into()],
        }
    }
}

impl PluginConfig for PlotsConfig {
    fn validate(&self, at: &str) -> Result<()> {
        let d = &self.dir;
        let plain = !d.is_empty() && !d.contains(['/', '\\']) && d != "..";
        check_value(at, "dir", d, plain, "must be a plain folder name")?;
        let formats = self.formats();
        check_value(
            at,
            "formats",
            &self.formats,
            !formats.is_empty() && formats.iter().all(|f| f == "png" || f == "svg"),
            "must be a non-empty list of \"png\" and \"svg\"",
        )
    }
}

/// Registers `plots`.
pub fn register(r: &mut Registry) {
    r.callbacks.register(
        "plots",
        "at the end of the run, accuracy / loss / gradient-norm / spectral / lr / share / confusion figures in run_dir/plots",
        PlotsConfig::default(),
        |c| {
            Ok(Box::new(Plots {
                formats: c.formats(),
                dir: c.dir,
                confusions: Vec::new(),
            }) as Box<dyn Callback>)
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use rnnlab_core::{Confusion, Evaluation, Params};

    fn eval(counts: Vec<Vec<u64>>) -> Evaluation {
        Evaluation {
            loss: 0.5,
            confusion: Confusion { counts },
        }
    }

    /// The confusion figures come from the evaluations the trainer hands to `on_train_end`, also
    /// when no epoch ran in this process (a run resumed after its last epoch), and a later
    /// `on_train_end` evaluation replaces the one seen at the last `on_epoch_end`.
    #[test]
    fn confusion_figures_come_from_the_final_evaluations() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("labels.json"), r#"["neg", "pos"]"#).unwrap();
        let params = Params::new();
        let (val, test) = (
            eval(vec![vec![5, 1], vec![2, 7]]),
            eval(vec![vec![9, 0], vec![1, 3]]),
        );
        let view = |val, test| TrainView {
            params: &params,
            recurrent: &[],
            epoch: 3,
            step: 30,
            run_dir: Some(dir.path()),
            val,
            test,
            weights: None,
        };
        let mut history = vec![EpochMetrics::new()];
        history[0].set("epoch", 3.0);
        history[0].set("val_acc", 75.0);
        let mut p = Plots {
            dir: "plots".into(),
            formats: vec!["svg".into()],
            confusions: Vec::new(),
        };
        p.on_train_end(&history, &view(Some(&val), Some(&test)))
            .unwrap();
        for f in ["confusion_val.svg", "confusion_test.svg"] {
            let len = std::fs::metadata(dir.path().join("plots").join(f))
                .map(|m| m.len())
                .unwrap_or(0);
            assert!(len > 500, "{f}: {len} bytes");
        }
        assert_eq!(
            p.confusions,
            [
                ("val".to_string(), val.confusion.counts.clone()),
                ("test".to_string(), test.confusion.counts.clone())
            ]
        );

        // Seen at an epoch end, then the final evaluations at the end of training.
        let mut q = Plots {
            confusions: Vec::new(),
            ..p.clone()
        };
        let mut m = EpochMetrics::new();
        q.on_epoch_end(&mut m, &view(Some(&test), None)).unwrap();
        assert_eq!(q.confusions.len(), 1);
        q.on_train_end(&history, &view(Some(&val), Some(&test)))
            .unwrap();
        assert_eq!(q.confusions[0].1, val.confusion.counts);
        // Without final evaluations, the last epoch's are kept.
        q.on_train_end(&history, &view(None, None)).unwrap();
        assert_eq!(q.confusions.len(), 2);
    }
}
