//! `accumulate`: gradient accumulation. Over `steps` micro-batches it sums the gradients in its
//! state and returns [`Outcome::Accumulate`] for the first `steps - 1`; on the last it passes the
//! mean (or the sum) on, so the update sees a batch `steps` times larger in the same memory.
//!
//! Accumulating is not a skip: the trainer neither counts it in `skipped_steps` nor advances its
//! optimizer step counter (so `ctx.step` and step-interval schedules count updates, as in torch).
//! Put it first in the chain, so clipping and the optimizer act on the accumulated gradient
//! (after `skip_nonfinite`, if any, so a bad micro-batch is dropped rather than poisoning the sum).

use std::collections::BTreeMap;

use candle_core::Tensor;
use rnnlab_core::{
    check_value, GradientTransform, Grads, Link, Outcome, Params, PluginConfig, Registry, Result,
    StateDict, StepContext, StepReport,
};
use serde::{Deserialize, Serialize};

use crate::util::{load_map, save_map};

/// Sums gradients over `steps` micro-batches.
#[derive(Clone, Debug)]
pub struct Accumulate {
    /// Micro-batches per update.
    pub steps: usize,
    /// Pass the mean (true) or the sum (false).
    pub average: bool,
    count: usize,
    sum: BTreeMap<String, Tensor>,
}

/// An `accumulate` transform.
pub fn accumulate(steps: usize, average: bool) -> Accumulate {
    Accumulate {
        steps,
        average,
        count: 0,
        sum: BTreeMap::new(),
    }
}

impl GradientTransform for Accumulate {
    fn name(&self) -> &str {
        "accumulate"
    }

    fn init(&mut self, _params: &Params) -> Result<()> {
        self.count = 0;
        self.sum.clear();
        Ok(())
    }

    fn apply(
        &mut self,
        grads: &mut Grads,
        _params: &Params,
        _ctx: &StepContext,
        report: &mut StepReport,
    ) -> Result<Outcome> {
        for (name, g) in grads.iter() {
            let next = match self.sum.get(name) {
                Some(s) => (s + g)?,
                None => g.clone(),
            };
            self.sum.insert(name.to_string(), next);
        }
        self.count += 1;
        report
            .figures
            .push(("accumulate.micro_batch".into(), self.count as f64));
        if self.count < self.steps {
            return Ok(Outcome::Accumulate);
        }
        let scale = if self.average {
            1.0 / self.steps as f64
        } else {
            1.0
        };
        let mut sum = std::mem::take(&mut self.sum);
        for (name, g) in grads.iter_mut() {
            if let Some(s) = sum.remove(name) {
                *g = if scale == 1.0 { s } else { (s * scale)? };
            }
        }
        self.count = 0;
        Ok(Outcome::Update)
    }

    fn state_dict(&self) -> Result<StateDict> {
        let mut s = StateDict::new();
        s.insert_scalar("count", self.count as f64)?;
        save_map(&mut s, "sum", &self.sum);
        Ok(s)
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        self.count = state.scalar("count")? as usize;
        self.sum = load_map(state, "sum");
        Ok(())
    }
}

/// The keys of `type = "accumulate"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccumulateConfig {
    /// Micro-batches per update (>= 1).
    pub steps: usize,
    /// Pass the mean of the micro-batch gradients (false: their sum).
    pub average: bool,
}

impl Default for AccumulateConfig {
    fn default() -> Self {
        AccumulateConfig {
            steps: 2,
            average: true,
        }
    }
}

impl PluginConfig for AccumulateConfig {
    fn validate(&self, at: &str) -> Result<()> {
        check_value(
            at,
            "steps",
            &self.steps,
            self.steps >= 1,
            "must be at least 1",
        )
    }
}

/// Registers `accumulate`.
pub fn register(r: &mut Registry) {
    r.transforms.register(
        "accumulate",
        "gradient accumulation: sum steps-1 micro-batches (no update, not a skip), then pass the mean on; put it first",
        AccumulateConfig::default(),
        |c| Ok(Link::gradients(accumulate(c.steps, c.average))),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::transform_test::step_ctx;
    use candle_core::Device;

    #[test]
    fn skips_then_passes_the_mean() -> Result<()> {
        let d = Device::Cpu;
        let ctx = step_ctx(0, 0.1);
        let mut t = accumulate(3, true);
        t.init(&Params::new())?;
        let mut outs = Vec::new();
        let mut last = None;
        for (i, v) in [[1.0f64, -2.0], [2.0, 0.0], [6.0, 5.0], [3.0, 3.0]]
            .iter()
            .enumerate()
        {
            let mut g = Grads::from_pairs([("w".to_string(), Tensor::new(v, &d)?)]);
            let out = t.apply(&mut g, &Params::new(), &ctx, &mut StepReport::default())?;
            if i == 2 {
                last = Some(g.get("w").unwrap().to_vec1::<f64>()?);
            }
            outs.push(out);
        }
        let acc = Outcome::Accumulate;
        assert_eq!(outs, vec![acc.clone(), acc.clone(), Outcome::Update, acc]);
        assert_eq!(last.unwrap(), vec![3.0, 1.0]);
        // the partial sum of the 4th micro-batch survives a state round trip
        let mut fresh = accumulate(3, true);
        fresh.load_state_dict(&t.state_dict()?)?;
        let mut g = Grads::from_pairs([("w".to_string(), Tensor::new(&[0.0f64, 0.0], &d)?)]);
        fresh.apply(&mut g, &Params::new(), &ctx, &mut StepReport::default())?;
        let mut g = Grads::from_pairs([("w".to_string(), Tensor::new(&[0.0f64, 3.0], &d)?)]);
        let out = fresh.apply(&mut g, &Params::new(), &ctx, &mut StepReport::default())?;
        assert_eq!(out, Outcome::Update);
        assert_eq!(g.get("w").unwrap().to_vec1::<f64>()?, vec![1.0, 2.0]);
        Ok(())
    }
}
