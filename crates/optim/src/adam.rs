//! `adam`: Adam (Kingma & Ba) with `torch.optim.Adam`'s update rule, written as a transform that
//! turns gradients into updates. Its moments live here.

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::Tensor;
use rnnlab_core::{
    Error, GradientTransform, Grads, Outcome, ParamSpec, Params, PluginParams, PluginSpec,
    Registry, Result, StateDict, StepContext, StepReport,
};

/// Adam's settings and state.
#[derive(Clone, Debug)]
pub struct Adam {
    /// Base learning rate (the scheduler may change the rate actually used).
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    steps: u64,
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
}

/// An Adam transform.
pub fn adam(lr: f64, beta1: f64, beta2: f64, eps: f64) -> Adam {
    Adam {
        lr,
        beta1,
        beta2,
        eps,
        steps: 0,
        m: BTreeMap::new(),
        v: BTreeMap::new(),
    }
}

impl GradientTransform for Adam {
    fn name(&self) -> &str {
        "adam"
    }

    fn base_lr(&self) -> Option<f64> {
        Some(self.lr)
    }

    fn init(&mut self, params: &Params) -> Result<()> {
        self.steps = 0;
        self.m.clear();
        self.v.clear();
        for p in params.trainable() {
            let z = p.var.as_tensor().zeros_like()?;
            self.m.insert(p.name.clone(), z.clone());
            self.v.insert(p.name.clone(), z);
        }
        Ok(())
    }

    fn apply(
        &mut self,
        grads: &mut Grads,
        _params: &Params,
        ctx: &StepContext,
        _report: &mut StepReport,
    ) -> Result<Outcome> {
        self.steps += 1;
        let t = self.steps as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        let step_size = ctx.lr / bc1;
        let sqrt_bc2 = bc2.sqrt();
        for (name, g) in grads.iter_mut() {
            let (m, v) = match (self.m.get_mut(name), self.v.get_mut(name)) {
                (Some(m), Some(v)) => (m, v),
                _ => return Err(Error::Mismatch(format!("adam: no state for `{name}`"))),
            };
            // torch: m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g²;
            //        p -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps)
            *m = ((&*m * self.beta1)? + (&*g * (1.0 - self.beta1))?)?;
            *v = ((&*v * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            let denom = ((v.sqrt()? / sqrt_bc2)? + self.eps)?;
            *g = (m.div(&denom)? * -step_size)?;
        }
        Ok(Outcome::Update)
    }

    fn state_dict(&self) -> Result<StateDict> {
        let mut s = StateDict::new();
        s.insert_scalar("steps", self.steps as f64)?;
        for (k, t) in &self.m {
            s.insert(format!("m.{k}"), t.clone());
        }
        for (k, t) in &self.v {
            s.insert(format!("v.{k}"), t.clone());
        }
        Ok(s)
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        self.steps = state.scalar("steps")? as u64;
        for (k, slot) in self.m.iter_mut() {
            *slot = state.tensor(&format!("m.{k}"))?.to_dtype(slot.dtype())?;
        }
        for (k, slot) in self.v.iter_mut() {
            *slot = state.tensor(&format!("v.{k}"))?.to_dtype(slot.dtype())?;
        }
        Ok(())
    }
}

/// Registers `adam`.
pub fn register(r: &mut Registry) {
    r.transforms.add(
        PluginSpec {
            name: "adam",
            doc: "Adam with torch.optim.Adam's update rule; its lr is the scheduler's base rate",
            params: vec![
                ParamSpec::new("lr", "1e-3", "base learning rate (> 0)"),
                ParamSpec::new("beta1", "0.9", "first-moment decay, in [0, 1)"),
                ParamSpec::new("beta2", "0.999", "second-moment decay, in [0, 1)"),
                ParamSpec::new("eps", "1e-8", "denominator term (> 0)"),
            ],
        },
        Arc::new(|p: &PluginParams| {
            let lr = p.f64("lr")?;
            p.check(
                "lr",
                lr > 0.0 && lr.is_finite(),
                "must be a positive number",
            )?;
            let beta1 = p.f64("beta1")?;
            p.check("beta1", (0.0..1.0).contains(&beta1), "must be in [0, 1)")?;
            let beta2 = p.f64("beta2")?;
            p.check("beta2", (0.0..1.0).contains(&beta2), "must be in [0, 1)")?;
            let eps = p.f64("eps")?;
            p.check("eps", eps > 0.0, "must be positive")?;
            Ok(Box::new(adam(lr, beta1, beta2, eps)) as Box<dyn GradientTransform>)
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use rnnlab_core::apply_updates;

    #[test]
    fn five_steps_match_torch_adam() -> Result<()> {
        let d = Device::Cpu;
        let mut params = Params::new();
        let w = Var::from_tensor(&Tensor::new(&[[0.5f64, -1.0], [2.0, 0.25]], &d)?)?;
        params.insert("w", w.clone(), true)?;
        let mut opt = adam(0.1, 0.9, 0.999, 1e-8);
        opt.init(&params)?;
        let fixed = [
            [[1.0f64, -2.0], [0.5, 3.0]],
            [[0.1, 0.2], [-0.3, 0.4]],
            [[-1.0, 1.0], [2.0, -2.0]],
            [[0.0, 0.5], [0.5, 0.0]],
            [[3.0, -0.1], [0.2, 1.0]],
        ];
        for (i, g) in fixed.iter().enumerate() {
            let mut grads = Grads::from_pairs([("w".to_string(), Tensor::new(g, &d)?)]);
            let ctx = StepContext {
                step: i,
                epoch: 1,
                lr: 0.1,
            };
            opt.apply(&mut grads, &params, &ctx, &mut StepReport::default())?;
            apply_updates(&params, &grads)?;
        }
        let got = w.as_tensor().to_vec2::<f64>()?;
        let want = TORCH_ADAM_5;
        for r in 0..2 {
            for c in 0..2 {
                assert!((got[r][c] - want[r][c]).abs() < 1e-6, "{got:?} vs {want:?}");
            }
        }
        Ok(())
    }

    #[test]
    fn state_round_trip_continues_identically() -> Result<()> {
        let d = Device::Cpu;
        let make = || -> Result<(Params, Var)> {
            let mut params = Params::new();
            let w = Var::from_tensor(&Tensor::new(&[1.0f64, -2.0, 0.5], &d)?)?;
            params.insert("w", w.clone(), true)?;
            Ok((params, w))
        };
        let g = |i: usize| Tensor::new(&[i as f64 * 0.3 - 0.5, 1.0, -0.2 * i as f64], &d);
        let run = |opt: &mut Adam, params: &Params, from: usize, to: usize| -> Result<()> {
            for i in from..to {
                let mut grads = Grads::from_pairs([("w".to_string(), g(i)?)]);
                let ctx = StepContext {
                    step: i,
                    epoch: 1,
                    lr: 0.05,
                };
                opt.apply(&mut grads, params, &ctx, &mut StepReport::default())?;
                apply_updates(params, &grads)?;
            }
            Ok(())
        };
        let (p1, w1) = make()?;
        let mut a1 = adam(0.05, 0.9, 0.999, 1e-8);
        a1.init(&p1)?;
        run(&mut a1, &p1, 0, 6)?;
        let (p2, w2) = make()?;
        let mut a2 = adam(0.05, 0.9, 0.999, 1e-8);
        a2.init(&p2)?;
        run(&mut a2, &p2, 0, 3)?;
        let saved = a2.state_dict()?;
        let mut a3 = adam(0.05, 0.9, 0.999, 1e-8);
        a3.init(&p2)?;
        a3.load_state_dict(&saved)?;
        run(&mut a3, &p2, 3, 6)?;
        assert_eq!(
            w1.as_tensor().to_vec1::<f64>()?,
            w2.as_tensor().to_vec1::<f64>()?
        );
        Ok(())
    }

    // w = torch.tensor([[0.5, -1.0], [2.0, 0.25]], dtype=torch.float64, requires_grad=True)
    // opt = torch.optim.Adam([w], lr=0.1)
    // for g in fixed: w.grad = torch.tensor(g, dtype=torch.float64); opt.step()
    // print(w.detach().tolist())
    const TORCH_ADAM_5: [[f64; 2]; 2] = [
        [0.2861193280890074, -0.8306840020656083],
        [1.6892791065845238, 0.024608811155639617],
    ];
}
