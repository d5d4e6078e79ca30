//! The `Callback` trait (after Lightning): hooks into the one training loop.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::Tensor;

use crate::{
    EpochMetrics, Evaluation, Grads, MetricContext, Params, RecurrentWeight, Result, StateDict,
    Watched,
};

/// Whether training goes on after an epoch.
#[derive(Clone, Debug, PartialEq)]
pub enum Control {
    /// Keep training.
    Continue,
    /// Stop after this epoch, for the given reason.
    Stop(String),
}

/// What a callback may look at.
pub struct TrainView<'a> {
    /// The model's parameters.
    pub params: &'a Params,
    /// The model's recurrent matrices.
    pub recurrent: &'a [RecurrentWeight],
    /// 1-based epoch (0 before the first).
    pub epoch: usize,
    /// Optimizer steps taken so far.
    pub step: usize,
    /// The run folder, when the run writes one.
    pub run_dir: Option<&'a Path>,
    /// This epoch's validation evaluation, when there is a validation split: in `on_epoch_end`
    /// and `on_epoch_logged`; in `on_train_end`, the last epoch's.
    pub val: Option<&'a Evaluation>,
    /// This epoch's test evaluation, when there is a test split (in the same hooks as `val`).
    pub test: Option<&'a Evaluation>,
    /// The weights the epoch was evaluated with, by parameter name (the averaged ones when a
    /// weight hook averages, else the parameters): in `on_epoch_end` and `on_epoch_logged` of an
    /// epoch that ended (not of the partial record a diverged step logs).
    pub weights: Option<&'a BTreeMap<String, Tensor>>,
}

/// Figures of one training batch.
#[derive(Clone, Debug)]
pub struct BatchStats {
    /// Mean loss of the batch.
    pub loss: f64,
    /// Global L2 norm of the raw gradients.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Whether the step was skipped by a transform.
    pub skipped: bool,
    /// Whether a transform clipped the gradients.
    pub clipped: bool,
    /// Sequences in the batch.
    pub batch_size: usize,
}

/// A hook into training. Every method has a do-nothing default.
pub trait Callback: Send {
    /// The registry name.
    fn name(&self) -> &str;

    /// Before the first epoch, with the metrics of the epochs a resumed run already has (none
    /// for a new run).
    fn on_train_start(&mut self, _history: &[EpochMetrics], _view: &TrainView) -> Result<()> {
        Ok(())
    }

    /// When an epoch's training batches are drawn: `batches` in all, `done` of them already
    /// trained (a run resumed mid-epoch).
    fn on_epoch_start(&mut self, _batches: usize, _done: usize, _view: &TrainView) -> Result<()> {
        Ok(())
    }

    /// After each backward pass, with the raw gradients (before any transform).
    fn on_after_backward(&mut self, _grads: &Grads, _view: &TrainView) -> Result<()> {
        Ok(())
    }

    /// After each optimizer step.
    fn on_batch_end(&mut self, _stats: &BatchStats, _view: &TrainView) -> Result<()> {
        Ok(())
    }

    /// After each epoch's evaluation; may add metrics, and may stop training.
    fn on_epoch_end(&mut self, _metrics: &mut EpochMetrics, _view: &TrainView) -> Result<Control> {
        Ok(Control::Continue)
    }

    /// After every callback's [`Callback::on_epoch_end`] of the epoch, whatever their order, with
    /// the epoch's complete metrics (what `metrics.jsonl` gets): where loggers write.
    fn on_epoch_logged(&mut self, _metrics: &EpochMetrics, _view: &TrainView) -> Result<()> {
        Ok(())
    }

    /// After the last epoch, with every epoch's metrics.
    fn on_train_end(&mut self, _history: &[EpochMetrics], _view: &TrainView) -> Result<()> {
        Ok(())
    }

    /// The metrics this callback reads from each epoch's record (e.g. its `monitor`), with their
    /// config paths; checked against the names the run logs before anything is written.
    fn watched_metrics(&self) -> Vec<Watched> {
        Vec::new()
    }

    /// The names this callback adds to the epoch records of a run like `ctx` (in some epoch).
    /// `None` (the default): not listed, so any name under `<name>.` is taken to be one of them.
    fn metric_names(&self, _ctx: &MetricContext) -> Option<Vec<String>> {
        None
    }

    /// The state to checkpoint.
    fn state_dict(&self) -> Result<StateDict> {
        Ok(StateDict::new())
    }

    /// Restores [`Callback::state_dict`]'s output.
    fn load_state_dict(&mut self, _state: &StateDict) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use candle_core::{DType, Device, Tensor, Var};

    use super::*;
    use crate::{
        Batch, BatchSource, Chain, EvalSplit, GradientTransform, Interval, Link, Model, Outcome,
        Scheduler, StepContext, StepReport, Trainer, TrainerConfig,
    };

    /// Logits `[B, 2]`: the row of `w` of each sequence's first token.
    struct FirstToken {
        params: Params,
    }

    impl Model for FirstToken {
        fn forward(&self, batch: &Batch, _train: bool, _rng: &mut crate::Rng) -> Result<Tensor> {
            let first = batch.ids.narrow(1, 0, 1)?.squeeze(1)?;
            Ok(self.params.tensor("w")?.index_select(&first, 0)?)
        }

        fn params(&self) -> &Params {
            &self.params
        }
    }

    struct Sgd;

    impl GradientTransform for Sgd {
        fn name(&self) -> &str {
            "sgd"
        }

        fn apply(
            &mut self,
            grads: &mut Grads,
            _params: &Params,
            ctx: &StepContext,
            _report: &mut StepReport,
        ) -> Result<Outcome> {
            for (_, g) in grads.iter_mut() {
                *g = g.affine(-ctx.lr, 0.0)?;
            }
            Ok(Outcome::Update)
        }
    }

    struct Constant;

    impl Scheduler for Constant {
        fn interval(&self) -> Interval {
            Interval::Step
        }

        fn lr(&self, _t: usize) -> f64 {
            0.5
        }
    }

    /// Token 0 is class 0, token 1 class 1; the same batch for every split.
    struct Tokens;

    impl Tokens {
        fn batch() -> Result<Batch> {
            Ok(Batch {
                ids: Tensor::new(&[[0u32, 1], [1, 0], [1, 1]], &Device::Cpu)?,
                lengths: vec![2, 2, 2],
                labels: Tensor::new(&[0u32, 1, 1], &Device::Cpu)?,
            })
        }
    }

    impl BatchSource for Tokens {
        fn train_batches(&mut self, _epoch: usize, _rng: &mut crate::Rng) -> Result<Vec<Batch>> {
            Ok(vec![Self::batch()?])
        }

        fn eval_batches(&self, _split: EvalSplit) -> Result<Vec<Batch>> {
            Ok(vec![Self::batch()?])
        }

        fn num_classes(&self) -> usize {
            2
        }
    }

    /// Adds `monitor.figure` = 10 × epoch in `on_epoch_end`.
    struct Monitor;

    impl Callback for Monitor {
        fn name(&self) -> &str {
            "monitor"
        }

        fn on_epoch_end(&mut self, m: &mut EpochMetrics, view: &TrainView) -> Result<Control> {
            m.set("monitor.figure", 10.0 * view.epoch as f64);
            Ok(Control::Continue)
        }
    }

    /// What a hook saw: (hook, epoch, monitor.figure, val present).
    type Seen = (&'static str, usize, Option<f64>, bool);

    /// Records what each hook saw.
    struct Logger(Arc<Mutex<Vec<Seen>>>);

    impl Callback for Logger {
        fn name(&self) -> &str {
            "logger"
        }

        fn on_epoch_start(&mut self, batches: usize, done: usize, view: &TrainView) -> Result<()> {
            // The batch counts ride in the figure slot: batches × 10 + done.
            let seen = (
                "start",
                view.epoch,
                Some((batches * 10 + done) as f64),
                view.val.is_some(),
            );
            self.0.lock().unwrap().push(seen);
            Ok(())
        }

        fn on_epoch_end(&mut self, m: &mut EpochMetrics, view: &TrainView) -> Result<Control> {
            let seen = (
                "end",
                view.epoch,
                m.get("monitor.figure"),
                view.val.is_some(),
            );
            self.0.lock().unwrap().push(seen);
            Ok(Control::Continue)
        }

        fn on_epoch_logged(&mut self, m: &EpochMetrics, view: &TrainView) -> Result<()> {
            let seen = (
                "logged",
                view.epoch,
                m.get("monitor.figure"),
                view.val.is_some(),
            );
            self.0.lock().unwrap().push(seen);
            Ok(())
        }

        fn on_train_end(&mut self, _h: &[EpochMetrics], view: &TrainView) -> Result<()> {
            let seen = ("train_end", view.epoch, None, view.val.is_some());
            self.0.lock().unwrap().push(seen);
            Ok(())
        }
    }

    /// Each epoch starts with `on_epoch_start` (one batch, none done). A logger listed before a
    /// monitor sees the monitor's figure of the same epoch in `on_epoch_logged` (in
    /// `on_epoch_end` it runs too early to), and `on_train_end` gets the last evaluations.
    #[test]
    fn on_epoch_logged_runs_after_every_on_epoch_end() {
        let mut params = Params::new();
        let w =
            Var::from_tensor(&Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap()).unwrap();
        params.insert("w", w, true).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let callbacks: Vec<Box<dyn Callback>> =
            vec![Box::new(Logger(seen.clone())), Box::new(Monitor)];
        let mut trainer = Trainer::new(
            Box::new(FirstToken { params }),
            Chain::new(vec![Link::gradients(Sgd)]),
            Box::new(Constant),
            callbacks,
            TrainerConfig {
                epochs: 2,
                ..TrainerConfig::default()
            },
        )
        .unwrap();
        let fit = trainer.fit(&mut Tokens, &mut crate::seeded(0)).unwrap();
        assert_eq!(fit.history[1].get("monitor.figure"), Some(20.0));
        assert_eq!(
            *seen.lock().unwrap(),
            [
                ("start", 1, Some(10.0), false),
                ("end", 1, None, true),
                ("logged", 1, Some(10.0), true),
                ("start", 2, Some(10.0), false),
                ("end", 2, None, true),
                ("logged", 2, Some(20.0), true),
                ("train_end", 2, None, true),
            ]
        );
    }
}
