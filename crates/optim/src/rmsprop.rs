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
    check_non_negative, check_positive, check_unit_interval, load_into, save_map, slot,
    with_coupled_decay,
};

/// RMSprop: its settings ([`RmsPropConfig`]) and averages. Built by [`RmsPropConfig::build`].
#[derive(Clone, Debug)]
pub struct RmsProp {
    cfg: RmsPropConfig,
    steps: u64,
    square_avg: BTreeMap<String, Tensor>,
    grad_avg: BTreeMap<String, Tensor>,
    buf: BTreeMap<String, Tensor>,
}

impl RmsProp {
    /// The settings it was built with.
    pub fn config(&self) -> &RmsPropConfig {
        &self.cfg
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
            if self.cfg.centered {
                self.grad_avg.insert(p.name.clone(), z.clone());
            }
            if self.cfg.momentum > 0.0 {
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
        let c = &self.cfg;
        for (name, g) in grads.iter_mut() {
            *g = with_coupled_decay(g, params, name, c.weight_decay)?;
            // torch: sq = alpha*sq + (1-alpha)*g²; avg = sqrt(sq) + eps, or centered
            //        ga = alpha*ga + (1-alpha)*g; avg = sqrt(sq - ga²) + eps;
            //        buf = momentum*buf + g/avg; p -= lr*buf   (p -= lr*g/avg without momentum)
            let sq = slot(&mut self.square_avg, "rmsprop", name)?;
            *sq = ((&*sq * c.alpha)? + (g.sqr()? * (1.0 - c.alpha))?)?;
            let mut var = sq.clone();
            if c.centered {
                let ga = slot(&mut self.grad_avg, "rmsprop", name)?;
                *ga = ((&*ga * c.alpha)? + (&*g * (1.0 - c.alpha))?)?;
                var = (var - ga.sqr()?)?;
            }
            let avg = (var.sqrt()? + c.eps)?;
            let step = g.div(&avg)?;
            let dir = if c.momentum > 0.0 {
                let buf = slot(&mut self.buf, "rmsprop", name)?;
                *buf = ((&*buf * c.momentum)? + step)?;
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

impl RmsPropConfig {
    /// The RMSprop transform these keys describe.
    pub fn build(&self) -> RmsProp {
        RmsProp {
            cfg: self.clone(),
            steps: 0,
            square_avg: BTreeMap::new(),
            grad_avg: BTreeMap::new(),
            buf: BTreeMap::new(),
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
        |c| Ok(Link::gradients(c.build())),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adam::tests::{assert_torch, five_steps};

    // Golden values from the script in adam.rs's tests (torch 2.15, float64).

    #[test]
    fn five_steps_match_torch() -> Result<()> {
        let cases = [
            // run(lambda p: torch.optim.RMSprop(p, lr=0.01))
            (
                RmsPropConfig {
                    lr: 0.01,
                    ..RmsPropConfig::default()
                },
                [
                    [0.3702300981327752, -0.9724918096737535],
                    [1.8227162916061044, 0.1652359892585754],
                ],
            ),
            // run(lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, centered=True, momentum=0.9))
            (
                RmsPropConfig {
                    lr: 0.01,
                    alpha: 0.9,
                    centered: true,
                    momentum: 0.9,
                    ..RmsPropConfig::default()
                },
                [
                    [0.38438691090985194, -0.9300543116017058],
                    [1.8146614833651156, 0.13821801204132272],
                ],
            ),
            // run(lambda p: torch.optim.RMSprop(p, lr=0.01, weight_decay=0.1, momentum=0.5))
            (
                RmsPropConfig {
                    lr: 0.01,
                    momentum: 0.5,
                    weight_decay: 0.1,
                    ..RmsPropConfig::default()
                },
                [
                    [0.3053027583967726, -0.9051286735656772],
                    [1.6110581539088729, 0.0992733313370699],
                ],
            ),
        ];
        for (cfg, want) in cases {
            assert_torch(&five_steps(Box::new(cfg.build()), cfg.lr)?, want);
        }
        Ok(())
    }
}
