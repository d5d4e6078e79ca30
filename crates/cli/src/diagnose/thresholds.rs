//! The thresholds of diagnose's rules and how `--set` / `--config` change them.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// The thresholds of the rules; `rnnlab diagnose --set key=value` or a `[diagnose]` table in a
/// file given with `--config` changes them.
#[derive(Clone, Debug, PartialEq)]
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
        }
    }
}

/// The keys `--set` accepts, with one line each (for errors and `--help`).
pub const KEYS: &[(&str, &str)] = &[
    (
        "warn",
        "gradient norm of the warning band (default: the run's grad_norm.warn, else 5)",
    ),
    (
        "explode",
        "gradient norm of the exploding band (default: the run's grad_norm.explode, else 10)",
    ),
    (
        "explode_share",
        "percent of an epoch's steps above `explode` that is exploding (1)",
    ),
    (
        "radius",
        "spectral radius above which a recurrent block is flagged (1)",
    ),
    ("window", "K, the last epochs looked at (10)"),
    (
        "spikes",
        "loss spikes that make the learning rate suspect (1)",
    ),
    (
        "swing",
        "epoch-to-epoch accuracy swing in points that is noise (2)",
    ),
    (
        "drift",
        "epoch-to-epoch move of a predicted share away from its true share, in points, that counts as drift (5)",
    ),
    (
        "drift_tv",
        "distance of the predicted from the true shares (total variation, points) that counts as drift (10)",
    ),
    (
        "drift_acc_gap",
        "training minus held-out accuracy, in points, needed for an epoch to count as drift (10)",
    ),
    (
        "drift_epochs",
        "epochs of the window that must show drift (2)",
    ),
    (
        "drift_se",
        "standard errors of the held-out accuracy the drift accuracy gap must also exceed (3)",
    ),
    (
        "collapse",
        "percent of val predicted as one class that is collapse (95)",
    ),
];

impl Thresholds {
    /// Sets `key` from a TOML value.
    pub fn set(&mut self, key: &str, v: &toml::Value) -> Result<()> {
        let num = || -> Result<f64> {
            match v {
                toml::Value::Float(f) if f.is_finite() && *f >= 0.0 => Ok(*f),
                toml::Value::Integer(i) if *i >= 0 => Ok(*i as f64),
                _ => bail!("diagnose.{key}: expected a non-negative number, got {v}"),
            }
        };
        match key {
            "warn" => self.warn = Some(num()?),
            "explode" => self.explode = Some(num()?),
            "explode_share" => self.explode_share = num()?,
            "radius" => self.radius = num()?,
            "window" => self.window = (num()? as usize).max(2),
            "spikes" => self.spikes = (num()? as usize).max(1),
            "swing" => self.swing = num()?,
            "drift" => self.drift = num()?,
            "drift_tv" => self.drift_tv = num()?,
            "drift_acc_gap" => self.drift_acc_gap = num()?,
            "drift_epochs" => self.drift_epochs = (num()? as usize).max(1),
            "drift_se" => self.drift_se = num()?,
            "collapse" => self.collapse = num()?,
            other => {
                let names: Vec<&str> = KEYS.iter().map(|k| k.0).collect();
                bail!(
                    "unknown diagnose key `{other}`{}; known: {}",
                    rnnlab_core::suggest(other, names.iter().copied()),
                    names.join(", ")
                )
            }
        }
        Ok(())
    }

    /// Defaults, then the `[diagnose]` table of `file`, then `key=value` overrides.
    pub fn load(file: Option<&Path>, sets: &[String]) -> Result<Self> {
        let mut t = Thresholds::default();
        if let Some(f) = file {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            let table: toml::Table =
                toml::from_str(&text).with_context(|| format!("parsing {}", f.display()))?;
            if let Some(d) = table.get("diagnose") {
                let d = d
                    .as_table()
                    .with_context(|| format!("{}: `diagnose` must be a table", f.display()))?;
                for (k, v) in d {
                    t.set(k, v).with_context(|| f.display().to_string())?;
                }
            }
        }
        for s in sets {
            let (k, v) = s
                .split_once('=')
                .with_context(|| format!("--set {s}: expected key=value"))?;
            let k = k.trim().trim_start_matches("diagnose.");
            let v: toml::Value = toml::from_str::<toml::Table>(&format!("v = {}", v.trim()))
                .with_context(|| format!("--set {s}: the value is not TOML"))?["v"]
                .clone();
            t.set(k, &v)?;
        }
        Ok(t)
    }
}
