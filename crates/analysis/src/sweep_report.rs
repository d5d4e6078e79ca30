//! `rnnlab sweep report`: one row per variant, mean ± std over its seeds, from the run folders'
//! `metrics.jsonl` (and `provenance.json` for the parameter count, `evals/*.json` for the stored
//! evaluations) alone, so folders copied back from a cluster report the same. Markdown, CSV, and
//! figures overlaying the variants (mean curve, band from the lowest to the highest seed). The
//! command names the folders ([`SweepRuns`]); nothing here reads the sweep file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rnnlab_callbacks::plot::{self, LineChart, Series};
use rnnlab_callbacks::stability::series_stability;
use rnnlab_core::{read_metrics, EpochMetrics};

use crate::report::{final_radius, mean};

/// The figures of one run that the table averages.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunFigures {
    /// Epochs logged.
    pub epochs: usize,
    /// Test accuracy at the last epoch.
    pub final_test: Option<f64>,
    /// Best test accuracy of any epoch.
    pub best_test: Option<f64>,
    /// Test accuracy at the epoch with the best `val_acc` (the first such, as the trainer keeps
    /// `best.safetensors`): the figure of early stopping on validation, without looking at test.
    pub test_at_best_val: Option<f64>,
    /// Largest |change| of test accuracy between consecutive epochs among the last K.
    pub swing: Option<f64>,
    /// Population std of test accuracy over the last K epochs.
    pub std: Option<f64>,
    /// Mean over epochs of the per-epoch median gradient norm.
    pub grad_p50: Option<f64>,
    /// Largest per-epoch 99th percentile of the gradient norm.
    pub grad_p99: Option<f64>,
    /// Largest gradient norm of any step.
    pub grad_max: Option<f64>,
    /// Percent of steps with a norm above the `grad_norm` monitor's `explode` (10).
    pub exploding: Option<f64>,
    /// Percent of steps clipped.
    pub clipped: Option<f64>,
    /// Largest spectral radius of the recurrent gate blocks at the last epoch.
    pub radius: Option<f64>,
    /// Mean training seconds per epoch.
    pub seconds: Option<f64>,
    /// Trainable parameters (from `provenance.json`).
    pub params: Option<f64>,
    /// Accuracy of each stored evaluation (`evals/<name>.json`, `rnnlab sweep eval`), by name.
    pub evals: BTreeMap<String, StoredEval>,
}

/// The largest value of `key` over the epochs; unlike the run report's p99 column, an infinite
/// value (a step whose norm overflowed) counts.
fn max_of(history: &[EpochMetrics], key: &str) -> Option<f64> {
    history
        .iter()
        .filter_map(|m| m.get(key))
        .filter(|v| !v.is_nan())
        .reduce(f64::max)
}

/// `test_acc` of the first epoch with the highest `val_acc`.
fn test_at_best_val(history: &[EpochMetrics]) -> Option<f64> {
    let mut best: Option<(f64, f64)> = None;
    for m in history {
        if let (Some(v), Some(t)) = (m.get("val_acc"), m.get("test_acc")) {
            if !v.is_nan() && best.is_none_or(|(b, _)| v > b) {
                best = Some((v, t));
            }
        }
    }
    best.map(|(_, t)| t)
}

/// The figures of one run's history (`window` = K).
pub fn run_figures(history: &[EpochMetrics], window: usize) -> RunFigures {
    let test = series_stability(history, "test_acc", window);
    RunFigures {
        epochs: history.len(),
        final_test: test.as_ref().map(|s| s.last),
        best_test: test.as_ref().map(|s| s.best),
        test_at_best_val: test_at_best_val(history),
        swing: test.as_ref().map(|s| s.max_swing),
        std: test.as_ref().map(|s| s.std),
        grad_p50: mean(history, "grad_norm_p50"),
        grad_p99: max_of(history, "grad_norm_p99"),
        grad_max: max_of(history, "grad_norm_max"),
        exploding: mean(history, "grad_norm.frac_exploding"),
        clipped: mean(history, "clipped_frac").map(|f| 100.0 * f),
        radius: final_radius(history),
        seconds: mean(history, "epoch_seconds"),
        params: None,
        evals: BTreeMap::new(),
    }
}

/// Mean and sample standard deviation (n − 1; `None` with one value) of the values present.
pub fn mean_std(values: &[Option<f64>]) -> Option<(f64, Option<f64>)> {
    let v: Vec<f64> = values.iter().flatten().copied().collect();
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let std = (v.len() > 1)
        .then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    Some((mean, std))
}

/// One variant's runs that have metrics.
#[derive(Clone, Debug)]
pub struct VariantRuns {
    /// The variant.
    pub name: String,
    /// `(seed, history)` of each run with metrics.
    pub runs: Vec<(u64, Vec<EpochMetrics>)>,
    /// Each run's figures, in the same order.
    pub figures: Vec<RunFigures>,
}

/// A sweep's run folders, as the report reads them.
#[derive(Clone, Debug, Default)]
pub struct SweepRuns {
    /// The sweep's name (its file's stem): the report's title.
    pub name: String,
    /// Each variant in order, with the seed and folder of each of its runs.
    pub variants: Vec<(String, Vec<(u64, PathBuf)>)>,
}

/// Reads every run folder of `sweep` that has a `metrics.jsonl`.
pub fn load(sweep: &SweepRuns, window: usize) -> Result<Vec<VariantRuns>> {
    let mut out = Vec::new();
    for (v, planned) in &sweep.variants {
        let mut runs = Vec::new();
        let mut figures = Vec::new();
        for (seed, dir) in planned {
            let path = dir.join(rnnlab_core::METRICS_FILE);
            if !path.is_file() {
                continue;
            }
            let history =
                read_metrics(&path).with_context(|| format!("reading {}", path.display()))?;
            if history.is_empty() {
                continue;
            }
            let mut f = run_figures(&history, window);
            f.params = trainable_params(dir);
            f.evals = stored(dir)?;
            figures.push(f);
            runs.push((*seed, history));
        }
        out.push(VariantRuns {
            name: v.clone(),
            runs,
            figures,
        });
    }
    Ok(out)
}

fn trainable_params(run: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(run.join("provenance.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("trainable_params")?.as_f64()
}

/// The folder of a run that holds its evaluations (`rnnlab sweep eval` writes them).
pub const EVALS_DIR: &str = "evals";

/// One stored evaluation of a run, as the report reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEval {
    /// Accuracy in percent.
    pub accuracy: f64,
    /// The data file's name (without its folder).
    pub data: String,
    /// `best` or `last`.
    pub checkpoint: String,
}

/// Every `evals/*.json` of `run`, by name; a file that cannot be read is an error naming it.
pub fn stored(run: &Path) -> Result<BTreeMap<String, StoredEval>> {
    let dir = run.join(EVALS_DIR);
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(out);
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let Some(name) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
            continue;
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
        let Some(accuracy) = v["accuracy"].as_f64() else {
            bail!("{}: no number `accuracy`", path.display());
        };
        let data = v["data"]
            .as_str()
            .map(|d| {
                Path::new(d)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| d.to_string())
            })
            .unwrap_or_default();
        let checkpoint = v["checkpoint"].as_str().unwrap_or("best").to_string();
        out.insert(
            name,
            StoredEval {
                accuracy,
                data,
                checkpoint,
            },
        );
    }
    Ok(out)
}

/// A column of the table: header, CSV name, the figure, decimals.
struct Column {
    header: &'static str,
    csv: &'static str,
    get: fn(&RunFigures) -> Option<f64>,
    digits: usize,
}

const COLUMNS: &[Column] = &[
    Column {
        header: "test acc final",
        csv: "final_test_acc",
        get: |f| f.final_test,
        digits: 2,
    },
    Column {
        header: "test acc best",
        csv: "best_test_acc",
        get: |f| f.best_test,
        digits: 2,
    },
    Column {
        header: "test acc @ best val",
        csv: "test_acc_at_best_val",
        get: |f| f.test_at_best_val,
        digits: 2,
    },
    Column {
        header: "swing (last K)",
        csv: "max_swing",
        get: |f| f.swing,
        digits: 2,
    },
    Column {
        header: "std (last K)",
        csv: "std_last_k",
        get: |f| f.std,
        digits: 2,
    },
    Column {
        header: "grad p50",
        csv: "grad_norm_p50",
        get: |f| f.grad_p50,
        digits: 2,
    },
    Column {
        header: "grad p99",
        csv: "grad_norm_p99",
        get: |f| f.grad_p99,
        digits: 2,
    },
    Column {
        header: "grad max",
        csv: "grad_norm_max",
        get: |f| f.grad_max,
        digits: 1,
    },
    Column {
        header: "% steps > 10",
        csv: "pct_steps_exploding",
        get: |f| f.exploding,
        digits: 2,
    },
    Column {
        header: "% clipped",
        csv: "pct_clipped",
        get: |f| f.clipped,
        digits: 1,
    },
    Column {
        header: "radius W_hh",
        csv: "spectral_radius_final",
        get: |f| f.radius,
        digits: 2,
    },
    Column {
        header: "s / epoch",
        csv: "seconds_per_epoch",
        get: |f| f.seconds,
        digits: 1,
    },
    Column {
        header: "params",
        csv: "trainable_params",
        get: |f| f.params,
        digits: 0,
    },
];

fn cell(v: Option<(f64, Option<f64>)>, digits: usize) -> String {
    match v {
        None => "–".into(),
        Some((m, Some(s))) if digits > 0 => format!("{m:.digits$} ± {s:.digits$}"),
        Some((m, _)) => format!("{m:.digits$}"),
    }
}

/// The names of the stored evaluations of any run, in order.
fn eval_names(variants: &[VariantRuns]) -> Vec<String> {
    let names: std::collections::BTreeSet<&String> = variants
        .iter()
        .flat_map(|v| v.figures.iter().flat_map(|f| f.evals.keys()))
        .collect();
    names.into_iter().cloned().collect()
}

/// One variant's accuracies of the evaluation `name` (`None` for a run without it).
fn eval_values(v: &VariantRuns, name: &str) -> Vec<Option<f64>> {
    v.figures
        .iter()
        .map(|f| f.evals.get(name).map(|e| e.accuracy))
        .collect()
}

/// The Markdown table: one row per variant, mean ± std over its seeds.
pub fn table(variants: &[VariantRuns], window: usize) -> String {
    let evals = eval_names(variants);
    let mut s = String::new();
    let _ = write!(s, "| variant | seeds | epochs |");
    for c in COLUMNS {
        let _ = write!(s, " {} |", c.header.replace('K', &window.to_string()));
    }
    for e in &evals {
        let _ = write!(s, " {e} acc |");
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "|{}", " --- |".repeat(COLUMNS.len() + 3 + evals.len()));
    for v in variants {
        let epochs: Vec<usize> = v.figures.iter().map(|f| f.epochs).collect();
        let epochs = match (epochs.iter().min(), epochs.iter().max()) {
            (Some(a), Some(b)) if a == b => a.to_string(),
            (Some(a), Some(b)) => format!("{a}-{b}"),
            _ => "–".into(),
        };
        let _ = write!(s, "| {} | {} | {epochs} |", v.name, v.runs.len());
        for c in COLUMNS {
            let values: Vec<Option<f64>> = v.figures.iter().map(c.get).collect();
            let _ = write!(s, " {} |", cell(mean_std(&values), c.digits));
        }
        for e in &evals {
            let values = eval_values(v, e);
            let have = values.iter().flatten().count();
            let mut text = cell(mean_std(&values), 2);
            if have > 0 && have < values.len() {
                let _ = write!(text, " ({have} of {})", values.len());
            }
            let _ = write!(s, " {text} |");
        }
        let _ = writeln!(s);
    }
    s
}

/// The CSV: one row per variant, `<name>_mean` and `<name>_std` per figure.
pub fn csv(variants: &[VariantRuns]) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["variant".to_string(), "seeds".into(), "epochs_min".into()];
    for c in COLUMNS {
        header.push(format!("{}_mean", c.csv));
        header.push(format!("{}_std", c.csv));
    }
    let evals = eval_names(variants);
    for e in &evals {
        header.push(format!("{e}_acc_mean"));
        header.push(format!("{e}_acc_std"));
        header.push(format!("{e}_runs"));
    }
    w.write_record(&header)?;
    for v in variants {
        let mut rec = vec![
            v.name.clone(),
            v.runs.len().to_string(),
            v.figures
                .iter()
                .map(|f| f.epochs)
                .min()
                .map(|e| e.to_string())
                .unwrap_or_default(),
        ];
        let columns = COLUMNS
            .iter()
            .map(|c| v.figures.iter().map(c.get).collect::<Vec<_>>());
        let eval_columns = evals.iter().map(|e| eval_values(v, e));
        for (i, values) in columns.chain(eval_columns).enumerate() {
            match mean_std(&values) {
                Some((m, s)) => {
                    rec.push(format!("{m}"));
                    rec.push(s.map(|s| format!("{s}")).unwrap_or_default());
                }
                None => {
                    rec.push(String::new());
                    rec.push(String::new());
                }
            }
            if i >= COLUMNS.len() {
                rec.push(values.iter().flatten().count().to_string());
            }
        }
        w.write_record(&rec)?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

/// The legend's sentence on the stored evaluations: which file and checkpoint each column is.
fn evals_legend(variants: &[VariantRuns]) -> String {
    let mut s = String::new();
    for name in eval_names(variants) {
        let Some(e) = variants
            .iter()
            .flat_map(|v| v.figures.iter())
            .find_map(|f| f.evals.get(&name))
        else {
            continue;
        };
        let _ = write!(
            s,
            " {name} acc = accuracy in percent of each run's {} checkpoint on {} \
             (`rnnlab sweep eval --name {name}`, kept in the run's evals/{name}.json; \
             \"(k of n)\": only k of the n runs have it).",
            e.checkpoint, e.data
        );
    }
    s
}

/// The legend printed under the table.
pub fn legend(window: usize) -> String {
    format!(
        "Mean ± sample std over the seeds that have metrics. test acc in percent; @ best val = at \
         the first epoch with the highest val_acc (the best checkpoint's); swing = largest \
         change of test accuracy between consecutive epochs among the last {window}; std = its \
         population std over the same epochs; grad p50 = mean over epochs of the per-epoch median \
         of the raw global gradient norm; p99 = largest per-epoch 99th percentile; max = largest \
         single step; % steps > 10 = mean per-epoch share of steps above the grad_norm monitor's \
         `explode` (10); % clipped = mean per-epoch share of clipped steps; radius W_hh = largest \
         spectral radius of the recurrent gate blocks at the last epoch; s / epoch = training \
         seconds (machine-dependent); params = trainable parameters.\n"
    )
}

/// A curve per variant: the mean over seeds of `value(epoch metrics)` at each epoch that every
/// seed reached, with the band from the lowest to the highest seed.
fn mean_series(v: &VariantRuns, value: &dyn Fn(&EpochMetrics) -> Option<f64>) -> Option<Series> {
    let len = v.runs.iter().map(|(_, h)| h.len()).min()?;
    let mut points = Vec::new();
    let mut band = Vec::new();
    for e in 0..len {
        let vals: Vec<f64> = v
            .runs
            .iter()
            .filter_map(|(_, h)| value(&h[e]))
            .filter(|x| x.is_finite())
            .collect();
        if vals.len() != v.runs.len() {
            continue;
        }
        let x = v.runs[0].1[e].get("epoch").unwrap_or((e + 1) as f64);
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        points.push((x, mean));
        band.push((x, lo, hi));
    }
    (!points.is_empty()).then(|| Series {
        name: v.name.clone(),
        points,
        light: false,
        band,
    })
}

/// The class with the largest true share on the test split (from the `predictions` monitor).
fn majority_class(h: &[EpochMetrics]) -> Option<String> {
    let m = h.last()?;
    m.iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("predictions.test.true_share.")
                .map(|c| (c.to_string(), v))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(c, _)| c)
}

/// Writes the figures into `dir`; returns the files.
pub fn figures(variants: &[VariantRuns], dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let formats = vec!["png".to_string(), "svg".to_string()];
    let with_runs: Vec<&VariantRuns> = variants.iter().filter(|v| !v.runs.is_empty()).collect();
    let curves = |f: &dyn Fn(&EpochMetrics) -> Option<f64>| -> Vec<Series> {
        with_runs.iter().filter_map(|v| mean_series(v, f)).collect()
    };
    let majority = with_runs
        .iter()
        .find_map(|v| v.runs.first().and_then(|(_, h)| majority_class(h)));
    let mut charts = vec![
        (
            "sweep_test_acc",
            LineChart {
                title: "test accuracy (mean over seeds, band: min-max)".into(),
                y_desc: "accuracy (%)".into(),
                series: curves(&|m| m.get("test_acc")),
                hlines: vec![],
                log10: false,
            },
        ),
        (
            "sweep_grad_norm",
            LineChart {
                title: "gradient norm p50 per epoch (mean over seeds, band: min-max)".into(),
                y_desc: "global L2 norm".into(),
                series: curves(&|m| m.get("grad_norm_p50")),
                hlines: vec![],
                log10: false,
            },
        ),
        (
            "sweep_grad_norm_p99",
            LineChart {
                title: "gradient norm p99 per epoch (mean over seeds, band: min-max)".into(),
                y_desc: "global L2 norm".into(),
                series: curves(&|m| m.get("grad_norm_p99")),
                hlines: vec![("warn 5".into(), 5.0), ("explode 10".into(), 10.0)],
                log10: false,
            },
        ),
    ];
    if let Some(c) = majority {
        let key = format!("predictions.test.share.{c}");
        let truth = with_runs
            .iter()
            .find_map(|v| v.runs[0].1.last())
            .and_then(|m| m.get(&format!("predictions.test.true_share.{c}")));
        charts.push((
            "sweep_predicted_share",
            LineChart {
                title: format!(
                    "predicted share of the majority class {c} on test (mean over seeds, band: min-max)"
                ),
                y_desc: "share (%)".into(),
                series: curves(&|m| m.get(&key)),
                hlines: truth
                    .map(|t| vec![("true share".to_string(), t)])
                    .unwrap_or_default(),
                log10: false,
            },
        ));
    }
    let mut files = Vec::new();
    for (stem, chart) in charts {
        if chart.series.is_empty() {
            continue;
        }
        files.extend(plot::line_chart(&dir.join(stem), &formats, &chart)?);
    }
    Ok(files)
}

/// The Markdown report of `sweep`: title, table, legend.
pub fn markdown(sweep: &SweepRuns, variants: &[VariantRuns], window: usize) -> String {
    let mut s = format!("## Sweep `{}`\n\n", sweep.name);
    s.push_str(&table(variants, window));
    s.push('\n');
    let mut legend = legend(window);
    let evals = evals_legend(variants);
    if !evals.is_empty() {
        legend.truncate(legend.trim_end().len());
        legend.push_str(&evals);
        legend.push('\n');
    }
    s.push_str(&legend);
    s
}

/// `rnnlab sweep report`: prints the Markdown; with `out`, writes `sweep.md`, `sweep.csv` and
/// `plots/` there.
pub fn run(sweep: &SweepRuns, out: Option<&Path>, window: usize) -> Result<String> {
    let variants = load(sweep, window)?;
    let md = markdown(sweep, &variants, window);
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let files = figures(&variants, &dir.join("plots"))?;
        let mut text = md.clone();
        for f in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "png"))
        {
            let rel = f.strip_prefix(dir).unwrap_or(f);
            let _ = writeln!(text, "\n![{}]({})", rel.display(), rel.display());
        }
        rnnlab_core::write_atomic(&dir.join("sweep.md"), text.as_bytes())?;
        rnnlab_core::write_atomic(&dir.join("sweep.csv"), csv(&variants)?.as_bytes())?;
    }
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_accuracy_at_the_first_best_validation_epoch() {
        let epoch = |val: f64, test: f64| {
            let mut m = EpochMetrics::new();
            m.set("val_acc", val);
            m.set("test_acc", test);
            m
        };
        // val peaks at 61 in epochs 2 and 4: the first one's test accuracy counts.
        let h = [
            epoch(50.0, 40.0),
            epoch(61.0, 52.0),
            epoch(f64::NAN, 99.0),
            epoch(61.0, 58.0),
            epoch(55.0, 60.0),
        ];
        assert_eq!(test_at_best_val(&h), Some(52.0));
        assert_eq!(run_figures(&h, 2).test_at_best_val, Some(52.0));
        assert_eq!(test_at_best_val(&[]), None);
    }

    #[test]
    fn mean_and_sample_std() {
        let (m, s) = mean_std(&[Some(1.0), None, Some(3.0), Some(5.0)]).unwrap();
        assert_eq!(m, 3.0);
        assert_eq!(s, Some(2.0));
        assert_eq!(mean_std(&[Some(2.5)]), Some((2.5, None)));
        assert_eq!(mean_std(&[None]), None);
    }
}
