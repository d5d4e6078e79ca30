//! The `Scheduler` trait: it owns the learning rate.

use crate::{EpochMetrics, Result, StateDict, Watched};

/// When a schedule advances.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    /// Once per optimizer step.
    Step,
    /// Once per epoch.
    Epoch,
}

/// Gives the learning rate of every step. Built from the optimizer's base learning rate.
pub trait Scheduler: Send {
    /// Whether [`Scheduler::lr`] counts steps or epochs.
    fn interval(&self) -> Interval;

    /// The learning rate at position `t`: optimizer steps taken so far for step-interval
    /// schedules, epochs completed so far for epoch-interval ones.
    fn lr(&self, t: usize) -> f64;

    /// Called after each epoch's evaluation, for metric-driven schedules.
    fn on_epoch_end(&mut self, _metrics: &EpochMetrics) -> Result<()> {
        Ok(())
    }

    /// The metrics [`Scheduler::on_epoch_end`] reads (e.g. a plateau's `monitor`), with their
    /// config paths; checked against the names the run logs before anything is written.
    fn watched_metrics(&self) -> Vec<Watched> {
        Vec::new()
    }

    /// The state to checkpoint.
    fn state_dict(&self) -> Result<StateDict> {
        Ok(StateDict::new())
    }

    /// Restores [`Scheduler::state_dict`]'s output.
    fn load_state_dict(&mut self, _state: &StateDict) -> Result<()> {
        Ok(())
    }
}
