//! The end-of-run summary `rnnlab train` prints: the monitored metric's best and final value,
//! the swing of the held-out accuracy, the gradient-norm health bands, what `diagnose` finds
//! (one line per cause that holds, and the first fix), and where the plots and reports go.

use std::fmt::Write as _;

use rnnlab_core::EpochMetrics;

use crate::diagnose::{self, Cause, Thresholds};
use rnnlab_pipeline::RunSummary;

/// Epochs the swing is measured over (diagnose's default window).
const WINDOW: usize = 10;

/// The summary as text; `bold` adds ANSI bold to the headings (only on a terminal).
pub fn render(s: &RunSummary, bold: bool) -> String {
    let head = |t: &str| {
        if bold {
            format!("\x1b[1m{t}\x1b[0m")
        } else {
            t.to_string()
        }
    };
    let run = s.run_dir.display();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} epochs in {:.1} s, run folder {run}",
        head("done:"),
        s.history.len(),
        s.seconds
    );
    let _ = writeln!(out, "  {} {}", head("monitor:"), monitor_line(s));
    if let Some(line) = final_line(&s.history) {
        let _ = writeln!(out, "  {} {line}", head("final:"));
    }
    if let Some(line) = swing_line(&s.history) {
        let _ = writeln!(out, "  {} {line}", head("swing:"));
    }
    if let Some(line) = health_line(&s.history) {
        let _ = writeln!(out, "  {} {line}", head("gradient norms:"));
    }
    match diagnose::diagnose(&s.run_dir, &Thresholds::default()) {
        Ok(d) => {
            // A spectral radius above 1 with healthy norms is a risk, not a cause: it is
            // listed, but its fix is not the one to try first. A finding another cause explains
            // is listed under it.
            let holding: Vec<_> = d.causes().collect();
            let causes: Vec<_> = holding
                .iter()
                .filter(|f| f.cause != Cause::SpectralRadius)
                .collect();
            if causes.is_empty() {
                let _ = writeln!(
                    out,
                    "  {} no cause of instability holds",
                    head("diagnosis:")
                );
            }
            for f in &holding {
                let first = f.evidence.first().map(String::as_str).unwrap_or("");
                let label = if f.cause == Cause::SpectralRadius {
                    "risk:"
                } else {
                    "diagnosis:"
                };
                let _ = writeln!(out, "  {} {} holds: {first}", head(label), f.cause.title());
                for c in d.consequences(f.cause) {
                    let first = c.evidence.first().map(String::as_str).unwrap_or("");
                    let _ = writeln!(
                        out,
                        "    {} {} holds as its consequence: {first}",
                        head("and:"),
                        c.cause.title()
                    );
                }
            }
            if let Some(fix) = causes.first().and_then(|f| f.fixes.first()) {
                let _ = writeln!(out, "  {} {fix}", head("first fix:"));
            }
        }
        Err(e) => {
            let _ = writeln!(out, "  {} not made: {e:#}", head("diagnosis:"));
        }
    }
    let plots = s.run_dir.join("plots");
    if plots.is_dir() {
        let _ = writeln!(out, "  {} {}", head("plots:"), plots.display());
    }
    let _ = writeln!(
        out,
        "  {} rnnlab diagnose {run} · rnnlab report {run} --html {} · rnnlab watch {run}",
        head("next:"),
        s.run_dir.join("report").display()
    );
    out
}

/// `val_acc (max): best 81.20 at epoch 7, final 78.10`, by `train.monitor`.
fn monitor_line(s: &RunSummary) -> String {
    let fmt = |v: f64| {
        if s.monitor.contains("loss") {
            format!("{v:.4}")
        } else {
            format!("{v:.2}")
        }
    };
    let last = s.history.last().and_then(|m| m.get(&s.monitor));
    match (s.best(), last) {
        (Some((best, epoch)), Some(last)) => format!(
            "{} ({}): best {} at epoch {epoch}, final {}",
            s.monitor,
            s.mode.as_str(),
            fmt(best),
            fmt(last)
        ),
        _ => format!("{} was not logged", s.monitor),
    }
}

/// The final epoch's held-out figures.
fn final_line(history: &[EpochMetrics]) -> Option<String> {
    let last = history.last()?;
    let parts: Vec<String> = [
        "train_acc",
        "val_acc",
        "test_acc",
        "test_macro_f1",
        "val_loss",
    ]
    .iter()
    .filter_map(|k| {
        // Losses to 4 places, as the monitor line gives them (a converged loss is 0.00 at 2).
        let v = last.get(k)?;
        Some(if k.ends_with("loss") {
            format!("{k} {v:.4}")
        } else {
            format!("{k} {v:.2}")
        })
    })
    .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The largest epoch-to-epoch fall of the held-out accuracy over the last epochs (a rise is
/// learning), and the range it moved in. (A spread such as the std would count a run that
/// learns steadily as unsteady.)
fn swing_line(history: &[EpochMetrics]) -> Option<String> {
    if history.len() < 2 {
        return None;
    }
    let metric = ["val_acc", "test_acc"]
        .into_iter()
        .find(|k| history.iter().any(|m| m.get(k).is_some()))?;
    let tail = &history[history.len().saturating_sub(WINDOW)..];
    let pts: Vec<(f64, f64)> = tail
        .iter()
        .filter_map(|m| Some((m.get("epoch")?, m.get(metric)?)))
        .collect();
    if pts.len() < 2 {
        return None;
    }
    let fall = pts
        .windows(2)
        .map(|w| (w[0].1 - w[1].1, w[1].0))
        .fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a });
    let largest = if fall.0 > 0.0 {
        format!("largest fall {:.2} points (into epoch {})", fall.0, fall.1)
    } else {
        "no fall".to_string()
    };
    let (lo, hi) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |a, p| {
        (a.0.min(p.1), a.1.max(p.1))
    });
    Some(format!(
        "{metric} over the last {} epochs: {largest}, range {lo:.2}-{hi:.2}",
        pts.len()
    ))
}

/// The shares of steps in the healthy, warning and exploding bands of the global gradient
/// norm, over the run (from the grad_norm monitor's per-epoch shares).
fn health_line(history: &[EpochMetrics]) -> Option<String> {
    let mean = |k: &str| -> Option<f64> {
        let v: Vec<f64> = history.iter().filter_map(|m| m.get(k)).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let (healthy, warning, exploding) = (
        mean("grad_norm.frac_healthy")?,
        mean("grad_norm.frac_warning")?,
        mean("grad_norm.frac_exploding")?,
    );
    let last = history.last()?;
    let warn = last.get("grad_norm.warn").unwrap_or(5.0);
    let explode = last.get("grad_norm.explode").unwrap_or(10.0);
    Some(format!(
        "{healthy:.1} % of steps healthy (< {warn}), {warning:.1} % warning ({warn}-{explode}), {exploding:.1} % exploding (> {explode})"
    ))
}
