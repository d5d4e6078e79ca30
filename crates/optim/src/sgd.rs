//! `sgd`: stochastic gradient descent with `torch.optim.SGD`'s update rule: coupled weight decay,
//! momentum with dampening, and Nesterov momentum. The momentum buffers live here.

use std::collections::BTreeMap;

use candle_core::Tensor;
use rnnlab_core::{
    check_value, GradientTransform, Grads, Link, Outcome, Params, PluginConfig, Registry, Result,
    StateDict, StepContext, StepReport,
};
use serde::{Deserialize, Serialize};

use crate::util::{check_non_negative, check_positive, load_map, save_map, with_coupled_decay};

/// SGD: its settings ([`SgdConfig`]) and momentum buffers. Built by [`SgdConfig::build`].
#[derive(Clone, Debug)]
pub struct Sgd {
    cfg: SgdConfig,
    steps: u64,
    buf: BTreeMap<String, Tensor>,
}

impl Sgd {
    /// The settings it was built with.
    pub fn config(&self) -> &SgdConfig {
        &self.cfg
    }
}

impl GradientTransform for Sgd {
    fn name(&self) -> &str {
        "sgd"
    }

    fn init(&mut self, _params: &Params) -> Result<()> {
        self.steps = 0;
        self.buf.clear();
        Ok(())
    }

    fn apply(
        &mut self,
        grads: &mut Grads,
        params: &Params,
        ctx: &StepContext,
        _report: &mut StepReport,
    ) -> Result<Outcome> {
        let c = &self.cfg;
        for (name, g) in grads.iter_mut() {
            let mut d = with_coupled_decay(g, params, name, c.weight_decay)?;
            if c.momentum != 0.0 {
                // torch: buf = g on the first step, else buf = momentum*buf + (1-dampening)*g;
                //        d = g + momentum*buf (nesterov) or d = buf
                let buf = match self.buf.get(name) {
                    None => d.clone(),
                    Some(b) => ((b * c.momentum)? + (&d * (1.0 - c.dampening))?)?,
                };
                self.buf.insert(name.to_string(), buf.clone());
                d = if c.nesterov {
                    (d + (buf * c.momentum)?)?
                } else {
                    buf
                };
            }
            *g = (d * -ctx.lr)?;
        }
        self.steps += 1;
        Ok(Outcome::Update)
    }

    fn state_dict(&self) -> Result<StateDict> {
        let mut s = StateDict::new();
        s.insert_scalar("steps", self.steps as f64)?;
        save_map(&mut s, "momentum_buffer", &self.buf);
        Ok(s)
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        self.steps = state.scalar("steps")? as u64;
        self.buf = load_map(state, "momentum_buffer");
        Ok(())
    }
}

/// The keys of `type = "sgd"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SgdConfig {
    /// Base learning rate (> 0).
    pub lr: f64,
    /// Momentum factor, in [0, 1].
    pub momentum: f64,
    /// Dampening of the gradient in the momentum buffer, in [0, 1].
    pub dampening: f64,
    /// Nesterov momentum (needs momentum > 0 and dampening = 0).
    pub nesterov: bool,
    /// L2 term added to the gradient, >= 0.
    pub weight_decay: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 1e-2,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

impl SgdConfig {
    /// The SGD transform these keys describe.
    pub fn build(&self) -> Sgd {
        Sgd {
            cfg: self.clone(),
            steps: 0,
            buf: BTreeMap::new(),
        }
    }
}

impl PluginConfig for SgdConfig {
    fn validate(&self, at: &str) -> Result<()> {
        check_positive(at, "lr", self.lr)?;
        let in_unit = |v: f64| (0.0..=1.0).contains(&v);
        check_value(
            at,
            "momentum",
            &self.momentum,
            in_unit(self.momentum),
            "must be in [0, 1]",
        )?;
        check_value(
            at,
            "dampening",
            &self.dampening,
            in_unit(self.dampening),
            "must be in [0, 1]",
        )?;
        check_value(
            at,
            "nesterov",
            &self.nesterov,
            !self.nesterov || (self.momentum > 0.0 && self.dampening == 0.0),
            "Nesterov momentum needs momentum > 0 and dampening = 0 (as torch)",
        )?;
        check_non_negative(at, "weight_decay", self.weight_decay)
    }
}

/// Registers `sgd`.
pub fn register(r: &mut Registry) {
    r.transforms.register(
        "sgd",
        "SGD with torch.optim.SGD's update rule (momentum, dampening, nesterov, weight_decay)",
        SgdConfig::default(),
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
            // run(lambda p: torch.optim.SGD(p, lr=0.1))
            (
                SgdConfig {
                    lr: 0.1,
                    ..SgdConfig::default()
                },
                [
                    [0.18999999999999997, -0.9600000000000001],
                    [1.71, 0.009999999999999981],
                ],
            ),
            // run(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9))
            (
                SgdConfig {
                    lr: 0.1,
                    momentum: 0.9,
                    ..SgdConfig::default()
                },
                [
                    [0.02710000000000004, -0.60576],
                    [1.241415, -0.6740900000000001],
                ],
            ),
            // run(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.5))
            (
                SgdConfig {
                    lr: 0.1,
                    momentum: 0.9,
                    dampening: 0.5,
                    ..SgdConfig::default()
                },
                [
                    [0.058794999999999924, -0.39337000000000005],
                    [1.51833, -0.8263100000000002],
                ],
            ),
            // run(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1))
            (
                SgdConfig {
                    lr: 0.1,
                    momentum: 0.9,
                    nesterov: true,
                    weight_decay: 0.1,
                    ..SgdConfig::default()
                },
                [
                    [-0.29118990432373953, -0.49440055726852083],
                    [0.7370913700755066, -0.7742302461008448],
                ],
            ),
        ];
        for (cfg, want) in cases {
            assert_torch(&five_steps(Box::new(cfg.build()), cfg.lr)?, want);
        }
        Ok(())
    }

    #[test]
    fn nesterov_without_momentum_is_rejected() {
        let mut r = Registry::empty();
        register(&mut r);
        let t: toml::Table = toml::from_str("type = \"sgd\"\nnesterov = true").unwrap();
        let e = r.transform(&t, "optim.transforms[1]").err().unwrap();
        assert!(
            e.to_string().contains("optim.transforms[1].nesterov"),
            "{e}"
        );
    }
}
