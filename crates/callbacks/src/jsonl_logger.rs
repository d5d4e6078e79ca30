//! `jsonl_logger`: one JSON line per training step (loss, gradient norm, learning rate, skipped,
//! clipped) in the run folder, for looking at what happens within an epoch.

use std::io::{Seek, SeekFrom, Write};

use rnnlab_core::{
    check_value, BatchStats, Callback, EpochMetrics, Error, PluginConfig, Registry, Result,
    StateDict, TrainView,
};
use serde::{Deserialize, Serialize};

/// Appends `{"epoch", "step", "loss", "grad_norm", "lr", "skipped", "clipped", "batch_size"}`
/// every `every` steps to `file` (default `steps.jsonl`) in the run folder, flushed at the end of
/// each epoch (after every callback's `on_epoch_end`). The bytes written are checkpointed: a
/// resumed run cuts the file back to the snapshot's epoch and appends from there.
#[derive(Debug)]
pub struct JsonlLogger {
    /// File name inside the run folder.
    pub file: String,
    /// Log every this many steps.
    pub every: usize,
    buf: String,
    started: bool,
    written: u64,
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
            .write(true)
            .truncate(!self.started)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // Lines after the last checkpointed byte belong to an epoch that is being redone.
        f.set_len(self.written).map_err(|e| Error::io(&path, e))?;
        f.seek(SeekFrom::Start(self.written))
            .map_err(|e| Error::io(&path, e))?;
        f.write_all(self.buf.as_bytes())
            .map_err(|e| Error::io(&path, e))?;
        self.started = true;
        self.written += self.buf.len() as u64;
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

    fn on_epoch_logged(&mut self, _metrics: &EpochMetrics, view: &TrainView) -> Result<()> {
        self.flush(view)
    }

    /// The bytes written, and the lines of the epoch not written yet (empty at an epoch end; a
    /// mid-epoch snapshot keeps them).
    fn state_dict(&self) -> Result<StateDict> {
        let mut s = StateDict::new();
        s.insert_scalar("written", self.written as f64)?;
        s.insert_bytes("buf", self.buf.clone().into_bytes())?;
        Ok(s)
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        self.written = match state.tensors.get("written") {
            Some(_) => state.scalar("written")? as u64,
            None => 0,
        };
        self.started = self.written > 0;
        self.buf = String::from_utf8(state.bytes("buf")?)
            .map_err(|e| Error::Mismatch(format!("jsonl_logger state `buf`: {e}")))?;
        Ok(())
    }
}

/// The keys of `type = "jsonl_logger"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonlLoggerConfig {
    /// File name inside the run folder (no path separators).
    pub file: String,
    /// Log every this many steps (>= 1).
    pub every: usize,
}

impl Default for JsonlLoggerConfig {
    fn default() -> Self {
        JsonlLoggerConfig {
            file: "steps.jsonl".into(),
            every: 1,
        }
    }
}

impl PluginConfig for JsonlLoggerConfig {
    fn validate(&self, at: &str) -> Result<()> {
        let f = &self.file;
        let plain = !f.is_empty() && !f.contains(['/', '\\']) && f != rnnlab_core::METRICS_FILE;
        check_value(
            at,
            "file",
            f,
            plain,
            "must be a plain file name other than metrics.jsonl",
        )?;
        check_value(
            at,
            "every",
            &self.every,
            self.every >= 1,
            "must be at least 1",
        )
    }
}

/// Registers `jsonl_logger`.
pub fn register(r: &mut Registry) {
    r.callbacks.register(
        "jsonl_logger",
        "one JSON line per training step (loss, grad_norm, lr, skipped, clipped) in the run folder",
        JsonlLoggerConfig::default(),
        |c| {
            Ok(Box::new(JsonlLogger {
                file: c.file,
                every: c.every,
                buf: String::new(),
                started: false,
                written: 0,
            }) as Box<dyn Callback>)
        },
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

    /// Steps are written when the epoch is logged; a logger restored from epoch 1's state cuts
    /// the file back to epoch 1 before writing epoch 2 again (here the first process wrote
    /// epoch 2 and died before its snapshot).
    #[test]
    fn a_resumed_logger_rewrites_the_epochs_after_its_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let params = rnnlab_core::Params::new();
        let view = |epoch, step| crate::test_view(&params, epoch, step, Some(dir.path()));
        let stats = |loss| BatchStats {
            loss,
            grad_norm: 1.0,
            lr: 0.1,
            skipped: false,
            clipped: false,
            batch_size: 4,
        };
        let new = || JsonlLogger {
            file: "steps.jsonl".into(),
            every: 1,
            buf: String::new(),
            started: false,
            written: 0,
        };
        let m = EpochMetrics::new();
        let epoch = |logger: &mut JsonlLogger, epoch: usize, steps: [usize; 2], loss: f64| {
            for s in steps {
                logger.on_batch_end(&stats(loss), &view(epoch, s)).unwrap();
            }
            logger.on_epoch_logged(&m, &view(epoch, steps[1])).unwrap();
        };
        let path = dir.path().join("steps.jsonl");
        let read = || {
            std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap())
                })
                .collect::<Vec<_>>()
        };
        let mut a = new();
        epoch(&mut a, 1, [1, 2], 1.0);
        let snapshot = a.state_dict().unwrap();
        epoch(&mut a, 2, [3, 4], 2.0);
        assert_eq!(read(), [(1, 1.0), (2, 1.0), (3, 2.0), (4, 2.0)]);

        let mut b = new();
        b.load_state_dict(&snapshot).unwrap();
        epoch(&mut b, 2, [3, 4], 9.0);
        assert_eq!(read(), [(1, 1.0), (2, 1.0), (3, 9.0), (4, 9.0)]);
    }
}
