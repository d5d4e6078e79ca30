//! `rnnlab train`: validate the pipeline, prepare the data, build the plugins, train, and write a
//! self-contained run folder.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device};
use rnnlab_core::{
    checkpoint, read_metrics, Chain, Confusion, Evaluation, Mode, ModelContext, ParamBuilder,
    Params, Registry, ResumePoint, StateDict, Trainer, TrainerConfig, SNAPSHOT,
};

use crate::config::{self, PipelineConfig, Source};

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
}

impl RunSummary {
    /// The one-line summary printed at the end of a run.
    pub fn line(&self) -> String {
        let last = self.history.last();
        let get = |k: &str| {
            last.and_then(|m| m.get(k))
                .map(|v| format!("{v:.2}"))
                .unwrap_or_else(|| "-".into())
        };
        // The first epoch that reached the best value.
        let best = self
            .history
            .iter()
            .filter_map(|m| Some((m.get("val_acc")?, m.get("epoch")?)))
            .fold(None, |best: Option<(f64, f64)>, cur| match best {
                Some(b) if b.0 >= cur.0 => Some(b),
                _ => Some(cur),
            });
        let best = best
            .map(|(v, e)| format!(", best val_acc {v:.2} at epoch {e}"))
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

/// Trains the pipeline of `opts` with the plugins of `registry`.
pub fn train(registry: &Registry, opts: &TrainOptions) -> Result<RunSummary> {
    let started = Instant::now();
    // Ctrl-C from here on stops the run after a step, with a snapshot (see crate::interrupt).
    let stop = crate::interrupt::stop_flag();
    let resumed_config = opts.resume.as_ref().map(|r| r.join("config.resolved.toml"));
    if opts.resume.is_some() && opts.pipeline.is_some() {
        bail!("--resume takes the pipeline from the run folder: give no pipeline file");
    }
    let source = match (&resumed_config, &opts.pipeline) {
        (Some(c), _) => Source::File(c),
        (None, Some(p)) => Source::File(p),
        (None, None) => Source::Demo,
    };
    let cfg = config::load(source, &opts.sets)?;
    let threads = opts.threads.unwrap_or(cfg.train.threads);
    set_threads(threads);

    // Every plugin is built (and so validated) before anything is read or written.
    let Plugins {
        chain,
        scheduler,
        sched_p,
        callbacks,
        resolved_transforms,
        resolved_callbacks,
        mode,
    } = build_plugins(registry, &cfg)?;

    let mut rng = rnnlab_core::seeded(cfg.seed);
    let prepared = rnnlab_data::prepare(&cfg.data, &mut rng).map_err(|e| anyhow!("data: {e}"))?;
    let (model_ctor, model_p) = registry
        .models
        .resolve(&cfg.model, "model", Some("recurrent"))?;
    let mut params = Params::new();
    let model = {
        let ctx = model_context(&prepared, registry);
        let mut pb = ParamBuilder::new(&mut params, &mut rng, DType::F32, Device::Cpu);
        model_ctor(&model_p, &ctx, &mut pb)?
    };
    tracing::info!(
        "model `{}`: {} trainable parameters; transforms {:?}; scheduler `{}`",
        model_p.str("type").unwrap_or("?"),
        model.params().trainable_count(),
        chain.names(),
        sched_p.str("type").unwrap_or("?"),
    );

    // Now the run folder: only after the whole pipeline was validated and the data read.
    let run_dir = match &opts.resume {
        Some(r) => r.clone(),
        None => make_run_dir(opts.out.as_deref(), opts.pipeline.as_deref())?,
    };
    let ckpt_dir = run_dir.join("checkpoints");
    std::fs::create_dir_all(&ckpt_dir)
        .with_context(|| format!("creating {}", ckpt_dir.display()))?;
    let resolved = resolved_config(
        &cfg,
        model_p.table(),
        &resolved_transforms,
        sched_p.table(),
        &resolved_callbacks,
    )?;
    write(&run_dir.join("config.resolved.toml"), &resolved)?;
    write(
        &run_dir.join("provenance.json"),
        &serde_json::to_string_pretty(&provenance(
            threads,
            &cfg,
            model.params().trainable_count(),
        ))?,
    )?;
    prepared
        .tokenizer
        .save(run_dir.join("tokenizer.json"), true)
        .map_err(|e| anyhow!("writing tokenizer.json: {e}"))?;
    write(
        &run_dir.join("labels.json"),
        &serde_json::to_string_pretty(&prepared.labels)?,
    )?;
    write(
        &run_dir.join("data_report.json"),
        &serde_json::to_string_pretty(&prepared.report)?,
    )?;

    let trainer_cfg = TrainerConfig {
        epochs: cfg.train.epochs,
        monitor: cfg.train.monitor.clone(),
        mode,
        progress: opts.progress && cfg.train.progress,
        metrics_path: Some(run_dir.join("metrics.jsonl")),
        checkpoint_dir: Some(ckpt_dir),
        run_dir: Some(run_dir.clone()),
        stop: Some(stop),
    };
    let mut trainer = Trainer::new(model, chain, scheduler, callbacks, trainer_cfg)?;
    let resume_point = match &opts.resume {
        Some(run) => {
            let (point, saved_rng) = resume_point(&mut trainer, run)?;
            rng = saved_rng;
            tracing::info!("resuming {} after epoch {}", run.display(), point.epoch);
            Some(point)
        }
        None => None,
    };
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
    Ok(RunSummary {
        run_dir,
        history: fit.history,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The plugins of a pipeline, built from its tables (and so validated), with their tables
/// with every default filled in.
struct Plugins {
    chain: Chain,
    scheduler: Box<dyn rnnlab_core::Scheduler>,
    sched_p: rnnlab_core::PluginParams,
    callbacks: Vec<Box<dyn rnnlab_core::Callback>>,
    resolved_transforms: Vec<toml::Table>,
    resolved_callbacks: Vec<toml::Table>,
    mode: Mode,
}

fn build_plugins(registry: &Registry, cfg: &PipelineConfig) -> Result<Plugins> {
    let mut resolved_transforms = Vec::new();
    let mut links = Vec::new();
    for (i, t) in cfg.optim.transforms.iter().enumerate() {
        let (link, p) = registry.transform(t, &format!("optim.transforms[{i}]"))?;
        links.push(link);
        resolved_transforms.push(p.table().clone());
    }
    let chain = Chain::new(links);
    let base_lr = chain.base_lr().ok_or_else(|| {
        anyhow!(
            "`optim.transforms` has no optimizer (adam, ...): {:?}",
            chain.names()
        )
    })?;
    let (scheduler, sched_p) =
        registry.scheduler(&cfg.optim.scheduler, "optim.scheduler", base_lr)?;
    let mut callbacks = Vec::new();
    let mut resolved_callbacks = Vec::new();
    for (i, t) in cfg.callbacks.iter().enumerate() {
        let (cb, p) = registry.callback(t, &format!("callbacks[{i}]"))?;
        callbacks.push(cb);
        resolved_callbacks.push(p.table().clone());
    }
    let mode = if cfg.train.mode == "min" {
        Mode::Min
    } else {
        Mode::Max
    };
    Ok(Plugins {
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
/// `train` makes before it starts. Returns the layered config.
pub fn check(registry: &Registry, source: Source, sets: &[String]) -> Result<PipelineConfig> {
    let cfg = config::load(source, sets)?;
    build_plugins(registry, &cfg)?;
    let (model_ctor, model_p) = registry
        .models
        .resolve(&cfg.model, "model", Some("recurrent"))?;
    let ctx = ModelContext {
        vocab_size: 2,
        num_classes: cfg.data.label_names().len().max(2),
        pretrained: None,
        freeze_embedding: false,
        pad_id: 0,
        registry,
    };
    let mut params = Params::new();
    let mut rng = rnnlab_core::seeded(cfg.seed);
    let mut pb = ParamBuilder::new(&mut params, &mut rng, DType::F32, Device::Cpu);
    model_ctor(&model_p, &ctx, &mut pb)?;
    Ok(cfg)
}

/// Loads the run's snapshot into `trainer` and the metrics of the epochs it covers.
fn resume_point(trainer: &mut Trainer, run: &Path) -> Result<(ResumePoint, rnnlab_core::Rng)> {
    let snap_path = run.join("checkpoints").join(SNAPSHOT);
    let tensors = checkpoint::load(&snap_path)
        .with_context(|| format!("{}: no snapshot to resume from", run.display()))?;
    let (mut point, rng) = trainer
        .restore(&StateDict { tensors })
        .with_context(|| format!("restoring {}", snap_path.display()))?;
    let metrics_path = run.join("metrics.jsonl");
    let history: Vec<_> = read_metrics(&metrics_path)?
        .into_iter()
        .filter(|m| m.get("epoch").is_some_and(|e| e <= point.epoch as f64))
        .collect();
    if history.len() != point.epoch {
        bail!(
            "{}: the snapshot is after epoch {} but the file has {} of those epochs",
            metrics_path.display(),
            point.epoch,
            history.len()
        );
    }
    point.history = history;
    Ok((point, rng))
}

/// A non-finite loss stops the run: say what was kept and what to do next.
fn explain_divergence(e: rnnlab_core::Error, run_dir: &Path) -> anyhow::Error {
    if !matches!(e, rnnlab_core::Error::NonFinite { .. }) {
        return e.into();
    }
    anyhow!(
        "{e}: training diverged. Kept in {run}: the epoch's figures up to that step in \
         metrics.jsonl (marked diverged), the checkpoints of the last completed epoch. \
         `rnnlab diagnose {run}` names the cause; a `skip_nonfinite` transform first in \
         optim.transforms skips such steps instead",
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

/// Sets the CPU threads of rayon (matrix products and the fused recurrent kernels); must run
/// before the pools start. Candle's element-wise ops stay on one thread unless
/// `CANDLE_NUM_THREADS` says otherwise: their pool spin-waits at a barrier after every op, which
/// costs more than it gains on these small tensors and steals a core from the fused kernels.
pub(crate) fn set_threads(threads: usize) {
    if threads > 0 {
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn make_run_dir(out: Option<&Path>, pipeline: Option<&Path>) -> Result<PathBuf> {
    let dir = match out {
        Some(d) => {
            if d.exists()
                && std::fs::read_dir(d)
                    .with_context(|| format!("reading {}", d.display()))?
                    .next()
                    .is_some()
            {
                bail!(
                    "run folder {} exists and is not empty: choose another --out or remove it",
                    d.display()
                );
            }
            d.to_path_buf()
        }
        None => {
            let stem = pipeline
                .and_then(|p| p.file_stem())
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "demo".into());
            let base = PathBuf::from("runs").join(format!("{stem}-{}", utc_stamp()));
            let mut d = base.clone();
            let mut n = 2;
            while d.exists() {
                d = PathBuf::from(format!("{}-{n}", base.display()));
                n += 1;
            }
            d
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// `YYYYMMDD-HHMMSS` in UTC.
fn utc_stamp() -> String {
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
    model: &toml::Table,
    transforms: &[toml::Table],
    scheduler: &toml::Table,
    callbacks: &[toml::Table],
) -> Result<String> {
    let mut c = cfg.clone();
    c.model = model.clone();
    c.optim.transforms = transforms.to_vec();
    c.optim.scheduler = scheduler.clone();
    c.callbacks = callbacks.to_vec();
    Ok(toml::to_string_pretty(&c)?)
}

fn provenance(threads: usize, cfg: &PipelineConfig, trainable: usize) -> serde_json::Value {
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
        "command_line": std::env::args().collect::<Vec<_>>(),
        "threads": threads,
        "seed": cfg.seed,
        "trainable_params": trainable,
        "started_utc": utc_stamp(),
        "data_dir": config::data_dir(),
    })
}

/// What a model constructor needs to know of the prepared data: vocabulary, classes, pretrained
/// rows, padding id.
pub(crate) fn model_context<'a>(
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
