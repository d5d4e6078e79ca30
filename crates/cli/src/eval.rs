//! `rnnlab eval RUN DATA`: a trained run's weights evaluated on a data file, as Lightning's
//! `trainer.test(ckpt_path="best")`: accuracy, loss, macro-F1, per-class precision / recall / F1,
//! predicted beside true class shares, and the confusion matrix.
//!
//! The file is read with the run's own resolved `[data]` table (reader, columns, delimiter),
//! tokenized with the run's `tokenizer.json`, and its labels mapped through the run's
//! `labels.json`. `--reader` and `--set` change how the file is read when its format differs
//! (e.g. a TSV of `text` and `label` for a run trained on the generated demo corpus). Nothing is
//! printed before the whole file was read and evaluated: a bad row is an error naming the file,
//! line and field.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use rnnlab_core::{read_metrics, Confusion, Evaluation, Registry};
use rnnlab_data::{DataConfig, DataError, Example, LabelMap, ReadContext, Reader, RowLog, Skipped};

use crate::config::{self, Source};
use crate::{predict, run_dir};

/// The shared `[data]` keys that `rnnlab eval --set` may change; the reader's own keys (`text`,
/// `label`, `delimiter`, ...) may be changed too.
pub const DATA_KEYS: &[&str] = &["type", "skip_bad_rows", "eval_batch_size"];

/// What `rnnlab eval` was asked to do.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Which checkpoint: `best` or `last`.
    pub checkpoint: String,
    /// Read the file with this reader instead of the run's `data.type`.
    pub reader: Option<String>,
    /// `key=value` overrides of the run's `[data]` table (keys of [`DATA_KEYS`] or the reader's
    /// own, with or without the `data.` prefix), the value parsed as TOML.
    pub sets: Vec<String>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            checkpoint: "best".into(),
            reader: None,
            sets: Vec::new(),
        }
    }
}

/// Precision, recall and F1 of one class, in percent (0 when undefined, as scikit-learn's
/// `zero_division=0`), with its true and predicted shares.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ClassFigures {
    /// The class name (labels.json).
    pub label: String,
    /// Right predictions of the class over all predictions of it.
    pub precision: f64,
    /// Right predictions of the class over its true examples.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// True examples of the class.
    pub support: u64,
    /// Percent of the examples whose true class it is.
    pub true_share: f64,
    /// Percent of the examples predicted as it.
    pub predicted_share: f64,
}

/// The per-class figures of a confusion matrix (`counts[true][predicted]`).
pub fn class_figures(c: &Confusion, labels: &[String]) -> Vec<ClassFigures> {
    let n = c.counts.len();
    let total = c.total() as f64;
    let pct = |num: f64, den: f64| if den > 0.0 { 100.0 * num / den } else { 0.0 };
    (0..n)
        .map(|k| {
            let tp = c.counts[k][k] as f64;
            let predicted: u64 = (0..n).map(|r| c.counts[r][k]).sum();
            let support: u64 = c.counts[k].iter().sum();
            ClassFigures {
                label: labels.get(k).cloned().unwrap_or_else(|| k.to_string()),
                precision: pct(tp, predicted as f64),
                recall: pct(tp, support as f64),
                f1: pct(2.0 * tp, (predicted + support) as f64),
                support,
                true_share: pct(support as f64, total),
                predicted_share: pct(predicted as f64, total),
            }
        })
        .collect()
}

/// The outcome of `rnnlab eval`.
#[derive(Clone, Debug)]
pub struct EvalReport {
    /// The run folder.
    pub run: PathBuf,
    /// The data file.
    pub data: PathBuf,
    /// `best` or `last`.
    pub checkpoint: String,
    /// The epoch whose weights the checkpoint holds, from `metrics.jsonl` (the first epoch with
    /// the best monitored value for `best`, the last epoch for `last`), when known.
    pub epoch: Option<usize>,
    /// The reader the file was read with.
    pub reader: String,
    /// Class names in index order.
    pub labels: Vec<String>,
    /// Loss and confusion matrix.
    pub evaluation: Evaluation,
    /// Rows skipped as malformed (`--set skip_bad_rows=true`).
    pub skipped: Skipped,
    /// Percent of the tokens that are `<unk>` for the run's tokenizer.
    pub unk_rate: f64,
    /// Texts with no token (evaluated as one `<unk>`, as in training).
    pub empty_texts: usize,
    /// Texts cut to the tokenizer's maximum length.
    pub truncated_texts: usize,
}

impl EvalReport {
    /// Examples evaluated.
    pub fn examples(&self) -> u64 {
        self.evaluation.confusion.total()
    }

    /// Accuracy in percent.
    pub fn accuracy(&self) -> f64 {
        self.evaluation.confusion.accuracy()
    }

    /// Macro-averaged F1 in percent.
    pub fn macro_f1(&self) -> f64 {
        self.evaluation.confusion.macro_f1()
    }

    /// Per-class figures, in label order.
    pub fn classes(&self) -> Vec<ClassFigures> {
        class_figures(&self.evaluation.confusion, &self.labels)
    }

    /// The machine-readable report (`--json`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "run": self.run.display().to_string(),
            "data": self.data.display().to_string(),
            "checkpoint": self.checkpoint,
            "epoch": self.epoch,
            "reader": self.reader,
            "examples": self.examples(),
            "accuracy": self.accuracy(),
            "loss": self.evaluation.loss,
            "macro_f1": self.macro_f1(),
            "classes": self.classes(),
            "confusion": {
                "labels": self.labels,
                "rows": "true class",
                "columns": "predicted class",
                "counts": self.evaluation.confusion.counts,
            },
            "skipped_rows": self.skipped,
            "unk_rate": self.unk_rate,
            "empty_texts": self.empty_texts,
            "truncated_texts": self.truncated_texts,
        })
    }

    /// The report for a person: headline figures, a per-class table, the confusion matrix.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let epoch = self
            .epoch
            .map(|e| format!(", epoch {e}"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "eval of {} ({} checkpoint{epoch}) on {} (reader {}): {} examples",
            self.run.display(),
            self.checkpoint,
            self.data.display(),
            self.reader,
            self.examples()
        );
        let _ = writeln!(
            s,
            "accuracy {:.2} %  loss {:.4}  macro-F1 {:.2} %",
            self.accuracy(),
            self.evaluation.loss,
            self.macro_f1()
        );
        if self.skipped.rows > 0 {
            let _ = writeln!(
                s,
                "skipped {} malformed rows {:?}; first: {}",
                self.skipped.rows,
                self.skipped.by_reason,
                self.skipped.examples.first().cloned().unwrap_or_default()
            );
        }
        let _ = writeln!(
            s,
            "unknown tokens {:.2} %, empty texts {}, truncated texts {}",
            self.unk_rate, self.empty_texts, self.truncated_texts
        );
        let w = self
            .labels
            .iter()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(0)
            .max(5);
        let _ = writeln!(
            s,
            "\n{:<w$}  {:>9}  {:>7}  {:>7}  {:>8}  {:>10}  {:>15}",
            "class", "precision", "recall", "F1", "support", "true share", "predicted share"
        );
        for c in self.classes() {
            let _ = writeln!(
                s,
                "{:<w$}  {:>9.2}  {:>7.2}  {:>7.2}  {:>8}  {:>9.1}%  {:>14.1}%",
                c.label, c.precision, c.recall, c.f1, c.support, c.true_share, c.predicted_share
            );
        }
        let counts = &self.evaluation.confusion.counts;
        let cw = counts
            .iter()
            .flatten()
            .map(|v| v.to_string().len())
            .max()
            .unwrap_or(1)
            .max(w.min(12));
        let _ = writeln!(
            s,
            "\nconfusion matrix (rows: true class, columns: predicted class)"
        );
        let _ = write!(s, "{:<w$}", "");
        for l in &self.labels {
            let _ = write!(s, "  {:>cw$}", truncate(l, cw));
        }
        s.push('\n');
        for (l, row) in self.labels.iter().zip(counts) {
            let _ = write!(s, "{l:<w$}");
            for v in row {
                let _ = write!(s, "  {v:>cw$}");
            }
            s.push('\n');
        }
        s
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// The run's resolved `[data]` table with `reader` and `sets` applied, pointed at `data`, and
/// the reader it names. Another reader (`--reader`) keeps the run's reader keys it also has.
fn data_config(
    registry: &Registry,
    run: &Path,
    data: &Path,
    opts: &EvalOptions,
) -> Result<(DataConfig, Box<dyn Reader>)> {
    let cfg_path = run.join("config.resolved.toml");
    let mut dc = config::load(Source::File(&cfg_path), &[])?.data;
    if let Some(r) = &opts.reader {
        if *r != dc.kind {
            let entry = registry.readers.get(r, "--reader")?;
            let keys: Vec<&str> = entry.spec.params.iter().map(|p| p.name.as_ref()).collect();
            dc.reader.retain(|k, _| keys.contains(&k));
            dc.kind = r.clone();
        }
    }
    for s in &opts.sets {
        let (key, value) = config::parse_set(s)?;
        let key = key.strip_prefix("data.").unwrap_or(&key);
        let entry = registry.readers.get(&dc.kind, "data.type")?;
        let mut keys: Vec<&str> = DATA_KEYS.to_vec();
        keys.extend(entry.spec.params.iter().map(|p| p.name.as_ref()));
        if !keys.contains(&key) {
            bail!(
                "--set {s}: `{key}` is not a key eval can change{}; keys: {} (the tokenizer, labels and model come from the run folder)",
                rnnlab_core::suggest(key, keys.iter().copied()),
                keys.join(", ")
            );
        }
        match key {
            "type" => dc.kind = value.as_str().unwrap_or_default().to_string(),
            "skip_bad_rows" | "eval_batch_size" => {
                let mut t = toml::Table::new();
                t.insert(key.to_string(), value);
                let v: DataConfig = toml::Value::Table(t)
                    .try_into()
                    .map_err(|e| anyhow!("--set {s}: {e}"))?;
                dc.skip_bad_rows = v.skip_bad_rows;
                dc.eval_batch_size = v.eval_batch_size;
            }
            _ => {
                dc.reader.insert(key.to_string(), value);
            }
        }
    }
    // One file, not split: the run's split and grouping do not apply to it.
    dc.split = Default::default();
    dc.path = Some(data.to_path_buf());
    let entry = registry.readers.get(&dc.kind, "data.type")?;
    let (reader, _) = rnnlab_data::readers::build(&registry.readers, &dc).map_err(|e| {
        if matches!(&e, rnnlab_core::Error::InvalidValue { at, .. } if at == "data.path") {
            let files: Vec<&str> = registry
                .readers
                .entries()
                .iter()
                .filter(|e| reads_one_file(e))
                .map(|e| e.spec.name)
                .collect();
            anyhow!(
                "the run's reader `{}` does not read one data file ({}): give the format of {} with --reader {} (and --set text=..., label=... for its columns)",
                dc.kind,
                entry.spec.doc,
                data.display(),
                files.join("|")
            )
        } else {
            anyhow!("{}: {e}", cfg_path.display())
        }
    })?;
    Ok((dc, reader))
}

/// Whether a reader built with its defaults reads `data.path`.
fn reads_one_file(e: &rnnlab_core::Entry<rnnlab_core::ReaderCtor>) -> bool {
    let params = rnnlab_core::PluginParams::parse(&e.spec.params, &toml::Table::new(), "data");
    params
        .and_then(|p| (e.ctor)(&p))
        .is_ok_and(|r| r.reads_path())
}

/// Reads `data` with `reader` and maps every label through `labels`; an unknown label is an
/// error naming the file, line and field (or, with `skip_bad_rows`, a skipped row).
fn read_rows(
    cfg: &DataConfig,
    reader: &dyn Reader,
    data: &Path,
    labels: &LabelMap,
) -> Result<(Vec<(String, u32)>, Skipped)> {
    let mut log = RowLog::new(cfg.skip_bad_rows);
    // Readers of a file draw no random numbers; the generator is only part of the context.
    let mut cx = ReadContext {
        group_by: None,
        log: &mut log,
        rng: &mut rnnlab_core::seeded(0),
    };
    let rows = reader.read(Some(data), &mut cx).map_err(DataError::from)?;
    let field = reader.label_field();
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        match labels.id(&r.label) {
            Some(id) => out.push((r.text, id)),
            None => log.bad(
                "label",
                DataError::Field {
                    path: data.into(),
                    line: r.line,
                    field: field.clone(),
                    message: format!(
                        "label \"{}\" is not one of the run's labels ({}, from labels.json)",
                        r.label,
                        labels.names().join(", ")
                    ),
                },
            )?,
        }
    }
    if out.is_empty() {
        bail!("{}: no rows to evaluate", data.display());
    }
    Ok((out, log.skipped))
}

/// The epoch whose weights `checkpoints/{which}.safetensors` holds, from `metrics.jsonl`: the
/// first epoch with the best `monitor` value (as the trainer saves `best`), or the last.
fn checkpoint_epoch(run: &Path, which: &str, monitor: &str, max: bool) -> Option<usize> {
    let history = read_metrics(&run.join(rnnlab_core::METRICS_FILE)).ok()?;
    let epoch = |m: &rnnlab_core::EpochMetrics| m.get("epoch").map(|e| e as usize);
    if which == "last" {
        return history.last().and_then(epoch);
    }
    // The trainer's record of the best epoch; a run folder from before it: the metrics.
    if let Some(e) = run_dir::best_record(run).and_then(|r| r["epoch"].as_u64()) {
        return Some(e as usize);
    }
    let mut best: Option<(f64, usize)> = None;
    for m in &history {
        let (Some(v), Some(e)) = (m.get(monitor), epoch(m)) else {
            continue;
        };
        let better = best.is_none_or(|(b, _)| if max { v > b } else { v < b });
        if better {
            best = Some((v, e));
        }
    }
    best.map(|b| b.1)
}

/// Evaluates `run`'s checkpoint on the file `data`.
pub fn evaluate_file(
    registry: &Registry,
    run: &Path,
    data: &Path,
    opts: &EvalOptions,
) -> Result<EvalReport> {
    if !matches!(opts.checkpoint.as_str(), "best" | "last") {
        bail!("--checkpoint {}: expected best or last", opts.checkpoint);
    }
    let run_cfg = config::load(Source::File(&run.join("config.resolved.toml")), &[])?;
    let loaded = predict::load_run(registry, run, &opts.checkpoint)?;
    let (cfg, reader) = data_config(registry, run, data, opts)?;
    let label_map = LabelMap::from_names(loaded.labels.clone());
    let (rows, skipped) = read_rows(&cfg, reader.as_ref(), data, &label_map)?;
    let enc =
        rnnlab_data::tokenizer::encode_texts(&loaded.tokenizer, rows.iter().map(|r| r.0.as_str()))?;
    let examples: Vec<Example> = enc
        .ids
        .iter()
        .zip(&rows)
        .map(|(ids, r)| Example {
            ids: ids.clone(),
            label: r.1,
        })
        .collect();
    let tokens: usize = examples.iter().map(|e| e.ids.len()).sum();
    // The trainer's evaluation batches: sorted by length (stable), eval_batch_size at a time.
    let mut idx: Vec<usize> = (0..examples.len()).collect();
    idx.sort_by_key(|&i| examples[i].ids.len());
    let batches = idx
        .chunks(cfg.eval_batch_size.max(1))
        .map(|b| rnnlab_data::batcher::make_batch(&examples, b))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let evaluation = rnnlab_core::evaluate(
        loaded.model.as_ref(),
        &batches,
        loaded.labels.len(),
        &mut rnnlab_core::seeded(0),
    )?;
    Ok(EvalReport {
        run: run.to_path_buf(),
        data: data.to_path_buf(),
        checkpoint: opts.checkpoint.clone(),
        epoch: checkpoint_epoch(
            run,
            &opts.checkpoint,
            &run_cfg.train.monitor,
            run_cfg.train.monitor_mode() == rnnlab_core::Mode::Max,
        ),
        reader: cfg.kind.clone(),
        labels: loaded.labels,
        evaluation,
        skipped,
        unk_rate: 100.0 * enc.unk as f64 / tokens.max(1) as f64,
        empty_texts: enc.empty,
        truncated_texts: enc.truncated,
    })
}

/// `rnnlab eval`: prints the report (as JSON with `json`) once everything was evaluated.
pub fn run(
    registry: &Registry,
    run_dir: &Path,
    data: &Path,
    opts: &EvalOptions,
    json: bool,
) -> Result<()> {
    let report = evaluate_file(registry, run_dir, data, opts)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_figures_of_a_known_matrix() {
        // sklearn.metrics.precision_recall_fscore_support(y_true, y_pred, zero_division=0)
        // with y_true = [0]*6 + [1]*4 + [2]*0, y_pred from the matrix below:
        // precision [5/7, 2/3, 0], recall [5/6, 2/4, 0], f1 [10/13, 4/7, 0].
        let c = Confusion {
            counts: vec![vec![5, 1, 0], vec![2, 2, 0], vec![0, 0, 0]],
        };
        let f = class_figures(&c, &["a".into(), "b".into(), "c".into()]);
        let close = |x: f64, y: f64| assert!((x - y).abs() < 1e-9, "{x} vs {y}");
        close(f[0].precision, 100.0 * 5.0 / 7.0);
        close(f[1].precision, 100.0 * 2.0 / 3.0);
        close(f[0].recall, 100.0 * 5.0 / 6.0);
        close(f[1].recall, 50.0);
        close(f[0].f1, 100.0 * 10.0 / 13.0);
        close(f[1].f1, 100.0 * 4.0 / 7.0);
        assert_eq!((f[2].precision, f[2].recall, f[2].f1), (0.0, 0.0, 0.0));
        assert_eq!(f[0].support, 6);
        close(f[0].true_share, 60.0);
        close(f[0].predicted_share, 70.0);
        close(f[1].predicted_share, 30.0);
        // The mean of the per-class F1 is the macro-F1.
        close(f.iter().map(|x| x.f1).sum::<f64>() / 3.0, c.macro_f1());
    }
}
