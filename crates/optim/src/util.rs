//! Small helpers shared by the plugins: name globs, the `interval` key, value checks, state maps.

use std::collections::BTreeMap;

use candle_core::Tensor;
use rnnlab_core::{check_value, Error, Params, Result, StateDict};

/// Whether `name` matches `pattern`, where `*` stands for any run of characters (dots
/// included) and every other character matches itself (`?` and `[` are not wildcards):
/// `*bias*` matches `rnn.bias_ih_l0`, `embedding.*` matches `embedding.weight`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matcher with backtracking to the last `*`.
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// For a typed config's `validate`: `v`, the value of `{at}.{key}`, is a decay factor in (0, 1].
pub(crate) fn check_gamma(at: &str, key: &str, v: f64) -> Result<()> {
    check_value(at, key, &v, v > 0.0 && v <= 1.0, "must be in (0, 1]")
}

/// For a typed config's `validate`: `v`, the value of `{at}.{key}` (if given), is at least 1.
pub(crate) fn check_at_least_one(at: &str, key: &str, v: Option<usize>) -> Result<()> {
    match v {
        Some(n) => check_value(at, key, &n, n >= 1, "must be at least 1"),
        None => Ok(()),
    }
}

/// For a typed config's `validate`: `v`, the value of `{at}.{key}`, is a positive finite number.
pub(crate) fn check_positive(at: &str, key: &str, v: f64) -> Result<()> {
    check_value(
        at,
        key,
        &v,
        v > 0.0 && v.is_finite(),
        "must be a positive number",
    )
}

/// For a typed config's `validate`: `v`, the value of `{at}.{key}`, is a finite number ≥ 0.
pub(crate) fn check_non_negative(at: &str, key: &str, v: f64) -> Result<()> {
    check_value(at, key, &v, v >= 0.0 && v.is_finite(), "must be >= 0")
}

/// For a typed config's `validate`: `v`, the value of `{at}.{key}`, is in `[0, 1)`.
pub(crate) fn check_unit_interval(at: &str, key: &str, v: f64) -> Result<()> {
    check_value(at, key, &v, (0.0..1.0).contains(&v), "must be in [0, 1)")
}

/// The tensor of parameter `name` (gradients and parameters share names).
pub(crate) fn param(params: &Params, name: &str) -> Result<Tensor> {
    params.tensor(name)
}

/// torch's coupled weight decay (an L2 term): `g + wd·p` for parameter `name`, or `g` itself
/// when `wd` is 0. SGD, RMSprop and Adagrad share it (Adam folds it into its flat loop).
pub(crate) fn with_coupled_decay(
    g: &Tensor,
    params: &Params,
    name: &str,
    wd: f64,
) -> Result<Tensor> {
    if wd == 0.0 {
        return Ok(g.clone());
    }
    Ok((g + (param(params, name)?.to_dtype(g.dtype())? * wd)?)?)
}

/// The running average of the trainable weights that `ema` and `swa` keep, with the number of
/// updates folded in.
#[derive(Clone, Debug, Default)]
pub(crate) struct RunningAverage {
    count: u64,
    avg: BTreeMap<String, Tensor>,
}

impl RunningAverage {
    /// Updates folded in so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Forgets every update.
    pub fn clear(&mut self) {
        self.count = 0;
        self.avg.clear();
    }

    /// Moves each trainable parameter's average toward its current (detached) value:
    /// `avg ← avg + k·(w − avg)`; on the first update, or for a parameter not yet averaged,
    /// `avg ← w`. EMA uses `k = 1 − decay`, SWA `k = 1/(n+1)`.
    pub fn update(&mut self, params: &Params, k: f64) -> Result<()> {
        for p in params.trainable() {
            let w = p.var.as_tensor().detach();
            let next = match self.avg.get(&p.name) {
                Some(a) if self.count > 0 => (a + ((w - a)? * k)?)?,
                _ => w.copy()?,
            };
            self.avg.insert(p.name.clone(), next);
        }
        self.count += 1;
        Ok(())
    }

    /// The averaged weights, once there are any.
    pub fn weights(&self) -> Option<BTreeMap<String, Tensor>> {
        (self.count > 0).then(|| self.avg.clone())
    }

    /// The state: the count under `count_key`, the average under `avg.`.
    pub fn state_dict(&self, count_key: &str) -> Result<StateDict> {
        let mut s = StateDict::new();
        s.insert_scalar(count_key, self.count as f64)?;
        save_map(&mut s, "avg", &self.avg);
        Ok(s)
    }

    /// Restores what [`RunningAverage::state_dict`] saved.
    pub fn load_state_dict(&mut self, state: &StateDict, count_key: &str) -> Result<()> {
        self.count = state.scalar(count_key)? as u64;
        self.avg = load_map(state, "avg");
        Ok(())
    }
}

/// Stores every tensor of `map` under `prefix.`.
pub(crate) fn save_map(s: &mut StateDict, prefix: &str, map: &BTreeMap<String, Tensor>) {
    for (k, t) in map {
        s.insert(format!("{prefix}.{k}"), t.clone());
    }
}

/// Loads every tensor stored under `prefix.` (see [`save_map`]).
pub(crate) fn load_map(s: &StateDict, prefix: &str) -> BTreeMap<String, Tensor> {
    s.sub(prefix).tensors
}

/// Loads the tensors under `prefix.` into the existing slots of `map` (one per parameter),
/// keeping each slot's dtype; a missing entry is an error that names it.
pub(crate) fn load_into(
    s: &StateDict,
    prefix: &str,
    map: &mut BTreeMap<String, Tensor>,
) -> Result<()> {
    for (k, slot) in map.iter_mut() {
        *slot = s.tensor(&format!("{prefix}.{k}"))?.to_dtype(slot.dtype())?;
    }
    Ok(())
}

/// The state slot of `name` in `map`, or an error naming the plugin and the parameter.
pub(crate) fn slot<'a>(
    map: &'a mut BTreeMap<String, Tensor>,
    plugin: &str,
    name: &str,
) -> Result<&'a mut Tensor> {
    map.get_mut(name).ok_or_else(|| {
        Error::Mismatch(format!(
            "{plugin}: no state for `{name}` (init not called?)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs_match_as_documented() {
        assert!(glob_match("*bias*", "rnn.bias_ih_l0"));
        assert!(glob_match("*bias*", "fc.bias"));
        assert!(!glob_match("*bias*", "fc.weight"));
        assert!(glob_match("embedding.*", "embedding.weight"));
        assert!(!glob_match("embedding.*", "my.embedding.weight"));
        assert!(glob_match("fc.weight", "fc.weight"));
        assert!(!glob_match("fc.weight", "fc.weights"));
        assert!(glob_match("*", ""));
        assert!(glob_match("rnn.*_l0*", "rnn.weight_hh_l0_reverse"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
    }
}

/// Helpers for the scheduler tests.
#[cfg(test)]
pub(crate) mod sched_test {
    use rnnlab_core::{Registry, Result, Scheduler};

    /// Builds the scheduler of `toml` (a scheduler table) with every plugin of this crate.
    pub(crate) fn build(toml: &str, base_lr: f64) -> Result<Box<dyn Scheduler>> {
        let mut r = Registry::empty();
        crate::register(&mut r);
        let t: toml::Table = toml::from_str(toml).expect("valid TOML");
        Ok(r.scheduler(&t, "optim.scheduler", base_lr)?.0)
    }

    /// The error message of building `toml`.
    pub(crate) fn build_err(toml: &str) -> String {
        match build(toml, 0.1) {
            Ok(_) => panic!("`{toml}` was accepted"),
            Err(e) => e.to_string(),
        }
    }

    /// Asserts `lr(0..)` equals torch's sequence `want` to 1e-12.
    pub(crate) fn assert_lrs(s: &dyn Scheduler, want: &[f64]) {
        let got: Vec<f64> = (0..want.len()).map(|t| s.lr(t)).collect();
        for (t, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-12 * w.abs().max(1e-3),
                "t = {t}: {g} vs torch {w}\n got {got:?}\nwant {want:?}"
            );
        }
    }
}

/// Helpers for the gradient-transform tests.
#[cfg(test)]
pub(crate) mod transform_test {
    use rnnlab_core::StepContext;

    /// The context of step `step` of epoch 1 at rate `lr`, with loss 1.
    pub(crate) fn step_ctx(step: usize, lr: f64) -> StepContext {
        StepContext {
            step,
            epoch: 1,
            lr,
            loss: 1.0,
        }
    }

    /// Asserts every entry of `got` is within `tol` of `want`'s.
    pub(crate) fn assert_within<const C: usize>(got: &[Vec<f64>], want: &[[f64; C]], tol: f64) {
        for (r, row) in want.iter().enumerate() {
            for (c, w) in row.iter().enumerate() {
                assert!((got[r][c] - w).abs() < tol, "{got:?} vs {want:?}");
            }
        }
    }
}
