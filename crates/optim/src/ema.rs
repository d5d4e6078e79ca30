//! `ema`: an exponential moving average of the weights, as `torch.optim.swa_utils`'
//! `AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))`: after each step that updated
//! the weights, `avg ← decay·avg + (1 - decay)·p`, the average starting as a copy of the weights
//! after the first step. The trainer evaluates (and picks the best checkpoint) with the average and
//! logs the raw weights' figures as `raw_*`. The average is in the state dict.
//!
//! Its place in the chain does not matter: it only acts in `after_step`, and passes gradients on
//! unchanged.

use std::collections::BTreeMap;

use candle_core::Tensor;
use rnnlab_core::{
    check_value, Link, Params, PluginConfig, Registry, Result, StateDict, StepContext, WeightHook,
};
use serde::{Deserialize, Serialize};

use crate::util::RunningAverage;

/// Exponential moving average of the trainable weights.
#[derive(Clone, Debug)]
pub struct Ema {
    /// Weight of the old average.
    pub decay: f64,
    avg: RunningAverage,
}

/// An `ema` transform.
pub fn ema(decay: f64) -> Ema {
    Ema {
        decay,
        avg: RunningAverage::default(),
    }
}

impl Ema {
    /// Steps averaged so far.
    pub fn updates(&self) -> u64 {
        self.avg.count()
    }
}

impl WeightHook for Ema {
    fn name(&self) -> &str {
        "ema"
    }

    fn init(&mut self, _params: &Params) -> Result<()> {
        self.avg.clear();
        Ok(())
    }

    fn after_step(&mut self, params: &Params, _ctx: &StepContext) -> Result<()> {
        // torch: ema.lerp_(p, 1 - decay)
        self.avg.update(params, 1.0 - self.decay)
    }

    fn averages_weights(&self) -> bool {
        true
    }

    fn eval_weights(&self) -> Result<Option<BTreeMap<String, Tensor>>> {
        Ok(self.avg.weights())
    }

    fn state_dict(&self) -> Result<StateDict> {
        self.avg.state_dict("updates")
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        self.avg.load_state_dict(state, "updates")
    }
}

/// The keys of `type = "ema"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmaConfig {
    /// Weight of the old average, in (0, 1).
    pub decay: f64,
}

impl Default for EmaConfig {
    fn default() -> Self {
        EmaConfig { decay: 0.999 }
    }
}

impl PluginConfig for EmaConfig {
    fn validate(&self, at: &str) -> Result<()> {
        let d = self.decay;
        check_value(at, "decay", &d, d > 0.0 && d < 1.0, "must be in (0, 1)")
    }
}

/// Registers `ema`.
pub fn register(r: &mut Registry) {
    r.transforms.register(
        "ema",
        "exponential moving average of the weights after each step (torch swa_utils EMA); evaluation uses the average, raw_* logs the raw weights",
        EmaConfig::default(),
        |c| Ok(Link::weights(ema(c.decay))),
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
    fn matches_torch_swa_utils_ema() -> Result<()> {
        // w = torch.tensor([[0.5, -1.0], [2.0, 0.25]], dtype=torch.float64, requires_grad=True)
        // m = torch.nn.ParameterList([w])
        // avg = AveragedModel(m, multi_avg_fn=get_ema_multi_avg_fn(0.9))
        // opt = torch.optim.SGD([w], lr=0.1)
        // for g in fixed: w.grad = torch.tensor(g, dtype=torch.float64); opt.step()
        //                 avg.update_parameters(m)
        // avg.module[0].tolist()
        let d = Device::Cpu;
        let mut params = Params::new();
        let w = Var::from_tensor(&Tensor::new(&[[0.5f64, -1.0], [2.0, 0.25]], &d)?)?;
        params.insert("w", w, true)?;
        let mut e = ema(0.9);
        e.init(&params)?;
        assert!(e.eval_weights()?.is_none());
        for (i, g) in FIXED.iter().enumerate() {
            let ctx = step_ctx(i, 0.1);
            let grads =
                rnnlab_core::Grads::from_pairs([("w".to_string(), (Tensor::new(g, &d)? * -0.1)?)]);
            apply_updates(&params, &grads)?;
            e.after_step(&params, &ctx)?;
        }
        let avg = e.eval_weights()?.unwrap()["w"].to_vec2::<f64>()?;
        let want = TORCH_EMA;
        assert_within(&avg, &want, 1e-12);
        Ok(())
    }

    const TORCH_EMA: [[f64; 2]; 2] = [
        [0.393661, -0.8424780000000001],
        [1.894617, -0.019556000000000018],
    ];
}
