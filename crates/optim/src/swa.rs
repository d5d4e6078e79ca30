//! `swa`: stochastic weight averaging (Izmailov et al. 2018) as an equal-weight running mean of
//! the weights after every step from epoch `start_epoch` on (torch `AveragedModel`'s default
//! average, `avg ← avg + (p - avg) / (n + 1)`, updated after each step rather than once per epoch:
//! the chain does not see epoch ends). Before `start_epoch` nothing is averaged and the trainer
//! evaluates the raw weights; from then on it evaluates the average and logs the raw weights'
//! figures as `raw_*`. The average and its count are in the state dict.
//!
//! With a constant or cyclic rate (e.g. `constant`, `cosine_warm_restarts`) this is SWA's usual
//! setting. Its place in the chain does not matter.

use std::collections::BTreeMap;

use candle_core::Tensor;
use rnnlab_core::{
    check_value, Link, Params, PluginConfig, Registry, Result, StateDict, StepContext, WeightHook,
};
use serde::{Deserialize, Serialize};

use crate::util::RunningAverage;

/// Equal-weight running mean of the weights from `start_epoch` on.
#[derive(Clone, Debug)]
pub struct Swa {
    /// The first (1-based) epoch whose steps are averaged.
    pub start_epoch: usize,
    avg: RunningAverage,
}

/// An `swa` transform.
pub fn swa(start_epoch: usize) -> Swa {
    Swa {
        start_epoch,
        avg: RunningAverage::default(),
    }
}

impl Swa {
    /// Weights averaged so far.
    pub fn count(&self) -> u64 {
        self.avg.count()
    }
}

impl WeightHook for Swa {
    fn name(&self) -> &str {
        "swa"
    }

    fn init(&mut self, _params: &Params) -> Result<()> {
        self.avg.clear();
        Ok(())
    }

    fn after_step(&mut self, params: &Params, ctx: &StepContext) -> Result<()> {
        if ctx.epoch < self.start_epoch {
            return Ok(());
        }
        // torch AveragedModel's default: avg + (p - avg) / (n + 1)
        self.avg.update(params, 1.0 / (self.avg.count() + 1) as f64)
    }

    fn averages_weights(&self) -> bool {
        true
    }

    fn eval_weights(&self) -> Result<Option<BTreeMap<String, Tensor>>> {
        Ok(self.avg.weights())
    }

    fn state_dict(&self) -> Result<StateDict> {
        self.avg.state_dict("n_averaged")
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        self.avg.load_state_dict(state, "n_averaged")
    }
}

/// The keys of `type = "swa"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwaConfig {
    /// First (1-based) epoch whose steps are averaged (>= 1).
    pub start_epoch: usize,
}

impl Default for SwaConfig {
    fn default() -> Self {
        SwaConfig { start_epoch: 1 }
    }
}

impl PluginConfig for SwaConfig {
    fn validate(&self, at: &str) -> Result<()> {
        let e = self.start_epoch;
        check_value(at, "start_epoch", &e, e >= 1, "epochs count from 1")
    }
}

/// Registers `swa`.
pub fn register(r: &mut Registry) {
    r.transforms.register(
        "swa",
        "stochastic weight averaging: equal-weight mean of the weights after every step from start_epoch on; evaluation uses it",
        SwaConfig::default(),
        |c| Ok(Link::weights(swa(c.start_epoch))),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adam::tests::FIXED;
    use crate::util::transform_test::{assert_within, step_ctx};
    use candle_core::{Device, Var};
    use rnnlab_core::apply_updates;

    #[test]
    fn equal_weight_mean_from_start_epoch_matches_torch() -> Result<()> {
        // w as in ema.rs; avg = AveragedModel(m); opt = torch.optim.SGD([w], lr=0.1)
        // for g in fixed: w.grad = torch.tensor(g, dtype=torch.float64); opt.step()
        //                 avg.update_parameters(m)
        // avg.module[0].tolist() -> [[0.392, -0.894], [1.83, 0.018]]
        // Here epoch 1 is two steps that are not averaged, then epoch 2 averages the five.
        let d = Device::Cpu;
        let mut params = Params::new();
        let w = Var::from_tensor(&Tensor::new(&[[0.5f64, -1.0], [2.0, 0.25]], &d)?)?;
        params.insert("w", w.clone(), true)?;
        let mut s = swa(2);
        s.init(&params)?;
        let start = w.as_tensor().copy()?;
        for i in 0..2 {
            let ctx = step_ctx(i, 0.1);
            let grads = rnnlab_core::Grads::from_pairs([(
                "w".to_string(),
                Tensor::new(&[[1.0f64, 1.0], [1.0, 1.0]], &d)?,
            )]);
            apply_updates(&params, &grads)?;
            s.after_step(&params, &ctx)?;
        }
        assert!(s.eval_weights()?.is_none());
        w.set(&start)?;
        for (i, g) in FIXED.iter().enumerate() {
            let ctx = StepContext {
                step: i + 2,
                epoch: 2,
                lr: 0.1,
                loss: 1.0,
            };
            let grads =
                rnnlab_core::Grads::from_pairs([("w".to_string(), (Tensor::new(g, &d)? * -0.1)?)]);
            apply_updates(&params, &grads)?;
            s.after_step(&params, &ctx)?;
        }
        assert_eq!(s.count(), 5);
        let avg = s.eval_weights()?.unwrap()["w"].to_vec2::<f64>()?;
        let want = [[0.392, -0.894], [1.83, 0.018]];
        assert_within(&avg, &want, 1e-12);
        Ok(())
    }
}
