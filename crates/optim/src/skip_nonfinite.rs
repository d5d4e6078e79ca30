//! `skip_nonfinite`: drops the step when the loss or any gradient entry is NaN or infinite, counts
//! the steps it dropped, and reports the count. Place it first, so no other link's state sees the
//! bad gradient. (Without it, a non-finite loss stops the run.)

use rnnlab_core::{
    GradientTransform, Grads, Link, Outcome, Params, PluginConfig, Registry, Result, StateDict,
    StepContext, StepReport,
};
use serde::{Deserialize, Serialize};

use crate::flat::all_finite;

/// The skip reason's prefix (the parameter name follows).
pub const REASON: &str = "nonfinite gradient";

/// The skip reason of a step whose loss was not finite.
pub const LOSS_REASON: &str = "nonfinite loss";

/// Skips steps whose gradients are not all finite.
#[derive(Clone, Debug, Default)]
pub struct SkipNonfinite {
    skipped: u64,
}

/// A `skip_nonfinite` transform.
pub fn skip_nonfinite() -> SkipNonfinite {
    SkipNonfinite::default()
}

/// Said after a logged skip: the others are counted, not each logged.
const QUIET: &str = "; only the 1st-3rd, 10th, 100th, ... skips are logged, skipped_steps in metrics.jsonl counts them all";

/// Whether the `n`-th skip gets a log line: the first three, then the 10th, 100th, 1000th, ...
/// (a run that skips every step would otherwise print one line per step).
fn worth_a_line(n: u64) -> bool {
    n <= 3 || is_power_of_ten(n)
}

fn is_power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

impl SkipNonfinite {
    /// Steps dropped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

impl GradientTransform for SkipNonfinite {
    fn name(&self) -> &str {
        "skip_nonfinite"
    }

    fn apply(
        &mut self,
        grads: &mut Grads,
        _params: &Params,
        ctx: &StepContext,
        report: &mut StepReport,
    ) -> Result<Outcome> {
        let reason = if !ctx.loss.is_finite() {
            Some(format!("{LOSS_REASON} ({})", ctx.loss))
        } else {
            let mut bad = None;
            for (name, g) in grads.iter() {
                if !all_finite(g)? {
                    bad = Some(format!("{REASON} in `{name}`"));
                    break;
                }
            }
            bad
        };
        if let Some(why) = &reason {
            self.skipped += 1;
            if worth_a_line(self.skipped) {
                tracing::warn!(
                    "skip_nonfinite: {why}, step dropped ({} so far{})",
                    self.skipped,
                    QUIET
                );
            }
        }
        report
            .figures
            .push(("skip_nonfinite.skipped".into(), self.skipped as f64));
        Ok(match reason {
            Some(why) => Outcome::Skip(why),
            None => Outcome::Update,
        })
    }

    fn state_dict(&self) -> Result<StateDict> {
        let mut s = StateDict::new();
        s.insert_scalar("skipped", self.skipped as f64)?;
        Ok(s)
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        self.skipped = state.scalar("skipped")? as u64;
        Ok(())
    }
}

/// The keys of `type = "skip_nonfinite"`: none.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SkipNonfiniteConfig {}

impl PluginConfig for SkipNonfiniteConfig {}

/// Registers `skip_nonfinite`.
pub fn register(r: &mut Registry) {
    r.transforms.register(
        "skip_nonfinite",
        "drop the step when the loss or any gradient is NaN or infinite (counted, reported as skip_nonfinite.skipped); put it first",
        SkipNonfiniteConfig::default(),
        |_| Ok(Link::gradients(skip_nonfinite())),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::transform_test::step_ctx;
    use candle_core::{Device, Tensor};

    #[test]
    fn skips_logged_are_the_first_three_and_each_power_of_ten() {
        let logged: Vec<u64> = (1..=2000).filter(|n| worth_a_line(*n)).collect();
        assert_eq!(logged, [1, 2, 3, 10, 100, 1000]);
    }

    #[test]
    fn nan_and_inf_skip_and_are_counted() -> Result<()> {
        let d = Device::Cpu;
        let ctx = step_ctx(0, 0.1);
        let mut t = skip_nonfinite();
        for (vals, skip) in [
            ([1.0f32, 2.0], false),
            ([f32::NAN, 2.0], true),
            ([1.0, f32::INFINITY], true),
            ([f32::MAX, f32::MAX], false),
        ] {
            let mut g = Grads::from_pairs([
                ("ok".to_string(), Tensor::new(&[0.5f32], &d)?),
                ("w".to_string(), Tensor::new(&vals, &d)?),
            ]);
            let mut report = StepReport::default();
            let out = t.apply(&mut g, &Params::new(), &ctx, &mut report)?;
            assert_eq!(
                out,
                if skip {
                    Outcome::Skip("nonfinite gradient in `w`".into())
                } else {
                    Outcome::Update
                }
            );
        }
        assert_eq!(t.skipped(), 2);
        // A non-finite loss drops the step whatever the gradients hold.
        let mut report = StepReport::default();
        let mut finite =
            Grads::from_pairs(vec![("w".into(), Tensor::new(&[1f32, 2.0], &Device::Cpu)?)]);
        let at_inf = StepContext {
            loss: f64::INFINITY,
            ..ctx.clone()
        };
        let out = t.apply(&mut finite, &Params::new(), &at_inf, &mut report)?;
        assert_eq!(out, Outcome::Skip("nonfinite loss (inf)".into()));
        assert_eq!(t.skipped(), 3);
        assert_eq!(
            report.figures,
            [("skip_nonfinite.skipped".to_string(), 3.0)]
        );
        let mut fresh = skip_nonfinite();
        fresh.load_state_dict(&t.state_dict()?)?;
        assert_eq!(fresh.skipped(), 3);
        Ok(())
    }
}
