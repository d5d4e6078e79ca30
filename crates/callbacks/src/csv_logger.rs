//! `csv_logger`: every epoch's metrics as a CSV table in the run folder, with a stable header
//! (the union of the keys, in order of first appearance), rewritten atomically at each epoch.

use std::sync::Arc;

use rnnlab_core::{
    Callback, Control, EpochMetrics, ParamSpec, PluginParams, PluginSpec, Registry, Result,
    TrainView,
};

/// The CSV text of `rows`: the header is the union of the keys in order of first appearance;
/// a missing or non-finite value is an empty cell.
pub fn to_csv(rows: &[EpochMetrics]) -> String {
    let mut header: Vec<&str> = Vec::new();
    for m in rows {
        for (k, _) in m.iter() {
            if !header.contains(&k) {
                header.push(k);
            }
        }
    }
    let quote = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut out = header
        .iter()
        .map(|h| quote(h))
        .collect::<Vec<_>>()
        .join(",");
    out.push('\n');
    for m in rows {
        let line: Vec<String> = header
            .iter()
            .map(|k| match m.get(k) {
                Some(v) if v.is_finite() => format!("{v}"),
                _ => String::new(),
            })
            .collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// Writes `metrics.csv` (or `file`) into the run folder after every epoch, and again from the
/// complete history at the end. Callbacks listed after it add their metrics of the current
/// epoch only in the end-of-run rewrite: list it last to see them every epoch.
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
            crate::write_atomic(&dir.join(&self.file), to_csv(rows).as_bytes())?;
        }
        Ok(())
    }
}

impl Callback for CsvLogger {
    fn name(&self) -> &str {
        "csv_logger"
    }

    fn on_epoch_end(&mut self, metrics: &mut EpochMetrics, view: &TrainView) -> Result<Control> {
        self.rows.push(metrics.clone());
        self.write(view, &self.rows)?;
        Ok(Control::Continue)
    }

    fn on_train_end(&mut self, history: &[EpochMetrics], view: &TrainView) -> Result<()> {
        self.write(view, history)
    }
}

/// Registers `csv_logger`.
pub fn register(r: &mut Registry) {
    r.callbacks.add(
        PluginSpec {
            name: "csv_logger",
            doc: "every epoch's metrics as CSV in the run folder (header = union of keys), rewritten atomically each epoch",
            params: vec![ParamSpec::new(
                "file",
                "\"metrics.csv\"",
                "file name inside the run folder (no path separators)",
            )],
        },
        Arc::new(|p: &PluginParams| {
            let file = p.str("file")?;
            p.check(
                "file",
                !file.is_empty() && !file.contains(['/', '\\']),
                "must be a plain file name",
            )?;
            Ok(Box::new(csv_logger(file)) as Box<dyn Callback>)
        }),
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
        assert_eq!(to_csv(&[a, b]), "epoch,val_acc,lr\n1,50.5,\n2,,0.001\n");
    }
}
