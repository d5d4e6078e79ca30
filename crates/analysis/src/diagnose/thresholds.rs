//! The thresholds of diagnose's rules and how `--set` / `--config` change them.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

/// The thresholds of the rules; `rnnlab diagnose --set key=value` or a `[diagnose]` table in a
/// file given with `--config` changes them, layered by the `config` crate as the pipeline is. The
/// struct is the one list of the keys: serde names an unknown one with the known ones.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Gradient norm of the warning band (default: the run's `grad_norm.warn`, else 5).
    pub warn: Option<f64>,
    /// Gradient norm above which a step explodes (default: the run's `grad_norm.explode`, else 10).
    pub explode: Option<f64>,
    /// Percent of an epoch's steps above `explode` that counts as exploding (default 1).
    pub explode_share: f64,
    /// Spectral radius above which a recurrent block is flagged (default 1).
    pub radius: f64,
    /// K: the last epochs the swing, overfitting, drift and collapse rules look at (default 10).
    pub window: usize,
    /// Loss spikes in the run that make the learning rate suspect (default 1).
    pub spikes: usize,
    /// Accuracy swing between epochs, in points, that counts as noise (default 2).
    pub swing: f64,
    /// Move of a predicted-class share away from its true share between epochs, in points, that
    /// counts towards order drift (default 5).
    pub drift: f64,
    /// Total variation between the predicted and true class shares, in points, that counts
    /// towards order drift (default 10).
    pub drift_tv: f64,
    /// Training accuracy minus held-out accuracy, in points, above which an epoch can count as
    /// order drift (default 10).
    pub drift_acc_gap: f64,
    /// Epochs of the window that must show order drift (default 2).
    pub drift_epochs: usize,
    /// Standard errors of the held-out accuracy (from the split's size in data_report.json)
    /// that the accuracy gap must also exceed, so that sampling noise of a small split is not
    /// taken for drift (default 3).
    pub drift_se: f64,
    /// Percent of val predicted as one class that counts as collapse (default 95).
    pub collapse: f64,
    /// Points above always predicting the majority class (its true share of val) that an
    /// accuracy must exceed for the model to count as having learned anything: collapse holds
    /// when val accuracy stays within it for the last 3 epochs, overfitting needs train accuracy
    /// above it (default 1).
    pub majority: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            warn: None,
            explode: None,
            explode_share: 1.0,
            radius: 1.0,
            window: 10,
            spikes: 1,
            swing: 2.0,
            drift: 5.0,
            drift_tv: 10.0,
            drift_acc_gap: 10.0,
            drift_epochs: 2,
            drift_se: 3.0,
            collapse: 95.0,
            majority: 1.0,
        }
    }
}

impl Thresholds {
    /// Defaults, then the `[diagnose]` table of `file`, then `key=value` overrides (with or
    /// without `diagnose.`).
    pub fn load(file: Option<&Path>, sets: &[String]) -> Result<Self> {
        let mut b = config::Config::builder();
        if let Some(f) = file {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            let table: toml::Table =
                toml::from_str(&text).with_context(|| format!("parsing {}", f.display()))?;
            if let Some(d) = table.get("diagnose") {
                let d = d
                    .as_table()
                    .with_context(|| format!("{}: `diagnose` must be a table", f.display()))?;
                b = b.add_source(config::File::from_str(
                    &toml::to_string(d)?,
                    config::FileFormat::Toml,
                ));
            }
        }
        for s in sets {
            let (k, v) = rnnlab_pipeline::config::parse_set(s)?;
            let k = k.trim_start_matches("diagnose.");
            b = b
                .set_override(k, rnnlab_pipeline::config::to_config_value(&v))
                .with_context(|| format!("--set {s}"))?;
        }
        let t: Thresholds = b.build().and_then(|c| c.try_deserialize()).map_err(|e| {
            anyhow!(
                "diagnose thresholds: {}",
                rnnlab_pipeline::config::with_suggestion(&e.to_string())
            )
        })?;
        t.checked()
    }

    /// Refuses a negative or non-finite threshold; a window under 2, and spike or drift-epoch
    /// counts under 1, are raised to them.
    fn checked(mut self) -> Result<Self> {
        let numbers = [
            ("warn", self.warn.unwrap_or(0.0)),
            ("explode", self.explode.unwrap_or(0.0)),
            ("explode_share", self.explode_share),
            ("radius", self.radius),
            ("swing", self.swing),
            ("drift", self.drift),
            ("drift_tv", self.drift_tv),
            ("drift_acc_gap", self.drift_acc_gap),
            ("drift_se", self.drift_se),
            ("collapse", self.collapse),
            ("majority", self.majority),
        ];
        for (key, v) in numbers {
            if !v.is_finite() || v < 0.0 {
                bail!("diagnose.{key}: expected a non-negative number, got {v}");
            }
        }
        self.window = self.window.max(2);
        self.spikes = self.spikes.max(1);
        self.drift_epochs = self.drift_epochs.max(1);
        Ok(self)
    }
}
