//! `adagrad`: Adagrad with `torch.optim.Adagrad`'s update rule (`lr_decay`,
//! `initial_accumulator_value`, `eps`, coupled `weight_decay`). The squared-gradient sums live here.

use std::collections::BTreeMap;

use candle_core::Tensor;
use rnnlab_core::{
    GradientTransform, Grads, Link, Outcome, Params, PluginConfig, Registry, Result, StateDict,
    StepContext, StepReport,
};
use serde::{Deserialize, Serialize};

use crate::util::{
    check_non_negative, check_positive, load_into, save_map, slot, with_coupled_decay,
};

/// Adagrad: its settings ([`AdagradConfig`]) and squared-gradient sums. Built by
/// [`AdagradConfig::build`].
#[derive(Clone, Debug)]
pub struct Adagrad {
    cfg: AdagradConfig,
    steps: u64,
    sum: BTreeMap<String, Tensor>,
}

impl Adagrad {
    /// The settings it was built with.
    pub fn config(&self) -> &AdagradConfig {
        &self.cfg
    }
}

impl GradientTransform for Adagrad {
    fn name(&self) -> &str {
        "adagrad"
    }

    fn init(&mut self, params: &Params) -> Result<()> {
        self.steps = 0;
        self.sum.clear();
        for p in params.trainable() {
            let t = p.var.as_tensor();
            let s = (t.zeros_like()? + self.cfg.initial_accumulator_value)?;
            self.sum.insert(p.name.clone(), s);
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
        // torch: clr = lr / (1 + (step-1)*lr_decay); sum += g²; p -= clr * g / (sqrt(sum) + eps)
        let c = &self.cfg;
        let clr = ctx.lr / (1.0 + (self.steps - 1) as f64 * c.lr_decay);
        for (name, g) in grads.iter_mut() {
            *g = with_coupled_decay(g, params, name, c.weight_decay)?;
            let sum = slot(&mut self.sum, "adagrad", name)?;
            *sum = (&*sum + g.sqr()?)?;
            let std = (sum.sqrt()? + c.eps)?;
            *g = (g.div(&std)? * -clr)?;
        }
        Ok(Outcome::Update)
    }

    fn state_dict(&self) -> Result<StateDict> {
        let mut s = StateDict::new();
        s.insert_scalar("steps", self.steps as f64)?;
        save_map(&mut s, "sum", &self.sum);
        Ok(s)
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        self.steps = state.scalar("steps")? as u64;
        load_into(state, "sum", &mut self.sum)
    }
}

/// The keys of `type = "adagrad"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdagradConfig {
    /// Base learning rate (> 0).
    pub lr: f64,
    /// The rate at step k is lr / (1 + (k-1)*lr_decay), >= 0.
    pub lr_decay: f64,
    /// Starting value of the squared-gradient sums, >= 0.
    pub initial_accumulator_value: f64,
    /// Added to the denominator after the square root (> 0).
    pub eps: f64,
    /// L2 term added to the gradient, >= 0.
    pub weight_decay: f64,
}

impl Default for AdagradConfig {
    fn default() -> Self {
        AdagradConfig {
            lr: 1e-2,
            lr_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
            weight_decay: 0.0,
        }
    }
}

impl AdagradConfig {
    /// The Adagrad transform these keys describe.
    pub fn build(&self) -> Adagrad {
        Adagrad {
            cfg: self.clone(),
            steps: 0,
            sum: BTreeMap::new(),
        }
    }
}

impl PluginConfig for AdagradConfig {
    fn validate(&self, at: &str) -> Result<()> {
        check_positive(at, "lr", self.lr)?;
        check_non_negative(at, "lr_decay", self.lr_decay)?;
        check_non_negative(
            at,
            "initial_accumulator_value",
            self.initial_accumulator_value,
        )?;
        check_positive(at, "eps", self.eps)?;
        check_non_negative(at, "weight_decay", self.weight_decay)
    }
}

/// Registers `adagrad`.
pub fn register(r: &mut Registry) {
    r.transforms.register(
        "adagrad",
        "Adagrad with torch.optim.Adagrad's update rule (lr_decay, initial_accumulator_value, eps)",
        AdagradConfig::default(),
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
            // run(lambda p: torch.optim.Adagrad(p, lr=0.1))
            (
                AdagradConfig {
                    lr: 0.1,
                    ..AdagradConfig::default()
                },
                [
                    [0.3701718734906629, -0.9718893202297536],
                    [1.8228137137653244, 0.16534071246321508],
                ],
            ),
            // run(lambda p: torch.optim.Adagrad(p, lr=0.1, lr_decay=0.01,
            //         initial_accumulator_value=0.1, eps=1e-10, weight_decay=0.1))
            (
                AdagradConfig {
                    lr: 0.1,
                    lr_decay: 0.01,
                    initial_accumulator_value: 0.1,
                    weight_decay: 0.1,
                    ..AdagradConfig::default()
                },
                [
                    [0.3663191701842149, -0.9535422671491586],
                    [1.7881051124791927, 0.16409575263867426],
                ],
            ),
        ];
        for (cfg, want) in cases {
            assert_torch(&five_steps(Box::new(cfg.build()), cfg.lr)?, want);
        }
        Ok(())
    }
}
