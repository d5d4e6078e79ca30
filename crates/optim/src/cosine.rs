//! `cosine`: `torch.optim.lr_scheduler.CosineAnnealingLR`:
//! `lr(t) = eta_min + (base - eta_min)·(1 + cos(π·t / T_max)) / 2`. As in torch the formula goes
//! on past `T_max` (the rate climbs back towards the base rate over the next `T_max`); set `T_max`
//! to the run's length to end at `eta_min`.

use std::f64::consts::PI;

use rnnlab_core::{required, Interval, PluginConfig, Registry, Result, Scheduler};
use serde::{Deserialize, Serialize};

use crate::util::{check_at_least_one, check_non_negative};

/// The cosine half-wave from `base` to `eta_min` over `t_max` intervals.
pub(crate) fn cosine(base: f64, eta_min: f64, t: f64, t_max: f64) -> f64 {
    eta_min + (base - eta_min) * (1.0 + (PI * t / t_max).cos()) / 2.0
}

/// Cosine annealing.
#[derive(Clone, Debug)]
pub struct Cosine {
    /// The optimizer's base rate.
    pub base_lr: f64,
    /// Intervals from the base rate to `eta_min`.
    pub t_max: usize,
    /// The lowest rate.
    pub eta_min: f64,
    /// Steps or epochs.
    pub interval: Interval,
}

impl Scheduler for Cosine {
    fn interval(&self) -> Interval {
        self.interval
    }

    fn lr(&self, t: usize) -> f64 {
        cosine(self.base_lr, self.eta_min, t as f64, self.t_max as f64)
    }
}

/// The keys of `type = "cosine"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CosineConfig {
    /// Intervals from the base rate to eta_min (>= 1).
    #[schemars(required)]
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(rename = "T_max")]
    pub t_max: Option<usize>,
    /// The lowest rate (>= 0).
    pub eta_min: f64,
    /// step or epoch: what T_max counts.
    pub interval: Interval,
}

impl Default for CosineConfig {
    fn default() -> Self {
        CosineConfig {
            t_max: None,
            eta_min: 0.0,
            interval: Interval::Epoch,
        }
    }
}

impl PluginConfig for CosineConfig {
    fn validate(&self, at: &str) -> Result<()> {
        check_at_least_one(at, "T_max", self.t_max)?;
        check_non_negative(at, "eta_min", self.eta_min)
    }
}

/// Registers `cosine`.
pub fn register(r: &mut Registry) {
    r.schedulers.register(
        "cosine",
        "CosineAnnealingLR: half a cosine from the base rate to eta_min over T_max intervals",
        CosineConfig::default(),
        |c, a| {
            Ok(Box::new(Cosine {
                base_lr: a.base_lr,
                t_max: required(c.t_max, a.at, "T_max")?,
                eta_min: c.eta_min,
                interval: c.interval,
            }))
        },
    );
}

#[cfg(test)]
mod tests {
    use crate::util::sched_test::{assert_lrs, build};
    use rnnlab_core::Result;

    #[test]
    fn matches_torch_cosine_annealing_lr_past_t_max() -> Result<()> {
        // seq(lambda o: CosineAnnealingLR(o, T_max=10, eta_min=0.001), 24)  (script in step.rs)
        let s = build("type = \"cosine\"\nT_max = 10\neta_min = 0.001", 0.1)?;
        assert_lrs(
            s.as_ref(),
            &[
                0.1,
                0.09757729755661011,
                0.0905463412215599,
                0.07959536998847742,
                0.0657963412215599,
                0.0505,
                0.03520365877844011,
                0.02140463001152259,
                0.010453658778440109,
                0.0034227024433899004,
                0.001,
                0.0034227024433899004,
                0.01045365877844014,
                0.02140463001152267,
                0.035203658778440255,
                0.05050000000000022,
                0.06579634122156018,
                0.07959536998847777,
                0.09054634122156031,
                0.09757729755661054,
                0.10000000000000045,
                0.09757729755661054,
                0.09054634122156033,
                0.07959536998847778,
            ],
        );
        Ok(())
    }
}
