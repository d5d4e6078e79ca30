//! `clip_global_norm`: rescales all gradients together when their global norm exceeds `max_norm`,
//! as `torch.nn.utils.clip_grad_norm_`.

use rnnlab_core::{
    GradientTransform, Grads, Link, Outcome, Params, PluginConfig, Registry, Result, StepContext,
    StepReport,
};
use serde::{Deserialize, Serialize};

use crate::flat::max_abs;
use crate::util::check_positive;

/// Which norm `clip_global_norm` measures (`norm_type = "l2"` or `"inf"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NormType {
    /// Square root of the sum of squares over every gradient entry.
    L2,
    /// Largest absolute gradient entry.
    Inf,
}

/// Clips the global gradient norm to `max_norm`.
#[derive(Clone, Debug)]
pub struct ClipGlobalNorm {
    /// The largest norm let through unchanged.
    pub max_norm: f64,
    /// The norm measured.
    pub norm_type: NormType,
}

/// A `clip_global_norm` transform.
pub fn clip_global_norm(max_norm: f64, norm_type: NormType) -> ClipGlobalNorm {
    ClipGlobalNorm {
        max_norm,
        norm_type,
    }
}

/// The global norm of `grads` of the given type, as `torch.nn.utils.clip_grad_norm_` computes
/// it (in f64 here): one pass over each gradient's values, no temporaries. An infinite or NaN
/// entry gives an infinite or NaN norm.
pub fn global_norm(grads: &Grads, norm_type: NormType) -> Result<f64> {
    match norm_type {
        // The trainer and the grad_norm monitor have read the same raw gradients: `Grads`
        // keeps their squared norms until a transform changes them (same sum, same order).
        NormType::L2 => grads.global_norm(),
        NormType::Inf => {
            let mut m = 0f64;
            for (_, g) in grads.iter() {
                let v = max_abs(g)?;
                if v.is_nan() {
                    return Ok(v);
                }
                m = m.max(v);
            }
            Ok(m)
        }
    }
}

impl GradientTransform for ClipGlobalNorm {
    fn name(&self) -> &str {
        "clip_global_norm"
    }

    fn apply(
        &mut self,
        grads: &mut Grads,
        _params: &Params,
        _ctx: &StepContext,
        report: &mut StepReport,
    ) -> Result<Outcome> {
        let norm = global_norm(grads, self.norm_type)?;
        report
            .figures
            .push(("clip_global_norm.pre_norm".into(), norm));
        // torch: clip_coef = max_norm / (total_norm + 1e-6), applied when below 1.
        let coef = self.max_norm / (norm + 1e-6);
        if coef < 1.0 {
            for (_, g) in grads.iter_mut() {
                *g = g.affine(coef, 0.0)?;
            }
            report.clipped = true;
        }
        Ok(Outcome::Update)
    }
}

/// The keys of `type = "clip_global_norm"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClipGlobalNormConfig {
    /// Largest global norm let through (> 0).
    pub max_norm: f64,
    /// l2 or inf.
    pub norm_type: NormType,
}

impl Default for ClipGlobalNormConfig {
    fn default() -> Self {
        ClipGlobalNormConfig {
            max_norm: 5.0,
            norm_type: NormType::L2,
        }
    }
}

impl PluginConfig for ClipGlobalNormConfig {
    fn validate(&self, at: &str) -> Result<()> {
        check_positive(at, "max_norm", self.max_norm)
    }
}

/// Registers `clip_global_norm`.
pub fn register(r: &mut Registry) {
    r.transforms.register(
        "clip_global_norm",
        "rescale all gradients together when their global norm exceeds max_norm (torch clip_grad_norm_)",
        ClipGlobalNormConfig::default(),
        |c| Ok(Link::gradients(clip_global_norm(c.max_norm, c.norm_type))),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::transform_test::{assert_within, step_ctx};
    use candle_core::{Device, Tensor};

    #[test]
    fn an_integer_max_norm_is_read_as_a_number() {
        let t: toml::Table = toml::from_str("max_norm = 5\nnorm_type = \"inf\"").unwrap();
        let c: ClipGlobalNormConfig = rnnlab_core::PluginParams::from_table(t, "x")
            .typed()
            .unwrap();
        assert_eq!(c.max_norm, 5.0);
        assert_eq!(c.norm_type, NormType::Inf);
    }

    #[test]
    fn a_misspelt_norm_type_is_named_with_a_suggestion() {
        let mut r = Registry::empty();
        register(&mut r);
        let t: toml::Table =
            toml::from_str("type = \"clip_global_norm\"\nnorm_type = \"lnf\"").unwrap();
        let e = r
            .transform(&t, "optim.transforms[0]")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("`optim.transforms[0].norm_type`"), "{e}");
        assert!(e.contains("did you mean `inf`?"), "{e}");
    }

    fn fixture() -> Grads {
        let d = Device::Cpu;
        Grads::from_pairs([
            (
                "a".to_string(),
                Tensor::new(&[[3f64, -4.0], [1.0, 2.0]], &d).unwrap(),
            ),
            (
                "b".to_string(),
                Tensor::new(&[0.5f64, -6.0, 2.5], &d).unwrap(),
            ),
        ])
    }

    /// [`fixture`] after one L2 `clip_global_norm(max_norm)` step, and its report.
    fn clipped(max_norm: f64) -> Result<(Grads, StepReport)> {
        let mut g = fixture();
        let mut report = StepReport::default();
        let ctx = step_ctx(0, 0.1);
        clip_global_norm(max_norm, NormType::L2).apply(
            &mut g,
            &Params::new(),
            &ctx,
            &mut report,
        )?;
        Ok((g, report))
    }

    #[test]
    fn total_norm_matches_torch_clip_grad_norm() -> Result<()> {
        // a = torch.tensor([[3.,-4.],[1.,2.]], requires_grad=True); b likewise [0.5,-6.,2.5]
        // a.grad, b.grad = a.detach().clone(), b.detach().clone()
        // torch.nn.utils.clip_grad_norm_([a, b], max_norm=5.0) -> 8.514693182963201
        // a.grad -> [[1.761660451647583, -2.348880602196777], [0.5872201505491943, 1.1744403010983886]]
        let (g, report) = clipped(5.0)?;
        assert!((report.figures[0].1 - 8.514693182963201).abs() < 1e-12);
        assert!(report.clipped);
        let a = g.get("a").unwrap().to_vec2::<f64>()?;
        let want = [
            [1.761660451647583, -2.348880602196777],
            [0.5872201505491943, 1.1744403010983886],
        ];
        assert_within(&a, &want, 1e-12);
        assert!((g.global_norm()? - 5.0).abs() < 1e-5);
        Ok(())
    }

    #[test]
    fn below_the_threshold_nothing_changes() -> Result<()> {
        let (g, report) = clipped(10.0)?;
        assert!(!report.clipped);
        assert_eq!(g.get("b").unwrap().to_vec1::<f64>()?, vec![0.5, -6.0, 2.5]);
        // inf norm: torch clip_grad_norm_(..., norm_type=float('inf')) -> 6.0
        assert_eq!(global_norm(&fixture(), NormType::Inf)?, 6.0);
        Ok(())
    }
}
