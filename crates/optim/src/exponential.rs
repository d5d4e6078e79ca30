//! `exponential`: `torch.optim.lr_scheduler.ExponentialLR`: `lr(t) = base · gamma^t`.

use rnnlab_core::{required, Interval, PluginConfig, Registry, Result, Scheduler};
use serde::{Deserialize, Serialize};

use crate::util::check_gamma;

/// Exponential decay.
#[derive(Clone, Debug)]
pub struct Exponential {
    /// The optimizer's base rate.
    pub base_lr: f64,
    /// Factor per interval.
    pub gamma: f64,
    /// Steps or epochs.
    pub interval: Interval,
}

impl Scheduler for Exponential {
    fn interval(&self) -> Interval {
        self.interval
    }

    fn lr(&self, t: usize) -> f64 {
        self.base_lr * self.gamma.powi(t as i32)
    }
}

/// The keys of `type = "exponential"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExponentialConfig {
    /// Factor per interval, in (0, 1].
    #[schemars(required)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gamma: Option<f64>,
    /// step or epoch.
    pub interval: Interval,
}

impl Default for ExponentialConfig {
    fn default() -> Self {
        ExponentialConfig {
            gamma: None,
            interval: Interval::Epoch,
        }
    }
}

impl PluginConfig for ExponentialConfig {
    fn validate(&self, at: &str) -> Result<()> {
        match self.gamma {
            Some(g) => check_gamma(at, "gamma", g),
            None => Ok(()),
        }
    }
}

/// Registers `exponential`.
pub fn register(r: &mut Registry) {
    r.schedulers.register(
        "exponential",
        "ExponentialLR: multiply the rate by gamma every interval",
        ExponentialConfig::default(),
        |c, a| {
            Ok(Box::new(Exponential {
                base_lr: a.base_lr,
                gamma: required(c.gamma, a.at, "gamma")?,
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
    fn matches_torch_exponential_lr() -> Result<()> {
        // seq(lambda o: ExponentialLR(o, gamma=0.9), 14)  (script in step.rs)
        let s = build("type = \"exponential\"\ngamma = 0.9", 0.1)?;
        assert_lrs(
            s.as_ref(),
            &[
                0.1,
                0.09000000000000001,
                0.08100000000000002,
                0.07290000000000002,
                0.06561000000000002,
                0.05904900000000002,
                0.05314410000000002,
                0.04782969000000002,
                0.043046721000000024,
                0.03874204890000002,
                0.03486784401000002,
                0.03138105960900001,
                0.028242953648100012,
                0.025418658283290013,
            ],
        );
        Ok(())
    }
}
