//! `csv_logger`: every epoch's metrics as a CSV table in the run folder, with a stable header
//! (the union of the keys, in order of first appearance), rewritten atomically at each epoch.

use candle_core::{Device, Tensor};
use rnnlab_core::{
    check_value, Callback, EpochMetrics, Error, PluginConfig, Registry, Result, StateDict,
    TrainView,
};
use serde::{Deserialize, Serialize};

/// The CSV text of `rows` (written with the `csv` crate's writer): the header is the union of
/// the keys in order of first appearance; a missing or non-finite value is an empty cell.
pub fn to_csv(rows: &[EpochMetrics]) -> Result<String> {
    let mut header: Vec<&str> = Vec::new();
    for m in rows {
        for (k, _) in m.iter() {
            if !header.contains(&k) {
                header.push(k);
            }
        }
    }
    let bad = |e: csv::Error| Error::Mismatch(format!("metrics.csv: {e}"));
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    w.write_record(&header).map_err(bad)?;
    for m in rows {
        w.write_record(header.iter().map(|k| match m.get(k) {
            Some(v) if v.is_finite() => format!("{v}"),
            _ => String::new(),
        }))
        .map_err(bad)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::Mismatch(format!("metrics.csv: {e}")))?;
    String::from_utf8(bytes).map_err(|e| Error::Mismatch(format!("metrics.csv: {e}")))
}

/// Writes `metrics.csv` (or `file`) into the run folder after every epoch, once every callback
/// has added its figures of the epoch (so its place in the config does not matter), and again
/// from the complete history at the end. Its rows are checkpointed, so a resumed run's file
/// keeps the epochs before the resume.
#[derive(Clone, Debug)]
pub struct CsvLogger {
    /// File name inside the run folder.
    pub file: String,
    rows: Vec<EpochMetrics>,
}

/// A `csv_logger` writing `file` in the run folder.
pub fn csv_logger(file: &str) -> CsvLogger {
    CsvLogger {
        file: file.to_string(),
        rows: Vec::new(),
    }
}

impl CsvLogger {
    fn write(&self, view: &TrainView, rows: &[EpochMetrics]) -> Result<()> {
        if let Some(dir) = view.run_dir {
            crate::write_atomic(&dir.join(&self.file), to_csv(rows)?.as_bytes())?;
        }
        Ok(())
    }
}

impl Callback for CsvLogger {
    fn name(&self) -> &str {
        "csv_logger"
    }

    fn on_epoch_logged(&mut self, metrics: &EpochMetrics, view: &TrainView) -> Result<()> {
        self.rows.push(metrics.clone());
        self.write(view, &self.rows)
    }

    fn on_train_end(&mut self, history: &[EpochMetrics], view: &TrainView) -> Result<()> {
        self.write(view, history)
    }

    fn state_dict(&self) -> Result<StateDict> {
        let json = serde_json::Value::Array(self.rows.iter().map(EpochMetrics::to_json).collect());
        let bytes = json.to_string().into_bytes();
        let n = bytes.len();
        let mut s = StateDict::new();
        s.insert("rows", Tensor::from_vec(bytes, n, &Device::Cpu)?);
        Ok(s)
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        let Some(t) = state.tensors.get("rows") else {
            self.rows.clear();
            return Ok(());
        };
        let bytes = t.to_vec1::<u8>()?;
        let bad = |why: String| Error::Mismatch(format!("csv_logger state `rows`: {why}"));
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        self.rows = json
            .as_array()
            .ok_or_else(|| bad("not a JSON array".into()))?
            .iter()
            .map(|v| EpochMetrics::from_json(v).ok_or_else(|| bad(format!("not an object: {v}"))))
            .collect::<Result<_>>()?;
        Ok(())
    }
}

/// The keys of `type = "csv_logger"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CsvLoggerConfig {
    /// File name inside the run folder (no path separators).
    pub file: String,
}

impl Default for CsvLoggerConfig {
    fn default() -> Self {
        CsvLoggerConfig {
            file: "metrics.csv".into(),
        }
    }
}

impl PluginConfig for CsvLoggerConfig {
    fn validate(&self, at: &str) -> Result<()> {
        let f = &self.file;
        let plain = !f.is_empty() && !f.contains(['/', '\\']);
        check_value(at, "file", f, plain, "must be a plain file name")
    }
}

/// Registers `csv_logger`.
pub fn register(r: &mut Registry) {
    r.callbacks.register(
        "csv_logger",
        "every epoch's metrics as CSV in the run folder (header = union of keys), rewritten atomically each epoch",
        CsvLoggerConfig::default(),
        |c| Ok(Box::new(csv_logger(&c.file)) as Box<dyn Callback>),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_the_union_and_gaps_are_empty() {
        let mut a = EpochMetrics::new();
        a.set("epoch", 1.0);
        a.set("val_acc", 50.5);
        let mut b = EpochMetrics::new();
        b.set("epoch", 2.0);
        b.set("lr", 0.001);
        b.set("val_acc", f64::NAN);
        assert_eq!(
            to_csv(&[a, b]).unwrap(),
            "epoch,val_acc,lr\n1,50.5,\n2,,0.001\n"
        );
        // A name with the delimiter or a quote is quoted, the quote doubled.
        let mut c = EpochMetrics::new();
        c.set("a,b", 1.0);
        c.set("say \"x\"", 2.0);
        assert_eq!(to_csv(&[c]).unwrap(), "\"a,b\",\"say \"\"x\"\"\"\n1,2\n");
    }

    /// Listed before the `predictions` monitor, the logger still writes the monitor's figures of
    /// the same epoch: the trainer calls every `on_epoch_end` (config order), then every
    /// `on_epoch_logged` (see core's `on_epoch_logged_runs_after_every_on_epoch_end`). Its rows
    /// survive a checkpoint, so a resumed run's file keeps the earlier epochs.
    #[test]
    fn a_logger_listed_before_a_monitor_writes_its_figures_and_resumes() {
        use rnnlab_core::{Confusion, Evaluation, Params};
        let dir = tempfile::tempdir().unwrap();
        let params = Params::new();
        // 10 val examples: 6 of class 0, 4 of class 1; predicted 7 as 0 and 3 as 1.
        let val = Evaluation {
            loss: 0.6,
            confusion: Confusion {
                counts: vec![vec![5, 1], vec![2, 2]],
            },
        };
        let view = |epoch| TrainView {
            params: &params,
            recurrent: &[],
            epoch,
            step: 10 * epoch,
            run_dir: Some(dir.path()),
            val: Some(&val),
            test: None,
            weights: None,
        };
        let mut callbacks: Vec<Box<dyn Callback>> = vec![
            Box::new(csv_logger("metrics.csv")),
            Box::new(crate::predictions::Predictions::default()),
        ];
        let epoch = |callbacks: &mut Vec<Box<dyn Callback>>, e: usize| {
            let mut m = EpochMetrics::new();
            m.set("epoch", e as f64);
            for cb in callbacks.iter_mut() {
                cb.on_epoch_end(&mut m, &view(e)).unwrap();
            }
            for cb in callbacks.iter_mut() {
                cb.on_epoch_logged(&m, &view(e)).unwrap();
            }
        };
        epoch(&mut callbacks, 1);
        let csv = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
        assert_eq!(
            csv,
            "epoch,predictions.val.share.0,predictions.val.share.1,predictions.val.true_share.0,\
             predictions.val.true_share.1,predictions.val.max_share\n1,70,30,60,40,70\n"
        );

        // Resume after epoch 1 into fresh callbacks: epoch 2 is appended to epoch 1's row.
        let mut resumed: Vec<Box<dyn Callback>> = vec![
            Box::new(csv_logger("metrics.csv")),
            Box::new(crate::predictions::Predictions::default()),
        ];
        for (new, old) in resumed.iter_mut().zip(&callbacks) {
            new.load_state_dict(&old.state_dict().unwrap()).unwrap();
        }
        drop(callbacks);
        epoch(&mut resumed, 2);
        // From epoch 2 the monitor adds the shift since epoch 1 (0 here): a new column.
        let csv = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3, "{csv}");
        assert!(lines[0].ends_with(",predictions.val.max_shift"), "{csv}");
        assert_eq!(lines[1], "1,70,30,60,40,70,");
        assert_eq!(lines[2], "2,70,30,60,40,70,0");
    }
}
