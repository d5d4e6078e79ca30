//! `grad_norm`: the global and per-parameter L2 norms of the raw gradients of every step (before
//! any transform), summarised per epoch as percentiles and as the share of steps in each band.

use rnnlab_core::{
    check_value, quantile, BatchStats, Callback, Control, EpochMetrics, Error, Grads,
    MetricContext, PluginConfig, Registry, Result, StateDict, TrainView,
};
use serde::{Deserialize, Serialize};

/// The percentiles logged per epoch, as (metric suffix, quantile).
pub const PERCENTILES: [(&str, f64); 3] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)];

/// Share of steps (in percent) per band: healthy (`< warn`), warning (`warn..=explode`) and
/// exploding (`> explode`, or not finite).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bands {
    /// Percent of steps below `warn`.
    pub healthy: f64,
    /// Percent of steps from `warn` up to `explode`.
    pub warning: f64,
    /// Percent of steps above `explode` (non-finite norms included).
    pub exploding: f64,
}

/// The band shares of `norms` (all zero for no steps).
pub fn band_shares(norms: &[f64], warn: f64, explode: f64) -> Bands {
    let n = norms.len().max(1) as f64;
    let (mut h, mut w, mut e) = (0usize, 0usize, 0usize);
    for &v in norms {
        if !v.is_finite() || v > explode {
            e += 1;
        } else if v >= warn {
            w += 1;
        } else {
            h += 1;
        }
    }
    Bands {
        healthy: 100.0 * h as f64 / n,
        warning: 100.0 * w as f64 / n,
        exploding: 100.0 * e as f64 / n,
    }
}

/// Logs `grad_norm.global.{p50,p90,p99,max}`, `grad_norm.<param>.{p50,p90,p99,max}`,
/// `grad_norm.frac_{healthy,warning,exploding,clipped}` (percent of the epoch's steps) and the
/// thresholds `grad_norm.warn` / `grad_norm.explode`.
#[derive(Clone, Debug)]
pub struct GradNorm {
    /// Below this a step is healthy.
    pub warn: f64,
    /// Above this a step is exploding.
    pub explode: f64,
    /// Whether to log per-parameter percentiles.
    pub per_param: bool,
    global: Vec<f64>,
    params: Vec<(String, Vec<f64>)>,
    clipped: usize,
    steps: usize,
}

/// A `grad_norm` monitor.
pub fn grad_norm(warn: f64, explode: f64, per_param: bool) -> GradNorm {
    GradNorm {
        warn,
        explode,
        per_param,
        global: Vec::new(),
        params: Vec::new(),
        clipped: 0,
        steps: 0,
    }
}

impl GradNorm {
    /// Records one step's norms: the global norm and `(parameter, norm)` pairs.
    pub fn record(&mut self, global: f64, per_param: &[(String, f64)]) {
        self.global.push(global);
        if self.per_param {
            for (name, v) in per_param {
                match self.params.iter_mut().find(|(n, _)| n == name) {
                    Some((_, vs)) => vs.push(*v),
                    None => self.params.push((name.clone(), vec![*v])),
                }
            }
        }
    }

    /// Writes the epoch's figures into `m` and starts a new epoch.
    pub fn flush(&mut self, m: &mut EpochMetrics) {
        summarize(m, "grad_norm.global", &self.global);
        for (name, vs) in &self.params {
            summarize(m, &format!("grad_norm.{name}"), vs);
        }
        let b = band_shares(&self.global, self.warn, self.explode);
        m.set("grad_norm.frac_healthy", b.healthy);
        m.set("grad_norm.frac_warning", b.warning);
        m.set("grad_norm.frac_exploding", b.exploding);
        m.set(
            "grad_norm.frac_clipped",
            100.0 * self.clipped as f64 / self.steps.max(1) as f64,
        );
        m.set("grad_norm.warn", self.warn);
        m.set("grad_norm.explode", self.explode);
        self.global.clear();
        self.params.iter_mut().for_each(|(_, v)| v.clear());
        self.clipped = 0;
        self.steps = 0;
    }
}

fn summarize(m: &mut EpochMetrics, prefix: &str, v: &[f64]) {
    for (name, q) in PERCENTILES {
        m.set(format!("{prefix}.{name}"), quantile(v, q));
    }
    let max = if v.iter().any(|x| x.is_nan()) {
        f64::NAN
    } else {
        v.iter().copied().fold(f64::NAN, f64::max)
    };
    m.set(format!("{prefix}.max"), max);
}

impl Callback for GradNorm {
    fn name(&self) -> &str {
        "grad_norm"
    }

    /// The epoch's norms so far (empty at an epoch end; a mid-epoch snapshot keeps them).
    fn state_dict(&self) -> Result<StateDict> {
        let mut s = StateDict::new();
        s.insert_scalar("steps", self.steps as f64)?;
        s.insert_scalar("clipped", self.clipped as f64)?;
        s.insert_f64s("global", &self.global)?;
        let names: Vec<&str> = self.params.iter().map(|(n, _)| n.as_str()).collect();
        s.insert_json("param_names", &names)?;
        for (i, (_, v)) in self.params.iter().enumerate() {
            s.insert_f64s(format!("param.{i}"), v)?;
        }
        Ok(s)
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        if state.is_empty() {
            return Ok(()); // a snapshot from before this state was kept
        }
        self.steps = state.scalar("steps")? as usize;
        self.clipped = state.scalar("clipped")? as usize;
        self.global = state.f64s("global")?;
        let names: Vec<String> = state.json("param_names")?;
        self.params = names
            .into_iter()
            .enumerate()
            .map(|(i, n)| Ok((n, state.f64s(&format!("param.{i}"))?)))
            .collect::<Result<_>>()?;
        if self
            .params
            .iter()
            .any(|(_, v)| v.len() != self.global.len())
            && self.per_param
        {
            return Err(Error::Mismatch(
                "grad_norm state: per-parameter norms and global norms differ in count".into(),
            ));
        }
        Ok(())
    }

    fn on_after_backward(&mut self, grads: &Grads, _view: &TrainView) -> Result<()> {
        let sq = grads.squared_norms()?;
        let global = sq.iter().sum::<f64>().sqrt();
        let per: Vec<(String, f64)> = if self.per_param {
            grads
                .iter()
                .zip(&sq)
                .map(|((n, _), s)| (n.to_string(), s.sqrt()))
                .collect()
        } else {
            Vec::new()
        };
        self.record(global, &per);
        Ok(())
    }

    fn on_batch_end(&mut self, stats: &BatchStats, _view: &TrainView) -> Result<()> {
        self.steps += 1;
        if stats.clipped {
            self.clipped += 1;
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, metrics: &mut EpochMetrics, _view: &TrainView) -> Result<Control> {
        self.flush(metrics);
        Ok(Control::Continue)
    }

    fn metric_names(&self, ctx: &MetricContext) -> Option<Vec<String>> {
        let mut prefixes = vec!["grad_norm.global".to_string()];
        if self.per_param {
            prefixes.extend(
                ctx.params
                    .trainable()
                    .map(|p| format!("grad_norm.{}", p.name)),
            );
        }
        let mut names: Vec<String> = prefixes
            .iter()
            .flat_map(|p| {
                PERCENTILES
                    .iter()
                    .map(|(q, _)| q.to_string())
                    .chain(["max".to_string()])
                    .map(move |q| format!("{p}.{q}"))
            })
            .collect();
        for f in ["healthy", "warning", "exploding", "clipped"] {
            names.push(format!("grad_norm.frac_{f}"));
        }
        names.extend(["grad_norm.warn".into(), "grad_norm.explode".into()]);
        Some(names)
    }
}

/// The keys of `type = "grad_norm"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GradNormConfig {
    /// A step at or above this global norm is in the warning band (> 0).
    pub warn: f64,
    /// A step above this global norm is exploding (>= warn).
    pub explode: f64,
    /// Also log p50/p90/p99/max per parameter.
    pub per_param: bool,
}

impl Default for GradNormConfig {
    fn default() -> Self {
        GradNormConfig {
            warn: 5.0,
            explode: 10.0,
            per_param: true,
        }
    }
}

impl PluginConfig for GradNormConfig {
    fn validate(&self, at: &str) -> Result<()> {
        let (warn, explode) = (self.warn, self.explode);
        check_value(at, "warn", &warn, warn > 0.0, "must be > 0")?;
        check_value(at, "explode", &explode, explode >= warn, "must be >= warn")
    }
}

/// Registers `grad_norm`.
pub fn register(r: &mut Registry) {
    r.callbacks.register(
        "grad_norm",
        "per-epoch percentiles of the global and per-parameter raw gradient norms, and the share of steps healthy / warning / exploding / clipped",
        GradNormConfig::default(),
        |c| Ok(Box::new(grad_norm(c.warn, c.explode, c.per_param)) as Box<dyn Callback>),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_of_a_known_sequence() {
        // 10 steps: 6 below 5, 2 in [5, 10] (5.0 itself warns, 10.0 does not explode), 2 above (one NaN).
        let norms = [1.0, 2.0, 0.5, 4.9, 3.0, 1.0, 5.0, 10.0, 10.5, f64::NAN];
        let b = band_shares(&norms, 5.0, 10.0);
        assert_eq!(
            b,
            Bands {
                healthy: 60.0,
                warning: 20.0,
                exploding: 20.0
            }
        );
    }

    #[test]
    fn epoch_figures_and_reset() {
        let mut g = grad_norm(5.0, 10.0, true);
        // numpy.percentile([1, 2, 3, 4, 20], [50, 90, 99]) = [3, 13.6, 19.36]
        for v in [4.0, 1.0, 20.0, 3.0, 2.0] {
            g.record(v, &[("rnn.weight_hh_l0".into(), v / 2.0)]);
        }
        g.steps = 5;
        g.clipped = 1;
        let mut m = EpochMetrics::new();
        g.flush(&mut m);
        assert_eq!(m.get("grad_norm.global.p50"), Some(3.0));
        assert!((m.get("grad_norm.global.p90").unwrap() - 13.6).abs() < 1e-12);
        assert!((m.get("grad_norm.global.p99").unwrap() - 19.36).abs() < 1e-12);
        assert_eq!(m.get("grad_norm.global.max"), Some(20.0));
        assert_eq!(m.get("grad_norm.rnn.weight_hh_l0.max"), Some(10.0));
        assert_eq!(m.get("grad_norm.frac_healthy"), Some(80.0));
        assert_eq!(m.get("grad_norm.frac_exploding"), Some(20.0));
        assert_eq!(m.get("grad_norm.frac_clipped"), Some(20.0));
        let mut m2 = EpochMetrics::new();
        g.record(1.0, &[("rnn.weight_hh_l0".into(), 0.5)]);
        g.flush(&mut m2);
        assert_eq!(m2.get("grad_norm.global.max"), Some(1.0));
    }
}
