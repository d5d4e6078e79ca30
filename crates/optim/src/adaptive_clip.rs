//! `adaptive_clip`: unit-wise adaptive gradient clipping (AGC, Brock et al. 2021, "High-Performance
//! Large-Scale Image Recognition Without Normalization"). Each unit's gradient is rescaled so that
//! `‖g_i‖ ≤ clipping · max(‖w_i‖, eps)`, where a unit is one output row of a matrix (the norm runs
//! over every dimension but the first, as in timm's `adaptive_clip_grad`) and the whole tensor for
//! a vector or scalar (biases, IndRNN's recurrent vector).

use candle_core::{DType, Tensor};
use rnnlab_core::{
    GradientTransform, Grads, Link, Outcome, Params, PluginConfig, Registry, Result, StepContext,
    StepReport,
};
use serde::{Deserialize, Serialize};

use crate::util::{check_positive, param};

/// Unit-wise adaptive gradient clipping.
#[derive(Clone, Debug)]
pub struct AdaptiveClip {
    /// λ: the largest ratio of gradient norm to weight norm let through.
    pub clipping: f64,
    /// Floor of the weight norm, so that zero-initialised units can still move.
    pub eps: f64,
}

/// An `adaptive_clip` transform.
pub fn adaptive_clip(clipping: f64, eps: f64) -> AdaptiveClip {
    AdaptiveClip { clipping, eps }
}

/// The L2 norm of each unit of `t` (rows of a matrix, the whole of a vector), in f64.
fn unit_norms(t: &Tensor) -> Result<Vec<f64>> {
    let rows = units(t);
    let flat = t
        .to_dtype(DType::F64)?
        .reshape((rows, t.elem_count() / rows.max(1)))?;
    Ok(flat.sqr()?.sum(1)?.sqrt()?.to_vec1::<f64>()?)
}

/// How many units `t` has: its first dimension for rank ≥ 2, else 1.
fn units(t: &Tensor) -> usize {
    if t.rank() >= 2 {
        t.dims()[0]
    } else {
        1
    }
}

impl GradientTransform for AdaptiveClip {
    fn name(&self) -> &str {
        "adaptive_clip"
    }

    fn apply(
        &mut self,
        grads: &mut Grads,
        params: &Params,
        _ctx: &StepContext,
        report: &mut StepReport,
    ) -> Result<Outcome> {
        let mut clipped_units = 0usize;
        let mut total_units = 0usize;
        for (name, g) in grads.iter_mut() {
            if g.elem_count() == 0 {
                continue;
            }
            let w_norms = unit_norms(&param(params, name)?)?;
            let g_norms = unit_norms(g)?;
            total_units += g_norms.len();
            // timm: max_norm = clipping * max(|w|, eps); g ← g * max_norm / max(|g|, 1e-6)
            // where |g| >= max_norm
            let factors: Vec<f64> = w_norms
                .iter()
                .zip(&g_norms)
                .map(|(&w, &gn)| {
                    let max_norm = self.clipping * w.max(self.eps);
                    if gn < max_norm {
                        1.0
                    } else {
                        max_norm / gn.max(1e-6)
                    }
                })
                .collect();
            let n = factors.iter().filter(|&&f| f != 1.0).count();
            if n == 0 {
                continue;
            }
            clipped_units += n;
            let rows = factors.len();
            let shape = g.dims().to_vec();
            let f = Tensor::from_vec(factors, (rows, 1), g.device())?.to_dtype(g.dtype())?;
            *g = g
                .reshape((rows, g.elem_count() / rows))?
                .broadcast_mul(&f)?
                .reshape(shape)?;
        }
        report
            .figures
            .push(("adaptive_clip.clipped_units".into(), clipped_units as f64));
        report.figures.push((
            "adaptive_clip.clipped_frac".into(),
            clipped_units as f64 / total_units.max(1) as f64,
        ));
        if clipped_units > 0 {
            report.clipped = true;
        }
        Ok(Outcome::Update)
    }
}

/// The keys of `type = "adaptive_clip"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveClipConfig {
    /// Largest ratio |g_i| / max(|w_i|, eps) let through (> 0).
    pub clipping: f64,
    /// Floor of the weight norm (> 0).
    pub eps: f64,
}

impl Default for AdaptiveClipConfig {
    fn default() -> Self {
        AdaptiveClipConfig {
            clipping: 0.01,
            eps: 1e-3,
        }
    }
}

impl PluginConfig for AdaptiveClipConfig {
    fn validate(&self, at: &str) -> Result<()> {
        check_positive(at, "clipping", self.clipping)?;
        check_positive(at, "eps", self.eps)
    }
}

/// Registers `adaptive_clip`.
pub fn register(r: &mut Registry) {
    r.transforms.register(
        "adaptive_clip",
        "unit-wise adaptive gradient clipping (AGC): per output row, |g_i| <= clipping * max(|w_i|, eps)",
        AdaptiveClipConfig::default(),
        |c| Ok(Link::gradients(adaptive_clip(c.clipping, c.eps))),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::transform_test::{assert_within, step_ctx};
    use candle_core::{Device, Var};

    #[test]
    fn matches_timms_adaptive_clip_grad() -> Result<()> {
        // def unitwise_norm(x):   # timm.utils.agc
        //     if x.ndim <= 1: return x.norm(2.0)
        //     return x.norm(2.0, dim=tuple(range(1, x.ndim)), keepdim=True)
        // def agc(p, g, clip_factor, eps=1e-3):
        //     max_norm = unitwise_norm(p).clamp_(min=eps) * clip_factor
        //     g_norm = unitwise_norm(g)
        //     return torch.where(g_norm < max_norm, g, g * (max_norm / g_norm.clamp(min=1e-6)))
        // w = [[3,4],[0,0],[1,0]], g = [[.3,.4],[1,0],[.01,.02]]; b = [1,2,2], gb = [.2,-.1,0]
        // agc(w, g, 0.05) -> [[0.15, 0.2], [5e-05, 0.0], [0.01, 0.02]]
        // agc(b, gb, 0.05) -> [0.1341640786499874, -0.0670820393249937, 0.0]
        let d = Device::Cpu;
        let mut params = Params::new();
        let w = Tensor::new(&[[3.0f64, 4.0], [0.0, 0.0], [1.0, 0.0]], &d)?;
        params.insert("w", Var::from_tensor(&w)?, true)?;
        params.insert(
            "b",
            Var::from_tensor(&Tensor::new(&[1.0f64, 2.0, 2.0], &d)?)?,
            true,
        )?;
        let mut g = Grads::from_pairs([
            (
                "w".to_string(),
                Tensor::new(&[[0.3f64, 0.4], [1.0, 0.0], [0.01, 0.02]], &d)?,
            ),
            ("b".to_string(), Tensor::new(&[0.2f64, -0.1, 0.0], &d)?),
        ]);
        let ctx = step_ctx(0, 0.1);
        let mut report = StepReport::default();
        adaptive_clip(0.05, 1e-3).apply(&mut g, &params, &ctx, &mut report)?;
        let gw = g.get("w").unwrap().to_vec2::<f64>()?;
        let want = [[0.15, 0.2], [5e-05, 0.0], [0.01, 0.02]];
        assert_within(&gw, &want, 1e-12);
        let gb = g.get("b").unwrap().to_vec1::<f64>()?;
        let want = [0.1341640786499874, -0.0670820393249937, 0.0];
        for i in 0..3 {
            assert!((gb[i] - want[i]).abs() < 1e-12, "{gb:?}");
        }
        assert!(report.clipped);
        assert_eq!(
            report.figures[0],
            ("adaptive_clip.clipped_units".into(), 3.0)
        );
        Ok(())
    }
}
