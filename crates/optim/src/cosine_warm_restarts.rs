//! `cosine_warm_restarts`: `torch.optim.lr_scheduler.CosineAnnealingWarmRestarts` (SGDR): cosine
//! annealing from the base rate to `eta_min` over a period of `T_0` intervals, then a restart; each
//! period is `T_mult` times the previous one.

use rnnlab_core::{required, Interval, PluginConfig, Registry, Result, Scheduler};
use serde::{Deserialize, Serialize};

use crate::cosine::cosine;
use crate::util::{check_at_least_one, check_non_negative};

/// Cosine annealing with warm restarts.
#[derive(Clone, Debug)]
pub struct CosineWarmRestarts {
    /// The optimizer's base rate.
    pub base_lr: f64,
    /// Length of the first period.
    pub t_0: usize,
    /// Growth factor of the periods.
    pub t_mult: usize,
    /// The lowest rate.
    pub eta_min: f64,
    /// Steps or epochs.
    pub interval: Interval,
}

impl CosineWarmRestarts {
    /// Position in the current period and that period's length, at `t`.
    pub fn position(&self, t: usize) -> (usize, usize) {
        let (mut t_cur, mut t_i) = (t, self.t_0);
        while t_cur >= t_i {
            t_cur -= t_i;
            t_i *= self.t_mult;
        }
        (t_cur, t_i)
    }
}

impl Scheduler for CosineWarmRestarts {
    fn interval(&self) -> Interval {
        self.interval
    }

    fn lr(&self, t: usize) -> f64 {
        let (t_cur, t_i) = self.position(t);
        cosine(self.base_lr, self.eta_min, t_cur as f64, t_i as f64)
    }
}

/// The keys of `type = "cosine_warm_restarts"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CosineWarmRestartsConfig {
    /// Length of the first period (>= 1).
    #[schemars(required)]
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(rename = "T_0")]
    pub t_0: Option<usize>,
    /// Growth factor of the periods (integer >= 1).
    #[serde(rename = "T_mult")]
    pub t_mult: usize,
    /// The lowest rate (>= 0).
    pub eta_min: f64,
    /// step or epoch: what T_0 counts.
    pub interval: Interval,
}

impl Default for CosineWarmRestartsConfig {
    fn default() -> Self {
        CosineWarmRestartsConfig {
            t_0: None,
            t_mult: 1,
            eta_min: 0.0,
            interval: Interval::Epoch,
        }
    }
}

impl PluginConfig for CosineWarmRestartsConfig {
    fn validate(&self, at: &str) -> Result<()> {
        check_at_least_one(at, "T_0", self.t_0)?;
        check_at_least_one(at, "T_mult", Some(self.t_mult))?;
        check_non_negative(at, "eta_min", self.eta_min)
    }
}

/// Registers `cosine_warm_restarts`.
pub fn register(r: &mut Registry) {
    r.schedulers.register(
        "cosine_warm_restarts",
        "CosineAnnealingWarmRestarts (SGDR): cosine periods of T_0, T_0*T_mult, ... intervals, each restarting at the base rate",
        CosineWarmRestartsConfig::default(),
        |c, a| {
            Ok(Box::new(CosineWarmRestarts {
                base_lr: a.base_lr,
                t_0: required(c.t_0, a.at, "T_0")?,
                t_mult: c.t_mult,
                eta_min: c.eta_min,
                interval: c.interval,
            }))
        },
    );
}

#[cfg(test)]
mod tests {
    use crate::util::sched_test::{assert_lrs, build, build_err};
    use rnnlab_core::Result;

    #[test]
    fn matches_torch_with_growing_periods() -> Result<()> {
        // seq(lambda o: CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=0.001), 24)
        // (script in step.rs)
        let s = build(
            "type = \"cosine_warm_restarts\"\nT_0 = 3\nT_mult = 2\neta_min = 0.001",
            0.1,
        )?;
        assert_lrs(
            s.as_ref(),
            &[
                0.1,
                0.07525000000000001,
                0.025750000000000012,
                0.1,
                0.09336825748732973,
                0.07525000000000001,
                0.0505,
                0.025750000000000012,
                0.007631742512670284,
                0.1,
                0.09831332840130888,
                0.09336825748732973,
                0.0855017856687341,
                0.07525000000000001,
                0.06331154273257478,
                0.0505,
                0.03768845726742523,
                0.025750000000000012,
                0.0154982143312659,
                0.007631742512670284,
                0.0026866715986911243,
                0.1,
                0.09957652063800362,
                0.09831332840130888,
            ],
        );
        Ok(())
    }

    #[test]
    fn matches_torch_with_equal_periods() -> Result<()> {
        // seq(lambda o: CosineAnnealingWarmRestarts(o, T_0=4), 14)
        let s = build("type = \"cosine_warm_restarts\"\nT_0 = 4", 0.1)?;
        let period = [0.1, 0.08535533905932738, 0.05, 0.014644660940672627];
        let want: Vec<f64> = period.iter().cycle().take(14).copied().collect();
        assert_lrs(s.as_ref(), &want);
        Ok(())
    }

    #[test]
    fn t_mult_zero_is_rejected() {
        let e = build_err("type = \"cosine_warm_restarts\"\nT_0 = 4\nT_mult = 0");
        assert!(e.contains("optim.scheduler.T_mult"), "{e}");
    }
}
