//! `rmsprop`: RMSprop with `torch.optim.RMSprop`'s update rule (smoothing `alpha`, `eps` outside
//! the square root, `centered`, `momentum`, coupled `weight_decay`). Its averages live here.

use std::collections::BTreeMap;

use candle_core::Tensor;
use rnnlab_core::{
    GradientTransform, Grads, Link, Outcome, Params, PluginConfig, Registry, Result, StateDict,
    StepContext, StepReport,
};
use serde::{Deserialize, Serialize};

use crate::util::{
    check_non_negative, check_positive, check_unit_interval, load_into, param, save_map, slot,
};

/// RMSprop's settings and state.
#[derive(Clone, Debug)]
pub struct RmsProp {
    /// Base learning rate.
    pub lr: f64,
    /// Smoothing constant of the squared-gradient average.
    pub alpha: f64,
    /// Added to the denominator (after the square root).
    pub eps: f64,
    /// Normalise by the estimated variance (subtract the squared mean gradient).
    pub centered: bool,
    /// Momentum factor (0 for none).
    pub momentum: f64,
    /// L2 term added to the gradient.
    pub weight_decay: f64,
    steps: u64,
    square_avg: BTreeMap<String, Tensor>,
    grad_avg: BTreeMap<String, Tensor>,
    buf: BTreeMap<String, Tensor>,
}

/// An RMSprop transform.
pub fn rmsprop(
    lr: f64,
    alpha: f64,
    eps: f64,
    centered: bool,
    momentum: f64,
    weight_decay: f64,
) -> RmsProp {
    RmsProp {
        lr,
        alpha,
        eps,
        centered,
        momentum,
        weight_decay,
        steps: 0,
        square_avg: BTreeMap::new(),
        grad_avg: BTreeMap::new(),
        buf: BTreeMap::new(),
    }
}

impl GradientTransform for RmsProp {
    fn name(&self) -> &str {
        "rmsprop"
    }

    fn init(&mut self, params: &Params) -> Result<()> {
        self.steps = 0;
        self.square_avg.clear();
        self.grad_avg.clear();
        self.buf.clear();
        for p in params.trainable() {
            let z = p.var.as_tensor().zeros_like()?;
            self.square_avg.insert(p.name.clone(), z.clone());
            if self.centered {
                self.grad_avg.insert(p.name.clone(), z.clone());
            }
            if self.momentum > 0.0 {
                self.buf.insert(p.name.clone(), z);
            }
        }
        Ok(())
    }

    fn apply(
        &mut self,
        grads: &mut Grads,
        params: &Params,
        ctx: &StepContext,
        _report: &mut StepReport,
    ) -> Result<Outcome> {
        self.steps += 1;
        for (name, g) in grads.iter_mut() {
            if self.weight_decay != 0.0 {
                *g = (&*g + (param(params, name)?.to_dtype(g.dtype())? * self.weight_decay)?)?;
            }
            // torch: sq = alpha*sq + (1-alpha)*g²; avg = sqrt(sq) + eps, or centered
            //        ga = alpha*ga + (1-alpha)*g; avg = sqrt(sq - ga²) + eps;
            //        buf = momentum*buf + g/avg; p -= lr*buf   (p -= lr*g/avg without momentum)
            let sq = slot(&mut self.square_avg, "rmsprop", name)?;
            *sq = ((&*sq * self.alpha)? + (g.sqr()? * (1.0 - self.alpha))?)?;
            let mut var = sq.clone();
            if self.centered {
                let ga = slot(&mut self.grad_avg, "rmsprop", name)?;
                *ga = ((&*ga * self.alpha)? + (&*g * (1.0 - self.alpha))?)?;
                var = (var - ga.sqr()?)?;
            }
            let avg = (var.sqrt()? + self.eps)?;
            let step = g.div(&avg)?;
            let dir = if self.momentum > 0.0 {
                let buf = slot(&mut self.buf, "rmsprop", name)?;
                *buf = ((&*buf * self.momentum)? + step)?;
                buf.clone()
            } else {
                step
            };
            *g = (dir * -ctx.lr)?;
        }
        Ok(Outcome::Update)
    }

    fn state_dict(&self) -> Result<StateDict> {
        let mut s = StateDict::new();
        s.insert_scalar("steps", self.steps as f64)?;
        save_map(&mut s, "square_avg", &self.square_avg);
        save_map(&mut s, "grad_avg", &self.grad_avg);
        save_map(&mut s, "momentum_buffer", &self.buf);
        Ok(s)
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        self.steps = state.scalar("steps")? as u64;
        load_into(state, "square_avg", &mut self.square_avg)?;
        load_into(state, "grad_avg", &mut self.grad_avg)?;
        load_into(state, "momentum_buffer", &mut self.buf)?;
        Ok(())
    }
}

/// The keys of `type = "rmsprop"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RmsPropConfig {
    /// Base learning rate (> 0).
    pub lr: f64,
    /// Smoothing of the squared-gradient average, in [0, 1).
    pub alpha: f64,
    /// Added to the denominator after the square root (> 0).
    pub eps: f64,
    /// Divide by the estimated standard deviation of the gradient.
    pub centered: bool,
    /// Momentum factor, in [0, 1).
    pub momentum: f64,
    /// L2 term added to the gradient, >= 0.
    pub weight_decay: f64,
}

impl Default for RmsPropConfig {
    fn default() -> Self {
        RmsPropConfig {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            centered: false,
            momentum: 0.0,
            weight_decay: 0.0,
        }
    }
}

impl PluginConfig for RmsPropConfig {
    fn validate(&self, at: &str) -> Result<()> {
        check_positive(at, "lr", self.lr)?;
        check_unit_interval(at, "alpha", self.alpha)?;
        check_positive(at, "eps", self.eps)?;
        check_unit_interval(at, "momentum", self.momentum)?;
        check_non_negative(at, "weight_decay", self.weight_decay)
    }
}

/// Registers `rmsprop`.
pub fn register(r: &mut Registry) {
    r.transforms.register(
        "rmsprop",
        "RMSprop with torch.optim.RMSprop's update rule (alpha, eps, centered, momentum)",
        RmsPropConfig::default(),
        |c| {
            Ok(Link::gradients(rmsprop(
                c.lr,
                c.alpha,
                c.eps,
                c.centered,
                c.momentum,
                c.weight_decay,
            )))
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adam::tests::{assert_torch, five_steps};

    // Golden values from the script in adam.rs's tests (torch 2.15, float64).

    #[test]
    fn default_rmsprop_matches_torch() -> Result<()> {
        // run(lambda p: torch.optim.RMSprop(p, lr=0.01))
        let got = five_steps(Box::new(rmsprop(0.01, 0.99, 1e-8, false, 0.0, 0.0)), 0.01)?;
        assert_torch(
            &got,
            [
                [0.3702300981327752, -0.9724918096737535],
                [1.8227162916061044, 0.1652359892585754],
            ],
        );
        Ok(())
    }

    #[test]
    fn centered_with_momentum_matches_torch() -> Result<()> {
        // run(lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, centered=True, momentum=0.9))
        let got = five_steps(Box::new(rmsprop(0.01, 0.9, 1e-8, true, 0.9, 0.0)), 0.01)?;
        assert_torch(
            &got,
            [
                [0.38438691090985194, -0.9300543116017058],
                [1.8146614833651156, 0.13821801204132272],
            ],
        );
        Ok(())
    }

    #[test]
    fn weight_decay_with_momentum_matches_torch() -> Result<()> {
        // run(lambda p: torch.optim.RMSprop(p, lr=0.01, weight_decay=0.1, momentum=0.5))
        let got = five_steps(Box::new(rmsprop(0.01, 0.99, 1e-8, false, 0.5, 0.1)), 0.01)?;
        assert_torch(
            &got,
            [
                [0.3053027583967726, -0.9051286735656772],
                [1.6110581539088729, 0.0992733313370699],
            ],
        );
        Ok(())
    }
}
