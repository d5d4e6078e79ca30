//! Metrics: one record per epoch, the confusion matrix, macro-F1 and percentiles.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// One epoch's metrics, in insertion order (serialised as one JSON object per line).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EpochMetrics {
    entries: Vec<(String, f64)>,
}

impl EpochMetrics {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` (replacing an earlier value).
    pub fn set(&mut self, key: impl Into<String>, v: f64) {
        let key = key.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(e) => e.1 = v,
            None => self.entries.push((key, v)),
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// All entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// As a JSON object; integral counters print as integers, non-finite values as null.
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (k, v) in &self.entries {
            let val = if !v.is_finite() {
                serde_json::Value::Null
            } else if v.fract() == 0.0 && v.abs() < 1e15 && is_count(k) {
                serde_json::Value::from(*v as i64)
            } else {
                serde_json::Value::from(*v)
            };
            m.insert(k.clone(), val);
        }
        serde_json::Value::Object(m)
    }

    /// Parses one line of `metrics.jsonl`.
    pub fn from_json(v: &serde_json::Value) -> Option<Self> {
        let obj = v.as_object()?;
        let mut m = EpochMetrics::new();
        for (k, v) in obj {
            m.set(k.clone(), v.as_f64().unwrap_or(f64::NAN));
        }
        Some(m)
    }
}

fn is_count(key: &str) -> bool {
    matches!(
        key,
        "epoch" | "skipped_steps" | "steps" | "partial" | "diverged" | "diverged_step"
    )
}

/// The run folder's file of epoch records.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// Appends epoch records to a `metrics.jsonl` file, one JSON object per line.
pub struct MetricsWriter {
    path: PathBuf,
}

impl MetricsWriter {
    /// A writer that creates (truncates) `path`.
    pub fn create(path: &Path) -> Result<Self> {
        Self::create_with(path, &[])
    }

    /// A writer whose file holds `records` (a resumed run's epochs): `path` is replaced
    /// atomically, so a run killed here keeps its old file.
    pub fn create_with(path: &Path, records: &[EpochMetrics]) -> Result<Self> {
        let text: String = records
            .iter()
            .map(|m| format!("{}\n", m.to_json()))
            .collect();
        crate::write_atomic(path, text.as_bytes())?;
        Ok(MetricsWriter {
            path: path.to_path_buf(),
        })
    }

    /// Appends one record and syncs it to disk (before the epoch's checkpoint is written).
    pub fn append(&mut self, m: &EpochMetrics) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        // One write of the whole line: a run killed here leaves no half line.
        f.write_all(format!("{}\n", m.to_json()).as_bytes())
            .map_err(|e| Error::io(&self.path, e))?;
        f.sync_data().map_err(|e| Error::io(&self.path, e))?;
        Ok(())
    }
}

/// Reads every record of a `metrics.jsonl` file (see [`parse_metrics`]).
pub fn read_metrics(path: &Path) -> Result<Vec<EpochMetrics>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_metrics(&text, path)
}

/// Parses the text of a `metrics.jsonl` file (`path` names it in errors), one record per
/// non-empty line. A last line without its newline that does not parse is an append cut short
/// (the run was killed writing it) and is left out.
pub fn parse_metrics(text: &str, path: &Path) -> Result<Vec<EpochMetrics>> {
    let lines: Vec<&str> = text.lines().collect();
    let cut_short = !text.is_empty() && !text.ends_with('\n');
    let mut records = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str::<serde_json::Value>(l)
            .map_err(|e| e.to_string())
            .and_then(|v| EpochMetrics::from_json(&v).ok_or_else(|| "not a JSON object".into()));
        match record {
            Ok(m) => records.push(m),
            Err(_) if cut_short && i + 1 == lines.len() => {
                tracing::warn!(
                    "{}:{}: a record cut short (the run was killed writing it): left out",
                    path.display(),
                    i + 1
                );
            }
            Err(e) => {
                return Err(Error::Mismatch(format!(
                    "{}:{}: {e}",
                    path.display(),
                    i + 1
                )))
            }
        }
    }
    Ok(records)
}

/// A confusion matrix: `counts[true][predicted]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confusion {
    /// Row = true class, column = predicted class.
    pub counts: Vec<Vec<u64>>,
}

impl Confusion {
    /// An all-zero matrix for `n` classes.
    pub fn new(n: usize) -> Self {
        Confusion {
            counts: vec![vec![0; n]; n],
        }
    }

    /// Counts one prediction.
    pub fn add(&mut self, truth: usize, predicted: usize) {
        self.counts[truth][predicted] += 1;
    }

    /// Number of counted examples.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// Accuracy in percent (NaN when empty).
    pub fn accuracy(&self) -> f64 {
        let right: u64 = (0..self.counts.len()).map(|i| self.counts[i][i]).sum();
        100.0 * right as f64 / self.total() as f64
    }

    /// Macro-averaged F1 in percent, as scikit-learn's `f1_score(average="macro")`: a class
    /// with no true and no predicted example scores 0.
    pub fn macro_f1(&self) -> f64 {
        let n = self.counts.len();
        let mut sum = 0.0;
        for c in 0..n {
            let tp = self.counts[c][c] as f64;
            let pred: u64 = (0..n).map(|r| self.counts[r][c]).sum();
            let actual: u64 = self.counts[c].iter().sum();
            let denom = pred as f64 + actual as f64;
            if denom > 0.0 {
                sum += 2.0 * tp / denom;
            }
        }
        100.0 * sum / n as f64
    }

    /// Share of predictions per class, in percent.
    pub fn predicted_shares(&self) -> Vec<f64> {
        let n = self.counts.len();
        let total = self.total() as f64;
        (0..n)
            .map(|c| 100.0 * (0..n).map(|r| self.counts[r][c]).sum::<u64>() as f64 / total)
            .collect()
    }
}

/// The `q`-quantile (0..=1) of `values` with linear interpolation, as `numpy.percentile`'s default.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record read back holds the very values written: a resumed run writes its history again
    /// from what it read. 0.020244381130837794 and 0.11666473147171377 were logged by a run (as
    /// `grad_norm.embedding.weight.p99`); a best-effort float parser reads each one ulp off.
    #[test]
    fn values_read_back_are_the_values_written() {
        let mut m = EpochMetrics::new();
        let values = [
            0.020244381130837794,
            0.11666473147171377,
            0.9889284674118712,
            0.1 + 0.2,
            f64::MIN_POSITIVE,
            1e300 / 3.0,
        ];
        for (i, v) in values.iter().enumerate() {
            m.set(format!("v{i}"), *v);
        }
        let text = format!("{}\n", m.to_json());
        let back = parse_metrics(&text, Path::new("metrics.jsonl")).unwrap();
        for (i, v) in values.iter().enumerate() {
            let got = back[0].get(&format!("v{i}")).unwrap();
            assert_eq!(got.to_bits(), v.to_bits(), "{got:e} read back for {v:e}");
        }
    }

    #[test]
    fn macro_f1_matches_sklearn() {
        // sklearn.metrics.f1_score([0,0,1,1,2,2], [0,1,1,1,2,0], average="macro") = 0.6555556 (per class 0.5, 0.8, 0.6667)
        let mut c = Confusion::new(3);
        for (t, p) in [(0, 0), (0, 1), (1, 1), (1, 1), (2, 2), (2, 0)] {
            c.add(t, p);
        }
        assert!(
            (c.macro_f1() - 65.555_555_6).abs() < 1e-5,
            "{}",
            c.macro_f1()
        );
        assert!((c.accuracy() - 400.0 / 6.0).abs() < 1e-9);
        let s = c.predicted_shares();
        assert!(
            (s[0] - 100.0 / 3.0).abs() < 1e-9
                && (s[1] - 50.0).abs() < 1e-9
                && (s[2] - 100.0 / 6.0).abs() < 1e-9
        );
    }

    #[test]
    fn quantile_matches_numpy() {
        // numpy.percentile([1, 2, 3, 4, 10], [50, 90, 99]) = [3.0, 7.6, 9.76]
        let v = [4.0, 1.0, 10.0, 3.0, 2.0];
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert!((quantile(&v, 0.9) - 7.6).abs() < 1e-12);
        assert!((quantile(&v, 0.99) - 9.76).abs() < 1e-12);
    }

    /// A last line cut short by a kill is left out; a bad line before it is an error naming it.
    #[test]
    fn a_record_cut_short_at_the_end_is_left_out() {
        let path =
            std::env::temp_dir().join(format!("rnnlab-metrics-{}.jsonl", std::process::id()));
        std::fs::write(&path, "{\"epoch\":1}\n{\"epoch\":2}\n{\"epoch\":3,\"val_a").unwrap();
        let got = read_metrics(&path).unwrap();
        assert_eq!(
            got.iter().map(|m| m.get("epoch")).collect::<Vec<_>>(),
            [Some(1.0), Some(2.0)]
        );
        std::fs::write(&path, "{\"epoch\":1}\n{\"epo\n{\"epoch\":3}\n").unwrap();
        let e = read_metrics(&path).unwrap_err().to_string();
        assert!(e.contains(&format!("{}:2: ", path.display())), "{e}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn metrics_round_trip_through_json() {
        let mut m = EpochMetrics::new();
        m.set("epoch", 3.0);
        m.set("val_acc", 61.5);
        m.set("val_loss", f64::NAN);
        let j = m.to_json();
        assert_eq!(
            j.to_string(),
            r#"{"epoch":3,"val_acc":61.5,"val_loss":null}"#
        );
        let back = EpochMetrics::from_json(&j).unwrap();
        assert_eq!(back.get("val_acc"), Some(61.5));
        assert!(back.get("val_loss").unwrap().is_nan());
    }
}
