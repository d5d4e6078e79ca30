//! `jsonl_logger`: one JSON line per training step (loss, gradient norm, learning rate, skipped,
//! clipped) in the run folder, for looking at what happens within an epoch.

use std::io::Write;
use std::sync::Arc;

use rnnlab_core::{
    BatchStats, Callback, Control, EpochMetrics, Error, ParamSpec, PluginParams, PluginSpec,
    Registry, Result, TrainView,
};

/// Appends `{"epoch", "step", "loss", "grad_norm", "lr", "skipped", "clipped", "batch_size"}`
/// every `every` steps to `file` (default `steps.jsonl`) in the run folder, flushed each epoch.
#[derive(Debug)]
pub struct JsonlLogger {
    /// File name inside the run folder.
    pub file: String,
    /// Log every this many steps.
    pub every: usize,
    buf: String,
    started: bool,
}

/// One step's record.
pub fn step_record(epoch: usize, step: usize, s: &BatchStats) -> serde_json::Value {
    let num = |v: f64| {
        if v.is_finite() {
            serde_json::Value::from(v)
        } else {
            serde_json::Value::Null
        }
    };
    serde_json::json!({
        "epoch": epoch,
        "step": step,
        "loss": num(s.loss),
        "grad_norm": num(s.grad_norm),
        "lr": num(s.lr),
        "skipped": s.skipped,
        "clipped": s.clipped,
        "batch_size": s.batch_size,
    })
}

impl JsonlLogger {
    fn flush(&mut self, view: &TrainView) -> Result<()> {
        let Some(dir) = view.run_dir else {
            self.buf.clear();
            return Ok(());
        };
        let path = dir.join(&self.file);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(self.started)
            .write(true)
            .truncate(!self.started)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        f.write_all(self.buf.as_bytes())
            .map_err(|e| Error::io(&path, e))?;
        self.started = true;
        self.buf.clear();
        Ok(())
    }
}

impl Callback for JsonlLogger {
    fn name(&self) -> &str {
        "jsonl_logger"
    }

    fn on_batch_end(&mut self, stats: &BatchStats, view: &TrainView) -> Result<()> {
        if view.step.is_multiple_of(self.every.max(1)) {
            self.buf
                .push_str(&step_record(view.epoch, view.step, stats).to_string());
            self.buf.push('\n');
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, _metrics: &mut EpochMetrics, view: &TrainView) -> Result<Control> {
        self.flush(view)?;
        Ok(Control::Continue)
    }
}

/// Registers `jsonl_logger`.
pub fn register(r: &mut Registry) {
    r.callbacks.add(
        PluginSpec {
            name: "jsonl_logger",
            doc: "one JSON line per training step (loss, grad_norm, lr, skipped, clipped) in the run folder",
            params: vec![
                ParamSpec::new("file", "\"steps.jsonl\"", "file name inside the run folder (no path separators)"),
                ParamSpec::new("every", "1", "log every this many steps (>= 1)"),
            ],
        },
        Arc::new(|p: &PluginParams| {
            let file = p.str("file")?;
            p.check(
                "file",
                !file.is_empty() && !file.contains(['/', '\\']) && file != "metrics.jsonl",
                "must be a plain file name other than metrics.jsonl",
            )?;
            let every = p.usize("every")?;
            p.check("every", every >= 1, "must be at least 1")?;
            Ok(Box::new(JsonlLogger {
                file: file.to_string(),
                every,
                buf: String::new(),
                started: false,
            }) as Box<dyn Callback>)
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_record() {
        let s = BatchStats {
            loss: 0.5,
            grad_norm: f64::INFINITY,
            lr: 0.001,
            skipped: false,
            clipped: true,
            batch_size: 32,
        };
        assert_eq!(
            step_record(2, 17, &s).to_string(),
            r#"{"epoch":2,"step":17,"loss":0.5,"grad_norm":null,"lr":0.001,"skipped":false,"clipped":true,"batch_size":32}"#
        );
    }
}
