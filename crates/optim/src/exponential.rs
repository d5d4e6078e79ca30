//! `exponential`: `torch.optim.lr_scheduler.ExponentialLR`: `lr(t) = base · gamma^t`.

use std::sync::Arc;

use rnnlab_core::{Interval, ParamSpec, PluginParams, PluginSpec, Registry, Result, Scheduler};

use crate::step::gamma;
use crate::util::interval;

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
    fn name(&self) -> &str {
        "exponential"
    }

    fn interval(&self) -> Interval {
        self.interval
    }

    fn lr(&self, t: usize) -> f64 {
        self.base_lr * self.gamma.powi(t as i32)
    }
}

/// Registers `exponential`.
pub fn register(r: &mut Registry) {
    r.schedulers.add(
        PluginSpec {
            name: "exponential",
            doc: "ExponentialLR: multiply the rate by gamma every interval",
            params: vec![
                ParamSpec::required("gamma", "factor per interval, in (0, 1]"),
                ParamSpec::new("interval", "\"epoch\"", "step or epoch"),
            ],
        },
        Arc::new(
            |p: &PluginParams, base_lr: f64, _: &Registry| -> Result<Box<dyn Scheduler>> {
                Ok(Box::new(Exponential {
                    base_lr,
                    gamma: gamma(p, "gamma")?,
                    interval: interval(p)?,
                }))
            },
        ),
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
