//! `step`: `torch.optim.lr_scheduler.StepLR`: the rate is multiplied by `gamma` every `step_size`
//! intervals, `lr(t) = base · gamma^⌊t / step_size⌋`.

use rnnlab_core::{required, Interval, PluginConfig, Registry, Result, Scheduler};
use serde::{Deserialize, Serialize};

use crate::util::{check_at_least_one, check_gamma};

/// Step decay.
#[derive(Clone, Debug)]
pub struct StepLr {
    /// The optimizer's base rate.
    pub base_lr: f64,
    /// Intervals between decays.
    pub step_size: usize,
    /// Factor of each decay.
    pub gamma: f64,
    /// Steps or epochs.
    pub interval: Interval,
}

impl Scheduler for StepLr {
    fn interval(&self) -> Interval {
        self.interval
    }

    fn lr(&self, t: usize) -> f64 {
        self.base_lr * self.gamma.powi((t / self.step_size) as i32)
    }
}

/// The keys of `type = "step"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// Intervals between decays (>= 1).
    #[schemars(required)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_size: Option<usize>,
    /// Decay factor, in (0, 1].
    pub gamma: f64,
    /// step or epoch: what step_size counts.
    pub interval: Interval,
}

impl Default for StepConfig {
    fn default() -> Self {
        StepConfig {
            step_size: None,
            gamma: 0.1,
            interval: Interval::Epoch,
        }
    }
}

impl PluginConfig for StepConfig {
    fn validate(&self, at: &str) -> Result<()> {
        check_at_least_one(at, "step_size", self.step_size)?;
        check_gamma(at, "gamma", self.gamma)
    }
}

/// Registers `step`.
pub fn register(r: &mut Registry) {
    r.schedulers.register(
        "step",
        "StepLR: multiply the rate by gamma every step_size intervals",
        StepConfig::default(),
        |c, a| {
            Ok(Box::new(StepLr {
                base_lr: a.base_lr,
                step_size: required(c.step_size, a.at, "step_size")?,
                gamma: c.gamma,
                interval: c.interval,
            }))
        },
    );
}

#[cfg(test)]
mod tests {
    use crate::util::sched_test::{assert_lrs, build, build_err};
    use rnnlab_core::{Interval, Result};

    // Every scheduler's golden sequence comes from this script (torch 2.15):
    //   def seq(make, n, base=0.1):
    //       w = torch.zeros(1, requires_grad=True)
    //       opt = torch.optim.SGD([w], lr=base); s = make(opt); out = []
    //       for _ in range(n):
    //           out.append(opt.param_groups[0]["lr"]); opt.step(); s.step()
    //       return out

    #[test]
    fn matches_torch_step_lr() -> Result<()> {
        // seq(lambda o: StepLR(o, step_size=3, gamma=0.5), 14)
        let s = build("type = \"step\"\nstep_size = 3\ngamma = 0.5", 0.1)?;
        assert_eq!(s.interval(), Interval::Epoch);
        assert_lrs(
            s.as_ref(),
            &[
                0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125, 0.0125, 0.0125,
                0.00625, 0.00625,
            ],
        );
        Ok(())
    }

    #[test]
    fn bad_gamma_and_step_size_are_rejected() {
        let e = build_err("type = \"step\"\nstep_size = 3\ngamma = 1.5");
        assert!(
            e.contains("optim.scheduler.gamma") && e.contains("(0, 1]"),
            "{e}"
        );
        let e = build_err("type = \"step\"\nstep_size = 0");
        assert!(e.contains("optim.scheduler.step_size"), "{e}");
        let e = build_err("type = \"step\"");
        assert!(
            e.contains("optim.scheduler.step_size") && e.contains("required"),
            "{e}"
        );
        let e = build_err("type = \"step\"\nstep_size = 2\ninterval = \"batch\"");
        assert!(e.contains("optim.scheduler.interval"), "{e}");
    }
}
