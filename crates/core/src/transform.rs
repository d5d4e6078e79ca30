//! Gradient transforms (after optax): small steps chained in config order, each with its own state.

use std::collections::BTreeMap;

use candle_core::Tensor;

use crate::{Grads, Params, Result, StateDict};

/// What the trainer knows at the moment a transform runs.
#[derive(Clone, Debug)]
pub struct StepContext {
    /// Optimizer steps taken before this one (0 for the first).
    pub step: usize,
    /// 1-based epoch.
    pub epoch: usize,
    /// The learning rate the scheduler gives for this step.
    pub lr: f64,
}

/// Whether the step goes ahead.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Pass the (transformed) gradients on.
    Update,
    /// Drop this step: no parameter changes; the reason is counted as a skipped step.
    Skip(String),
    /// The gradients were taken into an accumulation (a micro-batch): no parameter changes, no
    /// optimizer step counted, and not a skip.
    Accumulate,
}

/// Figures that transforms report about one step.
#[derive(Clone, Debug, Default)]
pub struct StepReport {
    /// Named figures, e.g. `("clip_global_norm.pre_norm", 7.3)`.
    pub figures: Vec<(String, f64)>,
    /// Set by a clipping transform when it rescaled the gradients.
    pub clipped: bool,
}

/// One link of the gradient chain. After the last link the gradients hold the additive update of
/// each parameter: an optimizer link (adam, sgd) turns gradients into `-lr * direction`.
pub trait GradientTransform: Send {
    /// The registry name.
    fn name(&self) -> &str;

    /// Sets up state for these parameters (called once before training or loading state).
    fn init(&mut self, _params: &Params) -> Result<()> {
        Ok(())
    }

    /// Transforms `grads` in place.
    fn apply(
        &mut self,
        grads: &mut Grads,
        params: &Params,
        ctx: &StepContext,
        report: &mut StepReport,
    ) -> Result<Outcome>;

    /// Runs after the parameters were written (constraints, weight averaging).
    fn after_step(&mut self, _params: &Params, _ctx: &StepContext) -> Result<()> {
        Ok(())
    }

    /// Called instead of [`GradientTransform::apply`] for a step whose loss is NaN or
    /// infinite: `Some(reason)` drops the step (counted as skipped). When no link drops it the
    /// trainer stops the run: it never applies an update computed from a non-finite loss.
    fn on_nonfinite_loss(
        &mut self,
        _loss: f64,
        _ctx: &StepContext,
        _report: &mut StepReport,
    ) -> Result<Option<String>> {
        Ok(None)
    }

    /// The learning rate this link was configured with, for an optimizer link.
    fn base_lr(&self) -> Option<f64> {
        None
    }

    /// Averaged weights (EMA, SWA) by parameter name, when this link keeps them and they are
    /// ready; the trainer then evaluates with them and logs the raw weights' figures as `raw_*`.
    fn averaged_params(&self) -> Result<Option<BTreeMap<String, Tensor>>> {
        Ok(None)
    }

    /// Whether this link keeps averaged weights ([`GradientTransform::averaged_params`]): the
    /// run then also logs the raw weights' `raw_val_*` / `raw_test_*`.
    fn averages_weights(&self) -> bool {
        false
    }

    /// The names of the figures this link reports in [`StepReport::figures`] (logged as epoch
    /// means). `None` (the default): not listed, so any name under `<name>.` is taken to be one.
    fn metric_names(&self) -> Option<Vec<String>> {
        None
    }

    /// The state to checkpoint.
    fn state_dict(&self) -> Result<StateDict> {
        Ok(StateDict::new())
    }

    /// Restores [`GradientTransform::state_dict`]'s output.
    fn load_state_dict(&mut self, _state: &StateDict) -> Result<()> {
        Ok(())
    }
}

/// The transforms of a pipeline, applied in order.
#[derive(Default)]
pub struct Chain {
    links: Vec<Box<dyn GradientTransform>>,
}

impl Chain {
    /// A chain of these links, in order.
    pub fn new(links: Vec<Box<dyn GradientTransform>>) -> Self {
        Chain { links }
    }

    /// The links' names, in order.
    pub fn names(&self) -> Vec<String> {
        self.links.iter().map(|l| l.name().to_string()).collect()
    }

    /// Whether a link keeps averaged weights.
    pub fn averages_weights(&self) -> bool {
        self.links.iter().any(|l| l.averages_weights())
    }

    /// Each link's name with the figure names it reports ([`GradientTransform::metric_names`]).
    pub fn metric_names(&self) -> Vec<(String, Option<Vec<String>>)> {
        self.links
            .iter()
            .map(|l| (l.name().to_string(), l.metric_names()))
            .collect()
    }

    /// The base learning rate of the first optimizer link.
    pub fn base_lr(&self) -> Option<f64> {
        self.links.iter().find_map(|l| l.base_lr())
    }

    /// Initialises every link.
    pub fn init(&mut self, params: &Params) -> Result<()> {
        self.links.iter_mut().try_for_each(|l| l.init(params))
    }

    /// Applies the links in order; stops at the first that skips or accumulates.
    pub fn apply(
        &mut self,
        grads: &mut Grads,
        params: &Params,
        ctx: &StepContext,
        report: &mut StepReport,
    ) -> Result<Outcome> {
        for l in self.links.iter_mut() {
            match l.apply(grads, params, ctx, report)? {
                Outcome::Update => {}
                other => return Ok(other),
            }
            // A link that did arithmetic with a parameter (a tracked variable) hands on tensors
            // with op history; cut it so no later link keeps a graph in its state.
            for (_, g) in grads.iter_mut() {
                *g = g.detach();
            }
        }
        Ok(Outcome::Update)
    }

    /// Asks the links in order whether to drop a step whose loss is not finite
    /// ([`GradientTransform::on_nonfinite_loss`]); the first that does decides.
    pub fn on_nonfinite_loss(
        &mut self,
        loss: f64,
        ctx: &StepContext,
        report: &mut StepReport,
    ) -> Result<Option<Outcome>> {
        for l in self.links.iter_mut() {
            if let Some(reason) = l.on_nonfinite_loss(loss, ctx, report)? {
                return Ok(Some(Outcome::Skip(reason)));
            }
        }
        Ok(None)
    }

    /// The averaged weights of the last link that has them.
    pub fn averaged_params(&self) -> Result<Option<BTreeMap<String, Tensor>>> {
        let mut out = None;
        for l in &self.links {
            if let Some(a) = l.averaged_params()? {
                out = Some(a);
            }
        }
        Ok(out)
    }

    /// Runs every link's `after_step`.
    pub fn after_step(&mut self, params: &Params, ctx: &StepContext) -> Result<()> {
        self.links
            .iter_mut()
            .try_for_each(|l| l.after_step(params, ctx))
    }

    /// Every link's state, keyed `"{index}.{name}.{key}"`.
    pub fn state_dict(&self) -> Result<StateDict> {
        let mut out = StateDict::new();
        for (i, l) in self.links.iter().enumerate() {
            out.extend_prefixed(&format!("{i}.{}", l.name()), l.state_dict()?);
        }
        Ok(out)
    }

    /// Restores [`Chain::state_dict`]'s output.
    pub fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        for (i, l) in self.links.iter_mut().enumerate() {
            let prefix = format!("{i}.{}", l.name());
            l.load_state_dict(&state.sub(&prefix))?;
        }
        Ok(())
    }
}
