//! The one training loop: every model, cell, transform, scheduler and callback runs through it.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Tensor, D};

use crate::{
    checkpoint, quantile, Batch, BatchSource, BatchStats, Callback, Chain, Confusion, Control,
    EpochMetrics, Error, EvalSplit, Grads, Interval, MetricsWriter, Model, Outcome, Result, Rng,
    Scheduler, StateDict, StepContext, StepReport, TrainView,
};

/// Which way a monitored metric improves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Larger is better (accuracy).
    Max,
    /// Smaller is better (loss).
    Min,
}

impl Mode {
    /// Whether `new` is better than `best`.
    pub fn better(self, new: f64, best: f64) -> bool {
        match self {
            Mode::Max => new > best,
            Mode::Min => new < best,
        }
    }
}

/// How the trainer runs and where it writes.
#[derive(Clone, Debug)]
pub struct TrainerConfig {
    /// Epochs to train.
    pub epochs: usize,
    /// The metric that picks the best checkpoint (default `val_acc`).
    pub monitor: String,
    /// Which way `monitor` improves.
    pub mode: Mode,
    /// Show a progress bar (only drawn when stderr is a terminal).
    pub progress: bool,
    /// Where `metrics.jsonl` goes; none to keep metrics in memory only.
    pub metrics_path: Option<PathBuf>,
    /// Where `last.safetensors` and `best.safetensors` go; none to write no checkpoint.
    pub checkpoint_dir: Option<PathBuf>,
    /// The run folder handed to callbacks.
    pub run_dir: Option<PathBuf>,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        TrainerConfig {
            epochs: 1,
            monitor: "val_acc".into(),
            mode: Mode::Max,
            progress: false,
            metrics_path: None,
            checkpoint_dir: None,
            run_dir: None,
        }
    }
}

/// Loss and confusion matrix of one split.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// Mean cross-entropy per example.
    pub loss: f64,
    /// Counts of true × predicted class.
    pub confusion: Confusion,
}

/// The file in the checkpoint folder that holds a whole resumable snapshot.
pub const SNAPSHOT: &str = "last.state.safetensors";

/// Where a resumed run starts: after `epoch`, with the metrics of the epochs done.
#[derive(Clone, Debug, Default)]
pub struct ResumePoint {
    /// Epochs completed.
    pub epoch: usize,
    /// Their metrics (written back to `metrics.jsonl`).
    pub history: Vec<EpochMetrics>,
    /// The best monitored value so far.
    pub best: Option<f64>,
}

/// What [`Trainer::fit`] returns.
#[derive(Clone, Debug)]
pub struct FitResult {
    /// Every epoch's metrics.
    pub history: Vec<EpochMetrics>,
    /// The last epoch's validation evaluation, when there is a validation split.
    pub val: Option<Evaluation>,
    /// The last epoch's test evaluation, when there is a test split.
    pub test: Option<Evaluation>,
    /// Why training stopped early, if a callback stopped it.
    pub stopped: Option<String>,
}

/// Fits a model: forward, loss, backward, callbacks, scheduler, transform chain, write.
pub struct Trainer {
    /// The model.
    pub model: Box<dyn Model>,
    /// The gradient transforms, in order.
    pub chain: Chain,
    /// The learning-rate schedule.
    pub scheduler: Box<dyn Scheduler>,
    /// Callbacks, in config order.
    pub callbacks: Vec<Box<dyn Callback>>,
    /// Settings.
    pub config: TrainerConfig,
    step: usize,
}

impl Trainer {
    /// A trainer at step 0.
    pub fn new(
        model: Box<dyn Model>,
        chain: Chain,
        scheduler: Box<dyn Scheduler>,
        callbacks: Vec<Box<dyn Callback>>,
        config: TrainerConfig,
    ) -> Result<Self> {
        let mut t = Trainer {
            model,
            chain,
            scheduler,
            callbacks,
            config,
            step: 0,
        };
        t.chain.init(t.model.params())?;
        Ok(t)
    }

    /// Optimizer steps taken so far.
    pub fn step(&self) -> usize {
        self.step
    }

    /// Trains for the configured epochs, evaluating val and test after each.
    pub fn fit(&mut self, data: &mut dyn BatchSource, rng: &mut Rng) -> Result<FitResult> {
        self.fit_from(data, rng, None)
    }

    /// Trains from a snapshot's epoch on (see [`Trainer::restore`]); with `None`, from scratch.
    /// `metrics.jsonl` is rewritten with the resumed history before training goes on.
    pub fn fit_from(
        &mut self,
        data: &mut dyn BatchSource,
        rng: &mut Rng,
        resume: Option<ResumePoint>,
    ) -> Result<FitResult> {
        let num_classes = data.num_classes();
        let val_batches = data.eval_batches(EvalSplit::Val)?;
        let test_batches = data.eval_batches(EvalSplit::Test)?;
        let recurrent = self.model.recurrent_weights();
        let resume = resume.unwrap_or_default();
        let mut writer = match &self.config.metrics_path {
            Some(p) => Some(MetricsWriter::create_with(p, &resume.history)?),
            None => None,
        };
        let run_dir = self.config.run_dir.clone();
        let view = |params, epoch, step| TrainView {
            params,
            recurrent: &recurrent,
            epoch,
            step,
            run_dir: run_dir.as_deref(),
            val: None,
            test: None,
        };
        for cb in self.callbacks.iter_mut() {
            cb.on_train_start(&view(self.model.params(), 0, self.step))?;
        }
        let mut result = FitResult {
            history: resume.history,
            val: None,
            test: None,
            stopped: None,
        };
        let mut best: Option<f64> = resume.best;
        for epoch in resume.epoch + 1..=self.config.epochs {
            let batches = data.train_batches(epoch, rng)?;
            let started = Instant::now();
            let bar = progress_bar(
                self.config.progress,
                batches.len(),
                epoch,
                self.config.epochs,
            );
            let (mut loss_sum, mut right, mut seen, mut tokens) = (0.0, 0usize, 0usize, 0usize);
            let (mut norms, mut clipped, mut skipped) = (Vec::with_capacity(batches.len()), 0, 0);
            let mut lr = f64::NAN;
            // Transforms' figures of each step (name, sum, count), logged as epoch means.
            let mut figures: Vec<(String, f64, usize)> = Vec::new();
            for batch in &batches {
                let logits = self.model.forward(batch, true, rng)?;
                let loss = self.model.loss(&logits, &batch.labels)?;
                let loss_v = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                if !loss_v.is_finite() {
                    return Err(Error::NonFinite {
                        what: "loss".into(),
                        epoch,
                        step: self.step,
                    });
                }
                let mut store = loss.backward()?;
                let params = self.model.params();
                let mut grads = Grads::from_backward(params, &mut store)?;
                drop(store);
                let grad_norm = grads.global_norm()?;
                for cb in self.callbacks.iter_mut() {
                    cb.on_after_backward(&grads, &view(params, epoch, self.step))?;
                }
                let t = match self.scheduler.interval() {
                    Interval::Step => self.step,
                    Interval::Epoch => epoch - 1,
                };
                lr = self.scheduler.lr(t);
                let ctx = StepContext {
                    step: self.step,
                    epoch,
                    lr,
                };
                let mut report = StepReport::default();
                let outcome = self.chain.apply(&mut grads, params, &ctx, &mut report)?;
                let was_skipped = matches!(outcome, Outcome::Skip(_));
                match outcome {
                    Outcome::Update => {
                        apply_updates(params, &grads)?;
                        self.chain.after_step(params, &ctx)?;
                        self.step += 1;
                    }
                    Outcome::Skip(_) => {
                        skipped += 1;
                        self.step += 1;
                    }
                    // A micro-batch taken into an accumulation: the optimizer step comes later.
                    Outcome::Accumulate => {}
                }
                if report.clipped {
                    clipped += 1;
                }
                for (name, v) in report.figures {
                    match figures.iter_mut().find(|(n, _, _)| *n == name) {
                        Some(f) => {
                            f.1 += v;
                            f.2 += 1;
                        }
                        None => figures.push((name, v, 1)),
                    }
                }
                let n = batch.size();
                right += correct(&logits, &batch.labels)?;
                seen += n;
                tokens += batch.tokens();
                loss_sum += loss_v * n as f64;
                norms.push(grad_norm);
                let stats = BatchStats {
                    loss: loss_v,
                    grad_norm,
                    lr,
                    skipped: was_skipped,
                    clipped: report.clipped,
                    batch_size: n,
                };
                for cb in self.callbacks.iter_mut() {
                    cb.on_batch_end(&stats, &view(params, epoch, self.step))?;
                }
                bar.set_message(format!("loss {loss_v:.4} |g| {grad_norm:.2}"));
                bar.inc(1);
            }
            bar.finish_and_clear();
            let train_seconds = started.elapsed().as_secs_f64();

            let mut m = EpochMetrics::new();
            m.set("epoch", epoch as f64);
            m.set("train_loss", loss_sum / seen.max(1) as f64);
            m.set("train_acc", 100.0 * right as f64 / seen.max(1) as f64);
            let eval_started = Instant::now();
            let averaged = self.chain.averaged_params()?;
            if averaged.is_some() {
                // Weight averaging is on: the raw weights' figures are logged as raw_*, and the
                // averaged weights are evaluated (and selected on) under the usual names.
                let raw_val = self.evaluate_batches(&val_batches, num_classes, rng)?;
                let raw_test = self.evaluate_batches(&test_batches, num_classes, rng)?;
                log_eval(&mut m, "raw_val", &raw_val);
                log_eval(&mut m, "raw_test", &raw_test);
            }
            let raw_weights = match &averaged {
                Some(avg) => Some(swap_in(self.model.params(), avg)?),
                None => None,
            };
            result.val = self.evaluate_batches(&val_batches, num_classes, rng)?;
            result.test = self.evaluate_batches(&test_batches, num_classes, rng)?;
            log_eval(&mut m, "val", &result.val);
            log_eval(&mut m, "test", &result.test);
            // Deep copies: `to_map` shares the variables' storage, which the swap below
            // overwrites with the raw weights again.
            let eval_weights = match &raw_weights {
                Some(_) => deep_copy(&self.model.params().to_map())?,
                None => self.model.params().to_map(),
            };
            if let Some(raw) = &raw_weights {
                swap_in(self.model.params(), raw)?;
            }
            m.set("lr", lr);
            m.set("grad_norm_p50", quantile(&norms, 0.5));
            m.set("grad_norm_p99", quantile(&norms, 0.99));
            m.set(
                "grad_norm_max",
                norms.iter().copied().fold(f64::NAN, f64::max),
            );
            m.set("clipped_frac", clipped as f64 / batches.len().max(1) as f64);
            m.set("skipped_steps", skipped as f64);
            for (name, sum, count) in &figures {
                m.set(name.clone(), sum / *count as f64);
            }
            m.set("epoch_seconds", train_seconds);
            m.set("eval_seconds", eval_started.elapsed().as_secs_f64());
            m.set("tokens_per_second", tokens as f64 / train_seconds.max(1e-9));

            self.scheduler.on_epoch_end(&m)?;
            let mut stop = None;
            let epoch_view = TrainView {
                val: result.val.as_ref(),
                test: result.test.as_ref(),
                ..view(self.model.params(), epoch, self.step)
            };
            for cb in self.callbacks.iter_mut() {
                if let Control::Stop(why) = cb.on_epoch_end(&mut m, &epoch_view)? {
                    stop.get_or_insert(format!("{}: {why}", cb.name()));
                }
            }
            if let Some(w) = writer.as_mut() {
                w.append(&m)?;
            }
            for cb in self.callbacks.iter_mut() {
                cb.on_epoch_logged(&m, &epoch_view)?;
            }
            tracing::info!(
                "epoch {epoch}/{}: train_loss {:.4} train_acc {:.2} val_acc {} test_acc {} ({:.1}s)",
                self.config.epochs,
                m.get("train_loss").unwrap_or(f64::NAN),
                m.get("train_acc").unwrap_or(f64::NAN),
                fmt_opt(m.get("val_acc")),
                fmt_opt(m.get("test_acc")),
                train_seconds
            );
            if let Some(dir) = &self.config.checkpoint_dir {
                checkpoint::save(&self.model.params().to_map(), &dir.join("last.safetensors"))?;
                if let Some(v) = m.get(&self.config.monitor) {
                    if best.is_none_or(|b| self.config.mode.better(v, b)) {
                        best = Some(v);
                        // The weights that were evaluated: the averaged ones when averaging is on.
                        checkpoint::save(&eval_weights, &dir.join("best.safetensors"))?;
                    }
                }
                // One file, written atomically, is the whole resumable state of this epoch end.
                let snap = self.snapshot(epoch, best, rng)?;
                checkpoint::save(&snap.tensors, &dir.join(SNAPSHOT))?;
            }
            result.history.push(m);
            if let Some(why) = stop {
                tracing::info!("stopping after epoch {epoch}: {why}");
                result.stopped = Some(why);
                break;
            }
        }
        let epochs_run = result.history.len();
        let end_view = TrainView {
            val: result.val.as_ref(),
            test: result.test.as_ref(),
            ..view(self.model.params(), epochs_run, self.step)
        };
        for cb in self.callbacks.iter_mut() {
            cb.on_train_end(&result.history, &end_view)?;
        }
        Ok(result)
    }

    /// The state that resumes training exactly: every transform's, the scheduler's and every
    /// callback's, with the step and epoch counters (`trainer.step`, `trainer.epoch`).
    pub fn training_state(&self, epoch: usize) -> Result<StateDict> {
        let mut s = StateDict::new();
        s.insert_scalar("trainer.step", self.step as f64)?;
        s.insert_scalar("trainer.epoch", epoch as f64)?;
        s.extend_prefixed("chain", self.chain.state_dict()?);
        s.extend_prefixed("scheduler", self.scheduler.state_dict()?);
        for (i, cb) in self.callbacks.iter().enumerate() {
            s.extend_prefixed(&format!("callbacks.{i}.{}", cb.name()), cb.state_dict()?);
        }
        Ok(s)
    }

    /// Everything needed to continue exactly after `epoch`: [`Trainer::training_state`], the
    /// model's parameters (`model.*`), the best monitored value and the generator's state.
    pub fn snapshot(&self, epoch: usize, best: Option<f64>, rng: &Rng) -> Result<StateDict> {
        let mut s = self.training_state(epoch)?;
        s.insert_scalar("trainer.best", best.unwrap_or(f64::NAN))?;
        let rng_json = serde_json::to_vec(rng)
            .map_err(|e| Error::Mismatch(format!("cannot save the generator: {e}")))?;
        let n = rng_json.len();
        s.insert(
            "trainer.rng",
            Tensor::from_vec(rng_json, n, &candle_core::Device::Cpu)?,
        );
        for (k, t) in self.model.params().to_map() {
            s.insert(format!("model.{k}"), t);
        }
        Ok(s)
    }

    /// Loads a [`Trainer::snapshot`]: parameters, transform, scheduler and callback state;
    /// returns where to resume and the generator to resume with.
    pub fn restore(&mut self, s: &StateDict) -> Result<(ResumePoint, Rng)> {
        self.model.params().load_map(&s.sub("model").tensors)?;
        let epoch = self.load_training_state(s)?;
        let best = s.scalar("trainer.best")?;
        let bytes = s.tensor("trainer.rng")?.to_vec1::<u8>()?;
        let rng: Rng = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Mismatch(format!("cannot restore the generator: {e}")))?;
        let point = ResumePoint {
            epoch,
            history: Vec::new(),
            best: (!best.is_nan()).then_some(best),
        };
        Ok((point, rng))
    }

    /// Restores [`Trainer::training_state`]'s output (the parameters are loaded separately).
    pub fn load_training_state(&mut self, s: &StateDict) -> Result<usize> {
        self.step = s.scalar("trainer.step")? as usize;
        self.chain.load_state_dict(&s.sub("chain"))?;
        self.scheduler.load_state_dict(&s.sub("scheduler"))?;
        for (i, cb) in self.callbacks.iter_mut().enumerate() {
            let prefix = format!("callbacks.{i}.{}", cb.name());
            cb.load_state_dict(&s.sub(&prefix))?;
        }
        Ok(s.scalar("trainer.epoch")? as usize)
    }

    fn evaluate_batches(
        &self,
        batches: &[Batch],
        num_classes: usize,
        rng: &mut Rng,
    ) -> Result<Option<Evaluation>> {
        if batches.is_empty() {
            return Ok(None);
        }
        evaluate(self.model.as_ref(), batches, num_classes, rng).map(Some)
    }
}

/// Loss and confusion matrix of `model` on `batches`, in evaluation mode.
pub fn evaluate(
    model: &dyn Model,
    batches: &[Batch],
    num_classes: usize,
    rng: &mut Rng,
) -> Result<Evaluation> {
    let mut confusion = Confusion::new(num_classes);
    let mut loss_sum = 0.0;
    let mut n = 0usize;
    for b in batches {
        let logits = model.forward(b, false, rng)?.detach();
        let loss = crate::cross_entropy(&logits, &b.labels, None)?;
        loss_sum += loss.to_dtype(DType::F64)?.to_scalar::<f64>()? * b.size() as f64;
        n += b.size();
        let pred = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
        let truth = b.labels.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        for (t, p) in truth.iter().zip(pred.iter()) {
            confusion.add(*t as usize, *p as usize);
        }
    }
    Ok(Evaluation {
        loss: loss_sum / n.max(1) as f64,
        confusion,
    })
}

/// Adds each update to its parameter: `p ← p + u`.
pub fn apply_updates(params: &crate::Params, updates: &Grads) -> Result<()> {
    for (p, (name, u)) in params.trainable().zip(updates.iter()) {
        debug_assert_eq!(p.name, name);
        let next = p.var.as_tensor().add(&u.to_dtype(p.var.dtype())?)?;
        p.var.set(&next)?;
    }
    Ok(())
}

fn log_eval(m: &mut EpochMetrics, prefix: &str, ev: &Option<Evaluation>) {
    if let Some(ev) = ev {
        m.set(format!("{prefix}_loss"), ev.loss);
        m.set(format!("{prefix}_acc"), ev.confusion.accuracy());
        m.set(format!("{prefix}_macro_f1"), ev.confusion.macro_f1());
    }
}

/// Writes `weights` into the parameters they name; returns deep copies of the values replaced.
fn swap_in(
    params: &crate::Params,
    weights: &std::collections::BTreeMap<String, Tensor>,
) -> Result<std::collections::BTreeMap<String, Tensor>> {
    let mut old = std::collections::BTreeMap::new();
    for (name, w) in weights {
        if let Some(p) = params.get(name) {
            old.insert(name.clone(), p.var.as_tensor().copy()?);
            p.var.set(&w.to_dtype(p.var.dtype())?)?;
        }
    }
    Ok(old)
}

fn deep_copy(
    weights: &std::collections::BTreeMap<String, Tensor>,
) -> Result<std::collections::BTreeMap<String, Tensor>> {
    weights
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.copy()?)))
        .collect()
}

fn correct(logits: &Tensor, labels: &Tensor) -> Result<usize> {
    let pred = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
    let truth = labels.to_dtype(DType::U32)?.to_vec1::<u32>()?;
    Ok(pred
        .iter()
        .zip(truth.iter())
        .filter(|(p, t)| p == t)
        .count())
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into())
}

fn progress_bar(on: bool, len: usize, epoch: usize, epochs: usize) -> indicatif::ProgressBar {
    if !on || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    let style = indicatif::ProgressStyle::with_template(
        "epoch {prefix} [{bar:30}] {pos}/{len} {elapsed}<{eta} {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(format!("{epoch}/{epochs}"));
    bar
}
