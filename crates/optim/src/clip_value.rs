//! `clip_value`: clamps every gradient entry to `[-max_value, max_value]`, as
//! `torch.nn.utils.clip_grad_value_`.

use candle_core::DType;
use rnnlab_core::{
    GradientTransform, Grads, Link, Outcome, Params, PluginConfig, Registry, Result, StepContext,
    StepReport,
};
use serde::{Deserialize, Serialize};

use crate::util::check_positive;

/// Clamps gradient entries to `±max_value`.
#[derive(Clone, Debug)]
pub struct ClipValue {
    /// The largest absolute entry let through.
    pub max_value: f64,
}

/// A `clip_value` transform.
pub fn clip_value(max_value: f64) -> ClipValue {
    ClipValue { max_value }
}

impl GradientTransform for ClipValue {
    fn name(&self) -> &str {
        "clip_value"
    }

    fn apply(
        &mut self,
        grads: &mut Grads,
        _params: &Params,
        _ctx: &StepContext,
        report: &mut StepReport,
    ) -> Result<Outcome> {
        let mut largest = 0f64;
        for (_, g) in grads.iter_mut() {
            let m = g
                .abs()?
                .max_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
            largest = largest.max(m);
            if m > self.max_value {
                *g = g.clamp(-self.max_value, self.max_value)?;
            }
        }
        report.figures.push(("clip_value.pre_max".into(), largest));
        if largest > self.max_value {
            report.clipped = true;
        }
        Ok(Outcome::Update)
    }
}

/// The keys of `type = "clip_value"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClipValueConfig {
    /// Largest absolute gradient entry let through (> 0).
    pub max_value: f64,
}

impl Default for ClipValueConfig {
    fn default() -> Self {
        ClipValueConfig { max_value: 1.0 }
    }
}

impl PluginConfig for ClipValueConfig {
    fn validate(&self, at: &str) -> Result<()> {
        check_positive(at, "max_value", self.max_value)
    }
}

/// Registers `clip_value`.
pub fn register(r: &mut Registry) {
    r.transforms.register(
        "clip_value",
        "clamp every gradient entry to [-max_value, max_value] (torch clip_grad_value_)",
        ClipValueConfig::default(),
        |c| Ok(Link::gradients(clip_value(c.max_value))),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::transform_test::step_ctx;
    use candle_core::{Device, Tensor};

    #[test]
    fn clamps_like_torch_clip_grad_value() -> Result<()> {
        // torch.nn.utils.clip_grad_value_(p, 2.5) on grads [[3,-4],[1,2]] and [0.5,-6,2.5]
        // -> [[2.5,-2.5],[1,2]] and [0.5,-2.5,2.5]
        let d = Device::Cpu;
        let mut g = Grads::from_pairs([
            (
                "a".to_string(),
                Tensor::new(&[[3f64, -4.0], [1.0, 2.0]], &d)?,
            ),
            ("b".to_string(), Tensor::new(&[0.5f64, -6.0, 2.5], &d)?),
        ]);
        let ctx = step_ctx(0, 0.1);
        let mut report = StepReport::default();
        clip_value(2.5).apply(&mut g, &Params::new(), &ctx, &mut report)?;
        assert!(report.clipped);
        assert_eq!(
            report.figures,
            vec![("clip_value.pre_max".to_string(), 6.0)]
        );
        assert_eq!(
            g.get("a").unwrap().to_vec2::<f64>()?,
            vec![vec![2.5, -2.5], vec![1.0, 2.0]]
        );
        assert_eq!(g.get("b").unwrap().to_vec1::<f64>()?, vec![0.5, -2.5, 2.5]);
        let mut report = StepReport::default();
        clip_value(10.0).apply(&mut g, &Params::new(), &ctx, &mut report)?;
        assert!(!report.clipped);
        Ok(())
    }
}
