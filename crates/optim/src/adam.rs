//! `adam`: Adam (Kingma & Ba) with `torch.optim.Adam`'s update rule (including `amsgrad` and the
//! coupled `weight_decay`), written as a transform that turns gradients into updates. Its moments
//! live here. The same struct in decoupled mode is `adamw` (see [`crate::adamw`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::Tensor;
use rnnlab_core::{
    GradientTransform, Grads, Outcome, ParamSpec, Params, PluginParams, PluginSpec, Registry,
    Result, StateDict, StepContext, StepReport,
};

use crate::util::{load_into, non_negative, param, positive, save_map, slot, unit_interval};

/// Adam's settings and state (also AdamW's, with `decoupled` set).
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
    /// Weight decay: added to the gradient as `wd·p` (Adam) or, when `decoupled`, applied to the
    /// weights as `p ← p·(1 - lr·wd)` (AdamW).
    pub weight_decay: f64,
    /// AdamW's decoupled decay instead of Adam's L2 term.
    pub decoupled: bool,
    /// Use the running maximum of the second moment (AMSGrad).
    pub amsgrad: bool,
    steps: u64,
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
    vmax: BTreeMap<String, Tensor>,
}

/// An Adam transform (no weight decay, no AMSGrad; see [`Adam::with_amsgrad`] and
/// [`Adam::with_weight_decay`]).
pub fn adam(lr: f64, beta1: f64, beta2: f64, eps: f64) -> Adam {
    Adam {
        lr,
        beta1,
        beta2,
        eps,
        weight_decay: 0.0,
        decoupled: false,
        amsgrad: false,
        steps: 0,
        m: BTreeMap::new(),
        v: BTreeMap::new(),
        vmax: BTreeMap::new(),
    }
}

impl Adam {
    /// Turns AMSGrad on or off.
    pub fn with_amsgrad(mut self, amsgrad: bool) -> Self {
        self.amsgrad = amsgrad;
        self
    }

    /// Sets the weight decay (coupled for Adam, decoupled for AdamW).
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// Optimizer steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }
}

impl GradientTransform for Adam {
    fn name(&self) -> &str {
        if self.decoupled {
            "adamw"
        } else {
            "adam"
        }
    }

    fn base_lr(&self) -> Option<f64> {
        Some(self.lr)
    }

    fn init(&mut self, params: &Params) -> Result<()> {
        self.steps = 0;
        self.m.clear();
        self.v.clear();
        self.vmax.clear();
        for p in params.trainable() {
            let z = p.var.as_tensor().zeros_like()?;
            self.m.insert(p.name.clone(), z.clone());
            self.v.insert(p.name.clone(), z.clone());
            if self.amsgrad {
                self.vmax.insert(p.name.clone(), z);
            }
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
        let t = self.steps as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        let step_size = ctx.lr / bc1;
        let sqrt_bc2 = bc2.sqrt();
        let plugin = if self.decoupled { "adamw" } else { "adam" };
        for (name, g) in grads.iter_mut() {
            let wd = self.weight_decay;
            if wd != 0.0 && !self.decoupled {
                // torch Adam: grad = grad + wd * p
                *g = (&*g + (param(params, name)?.to_dtype(g.dtype())? * wd)?)?;
            }
            // torch: m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g²;
            //        p -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps)   (v → max(vmax, v) for amsgrad)
            let m = slot(&mut self.m, plugin, name)?;
            *m = ((&*m * self.beta1)? + (&*g * (1.0 - self.beta1))?)?;
            let m = m.clone();
            let v = slot(&mut self.v, plugin, name)?;
            *v = ((&*v * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            let mut second = v.clone();
            if self.amsgrad {
                let vmax = slot(&mut self.vmax, plugin, name)?;
                *vmax = vmax.maximum(&second)?;
                second = vmax.clone();
            }
            let denom = ((second.sqrt()? / sqrt_bc2)? + self.eps)?;
            let mut update = (m.div(&denom)? * -step_size)?;
            if wd != 0.0 && self.decoupled {
                // torch AdamW: p ← p·(1 - lr·wd) before the Adam step, i.e. u += -lr·wd·p
                let p = param(params, name)?.to_dtype(g.dtype())?;
                update = (update + (p * (-ctx.lr * wd))?)?;
            }
            *g = update;
        }
        Ok(Outcome::Update)
    }

    fn state_dict(&self) -> Result<StateDict> {
        let mut s = StateDict::new();
        s.insert_scalar("steps", self.steps as f64)?;
        save_map(&mut s, "m", &self.m);
        save_map(&mut s, "v", &self.v);
        save_map(&mut s, "vmax", &self.vmax);
        Ok(s)
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        self.steps = state.scalar("steps")? as u64;
        load_into(state, "m", &mut self.m)?;
        load_into(state, "v", &mut self.v)?;
        load_into(state, "vmax", &mut self.vmax)?;
        Ok(())
    }
}

/// Reads the keys `adam` and `adamw` share.
pub(crate) fn from_params(p: &PluginParams) -> Result<Adam> {
    let lr = positive(p, "lr")?;
    let beta1 = unit_interval(p, "beta1")?;
    let beta2 = unit_interval(p, "beta2")?;
    let eps = positive(p, "eps")?;
    let wd = non_negative(p, "weight_decay")?;
    Ok(adam(lr, beta1, beta2, eps)
        .with_amsgrad(p.bool("amsgrad")?)
        .with_weight_decay(wd))
}

/// The keys `adam` and `adamw` share, with `weight_decay`'s default and doc.
pub(crate) fn specs(weight_decay: ParamSpec) -> Vec<ParamSpec> {
    vec![
        ParamSpec::new("lr", "1e-3", "base learning rate (> 0)"),
        ParamSpec::new("beta1", "0.9", "first-moment decay, in [0, 1)"),
        ParamSpec::new("beta2", "0.999", "second-moment decay, in [0, 1)"),
        ParamSpec::new("eps", "1e-8", "denominator term (> 0)"),
        weight_decay,
        ParamSpec::new(
            "amsgrad",
            "false",
            "use the running maximum of the second moment (AMSGrad)",
        ),
    ]
}

/// Registers `adam`.
pub fn register(r: &mut Registry) {
    r.transforms.add(
        PluginSpec {
            name: "adam",
            doc: "Adam with torch.optim.Adam's update rule; its lr is the scheduler's base rate",
            params: specs(ParamSpec::new(
                "weight_decay",
                "0.0",
                "L2 term added to the gradient (torch Adam's coupled decay), >= 0",
            )),
        },
        Arc::new(|p: &PluginParams| Ok(Box::new(from_params(p)?) as Box<dyn GradientTransform>)),
    );
}

#[cfg(test)]
pub(crate) mod tests {
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

    /// Five steps on the fixed gradients of [`five_steps_match_torch_adam`]; returns the weights.
    pub(crate) fn five_steps(
        mut opt: Box<dyn GradientTransform>,
        lr: f64,
    ) -> Result<Vec<Vec<f64>>> {
        let d = Device::Cpu;
        let mut params = Params::new();
        let w = Var::from_tensor(&Tensor::new(&[[0.5f64, -1.0], [2.0, 0.25]], &d)?)?;
        params.insert("w", w.clone(), true)?;
        opt.init(&params)?;
        for (i, g) in FIXED.iter().enumerate() {
            let mut grads = Grads::from_pairs([("w".to_string(), Tensor::new(g, &d)?)]);
            let ctx = StepContext {
                step: i,
                epoch: 1,
                lr,
            };
            opt.apply(&mut grads, &params, &ctx, &mut StepReport::default())?;
            apply_updates(&params, &grads)?;
        }
        Ok(w.as_tensor().to_vec2::<f64>()?)
    }

    /// Asserts `got` equals torch's `want` to 1e-6.
    pub(crate) fn assert_torch(got: &[Vec<f64>], want: [[f64; 2]; 2]) {
        for r in 0..2 {
            for c in 0..2 {
                assert!(
                    (got[r][c] - want[r][c]).abs() < 1e-6,
                    "{got:?} vs torch {want:?}"
                );
            }
        }
    }

    /// The gradients of the golden tests (the same in every optimizer's test).
    pub(crate) const FIXED: [[[f64; 2]; 2]; 5] = [
        [[1.0, -2.0], [0.5, 3.0]],
        [[0.1, 0.2], [-0.3, 0.4]],
        [[-1.0, 1.0], [2.0, -2.0]],
        [[0.0, 0.5], [0.5, 0.0]],
        [[3.0, -0.1], [0.2, 1.0]],
    ];

    // The golden values of every optimizer come from this script (torch 2.15, float64):
    //   fixed = FIXED above
    //   def run(make):
    //       w = torch.tensor([[0.5, -1.0], [2.0, 0.25]], dtype=torch.float64, requires_grad=True)
    //       opt = make([w])
    //       for g in fixed:
    //           w.grad = torch.tensor(g, dtype=torch.float64); opt.step()
    //       return w.detach().tolist()

    #[test]
    fn amsgrad_matches_torch() -> Result<()> {
        // run(lambda p: torch.optim.Adam(p, lr=0.1, amsgrad=True))
        let got = five_steps(
            Box::new(adam(0.1, 0.9, 0.999, 1e-8).with_amsgrad(true)),
            0.1,
        )?;
        assert_torch(
            &got,
            [
                [0.2861174812477722, -0.8306840020656083],
                [1.6892791065845238, 0.024614514233568353],
            ],
        );
        Ok(())
    }

    #[test]
    fn coupled_weight_decay_matches_torch() -> Result<()> {
        // run(lambda p: torch.optim.Adam(p, lr=0.1, weight_decay=0.1))
        let got = five_steps(
            Box::new(adam(0.1, 0.9, 0.999, 1e-8).with_weight_decay(0.1)),
            0.1,
        )?;
        assert_torch(
            &got,
            [
                [0.2718033482368751, -0.8044851091418481],
                [1.6266632245937755, 0.0225797793955677],
            ],
        );
        Ok(())
    }

    #[test]
    fn bad_values_are_rejected_with_their_key() {
        let mut r = Registry::empty();
        register(&mut r);
        for (cfg, key) in [
            ("type = \"adam\"\nlr = -1.0", "lr"),
            ("type = \"adam\"\nbeta1 = 1.0", "beta1"),
            ("type = \"adam\"\nweight_decay = -0.1", "weight_decay"),
        ] {
            let t: toml::Table = toml::from_str(cfg).unwrap();
            let e = r.transform(&t, "optim.transforms[0]").err().unwrap();
            assert!(
                e.to_string()
                    .contains(&format!("optim.transforms[0].{key}")),
                "{e}"
            );
        }
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
