//! Issue 6: the training step's hot path outside the recurrent cell, timed piece by piece.
//!
//! Each piece runs "before" (the tensor-op code these crates had, copied into [`before`]) and
//! "after" (the crates' current code) side by side in one process, on the reference step's
//! shapes: embedding 16,000×50, RNN cell 50→128, linear 128→5, batch 64, 32 time steps, f32.
//! The two versions' results are compared, so a fast but wrong path shows up here too.
//!
//! Run: `cargo bench -p rnnlab-optim --bench hot_path` (optionally `-- REPS` (default 200) and
//! a word: only the pieces whose name contains it). `CANDLE_NUM_THREADS=1` runs everything,
//! candle's ops and Adam's work units alike, on one thread.

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use rand::Rng as _;
use rnnlab_core::{
    apply_updates, cross_entropy, normal_tensor, seeded, GradientTransform, Grads, Params, Result,
    StepContext, StepReport,
};
use rnnlab_data::batcher::{make_batch, Example};
use rnnlab_optim::adam::adam;
use rnnlab_optim::clip_global_norm::{clip_global_norm, NormType};

/// The code before issue 6's trimming, kept verbatim (as free functions) for comparison.
mod before {
    use super::*;
    use candle_core::D;

    /// Adam's state as the transform kept it: one tensor per moment and parameter.
    pub struct Adam {
        pub steps: u64,
        pub m: BTreeMap<String, Tensor>,
        pub v: BTreeMap<String, Tensor>,
    }

    impl Adam {
        pub fn new(params: &Params) -> Result<Self> {
            let mut a = Adam {
                steps: 0,
                m: BTreeMap::new(),
                v: BTreeMap::new(),
            };
            for p in params.trainable() {
                let z = p.var.as_tensor().zeros_like()?;
                a.m.insert(p.name.clone(), z.clone());
                a.v.insert(p.name.clone(), z);
            }
            Ok(a)
        }

        /// `torch.optim.Adam` (no decay, no amsgrad) with one tensor op per term.
        pub fn apply(&mut self, grads: &mut Grads, lr: f64) -> Result<()> {
            let (beta1, beta2, eps) = (0.9f64, 0.999f64, 1e-8);
            self.steps += 1;
            let t = self.steps as i32;
            let bc1 = 1.0 - beta1.powi(t);
            let bc2 = 1.0 - beta2.powi(t);
            let step_size = lr / bc1;
            let sqrt_bc2 = bc2.sqrt();
            for (name, g) in grads.iter_mut() {
                let m = self.m.get_mut(name).expect("state");
                *m = ((&*m * beta1)? + (&*g * (1.0 - beta1))?)?;
                let m = m.clone();
                let v = self.v.get_mut(name).expect("state");
                *v = ((&*v * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
                let second = v.clone();
                let denom = ((second.sqrt()? / sqrt_bc2)? + eps)?;
                *g = (m.div(&denom)? * -step_size)?;
            }
            Ok(())
        }
    }

    /// `Grads::global_norm` as rnnlab-core had it: per tensor a copy in f64, its square, a sum.
    pub fn global_norm(grads: &Grads) -> Result<f64> {
        let mut s = 0f64;
        for (_, t) in grads.iter() {
            s += t
                .to_dtype(DType::F64)?
                .sqr()?
                .sum_all()?
                .to_scalar::<f64>()?;
        }
        Ok(s.sqrt())
    }

    /// `clip_global_norm` (L2): the norm as above, then `affine` per tensor.
    pub fn clip(grads: &mut Grads, max_norm: f64) -> Result<f64> {
        let norm = global_norm(grads)?;
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            for (_, g) in grads.iter_mut() {
                *g = g.affine(coef, 0.0)?;
            }
        }
        Ok(norm)
    }

    /// The embedding lookup: `index_select` (its backward is candle's zeros + `index_add`).
    pub fn embed(weight: &Tensor, ids: &Tensor) -> Result<Tensor> {
        let mut shape = ids.dims().to_vec();
        shape.push(weight.dims()[1]);
        let flat = ids.flatten_all()?.to_dtype(DType::U32)?;
        Ok(weight.index_select(&flat, 0)?.reshape(shape)?)
    }

    /// Mean cross-entropy from log-sum-exp, gather and mean.
    pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
        let log_p = Tensor::log_sum_exp(logits, D::Minus1)?;
        let labels = labels.to_dtype(DType::U32)?;
        let picked = logits.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?;
        Ok(log_p.sub(&picked)?.mean_all()?)
    }
}

/// A proposal for rnnlab-core's `apply_updates` (not used by the crates): `p += u` in the
/// parameter's own storage, one pass and no temporary (`Var::set` writes the same storage).
mod proposed {
    use candle_core::{CpuStorage, InplaceOp2, Layout};

    pub struct AddInPlace;

    impl InplaceOp2 for AddInPlace {
        fn name(&self) -> &'static str {
            "add-in-place"
        }

        fn cpu_fwd(
            &self,
            s1: &mut CpuStorage,
            l1: &Layout,
            s2: &CpuStorage,
            l2: &Layout,
        ) -> candle_core::Result<()> {
            let (Some((a1, b1)), Some((a2, b2))) =
                (l1.contiguous_offsets(), l2.contiguous_offsets())
            else {
                candle_core::bail!("add-in-place needs contiguous tensors")
            };
            match (s1, s2) {
                (CpuStorage::F32(p), CpuStorage::F32(u)) => {
                    for (p, u) in p[a1..b1].iter_mut().zip(&u[a2..b2]) {
                        *p += u;
                    }
                }
                (CpuStorage::F64(p), CpuStorage::F64(u)) => {
                    for (p, u) in p[a1..b1].iter_mut().zip(&u[a2..b2]) {
                        *p += u;
                    }
                }
                _ => candle_core::bail!("add-in-place: f32 or f64, the same for both"),
            }
            Ok(())
        }
    }
}

/// Median and minimum milliseconds of a piece, and its minor page faults per run (the kernel
/// mapping fresh memory: large temporaries cost more here than their arithmetic).
type Timing = (f64, f64, f64);

/// Minor page faults of this process so far (from /proc/self/stat; 0 where unreadable).
fn minor_faults() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1.to_string();
            after.split_whitespace().nth(7)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Median and minimum milliseconds of `reps` runs of `f` (after a few warm-up runs).
fn time(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<Timing> {
    for _ in 0..5 {
        f()?;
    }
    let faults = minor_faults();
    let mut ms = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    let per_run = (minor_faults() - faults) as f64 / reps as f64;
    Ok((ms[ms.len() / 2], ms[0], per_run))
}

fn row(piece: &str, b: Timing, a: Timing, check: &str) {
    println!(
        "{piece:<44} {:>8.3} {:>8.3} {:>6.0} {:>8.3} {:>8.3} {:>6.0} {:>6.1}×  {check}",
        b.0,
        b.1,
        b.2,
        a.0,
        a.1,
        a.2,
        b.0 / a.0
    );
}

/// A row with only an "after" figure.
fn row_after(piece: &str, a: Timing, note: &str) {
    println!(
        "{piece:<44} {:>8} {:>8} {:>6} {:>8.3} {:>8.3} {:>6.0}          {note}",
        "", "", "", a.0, a.1, a.2
    );
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    Ok(a.to_dtype(DType::F64)?
        .sub(&b.to_dtype(DType::F64)?)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f64>()?)
}

/// The reference step's trainable parameters (RNN cell) with PyTorch's names.
fn model_params(rng: &mut rnnlab_core::Rng, dtype: DType) -> Result<Params> {
    let d = Device::Cpu;
    let mut params = Params::new();
    for (name, shape) in [
        ("embedding.weight", vec![16_000, 50]),
        ("rnn.weight_ih_l0", vec![128, 50]),
        ("rnn.weight_hh_l0", vec![128, 128]),
        ("rnn.bias_ih_l0", vec![128]),
        ("rnn.bias_hh_l0", vec![128]),
        ("fc.weight", vec![5, 128]),
        ("fc.bias", vec![5]),
    ] {
        let t = normal_tensor(rng, &shape, 0.0, 0.1, dtype, &d)?;
        params.insert(name, Var::from_tensor(&t)?, true)?;
    }
    Ok(params)
}

/// Gradients for `params` with global norm about `scale`·√(entries)·0.01.
fn model_grads(rng: &mut rnnlab_core::Rng, params: &Params, scale: f64) -> Result<Grads> {
    let mut pairs = Vec::new();
    for p in params.trainable() {
        let t = normal_tensor(
            rng,
            p.var.dims(),
            0.0,
            0.01 * scale,
            p.var.dtype(),
            &Device::Cpu,
        )?;
        pairs.push((p.name.clone(), t));
    }
    Ok(Grads::from_pairs(pairs))
}

/// What every piece's bench gets.
struct Ctx {
    reps: usize,
    rng: rnnlab_core::Rng,
    dtype: DType,
    tag: &'static str,
    /// rnnlab-core's per-step norm + `apply_updates` (medians): as they were, as they are, and
    /// with the in-place proposal.
    core: (f64, f64, f64),
}

/// One optimizer step over the reference model: before and after, checking they agree.
fn bench_adam(c: &mut Ctx) -> Result<(Timing, Timing)> {
    let params = model_params(&mut c.rng, c.dtype)?;
    let grads = model_grads(&mut c.rng, &params, 1.0)?;
    let ctx = StepContext {
        step: 0,
        epoch: 1,
        lr: 1e-3,
        loss: 1.0,
    };
    let mut old = before::Adam::new(&params)?;
    let mut new = adam(1e-3, 0.9, 0.999, 1e-8);
    new.init(&params)?;
    // three identical steps, then compare the updates
    let (mut ub, mut ua) = (grads.clone(), grads.clone());
    for _ in 0..3 {
        ub = grads.clone();
        ua = grads.clone();
        old.apply(&mut ub, 1e-3)?;
        new.apply(&mut ua, &params, &ctx, &mut StepReport::default())?;
    }
    let mut diff = 0f64;
    for ((_, a), (_, b)) in ua.iter().zip(ub.iter()) {
        diff = diff.max(max_abs_diff(a, b)?);
    }
    let b = time(c.reps, || {
        let mut g = grads.clone();
        old.apply(&mut g, 1e-3)
    })?;
    let a = time(c.reps, || {
        let mut g = grads.clone();
        new.apply(&mut g, &params, &ctx, &mut StepReport::default())?;
        Ok(())
    })?;
    row(
        &format!("adam, 807k params ({})", c.tag),
        b,
        a,
        &format!("max |Δupdate| {diff:.1e}"),
    );
    // The other modes (after only): AdamW with AMSGrad, and coupled decay.
    for (what, mut opt) in [
        (
            "adamw+amsgrad",
            rnnlab_optim::adamw::adamw(1e-3, 0.9, 0.999, 1e-8, 0.01).with_amsgrad(true),
        ),
        (
            "adam+weight_decay",
            adam(1e-3, 0.9, 0.999, 1e-8).with_weight_decay(1e-5),
        ),
    ] {
        opt.init(&params)?;
        let t = time(c.reps, || {
            let mut g = grads.clone();
            opt.apply(&mut g, &params, &ctx, &mut StepReport::default())?;
            Ok(())
        })?;
        row_after(&format!("{what} ({})", c.tag), t, "");
    }
    Ok((b, a))
}

/// `clip_global_norm` (max_norm 5) over the reference model's gradients: once clipping (norm
/// about 9), once not (about 0.9); then the trainer's own norm and `apply_updates` (core).
fn bench_clip(c: &mut Ctx) -> Result<(Timing, Timing)> {
    let params = model_params(&mut c.rng, c.dtype)?;
    let ctx = StepContext {
        step: 0,
        epoch: 1,
        lr: 1e-3,
        loss: 1.0,
    };
    let mut clipping = ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0));
    for (scale, what) in [(1.0, "clips"), (0.1, "no clip")] {
        let grads = model_grads(&mut c.rng, &params, scale)?;
        let (mut gb, mut ga) = (grads.clone(), grads.clone());
        let nb = before::clip(&mut gb, 5.0)?;
        let mut report = StepReport::default();
        clip_global_norm(5.0, NormType::L2).apply(&mut ga, &params, &ctx, &mut report)?;
        let na = report.figures[0].1;
        let mut diff = 0f64;
        for ((_, a), (_, b)) in ga.iter().zip(gb.iter()) {
            diff = diff.max(max_abs_diff(a, b)?);
        }
        let b = time(c.reps, || {
            let mut g = grads.clone();
            before::clip(&mut g, 5.0).map(|_| ())
        })?;
        let mut clip = clip_global_norm(5.0, NormType::L2);
        let a = time(c.reps, || {
            let mut g = grads.clone();
            clip.apply(&mut g, &params, &ctx, &mut StepReport::default())?;
            Ok(())
        })?;
        row(
            &format!("clip_global_norm, {what} ({})", c.tag),
            b,
            a,
            &format!("norm {nb:.6} vs {na:.6}, max |Δg| {diff:.1e}"),
        );
        if scale == 1.0 {
            clipping = (b, a);
        }
    }
    let grads = model_grads(&mut c.rng, &params, 1.0)?;
    let mut skip = rnnlab_optim::skip_nonfinite::skip_nonfinite();
    let sk = time(c.reps, || {
        skip.apply(
            &mut grads.clone(),
            &params,
            &ctx,
            &mut StepReport::default(),
        )?;
        Ok(())
    })?;
    row_after(&format!("skip_nonfinite ({})", c.tag), sk, "");
    // The trainer's own pieces (rnnlab-core, not this crate): its per-step norm, which another
    // session has meanwhile made one pass too (after = rnnlab-core's current code), and
    // `apply_updates`, with an in-place proposal as the after.
    let old_norm = time(c.reps, || before::global_norm(&grads).map(|_| ()))?;
    let core_norm = time(c.reps, || grads.global_norm().map(|_| ()))?;
    let (a, b) = (before::global_norm(&grads)?, grads.global_norm()?);
    row(
        &format!("core Grads::global_norm ({})", c.tag),
        old_norm,
        core_norm,
        &format!("rnnlab-core's current code; |Δnorm| {:.1e}", (a - b).abs()),
    );
    let upd = time(c.reps, || apply_updates(&params, &grads))?;
    let inplace = time(c.reps, || {
        for (p, (_, u)) in params.trainable().zip(grads.iter()) {
            p.var.as_tensor().inplace_op2(u, &proposed::AddInPlace)?;
        }
        Ok(())
    })?;
    row(
        &format!("core apply_updates → in place ({})", c.tag),
        upd,
        inplace,
        "(rnnlab-core, a proposal: not changed here)",
    );
    c.core = (
        old_norm.0 + upd.0,
        core_norm.0 + upd.0,
        core_norm.0 + inplace.0,
    );
    Ok(clipping)
}

/// Embedding forward + backward for a [64, 32] batch: loss = Σ emb(ids) ⊙ R. The lookup is
/// `crates/models/src/embedding.rs`'s (`index_select` of the flattened ids, then a reshape;
/// its backward is candle's zero table + `index_add`), copied in [`before::embed`] so this
/// crate's benches and tests do not build rnnlab-models. The "after" column times the same
/// steps with a leaf `[64, 32, 50]` in place of the lookup: what the harness itself costs.
fn bench_embedding(c: &mut Ctx) -> Result<(Timing, Timing)> {
    let (dtype, d) = (c.dtype, Device::Cpu);
    let ids: Vec<u32> = (0..64 * 32)
        .map(|_| c.rng.random_range(0..16_000u32))
        .collect();
    let ids = Tensor::from_vec(ids, (64, 32), &d)?;
    let r = normal_tensor(&mut c.rng, &[64, 32, 50], 0.0, 1.0, dtype, &d)?;
    let w = Var::from_tensor(&normal_tensor(
        &mut c.rng,
        &[16_000, 50],
        0.0,
        0.5,
        dtype,
        &d,
    )?)?;
    let leaf = Var::from_tensor(&normal_tensor(
        &mut c.rng,
        &[64, 32, 50],
        0.0,
        0.5,
        dtype,
        &d,
    )?)?;
    let grad_of = |y: Tensor, of: &Var| -> Result<Tensor> {
        let mut store = y.mul(&r)?.sum_all()?.backward()?;
        Ok(store.remove(of.as_tensor()).expect("a gradient"))
    };
    // the gradient is R's rows summed into the looked-up rows
    let g = grad_of(before::embed(w.as_tensor(), &ids)?, &w)?;
    let flat = ids.flatten_all()?.to_vec1::<u32>()?;
    let rows = r
        .reshape((64 * 32, 50))?
        .to_dtype(DType::F64)?
        .to_vec2::<f64>()?;
    let mut want = vec![vec![0f64; 50]; 16_000];
    for (k, &id) in flat.iter().enumerate() {
        for j in 0..50 {
            want[id as usize][j] += rows[k][j];
        }
    }
    let want = Tensor::new(want, &d)?;
    let diff = max_abs_diff(&g, &want)?;
    let b = time(c.reps, || {
        grad_of(before::embed(w.as_tensor(), &ids)?, &w).map(|_| ())
    })?;
    let a = time(c.reps, || {
        grad_of(leaf.as_tensor().clone(), &leaf).map(|_| ())
    })?;
    row(
        &format!("embedding fwd+bwd [64,32]→16000×50 ({})", c.tag),
        b,
        a,
        &format!("unchanged; after = the harness alone; max |Δgrad| vs Σ rows {diff:.1e}"),
    );
    Ok((b, b))
}

/// Cross-entropy forward + backward on [64, 5].
fn bench_loss(c: &mut Ctx) -> Result<(Timing, Timing)> {
    let d = Device::Cpu;
    let logits = Var::from_tensor(&normal_tensor(&mut c.rng, &[64, 5], 0.0, 2.0, c.dtype, &d)?)?;
    let labels: Vec<u32> = (0..64).map(|_| c.rng.random_range(0..5u32)).collect();
    let labels = Tensor::from_vec(labels, 64, &d)?;
    let ce = |l: Tensor| -> Result<(f64, Tensor)> {
        let v = l.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let mut store = l.backward()?;
        Ok((v, store.remove(logits.as_tensor()).expect("a gradient")))
    };
    let (lb, gb) = ce(before::cross_entropy(logits.as_tensor(), &labels)?)?;
    let (la, ga) = ce(cross_entropy(logits.as_tensor(), &labels, None)?)?;
    let diff = max_abs_diff(&ga, &gb)?;
    let b = time(c.reps, || {
        ce(before::cross_entropy(logits.as_tensor(), &labels)?).map(|_| ())
    })?;
    let a = time(c.reps, || {
        ce(cross_entropy(logits.as_tensor(), &labels, None)?).map(|_| ())
    })?;
    row(
        &format!("cross-entropy fwd+bwd [64,5] ({})", c.tag),
        b,
        a,
        &format!("|Δloss| {:.1e}, max |Δgrad| {diff:.1e}", (la - lb).abs()),
    );
    Ok((b, a))
}

/// The batcher: one padded batch of 64 examples of 1..=32 tokens.
fn bench_batcher(c: &mut Ctx) -> Result<(Timing, Timing)> {
    let rng = &mut c.rng;
    let examples: Vec<Example> = (0..10_000)
        .map(|_| Example {
            ids: (0..rng.random_range(1..=32usize))
                .map(|_| rng.random_range(2..16_000u32))
                .collect(),
            label: rng.random_range(0..5u32),
        })
        .collect();
    let idx: Vec<usize> = (0..64).map(|i| i * 150).collect();
    let a = time(c.reps, || {
        make_batch(&examples, &idx)?;
        Ok(())
    })?;
    row_after("batcher: make_batch, 64 × ≤32 tokens", a, "(unchanged)");
    Ok((a, a))
}

type Bench = fn(&mut Ctx) -> Result<(Timing, Timing)>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let reps: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(200);
    let only = args
        .iter()
        .find(|a| a.parse::<usize>().is_err() && !a.starts_with('-'))
        .cloned()
        .unwrap_or_default();
    println!(
        "hot path outside the cell, {reps} reps, {} threads available; milliseconds (median, min)\n\
         and minor page faults per run",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:<44} {:>8} {:>8} {:>6} {:>8} {:>8} {:>6} {:>7}  check",
        "piece", "before", "(min)", "faults", "after", "(min)", "faults", "speedup"
    );
    let pieces: [(&str, Bench); 5] = [
        ("adam", bench_adam),
        ("clip", bench_clip),
        ("embedding", bench_embedding),
        ("loss", bench_loss),
        ("batcher", bench_batcher),
    ];
    let mut total = (0.0, 0.0);
    let mut core = (0.0, 0.0, 0.0);
    for (dtype, tag) in [(DType::F32, "f32"), (DType::F64, "f64")] {
        let mut c = Ctx {
            reps,
            rng: seeded(6),
            dtype,
            tag,
            core: (0.0, 0.0, 0.0),
        };
        for (name, f) in pieces {
            if !name.contains(only.as_str()) || (name == "batcher" && dtype == DType::F64) {
                continue;
            }
            let (b, a) = f(&mut c)?;
            if dtype == DType::F32 {
                total = (total.0 + b.0, total.1 + a.0);
            }
        }
        if dtype == DType::F32 {
            core = c.core;
        }
    }
    println!(
        "{:<44} {:>8.3} {:>8} {:>6} {:>8.3} {:>8} {:>6} {:>6.1}×",
        "sum of the f32 medians above (clipping step)",
        total.0,
        "",
        "",
        total.1,
        "",
        "",
        total.0 / total.1
    );
    if core.0 > 0.0 {
        println!(
            "with rnnlab-core's norm + apply_updates (f32): before {:.3}, after {:.3}; \
             with apply_updates in place {:.3}",
            total.0 + core.0,
            total.1 + core.1,
            total.1 + core.2
        );
    }
    Ok(())
}
