//! `rnnlab diagnose RUN`: which causes of unstable training hold for a run, each with its
//! evidence and the rule that fired, then the fixes in order as ready `--set` overrides.
//!
//! Reads the run folder's `metrics.jsonl` (the monitors `grad_norm`, `spectral`, `predictions`
//! and `stability` add the figures most rules need), `config.resolved.toml` (to write the fixes
//! against the run's own transforms) and `confusion.json`. The rules and their thresholds are
//! documented in the README ("Diagnose rules").
//!
//! One file per rule (`exploding`, `divergence`, `loss_spikes`, `collapse`, `order_drift`,
//! `spectral`, `noise`, `overfitting`), each an `evaluate` over a `Ctx` that returns its
//! [`Finding`]; `thresholds` holds the thresholds and their layering, `fix` the fixes written
//! against the run's pipeline; this file runs the rules in order and marks what one holding cause
//! explains in another.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use rnnlab_core::{read_metrics, EpochMetrics};

mod collapse;
mod divergence;
mod exploding;
mod fix;
mod loss_spikes;
mod noise;
mod order_drift;
mod overfitting;
mod spectral;
#[cfg(test)]
mod tests;
mod thresholds;

pub use fix::Fix;
use fix::RunConfig;
pub use thresholds::Thresholds;

/// What every rule reads: the run, its figures and pipeline, and the thresholds in force.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    run: &'a Path,
    history: &'a [EpochMetrics],
    cfg: &'a RunConfig,
    t: &'a Thresholds,
    /// The warning band's gradient norm (the thresholds, else the run's monitor, else 5).
    warn: f64,
    /// The exploding band's gradient norm (likewise, else 10).
    explode: f64,
    /// The window K.
    k: usize,
    /// The last K epochs.
    tail: &'a [EpochMetrics],
}

/// A cause of unstable training that diagnose looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The loss became NaN or infinite and the run stopped.
    Divergence,
    /// Gradient norms above `explode`.
    ExplodingGradients,
    /// Loss spikes: the learning rate is too high.
    LearningRateTooHigh,
    /// One class predicted for nearly all of val.
    Collapse,
    /// Predicted-class shares move between epochs while the norms are healthy.
    OrderDrift,
    /// A recurrent matrix with spectral radius above 1.
    SpectralRadius,
    /// Accuracy swings with healthy norms.
    GradientNoise,
    /// Train loss falls while val loss rises.
    Overfitting,
}

impl Cause {
    /// The heading of the cause.
    pub fn title(self) -> &'static str {
        match self {
            Cause::Divergence => "divergence (non-finite loss)",
            Cause::ExplodingGradients => "exploding gradients",
            Cause::LearningRateTooHigh => "learning rate too high (loss spikes)",
            Cause::Collapse => "collapse to one class",
            Cause::OrderDrift => "order drift",
            Cause::SpectralRadius => "spectral radius of W_hh above 1",
            Cause::GradientNoise => "gradient noise",
            Cause::Overfitting => "overfitting",
        }
    }
}

/// Whether a cause holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// The rule fired.
    Holds,
    /// The rule was checked and did not fire.
    Clear,
    /// The figures the rule needs are not in the run (the reason says which).
    Unknown(String),
}

/// One cause with its verdict, rule, evidence and fixes.
#[derive(Clone, Debug)]
pub struct Finding {
    /// The cause.
    pub cause: Cause,
    /// Whether it holds.
    pub verdict: Verdict,
    /// The rule, with the thresholds in force.
    pub rule: String,
    /// The figures that decided it.
    pub evidence: Vec<String>,
    /// Fixes in order, each a complete set of overrides for the run's pipeline.
    pub fixes: Vec<Fix>,
    /// The holding cause that explains this finding, when there is one: it is then reported
    /// under that cause as a consequence, and its fixes are not proposed.
    pub explained_by: Option<Cause>,
}

/// What diagnose found for one run.
#[derive(Clone, Debug)]
pub struct Diagnosis {
    /// The run folder.
    pub run: PathBuf,
    /// Epochs in the run.
    pub epochs: usize,
    /// Every rule's finding, in priority order.
    pub findings: Vec<Finding>,
}

impl Diagnosis {
    /// Whether `cause` holds.
    pub fn holds(&self, cause: Cause) -> bool {
        self.finding(cause).verdict == Verdict::Holds
    }

    /// The finding of `cause`.
    pub fn finding(&self, cause: Cause) -> &Finding {
        self.findings
            .iter()
            .find(|f| f.cause == cause)
            .expect("every cause has a finding")
    }

    /// The findings that hold and no other holding cause explains, in priority order.
    pub fn causes(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.verdict == Verdict::Holds && f.explained_by.is_none())
    }

    /// The findings that hold as consequences of `cause`.
    pub fn consequences(&self, cause: Cause) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(move |f| f.verdict == Verdict::Holds && f.explained_by == Some(cause))
    }

    /// The fixes of the causes that hold (not of their consequences), in priority order,
    /// without repeats.
    pub fn fixes(&self) -> Vec<Fix> {
        let mut out: Vec<Fix> = Vec::new();
        for f in self.causes() {
            for x in &f.fixes {
                if !out.iter().any(|o| o.sets == x.sets) {
                    out.push(x.clone());
                }
            }
        }
        out
    }

    /// The diagnosis as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Diagnosis of {} ({} epochs)\n",
            self.run.display(),
            self.epochs
        );
        let causes: Vec<&Finding> = self.causes().collect();
        if causes.is_empty() {
            let _ = writeln!(s, "No cause holds.\n");
        }
        for f in &causes {
            let _ = writeln!(s, "## {} — holds\n", f.cause.title());
            let _ = writeln!(s, "Rule: {}\n", f.rule);
            for e in &f.evidence {
                let _ = writeln!(s, "- {e}");
            }
            s.push('\n');
            for c in self.consequences(f.cause) {
                let _ = writeln!(
                    s,
                    "### {} — holds, as a consequence of {}\n",
                    c.cause.title(),
                    f.cause.title()
                );
                let _ = writeln!(s, "Rule: {}\n", c.rule);
                for e in &c.evidence {
                    let _ = writeln!(s, "- {e}");
                }
                s.push('\n');
            }
        }
        let fixes = self.fixes();
        if !fixes.is_empty() {
            let _ = writeln!(
                s,
                "## Fixes, in order\n\nEach is complete on its own: train the run's `config.resolved.toml` with its overrides, one fix at a time.\n"
            );
            for (i, x) in fixes.iter().enumerate() {
                let _ = writeln!(s, "{}. {x}", i + 1);
            }
            s.push('\n');
        }
        let _ = writeln!(s, "## Checked and not holding\n");
        for f in self.findings.iter().filter(|f| f.verdict != Verdict::Holds) {
            match &f.verdict {
                Verdict::Unknown(why) => {
                    let _ = writeln!(s, "- {}: not evaluated: {why}", f.cause.title());
                }
                _ => {
                    let _ = writeln!(
                        s,
                        "- {}: {} ({})",
                        f.cause.title(),
                        f.evidence.join("; "),
                        f.rule
                    );
                }
            }
        }
        s
    }
}

/// One epoch's number of `key`, as `(epoch, value)` pairs where logged.
fn series(history: &[EpochMetrics], key: &str) -> Vec<(usize, f64)> {
    history
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let e = m.get("epoch").map(|e| e as usize).unwrap_or(i + 1);
            m.get(key).map(|v| (e, v))
        })
        .collect()
}

fn last_value(history: &[EpochMetrics], key: &str) -> Option<f64> {
    history.iter().rev().find_map(|m| m.get(key))
}

fn slope(points: &[(usize, f64)]) -> f64 {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0 as f64).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 as f64 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 as f64 - mx).powi(2)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

/// Diagnoses the run in `run` with thresholds `t`.
pub fn diagnose(run: &Path, t: &Thresholds) -> Result<Diagnosis> {
    let path = run.join(rnnlab_core::METRICS_FILE);
    let history = read_metrics(&path)?;
    if history.is_empty() {
        bail!("{} has no epochs", path.display());
    }
    let cfg = RunConfig::read(run);
    Ok(diagnose_history(run, &history, &cfg, t))
}

fn diagnose_history(
    run: &Path,
    history: &[EpochMetrics],
    cfg: &RunConfig,
    t: &Thresholds,
) -> Diagnosis {
    let warn = t
        .warn
        .or_else(|| last_value(history, "grad_norm.warn"))
        .unwrap_or(5.0);
    let explode = t
        .explode
        .or_else(|| last_value(history, "grad_norm.explode"))
        .unwrap_or(10.0);
    let k = t.window;
    let c = Ctx {
        run,
        history,
        cfg,
        t,
        warn,
        explode,
        k,
        tail: &history[history.len().saturating_sub(k)..],
    };
    let (exploding, max_p99) = exploding::evaluate(&c);
    let divergence = divergence::evaluate(history, cfg, warn);
    let healthy = exploding.verdict == Verdict::Clear && divergence.verdict == Verdict::Clear;
    let lr_high = loss_spikes::evaluate(&c);
    let collapse = collapse::evaluate(&c);
    let drift = order_drift::evaluate(history, cfg, t, healthy, max_p99.1, explode);
    let spectral = spectral::evaluate(&c, healthy);
    let noise = noise::evaluate(&c, healthy, max_p99.1);
    let overfit = overfitting::evaluate(&c);
    let mut findings = vec![
        // Order drift comes before the rules its figures also fire: a fixed order makes
        // loss spikes (the next batches differ) and a collapse (to the last batches'
        // class), and reshuffling is then the first fix.
        divergence, exploding, drift, lr_high, collapse, noise, overfit, spectral,
    ];
    explain(&mut findings);
    Diagnosis {
        run: run.to_path_buf(),
        epochs: history.len(),
        findings,
    }
}

/// Marks the findings another holding cause explains. A fixed order explains the loss spikes
/// (the loss jumps where the sorted batch length or the class changes), the epoch-to-epoch
/// swings (each epoch ends on the same batches) and a collapse (to the last batches' class):
/// E6 in EXPERIMENTS.md measures the swings going with the order, not with the norms.
fn explain(findings: &mut [Finding]) {
    let holds = |fs: &[Finding], c: Cause| {
        fs.iter()
            .any(|f| f.cause == c && f.verdict == Verdict::Holds)
    };
    if holds(findings, Cause::OrderDrift) {
        for f in findings.iter_mut().filter(|f| {
            f.verdict == Verdict::Holds
                && matches!(
                    f.cause,
                    Cause::LearningRateTooHigh | Cause::GradientNoise | Cause::Collapse
                )
        }) {
            f.explained_by = Some(Cause::OrderDrift);
        }
    }
    // A model stuck on one class swings as the class it is stuck on changes: E7's
    // `last_padded` runs (50.6 %, swings of 8.8 points) are a collapse, not gradient noise.
    if holds(findings, Cause::Collapse) {
        for f in findings.iter_mut().filter(|f| {
            f.verdict == Verdict::Holds
                && f.cause == Cause::GradientNoise
                && f.explained_by.is_none()
        }) {
            f.explained_by = Some(Cause::Collapse);
        }
    }
}

fn fmt_fig(v: f64) -> String {
    if !v.is_finite() {
        format!("{v}")
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn last_max(history: &[EpochMetrics], key: &str) -> f64 {
    history
        .iter()
        .filter_map(|m| m.get(key))
        .fold(f64::NAN, f64::max)
}

fn block_name(key: &str) -> String {
    key.trim_start_matches("spectral.")
        .trim_end_matches(".radius")
        .to_string()
}

/// `predictions.<split>.<what>.<c>` for every class, in class order.
fn class_shares(m: &EpochMetrics, split: &str, what: &str) -> Option<Vec<f64>> {
    let prefix = format!("predictions.{split}.{what}.");
    let mut v: Vec<(usize, f64)> = m
        .iter()
        .filter_map(|(k, x)| {
            k.strip_prefix(&prefix)?
                .parse::<usize>()
                .ok()
                .map(|c| (c, x))
        })
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by_key(|p| p.0);
    Some(v.into_iter().map(|p| p.1).collect())
}
