//! `multistep`: `torch.optim.lr_scheduler.MultiStepLR`: the rate is multiplied by `gamma` at each
//! milestone, `lr(t) = base · gamma^(number of milestones ≤ t)` (a repeated milestone counts twice).

use rnnlab_core::{required, Interval, PluginConfig, Registry, Result, Scheduler};
use serde::{Deserialize, Serialize};

use crate::util::check_gamma;

/// Decay at milestones.
#[derive(Clone, Debug)]
pub struct MultiStep {
    /// The optimizer's base rate.
    pub base_lr: f64,
    /// Positions at which the rate decays, sorted.
    pub milestones: Vec<usize>,
    /// Factor of each decay.
    pub gamma: f64,
    /// Steps or epochs.
    pub interval: Interval,
}

impl Scheduler for MultiStep {
    fn interval(&self) -> Interval {
        self.interval
    }

    fn lr(&self, t: usize) -> f64 {
        // torch: gamma ** bisect_right(sorted(milestones), t)
        let passed = self.milestones.partition_point(|&m| m <= t);
        self.base_lr * self.gamma.powi(passed as i32)
    }
}

/// The keys of `type = "multistep"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MultiStepConfig {
    /// Positions (steps or epochs) of the decays, e.g. [30, 80].
    #[schemars(required)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub milestones: Option<Vec<usize>>,
    /// Decay factor, in (0, 1].
    pub gamma: f64,
    /// step or epoch: what the milestones count.
    pub interval: Interval,
}

impl Default for MultiStepConfig {
    fn default() -> Self {
        MultiStepConfig {
            milestones: None,
            gamma: 0.1,
            interval: Interval::Epoch,
        }
    }
}

impl PluginConfig for MultiStepConfig {
    fn validate(&self, at: &str) -> Result<()> {
        check_gamma(at, "gamma", self.gamma)
    }
}

/// Registers `multistep`.
pub fn register(r: &mut Registry) {
    r.schedulers.register(
        "multistep",
        "MultiStepLR: multiply the rate by gamma at each milestone",
        MultiStepConfig::default(),
        |c, a| {
            let mut milestones = required(c.milestones, a.at, "milestones")?;
            milestones.sort_unstable();
            Ok(Box::new(MultiStep {
                base_lr: a.base_lr,
                milestones,
                gamma: c.gamma,
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
    fn matches_torch_multistep_lr() -> Result<()> {
        // seq(lambda o: MultiStepLR(o, milestones=[2, 5, 5, 9], gamma=0.1), 14)  (script in step.rs)
        let s = build(
            "type = \"multistep\"\nmilestones = [9, 2, 5, 5]\ngamma = 0.1",
            0.1,
        )?;
        assert_lrs(
            s.as_ref(),
            &[
                0.1,
                0.1,
                0.010000000000000002,
                0.010000000000000002,
                0.010000000000000002,
                0.00010000000000000005,
                0.00010000000000000005,
                0.00010000000000000005,
                0.00010000000000000005,
                1.0000000000000006e-05,
                1.0000000000000006e-05,
                1.0000000000000006e-05,
                1.0000000000000006e-05,
                1.0000000000000006e-05,
            ],
        );
        Ok(())
    }

    #[test]
    fn negative_milestones_are_rejected() {
        let e = build_err("type = \"multistep\"\nmilestones = [3, -1]");
        assert!(e.contains("optim.scheduler.milestones"), "{e}");
    }
}
