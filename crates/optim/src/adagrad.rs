//! `adagrad`: Adagrad with `torch.optim.Adagrad`'s update rule (`lr_decay`,
//! `initial_accumulator_value`, `eps`, coupled `weight_decay`). The squared-gradient sums live here.

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::Tensor;
use rnnlab_core::{
    GradientTransform, Grads, Link, Outcome, ParamSpec, Params, PluginParams, PluginSpec, Registry,
    Result, StateDict, StepContext, StepReport,
};

use crate::util::{load_into, non_negative, param, positive, save_map, slot};

/// Adagrad's settings and state.
#[derive(Clone, Debug)]
pub struct Adagrad {
    /// Base learning rate.
    pub lr: f64,
    /// The step's rate is `lr / (1 + (step - 1)·lr_decay)`.
    pub lr_decay: f64,
    /// The sums' starting value.
    pub initial_accumulator_value: f64,
    /// Added to the denominator (after the square root).
    pub eps: f64,
    /// L2 term added to the gradient.
    pub weight_decay: f64,
    steps: u64,
    sum: BTreeMap<String, Tensor>,
}

/// An Adagrad transform.
pub fn adagrad(
    lr: f64,
    lr_decay: f64,
    initial_accumulator_value: f64,
    eps: f64,
    weight_decay: f64,
) -> Adagrad {
    Adagrad {
        lr,
        lr_decay,
        initial_accumulator_value,
        eps,
        weight_decay,
        steps: 0,
        sum: BTreeMap::new(),
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
            let s = (t.zeros_like()? + self.initial_accumulator_value)?;
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
        let clr = ctx.lr / (1.0 + (self.steps - 1) as f64 * self.lr_decay);
        for (name, g) in grads.iter_mut() {
            if self.weight_decay != 0.0 {
                *g = (&*g + (param(params, name)?.to_dtype(g.dtype())? * self.weight_decay)?)?;
            }
            let sum = slot(&mut self.sum, "adagrad", name)?;
            *sum = (&*sum + g.sqr()?)?;
            let std = (sum.sqrt()? + self.eps)?;
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

/// Registers `adagrad`.
pub fn register(r: &mut Registry) {
    r.transforms.add(
        PluginSpec {
            name: "adagrad",
            doc: "Adagrad with torch.optim.Adagrad's update rule (lr_decay, initial_accumulator_value, eps)",
            params: vec![
                ParamSpec::new("lr", "1e-2", "base learning rate (> 0)"),
                ParamSpec::new("lr_decay", "0.0", "the rate at step k is lr / (1 + (k-1)*lr_decay), >= 0"),
                ParamSpec::new("initial_accumulator_value", "0.0", "starting value of the squared-gradient sums, >= 0"),
                ParamSpec::new("eps", "1e-10", "added to the denominator after the square root (> 0)"),
                ParamSpec::new("weight_decay", "0.0", "L2 term added to the gradient, >= 0"),
            ],
        },
        Arc::new(|p: &PluginParams| {
            Ok(Link::gradients(adagrad(
                positive(p, "lr")?,
                non_negative(p, "lr_decay")?,
                non_negative(p, "initial_accumulator_value")?,
                positive(p, "eps")?,
                non_negative(p, "weight_decay")?,
            )))
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adam::tests::{assert_torch, five_steps};

    // Golden values from the script in adam.rs's tests (torch 2.15, float64).

    #[test]
    fn default_adagrad_matches_torch() -> Result<()> {
        // run(lambda p: torch.optim.Adagrad(p, lr=0.1))
        let got = five_steps(Box::new(adagrad(0.1, 0.0, 0.0, 1e-10, 0.0)), 0.1)?;
        assert_torch(
            &got,
            [
                [0.3701718734906629, -0.9718893202297536],
                [1.8228137137653244, 0.16534071246321508],
            ],
        );
        Ok(())
    }

    #[test]
    fn lr_decay_accumulator_and_weight_decay_match_torch() -> Result<()> {
        // run(lambda p: torch.optim.Adagrad(p, lr=0.1, lr_decay=0.01,
        //         initial_accumulator_value=0.1, eps=1e-10, weight_decay=0.1))
        let got = five_steps(Box::new(adagrad(0.1, 0.01, 0.1, 1e-10, 0.1)), 0.1)?;
        assert_torch(
            &got,
            [
                [0.3663191701842149, -0.9535422671491586],
                [1.7881051124791927, 0.16409575263867426],
            ],
        );
        Ok(())
    }
}
