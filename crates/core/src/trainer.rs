//! The one training loop: every model, cell, transform, scheduler and callback runs through it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Tensor, D};

use crate::{
    checkpoint, quantile, Batch, BatchSource, BatchStats, Callback, Chain, Confusion, Control,
    EpochMetrics, Error, EvalSplit, Grads, Interval, Model, Outcome, Params, RecurrentWeight,
    Result, Rng, Scheduler, StateDict, StepContext, StepReport, TrainView,
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

/// How the trainer runs and where it writes. The metrics file and the model checkpoints are
/// callbacks' work (the command line adds them to every run); the trainer writes only the
/// snapshot a run resumes from.
#[derive(Clone, Debug)]
pub struct TrainerConfig {
    /// Epochs to train.
    pub epochs: usize,
    /// Where the resumable snapshot ([`SNAPSHOT`]) goes; none to write none.
    pub checkpoint_dir: Option<PathBuf>,
    /// The run folder handed to callbacks.
    pub run_dir: Option<PathBuf>,
    /// Set (by a signal handler, say) to ask the trainer to stop: it finishes the current step,
    /// writes a snapshot that resumes mid-epoch, and returns with [`FitResult::interrupted`].
    pub stop: Option<Arc<AtomicBool>>,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        TrainerConfig {
            epochs: 1,
            checkpoint_dir: None,
            run_dir: None,
            stop: None,
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

/// The run folder's folder of checkpoints: the trainer's snapshot, and the model checkpoint
/// callback's weights.
pub const CHECKPOINT_DIR: &str = "checkpoints";

/// The file in the checkpoint folder that holds a whole resumable snapshot.
pub const SNAPSHOT: &str = "last.state.safetensors";

/// The file beside `best.safetensors` that says which epoch it holds: `{"epoch", "monitor",
/// "mode", "value"}` (written by the model checkpoint callback; eval and the summary read it).
pub const BEST_RECORD: &str = "best.json";

/// Where a resumed run starts: after `epoch`, with the metrics of the epochs done.
#[derive(Clone, Debug, Default)]
pub struct ResumePoint {
    /// Epochs completed.
    pub epoch: usize,
    /// Their metrics (the run's history goes on from them).
    pub history: Vec<EpochMetrics>,
    /// The next epoch's progress when the snapshot was taken mid-epoch (after an interrupt).
    pub partial: Option<EpochProgress>,
}

/// An epoch in progress: where it is and its running figures, all a mid-epoch snapshot needs to
/// go on exactly as if it had not stopped.
#[derive(Clone, Debug)]
pub struct EpochProgress {
    /// The generator as it was before the epoch's batches were drawn (they are drawn again).
    pub epoch_rng: Rng,
    /// Batches done.
    pub batches: usize,
    loss_sum: f64,
    right: usize,
    seen: usize,
    tokens: usize,
    norms: Vec<f64>,
    clipped: usize,
    skipped: usize,
    lr: f64,
    /// Transforms' figures of each step (name, sum, count), logged as epoch means.
    figures: Vec<(String, f64, usize)>,
    /// Training seconds before the snapshot.
    seconds: f64,
}

impl EpochProgress {
    fn start(epoch_rng: Rng) -> Self {
        EpochProgress {
            epoch_rng,
            batches: 0,
            loss_sum: 0.0,
            right: 0,
            seen: 0,
            tokens: 0,
            norms: Vec::new(),
            clipped: 0,
            skipped: 0,
            lr: f64::NAN,
            figures: Vec::new(),
            seconds: 0.0,
        }
    }

    /// `train_loss` and `train_acc` of the steps so far (a step whose loss was not finite is
    /// left out of both).
    /// Train loss and accuracy over the examples of the steps with a finite loss; NaN (a null
    /// in metrics.jsonl) when every step was skipped, not a loss and accuracy of 0.
    fn train_figures(&self, m: &mut EpochMetrics) {
        let seen = if self.seen == 0 {
            f64::NAN
        } else {
            self.seen as f64
        };
        m.set("train_loss", self.loss_sum / seen);
        m.set("train_acc", 100.0 * self.right as f64 / seen);
    }

    /// `lr`, the gradient-norm percentiles, `clipped_frac` and `skipped_steps` over `steps`
    /// steps, and the transforms' figures.
    fn step_figures(&self, m: &mut EpochMetrics, steps: usize) {
        m.set("lr", self.lr);
        m.set("grad_norm_p50", quantile(&self.norms, 0.5));
        m.set("grad_norm_p99", quantile(&self.norms, 0.99));
        m.set(
            "grad_norm_max",
            self.norms.iter().copied().fold(f64::NAN, f64::max),
        );
        m.set("clipped_frac", self.clipped as f64 / steps.max(1) as f64);
        m.set("skipped_steps", self.skipped as f64);
        for (name, sum, count) in &self.figures {
            m.set(name.clone(), sum / *count as f64);
        }
    }

    /// Adds one step: its loss and accuracy when the loss was finite (`right` is `Some`), its
    /// tokens, gradient norm, clipping and the transforms' figures.
    fn record(&mut self, batch: &Batch, stats: &BatchStats, right: Option<usize>, r: StepReport) {
        if stats.clipped {
            self.clipped += 1;
        }
        for (name, v) in r.figures {
            match self.figures.iter_mut().find(|(n, _, _)| *n == name) {
                Some(f) => {
                    f.1 += v;
                    f.2 += 1;
                }
                None => self.figures.push((name, v, 1)),
            }
        }
        if let Some(right) = right {
            self.right += right;
            self.seen += stats.batch_size;
            self.loss_sum += stats.loss * stats.batch_size as f64;
        }
        self.tokens += batch.tokens();
        self.norms.push(stats.grad_norm);
        self.batches += 1;
    }

    /// The step figures of the finished epoch of `steps` steps, then its timings
    /// (`self.seconds` is its training time).
    fn epoch_figures(&self, m: &mut EpochMetrics, steps: usize, eval_started: Instant) {
        self.step_figures(m, steps);
        m.set("epoch_seconds", self.seconds);
        m.set("eval_seconds", eval_started.elapsed().as_secs_f64());
        m.set(
            "tokens_per_second",
            self.tokens as f64 / self.seconds.max(1e-9),
        );
    }

    /// The record of an epoch that stopped at a non-finite loss in step `step` (numbered as
    /// the callbacks see it): marked `partial` and `diverged`, the step's number, loss and
    /// gradient norm, and the figures of the epoch's steps before it (`steps` counts them).
    fn diverged_record(&self, epoch: usize, step: usize, stats: &BatchStats) -> EpochMetrics {
        let mut m = EpochMetrics::new();
        m.set("epoch", epoch as f64);
        m.set("partial", 1.0);
        m.set("diverged", 1.0);
        m.set("diverged_step", step as f64);
        m.set("diverged_loss", stats.loss);
        m.set("diverged_grad_norm", stats.grad_norm);
        m.set("steps", self.batches as f64);
        self.train_figures(&mut m);
        self.step_figures(&mut m, self.batches);
        m.set("epoch_seconds", self.seconds);
        m
    }

    fn save(&self, s: &mut StateDict) -> Result<()> {
        let p = "trainer.partial";
        s.insert_json(&format!("{p}.rng"), &self.epoch_rng)?;
        for (k, v) in [
            ("batches", self.batches as f64),
            ("loss_sum", self.loss_sum),
            ("right", self.right as f64),
            ("seen", self.seen as f64),
            ("tokens", self.tokens as f64),
            ("clipped", self.clipped as f64),
            ("skipped", self.skipped as f64),
            ("lr", self.lr),
            ("seconds", self.seconds),
        ] {
            s.insert_scalar(format!("{p}.{k}"), v)?;
        }
        s.insert_f64s(format!("{p}.norms"), &self.norms)?;
        let names: Vec<&str> = self.figures.iter().map(|f| f.0.as_str()).collect();
        let sums: Vec<f64> = self.figures.iter().map(|f| f.1).collect();
        let counts: Vec<f64> = self.figures.iter().map(|f| f.2 as f64).collect();
        s.insert_json(&format!("{p}.figure_names"), &names)?;
        s.insert_f64s(format!("{p}.figure_sums"), &sums)?;
        s.insert_f64s(format!("{p}.figure_counts"), &counts)?;
        Ok(())
    }

    /// The progress saved in `s`, if the snapshot was taken mid-epoch.
    fn load(s: &StateDict) -> Result<Option<Self>> {
        let s = s.sub("trainer.partial");
        if s.is_empty() {
            return Ok(None);
        }
        let count = |k: &str| -> Result<usize> { Ok(s.scalar(k)? as usize) };
        let names: Vec<String> = s.json("figure_names")?;
        let (sums, counts) = (s.f64s("figure_sums")?, s.f64s("figure_counts")?);
        if sums.len() != names.len() || counts.len() != names.len() {
            return Err(Error::Mismatch(
                "snapshot: the figures of `trainer.partial` do not match their names".into(),
            ));
        }
        Ok(Some(EpochProgress {
            epoch_rng: s.json("rng")?,
            batches: count("batches")?,
            loss_sum: s.scalar("loss_sum")?,
            right: count("right")?,
            seen: count("seen")?,
            tokens: count("tokens")?,
            norms: s.f64s("norms")?,
            clipped: count("clipped")?,
            skipped: count("skipped")?,
            lr: s.scalar("lr")?,
            figures: names
                .into_iter()
                .zip(sums)
                .zip(counts)
                .map(|((n, v), c)| (n, v, c as usize))
                .collect(),
            seconds: s.scalar("seconds")?,
        }))
    }
}

/// Where [`Trainer::fit_from`] stopped when it was asked to ([`TrainerConfig::stop`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interruption {
    /// The epoch in progress (1-based), or the one just completed when `batch == batches`.
    pub epoch: usize,
    /// Its batches done.
    pub batch: usize,
    /// Its batches.
    pub batches: usize,
    /// Optimizer steps taken.
    pub step: usize,
    /// Whether a snapshot that resumes from here was written (there is a checkpoint folder).
    pub snapshot: bool,
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
    /// Where training stopped when [`TrainerConfig::stop`] was set (no `on_train_end` then).
    pub interrupted: Option<Interruption>,
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

/// What one [`Trainer::fit_from`] holds from start to end: the evaluation batches, the model's
/// recurrent matrices and the run folder (for the callbacks' views).
struct Fit {
    val: Vec<Batch>,
    test: Vec<Batch>,
    num_classes: usize,
    recurrent: Vec<RecurrentWeight>,
    run_dir: Option<PathBuf>,
}

impl Fit {
    fn new(t: &Trainer, data: &mut dyn BatchSource) -> Result<Self> {
        Ok(Fit {
            val: data.eval_batches(EvalSplit::Val)?,
            test: data.eval_batches(EvalSplit::Test)?,
            num_classes: data.num_classes(),
            recurrent: t.model.recurrent_weights(),
            run_dir: t.config.run_dir.clone(),
        })
    }

    /// The callbacks' view at `epoch` / `step`, without evaluations.
    fn view<'a>(&'a self, params: &'a Params, epoch: usize, step: usize) -> TrainView<'a> {
        TrainView {
            params,
            recurrent: &self.recurrent,
            epoch,
            step,
            run_dir: self.run_dir.as_deref(),
            val: None,
            test: None,
            weights: None,
        }
    }

    /// [`Fit::view`] with the latest val and test evaluations and, at an epoch end, the weights
    /// they were made with.
    fn evaluated_view<'a>(
        &'a self,
        params: &'a Params,
        epoch: usize,
        step: usize,
        result: &'a FitResult,
        weights: Option<&'a BTreeMap<String, Tensor>>,
    ) -> TrainView<'a> {
        TrainView {
            val: result.val.as_ref(),
            test: result.test.as_ref(),
            weights,
            ..self.view(params, epoch, step)
        }
    }
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
    pub fn fit_from(
        &mut self,
        data: &mut dyn BatchSource,
        rng: &mut Rng,
        resume: Option<ResumePoint>,
    ) -> Result<FitResult> {
        let fresh = resume.is_none();
        let resume = resume.unwrap_or_default();
        let fit = Fit::new(self, data)?;
        let view = fit.view(self.model.params(), 0, self.step);
        for cb in self.callbacks.iter_mut() {
            cb.on_train_start(&resume.history, &view)?;
        }
        if fresh {
            // A run stopped before its first epoch ended resumes from here.
            self.save_snapshot(0, rng)?;
        }
        let mut result = FitResult {
            history: resume.history,
            val: None,
            test: None,
            stopped: None,
            interrupted: None,
        };
        let mut partial = resume.partial;
        for epoch in resume.epoch + 1..=self.config.epochs {
            // A mid-epoch snapshot draws the epoch's batches again from the generator it had
            // then; `rng` already is where the snapshot left it.
            let (mut p, batches) = match partial.take() {
                Some(p) => {
                    let batches = data.train_batches(epoch, &mut p.epoch_rng.clone())?;
                    (p, batches)
                }
                None => (
                    EpochProgress::start(rng.clone()),
                    data.train_batches(epoch, rng)?,
                ),
            };
            let started = Instant::now();
            for cb in self.callbacks.iter_mut() {
                let v = fit.view(self.model.params(), epoch, self.step);
                cb.on_epoch_start(batches.len(), p.batches, &v)?;
            }
            for batch in batches.iter().skip(p.batches) {
                if self.stop_requested() {
                    p.seconds += started.elapsed().as_secs_f64();
                    result.interrupted =
                        Some(self.interrupt(epoch - 1, Some(&p), batches.len(), rng)?);
                    return Ok(result);
                }
                self.train_step(batch, epoch, &mut p, &fit, started, rng)?;
            }
            p.seconds += started.elapsed().as_secs_f64();
            let mut m = EpochMetrics::new();
            m.set("epoch", epoch as f64);
            p.train_figures(&mut m);
            let eval_started = Instant::now();
            let eval_weights = self.evaluate_epoch(&fit, &mut m, &mut result, rng)?;
            p.epoch_figures(&mut m, batches.len(), eval_started);
            let stop = self.end_epoch_hooks(epoch, &mut m, &fit, &result, &eval_weights)?;
            self.save_snapshot(epoch, rng)?;
            result.history.push(m);
            if let Some(why) = stop {
                tracing::info!("stopping after epoch {epoch}: {why}");
                result.stopped = Some(why);
                break;
            }
            if epoch < self.config.epochs && self.stop_requested() {
                // The snapshot of this epoch end is the place to resume from.
                result.interrupted = Some(self.interrupt(epoch, None, batches.len(), rng)?);
                return Ok(result);
            }
        }
        let epochs = result.history.len();
        let end_view = fit.evaluated_view(self.model.params(), epochs, self.step, &result, None);
        for cb in self.callbacks.iter_mut() {
            cb.on_train_end(&result.history, &end_view)?;
        }
        Ok(result)
    }

    /// One batch: forward, loss, backward, the chain, the update, the epoch's running figures
    /// and `on_batch_end`. A non-finite loss that no transform drops (skip_nonfinite) stops the
    /// run without an update: the epoch so far is logged and [`Error::NonFinite`] returned.
    fn train_step(
        &mut self,
        batch: &Batch,
        epoch: usize,
        p: &mut EpochProgress,
        fit: &Fit,
        started: Instant,
        rng: &mut Rng,
    ) -> Result<()> {
        let logits = self.model.forward(batch, true, rng)?;
        let loss = self.model.loss(&logits, &batch.labels)?;
        let loss_v = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let mut store = loss.backward()?;
        let params = self.model.params();
        let mut grads = Grads::from_backward(params, &mut store)?;
        drop(store);
        let grad_norm = grads.global_norm()?;
        for cb in self.callbacks.iter_mut() {
            cb.on_after_backward(&grads, &fit.view(params, epoch, self.step))?;
        }
        let lr = self.scheduler.lr(match self.scheduler.interval() {
            Interval::Step => self.step,
            Interval::Epoch => epoch - 1,
        });
        p.lr = lr;
        let ctx = StepContext {
            step: self.step,
            epoch,
            lr,
            loss: loss_v,
        };
        let mut report = StepReport::default();
        let outcome = self.chain.apply(&mut grads, params, &ctx, &mut report)?;
        // A non-finite loss that no link dropped: never apply its update.
        let outcome = match outcome {
            Outcome::Skip(_) => Some(outcome),
            _ if !loss_v.is_finite() => None,
            _ => Some(outcome),
        };
        let mut stats = BatchStats {
            loss: loss_v,
            grad_norm,
            lr,
            skipped: false,
            clipped: false,
            batch_size: batch.size(),
        };
        let Some(outcome) = outcome else {
            p.seconds += started.elapsed().as_secs_f64();
            // The step as the callbacks (steps.jsonl) number it: this one included.
            let step = self.step + 1;
            let m = p.diverged_record(epoch, step, &stats);
            for cb in self.callbacks.iter_mut() {
                cb.on_batch_end(&stats, &fit.view(params, epoch, step))?;
            }
            // The partial record's view has no evaluated weights: no model checkpoint is written,
            // the last epoch end's stay.
            for cb in self.callbacks.iter_mut() {
                cb.on_epoch_logged(&m, &fit.view(params, epoch, step))?;
            }
            return Err(Error::NonFinite {
                what: "loss".into(),
                epoch,
                step,
            });
        };
        stats.skipped = matches!(outcome, Outcome::Skip(_));
        stats.clipped = report.clipped;
        match outcome {
            Outcome::Update => {
                apply_updates(params, &grads)?;
                self.chain.after_step(params, &ctx)?;
                self.step += 1;
            }
            Outcome::Skip(_) => {
                p.skipped += 1;
                self.step += 1;
            }
            // A micro-batch taken into an accumulation: the optimizer step comes later.
            Outcome::Accumulate => {}
        }
        let right = match loss_v.is_finite() {
            true => Some(correct(&logits, &batch.labels)?),
            false => None,
        };
        p.record(batch, &stats, right, report);
        for cb in self.callbacks.iter_mut() {
            cb.on_batch_end(&stats, &fit.view(params, epoch, self.step))?;
        }
        Ok(())
    }

    /// Evaluates val and test into `m` and `result`: with weight averaging on, the averaged
    /// weights under the usual names and the raw ones as `raw_val_*` / `raw_test_*`. Returns the
    /// weights evaluated (what `best.safetensors` keeps); the model holds the raw ones again.
    fn evaluate_epoch(
        &mut self,
        fit: &Fit,
        m: &mut EpochMetrics,
        result: &mut FitResult,
        rng: &mut Rng,
    ) -> Result<BTreeMap<String, Tensor>> {
        let averaged = self.chain.averaged_params()?;
        if averaged.is_some() {
            let raw_val = self.evaluate_batches(&fit.val, fit.num_classes, rng)?;
            let raw_test = self.evaluate_batches(&fit.test, fit.num_classes, rng)?;
            log_eval(m, "raw_val", &raw_val);
            log_eval(m, "raw_test", &raw_test);
        }
        let raw_weights = match &averaged {
            Some(avg) => Some(swap_in(self.model.params(), avg)?),
            None => None,
        };
        result.val = self.evaluate_batches(&fit.val, fit.num_classes, rng)?;
        result.test = self.evaluate_batches(&fit.test, fit.num_classes, rng)?;
        log_eval(m, "val", &result.val);
        log_eval(m, "test", &result.test);
        // Deep copies: `to_map` shares the variables' storage, which the swap below overwrites
        // with the raw weights again.
        let eval_weights = match &raw_weights {
            Some(_) => deep_copy(&self.model.params().to_map())?,
            None => self.model.params().to_map(),
        };
        if let Some(raw) = &raw_weights {
            swap_in(self.model.params(), raw)?;
        }
        Ok(eval_weights)
    }

    /// The epoch end's hooks, in order: the scheduler, `on_epoch_end` (which may add figures or
    /// ask to stop), `on_epoch_logged` (the loggers and the model checkpoint), the log line.
    /// Returns the first stop request, named by its callback.
    fn end_epoch_hooks(
        &mut self,
        epoch: usize,
        m: &mut EpochMetrics,
        fit: &Fit,
        result: &FitResult,
        weights: &BTreeMap<String, Tensor>,
    ) -> Result<Option<String>> {
        self.scheduler.on_epoch_end(m)?;
        let mut stop = None;
        let params = self.model.params();
        let view = fit.evaluated_view(params, epoch, self.step, result, Some(weights));
        for cb in self.callbacks.iter_mut() {
            if let Control::Stop(why) = cb.on_epoch_end(m, &view)? {
                stop.get_or_insert(format!("{}: {why}", cb.name()));
            }
        }
        for cb in self.callbacks.iter_mut() {
            cb.on_epoch_logged(m, &view)?;
        }
        tracing::info!(
            "epoch {epoch}/{}: train_loss {:.4} train_acc {:.2} val_acc {} test_acc {} ({:.1}s)",
            self.config.epochs,
            m.get("train_loss").unwrap_or(f64::NAN),
            m.get("train_acc").unwrap_or(f64::NAN),
            fmt_opt(m.get("val_acc")),
            fmt_opt(m.get("test_acc")),
            m.get("epoch_seconds").unwrap_or(f64::NAN)
        );
        Ok(stop)
    }

    /// The snapshot after `epoch`, the whole resumable state, when the run has a checkpoint
    /// folder (at an epoch end after the callbacks', so their state, the model checkpoint's
    /// best included, is this epoch's).
    fn save_snapshot(&self, epoch: usize, rng: &Rng) -> Result<()> {
        let Some(dir) = &self.config.checkpoint_dir else {
            return Ok(());
        };
        let snap = self.snapshot(epoch, rng)?;
        checkpoint::save(&snap.tensors, &dir.join(SNAPSHOT))
    }

    fn stop_requested(&self) -> bool {
        self.config
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::SeqCst))
    }

    /// Stops after `epochs_done` epochs and, mid-epoch, the progress `p` of the next: writes the
    /// snapshot to resume from (an epoch end's is already written).
    fn interrupt(
        &self,
        epochs_done: usize,
        p: Option<&EpochProgress>,
        batches: usize,
        rng: &Rng,
    ) -> Result<Interruption> {
        let snapshot = self.config.checkpoint_dir.is_some();
        if let (Some(dir), Some(p)) = (&self.config.checkpoint_dir, p) {
            let mut snap = self.snapshot(epochs_done, rng)?;
            p.save(&mut snap)?;
            checkpoint::save(&snap.tensors, &dir.join(SNAPSHOT))?;
        }
        let (epoch, batch) = match p {
            Some(p) => (epochs_done + 1, p.batches),
            None => (epochs_done, batches),
        };
        tracing::warn!(
            "stopped on request in epoch {epoch} after batch {batch} of {batches} (step {})",
            self.step
        );
        Ok(Interruption {
            epoch,
            batch,
            batches,
            step: self.step,
            snapshot,
        })
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
    /// model's parameters (`model.*`) and the generator's state.
    pub fn snapshot(&self, epoch: usize, rng: &Rng) -> Result<StateDict> {
        let mut s = self.training_state(epoch)?;
        s.insert_json("trainer.rng", rng)?;
        for (k, t) in self.model.params().to_map() {
            s.insert(format!("model.{k}"), t);
        }
        Ok(s)
    }

    /// Loads a [`Trainer::snapshot`] (or a mid-epoch one, written when the trainer was asked
    /// to stop): parameters, transform, scheduler and callback state; returns where to resume
    /// and the generator to resume with.
    pub fn restore(&mut self, s: &StateDict) -> Result<(ResumePoint, Rng)> {
        self.model.params().load_map(&s.sub("model").tensors)?;
        let epoch = self.load_training_state(s)?;
        let rng: Rng = s.json("trainer.rng")?;
        let point = ResumePoint {
            epoch,
            history: Vec::new(),
            partial: EpochProgress::load(s)?,
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
