//! The `Callback` trait (after Lightning): hooks into the one training loop.

use std::path::Path;

use crate::{EpochMetrics, Evaluation, Grads, Params, RecurrentWeight, Result, StateDict};

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
    /// This epoch's validation evaluation (in `on_epoch_end`, when there is a validation split).
    pub val: Option<&'a Evaluation>,
    /// This epoch's test evaluation (in `on_epoch_end`, when there is a test split).
    pub test: Option<&'a Evaluation>,
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

    /// Before the first epoch.
    fn on_train_start(&mut self, _view: &TrainView) -> Result<()> {
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

    /// After the last epoch, with every epoch's metrics.
    fn on_train_end(&mut self, _history: &[EpochMetrics], _view: &TrainView) -> Result<()> {
        Ok(())
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
