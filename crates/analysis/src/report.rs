//! `rnnlab report RUN...`: a Markdown table comparing runs, read from each run's
//! `metrics.jsonl`, and (with `--out DIR`) figures overlaying the runs; with `--html DIR`, the
//! self-contained page of [`html`].

pub mod html;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rnnlab_callbacks::{plot, stability::series_stability};
use rnnlab_core::{read_metrics, EpochMetrics};

/// A run's name and its epochs' metrics.
pub type NamedRun = (String, Vec<EpochMetrics>);

/// The figures of one run in the table.
#[derive(Clone, Debug)]
pub struct RunRow {
    /// The run's name (its folder name).
    pub name: String,
    /// Epochs logged.
    pub epochs: usize,
    /// `(final, best, best epoch)` of val accuracy.
    pub val_acc: Option<(f64, f64, usize)>,
    /// `(final, best, best epoch)` of test accuracy.
    pub test_acc: Option<(f64, f64, usize)>,
    /// Largest epoch-to-epoch swing of val / test accuracy over the last K epochs.
    pub swing: (Option<f64>, Option<f64>),
    /// Standard deviation of val / test accuracy over the last K epochs.
    pub std: (Option<f64>, Option<f64>),
    /// Largest per-epoch p99 of the global gradient norm.
    pub grad_p99: Option<f64>,
    /// Percent of steps in the warning band (mean over epochs).
    pub warning: Option<f64>,
    /// Percent of steps in the exploding band (mean over epochs).
    pub exploding: Option<f64>,
    /// Percent of steps clipped (mean over epochs).
    pub clipped: Option<f64>,
    /// Largest spectral radius over the recurrent gate blocks at the final epoch.
    pub radius: Option<f64>,
    /// Mean training seconds per epoch.
    pub seconds_per_epoch: Option<f64>,
}

/// The mean of `key`'s finite values over the epochs.
pub(crate) fn mean(history: &[EpochMetrics], key: &str) -> Option<f64> {
    let v: Vec<f64> = history
        .iter()
        .filter_map(|m| m.get(key))
        .filter(|v| v.is_finite())
        .collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn max(history: &[EpochMetrics], key: &str) -> Option<f64> {
    history
        .iter()
        .filter_map(|m| m.get(key))
        .filter(|v| v.is_finite())
        .reduce(f64::max)
}

/// The largest spectral radius over the recurrent gate blocks at the last epoch.
pub(crate) fn final_radius(history: &[EpochMetrics]) -> Option<f64> {
    history.last().and_then(|m| {
        m.iter()
            .filter(|(k, _)| k.starts_with("spectral.") && k.ends_with(".radius"))
            .map(|(_, v)| v)
            .reduce(f64::max)
    })
}

/// The row of one run's history.
pub fn row(name: &str, history: &[EpochMetrics], window: usize) -> RunRow {
    let acc = |k: &str| series_stability(history, k, window);
    let (val, test) = (acc("val_acc"), acc("test_acc"));
    let radius = final_radius(history);
    RunRow {
        name: name.to_string(),
        epochs: history.len(),
        val_acc: val.as_ref().map(|s| (s.last, s.best, s.best_epoch)),
        test_acc: test.as_ref().map(|s| (s.last, s.best, s.best_epoch)),
        swing: (
            val.as_ref().map(|s| s.max_swing),
            test.as_ref().map(|s| s.max_swing),
        ),
        std: (val.as_ref().map(|s| s.std), test.as_ref().map(|s| s.std)),
        grad_p99: max(history, "grad_norm.global.p99").or_else(|| max(history, "grad_norm_p99")),
        warning: mean(history, "grad_norm.frac_warning"),
        exploding: mean(history, "grad_norm.frac_exploding"),
        clipped: mean(history, "grad_norm.frac_clipped")
            .or_else(|| mean(history, "clipped_frac").map(|f| 100.0 * f)),
        radius,
        seconds_per_epoch: mean(history, "epoch_seconds"),
    }
}

fn f(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "–".into())
}

fn acc(v: Option<(f64, f64, usize)>) -> (String, String) {
    match v {
        Some((last, best, e)) => (format!("{last:.2}"), format!("{best:.2} (ep {e})")),
        None => ("–".into(), "–".into()),
    }
}

/// The column headings of the comparison table (`window`: K of the swing and std columns).
pub fn headings(window: usize) -> Vec<String> {
    [
        "run",
        "epochs",
        "val acc final",
        "val acc best",
        "test acc final",
        "test acc best",
        &format!("swing val / test (last {window})"),
        "std val / test",
        "grad p99 (max)",
        "warning %",
        "exploding %",
        "clipped %",
        "spectral radius (final)",
        "s / epoch",
    ]
    .iter()
    .map(|h| h.to_string())
    .collect()
}

/// The cells of `r` in the comparison table, as formatted text (one per heading).
pub fn cells(r: &RunRow) -> Vec<String> {
    let (vf, vb) = acc(r.val_acc);
    let (tf, tb) = acc(r.test_acc);
    vec![
        r.name.clone(),
        r.epochs.to_string(),
        vf,
        vb,
        tf,
        tb,
        format!("{} / {}", f(r.swing.0, 2), f(r.swing.1, 2)),
        format!("{} / {}", f(r.std.0, 2), f(r.std.1, 2)),
        f(r.grad_p99, 2),
        f(r.warning, 1),
        f(r.exploding, 1),
        f(r.clipped, 1),
        f(r.radius, 3),
        f(r.seconds_per_epoch, 1),
    ]
}

/// What the columns of the comparison table mean.
pub const TABLE_NOTE: &str = "Accuracies in percent; swing = largest change between consecutive \
     epochs; grad p99 = largest per-epoch 99th percentile of the raw global gradient norm; warning \
     / exploding / clipped = mean per-epoch share of steps (the `grad_norm` monitor's bands); \
     spectral radius = largest over the recurrent gate blocks at the final epoch.";

/// The Markdown table of `rows`.
pub fn table(rows: &[RunRow], window: usize) -> String {
    let heads = headings(window);
    let mut s = format!("| {} |\n", heads.join(" | "));
    let _ = writeln!(s, "|{}", " --- |".repeat(heads.len()));
    for r in rows {
        let _ = writeln!(s, "| {} |", cells(r).join(" | "));
    }
    s
}

/// Reads every run, prints nothing; returns the Markdown report and each run's `(name, history)`.
pub fn report(runs: &[PathBuf], window: usize) -> Result<(String, Vec<NamedRun>)> {
    if runs.is_empty() {
        bail!("report: give one or more run folders");
    }
    let mut loaded = Vec::new();
    for run in runs {
        let path = run.join(rnnlab_core::METRICS_FILE);
        let history = read_metrics(&path)?;
        loaded.push((run_name(run, runs), history));
    }
    let rows: Vec<RunRow> = loaded.iter().map(|(n, h)| row(n, h, window)).collect();
    let mut md = String::from("# Run comparison\n\n");
    md.push_str(&table(&rows, window));
    let _ = writeln!(md, "\n{TABLE_NOTE}");
    Ok((md, loaded))
}

fn run_name(run: &Path, all: &[PathBuf]) -> String {
    let base = run
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| run.display().to_string());
    let clashes = all
        .iter()
        .filter(|r| r.file_name().map(|s| s.to_string_lossy().into_owned()) == Some(base.clone()))
        .count();
    if clashes > 1 {
        run.display().to_string()
    } else {
        base
    }
}

/// `rnnlab report`: prints the table; with `out`, also writes `out/report.md` and the overlay
/// figures in `out/plots/`.
pub fn run(runs: &[PathBuf], out: Option<&Path>, window: usize) -> Result<String> {
    let (md, loaded) = report(runs, window)?;
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let formats = vec!["png".to_string(), "svg".to_string()];
        let files = plot::compare_plots(&loaded, &dir.join("plots"), &formats)?;
        let mut text = md.clone();
        text.push_str("\n## Figures\n\n");
        for f in &files {
            if f.extension().is_some_and(|e| e == "png") {
                let rel = f.strip_prefix(dir).unwrap_or(f);
                let _ = writeln!(text, "![{}]({})", rel.display(), rel.display());
            }
        }
        rnnlab_core::write_atomic(&dir.join("report.md"), text.as_bytes())?;
    }
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_from_a_known_history() {
        let h: Vec<EpochMetrics> = [(70.0, 1.0, 0.2), (80.0, 3.0, 0.4), (77.0, 2.0, 0.5)]
            .iter()
            .enumerate()
            .map(|(i, (a, p99, c))| {
                let mut m = EpochMetrics::new();
                m.set("epoch", (i + 1) as f64);
                m.set("val_acc", *a);
                m.set("grad_norm_p99", *p99);
                m.set("clipped_frac", *c);
                m.set("epoch_seconds", 2.0);
                m.set("spectral.rnn.weight_hh_l0.i.radius", 0.5 + i as f64);
                m.set("spectral.rnn.weight_hh_l0.f.radius", 0.7);
                m
            })
            .collect();
        let r = row("a", &h, 10);
        assert_eq!(r.val_acc, Some((77.0, 80.0, 2)));
        assert_eq!(r.swing.0, Some(10.0));
        assert_eq!(r.grad_p99, Some(3.0));
        assert!((r.clipped.unwrap() - 100.0 * 1.1 / 3.0).abs() < 1e-9);
        assert_eq!(r.radius, Some(2.5));
        let t = table(&[r], 10);
        assert!(t.contains("| a | 3 | 77.00 | 80.00 (ep 2) | – |"), "{t}");
    }
}
