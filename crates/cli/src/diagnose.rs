//! `rnnlab diagnose RUN`: which causes of unstable training hold for a run, each with its
//! evidence and the rule that fired, then the fixes in order as ready `--set` overrides.
//!
//! Reads the run folder's `metrics.jsonl` (the monitors `grad_norm`, `spectral`, `predictions`
//! and `stability` add the figures most rules need), `config.resolved.toml` (to write the fixes
//! against the run's own transforms) and `confusion.json`. The rules and their thresholds are
//! documented in the README ("Diagnose rules").

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rnnlab_callbacks::stability::series_stability;
use rnnlab_core::{read_metrics, EpochMetrics};

/// The thresholds of the rules; `rnnlab diagnose --set key=value` or a `[diagnose]` table in a
/// file given with `--config` changes them.
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds {
    /// Gradient norm of the warning band (default: the run's `grad_norm.warn`, else 5).
    pub warn: Option<f64>,
    /// Gradient norm above which a step explodes (default: the run's `grad_norm.explode`, else 10).
    pub explode: Option<f64>,
    /// Percent of an epoch's steps above `explode` that counts as exploding (default 1).
    pub explode_share: f64,
    /// Spectral radius above which a recurrent block is flagged (default 1).
    pub radius: f64,
    /// K: the last epochs the swing, overfitting, drift and collapse rules look at (default 10).
    pub window: usize,
    /// Loss spikes in the run that make the learning rate suspect (default 1).
    pub spikes: usize,
    /// Accuracy swing between epochs, in points, that counts as noise (default 2).
    pub swing: f64,
    /// Move of a predicted-class share between epochs, in points, that counts as drift (default 5).
    pub drift: f64,
    /// Percent of val predicted as one class that counts as collapse (default 95).
    pub collapse: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            warn: None,
            explode: None,
            explode_share: 1.0,
            radius: 1.0,
            window: 10,
            spikes: 1,
            swing: 2.0,
            drift: 5.0,
            collapse: 95.0,
        }
    }
}

/// The keys `--set` accepts, with one line each (for errors and `--help`).
pub const KEYS: &[(&str, &str)] = &[
    (
        "warn",
        "gradient norm of the warning band (default: the run's grad_norm.warn, else 5)",
    ),
    (
        "explode",
        "gradient norm of the exploding band (default: the run's grad_norm.explode, else 10)",
    ),
    (
        "explode_share",
        "percent of an epoch's steps above `explode` that is exploding (1)",
    ),
    (
        "radius",
        "spectral radius above which a recurrent block is flagged (1)",
    ),
    ("window", "K, the last epochs looked at (10)"),
    (
        "spikes",
        "loss spikes that make the learning rate suspect (1)",
    ),
    (
        "swing",
        "epoch-to-epoch accuracy swing in points that is noise (2)",
    ),
    (
        "drift",
        "epoch-to-epoch move of a predicted share in points that is drift (5)",
    ),
    (
        "collapse",
        "percent of val predicted as one class that is collapse (95)",
    ),
];

impl Thresholds {
    /// Sets `key` from a TOML value.
    pub fn set(&mut self, key: &str, v: &toml::Value) -> Result<()> {
        let num = || -> Result<f64> {
            match v {
                toml::Value::Float(f) if f.is_finite() && *f >= 0.0 => Ok(*f),
                toml::Value::Integer(i) if *i >= 0 => Ok(*i as f64),
                _ => bail!("diagnose.{key}: expected a non-negative number, got {v}"),
            }
        };
        match key {
            "warn" => self.warn = Some(num()?),
            "explode" => self.explode = Some(num()?),
            "explode_share" => self.explode_share = num()?,
            "radius" => self.radius = num()?,
            "window" => self.window = (num()? as usize).max(2),
            "spikes" => self.spikes = (num()? as usize).max(1),
            "swing" => self.swing = num()?,
            "drift" => self.drift = num()?,
            "collapse" => self.collapse = num()?,
            other => {
                let names: Vec<&str> = KEYS.iter().map(|k| k.0).collect();
                bail!(
                    "unknown diagnose key `{other}`{}; known: {}",
                    rnnlab_core::suggest(other, names.iter().copied()),
                    names.join(", ")
                )
            }
        }
        Ok(())
    }

    /// Defaults, then the `[diagnose]` table of `file`, then `key=value` overrides.
    pub fn load(file: Option<&Path>, sets: &[String]) -> Result<Self> {
        let mut t = Thresholds::default();
        if let Some(f) = file {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            let table: toml::Table =
                toml::from_str(&text).with_context(|| format!("parsing {}", f.display()))?;
            if let Some(d) = table.get("diagnose") {
                let d = d
                    .as_table()
                    .with_context(|| format!("{}: `diagnose` must be a table", f.display()))?;
                for (k, v) in d {
                    t.set(k, v).with_context(|| f.display().to_string())?;
                }
            }
        }
        for s in sets {
            let (k, v) = s
                .split_once('=')
                .with_context(|| format!("--set {s}: expected key=value"))?;
            let k = k.trim().trim_start_matches("diagnose.");
            let v: toml::Value = toml::from_str::<toml::Table>(&format!("v = {}", v.trim()))
                .with_context(|| format!("--set {s}: the value is not TOML"))?["v"]
                .clone();
            t.set(k, &v)?;
        }
        Ok(t)
    }
}

/// A cause of unstable training that diagnose looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
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
    /// Fixes in order, each a `--set` override or a pipeline change.
    pub fixes: Vec<String>,
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

    /// The fixes of the causes that hold, in priority order, without repeats.
    pub fn fixes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for f in self.findings.iter().filter(|f| f.verdict == Verdict::Holds) {
            for x in &f.fixes {
                if !out.contains(x) {
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
        let holding: Vec<&Finding> = self
            .findings
            .iter()
            .filter(|f| f.verdict == Verdict::Holds)
            .collect();
        if holding.is_empty() {
            let _ = writeln!(s, "No cause holds.\n");
        }
        for f in &holding {
            let _ = writeln!(s, "## {} — holds\n", f.cause.title());
            let _ = writeln!(s, "Rule: {}\n", f.rule);
            for e in &f.evidence {
                let _ = writeln!(s, "- {e}");
            }
            s.push('\n');
        }
        let fixes = self.fixes();
        if !fixes.is_empty() {
            let _ = writeln!(s, "## Fixes, in order\n");
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

/// What the fixes are written against: the run's resolved pipeline.
struct RunConfig {
    transforms: Vec<toml::Table>,
    shuffle: Option<bool>,
    sort_by_length: Option<bool>,
    batch_size: Option<i64>,
    cell: Option<toml::Table>,
}

impl RunConfig {
    fn read(run: &Path) -> RunConfig {
        let table: toml::Table = std::fs::read_to_string(run.join("config.resolved.toml"))
            .ok()
            .and_then(|t| toml::from_str(&t).ok())
            .unwrap_or_default();
        let get = |path: &[&str]| -> Option<toml::Value> {
            let mut v = toml::Value::Table(table.clone());
            for p in path {
                v = v.as_table()?.get(*p)?.clone();
            }
            Some(v)
        };
        RunConfig {
            transforms: get(&["optim", "transforms"])
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default()
                .into_iter()
                .filter_map(|v| v.as_table().cloned())
                .collect(),
            shuffle: get(&["data", "shuffle"]).and_then(|v| v.as_bool()),
            sort_by_length: get(&["data", "sort_by_length"]).and_then(|v| v.as_bool()),
            batch_size: get(&["data", "batch_size"]).and_then(|v| v.as_integer()),
            cell: get(&["model", "cell"]).and_then(|v| v.as_table().cloned()),
        }
    }

    fn kind(t: &toml::Table) -> &str {
        t.get("type").and_then(|v| v.as_str()).unwrap_or("?")
    }

    /// Index and learning rate of the optimizer (the first transform with an `lr`).
    fn optimizer(&self) -> Option<(usize, f64)> {
        self.transforms.iter().enumerate().find_map(|(i, t)| {
            let lr = t.get("lr")?;
            Some((i, lr.as_float().or(lr.as_integer().map(|x| x as f64))?))
        })
    }

    fn find(&self, kind: &str) -> Option<usize> {
        self.transforms.iter().position(|t| Self::kind(t) == kind)
    }

    /// The transform list with `extra` inserted at `at`, as a `--set` override.
    fn with_transform(&self, at: Insert, extra: &str) -> String {
        let mut items: Vec<String> = self.transforms.iter().map(inline_table).collect();
        match at {
            Insert::Front => items.insert(0, extra.to_string()),
            Insert::BeforeOptimizer => {
                let i = self.optimizer().map(|o| o.0).unwrap_or(items.len());
                items.insert(i, extra.to_string());
            }
            Insert::Back => items.push(extra.to_string()),
        }
        format!("--set 'optim.transforms=[{}]'", items.join(", "))
    }

    fn lower_lr(&self, factor: f64) -> Option<String> {
        let (i, lr) = self.optimizer()?;
        Some(format!(
            "--set optim.transforms.{i}.lr={} (the learning rate / {factor})",
            fmt_num(lr / factor)
        ))
    }

    fn clip(&self, max_norm: f64) -> String {
        match self.find("clip_global_norm") {
            Some(i) => format!("--set optim.transforms.{i}.max_norm={}", fmt_num(max_norm)),
            None => self.with_transform(
                Insert::Front,
                &format!(
                    "{{type = \"clip_global_norm\", max_norm = {}}}",
                    fmt_num(max_norm)
                ),
            ),
        }
    }

    fn ema(&self) -> String {
        match self.find("ema") {
            Some(i) => format!("--set optim.transforms.{i}.decay=0.999"),
            None => self.with_transform(Insert::Back, "{type = \"ema\", decay = 0.999}"),
        }
    }
}

enum Insert {
    Front,
    BeforeOptimizer,
    Back,
}

fn inline_table(t: &toml::Table) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(ty) = t.get("type") {
        parts.push(format!("type = {ty}"));
    }
    for (k, v) in t {
        if k != "type" {
            parts.push(format!("{k} = {v}"));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

/// `v` to 4 significant digits as a TOML float (`0.001`, `5.0`, `1e-7`).
fn fmt_num(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v:?}");
    }
    let mag = v.abs().log10().floor() as i32;
    let scale = 10f64.powi(3 - mag);
    format!("{:?}", (v * scale).round() / scale)
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
    let path = run.join("metrics.jsonl");
    let history = read_metrics(&path).with_context(|| format!("reading {}", path.display()))?;
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
    let tail = &history[history.len().saturating_sub(k)..];

    // 1. Exploding gradients.
    let (p99_key, monitor) = if history
        .iter()
        .any(|m| m.get("grad_norm.global.p99").is_some())
    {
        ("grad_norm.global.p99", true)
    } else {
        ("grad_norm_p99", false)
    };
    let p99 = series(history, p99_key);
    let share = series(history, "grad_norm.frac_exploding");
    let mut exploding = Finding {
        cause: Cause::ExplodingGradients,
        verdict: Verdict::Clear,
        rule: format!(
            "in some epoch the p99 of the global gradient norm is above explode = {explode}, or more than {}% of its steps are above it",
            t.explode_share
        ),
        evidence: Vec::new(),
        fixes: Vec::new(),
    };
    let mut fired: Vec<String> = Vec::new();
    for (e, v) in &p99 {
        let sh = share.iter().find(|s| s.0 == *e).map(|s| s.1);
        let too_high = !v.is_finite() || *v > explode;
        let too_many = sh.is_some_and(|s| s > t.explode_share);
        if too_high || too_many {
            fired.push(format!(
                "epoch {e}: p99 {} {} explode {explode}{}",
                fmt_fig(*v),
                if too_high { ">" } else { "<=" },
                sh.map(|s| format!(", {s:.1}% of steps above it"))
                    .unwrap_or_default()
            ));
        }
    }
    let max_p99 = p99.iter().fold((0, f64::NAN), |a, b| {
        if b.1 > a.1 || a.1.is_nan() {
            *b
        } else {
            a
        }
    });
    let max_norm = last_max(
        history,
        if monitor {
            "grad_norm.global.max"
        } else {
            "grad_norm_max"
        },
    );
    let max_share = share.iter().map(|s| s.1).fold(0.0, f64::max);
    if p99.is_empty() {
        exploding.verdict = Verdict::Unknown("no gradient norms logged".into());
    } else if !fired.is_empty() {
        exploding.verdict = Verdict::Holds;
        let n = fired.len();
        exploding
            .evidence
            .push(format!("{n} of {} epochs fire", p99.len()));
        exploding.evidence.extend(fired.into_iter().take(6));
        exploding.evidence.push(format!(
            "largest p99 {} at epoch {}; largest single-step norm {}",
            fmt_fig(max_p99.1),
            max_p99.0,
            fmt_fig(max_norm)
        ));
    } else {
        exploding.evidence.push(format!(
            "norms healthy: p99 at most {} (epoch {}) <= explode {explode}{}",
            fmt_fig(max_p99.1),
            max_p99.0,
            if share.is_empty() {
                String::new()
            } else {
                format!(", at most {max_share:.1}% of an epoch's steps above it")
            }
        ));
    }
    let healthy = exploding.verdict == Verdict::Clear;
    if exploding.verdict == Verdict::Holds {
        exploding.fixes.push(format!(
            "{} (clip the global norm at the warn level {warn})",
            cfg.clip(warn)
        ));
        exploding.fixes.extend(cfg.lower_lr(10.0));
        if let Some(cell) = &cfg.cell {
            let ty = RunConfig::kind(cell);
            if ty == "rnn" && cell.get("nonlinearity").and_then(|v| v.as_str()) == Some("relu") {
                exploding
                    .fixes
                    .push("--set model.cell.nonlinearity=\"tanh\" (a bounded nonlinearity)".into());
            }
            if ty == "rnn" {
                exploding.fixes.push(
                    "--set model.cell.type=\"lstm\" (gated cells keep gradients in range)".into(),
                );
            }
        }
    }

    // 2. Learning rate too high: loss spikes.
    let spikes = series(history, "stability.loss_spikes");
    let mut lr_high = Finding {
        cause: Cause::LearningRateTooHigh,
        verdict: Verdict::Clear,
        rule: format!(
            "at least {} batch loss spikes in the run (the stability monitor's rule: a batch loss above its spike_factor times the median of the previous batches)",
            t.spikes
        ),
        evidence: Vec::new(),
        fixes: Vec::new(),
    };
    if spikes.is_empty() {
        lr_high.verdict = Verdict::Unknown(
            "no `stability.loss_spikes`: add `{type = \"stability\"}` to the callbacks".into(),
        );
    } else {
        let total: f64 = spikes.iter().map(|s| s.1).sum();
        let per: Vec<String> = spikes
            .iter()
            .filter(|s| s.1 > 0.0)
            .map(|s| format!("epoch {}: {}", s.0, s.1))
            .collect();
        lr_high.evidence.push(format!(
            "{total} loss spikes in {} epochs{}{}",
            spikes.len(),
            if per.is_empty() { "" } else { " (" },
            if per.is_empty() {
                String::new()
            } else {
                per.join(", ") + ")"
            }
        ));
        if let Some(detail) = spike_detail(run) {
            lr_high.evidence.push(detail);
        }
        if total >= t.spikes as f64 {
            lr_high.verdict = Verdict::Holds;
            lr_high.fixes.extend(cfg.lower_lr(3.0));
            lr_high.fixes.push(
                "--set 'optim.scheduler={type = \"warmup\", steps = 200}' (a linear warmup of the learning rate)".into(),
            );
            lr_high
                .fixes
                .push(format!("{} (clip the global norm)", cfg.clip(warn)));
        }
    }

    // 3. Collapse.
    let mut collapse = Finding {
        cause: Cause::Collapse,
        verdict: Verdict::Clear,
        rule: format!(
            "in the final epoch one class is predicted for more than {}% of val",
            t.collapse
        ),
        evidence: Vec::new(),
        fixes: Vec::new(),
    };
    let final_shares = class_shares(history.last().expect("non-empty"), "val", "share")
        .or_else(|| confusion_shares(run));
    match final_shares {
        None => {
            collapse.verdict = Verdict::Unknown(
                "no predicted shares: add `{type = \"predictions\"}` to the callbacks".into(),
            )
        }
        Some(pred) => {
            let truth = class_shares(history.last().expect("non-empty"), "val", "true_share");
            let (c, top) = pred
                .iter()
                .enumerate()
                .fold(
                    (0, f64::NEG_INFINITY),
                    |a, (i, v)| if *v > a.1 { (i, *v) } else { a },
                );
            let true_c = truth.as_ref().and_then(|t| t.get(c).copied());
            collapse.evidence.push(format!(
                "class {c} is predicted for {top:.1}% of val in the final epoch{}",
                true_c
                    .map(|v| format!(" (its true share is {v:.1}%)"))
                    .unwrap_or_default()
            ));
            if top > t.collapse {
                collapse.verdict = Verdict::Holds;
                collapse.fixes.extend(cfg.lower_lr(10.0));
                if let Some(truth) = truth.filter(|t| t.iter().all(|v| *v > 0.0)) {
                    let mean = truth.iter().sum::<f64>() / truth.len() as f64;
                    let w: Vec<String> = truth.iter().map(|v| format!("{:.3}", mean / v)).collect();
                    collapse.fixes.push(format!(
                        "--set 'model.class_weights=[{}]' (inverse class frequency)",
                        w.join(", ")
                    ));
                }
            }
        }
    }

    // 4. Order drift.
    let mut drift = Finding {
        cause: Cause::OrderDrift,
        verdict: Verdict::Clear,
        rule: format!(
            "over the last {k} epochs a predicted-class share (val or test) moves by more than {} points from one epoch to the next, not towards its true share (a move that closes at least half its size of the gap to the true share is learning), while the gradient norms are healthy",
            t.drift
        ),
        evidence: Vec::new(),
        fixes: Vec::new(),
    };
    let has_shift = history
        .iter()
        .any(|m| m.get("predictions.val.max_shift").is_some());
    if !has_shift {
        drift.verdict = Verdict::Unknown(
            "no `predictions.*.max_shift`: add `{type = \"predictions\"}` to the callbacks (and train 2 epochs or more)".into(),
        );
    } else {
        let mut moves: Vec<(f64, String)> = Vec::new();
        for split in ["val", "test"] {
            for w in tail.windows(2).chain(
                // The transition into the window's first epoch belongs to it too.
                history.len().checked_sub(k + 1).map(|i| &history[i..i + 2]),
            ) {
                let (Some(a), Some(b)) = (
                    class_shares(&w[0], split, "share"),
                    class_shares(&w[1], split, "share"),
                ) else {
                    continue;
                };
                let truth = class_shares(&w[1], split, "true_share");
                // A move that mostly closes the gap to the true share is learning, not drift.
                let (c, d) = a
                    .iter()
                    .zip(&b)
                    .enumerate()
                    .filter(|(i, (x, y))| match truth.as_ref().and_then(|t| t.get(*i)) {
                        Some(t) => (*y - t).abs() - (*x - t).abs() > -0.5 * (*y - *x).abs(),
                        None => true,
                    })
                    .map(|(i, (x, y))| (i, (y - x).abs()))
                    .fold((0, 0.0), |m, v| if v.1 > m.1 { v } else { m });
                if d > t.drift {
                    let ea = w[0].get("epoch").unwrap_or(0.0);
                    let eb = w[1].get("epoch").unwrap_or(0.0);
                    moves.push((
                        d,
                        format!(
                            "{split}: class {c} share {:.1}% (epoch {ea}) -> {:.1}% (epoch {eb}), {d:.1} points{}",
                            a[c],
                            b[c],
                            truth
                                .and_then(|t| t.get(c).copied())
                                .map(|v| format!("; true share {v:.1}%"))
                                .unwrap_or_default()
                        ),
                    ));
                }
            }
        }
        moves.sort_by(|x, y| y.0.total_cmp(&x.0));
        if moves.is_empty() {
            let m = tail
                .iter()
                .filter_map(|m| m.get("predictions.val.max_shift"))
                .fold(0.0, f64::max);
            drift.evidence.push(format!(
                "largest move of a val predicted share {m:.1} points <= {}",
                t.drift
            ));
        } else if !healthy {
            drift.evidence.push(format!(
                "{} share moves above {} points, but the gradient norms are not healthy (see exploding gradients)",
                moves.len(),
                t.drift
            ));
        } else {
            drift.verdict = Verdict::Holds;
            drift.evidence.push(format!(
                "{} epoch-to-epoch moves above {} points; the largest:",
                moves.len(),
                t.drift
            ));
            drift
                .evidence
                .extend(moves.iter().take(5).map(|m| m.1.clone()));
            drift.evidence.push(format!(
                "norms healthy: gradient p99 at most {} <= explode {explode}",
                fmt_fig(max_p99.1)
            ));
            match (cfg.shuffle, cfg.sort_by_length) {
                (Some(false), Some(true)) => drift.evidence.push(
                    "the run trained unshuffled in a fixed length-sorted order (data.shuffle = false, data.sort_by_length = true): every epoch ends on the same kind of batch".into(),
                ),
                (Some(false), _) => drift.evidence.push(
                    "the run trained unshuffled (data.shuffle = false): every epoch ends on the same batches".into(),
                ),
                _ => {}
            }
            if cfg.shuffle != Some(true) {
                drift
                    .fixes
                    .push("--set data.shuffle=true --set data.sort_by_length=false (reshuffle every epoch)".into());
            }
            drift.fixes.push(format!(
                "{} (evaluate an exponential moving average of the weights)",
                cfg.ema()
            ));
            drift.fixes.extend(cfg.lower_lr(3.0));
        }
    }

    // 5. Spectral radius.
    let last = history.last().expect("non-empty");
    let radii: Vec<(String, f64)> = last
        .iter()
        .filter(|(k, _)| k.starts_with("spectral.") && k.ends_with(".radius"))
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let mut spectral = Finding {
        cause: Cause::SpectralRadius,
        verdict: Verdict::Clear,
        rule: format!(
            "in the final epoch a recurrent gate block has spectral radius above {}",
            t.radius
        ),
        evidence: Vec::new(),
        fixes: Vec::new(),
    };
    if radii.is_empty() {
        spectral.verdict = Verdict::Unknown(
            "no `spectral.*.radius`: add `{type = \"spectral\"}` to the callbacks (recurrent models only)".into(),
        );
    } else {
        let above: Vec<&(String, f64)> = radii.iter().filter(|r| r.1 > t.radius).collect();
        let top = radii
            .iter()
            .fold(("".to_string(), f64::NEG_INFINITY), |a, b| {
                if b.1 > a.1 {
                    b.clone()
                } else {
                    a
                }
            });
        if above.is_empty() {
            spectral.evidence.push(format!(
                "largest radius {:.3} ({}) <= {}",
                top.1,
                block_name(&top.0),
                t.radius
            ));
        } else {
            spectral.verdict = Verdict::Holds;
            for (key, v) in above.iter().take(8) {
                let first = history.iter().find_map(|m| m.get(key));
                spectral.evidence.push(format!(
                    "{}: radius {v:.3}{}",
                    block_name(key),
                    first
                        .map(|f| format!(" (epoch 1: {f:.3})"))
                        .unwrap_or_default()
                ));
            }
            if healthy {
                spectral.evidence.push(
                    "the gradient norms are healthy: a risk for long sequences rather than the cause of the swings".into(),
                );
            }
            spectral.fixes.push(format!(
                "{} (bound the largest singular value of each W_hh gate block)",
                cfg.with_transform(Insert::Back, "{type = \"max_singular_value\", bound = 1.0}")
            ));
        }
    }

    // 6. Gradient noise.
    let mut noise = Finding {
        cause: Cause::GradientNoise,
        verdict: Verdict::Clear,
        rule: format!(
            "over the last {k} epochs val or test accuracy falls by more than {} points from one epoch to the next (rises are learning) while the gradient norms are healthy",
            t.swing
        ),
        evidence: Vec::new(),
        fixes: Vec::new(),
    };
    let stab: Vec<_> = ["val_acc", "test_acc"]
        .iter()
        .filter_map(|m| series_stability(history, m, k))
        .collect();
    if stab.is_empty() || history.len() < 2 {
        noise.verdict = Verdict::Unknown("fewer than 2 epochs with val or test accuracy".into());
    } else {
        for s in &stab {
            noise.evidence.push(format!(
                "{}: largest swing {:.2} points (into epoch {}), std {:.2} over the last {} epochs; best {:.2} at epoch {}, final {:.2}",
                s.metric, s.max_swing, s.max_swing_epoch, s.std, s.epochs, s.best, s.best_epoch, s.last
            ));
        }
        let mut falls: Vec<String> = Vec::new();
        for key in ["val_acc", "test_acc"] {
            let pts = series(tail, key);
            let pts: Vec<(usize, f64)> = series(history, key)
                .into_iter()
                .skip_while(|p| pts.first().is_some_and(|f| p.0 + 1 < f.0))
                .collect();
            for w in pts.windows(2) {
                if w[0].1 - w[1].1 > t.swing {
                    falls.push(format!(
                        "{key} falls {:.2} -> {:.2} into epoch {}",
                        w[0].1, w[1].1, w[1].0
                    ));
                }
            }
        }
        let swinging = !falls.is_empty();
        noise.evidence.extend(falls.into_iter().take(6));
        if swinging && healthy {
            noise.verdict = Verdict::Holds;
            noise.evidence.push(format!(
                "norms healthy: gradient p99 at most {} <= explode {explode}",
                fmt_fig(max_p99.1)
            ));
            if let Some(b) = cfg.batch_size {
                noise.fixes.push(format!(
                    "--set data.batch_size={} (less gradient noise per step)",
                    b * 2
                ));
            }
            noise.fixes.push(format!(
                "{} (evaluate an exponential moving average of the weights)",
                cfg.ema()
            ));
            noise.fixes.extend(cfg.lower_lr(3.0));
        } else if swinging {
            noise
                .evidence
                .push("swings above the threshold, but the gradient norms are not healthy".into());
        }
    }

    // 7. Overfitting.
    let mut overfit = Finding {
        cause: Cause::Overfitting,
        verdict: Verdict::Clear,
        rule: format!(
            "over the last {k} epochs (3 or more) train loss falls (least-squares slope < 0) while val loss rises (slope > 0)"
        ),
        evidence: Vec::new(),
        fixes: Vec::new(),
    };
    let tl = series(tail, "train_loss");
    let vl = series(tail, "val_loss");
    if tl.len() < 3 || vl.len() < 3 {
        overfit.verdict = Verdict::Unknown(format!(
            "needs 3 epochs with train and val loss in the window, has {}",
            tl.len().min(vl.len())
        ));
    } else {
        let (st, sv) = (slope(&tl), slope(&vl));
        let best_val = vl
            .iter()
            .fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { *b } else { a });
        overfit.evidence.push(format!(
            "train loss {:.4} -> {:.4} (slope {st:+.4}/epoch), val loss {:.4} -> {:.4} (slope {sv:+.4}/epoch, lowest {:.4} at epoch {})",
            tl[0].1,
            tl[tl.len() - 1].1,
            vl[0].1,
            vl[vl.len() - 1].1,
            best_val.1,
            best_val.0
        ));
        if st < 0.0 && sv > 0.0 {
            overfit.verdict = Verdict::Holds;
            overfit.fixes.push(
                "pipeline: add `[[callbacks]] type = \"early_stopping\" monitor = \"val_loss\" mode = \"min\" patience = 3` (and keep checkpoints/best.safetensors)".into(),
            );
            overfit.fixes.push("--set model.dropout=0.5".into());
            overfit.fixes.push(cfg.with_transform(
                Insert::BeforeOptimizer,
                "{type = \"weight_decay\", value = 1e-4}",
            ));
        }
    }

    Diagnosis {
        run: run.to_path_buf(),
        epochs: history.len(),
        findings: vec![
            exploding, lr_high, collapse, drift, noise, overfit, spectral,
        ],
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

/// Predicted shares of the final val confusion matrix in `confusion.json`.
fn confusion_shares(run: &Path) -> Option<Vec<f64>> {
    let text = std::fs::read_to_string(run.join("confusion.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let counts: Vec<Vec<u64>> = serde_json::from_value(v["val"]["counts"].clone()).ok()?;
    Some(rnnlab_core::Confusion { counts }.predicted_shares())
}

fn spike_detail(run: &Path) -> Option<String> {
    let text = std::fs::read_to_string(run.join("stability.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let spikes = v["spikes"].as_array()?;
    let worst = spikes.iter().max_by(|a, b| {
        let r = |s: &serde_json::Value| {
            s["loss"].as_f64().unwrap_or(f64::INFINITY) / s["median"].as_f64().unwrap_or(1.0)
        };
        r(a).total_cmp(&r(b))
    })?;
    Some(format!(
        "worst spike: loss {} at step {} (epoch {}) against a median of {:.4} over the previous {} batches",
        worst["loss"]
            .as_f64()
            .map(|x| format!("{x:.4}"))
            .unwrap_or_else(|| "non-finite".into()),
        worst["step"],
        worst["epoch"],
        worst["median"].as_f64().unwrap_or(f64::NAN),
        v["spike_window"]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(e: usize, pairs: &[(&str, f64)]) -> EpochMetrics {
        let mut m = EpochMetrics::new();
        m.set("epoch", e as f64);
        for (k, v) in pairs {
            m.set(*k, *v);
        }
        m
    }

    fn cfg() -> RunConfig {
        let t: toml::Table = toml::from_str(
            "[data]\nshuffle = false\nsort_by_length = true\nbatch_size = 32\n[optim]\ntransforms = [{type = \"clip_global_norm\", max_norm = 5.0}, {type = \"adam\", lr = 0.003}]\n",
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.resolved.toml"),
            toml::to_string(&t).unwrap(),
        )
        .unwrap();
        RunConfig::read(dir.path())
    }

    #[test]
    fn thresholds_from_sets_and_unknown_keys() {
        let t = Thresholds::load(None, &["explode=20".into(), "diagnose.window=5".into()]).unwrap();
        assert_eq!(t.explode, Some(20.0));
        assert_eq!(t.window, 5);
        let e = Thresholds::load(None, &["explod=20".into()]).unwrap_err();
        assert!(e.to_string().contains("did you mean `explode`?"), "{e}");
    }

    #[test]
    fn known_histories_fire_the_right_rules() {
        // Healthy norms, shares that jump by 20 points, accuracy that swings by 6.
        let h: Vec<EpochMetrics> = (1..=4)
            .map(|e| {
                let up = e % 2 == 0;
                epoch(
                    e,
                    &[
                        ("train_loss", 0.5 / e as f64),
                        ("val_loss", 0.4),
                        ("val_acc", if up { 80.0 } else { 74.0 }),
                        ("grad_norm.global.p99", 1.5),
                        ("grad_norm.frac_exploding", 0.0),
                        ("predictions.val.share.0", if up { 60.0 } else { 40.0 }),
                        ("predictions.val.share.1", if up { 40.0 } else { 60.0 }),
                        ("predictions.val.true_share.0", 50.0),
                        ("predictions.val.true_share.1", 50.0),
                        ("predictions.val.max_shift", 20.0),
                    ],
                )
            })
            .collect();
        let d = diagnose_history(Path::new("run"), &h, &cfg(), &Thresholds::default());
        assert!(!d.holds(Cause::ExplodingGradients));
        assert!(d.holds(Cause::OrderDrift), "{}", d.to_markdown());
        assert!(d.holds(Cause::GradientNoise));
        assert!(!d.holds(Cause::Collapse));
        let fixes = d.fixes();
        assert!(fixes[0].starts_with("--set data.shuffle=true"), "{fixes:?}");
        assert!(fixes[1].contains("type = \"ema\""), "{fixes:?}");
        assert!(!fixes[0].contains("clip"));

        // The same run with one epoch's p99 at 40: exploding, and not drift.
        let mut h2 = h.clone();
        h2[1].set("grad_norm.global.p99", 40.0);
        let d2 = diagnose_history(Path::new("run"), &h2, &cfg(), &Thresholds::default());
        assert!(d2.holds(Cause::ExplodingGradients));
        assert!(!d2.holds(Cause::OrderDrift));
        assert!(d2
            .finding(Cause::ExplodingGradients)
            .evidence
            .iter()
            .any(|e| e.contains("p99 40.00 > explode 10")));
        assert_eq!(
            d2.fixes()[0],
            "--set optim.transforms.0.max_norm=5.0 (clip the global norm at the warn level 5)"
        );
    }

    const MONITORS: &str = "callbacks=[{type=\"grad_norm\"}, {type=\"spectral\"}, {type=\"predictions\"}, {type=\"stability\"}]";

    fn train_demo(out: &Path, sets: &[&str]) -> Vec<EpochMetrics> {
        let mut all = vec![MONITORS.to_string(), "data.size=1500".to_string()];
        all.extend(sets.iter().map(|s| s.to_string()));
        let opts = crate::TrainOptions {
            pipeline: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/demo.toml")),
            sets: all,
            out: Some(out.to_path_buf()),
            threads: Some(2),
            progress: false,
            ..Default::default()
        };
        crate::train(&crate::registry(), &opts).unwrap().history
    }

    #[test]
    fn a_planted_explosion_is_named_with_its_numbers_and_a_healthy_run_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("relu");
        // A ReLU RNN with Adam at lr 0.1 and no clipping (verified to explode on the demo).
        let h = train_demo(
            &bad,
            &[
                "train.epochs=3",
                "model.cell={type=\"rnn\", nonlinearity=\"relu\", hidden=64}",
                "optim.transforms=[{type=\"adam\", lr=0.1}]",
            ],
        );
        let p99 = h
            .iter()
            .filter_map(|m| m.get("grad_norm.global.p99"))
            .fold(0.0, f64::max);
        assert!(p99 > 10.0, "the planted run's gradient p99 is only {p99}");
        let d = diagnose(&bad, &Thresholds::default()).unwrap();
        let md = d.to_markdown();
        assert!(d.holds(Cause::ExplodingGradients), "{md}");
        let ev = d.finding(Cause::ExplodingGradients).evidence.join("\n");
        assert!(ev.contains("> explode 10"), "{ev}");
        assert!(
            ev.contains(&format!("largest p99 {}", fmt_fig(p99))),
            "{ev}"
        );
        assert!(d.fixes()[0].contains("clip_global_norm"), "{:?}", d.fixes());

        let good = dir.path().join("lstm");
        train_demo(&good, &["train.epochs=3"]);
        let d = diagnose(&good, &Thresholds::default()).unwrap();
        assert!(!d.holds(Cause::ExplodingGradients), "{}", d.to_markdown());
        assert!(d.finding(Cause::ExplodingGradients).evidence[0].starts_with("norms healthy"));
    }

    #[test]
    fn length_sorted_unshuffled_training_is_order_drift_not_explosion() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("sorted");
        // The demo LSTM solves the corpus in 2 epochs and then predicts the true shares every
        // epoch, sorted or not; a tanh RNN learns slowly enough for the order to show.
        train_demo(
            &run,
            &[
                "train.epochs=8",
                "model.cell={type=\"rnn\", hidden=64}",
                "data.shuffle=false",
                "data.sort_by_length=true",
            ],
        );
        let d = diagnose(&run, &Thresholds::default()).unwrap();
        let md = d.to_markdown();
        assert!(d.holds(Cause::OrderDrift), "{md}");
        assert!(!d.holds(Cause::ExplodingGradients), "{md}");
        let ev = d.finding(Cause::OrderDrift).evidence.join("\n");
        assert!(ev.contains("share") && ev.contains("true share"), "{ev}");
        let fixes = d.fixes();
        let shuffle = fixes
            .iter()
            .position(|f| f.starts_with("--set data.shuffle=true"))
            .unwrap();
        let ema = fixes
            .iter()
            .position(|f| f.contains("type = \"ema\""))
            .unwrap();
        assert!(shuffle < ema, "{fixes:?}");
        assert!(!fixes[0].contains("clip"), "{fixes:?}");
    }
}
