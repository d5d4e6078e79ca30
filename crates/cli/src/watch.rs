//! `rnnlab watch RUN`: follows a run folder that is being written (or a finished one) in the
//! terminal: accuracy and loss curves, gradient-norm percentiles against the warn / explode bands,
//! the learning rate, predicted-class shares, epoch progress and ETA. Files are re-read when their
//! size or modification time changed; a partly written last line is left for the next read.
//! Without a terminal (or with `--once`) it prints the same figures as plain text.
//!
//! [`RunFolder`] reads the folder into [`RunData`], a struct of series with no drawing in it;
//! [`draw`] and [`RunData::snapshot`] present that data.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, Gauge, GraphType, LegendPosition, Paragraph};
use ratatui::Frame;
use rnnlab_callbacks::grad_norm::band_shares;
use rnnlab_core::{parse_metrics, quantile, EpochMetrics};

/// Points of one curve, `(x, y)` with x in epochs: epoch `e` ends at `x = e`.
pub type Points = Vec<(f64, f64)>;

/// The gradient-norm bands of the `grad_norm` monitor's defaults, used when the run logs none.
const DEFAULT_WARN: f64 = 5.0;
const DEFAULT_EXPLODE: f64 = 10.0;

/// One line of the `jsonl_logger` file (`steps.jsonl`); other fields are ignored.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct StepRecord {
    /// The epoch the step belongs to (from 1).
    pub epoch: usize,
    /// The global step counter.
    pub step: usize,
    /// The batch loss (null when not finite).
    pub loss: Option<f64>,
    /// The global L2 norm of the raw gradients (null when not finite).
    pub grad_norm: Option<f64>,
    /// The learning rate of the step.
    pub lr: Option<f64>,
}

/// What the files of a run folder held when they were last read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunFiles {
    /// Whether the folder exists (a run creates it once its data are read).
    pub exists: bool,
    /// The complete lines of `metrics.jsonl`.
    pub history: Vec<EpochMetrics>,
    /// The complete lines of the `jsonl_logger` file (empty without one).
    pub steps: Vec<StepRecord>,
    /// `train.epochs` of `config.resolved.toml`.
    pub epochs_total: Option<usize>,
    /// The class names of `labels.json`, by class index.
    pub labels: Vec<String>,
    /// When `metrics.jsonl` last changed: the end of the last logged epoch.
    pub metrics_changed: Option<SystemTime>,
    /// When any of the files last changed.
    pub last_update: Option<SystemTime>,
    /// `confusion.json` was written after the last epoch: the run ended.
    pub finished: bool,
}

/// Series of one figure on the train, val and test splits.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Splits {
    /// The training split.
    pub train: Points,
    /// The validation split.
    pub val: Points,
    /// The test split.
    pub test: Points,
}

/// A run folder as series over epochs: what the live view draws and the snapshot prints.
#[derive(Clone, Debug, PartialEq)]
pub struct RunData {
    /// Whether the folder exists yet.
    pub exists: bool,
    /// The epoch numbers logged in `metrics.jsonl`, in order.
    pub epochs: Vec<usize>,
    /// `train.epochs` of the resolved config.
    pub epochs_total: Option<usize>,
    /// `{train,val,test}_acc`, percent.
    pub accuracy: Splits,
    /// `{train,val,test}_loss`.
    pub loss: Splits,
    /// `grad_norm_p50` per epoch.
    pub grad_norm_p50: Points,
    /// `grad_norm_p99` per epoch.
    pub grad_norm_p99: Points,
    /// Each logged step's gradient norm (from `steps.jsonl`; non-finite steps left out), at
    /// `x = epoch - 1 + ` the step's fraction of its epoch.
    pub step_grad_norm: Points,
    /// Gradient norms of the logged steps, in step order (non-finite as infinity).
    pub step_norms: Vec<f64>,
    /// `lr` per epoch.
    pub lr: Points,
    /// The learning rate of each logged step (from `steps.jsonl`).
    pub step_lr: Points,
    /// Predicted share of each class on val (`predictions.val.share.<c>`), percent, with the
    /// class name from `labels.json` (or the index).
    pub shares: Vec<(String, Points)>,
    /// The warning band of the gradient norm (`grad_norm.warn`, default 5).
    pub warn: f64,
    /// The exploding band (`grad_norm.explode`, default 10).
    pub explode: f64,
    /// Seconds of each epoch: training (`epoch_seconds`) plus evaluation (`eval_seconds`).
    pub epoch_seconds: Vec<f64>,
    /// Training steps in the last epoch of `steps.jsonl`.
    pub steps_per_epoch: Option<usize>,
    /// When the last epoch was logged.
    pub last_epoch_at: Option<SystemTime>,
    /// When any file of the run last changed.
    pub last_update: Option<SystemTime>,
    /// The run ended (its final files are written).
    pub finished: bool,
}

/// How far a run is, estimated at some moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// The last logged epoch.
    pub done: usize,
    /// `train.epochs`.
    pub total: Option<usize>,
    /// The run ended.
    pub finished: bool,
    /// Mean seconds per epoch (training and evaluation) over the last five epochs.
    pub seconds_per_epoch: Option<f64>,
    /// Seconds since the last epoch was logged.
    pub since_last: Option<f64>,
    /// Estimated fraction of the running epoch done (time since the last epoch / seconds per
    /// epoch, at most 0.99).
    pub current: Option<f64>,
    /// Estimated step of the running epoch, of the steps per epoch (needs `steps.jsonl`).
    pub current_step: Option<(usize, usize)>,
    /// Estimated seconds until the last epoch ends (0 once finished).
    pub eta: Option<f64>,
}

fn series(history: &[EpochMetrics], key: &str) -> Points {
    history
        .iter()
        .filter_map(|m| Some((m.get("epoch")?, m.get(key)?)))
        .filter(|(_, v)| v.is_finite())
        .collect()
}

fn splits(history: &[EpochMetrics], figure: &str) -> Splits {
    Splits {
        train: series(history, &format!("train_{figure}")),
        val: series(history, &format!("val_{figure}")),
        test: series(history, &format!("test_{figure}")),
    }
}

/// No files yet (the bands at their defaults).
impl Default for RunData {
    fn default() -> Self {
        RunData::from_files(&RunFiles::default())
    }
}

impl RunData {
    /// The series of what `files` held.
    pub fn from_files(files: &RunFiles) -> RunData {
        let h = &files.history;
        let last = |key: &str| h.iter().rev().find_map(|m| m.get(key));
        let mut classes: Vec<usize> = h
            .iter()
            .flat_map(|m| m.iter())
            .filter_map(|(k, _)| k.strip_prefix("predictions.val.share.")?.parse().ok())
            .collect();
        classes.sort_unstable();
        classes.dedup();
        let shares = classes
            .iter()
            .map(|&c| {
                let name = files
                    .labels
                    .get(c)
                    .cloned()
                    .unwrap_or_else(|| c.to_string());
                (name, series(h, &format!("predictions.val.share.{c}")))
            })
            .collect();

        // Steps: x is the epoch's start plus the step's share of the epoch's steps, measured
        // by the step counter (so a logger with `every > 1` places its steps right).
        let mut step_grad_norm = Vec::new();
        let mut step_lr = Vec::new();
        let mut steps_per_epoch = None;
        let mut prev_end = 0;
        let steps = &files.steps;
        for epoch_steps in steps.chunk_by(|a, b| a.epoch == b.epoch) {
            let end = epoch_steps[epoch_steps.len() - 1].step;
            let n = end.saturating_sub(prev_end).max(1);
            for s in epoch_steps {
                let x = s.epoch as f64 - 1.0 + s.step.saturating_sub(prev_end) as f64 / n as f64;
                if let Some(g) = s.grad_norm {
                    step_grad_norm.push((x, g));
                }
                if let Some(lr) = s.lr {
                    step_lr.push((x, lr));
                }
            }
            steps_per_epoch = Some(n);
            prev_end = end;
        }

        RunData {
            exists: files.exists,
            epochs: h
                .iter()
                .filter_map(|m| m.get("epoch"))
                .map(|e| e as usize)
                .collect(),
            epochs_total: files.epochs_total,
            accuracy: splits(h, "acc"),
            loss: splits(h, "loss"),
            grad_norm_p50: series(h, "grad_norm_p50"),
            grad_norm_p99: series(h, "grad_norm_p99"),
            step_grad_norm,
            step_norms: steps
                .iter()
                .map(|s| s.grad_norm.unwrap_or(f64::INFINITY))
                .collect(),
            lr: series(h, "lr"),
            step_lr,
            shares,
            warn: last("grad_norm.warn").unwrap_or(DEFAULT_WARN),
            explode: last("grad_norm.explode").unwrap_or(DEFAULT_EXPLODE),
            epoch_seconds: h
                .iter()
                .filter_map(|m| {
                    Some(m.get("epoch_seconds")? + m.get("eval_seconds").unwrap_or(0.0))
                })
                .collect(),
            steps_per_epoch,
            last_epoch_at: files.metrics_changed,
            last_update: files.last_update,
            finished: files.finished,
        }
    }

    /// The last logged epoch (0 before the first).
    pub fn done(&self) -> usize {
        self.epochs.last().copied().unwrap_or(0)
    }

    /// Progress and ETA at `now`.
    pub fn progress(&self, now: SystemTime) -> Progress {
        let recent = &self.epoch_seconds[self.epoch_seconds.len().saturating_sub(5)..];
        let seconds_per_epoch = (!recent.is_empty())
            .then(|| recent.iter().sum::<f64>() / recent.len() as f64)
            .filter(|s| *s > 0.0);
        let since_last = self
            .last_epoch_at
            .filter(|_| self.done() > 0)
            .map(|t| now.duration_since(t).unwrap_or_default().as_secs_f64());
        let done = self.done();
        let running = !self.finished && self.epochs_total.is_none_or(|t| done < t);
        let current = match (running, seconds_per_epoch, since_last) {
            (true, Some(spe), Some(since)) => Some((since / spe).min(0.99)),
            _ => None,
        };
        let current_step = match (current, self.steps_per_epoch) {
            (Some(f), Some(n)) => Some(((f * n as f64) as usize, n)),
            _ => None,
        };
        let eta = if self.finished {
            Some(0.0)
        } else {
            match (self.epochs_total, seconds_per_epoch) {
                (Some(total), Some(spe)) => {
                    let left = total.saturating_sub(done) as f64 * spe - since_last.unwrap_or(0.0);
                    Some(left.max(0.0))
                }
                _ => None,
            }
        };
        Progress {
            done,
            total: self.epochs_total,
            finished: self.finished,
            seconds_per_epoch,
            since_last,
            current,
            current_step,
            eta,
        }
    }

    /// Share of the logged steps in the warning and exploding bands, percent.
    fn step_bands(&self) -> (f64, f64) {
        let b = band_shares(&self.step_norms, self.warn, self.explode);
        (b.warning, b.exploding)
    }

    /// The figures as plain text: status, progress, one row per epoch, the per-step norms.
    pub fn snapshot(&self, dir: &Path, now: SystemTime) -> String {
        let mut out = format!("rnnlab watch {}\n", dir.display());
        out += &format!("progress: {}\n", self.progress(now).line());
        out += &format!("last update: {}\n", updated(self.last_update, now));
        out += &format!(
            "gradient-norm bands: warn {}, explode {}\n\n",
            self.warn, self.explode
        );
        if self.epochs.is_empty() {
            out += "no epoch logged yet\n";
            return out;
        }
        let mut header: Vec<String> = [
            "epoch",
            "train_acc",
            "val_acc",
            "test_acc",
            "train_loss",
            "val_loss",
            "test_loss",
            "grad_norm_p50",
            "grad_norm_p99",
            "lr",
        ]
        .map(String::from)
        .to_vec();
        header.extend(self.shares.iter().map(|(name, _)| {
            let name: String = name
                .chars()
                .map(|c| if c.is_whitespace() { '_' } else { c })
                .collect();
            format!("share.{name}")
        }));
        header.push("seconds".into());
        let mut rows = vec![header];
        let at = |p: &Points, e: usize| p.iter().find(|(x, _)| *x == e as f64).map(|(_, v)| *v);
        let fmt =
            |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map(f).unwrap_or_else(|| "-".into());
        let acc = |v: f64| format!("{v:.2}");
        let loss = |v: f64| format!("{v:.4}");
        let lr = |v: f64| format!("{v:.3e}");
        for (i, &e) in self.epochs.iter().enumerate() {
            let mut row = vec![
                e.to_string(),
                fmt(at(&self.accuracy.train, e), &acc),
                fmt(at(&self.accuracy.val, e), &acc),
                fmt(at(&self.accuracy.test, e), &acc),
                fmt(at(&self.loss.train, e), &loss),
                fmt(at(&self.loss.val, e), &loss),
                fmt(at(&self.loss.test, e), &loss),
                fmt(at(&self.grad_norm_p50, e), &loss),
                fmt(at(&self.grad_norm_p99, e), &loss),
                fmt(at(&self.lr, e), &lr),
            ];
            row.extend(self.shares.iter().map(|(_, p)| fmt(at(p, e), &acc)));
            row.push(fmt(self.epoch_seconds.get(i).copied(), &acc));
            rows.push(row);
        }
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
            .collect();
        for r in &rows {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(v, w)| format!("{v:>w$}"))
                .collect();
            out += cells.join("  ").trim_end();
            out.push('\n');
        }
        if !self.step_norms.is_empty() {
            let (warning, exploding) = self.step_bands();
            out += &format!(
                "\nper-step gradient norm ({} steps): p50 {:.4}, p99 {:.4}, max {:.4}; {:.2} % warning ({} to {}), {:.2} % exploding (above {})\n",
                self.step_norms.len(),
                quantile(&self.step_norms, 0.5),
                quantile(&self.step_norms, 0.99),
                self.step_norms.iter().copied().fold(f64::NAN, f64::max),
                warning,
                self.warn,
                self.explode,
                exploding,
                self.explode,
            );
        }
        out
    }
}

impl Progress {
    /// One line: `3/6 epochs done · epoch 4 ≈ 40 % (step ≈ 75/188) · 1.20 s/epoch · ETA 0:04`.
    pub fn line(&self) -> String {
        let total = self
            .total
            .map(|t| t.to_string())
            .unwrap_or_else(|| "?".into());
        let mut parts = vec![format!("{}/{total} epochs done", self.done)];
        if self.finished {
            let early = self.total.is_some_and(|t| self.done < t);
            parts.push(
                if early {
                    "finished (stopped early)"
                } else {
                    "finished"
                }
                .into(),
            );
        } else if let Some(f) = self.current {
            let step = self
                .current_step
                .map(|(s, n)| format!(" (step ≈ {s}/{n})"))
                .unwrap_or_default();
            parts.push(format!(
                "epoch {} ≈ {:.0} %{step}",
                self.done + 1,
                100.0 * f
            ));
        } else if self.total.is_none_or(|t| self.done < t) {
            parts.push(format!("epoch {} running", self.done + 1));
        }
        if let Some(s) = self.seconds_per_epoch {
            parts.push(format!("{s:.2} s/epoch"));
        }
        if let Some(eta) = self.eta.filter(|_| !self.finished) {
            parts.push(format!("ETA {}", clock_span(eta)));
        }
        if let (Some(since), Some(spe)) = (self.since_last, self.seconds_per_epoch) {
            if !self.finished && since > 3.0 * spe + 10.0 {
                parts.push(format!("no new epoch for {} (stopped?)", clock_span(since)));
            }
        }
        parts.join(" · ")
    }
}

/// `h:mm:ss`, or `m:ss` under an hour.
fn clock_span(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// `17:03:12 UTC (4 s ago)`, or `-`.
fn updated(t: Option<SystemTime>, now: SystemTime) -> String {
    let Some(t) = t else {
        return "-".into();
    };
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() % 86_400;
    let ago = now.duration_since(t).unwrap_or_default().as_secs();
    let ago = match ago {
        a if a < 120 => format!("{a} s"),
        a if a < 7200 => format!("{} min", a / 60),
        a => format!("{} h", a / 3600),
    };
    format!(
        "{:02}:{:02}:{:02} UTC ({ago} ago)",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// Size and modification time of a file, `None` when it is missing.
type Stamp = Option<(u64, SystemTime)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

/// The text of `path` up to its last newline (a partly written last line is left out); `None`
/// when the file is missing.
fn complete_lines(path: &Path) -> Result<Option<String>> {
    let mut bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    bytes.truncate(bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1));
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|e| anyhow!("{}: not UTF-8: {e}", path.display()))
}

fn parse_steps(text: &str, path: &Path) -> Result<Vec<StepRecord>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| anyhow!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// `train.epochs` and the `jsonl_logger`'s file name from `config.resolved.toml`.
fn parse_config(text: &str, path: &Path) -> Result<(Option<usize>, Option<String>)> {
    let t: toml::Table =
        toml::from_str(text).with_context(|| format!("parsing {}", path.display()))?;
    let epochs = t
        .get("train")
        .and_then(|t| t.get("epochs"))
        .and_then(|e| e.as_integer())
        .and_then(|e| usize::try_from(e).ok());
    let steps_file = t
        .get("callbacks")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
        .find(|c| c.get("type").and_then(|t| t.as_str()) == Some("jsonl_logger"))
        .map(|c| {
            c.get("file")
                .and_then(|f| f.as_str())
                .unwrap_or("steps.jsonl")
                .to_string()
        });
    Ok((epochs, steps_file))
}

/// The files a run folder is read from, by their index in [`RunFolder`]'s stamps (the steps
/// file is the `jsonl_logger`'s `file` when the config names one).
const FILES: [&str; 5] = [
    "config.resolved.toml",
    "labels.json",
    "metrics.jsonl",
    "steps.jsonl",
    "confusion.json",
];
const CONFIG: usize = 0;
const LABELS: usize = 1;
const METRICS: usize = 2;
const STEPS: usize = 3;
const CONFUSION: usize = 4;

/// A run folder being followed: re-reads a file only when its size or modification time
/// changed.
#[derive(Debug)]
pub struct RunFolder {
    dir: PathBuf,
    /// The stamps of [`FILES`] when last read.
    stamps: [Stamp; FILES.len()],
    steps_file: Option<String>,
    files: RunFiles,
    data: RunData,
}

impl RunFolder {
    /// Follows `dir` (which need not exist yet); call [`RunFolder::refresh`] to read it.
    pub fn new(dir: &Path) -> Self {
        let files = RunFiles::default();
        RunFolder {
            dir: dir.to_path_buf(),
            stamps: [None; FILES.len()],
            steps_file: None,
            data: RunData::from_files(&files),
            files,
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The series as last read.
    pub fn data(&self) -> &RunData {
        &self.data
    }

    /// Re-reads the files whose size or modification time changed; true when any did. A file
    /// that fails to parse keeps its last good contents and is read again next time; the error
    /// names the file and line.
    pub fn refresh(&mut self) -> Result<bool> {
        let exists = self.dir.is_dir();
        let mut changed = exists != self.files.exists;
        self.files.exists = exists;
        let mut errors = Vec::new();
        for (k, file) in FILES.iter().enumerate() {
            let name = match (k, &self.steps_file) {
                (STEPS, Some(steps)) => steps.as_str(),
                _ => file,
            };
            let path = self.dir.join(name);
            let now = stamp(&path);
            if now == self.stamps[k] {
                continue;
            }
            match self.read(k, &path) {
                Ok(()) => {
                    self.stamps[k] = now;
                    changed = true;
                }
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        if changed {
            let time = |k: usize| self.stamps[k].map(|(_, t)| t);
            self.files.metrics_changed = time(METRICS);
            self.files.last_update = (0..FILES.len()).filter_map(time).max();
            self.files.finished = match (time(CONFUSION), time(METRICS)) {
                (Some(confusion), Some(metrics)) => confusion >= metrics,
                _ => false,
            };
            self.data = RunData::from_files(&self.files);
        }
        match errors.is_empty() {
            true => Ok(changed),
            false => Err(anyhow!(errors.join("; "))),
        }
    }

    fn read(&mut self, k: usize, path: &Path) -> Result<()> {
        match k {
            CONFIG => {
                // Written whole (renamed into place), as is labels.json.
                let (epochs, steps_file) = match std::fs::read_to_string(path) {
                    Ok(text) => parse_config(&text, path)?,
                    Err(_) => (None, None),
                };
                self.files.epochs_total = epochs;
                if steps_file != self.steps_file {
                    self.steps_file = steps_file;
                    self.stamps[STEPS] = None;
                    self.files.steps.clear();
                }
            }
            LABELS => {
                self.files.labels = match std::fs::read_to_string(path) {
                    Ok(text) => serde_json::from_str(&text)
                        .with_context(|| format!("parsing {}", path.display()))?,
                    Err(_) => Vec::new(),
                }
            }
            METRICS => {
                self.files.history = match complete_lines(path)? {
                    Some(t) => parse_metrics(&t, path)?,
                    None => Vec::new(),
                }
            }
            STEPS if self.steps_file.is_some() => {
                self.files.steps = match complete_lines(path)? {
                    Some(t) => parse_steps(&t, path)?,
                    None => Vec::new(),
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// `rnnlab watch RUN`: the live view on a terminal (re-reading every `interval`), else (or
/// with `once`) a plain-text snapshot.
pub fn run(dir: &Path, interval: Duration, once: bool) -> Result<()> {
    let mut folder = RunFolder::new(dir);
    if once || !std::io::stdout().is_terminal() {
        if !dir.is_dir() {
            bail!("{}: no such run folder", dir.display());
        }
        folder.refresh()?;
        if folder.stamps[CONFIG].is_none() && folder.stamps[METRICS].is_none() {
            bail!(
                "{}: not a run folder (no config.resolved.toml or metrics.jsonl)",
                dir.display()
            );
        }
        print!("{}", folder.data().snapshot(dir, SystemTime::now()));
        return Ok(());
    }
    let mut terminal = ratatui::try_init().context("starting the terminal view")?;
    let result = live(
        &mut terminal,
        &mut folder,
        interval.max(Duration::from_millis(50)),
    );
    ratatui::try_restore().context("restoring the terminal")?;
    result
}

fn quits(k: &KeyEvent) -> bool {
    k.kind == KeyEventKind::Press
        && (matches!(k.code, KeyCode::Char('q') | KeyCode::Esc)
            || (k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL)))
}

fn live(
    terminal: &mut ratatui::DefaultTerminal,
    folder: &mut RunFolder,
    interval: Duration,
) -> Result<()> {
    let mut error = None;
    let mut next_read = Instant::now();
    loop {
        if Instant::now() >= next_read {
            error = folder.refresh().err().map(|e| format!("{e:#}"));
            next_read = Instant::now() + interval;
        }
        terminal.draw(|f| {
            draw(
                f,
                folder.dir(),
                folder.data(),
                error.as_deref(),
                SystemTime::now(),
            )
        })?;
        if event::poll(next_read.saturating_duration_since(Instant::now()))? {
            if let Event::Key(k) = event::read()? {
                if quits(&k) {
                    return Ok(());
                }
            }
        }
    }
}

const TRAIN: Color = Color::Blue;
const VAL: Color = Color::Green;
const TEST: Color = Color::Magenta;
const CLASS_COLORS: [Color; 8] = [
    Color::Cyan,
    Color::Yellow,
    Color::Red,
    Color::Green,
    Color::Magenta,
    Color::Blue,
    Color::LightRed,
    Color::White,
];

/// A curve: a line through two or more points, a dot for one.
fn curve<'a>(name: String, points: &'a [(f64, f64)], color: Color) -> Dataset<'a> {
    Dataset::default()
        .name(name)
        .marker(Marker::Braille)
        .graph_type(if points.len() > 1 {
            GraphType::Line
        } else {
            GraphType::Scatter
        })
        .style(Style::default().fg(color))
        .data(points)
}

/// `━ name value` in the curve's colour, for a panel title.
fn key(name: &str, value: Option<String>, color: Color) -> Span<'static> {
    let v = value.map(|v| format!(" {v}")).unwrap_or_default();
    Span::styled(format!(" ━ {name}{v}"), Style::default().fg(color))
}

fn last(p: &[(f64, f64)]) -> Option<f64> {
    p.last().map(|(_, v)| *v)
}

fn panel(title: Vec<Span<'static>>) -> Block<'static> {
    Block::bordered().title(Line::from(title))
}

/// The x axis: epochs 0 to the total.
fn epoch_axis(data: &RunData) -> Axis<'static> {
    let end = data.epochs_total.unwrap_or(0).max(data.done()).max(1) as f64;
    Axis::default()
        .bounds([0.0, end])
        .labels(["0".to_string(), format!("{}", end / 2.0), format!("{end}")])
        .style(Style::default().fg(Color::Gray))
}

fn value_axis(lo: f64, hi: f64, label: impl Fn(f64) -> String) -> Axis<'static> {
    Axis::default()
        .bounds([lo, hi])
        .labels([label(lo), label((lo + hi) / 2.0), label(hi)])
        .style(Style::default().fg(Color::Gray))
}

fn range<'a>(series: impl IntoIterator<Item = &'a Points>) -> Option<(f64, f64)> {
    series
        .into_iter()
        .flatten()
        .map(|(_, v)| *v)
        .filter(|v| v.is_finite())
        .fold(None, |r, v| match r {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// Draws the live view of `data` (the run folder `dir`) at `now`.
pub fn draw(frame: &mut Frame, dir: &Path, data: &RunData, error: Option<&str>, now: SystemTime) {
    let [top, middle, progress, footer] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Fill(1),
        Constraint::Length(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let [acc_area, loss_area] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(top);
    let [norm_area, lr_area, share_area] = Layout::horizontal([
        Constraint::Percentage(45),
        Constraint::Percentage(22),
        Constraint::Percentage(33),
    ])
    .areas(middle);
    draw_splits(
        frame,
        acc_area,
        data,
        &data.accuracy,
        " accuracy % ",
        2,
        true,
    );
    draw_splits(frame, loss_area, data, &data.loss, " loss ", 4, false);
    draw_norms(frame, norm_area, data);
    draw_lr(frame, lr_area, data);
    draw_shares(frame, share_area, data);

    let p = data.progress(now);
    let text = if data.exists {
        p.line()
    } else {
        format!(
            "waiting for {} (a run writes its folder once its data are read)",
            dir.display()
        )
    };
    let ratio = match (p.total, p.finished) {
        (_, true) => 1.0,
        (Some(t), false) if t > 0 => {
            ((p.done as f64 + p.current.unwrap_or(0.0)) / t as f64).min(1.0)
        }
        _ => 0.0,
    };
    frame.render_widget(
        Gauge::default()
            .block(Block::bordered().title(" progress "))
            .gauge_style(Style::default().fg(Color::Cyan))
            .ratio(ratio)
            .label(text),
        progress,
    );

    let mut spans = vec![Span::raw(format!(
        " run {} · last update {} · q quits",
        dir.display(),
        updated(data.last_update, now)
    ))];
    if let Some(e) = error {
        spans.push(Span::styled(
            format!(" · {e}"),
            Style::default().fg(Color::Red),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), footer);
}

fn draw_splits(
    frame: &mut Frame,
    area: Rect,
    data: &RunData,
    s: &Splits,
    title: &str,
    digits: usize,
    percent: bool,
) {
    let (lo, hi) = range([&s.train, &s.val, &s.test]).unwrap_or((0.0, 1.0));
    let (lo, hi) = if percent {
        (
            ((lo / 10.0).floor() * 10.0).max(0.0),
            ((hi / 10.0).ceil() * 10.0).clamp(10.0, 100.0),
        )
    } else {
        (0.0, (hi * 1.05).max(1e-3))
    };
    let value = |p: &Points| last(p).map(|v| format!("{v:.digits$}"));
    let datasets = vec![
        curve("train".into(), &s.train, TRAIN),
        curve("val".into(), &s.val, VAL),
        curve("test".into(), &s.test, TEST),
    ];
    let title = vec![
        Span::raw(title.to_string()),
        key("train", value(&s.train), TRAIN),
        key("val", value(&s.val), VAL),
        key("test", value(&s.test), TEST),
        Span::raw(" "),
    ];
    let label = move |v: f64| {
        if percent {
            format!("{v:.0}")
        } else {
            format!("{v:.2}")
        }
    };
    frame.render_widget(
        Chart::new(datasets)
            .block(panel(title))
            .x_axis(epoch_axis(data))
            .y_axis(value_axis(lo, hi, label))
            .legend_position(None),
        area,
    );
}

/// Gradient norms on a log10 scale, with the warn and explode bands as lines.
fn draw_norms(frame: &mut Frame, area: Rect, data: &RunData) {
    let log = |p: &Points| -> Points {
        p.iter()
            .filter(|(_, v)| *v > 0.0 && v.is_finite())
            .map(|(x, v)| (*x, v.log10()))
            .collect()
    };
    let steps = log(&data.step_grad_norm);
    let p50 = log(&data.grad_norm_p50);
    let p99 = log(&data.grad_norm_p99);
    let (wl, el) = (data.warn.log10(), data.explode.log10());
    let (lo, hi) = range([&steps, &p50, &p99]).unwrap_or((0.0, el));
    // Whole powers of ten, with room above the explode band.
    let (lo, hi) = (lo.min(wl).floor(), hi.max(el + 0.3).ceil());
    let end = data.epochs_total.unwrap_or(0).max(data.done()).max(1) as f64;
    let warn = [(0.0, wl), (end, wl)];
    let explode = [(0.0, el), (end, el)];
    let mut datasets = Vec::new();
    let mut bottom = vec![
        Span::styled(
            format!(" ─ warn {}", data.warn),
            Style::default().fg(Color::Yellow),
        ),
        Span::styled(
            format!(" ─ explode {} ", data.explode),
            Style::default().fg(Color::Red),
        ),
    ];
    if !steps.is_empty() {
        datasets.push(
            Dataset::default()
                .marker(Marker::Braille)
                .graph_type(GraphType::Scatter)
                .style(Style::default().fg(Color::DarkGray))
                .data(&steps),
        );
        bottom.push(Span::styled(
            "· each step ",
            Style::default().fg(Color::DarkGray),
        ));
    }
    datasets.push(curve("warn".into(), &warn, Color::Yellow));
    datasets.push(curve("explode".into(), &explode, Color::Red));
    datasets.push(curve("p50".into(), &p50, Color::Cyan));
    datasets.push(curve("p99".into(), &p99, Color::LightMagenta));
    let title = vec![
        Span::raw(" gradient norm (log)"),
        key(
            "p50",
            last(&data.grad_norm_p50).map(significant),
            Color::Cyan,
        ),
        key(
            "p99",
            last(&data.grad_norm_p99).map(significant),
            Color::LightMagenta,
        ),
        Span::raw(" "),
    ];
    let label = |v: f64| significant(10f64.powf(v));
    frame.render_widget(
        Chart::new(datasets)
            .block(panel(title).title_bottom(Line::from(bottom)))
            .x_axis(epoch_axis(data))
            .y_axis(value_axis(lo, hi, label))
            .legend_position(None),
        area,
    );
}

/// Two significant digits (`0.032`, `3.2`, `316`).
fn significant(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let decimals = (1 - v.abs().log10().floor() as i32).max(0) as usize;
    format!("{v:.decimals$}")
}

fn draw_lr(frame: &mut Frame, area: Rect, data: &RunData) {
    let points = if data.step_lr.is_empty() {
        &data.lr
    } else {
        &data.step_lr
    };
    let hi = range([points]).map_or(1e-3, |(_, hi)| hi * 1.1);
    let mut title = vec![Span::styled(
        " learning rate ",
        Style::default().fg(Color::Yellow),
    )];
    if let Some(v) = last(points) {
        title.push(Span::raw(format!("{v:.2e} ")));
    }
    frame.render_widget(
        Chart::new(vec![curve("lr".into(), points, Color::Yellow)])
            .block(panel(title))
            .x_axis(epoch_axis(data))
            .y_axis(value_axis(0.0, hi, |v| format!("{v:.1e}")))
            .legend_position(None),
        area,
    );
}

fn draw_shares(frame: &mut Frame, area: Rect, data: &RunData) {
    let datasets = data
        .shares
        .iter()
        .enumerate()
        .map(|(i, (name, p))| {
            let v = last(p).map(|v| format!(" {v:.1}")).unwrap_or_default();
            curve(
                format!("{name}{v}"),
                p,
                CLASS_COLORS[i % CLASS_COLORS.len()],
            )
        })
        .collect();
    let title = if data.shares.is_empty() {
        " predicted shares (val %): needs the predictions monitor "
    } else {
        " predicted shares (val %) "
    };
    frame.render_widget(
        Chart::new(datasets)
            .block(panel(vec![Span::raw(title)]))
            .x_axis(epoch_axis(data))
            .y_axis(value_axis(0.0, 100.0, |v| format!("{v:.0}")))
            .legend_position(Some(LegendPosition::TopLeft))
            .hidden_legend_constraints((Constraint::Ratio(1, 1), Constraint::Ratio(1, 1))),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics_line(epoch: usize, val_acc: f64) -> String {
        format!(
            r#"{{"epoch":{epoch},"train_acc":50.0,"val_acc":{val_acc},"test_acc":40.0,"train_loss":0.7,"val_loss":0.6,"test_loss":0.65,"lr":0.001,"grad_norm_p50":0.5,"grad_norm_p99":2.0,"predictions.val.share.0":30.0,"predictions.val.share.1":70.0,"epoch_seconds":2.0,"eval_seconds":1.0}}"#
        )
    }

    fn step_line(epoch: usize, step: usize, norm: f64) -> String {
        format!(
            r#"{{"epoch":{epoch},"step":{step},"loss":0.5,"grad_norm":{norm},"lr":0.001,"skipped":false,"clipped":false,"batch_size":4}}"#
        )
    }

    fn append(path: &Path, text: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    /// The folder appears, epochs are appended with a half-written last line, a complete but
    /// broken line is an error naming file and line that keeps the last good data.
    #[test]
    fn a_folder_written_in_pieces_is_read_up_to_its_last_complete_line() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let mut folder = RunFolder::new(&dir);
        assert!(!folder.refresh().unwrap());
        assert!(!folder.data().exists);

        std::fs::create_dir(&dir).unwrap();
        std::fs::write(
            dir.join("config.resolved.toml"),
            "seed = 1\n[train]\nepochs = 4\n[[callbacks]]\ntype = \"jsonl_logger\"\nfile = \"s.jsonl\"\n",
        )
        .unwrap();
        std::fs::write(dir.join("labels.json"), r#"["neg", "pos"]"#).unwrap();
        let second = metrics_line(2, 80.0);
        let (head, tail) = second.split_at(30);
        append(
            &dir.join(rnnlab_core::METRICS_FILE),
            &format!("{}\n{head}", metrics_line(1, 60.0)),
        );
        let steps: String = (1..=4).map(|s| step_line(1, s, s as f64) + "\n").collect();
        append(
            &dir.join("s.jsonl"),
            &format!("{steps}{}", &step_line(2, 5, 1.0)[..20]),
        );

        assert!(folder.refresh().unwrap());
        let d = folder.data().clone();
        assert!(d.exists && !d.finished);
        assert_eq!(d.epochs, [1]);
        assert_eq!(d.epochs_total, Some(4));
        assert_eq!(d.accuracy.val, [(1.0, 60.0)]);
        assert_eq!(d.accuracy.train, [(1.0, 50.0)]);
        assert_eq!(d.loss.test, [(1.0, 0.65)]);
        assert_eq!(d.grad_norm_p99, [(1.0, 2.0)]);
        assert_eq!(d.lr, [(1.0, 0.001)]);
        assert_eq!(
            d.shares,
            [
                ("neg".to_string(), vec![(1.0, 30.0)]),
                ("pos".to_string(), vec![(1.0, 70.0)])
            ]
        );
        assert_eq!(
            d.step_grad_norm,
            [(0.25, 1.0), (0.5, 2.0), (0.75, 3.0), (1.0, 4.0)]
        );
        assert_eq!(d.steps_per_epoch, Some(4));
        assert_eq!(d.epoch_seconds, [3.0]);
        assert_eq!((d.warn, d.explode), (5.0, 10.0));

        // Nothing changed: nothing is read again.
        assert!(!folder.refresh().unwrap());

        append(&dir.join(rnnlab_core::METRICS_FILE), &format!("{tail}\n"));
        assert!(folder.refresh().unwrap());
        assert_eq!(folder.data().epochs, [1, 2]);
        assert_eq!(folder.data().accuracy.val, [(1.0, 60.0), (2.0, 80.0)]);
        assert_eq!(folder.data().step_grad_norm.len(), 4);

        append(
            &dir.join(rnnlab_core::METRICS_FILE),
            "{\"epoch\": 3, oops}\n",
        );
        let err = folder.refresh().unwrap_err().to_string();
        assert!(err.contains("metrics.jsonl:3"), "{err}");
        assert_eq!(folder.data().epochs, [1, 2]);

        // The final files: confusion.json after the last metrics line.
        std::fs::write(
            dir.join(rnnlab_core::METRICS_FILE),
            format!("{}\n", metrics_line(1, 60.0)),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(dir.join("confusion.json"), "{}").unwrap();
        assert!(folder.refresh().unwrap());
        assert!(folder.data().finished);
    }

    /// A logger writing every second step: steps sit at their share of the epoch by the
    /// step counter; the bands come from the grad_norm monitor's metrics.
    #[test]
    fn sparse_steps_are_placed_by_the_step_counter() {
        let step = |epoch, step, g| StepRecord {
            epoch,
            step,
            loss: Some(0.1),
            grad_norm: g,
            lr: Some(0.01),
        };
        let mut m = EpochMetrics::new();
        m.set("epoch", 1.0);
        m.set("grad_norm.warn", 2.0);
        m.set("grad_norm.explode", 4.0);
        let files = RunFiles {
            exists: true,
            history: vec![m],
            steps: vec![
                step(1, 2, Some(1.0)),
                step(1, 4, None),
                step(2, 6, Some(3.0)),
                step(2, 8, Some(5.0)),
            ],
            ..RunFiles::default()
        };
        let d = RunData::from_files(&files);
        assert_eq!(d.step_grad_norm, [(0.5, 1.0), (1.5, 3.0), (2.0, 5.0)]);
        assert_eq!(
            d.step_lr.iter().map(|p| p.0).collect::<Vec<_>>(),
            [0.5, 1.0, 1.5, 2.0]
        );
        assert_eq!(d.steps_per_epoch, Some(4));
        assert_eq!((d.warn, d.explode), (2.0, 4.0));
        // One step of four warning (3), two exploding (5 and the non-finite one).
        assert_eq!(d.step_bands(), (25.0, 50.0));
    }

    /// Epochs of 2 s training + 1 s evaluation, 2 of 6 done, 1.5 s into the third:
    /// half an epoch done, 4 × 3 − 1.5 = 10.5 s left.
    #[test]
    fn progress_and_eta_from_the_epoch_seconds() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut d = RunData {
            exists: true,
            epochs: vec![1, 2],
            epochs_total: Some(6),
            epoch_seconds: vec![3.0, 3.0],
            steps_per_epoch: Some(100),
            last_epoch_at: Some(t0),
            ..RunData::default()
        };
        let p = d.progress(t0 + Duration::from_millis(1500));
        assert_eq!(p.done, 2);
        assert_eq!(p.seconds_per_epoch, Some(3.0));
        assert_eq!(p.current, Some(0.5));
        assert_eq!(p.current_step, Some((50, 100)));
        assert_eq!(p.eta, Some(10.5));
        assert_eq!(
            p.line(),
            "2/6 epochs done · epoch 3 ≈ 50 % (step ≈ 50/100) · 3.00 s/epoch · ETA 0:11"
        );

        // Long past the expected end: the estimate stops below the next epoch.
        let p = d.progress(t0 + Duration::from_secs(100));
        assert_eq!((p.current, p.eta), (Some(0.99), Some(0.0)));
        assert!(
            p.line().ends_with("no new epoch for 1:40 (stopped?)"),
            "{}",
            p.line()
        );

        // Without steps.jsonl: epochs only.
        d.steps_per_epoch = None;
        let p = d.progress(t0 + Duration::from_millis(1500));
        assert_eq!(p.current_step, None);
        assert!(p.line().starts_with("2/6 epochs done · epoch 3 ≈ 50 % · "));

        d.finished = true;
        let p = d.progress(t0 + Duration::from_secs(5));
        assert_eq!(p.eta, Some(0.0));
        assert_eq!(
            p.line(),
            "2/6 epochs done · finished (stopped early) · 3.00 s/epoch"
        );

        // Before the first epoch ends nothing is estimated.
        let p = RunData {
            exists: true,
            epochs_total: Some(6),
            ..RunData::default()
        }
        .progress(t0);
        assert_eq!((p.current, p.eta), (None, None));
        assert_eq!(p.line(), "0/6 epochs done · epoch 1 running");
    }

    #[test]
    fn significant_digits_and_clock_spans() {
        assert_eq!(significant(0.0316227), "0.032");
        assert_eq!(significant(3.16227), "3.2");
        assert_eq!(significant(316.227), "316");
        assert_eq!(significant(10.0), "10");
        assert_eq!(clock_span(65.0), "1:05");
        assert_eq!(clock_span(3725.0), "1:02:05");
        let t = UNIX_EPOCH + Duration::from_secs(86_400 * 3 + 3600 * 17 + 62);
        assert_eq!(
            updated(Some(t), t + Duration::from_secs(4)),
            "17:01:02 UTC (4 s ago)"
        );
    }

    /// The view of a folder that does not exist yet says what it waits for, and draws every
    /// panel.
    #[test]
    fn a_missing_folder_is_waited_for() {
        let backend = ratatui::backend::TestBackend::new(120, 40);
        let mut terminal = ratatui::Terminal::new(backend).unwrap();
        let data = RunData::default();
        terminal
            .draw(|f| draw(f, Path::new("runs/x"), &data, None, SystemTime::now()))
            .unwrap();
        let screen: String = terminal
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        for label in [
            "accuracy %",
            "loss",
            "gradient norm (log)",
            "warn 5",
            "explode 10",
            "learning rate",
            "predicted shares (val %)",
            "waiting for runs/x",
            "run runs/x · last update - · q quits",
        ] {
            assert!(screen.contains(label), "no {label:?}");
        }
    }
}
