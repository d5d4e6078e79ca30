//! `step`: `torch.optim.lr_scheduler.StepLR`: the rate is multiplied by `gamma` every `step_size`
//! intervals, `lr(t) = base · gamma^⌊t / step_size⌋`.

use std::sync::Arc;

use rnnlab_core::{Interval, ParamSpec, PluginParams, PluginSpec, Registry, Result, Scheduler};

use crate::util::interval;

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
    fn name(&self) -> &str {
        "step"
    }

    fn interval(&self) -> Interval {
        self.interval
    }

    fn lr(&self, t: usize) -> f64 {
        self.base_lr * self.gamma.powi((t / self.step_size) as i32)
    }
}

/// Checks that `key` is a decay factor in (0, 1].
pub(crate) fn gamma(p: &PluginParams, key: &str) -> Result<f64> {
    let g = p.f64(key)?;
    p.check(key, g > 0.0 && g <= 1.0, "must be in (0, 1]")?;
    Ok(g)
}

/// Registers `step`.
pub fn register(r: &mut Registry) {
    r.schedulers.add(
        PluginSpec {
            name: "step",
            doc: "StepLR: multiply the rate by gamma every step_size intervals",
            params: vec![
                ParamSpec::required("step_size", "intervals between decays (>= 1)"),
                ParamSpec::new("gamma", "0.1", "decay factor, in (0, 1]"),
                ParamSpec::new(
                    "interval",
                    "\"epoch\"",
                    "step or epoch: what step_size counts",
                ),
            ],
        },
        Arc::new(
            |p: &PluginParams, base_lr: f64, _: &Registry| -> Result<Box<dyn Scheduler>> {
                let step_size = p.usize("step_size")?;
                p.check("step_size", step_size >= 1, "must be at least 1")?;
                Ok(Box::new(StepLr {
                    base_lr,
                    step_size,
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
