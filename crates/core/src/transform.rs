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
    /// The step's loss. When it is NaN or infinite, a link that drops the step (skip_nonfinite,
    /// placed first) says so with [`Outcome::Skip`]; if none does, the trainer stops the run and
    /// never applies the update.
    pub loss: f64,
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

    /// The state to checkpoint.
    fn state_dict(&self) -> Result<StateDict> {
        Ok(StateDict::new())
    }

    /// Restores [`GradientTransform::state_dict`]'s output.
    fn load_state_dict(&mut self, _state: &StateDict) -> Result<()> {
        Ok(())
    }
}

/// Acts on the parameters after each optimizer step that changed them, as Lightning's weight
/// averaging callback does: a constraint rewrites them (`max_singular_value`), an average keeps
/// its own copy that the trainer evaluates with (`ema`, `swa`). Listed in `optim.transforms` with
/// the gradient transforms; it sees no gradients.
pub trait WeightHook: Send {
    /// The registry name.
    fn name(&self) -> &str;

    /// Sets up state for these parameters (called once before training or loading state).
    fn init(&mut self, _params: &Params) -> Result<()> {
        Ok(())
    }

    /// Runs after the parameters were written.
    fn after_step(&mut self, params: &Params, ctx: &StepContext) -> Result<()>;

    /// Whether this hook keeps averaged weights: the run then evaluates with them
    /// ([`WeightHook::eval_weights`]) and also logs the raw weights' `raw_val_*` / `raw_test_*`.
    fn averages_weights(&self) -> bool {
        false
    }

    /// The averaged weights by parameter name, once there are any.
    fn eval_weights(&self) -> Result<Option<BTreeMap<String, Tensor>>> {
        Ok(None)
    }

    /// The state to checkpoint.
    fn state_dict(&self) -> Result<StateDict> {
        Ok(StateDict::new())
    }

    /// Restores [`WeightHook::state_dict`]'s output.
    fn load_state_dict(&mut self, _state: &StateDict) -> Result<()> {
        Ok(())
    }
}

/// One entry of `optim.transforms`: a gradient transform or a weight hook.
pub enum Link {
    /// Transforms the gradients before the update.
    Gradients(Box<dyn GradientTransform>),
    /// Acts on the weights after the update.
    Weights(Box<dyn WeightHook>),
}

impl Link {
    /// A gradient-transform link.
    pub fn gradients(t: impl GradientTransform + 'static) -> Link {
        Link::Gradients(Box::new(t))
    }

    /// A weight-hook link.
    pub fn weights(h: impl WeightHook + 'static) -> Link {
        Link::Weights(Box::new(h))
    }

    /// The registry name.
    pub fn name(&self) -> &str {
        match self {
            Link::Gradients(t) => t.name(),
            Link::Weights(h) => h.name(),
        }
    }

    fn init(&mut self, params: &Params) -> Result<()> {
        match self {
            Link::Gradients(t) => t.init(params),
            Link::Weights(h) => h.init(params),
        }
    }

    fn state_dict(&self) -> Result<StateDict> {
        match self {
            Link::Gradients(t) => t.state_dict(),
            Link::Weights(h) => h.state_dict(),
        }
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        match self {
            Link::Gradients(t) => t.load_state_dict(state),
            Link::Weights(h) => h.load_state_dict(state),
        }
    }
}

impl From<Box<dyn GradientTransform>> for Link {
    fn from(t: Box<dyn GradientTransform>) -> Link {
        Link::Gradients(t)
    }
}

impl From<Box<dyn WeightHook>> for Link {
    fn from(h: Box<dyn WeightHook>) -> Link {
        Link::Weights(h)
    }
}

/// The transforms and weight hooks of a pipeline, in config order.
#[derive(Default)]
pub struct Chain {
    links: Vec<Link>,
}

impl Chain {
    /// A chain of these links, in order.
    pub fn new(links: Vec<Link>) -> Self {
        Chain { links }
    }

    /// The links' names, in order.
    pub fn names(&self) -> Vec<String> {
        self.links.iter().map(|l| l.name().to_string()).collect()
    }

    fn transforms(&mut self) -> impl Iterator<Item = &mut Box<dyn GradientTransform>> {
        self.links.iter_mut().filter_map(|l| match l {
            Link::Gradients(t) => Some(t),
            Link::Weights(_) => None,
        })
    }

    fn hooks(&self) -> impl Iterator<Item = &Box<dyn WeightHook>> {
        self.links.iter().filter_map(|l| match l {
            Link::Weights(h) => Some(h),
            Link::Gradients(_) => None,
        })
    }

    /// Whether a link keeps averaged weights.
    pub fn averages_weights(&self) -> bool {
        self.hooks().any(|h| h.averages_weights())
    }

    /// Each link's name with the figure names it reports: a weight hook none; a gradient
    /// transform's are not listed (`None`: any name under `<name>.` is taken to be one).
    pub fn metric_names(&self) -> Vec<(String, Option<Vec<String>>)> {
        self.links
            .iter()
            .map(|l| match l {
                Link::Gradients(t) => (t.name().to_string(), None),
                Link::Weights(h) => (h.name().to_string(), Some(Vec::new())),
            })
            .collect()
    }

    /// Initialises every link.
    pub fn init(&mut self, params: &Params) -> Result<()> {
        self.links.iter_mut().try_for_each(|l| l.init(params))
    }

    /// Applies the gradient transforms in order; stops at the first that skips or accumulates.
    pub fn apply(
        &mut self,
        grads: &mut Grads,
        params: &Params,
        ctx: &StepContext,
        report: &mut StepReport,
    ) -> Result<Outcome> {
        for l in self.transforms() {
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

    /// The averaged weights of the last hook that has them.
    pub fn averaged_params(&self) -> Result<Option<BTreeMap<String, Tensor>>> {
        let mut out = None;
        for h in self.hooks() {
            if let Some(a) = h.eval_weights()? {
                out = Some(a);
            }
        }
        Ok(out)
    }

    /// Runs every weight hook, in order, after the parameters were written.
    pub fn after_step(&mut self, params: &Params, ctx: &StepContext) -> Result<()> {
        self.links.iter_mut().try_for_each(|l| match l {
            Link::Weights(h) => h.after_step(params, ctx),
            Link::Gradients(_) => Ok(()),
        })
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
