//! `multistep`: `torch.optim.lr_scheduler.MultiStepLR`: the rate is multiplied by `gamma` at each
//! milestone, `lr(t) = base · gamma^(number of milestones ≤ t)` (a repeated milestone counts twice).

use std::sync::Arc;

use rnnlab_core::{Interval, ParamSpec, PluginParams, PluginSpec, Registry, Result, Scheduler};

use crate::step::gamma;
use crate::util::interval;

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
    fn name(&self) -> &str {
        "multistep"
    }

    fn interval(&self) -> Interval {
        self.interval
    }

    fn lr(&self, t: usize) -> f64 {
        // torch: gamma ** bisect_right(sorted(milestones), t)
        let passed = self.milestones.partition_point(|&m| m <= t);
        self.base_lr * self.gamma.powi(passed as i32)
    }
}

/// Registers `multistep`.
pub fn register(r: &mut Registry) {
    r.schedulers.add(
        PluginSpec {
            name: "multistep",
            doc: "MultiStepLR: multiply the rate by gamma at each milestone",
            params: vec![
                ParamSpec::required(
                    "milestones",
                    "positions (steps or epochs) of the decays, e.g. [30, 80]",
                ),
                ParamSpec::new("gamma", "0.1", "decay factor, in (0, 1]"),
                ParamSpec::new(
                    "interval",
                    "\"epoch\"",
                    "step or epoch: what the milestones count",
                ),
            ],
        },
        Arc::new(
            |p: &PluginParams, base_lr: f64, _: &Registry| -> Result<Box<dyn Scheduler>> {
                let mut milestones = p.usize_list("milestones")?;
                milestones.sort_unstable();
                Ok(Box::new(MultiStep {
                    base_lr,
                    milestones,
                    gamma: gamma(p, "gamma")?,
                    interval: interval(p)?,
                }))
            },
        ),
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
