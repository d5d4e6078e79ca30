//! `warmup`: linear warmup in front of any other schedule, as torch's
//! `SequentialLR([LinearLR(start_factor, total_iters=steps), inner], milestones=[steps])`.
//!
//! ```toml
//! scheduler = { type = "warmup", steps = 500, start_factor = 0.0,
//!               inner = { type = "cosine", T_max = 10000 } }
//! ```
//! For `t < steps` the rate rises linearly from `start_factor · inner.lr(0)` towards
//! `inner.lr(0)` (the inner schedule's first rate: the base rate for every schedule but
//! `one_cycle`); from `t = steps` on it is `inner.lr(t - steps)`, so the inner schedule starts
//! after the warmup and its `T_max`, milestones, ... count from there. The inner table takes the
//! warmup's `interval` (it may repeat it, not contradict it). Epoch-end metrics and state are
//! passed to the inner schedule; a metric-driven inner (`reduce_on_plateau`) also counts the
//! warmup's epochs.

use rnnlab_core::{
    check_value, required, EpochMetrics, Error, Interval, PluginConfig, Registry, Result,
    Scheduler, StateDict, Watched,
};
use serde::{Deserialize, Serialize};

use crate::util::check_at_least_one;

/// Linear warmup, then another schedule.
pub struct Warmup {
    /// Length of the warmup in intervals.
    pub steps: usize,
    /// The first rate as a fraction of the inner schedule's first rate.
    pub start_factor: f64,
    /// Steps or epochs (the inner schedule's too).
    pub interval: Interval,
    /// The schedule after the warmup.
    pub inner: Box<dyn Scheduler>,
}

impl Scheduler for Warmup {
    fn interval(&self) -> Interval {
        self.interval
    }

    fn lr(&self, t: usize) -> f64 {
        if t < self.steps {
            // torch LinearLR: base · (start + (end - start) · t / total_iters), end = 1
            let f = self.start_factor + (1.0 - self.start_factor) * t as f64 / self.steps as f64;
            self.inner.lr(0) * f
        } else {
            self.inner.lr(t - self.steps)
        }
    }

    fn on_epoch_end(&mut self, metrics: &EpochMetrics) -> Result<()> {
        self.inner.on_epoch_end(metrics)
    }

    fn watched_metrics(&self) -> Vec<Watched> {
        self.inner.watched_metrics()
    }

    fn state_dict(&self) -> Result<StateDict> {
        let mut s = StateDict::new();
        s.extend_prefixed("inner", self.inner.state_dict()?);
        Ok(s)
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        self.inner.load_state_dict(&state.sub("inner"))
    }
}

/// The keys of `type = "warmup"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WarmupConfig {
    /// Length of the warmup in intervals (>= 1).
    #[schemars(required)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    /// First rate as a fraction of the inner schedule's first rate, in [0, 1].
    pub start_factor: f64,
    /// The schedule after the warmup, a scheduler table.
    #[schemars(with = "std::collections::BTreeMap<String, String>")]
    pub inner: toml::Value,
    /// step or epoch, for the warmup and the inner schedule.
    pub interval: Interval,
}

impl Default for WarmupConfig {
    fn default() -> Self {
        let mut constant = toml::Table::new();
        constant.insert("type".into(), "constant".into());
        WarmupConfig {
            steps: None,
            start_factor: 0.0,
            inner: toml::Value::Table(constant),
            interval: Interval::Step,
        }
    }
}

impl PluginConfig for WarmupConfig {
    fn validate(&self, at: &str) -> Result<()> {
        check_at_least_one(at, "steps", self.steps)?;
        let f = self.start_factor;
        check_value(
            at,
            "start_factor",
            &f,
            (0.0..=1.0).contains(&f),
            "must be in [0, 1]",
        )
    }
}

/// Registers `warmup`.
pub fn register(r: &mut Registry) {
    r.schedulers.register(
        "warmup",
        "linear warmup from start_factor*lr over `steps` intervals, then the `inner` schedule (which starts counting after the warmup)",
        WarmupConfig::default(),
        |c, a| {
            let steps = required(c.steps, a.at, "steps")?;
            let mut inner = match c.inner {
                toml::Value::Table(t) => t,
                other => {
                    return Err(Error::invalid(
                        a.at("inner"),
                        format!("expected a scheduler table such as {{ type = \"cosine\", T_max = 1000 }}, got {other}"),
                    ))
                }
            };
            let wanted = toml::Value::try_from(c.interval)
                .map_err(|e| Error::invalid(a.at("interval"), e.to_string()))?;
            match inner.get("interval") {
                None => {
                    inner.insert("interval".into(), wanted);
                }
                Some(given) if *given == wanted => {}
                Some(other) => {
                    return Err(Error::invalid(
                        format!("{}.interval", a.at("inner")),
                        format!("{other} contradicts the warmup's interval {wanted}; set `interval` on the warmup only"),
                    ))
                }
            }
            let (inner, _) = a.registry.scheduler(&inner, &a.at("inner"), a.base_lr)?;
            Ok(Box::new(Warmup {
                steps,
                start_factor: c.start_factor,
                interval: c.interval,
                inner,
            }))
        },
    );
}

#[cfg(test)]
mod tests {
    use crate::util::sched_test::{assert_lrs, build, build_err};
    use rnnlab_core::{Interval, Result};

    #[test]
    fn matches_torch_linear_lr_then_cosine() -> Result<()> {
        // seq(lambda o: SequentialLR(o, [LinearLR(o, start_factor=0.1, total_iters=4),
        //         CosineAnnealingLR(o, T_max=8, eta_min=0.0)], milestones=[4]), 16)
        // (script in step.rs)
        let s = build(
            "type = \"warmup\"\nsteps = 4\nstart_factor = 0.1\ninner = { type = \"cosine\", T_max = 8 }",
            0.1,
        )?;
        assert_eq!(s.interval(), Interval::Step);
        assert_lrs(
            s.as_ref(),
            &[
                0.010000000000000002,
                0.03250000000000001,
                0.055000000000000014,
                0.07750000000000003,
                0.1,
                0.09619397662556434,
                0.08535533905932738,
                0.0691341716182545,
                0.05,
                0.030865828381745515,
                0.014644660940672627,
                0.0038060233744356634,
                0.0,
                0.0038060233744356634,
                0.014644660940672639,
                0.030865828381745536,
            ],
        );
        Ok(())
    }

    #[test]
    fn starts_at_zero_by_default_and_wraps_constant() -> Result<()> {
        let s = build("type = \"warmup\"\nsteps = 4", 0.2)?;
        assert_lrs(s.as_ref(), &[0.0, 0.05, 0.1, 0.15, 0.2, 0.2, 0.2]);
        Ok(())
    }

    #[test]
    fn inner_errors_name_the_nested_path() {
        let e = build_err(
            "type = \"warmup\"\nsteps = 4\ninner = { type = \"cosine\", T_max = 8, interval = \"epoch\" }",
        );
        assert!(e.contains("optim.scheduler.inner.interval"), "{e}");
        let e = build_err("type = \"warmup\"\nsteps = 4\ninner = { type = \"cosine\", Tmax = 8 }");
        assert!(e.contains("optim.scheduler.inner"), "{e}");
        let e = build_err("type = \"warmup\"\nsteps = 4\nstart_factor = 1.5");
        assert!(e.contains("optim.scheduler.start_factor"), "{e}");
    }
}
