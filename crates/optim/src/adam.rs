//! `adam`: Adam (Kingma & Ba) with `torch.optim.Adam`'s update rule (including `amsgrad` and the
//! coupled `weight_decay`), written as a transform that turns gradients into updates. Its moments
//! live here. The same struct in decoupled mode is `adamw` (see [`crate::adamw`]).

use std::collections::BTreeMap;
use std::sync::Mutex;

use candle_core::{Shape, Tensor};
use rnnlab_core::{
    Error, GradientTransform, Grads, Link, Outcome, Params, PluginConfig, Registry, Result,
    StateDict, StepContext, StepReport,
};
use serde::{Deserialize, Serialize};

use crate::flat::{unsupported, with_slice, Buf, Real};
use crate::util::{check_non_negative, check_positive, check_unit_interval, param};

/// One parameter's moments, flat, in the parameter's dtype.
#[derive(Clone, Debug)]
struct Moments {
    shape: Shape,
    m: Buf,
    v: Buf,
    /// The running maximum of `v` (AMSGrad only).
    vmax: Option<Buf>,
}

/// Adam's settings and state (also AdamW's, with `decoupled` set).
///
/// The moments are kept as flat vectors and each parameter's update is computed in one loop
/// over its gradient (and its value, with weight decay), not one tensor op per term; the
/// checkpointed state keeps the names `m.{param}`, `v.{param}`, `vmax.{param}` and `steps`.
#[derive(Clone, Debug)]
pub struct Adam {
    cfg: AdamConfig,
    /// AdamW's decoupled decay instead of Adam's L2 term.
    decoupled: bool,
    steps: u64,
    state: BTreeMap<String, Moments>,
}

/// An Adam transform (no weight decay, no AMSGrad; see [`Adam::with_amsgrad`] and
/// [`Adam::with_weight_decay`]).
pub fn adam(lr: f64, beta1: f64, beta2: f64, eps: f64) -> Adam {
    AdamConfig {
        lr,
        beta1,
        beta2,
        eps,
        ..AdamConfig::default()
    }
    .build()
}

impl Adam {
    /// Turns AMSGrad on or off.
    pub fn with_amsgrad(mut self, amsgrad: bool) -> Self {
        self.cfg.amsgrad = amsgrad;
        self
    }

    /// Sets the weight decay (coupled for Adam, decoupled for AdamW).
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.cfg.weight_decay = weight_decay;
        self
    }

    /// The same settings with AdamW's decoupled weight decay.
    pub fn decoupled(mut self) -> Self {
        self.decoupled = true;
        self
    }

    /// The settings it was built with (`weight_decay` is decoupled when [`Adam::is_decoupled`]).
    pub fn config(&self) -> &AdamConfig {
        &self.cfg
    }

    /// Whether the weight decay is AdamW's (decoupled) rather than Adam's L2 term.
    pub fn is_decoupled(&self) -> bool {
        self.decoupled
    }

    /// Optimizer steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    fn plugin(&self) -> &'static str {
        if self.decoupled {
            "adamw"
        } else {
            "adam"
        }
    }
}

/// The step's scalars, in the parameter's float type.
#[derive(Clone, Copy)]
struct Coefs<T> {
    beta1: T,
    one_minus_beta1: T,
    beta2: T,
    one_minus_beta2: T,
    /// `1 / sqrt(1 - beta2^t)`.
    inv_sqrt_bc2: T,
    eps: T,
    /// `-lr / (1 - beta1^t)`.
    neg_step: T,
    /// Coupled decay `wd` (added to the gradient as `wd·p`).
    wd: T,
    /// Decoupled decay `-lr·wd` (added to the update as `-lr·wd·p`).
    neg_lr_wd: T,
}

/// One Adam step over one parameter's values, in one pass: updates `m`, `v` (and `vmax`) in
/// place and writes the update to `out`. Follows torch's single-tensor Adam: `m ← lerp(m, g,
/// 1-β1)`, `v ← β2·v + (1-β2)·g²`, `u = -step · m / (sqrt(v)/sqrt(bc2) + eps)`. `COUPLED` adds
/// `wd·p` to the gradient first (Adam's `weight_decay`), `DECOUPLED` adds `-lr·wd·p` to the
/// update (AdamW), `AMS` divides by the running maximum of `v`; `p` and `vmax` are read only
/// then (and may be empty otherwise). A plain loop over separate slice arguments, so the
/// compiler knows they do not alias and vectorises it.
#[inline(never)]
fn kernel<T: Real, const COUPLED: bool, const DECOUPLED: bool, const AMS: bool>(
    c: Coefs<T>,
    g: &[T],
    p: &[T],
    m: &mut [T],
    v: &mut [T],
    vmax: &mut [T],
    out: &mut [T],
) {
    let n = out.len();
    let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
    let p = if COUPLED || DECOUPLED { &p[..n] } else { p };
    let vmax = if AMS { &mut vmax[..n] } else { vmax };
    let Coefs {
        beta1,
        one_minus_beta1,
        beta2,
        one_minus_beta2,
        inv_sqrt_bc2,
        eps,
        neg_step,
        wd,
        neg_lr_wd,
    } = c;
    // torch's lerp with weight w = 1-β1: m + w·(g - m) when w < 0.5, else g - (g - m)·(1 - w).
    let lerp_low = one_minus_beta1 < T::from_f64(0.5);
    for i in 0..n {
        let mut gi = g[i];
        if COUPLED {
            gi += wd * p[i];
        }
        let mi = if lerp_low {
            m[i] + one_minus_beta1 * (gi - m[i])
        } else {
            gi - (gi - m[i]) * beta1
        };
        m[i] = mi;
        let vi = v[i] * beta2 + one_minus_beta2 * (gi * gi);
        v[i] = vi;
        let second = if AMS {
            let mx = if vmax[i] > vi { vmax[i] } else { vi };
            vmax[i] = mx;
            mx
        } else {
            vi
        };
        // torch divides by sqrt(bc2); a multiply by its inverse (as the candle-op version did)
        // leaves one division per value, the loop's bottleneck, and differs by an ulp at most.
        let u = neg_step * (mi / (second.sqrt() * inv_sqrt_bc2 + eps));
        out[i] = if DECOUPLED { u + neg_lr_wd * p[i] } else { u };
    }
}

/// Values per work unit when a large parameter (the embedding table) is spread over the CPU
/// workers; parameters below two units run on the calling thread.
const CHUNK: usize = 1 << 15;

/// Cuts `x` into `k` consecutive pieces of [`CHUNK`] values (the last may be shorter), or `k`
/// empty slices when `x` is empty (an argument the kernel does not read).
fn pieces<T>(x: &[T], k: usize) -> Vec<&[T]> {
    if x.is_empty() {
        vec![x; k]
    } else {
        x.chunks(CHUNK).collect()
    }
}

/// [`pieces`] for mutable slices.
fn pieces_mut<T>(x: &mut [T], k: usize) -> Vec<&mut [T]> {
    if x.is_empty() {
        (0..k).map(|_| -> &mut [T] { &mut [] }).collect()
    } else {
        x.chunks_mut(CHUNK).collect()
    }
}

/// One work unit's slices: gradient, weights, m, v, vmax, update.
type Unit<'a, T> = (
    &'a [T],
    &'a [T],
    &'a mut [T],
    &'a mut [T],
    &'a mut [T],
    &'a mut [T],
);

/// Dispatches [`kernel`] on the decay mode and AMSGrad. A large parameter is cut into units
/// of [`CHUNK`] values run on candle's CPU worker pool: the threads candle's own large
/// elementwise ops use, still spinning from the backward pass, so they start at once and no
/// second pool competes for the two cores.
#[allow(clippy::too_many_arguments)]
fn run_kernel<T: Real>(
    c: Coefs<T>,
    decay: Decay,
    g: &[T],
    p: &[T],
    m: &mut [T],
    v: &mut [T],
    vmax: &mut [T],
    out: &mut [T],
) {
    let n = out.len();
    if n < 2 * CHUNK {
        run_one(c, decay, g, p, m, v, vmax, out);
        return;
    }
    let k = n.div_ceil(CHUNK);
    let units: Vec<Mutex<Option<Unit<'_, T>>>> = pieces(&g[..n], k)
        .into_iter()
        .zip(pieces(p, k))
        .zip(pieces_mut(&mut m[..n], k))
        .zip(pieces_mut(&mut v[..n], k))
        .zip(pieces_mut(vmax, k))
        .zip(pieces_mut(out, k))
        .map(|(((((g, p), m), v), x), o)| Mutex::new(Some((g, p, m, v, x, o))))
        .collect();
    candle_core::utils::barrier_pool().execute_chunked(k, |range| {
        for i in range {
            // each unit is taken exactly once; the lock is never contended
            let unit = units[i].lock().ok().and_then(|mut u| u.take());
            if let Some((g, p, m, v, x, o)) = unit {
                run_one(c, decay, g, p, m, v, x, o);
            }
        }
    });
}

/// [`kernel`] for this decay mode, with AMSGrad when `vmax` is not empty.
#[allow(clippy::too_many_arguments)]
fn run_one<T: Real>(
    c: Coefs<T>,
    decay: Decay,
    g: &[T],
    p: &[T],
    m: &mut [T],
    v: &mut [T],
    vmax: &mut [T],
    out: &mut [T],
) {
    match (decay, vmax.is_empty()) {
        (Decay::None, true) => kernel::<T, false, false, false>(c, g, p, m, v, vmax, out),
        (Decay::Coupled, true) => kernel::<T, true, false, false>(c, g, p, m, v, vmax, out),
        (Decay::Decoupled, true) => kernel::<T, false, true, false>(c, g, p, m, v, vmax, out),
        (Decay::None, false) => kernel::<T, false, false, true>(c, g, p, m, v, vmax, out),
        (Decay::Coupled, false) => kernel::<T, true, false, true>(c, g, p, m, v, vmax, out),
        (Decay::Decoupled, false) => kernel::<T, false, true, true>(c, g, p, m, v, vmax, out),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Decay {
    None,
    Coupled,
    Decoupled,
}

/// One parameter's step in its dtype `T`: the update as a tensor shaped like `g` (with the
/// running maximum of `v` when `amsgrad`).
#[allow(clippy::too_many_arguments)]
fn step_param<T: Real>(
    plugin: &str,
    name: &str,
    c: Coefs<T>,
    decay: Decay,
    amsgrad: bool,
    g: &Tensor,
    p: Option<Tensor>,
    st: &mut Moments,
) -> Result<Tensor> {
    let n = st.m.len();
    if g.elem_count() != n {
        return Err(Error::Mismatch(format!(
            "{plugin}: gradient of `{name}` has shape {:?} but its state has {:?}",
            g.dims(),
            st.shape.dims()
        )));
    }
    let mismatch = || Error::Mismatch(format!("{plugin}: state of `{name}` is not {:?}", T::DTYPE));
    let g = g.to_dtype(T::DTYPE)?;
    let p = p.map(|p| p.to_dtype(T::DTYPE)).transpose()?;
    let m = T::slice_mut(&mut st.m).ok_or_else(mismatch)?;
    let v = T::slice_mut(&mut st.v).ok_or_else(mismatch)?;
    let vmax: &mut [T] = match st.vmax.as_mut() {
        Some(b) if amsgrad => T::slice_mut(b).ok_or_else(mismatch)?,
        _ => &mut [],
    };
    let mut out = vec![T::zero(); n];
    with_slice::<T, _>(&g, |gs| match &p {
        Some(p) => with_slice::<T, _>(p, |ps| run_kernel(c, decay, gs, ps, m, v, vmax, &mut out)),
        None => {
            run_kernel(c, decay, gs, &[], m, v, vmax, &mut out);
            Ok(())
        }
    })??;
    Ok(Tensor::from_vec(out, g.shape(), g.device())?)
}

impl GradientTransform for Adam {
    fn name(&self) -> &str {
        self.plugin()
    }

    fn init(&mut self, params: &Params) -> Result<()> {
        self.steps = 0;
        self.state.clear();
        let plugin = self.plugin();
        for p in params.trainable() {
            let (dtype, n) = (p.var.dtype(), p.var.elem_count());
            let what = format!("{plugin}: parameter `{}`", p.name);
            let m = Buf::zeros(dtype, n, &what)?;
            let vmax = if self.cfg.amsgrad {
                Some(m.clone())
            } else {
                None
            };
            self.state.insert(
                p.name.clone(),
                Moments {
                    shape: p.var.shape().clone(),
                    v: m.clone(),
                    m,
                    vmax,
                },
            );
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
        let c = &self.cfg;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        let wd = c.weight_decay;
        let decay = match (wd != 0.0, self.decoupled) {
            (false, _) => Decay::None,
            (true, false) => Decay::Coupled,
            (true, true) => Decay::Decoupled,
        };
        let plugin = self.plugin();
        let amsgrad = c.amsgrad;
        let f = [
            c.beta1,
            1.0 - c.beta1,
            c.beta2,
            1.0 - c.beta2,
            1.0 / bc2.sqrt(),
            c.eps,
            -ctx.lr / bc1,
            wd,
            -ctx.lr * wd,
        ];
        fn coefs<T: Real>(f: &[f64; 9]) -> Coefs<T> {
            let c = |i: usize| T::from_f64(f[i]);
            Coefs {
                beta1: c(0),
                one_minus_beta1: c(1),
                beta2: c(2),
                one_minus_beta2: c(3),
                inv_sqrt_bc2: c(4),
                eps: c(5),
                neg_step: c(6),
                wd: c(7),
                neg_lr_wd: c(8),
            }
        }
        for (name, g) in grads.iter_mut() {
            let st = self.state.get_mut(name).ok_or_else(|| {
                Error::Mismatch(format!(
                    "{plugin}: no state for `{name}` (init not called?)"
                ))
            })?;
            if amsgrad && st.vmax.is_none() {
                return Err(Error::Mismatch(format!(
                    "{plugin}: no AMSGrad state for `{name}` (init not called after amsgrad was set?)"
                )));
            }
            let p = match decay {
                Decay::None => None,
                _ => Some(param(params, name)?),
            };
            *g = match st.m.dtype() {
                candle_core::DType::F32 => {
                    step_param::<f32>(plugin, name, coefs(&f), decay, amsgrad, g, p, st)?
                }
                candle_core::DType::F64 => {
                    step_param::<f64>(plugin, name, coefs(&f), decay, amsgrad, g, p, st)?
                }
                other => return Err(unsupported(plugin, other)),
            };
        }
        Ok(Outcome::Update)
    }

    fn state_dict(&self) -> Result<StateDict> {
        let mut s = StateDict::new();
        s.insert_scalar("steps", self.steps as f64)?;
        for (name, st) in &self.state {
            s.insert(format!("m.{name}"), st.m.to_tensor(&st.shape)?);
            s.insert(format!("v.{name}"), st.v.to_tensor(&st.shape)?);
            if let Some(vmax) = &st.vmax {
                s.insert(format!("vmax.{name}"), vmax.to_tensor(&st.shape)?);
            }
        }
        Ok(s)
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        self.steps = state.scalar("steps")? as u64;
        for (name, st) in self.state.iter_mut() {
            for (prefix, buf) in [("m", Some(&mut st.m)), ("v", Some(&mut st.v))]
                .into_iter()
                .chain([("vmax", st.vmax.as_mut())])
            {
                if let Some(buf) = buf {
                    let key = format!("{prefix}.{name}");
                    buf.load(state.tensor(&key)?, &key)?;
                }
            }
        }
        Ok(())
    }
}

/// The keys of `type = "adam"` (and, with another default weight decay, of `adamw`:
/// [`crate::adamw::AdamWConfig`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdamConfig {
    /// Base learning rate (> 0).
    pub lr: f64,
    /// First-moment decay, in [0, 1).
    pub beta1: f64,
    /// Second-moment decay, in [0, 1).
    pub beta2: f64,
    /// Denominator term (> 0).
    pub eps: f64,
    /// L2 term added to the gradient (torch Adam's coupled decay), >= 0.
    pub weight_decay: f64,
    /// Use the running maximum of the second moment (AMSGrad).
    pub amsgrad: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
        }
    }
}

impl PluginConfig for AdamConfig {
    fn validate(&self, at: &str) -> Result<()> {
        check_positive(at, "lr", self.lr)?;
        check_unit_interval(at, "beta1", self.beta1)?;
        check_unit_interval(at, "beta2", self.beta2)?;
        check_positive(at, "eps", self.eps)?;
        check_non_negative(at, "weight_decay", self.weight_decay)
    }
}

impl AdamConfig {
    /// The Adam transform these keys describe (coupled weight decay).
    pub fn build(&self) -> Adam {
        Adam {
            cfg: self.clone(),
            decoupled: false,
            steps: 0,
            state: BTreeMap::new(),
        }
    }
}

/// Registers `adam`.
pub fn register(r: &mut Registry) {
    r.transforms.register(
        "adam",
        "Adam with torch.optim.Adam's update rule; its lr is the scheduler's base rate",
        AdamConfig::default(),
        |c| Ok(Link::gradients(c.build())),
    );
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::util::transform_test::{assert_within, step_ctx};
    use candle_core::{DType, Device, Var};
    use rnnlab_core::apply_updates;

    #[test]
    fn five_steps_match_torch_adam() -> Result<()> {
        let got = five_steps(Box::new(adam(0.1, 0.9, 0.999, 1e-8)), 0.1)?;
        assert_torch(&got, TORCH_ADAM_5);
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
                let ctx = step_ctx(i, 0.05);
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
        let step =
            |o: &mut Box<dyn GradientTransform>, g: &mut Grads, p: &Params, ctx: &StepContext| {
                o.apply(g, p, ctx, &mut StepReport::default())?;
                Ok(())
            };
        run_fixed(
            &mut opt,
            FIXED.len(),
            lr,
            DType::F64,
            |o, p| o.init(p),
            step,
        )
    }

    /// The weights `[[0.5, -1], [2, 0.25]]` (in `dtype`) after `init(t, ..)` and, for each of the
    /// first `n` gradients of [`FIXED`] (in `dtype`), `step(t, ..)` at step `i` of epoch 1 with
    /// rate `lr` and then the update applied; returned as f64.
    pub(crate) fn run_fixed<T>(
        t: &mut T,
        n: usize,
        lr: f64,
        dtype: DType,
        init: impl FnOnce(&mut T, &Params) -> Result<()>,
        mut step: impl FnMut(&mut T, &mut Grads, &Params, &StepContext) -> Result<()>,
    ) -> Result<Vec<Vec<f64>>> {
        let d = Device::Cpu;
        let mut params = Params::new();
        let w0 = Tensor::new(&[[0.5f64, -1.0], [2.0, 0.25]], &d)?.to_dtype(dtype)?;
        let w = Var::from_tensor(&w0)?;
        params.insert("w", w.clone(), true)?;
        init(t, &params)?;
        for (i, g) in FIXED[..n].iter().enumerate() {
            let g = Tensor::new(g, &d)?.to_dtype(dtype)?;
            let mut grads = Grads::from_pairs([("w".to_string(), g)]);
            step(t, &mut grads, &params, &step_ctx(i, lr))?;
            apply_updates(&params, &grads)?;
        }
        Ok(w.as_tensor().to_dtype(DType::F64)?.to_vec2::<f64>()?)
    }

    /// Asserts `got` equals torch's `want` to 1e-6.
    pub(crate) fn assert_torch(got: &[Vec<f64>], want: [[f64; 2]; 2]) {
        assert_within(got, &want, 1e-6);
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

    /// [`five_steps`] with the weights and gradients in `dtype`.
    fn five_steps_in(mut opt: Adam, lr: f64, dtype: DType) -> Result<Vec<Vec<f64>>> {
        let step = |o: &mut Adam, g: &mut Grads, p: &Params, ctx: &StepContext| {
            o.apply(g, p, ctx, &mut StepReport::default())?;
            assert_eq!(g.get("w").unwrap().dtype(), dtype);
            Ok(())
        };
        run_fixed(&mut opt, FIXED.len(), lr, dtype, |o, p| o.init(p), step)
    }

    #[test]
    fn f32_weights_match_torch_in_f32() -> Result<()> {
        // The script above with dtype=torch.float32 (torch 2.15): each optimizer's weights after
        // five steps. beta1 = 0.3 takes torch's other lerp branch (weight 1-beta1 >= 0.5).
        let cases: [(Adam, [[f64; 2]; 2]); 4] = [
            (
                // torch.optim.Adam(p, lr=0.1)
                adam(0.1, 0.9, 0.999, 1e-8),
                [
                    [0.28611934185028076, -0.8306840062141418],
                    [1.6892790794372559, 0.024608807638287544],
                ],
            ),
            (
                // torch.optim.AdamW(p, lr=0.1, weight_decay=0.1, amsgrad=True, betas=(0.8, 0.99))
                crate::adamw::adamw(0.1, 0.8, 0.99, 1e-8, 0.1).with_amsgrad(true),
                [
                    [0.2791703939437866, -0.8162804245948792],
                    [1.5963778495788574, 0.04231970012187958],
                ],
            ),
            (
                // torch.optim.Adam(p, lr=0.1, weight_decay=0.1, amsgrad=True)
                adam(0.1, 0.9, 0.999, 1e-8)
                    .with_weight_decay(0.1)
                    .with_amsgrad(true),
                [
                    [0.27180373668670654, -0.8044852018356323],
                    [1.6266632080078125, 0.022585786879062653],
                ],
            ),
            (
                // torch.optim.Adam(p, lr=0.1, betas=(0.3, 0.999))
                adam(0.1, 0.3, 0.999, 1e-8),
                [
                    [0.32230788469314575, -0.9829234480857849],
                    [1.7011858224868774, 0.14169949293136597],
                ],
            ),
        ];
        for (opt, want) in cases {
            let name = format!(
                "{} beta1 {} amsgrad {} wd {}",
                opt.name(),
                opt.cfg.beta1,
                opt.cfg.amsgrad,
                opt.cfg.weight_decay
            );
            let got = five_steps_in(opt.clone(), 0.1, candle_core::DType::F32)?;
            for r in 0..2 {
                for c in 0..2 {
                    // a few f32 ulps of a value near 1
                    assert!(
                        (got[r][c] - want[r][c]).abs() < 1e-6,
                        "{name}: {got:?} vs torch f32 {want:?}"
                    );
                }
            }
        }
        // and beta1 = 0.3 in f64: torch float64 gives
        // [[0.32230786153968904, -0.9829234069426888], [1.7011858247071683, 0.14169948146668762]]
        let got = five_steps_in(adam(0.1, 0.3, 0.999, 1e-8), 0.1, candle_core::DType::F64)?;
        assert_torch(
            &got,
            [
                [0.32230786153968904, -0.9829234069426888],
                [1.7011858247071683, 0.14169948146668762],
            ],
        );
        Ok(())
    }

    /// Adam's update of one value by the textbook formula, in f64 (m, v, vmax updated).
    #[allow(clippy::too_many_arguments)]
    fn reference_update(
        a: &Adam,
        t: i32,
        lr: f64,
        g: f64,
        p: f64,
        m: &mut f64,
        v: &mut f64,
        vmax: &mut f64,
    ) -> f64 {
        let g = if a.decoupled {
            g
        } else {
            g + a.cfg.weight_decay * p
        };
        *m = a.cfg.beta1 * *m + (1.0 - a.cfg.beta1) * g;
        *v = a.cfg.beta2 * *v + (1.0 - a.cfg.beta2) * g * g;
        *vmax = vmax.max(*v);
        let second = if a.cfg.amsgrad { *vmax } else { *v };
        let bc1 = 1.0 - a.cfg.beta1.powi(t);
        let bc2 = 1.0 - a.cfg.beta2.powi(t);
        let u = -lr / bc1 * *m / (second.sqrt() / bc2.sqrt() + a.cfg.eps);
        if a.decoupled {
            u - lr * a.cfg.weight_decay * p
        } else {
            u
        }
    }

    #[test]
    fn large_parameters_updated_in_units_match_the_formula() -> Result<()> {
        // 70,001 values (three work units, the last short): the units' seams and offsets are
        // covered, with every mode that reads the weights or the running maximum.
        let n = 70_001usize;
        assert!(n >= 2 * CHUNK && !n.is_multiple_of(CHUNK));
        let d = Device::Cpu;
        // |g| in [0.5, 1] and |wd·p| <= 0.1: the decayed gradient never nearly cancels (Adam
        // would turn an f32-vs-f64 rounding residue into a full-sized step).
        let g_at = |step: usize, i: usize| {
            let x = ((i * 7919 + step * 104_729) % 2001) as f64 / 1000.0 - 1.0;
            x.signum() * (0.5 + 0.5 * x.abs())
        };
        let p0: Vec<f64> = (0..n)
            .map(|i| ((i * 31) % 997) as f64 / 500.0 - 1.0)
            .collect();
        for opt in [
            adam(0.01, 0.9, 0.999, 1e-8),
            adam(0.01, 0.9, 0.99, 1e-8)
                .with_weight_decay(0.1)
                .with_amsgrad(true),
            crate::adamw::adamw(0.01, 0.8, 0.99, 1e-6, 0.05).with_amsgrad(true),
        ] {
            for dtype in [candle_core::DType::F64, candle_core::DType::F32] {
                let mut opt = opt.clone();
                let mut params = Params::new();
                let w = Var::from_tensor(&Tensor::new(p0.as_slice(), &d)?.to_dtype(dtype)?)?;
                params.insert("w", w.clone(), true)?;
                opt.init(&params)?;
                let (mut m, mut v, mut vmax) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
                let mut p = w
                    .as_tensor()
                    .to_dtype(candle_core::DType::F64)?
                    .to_vec1::<f64>()?;
                for step in 0..3 {
                    let g: Vec<f64> = (0..n).map(|i| g_at(step, i)).collect();
                    let gt = Tensor::new(g.as_slice(), &d)?.to_dtype(dtype)?;
                    let mut grads = Grads::from_pairs([("w".to_string(), gt)]);
                    let ctx = step_ctx(step, 0.01);
                    opt.apply(&mut grads, &params, &ctx, &mut StepReport::default())?;
                    let got = grads.get("w").unwrap().to_dtype(candle_core::DType::F64)?;
                    let got = got.to_vec1::<f64>()?;
                    let tol = if dtype == candle_core::DType::F64 {
                        1e-12
                    } else {
                        2e-5
                    };
                    for i in 0..n {
                        let want = reference_update(
                            &opt,
                            step as i32 + 1,
                            0.01,
                            g[i],
                            p[i],
                            &mut m[i],
                            &mut v[i],
                            &mut vmax[i],
                        );
                        assert!(
                            (got[i] - want).abs() <= tol * want.abs().max(1e-3),
                            "{} amsgrad {} wd {} {dtype:?} step {step} value {i}: {} vs {want}",
                            opt.name(),
                            opt.cfg.amsgrad,
                            opt.cfg.weight_decay,
                            got[i]
                        );
                    }
                    apply_updates(&params, &grads)?;
                    p = w
                        .as_tensor()
                        .to_dtype(candle_core::DType::F64)?
                        .to_vec1::<f64>()?;
                }
            }
        }
        Ok(())
    }

    #[test]
    fn state_keeps_its_names_and_checks_shapes() -> Result<()> {
        let d = Device::Cpu;
        let mut params = Params::new();
        let w = Var::from_tensor(&Tensor::new(&[[0.5f32, -1.0], [2.0, 0.25]], &d)?)?;
        params.insert("rnn.weight_hh_l0", w, true)?;
        let mut opt = adam(0.1, 0.9, 0.999, 1e-8).with_amsgrad(true);
        opt.init(&params)?;
        let g = Tensor::new(&[[1f32, -2.0], [0.5, 3.0]], &d)?;
        let mut grads = Grads::from_pairs([("rnn.weight_hh_l0".to_string(), g)]);
        let ctx = step_ctx(0, 0.1);
        opt.apply(&mut grads, &params, &ctx, &mut StepReport::default())?;
        let s = opt.state_dict()?;
        let keys: Vec<&str> = s.tensors.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "m.rnn.weight_hh_l0",
                "steps",
                "v.rnn.weight_hh_l0",
                "vmax.rnn.weight_hh_l0"
            ]
        );
        let m = s.tensor("m.rnn.weight_hh_l0")?;
        assert_eq!(m.dims(), [2, 2]);
        assert_eq!(m.dtype(), candle_core::DType::F32);
        // m after one step is (1 - beta1)·g
        let m = m.to_vec2::<f32>()?;
        assert!(
            (m[0][1] - (-0.2)).abs() < 1e-7 && (m[1][1] - 0.3).abs() < 1e-7,
            "{m:?}"
        );
        // a state saved in f64 loads into f32 moments
        let mut f64_state = StateDict::new();
        for (k, t) in &s.tensors {
            f64_state.insert(k.clone(), t.to_dtype(candle_core::DType::F64)?);
        }
        let mut back = adam(0.1, 0.9, 0.999, 1e-8).with_amsgrad(true);
        back.init(&params)?;
        back.load_state_dict(&f64_state)?;
        assert_eq!(back.steps(), 1);
        let again = back.state_dict()?;
        for (k, t) in &s.tensors {
            assert_eq!(
                again.tensor(k)?.flatten_all()?.to_vec1::<f32>().ok(),
                t.flatten_all()?.to_vec1::<f32>().ok(),
                "{k}"
            );
        }
        // a moment of the wrong shape is refused, naming its key
        let mut bad = s.clone();
        bad.insert(
            "v.rnn.weight_hh_l0",
            Tensor::zeros(3, candle_core::DType::F32, &d)?,
        );
        let e = back.load_state_dict(&bad).unwrap_err().to_string();
        assert!(e.contains("v.rnn.weight_hh_l0"), "{e}");
        // a gradient of the wrong shape is refused, naming the parameter
        let mut grads = Grads::from_pairs([(
            "rnn.weight_hh_l0".to_string(),
            Tensor::zeros(3, candle_core::DType::F32, &d)?,
        )]);
        let e = back
            .apply(&mut grads, &params, &ctx, &mut StepReport::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("rnn.weight_hh_l0"), "{e}");
        Ok(())
    }
}
