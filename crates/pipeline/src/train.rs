//! `rnnlab train`: validate the pipeline, prepare the data, build the plugins, train, and write a
//! self-contained run folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use rnnlab_core::{
    checkpoint, read_metrics, Chain, Confusion, Evaluation, Mode, ModelContext, ParamInit,
    Registry, ResumePoint, StateDict, Trainer, TrainerConfig, CHECKPOINT_DIR, SNAPSHOT,
};

use crate::config::{self, PipelineConfig, Source};
use crate::run_dir::{self, RunLock};

/// What `rnnlab train` was asked to do.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// The pipeline file; `None` runs the embedded demo.
    pub pipeline: Option<PathBuf>,
    /// `key=value` overrides.
    pub sets: Vec<String>,
    /// The run folder; default `runs/<pipeline>-<UTC time>`.
    pub out: Option<PathBuf>,
    /// CPU threads, overriding `train.threads`.
    pub threads: Option<usize>,
    /// Show progress bars (on a terminal only).
    pub progress: bool,
    /// Continue this run folder from its last snapshot (its `config.resolved.toml` is the
    /// pipeline; `sets` may still override, e.g. `train.epochs` to train longer).
    pub resume: Option<PathBuf>,
}

/// The outcome of a run.
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Every epoch's metrics.
    pub history: Vec<rnnlab_core::EpochMetrics>,
    /// Seconds from start to end.
    pub seconds: f64,
    /// The metric that picked `checkpoints/best.safetensors` (`train.monitor`).
    pub monitor: String,
    /// Which way it improves.
    pub mode: Mode,
}

impl RunSummary {
    /// The first epoch with the best value of the monitored metric: (value, epoch), from the
    /// model checkpoint's `checkpoints/best.json` (else from the history).
    pub fn best(&self) -> Option<(f64, f64)> {
        if let Some(r) = run_dir::best_record(&self.run_dir) {
            if r["monitor"].as_str() == Some(self.monitor.as_str()) {
                if let (Some(v), Some(e)) = (r["value"].as_f64(), r["epoch"].as_f64()) {
                    return Some((v, e));
                }
            }
        }
        self.history
            .iter()
            .filter_map(|m| Some((m.get(&self.monitor)?, m.get("epoch")?)))
            .fold(None, |best: Option<(f64, f64)>, cur| match best {
                Some(b) if !self.mode.better(cur.0, b.0) => Some(b),
                _ => Some(cur),
            })
    }

    /// The one-line summary printed at the end of a run.
    pub fn line(&self) -> String {
        let last = self.history.last();
        let get = |k: &str| {
            last.and_then(|m| m.get(k))
                .map(|v| format!("{v:.2}"))
                .unwrap_or_else(|| "-".into())
        };
        let best = self
            .best()
            .map(|(v, e)| {
                let v = if self.monitor.contains("loss") {
                    format!("{v:.4}")
                } else {
                    format!("{v:.2}")
                };
                format!(
                    ", best {} {v} ({}) at epoch {e}",
                    self.monitor,
                    self.mode.as_str()
                )
            })
            .unwrap_or_default();
        format!(
            "done: {} epochs in {:.1} s, final val_acc {} test_acc {} test_macro_f1 {}{best}; run folder {}",
            self.history.len(),
            self.seconds,
            get("val_acc"),
            get("test_acc"),
            get("test_macro_f1"),
            self.run_dir.display()
        )
    }
}

/// Trains the pipeline of `opts` with the plugins of `registry`, in a thread pool of its own
/// (`--threads`, else `train.threads`; a resumed run keeps its own).
///
/// Everything is validated (plugins, watched metric names, and for `--resume` the snapshot and
/// the overrides) and the data read before the run folder is claimed or written; a failed
/// resume changes nothing in its folder.
pub fn train(registry: &Registry, opts: &TrainOptions) -> Result<RunSummary> {
    let started = Instant::now();
    // Ctrl-C from here on stops the run after a step, with a snapshot (see crate::interrupt).
    let stop = crate::interrupt::stop_flag();
    if opts.resume.is_some() && opts.pipeline.is_some() {
        bail!("--resume takes the pipeline from the run folder: give no pipeline file");
    }
    let resumed_config = opts.resume.as_ref().map(|r| r.join("config.resolved.toml"));
    let source = match (&resumed_config, &opts.pipeline) {
        (Some(c), _) => Source::File(c),
        (None, Some(p)) => Source::File(p),
        (None, None) => Source::Demo,
    };
    let mut cfg = config::load(source, &opts.sets)?;
    // A resumed run keeps the callbacks its snapshot was written with (its resolved config lists
    // them all); a new run gets the defaults it does not list.
    if opts.resume.is_none() {
        cfg.add_default_callbacks();
    }
    let lock = match (&opts.resume, &resumed_config) {
        (Some(run), Some(stored)) => {
            // Nothing else may train in the folder while it is checked and resumed.
            let lock = RunLock::existing(run)?;
            check_resume_overrides(run, stored, &cfg)?;
            Some(lock)
        }
        _ => {
            if let Some(out) = &opts.out {
                run_dir::check_free(out)?;
            }
            None
        }
    };
    let threads = opts.threads.unwrap_or(cfg.train.threads);
    thread_pool(threads)?.install(|| {
        let ctx = RunContext {
            registry,
            opts,
            source: &source,
            threads,
            started,
            stop,
        };
        ctx.run(cfg, lock)
    })
}

/// A rayon pool of `threads` threads (0: rayon's default, all cores), in which a run's matrix
/// products and fused recurrent kernels run. Candle's element-wise ops use candle's own pool,
/// sized by `CANDLE_NUM_THREADS`.
pub fn thread_pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("rnnlab-{i}"))
        .build()
        .with_context(|| format!("starting a pool of {threads} threads"))
}

/// What one call of [`train`] works with.
struct RunContext<'a> {
    registry: &'a Registry,
    opts: &'a TrainOptions,
    source: &'a Source<'a>,
    threads: usize,
    started: Instant,
    /// Set by Ctrl-C: the trainer stops after the step with a mid-epoch snapshot.
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl RunContext<'_> {
    /// A plugin error with the file and line (or the `--set`) it comes from.
    fn located(&self, e: rnnlab_core::Error) -> anyhow::Error {
        config::locate_error(e, self.source, &self.opts.sets)
    }

    fn run(&self, mut cfg: PipelineConfig, lock: Option<RunLock>) -> Result<RunSummary> {
        let registry = self.registry;
        let opts = self.opts;
        // `--threads N` is `--set train.threads=N`: the resolved config records it, so a resumed
        // run keeps it.
        cfg.train.threads = self.threads;
        // Every plugin is built (and so validated) before anything is read or written.
        let Plugins {
            reader,
            resolved_reader,
            chain,
            scheduler,
            sched_p,
            callbacks,
            resolved_transforms,
            resolved_callbacks,
            mode,
        } = build_plugins(registry, &cfg, &|e| self.located(e))?;
        // Checked before the data are read; built below, once the vocabulary is known.
        let (_, model_p) = registry
            .models
            .resolve(&cfg.model, "model", Some("recurrent"))
            .map_err(|e| self.located(e))?;

        let mut rng = rnnlab_core::seeded(cfg.seed);
        let prepared = rnnlab_data::prepare_with(&cfg.data, reader.as_ref(), &mut rng)
            .map_err(|e| anyhow!("data: {e}"))?;
        warn_truncated(&prepared.report, cfg.data.tokenizer.max_len);
        let model = {
            let ctx = model_context(&prepared, registry);
            let mut init = ParamInit::new(&mut rng, DType::F32, Device::Cpu);
            let (model, _) = registry
                .model(&cfg.model, &ctx, &mut init)
                .map_err(|e| self.located(e))?;
            model
        };
        tracing::info!(
            "model `{}`: {} trainable parameters; transforms {:?}; scheduler `{}`; {} thread(s)",
            model_p.str("type").unwrap_or("?"),
            model.params().trainable_count(),
            chain.names(),
            sched_p.str("type").unwrap_or("?"),
            rayon::current_num_threads(),
        );
        // The command line's callbacks, after the pipeline's (so they see every figure): the
        // metrics file, the model checkpoints (by train.monitor), and last the progress bar,
        // stateless, so snapshots are the same with or without it.
        let mut callbacks = callbacks;
        callbacks.push(Box::new(rnnlab_callbacks::metrics_logger::metrics_logger()));
        callbacks.push(Box::new(
            rnnlab_callbacks::model_checkpoint::model_checkpoint(&cfg.train.monitor, mode),
        ));
        if opts.progress && cfg.train.progress {
            callbacks.push(Box::new(rnnlab_callbacks::progress::progress(
                cfg.train.epochs,
            )));
        }
        let trainer_cfg = TrainerConfig {
            epochs: cfg.train.epochs,
            checkpoint_dir: None,
            run_dir: None,
            stop: Some(self.stop.clone()),
        };
        let mut trainer = Trainer::new(model, chain, scheduler, callbacks, trainer_cfg)?;
        trainer
            .check_watched_metrics(&prepared.source)
            .map_err(|e| self.located(e))?;
        // A resumed run is restored (and so checked) before its folder is touched.
        let resume_point = match &opts.resume {
            Some(run) => {
                check_same_data(run, &prepared)?;
                let (point, saved_rng) = resume_point(&mut trainer, run, &opts.sets)?;
                rng = saved_rng;
                match &point.partial {
                    Some(p) => tracing::info!(
                        "resuming {} in epoch {} after batch {}",
                        run.display(),
                        point.epoch + 1,
                        p.batches
                    ),
                    None => {
                        tracing::info!("resuming {} after epoch {}", run.display(), point.epoch)
                    }
                }
                Some(point)
            }
            None => None,
        };

        // Now the run folder: only after the whole pipeline was validated and the data read.
        let lock = match lock {
            Some(l) => l,
            None => match &opts.out {
                Some(d) => run_dir::claim(d)?,
                None => run_dir::claim_new(&default_run_dir(opts.pipeline.as_deref()))?,
            },
        };
        let run_dir = lock.dir().to_path_buf();
        let ckpt_dir = run_dir.join(CHECKPOINT_DIR);
        std::fs::create_dir_all(&ckpt_dir)
            .with_context(|| format!("creating {}", ckpt_dir.display()))?;
        let resolved = resolved_config(
            &cfg,
            &resolved_reader,
            model_p.table(),
            &resolved_transforms,
            sched_p.table(),
            &resolved_callbacks,
        )?;
        write(&run_dir.join("config.resolved.toml"), &resolved)?;
        let provenance = match &resume_point {
            Some(point) => resumed_provenance(&run_dir, self.threads, point.epoch),
            None => provenance(self.threads, &cfg, trainer.model.params().trainable_count()),
        };
        write(
            &run_dir.join("provenance.json"),
            &serde_json::to_string_pretty(&provenance)?,
        )?;
        if resume_point.is_none() {
            // A resumed run's tokenizer, labels and data were checked to be the same.
            let tokenizer = &prepared.tokenizer;
            rnnlab_core::write_atomic_with(&run_dir.join("tokenizer.json"), |tmp| {
                tokenizer
                    .save(tmp, true)
                    .map_err(|e| rnnlab_core::Error::Mismatch(format!("tokenizer.json: {e}")))
            })?;
            write(
                &run_dir.join("labels.json"),
                &serde_json::to_string_pretty(&prepared.labels)?,
            )?;
            write(
                &run_dir.join("data_report.json"),
                &serde_json::to_string_pretty(&prepared.report)?,
            )?;
        }

        trainer.config.checkpoint_dir = Some(ckpt_dir);
        trainer.config.run_dir = Some(run_dir.clone());
        let mut source = prepared.source;
        let fit = trainer
            .fit_from(&mut source, &mut rng, resume_point)
            .map_err(|e| explain_divergence(e, &run_dir))?;
        if let Some(at) = fit.interrupted {
            return Err(crate::interrupt::Interrupted { run_dir, at }.into());
        }
        let confusion = serde_json::json!({
            "labels": prepared.labels,
            "rows": "true class",
            "columns": "predicted class",
            "val": fit.val.as_ref().map(confusion_json),
            "test": fit.test.as_ref().map(confusion_json),
        });
        write(
            &run_dir.join("confusion.json"),
            &serde_json::to_string_pretty(&confusion)?,
        )?;
        if let Some(test) = &fit.test {
            tracing::info!(
                "final test confusion (rows true, columns predicted, labels {:?}):\n{}",
                prepared.labels,
                render_confusion(&test.confusion)
            );
        }
        drop(lock);
        Ok(RunSummary {
            run_dir,
            history: fit.history,
            seconds: self.started.elapsed().as_secs_f64(),
            monitor: cfg.train.monitor.clone(),
            mode,
        })
    }
}

/// The plugins of a pipeline, built from its tables (and so validated), with their tables
/// with every default filled in.
struct Plugins {
    reader: Box<dyn rnnlab_core::Reader>,
    resolved_reader: toml::Table,
    chain: Chain,
    scheduler: Box<dyn rnnlab_core::Scheduler>,
    sched_p: rnnlab_core::PluginParams,
    callbacks: Vec<Box<dyn rnnlab_core::Callback>>,
    resolved_transforms: Vec<toml::Table>,
    resolved_callbacks: Vec<toml::Table>,
    mode: Mode,
}

/// Builds the transforms, scheduler and callbacks of `cfg`; `located` turns a plugin error into
/// one that names where its value comes from (file and line, or the `--set`).
fn build_plugins(
    registry: &Registry,
    cfg: &PipelineConfig,
    located: &dyn Fn(rnnlab_core::Error) -> anyhow::Error,
) -> Result<Plugins> {
    let (reader, reader_p) =
        rnnlab_data::readers::build(&registry.readers, &cfg.data).map_err(located)?;
    let mut resolved_reader = reader_p.table().clone();
    resolved_reader.remove("type");
    let mut link_params = Vec::new();
    let mut links = Vec::new();
    for (i, t) in cfg.optim.transforms.iter().enumerate() {
        let (link, p) = registry
            .transform(t, &format!("optim.transforms[{i}]"))
            .map_err(located)?;
        links.push(link);
        link_params.push(p);
    }
    let resolved_transforms: Vec<toml::Table> =
        link_params.iter().map(|p| p.table().clone()).collect();
    let chain = Chain::new(links);
    let base_lr = Registry::base_lr(&link_params).ok_or_else(|| {
        anyhow!(
            "`optim.transforms` has no optimizer (adam, ...): {:?}",
            chain.names()
        )
    })?;
    let (scheduler, sched_p) = registry
        .scheduler(&cfg.optim.scheduler, "optim.scheduler", base_lr)
        .map_err(located)?;
    let mut callbacks = Vec::new();
    let mut resolved_callbacks = Vec::new();
    for (i, t) in cfg.callbacks.iter().enumerate() {
        let (cb, p) = registry
            .callback(t, &format!("callbacks[{i}]"))
            .map_err(located)?;
        callbacks.push(cb);
        resolved_callbacks.push(p.table().clone());
    }
    let mode = Mode::resolve(cfg.train.mode, &cfg.train.monitor, "train.mode");
    Ok(Plugins {
        reader,
        resolved_reader,
        chain,
        scheduler,
        sched_p,
        callbacks,
        resolved_transforms,
        resolved_callbacks,
        mode,
    })
}

/// Loads a pipeline (with `sets` layered on), validates it and builds every plugin, the model
/// included (on a two-word vocabulary), reading no data and writing nothing: the checks
/// `train` makes before it starts, but those that need the data (the watched metric names,
/// which depend on the splits). Returns the layered config.
pub fn check(registry: &Registry, source: Source, sets: &[String]) -> Result<PipelineConfig> {
    let mut cfg = config::load(source, sets)?;
    cfg.add_default_callbacks();
    let located = |e| config::locate_error(e, &source, sets);
    build_plugins(registry, &cfg, &located)?;
    let ctx = ModelContext {
        vocab_size: 2,
        num_classes: cfg.data.label_names().len().max(2),
        pretrained: None,
        freeze_embedding: false,
        pad_id: 0,
        registry,
    };
    let mut rng = rnnlab_core::seeded(cfg.seed);
    let mut init = ParamInit::new(&mut rng, DType::F32, Device::Cpu);
    registry
        .model(&cfg.model, &ctx, &mut init)
        .map_err(located)?;
    Ok(cfg)
}

/// Warns when texts were cut to `data.tokenizer.max_len` tokens (counted in `data_report.json`).
fn warn_truncated(report: &rnnlab_data::DataReport, max_len: usize) {
    let t = &report.truncated_texts;
    let total = t.train + t.val + t.test;
    if total > 0 {
        tracing::warn!(
            "{total} text(s) longer than data.tokenizer.max_len = {max_len} tokens were cut to it \
             (train {}, val {}, test {}); set data.tokenizer.max_len (0: no limit) to keep more",
            t.train,
            t.val,
            t.test
        );
    }
}

/// Where `rnnlab train` writes without `--out`: `runs/<pipeline>-<UTC time>`.
fn default_run_dir(pipeline: Option<&Path>) -> PathBuf {
    let stem = pipeline
        .and_then(|p| p.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "demo".into());
    PathBuf::from("runs").join(format!("{stem}-{}", utc_stamp()))
}

/// Whether a config path is fixed when resuming, and why: the checkpoint's architecture and the
/// data it was trained on are the run's. Dropout rates and the kernel choice may change.
fn fixed_on_resume(path: &str) -> Option<&'static str> {
    let last = path.rsplit('.').next().unwrap_or(path);
    if path == "seed" {
        Some("it picks the split of the data the checkpoint was trained on")
    } else if path == "model" || path.starts_with("model.") {
        (!last.ends_with("dropout") && last != "kernel")
            .then_some("it changes the model's architecture")
    } else if path == "data" || path.starts_with("data.") {
        let free = [
            "data.batch_size",
            "data.eval_batch_size",
            "data.shuffle",
            "data.sort_by_length",
            "data.buckets",
            "data.drop_last",
        ];
        (!free.contains(&path)).then_some(
            "it changes the data (rows, vocabulary or labels) the checkpoint was trained on",
        )
    } else {
        None
    }
}

/// Leaf paths (`model.cell.hidden`, `optim.transforms.0.lr`) whose values differ.
fn differences(at: &str, a: Option<&toml::Value>, b: Option<&toml::Value>, out: &mut Vec<String>) {
    let join = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    match (a, b) {
        (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                differences(&join(k), x.get(k), y.get(k), out);
            }
        }
        (Some(toml::Value::Array(x)), Some(toml::Value::Array(y))) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differences(&join(&i.to_string()), Some(p), Some(q), out);
            }
        }
        (x, y) if x != y => out.push(at.to_string()),
        _ => {}
    }
}

/// Refuses overrides (`--set`, `RNNLAB__*`) that change a resumed run's architecture or data,
/// naming the key.
fn check_resume_overrides(run: &Path, stored: &Path, cfg: &PipelineConfig) -> Result<()> {
    let text = std::fs::read_to_string(stored)
        .with_context(|| format!("cannot read {}", stored.display()))?;
    let before: toml::Value =
        toml::from_str(&text).with_context(|| format!("cannot parse {}", stored.display()))?;
    let after = toml::Value::try_from(cfg)?;
    let mut changed = Vec::new();
    differences("", Some(&before), Some(&after), &mut changed);
    for path in changed {
        if let Some(why) = fixed_on_resume(&path) {
            let value = |v: &toml::Value| {
                path.split('.')
                    .try_fold(v, |v, k| match v {
                        toml::Value::Table(t) => t.get(k),
                        toml::Value::Array(a) => a.get(k.parse::<usize>().ok()?),
                        _ => None,
                    })
                    .map_or_else(|| "unset".to_string(), |v| v.to_string())
            };
            bail!(
                "cannot resume {}: `{path}` would change from {} to {} (by --set or RNNLAB__*): \
                 {why}; a resumed run keeps its model and data (train a new run with --out \
                 instead). Nothing was changed",
                run.display(),
                value(&before),
                value(&after)
            );
        }
    }
    Ok(())
}

/// Checks that the data read now gives the run's labels and tokenizer (the files may have
/// changed since the run started).
fn check_same_data(run: &Path, prepared: &rnnlab_data::Prepared) -> Result<()> {
    let labels_path = run.join("labels.json");
    let labels: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(&labels_path)
            .with_context(|| format!("cannot resume: reading {}", labels_path.display()))?,
    )
    .with_context(|| format!("cannot resume: parsing {}", labels_path.display()))?;
    if labels != prepared.labels {
        bail!(
            "cannot resume {}: the data now has the labels {:?}, the run was trained with {:?} \
             ({}): the data files changed. Nothing was changed",
            run.display(),
            prepared.labels,
            labels,
            labels_path.display()
        );
    }
    let tok_path = run.join("tokenizer.json");
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&tok_path)
            .with_context(|| format!("cannot resume: reading {}", tok_path.display()))?,
    )
    .with_context(|| format!("cannot resume: parsing {}", tok_path.display()))?;
    let now: serde_json::Value = serde_json::from_str(
        &prepared
            .tokenizer
            .to_string(false)
            .map_err(|e| anyhow!("tokenizer: {e}"))?,
    )?;
    if saved != now {
        bail!(
            "cannot resume {}: the data now gives another tokenizer (vocabulary of {} words) \
             than {} ({} words): the data files changed. Nothing was changed",
            run.display(),
            prepared.vocab_size,
            tok_path.display(),
            saved["model"]["vocab"]
                .as_object()
                .map_or(0, serde_json::Map::len)
        );
    }
    Ok(())
}

/// Loads the run's snapshot into `trainer` and the metrics of the epochs it covers.
fn resume_point(
    trainer: &mut Trainer,
    run: &Path,
    sets: &[String],
) -> Result<(ResumePoint, rnnlab_core::Rng)> {
    let snap_path = run.join(CHECKPOINT_DIR).join(SNAPSHOT);
    let mut tensors =
        checkpoint::load(&snap_path).with_context(|| format!("cannot resume {}", run.display()))?;
    move_legacy_best(&mut tensors, trainer);
    let (mut point, rng) = trainer.restore(&StateDict { tensors }).map_err(|e| {
        let hint = if sets.is_empty() {
            String::new()
        } else {
            format!(" (with --set {})", sets.join(" --set "))
        };
        anyhow!(
            "cannot resume {}: {} does not fit the pipeline{hint}: {e}",
            run.display(),
            snap_path.display()
        )
    })?;
    let metrics_path = run.join(rnnlab_core::METRICS_FILE);
    let history: Vec<_> = read_metrics(&metrics_path)
        .with_context(|| format!("cannot resume {}", run.display()))?
        .into_iter()
        .filter(|m| m.get("epoch").is_some_and(|e| e <= point.epoch as f64))
        .collect();
    if history.len() != point.epoch {
        bail!(
            "cannot resume {}: the snapshot is after epoch {} but {} has {} of those epochs",
            run.display(),
            point.epoch,
            metrics_path.display(),
            history.len()
        );
    }
    point.history = history;
    Ok((point, rng))
}

/// A snapshot written before the model checkpoint was a callback holds the best monitored value
/// as `trainer.best`: it becomes the model checkpoint callback's state.
fn move_legacy_best(tensors: &mut BTreeMap<String, Tensor>, trainer: &Trainer) {
    let Some(i) = trainer
        .callbacks
        .iter()
        .position(|c| c.name() == rnnlab_callbacks::model_checkpoint::NAME)
    else {
        return;
    };
    if let Some(best) = tensors.remove("trainer.best") {
        let key = format!(
            "callbacks.{i}.{}.best",
            rnnlab_callbacks::model_checkpoint::NAME
        );
        tensors.entry(key).or_insert(best);
    }
}

/// A non-finite loss stops the run: say what was kept and what to do next.
fn explain_divergence(e: rnnlab_core::Error, run_dir: &Path) -> anyhow::Error {
    let rnnlab_core::Error::NonFinite { epoch, .. } = e else {
        return e.into();
    };
    let checkpoints = if run_dir
        .join(CHECKPOINT_DIR)
        .join("last.safetensors")
        .is_file()
    {
        format!("the model checkpoints of epoch {}", epoch - 1)
    } else {
        "no model checkpoint (no epoch had ended)".to_string()
    };
    anyhow!(
        "{e}: training diverged. Kept in {run}: the epoch's figures up to that step in \
         metrics.jsonl (marked diverged), {checkpoints}. `rnnlab diagnose {run}` names the \
         cause; a `skip_nonfinite` transform first in optim.transforms skips such steps \
         instead",
        run = run_dir.display()
    )
}

fn confusion_json(e: &Evaluation) -> serde_json::Value {
    serde_json::json!({
        "counts": e.confusion.counts,
        "accuracy": e.confusion.accuracy(),
        "macro_f1": e.confusion.macro_f1(),
        "loss": e.loss,
    })
}

fn render_confusion(c: &Confusion) -> String {
    c.counts
        .iter()
        .map(|row| {
            row.iter()
                .map(|v| format!("{v:>7}"))
                .collect::<Vec<_>>()
                .join("")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Replaces `path` with `text` atomically.
fn write(path: &Path, text: &str) -> Result<()> {
    rnnlab_core::write_atomic(path, text.as_bytes())?;
    Ok(())
}

/// `YYYYMMDD-HHMMSS` in UTC.
pub(crate) fn utc_stamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

fn resolved_config(
    cfg: &PipelineConfig,
    reader: &toml::Table,
    model: &toml::Table,
    transforms: &[toml::Table],
    scheduler: &toml::Table,
    callbacks: &[toml::Table],
) -> Result<String> {
    let mut c = cfg.clone();
    c.data.reader = reader.clone();
    c.model = model.clone();
    c.optim.transforms = transforms.to_vec();
    c.optim.scheduler = scheduler.clone();
    c.callbacks = callbacks.to_vec();
    Ok(toml::to_string_pretty(&c)?)
}

/// `rnnlab_version`, `git_commit` and `git_dirty` of this binary's source tree.
fn build_info() -> serde_json::Value {
    let root = config::workspace_root();
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"]);
    let dirty = git(&["status", "--porcelain"]).map(|s| !s.is_empty());
    serde_json::json!({
        "rnnlab_version": env!("CARGO_PKG_VERSION"),
        "git_commit": commit,
        "git_dirty": dirty,
    })
}

/// Threads the run's pool really has (`threads = 0` is all cores).
fn pool_threads(threads: usize) -> usize {
    if threads == 0 {
        rayon::current_num_threads()
    } else {
        threads
    }
}

/// `CANDLE_NUM_THREADS`, the size of candle's element-wise pool (unset: all cores).
fn candle_threads() -> Option<String> {
    std::env::var("CANDLE_NUM_THREADS").ok()
}

/// A new run's `provenance.json`.
fn provenance(threads: usize, cfg: &PipelineConfig, trainable: usize) -> serde_json::Value {
    let mut p = build_info();
    let extra = serde_json::json!({
        "command_line": std::env::args().collect::<Vec<_>>(),
        "threads": pool_threads(threads),
        "candle_threads": candle_threads(),
        "seed": cfg.seed,
        "trainable_params": trainable,
        "started_utc": utc_stamp(),
        "data_dir": config::data_dir(),
        "resumes": [],
    });
    if let (Some(p), serde_json::Value::Object(extra)) = (p.as_object_mut(), extra) {
        p.extend(extra);
    }
    p
}

/// A resumed run's `provenance.json`: the first run's, with this resume appended to `resumes`
/// (command line, threads, time, the epoch it continues after, and the build).
fn resumed_provenance(run: &Path, threads: usize, after_epoch: usize) -> serde_json::Value {
    let path = run.join("provenance.json");
    let mut p = match std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .filter(serde_json::Value::is_object)
    {
        Some(p) => p,
        None => {
            tracing::warn!(
                "{}: missing or unreadable; the first run's command is not known",
                path.display()
            );
            serde_json::json!({})
        }
    };
    let mut entry = serde_json::json!({
        "command_line": std::env::args().collect::<Vec<_>>(),
        "threads": pool_threads(threads),
        "candle_threads": candle_threads(),
        "started_utc": utc_stamp(),
        "after_epoch": after_epoch,
    });
    if let (Some(e), serde_json::Value::Object(b)) = (entry.as_object_mut(), build_info()) {
        e.extend(b);
    }
    let resumes = p
        .as_object_mut()
        .map(|o| o.entry("resumes").or_insert_with(|| serde_json::json!([])));
    match resumes {
        Some(serde_json::Value::Array(a)) => a.push(entry),
        Some(other) => *other = serde_json::json!([entry]),
        None => {}
    }
    p
}

/// What a model constructor needs to know of the prepared data: vocabulary, classes, pretrained
/// rows, padding id.
pub fn model_context<'a>(
    prepared: &rnnlab_data::Prepared,
    registry: &'a Registry,
) -> ModelContext<'a> {
    ModelContext {
        vocab_size: prepared.vocab_size,
        num_classes: prepared.labels.len(),
        pretrained: prepared.embeddings.clone(),
        freeze_embedding: prepared.freeze_embeddings,
        pad_id: prepared.pad_id,
        registry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamp_has_the_expected_shape() {
        let s = utc_stamp();
        assert_eq!(s.len(), 15, "{s}");
        assert!(s.starts_with("20"), "{s}");
        assert_eq!(&s[8..9], "-");
    }
}
