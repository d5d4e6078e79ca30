//! `model_checkpoint`: the model's weights in the run folder's `checkpoints/` (Lightning's
//! ModelCheckpoint): `last.safetensors` after every epoch, `best.safetensors` with
//! `best.json` ({epoch, monitor, mode, value}) whenever `train.monitor` improves. The command
//! line adds it to every run, after the pipeline's callbacks; it is not a pipeline callback.

use rnnlab_core::{
    checkpoint, write_atomic, Callback, EpochMetrics, MetricContext, Mode, Result, StateDict,
    TrainView, Watched, BEST_RECORD, CHECKPOINT_DIR,
};

/// Its name, which also keys its state in a snapshot.
pub const NAME: &str = "model_checkpoint";

/// Writes the last and the best weights; keeps the best monitored value (checkpointed, so a
/// resumed run goes on comparing with it).
#[derive(Clone, Debug)]
pub struct ModelCheckpoint {
    monitor: String,
    mode: Mode,
    best: Option<f64>,
}

/// Keeps the best epoch by `monitor` (a metric name, `train.monitor`), improving in `mode`.
pub fn model_checkpoint(monitor: &str, mode: Mode) -> ModelCheckpoint {
    ModelCheckpoint {
        monitor: monitor.to_string(),
        mode,
        best: None,
    }
}

impl ModelCheckpoint {
    /// The best monitored value so far.
    pub fn best(&self) -> Option<f64> {
        self.best
    }
}

impl Callback for ModelCheckpoint {
    fn name(&self) -> &str {
        NAME
    }

    /// An epoch that ended (its view holds the evaluated weights) in a run with a folder:
    /// `last.safetensors` holds the parameters, and `best.safetensors` the weights evaluated
    /// (averaged under EMA or SWA) when the monitored value improved on the best so far.
    fn on_epoch_logged(&mut self, metrics: &EpochMetrics, view: &TrainView) -> Result<()> {
        let (Some(run_dir), Some(weights)) = (view.run_dir, view.weights) else {
            return Ok(());
        };
        let dir = run_dir.join(CHECKPOINT_DIR);
        checkpoint::save(&view.params.to_map(), &dir.join("last.safetensors"))?;
        let Some(v) = metrics.get(&self.monitor) else {
            return Ok(());
        };
        if self.best.is_none_or(|b| self.mode.better(v, b)) {
            self.best = Some(v);
            checkpoint::save(weights, &dir.join("best.safetensors"))?;
            // Which epoch that is, by which metric: the one definition of "best" that eval and
            // the summary read.
            let record = serde_json::json!({
                "epoch": view.epoch,
                "monitor": self.monitor,
                "mode": self.mode.as_str(),
                "value": v,
            });
            write_atomic(&dir.join(BEST_RECORD), format!("{record:#}\n").as_bytes())?;
        }
        Ok(())
    }

    fn watched_metrics(&self) -> Vec<Watched> {
        vec![Watched::new("train.monitor", self.monitor.clone())]
    }

    fn metric_names(&self, _ctx: &MetricContext) -> Option<Vec<String>> {
        Some(Vec::new())
    }

    fn state_dict(&self) -> Result<StateDict> {
        let mut s = StateDict::new();
        s.insert_scalar("best", self.best.unwrap_or(f64::NAN))?;
        Ok(s)
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        let best = state.scalar("best")?;
        self.best = (!best.is_nan()).then_some(best);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use candle_core::{Device, Tensor, Var};
    use rnnlab_core::Params;

    use super::*;

    fn metrics(acc: f64) -> EpochMetrics {
        let mut m = EpochMetrics::new();
        m.set("val_acc", acc);
        m
    }

    fn w(path: &Path) -> f32 {
        let t = checkpoint::load(path).unwrap();
        t["w"].to_vec1::<f32>().unwrap()[0]
    }

    /// A run folder with its `checkpoints/`, and parameters of one weight `w` = `init`.
    fn setup(init: f32) -> (tempfile::TempDir, std::path::PathBuf, Params, Var) {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join(CHECKPOINT_DIR);
        std::fs::create_dir_all(&ckpt).unwrap();
        let mut params = Params::new();
        let var = Var::from_tensor(&Tensor::new(&[init], &Device::Cpu).unwrap()).unwrap();
        params.insert("w", var.clone(), true).unwrap();
        (dir, ckpt, params, var)
    }

    fn record(dir: &Path) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(BEST_RECORD)).unwrap()).unwrap()
    }

    /// Epochs with val_acc 50, 70, 60: `last` follows the parameters, `best` keeps the evaluated
    /// weights of epoch 2 with its record; a partial record (no evaluated weights) writes
    /// nothing; the best value survives a state round trip.
    #[test]
    fn keeps_the_last_and_the_best_by_the_monitor() {
        let (dir, ckpt, params, var) = setup(0.0);
        let mut cb = model_checkpoint("val_acc", Mode::Max);
        for (epoch, acc) in [(1, 50.0), (2, 70.0), (3, 60.0)] {
            var.set(&Tensor::new(&[epoch as f32], &Device::Cpu).unwrap())
                .unwrap();
            // The evaluated (averaged) weights differ from the parameters: 10 × epoch.
            let avg = BTreeMap::from([(
                "w".to_string(),
                Tensor::new(&[10.0 * epoch as f32], &Device::Cpu).unwrap(),
            )]);
            let view = TrainView {
                weights: Some(&avg),
                ..crate::test_view(&params, epoch, 10 * epoch, Some(dir.path()))
            };
            cb.on_epoch_logged(&metrics(acc), &view).unwrap();
            assert_eq!(w(&ckpt.join("last.safetensors")), epoch as f32);
        }
        assert_eq!(w(&ckpt.join("best.safetensors")), 20.0);
        let r = record(&ckpt);
        assert_eq!(
            (
                r["epoch"].as_u64(),
                r["monitor"].as_str(),
                r["mode"].as_str()
            ),
            (Some(2), Some("val_acc"), Some("max"))
        );
        assert_eq!(r["value"].as_f64(), Some(70.0));

        // A diverged step's partial record: no evaluated weights, no checkpoint.
        var.set(&Tensor::new(&[9f32], &Device::Cpu).unwrap())
            .unwrap();
        let partial = crate::test_view(&params, 4, 40, Some(dir.path()));
        cb.on_epoch_logged(&metrics(99.0), &partial).unwrap();
        assert_eq!(w(&ckpt.join("last.safetensors")), 3.0);
        assert_eq!(cb.best(), Some(70.0));

        // Resumed: 65 is not better than the restored 70, 71 is.
        let mut resumed = model_checkpoint("val_acc", Mode::Max);
        resumed.load_state_dict(&cb.state_dict().unwrap()).unwrap();
        let avg = BTreeMap::from([(
            "w".to_string(),
            Tensor::new(&[0.5f32], &Device::Cpu).unwrap(),
        )]);
        for (epoch, acc, best_epoch) in [(4, 65.0, 2), (5, 71.0, 5)] {
            let view = TrainView {
                weights: Some(&avg),
                ..crate::test_view(&params, epoch, 10 * epoch, Some(dir.path()))
            };
            resumed.on_epoch_logged(&metrics(acc), &view).unwrap();
            assert_eq!(record(&ckpt)["epoch"].as_u64(), Some(best_epoch));
        }
        assert_eq!(w(&ckpt.join("best.safetensors")), 0.5);
    }

    /// Mode min keeps the lowest; a fresh state is "no best yet"; an epoch without the monitored
    /// metric writes only `last`.
    #[test]
    fn min_mode_and_a_missing_metric() {
        let (dir, ckpt, params, _) = setup(1.0);
        let weights = params.to_map();
        let mut cb = model_checkpoint("val_loss", Mode::Min);
        let mut fresh = model_checkpoint("val_loss", Mode::Min);
        fresh.load_state_dict(&cb.state_dict().unwrap()).unwrap();
        assert_eq!(fresh.best(), None);
        let view = TrainView {
            weights: Some(&weights),
            ..crate::test_view(&params, 1, 10, Some(dir.path()))
        };
        cb.on_epoch_logged(&EpochMetrics::new(), &view).unwrap();
        assert!(ckpt.join("last.safetensors").is_file());
        assert!(!ckpt.join("best.safetensors").exists());
        for (loss, best) in [(0.9, 0.9), (1.2, 0.9), (0.4, 0.4)] {
            let mut m = EpochMetrics::new();
            m.set("val_loss", loss);
            cb.on_epoch_logged(&m, &view).unwrap();
            assert_eq!(cb.best(), Some(best));
        }
        assert_eq!(record(&ckpt)["mode"].as_str(), Some("min"));
    }
}
