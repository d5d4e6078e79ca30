//! `one_cycle`: the learning rate of `torch.optim.lr_scheduler.OneCycleLR` (Smith & Topin): from
//! `max_lr / div_factor` up to `max_lr` over the first `pct_start` of `total_steps`, then down to
//! `max_lr / (div_factor · final_div_factor)`; with `three_phase`, back to the initial rate first
//! and then down. Momentum is not cycled. Torch raises past `total_steps`; here the rate stays at
//! its last value (`t = total_steps - 1`).

use std::f64::consts::PI;

use rnnlab_core::{check_value, required, Interval, PluginConfig, Registry, Result, Scheduler};
use serde::{Deserialize, Serialize};

use crate::util::{check_non_negative, check_positive};

/// How a phase moves between its rates (`anneal_strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Anneal {
    /// Half a cosine.
    Cos,
    /// A straight line.
    Linear,
}

impl Anneal {
    fn at(self, start: f64, end: f64, pct: f64) -> f64 {
        match self {
            Anneal::Cos => end + (start - end) / 2.0 * ((PI * pct).cos() + 1.0),
            Anneal::Linear => (end - start) * pct + start,
        }
    }
}

/// One phase: from `start_lr` (at the previous phase's end) to `end_lr` at `end_step`.
#[derive(Clone, Copy, Debug)]
struct Phase {
    end_step: f64,
    start_lr: f64,
    end_lr: f64,
}

/// The one-cycle policy.
#[derive(Clone, Debug)]
pub struct OneCycle {
    /// Steps in the cycle.
    pub total_steps: usize,
    /// Annealing shape.
    pub anneal: Anneal,
    /// Steps or epochs.
    pub interval: Interval,
    phases: Vec<Phase>,
}

/// The keys of `type = "one_cycle"`, as torch's `OneCycleLR` arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OneCycleConfig {
    /// Peak rate (>= 0); 0 takes the optimizer's lr.
    pub max_lr: f64,
    /// Length of the cycle in intervals (>= 2).
    #[schemars(required)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_steps: Option<usize>,
    /// Fraction of the cycle spent rising, in (0, 1).
    pub pct_start: f64,
    /// cos or linear.
    pub anneal_strategy: Anneal,
    /// Initial rate = max_lr / div_factor (> 0).
    pub div_factor: f64,
    /// Final rate = initial rate / final_div_factor (> 0).
    pub final_div_factor: f64,
    /// Go back to the initial rate before the final descent.
    pub three_phase: bool,
    /// step or epoch: what total_steps counts.
    pub interval: Interval,
}

impl Default for OneCycleConfig {
    fn default() -> Self {
        OneCycleConfig {
            max_lr: 0.0,
            total_steps: None,
            pct_start: 0.3,
            anneal_strategy: Anneal::Cos,
            div_factor: 25.0,
            final_div_factor: 1e4,
            three_phase: false,
            interval: Interval::Step,
        }
    }
}

/// Where torch's phases end (as step positions) for a cycle of `total_steps`.
fn phase_ends(total_steps: usize, pct_start: f64, three_phase: bool) -> Vec<f64> {
    let up = pct_start * total_steps as f64 - 1.0;
    let last = total_steps as f64 - 1.0;
    if three_phase {
        vec![up, 2.0 * pct_start * total_steps as f64 - 2.0, last]
    } else {
        vec![up, last]
    }
}

impl PluginConfig for OneCycleConfig {
    fn validate(&self, at: &str) -> Result<()> {
        check_non_negative(at, "max_lr", self.max_lr)?;
        let pct = self.pct_start;
        check_value(
            at,
            "pct_start",
            &pct,
            pct > 0.0 && pct < 1.0,
            "must be in (0, 1)",
        )?;
        check_positive(at, "div_factor", self.div_factor)?;
        check_positive(at, "final_div_factor", self.final_div_factor)?;
        let Some(total) = self.total_steps else {
            return Ok(());
        };
        check_value(at, "total_steps", &total, total >= 2, "must be at least 2")?;
        // Every phase must be at least one step long, or torch's formula divides by 0.
        let mut start = 0.0;
        for end in phase_ends(total, pct, self.three_phase) {
            let why = format!(
                "gives a phase of no steps with total_steps = {total}{}",
                if self.three_phase {
                    " and three_phase (needs pct_start < 0.5)"
                } else {
                    ""
                }
            );
            check_value(at, "pct_start", &pct, end > start, &why)?;
            start = end;
        }
        Ok(())
    }
}

impl OneCycleConfig {
    /// The schedule these keys describe; `max_lr = 0` takes `base_lr`. `at` is the config path,
    /// for a missing `total_steps`.
    pub fn build(&self, base_lr: f64, at: &str) -> Result<OneCycle> {
        let total_steps = required(self.total_steps, at, "total_steps")?;
        let max_lr = if self.max_lr == 0.0 {
            base_lr
        } else {
            self.max_lr
        };
        let initial = max_lr / self.div_factor;
        let min_lr = initial / self.final_div_factor;
        let ends = phase_ends(total_steps, self.pct_start, self.three_phase);
        let rates: &[(f64, f64)] = if self.three_phase {
            &[(initial, max_lr), (max_lr, initial), (initial, min_lr)]
        } else {
            &[(initial, max_lr), (max_lr, min_lr)]
        };
        let phases = ends
            .iter()
            .zip(rates)
            .map(|(&end_step, &(start_lr, end_lr))| Phase {
                end_step,
                start_lr,
                end_lr,
            })
            .collect();
        Ok(OneCycle {
            total_steps,
            anneal: self.anneal_strategy,
            interval: self.interval,
            phases,
        })
    }
}

impl Scheduler for OneCycle {
    fn interval(&self) -> Interval {
        self.interval
    }

    fn lr(&self, t: usize) -> f64 {
        let step = t.min(self.total_steps - 1) as f64;
        let mut start_step = 0.0;
        for (i, ph) in self.phases.iter().enumerate() {
            if step <= ph.end_step || i == self.phases.len() - 1 {
                let pct = (step - start_step) / (ph.end_step - start_step);
                return self.anneal.at(ph.start_lr, ph.end_lr, pct);
            }
            start_step = ph.end_step;
        }
        unreachable!("one_cycle has phases")
    }
}

/// Registers `one_cycle`.
pub fn register(r: &mut Registry) {
    r.schedulers.register(
        "one_cycle",
        "OneCycleLR's rate: up from max_lr/div_factor to max_lr over pct_start of total_steps, then down to max_lr/(div_factor*final_div_factor)",
        OneCycleConfig::default(),
        |c, a| Ok(Box::new(c.build(a.base_lr, a.at)?)),
    );
}

#[cfg(test)]
mod tests {
    use crate::util::sched_test::{assert_lrs, build, build_err};
    use rnnlab_core::Result;

    // (script in step.rs; the optimizer's lr 0.1 is replaced by max_lr, as in torch)

    #[test]
    fn matches_torch_one_cycle_cos() -> Result<()> {
        // seq(lambda o: OneCycleLR(o, max_lr=1.0, total_steps=20, pct_start=0.3), 20)
        let s = build("type = \"one_cycle\"\nmax_lr = 1.0\ntotal_steps = 20", 0.1)?;
        let want = [
            0.040000000000000036,
            0.1316718427000253,
            0.3716718427000253,
            0.6683281572999747,
            0.9083281572999747,
            1.0,
            0.9874640062350873,
            0.9504846320134737,
            0.89091617757105,
            0.8117456539497631,
            0.7169430017913008,
            0.6112620219362893,
            0.500002,
            0.38874197806371075,
            0.28306099820869923,
            0.18825834605023697,
            0.10908782242895004,
            0.049519367986526286,
            0.012539993764912554,
            4e-06,
        ];
        assert_lrs(s.as_ref(), &want);
        // past the end the rate stays at the last value
        assert_eq!(s.lr(25), s.lr(19));
        // max_lr = 0 takes the optimizer's rate
        let s = build("type = \"one_cycle\"\ntotal_steps = 20", 1.0)?;
        assert_lrs(s.as_ref(), &want);
        Ok(())
    }

    #[test]
    fn matches_torch_one_cycle_linear() -> Result<()> {
        // seq(lambda o: OneCycleLR(o, max_lr=1.0, total_steps=20, pct_start=0.25,
        //         anneal_strategy="linear", div_factor=10.0, final_div_factor=100.0), 20)
        let s = build(
            "type = \"one_cycle\"\nmax_lr = 1.0\ntotal_steps = 20\npct_start = 0.25\nanneal_strategy = \"linear\"\ndiv_factor = 10.0\nfinal_div_factor = 100.0",
            0.1,
        )?;
        assert_lrs(
            s.as_ref(),
            &[
                0.1,
                0.325,
                0.55,
                0.775,
                1.0,
                0.9334,
                0.8668,
                0.8002,
                0.7336,
                0.667,
                0.6004,
                0.5338,
                0.46720000000000006,
                0.40060000000000007,
                0.3340000000000001,
                0.2674000000000001,
                0.20079999999999998,
                0.13419999999999999,
                0.0676,
                0.0010000000000000009,
            ],
        );
        Ok(())
    }

    #[test]
    fn matches_torch_one_cycle_three_phase() -> Result<()> {
        // seq(lambda o: OneCycleLR(o, max_lr=1.0, total_steps=20, pct_start=0.3,
        //         three_phase=True), 20)
        let s = build(
            "type = \"one_cycle\"\nmax_lr = 1.0\ntotal_steps = 20\nthree_phase = true",
            0.1,
        )?;
        assert_lrs(
            s.as_ref(),
            &[
                0.040000000000000036,
                0.1316718427000253,
                0.3716718427000253,
                0.6683281572999747,
                0.9083281572999747,
                1.0,
                0.9083281572999747,
                0.6683281572999747,
                0.37167184270002523,
                0.13167184270002527,
                0.04,
                0.038793973030476596,
                0.03532135677349332,
                0.030001000000000003,
                0.02347461625698328,
                0.01652938374301673,
                0.010003000000000007,
                0.00468264322650668,
                0.0012100269695234057,
                4e-06,
            ],
        );
        Ok(())
    }

    #[test]
    fn degenerate_phases_are_rejected() {
        let e = build_err("type = \"one_cycle\"\ntotal_steps = 3\npct_start = 0.3");
        assert!(e.contains("optim.scheduler.pct_start"), "{e}");
        let e = build_err(
            "type = \"one_cycle\"\ntotal_steps = 20\npct_start = 0.6\nthree_phase = true",
        );
        assert!(e.contains("three_phase"), "{e}");
        let e = build_err("type = \"one_cycle\"\ntotal_steps = 20\nanneal_strategy = \"cosine\"");
        assert!(e.contains("optim.scheduler.anneal_strategy"), "{e}");
    }
}
