//! `rnnlab bench step`: the time of one full training step (embedding 16,000×50 trainable → cell
//! 50→128 → linear 128→5 → cross-entropy → backward → clip_global_norm 5 → Adam 1e-3), f32, run by
//! the project's own [`Trainer`] on synthetic batches; the recurrent layer's forward+backward
//! alone with the GFLOP/s it reaches; optionally the same from PyTorch, and per-step times on the
//! real data's padded random batches beside `torch_reference.py`'s.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::Rng as _;
use rnnlab_core::{
    not_one_of, Batch, BatchSource, BatchStats, Callback, Chain, EvalSplit, ModelContext,
    ParamBuilder, ParamInit, Params, Registry, Rng, TrainView, Trainer, TrainerConfig,
};

use super::{child, median, ratio, torch};
use rnnlab_pipeline::config::{self, Source};

/// Vocabulary rows of the synthetic step's embedding.
pub const VOCAB: usize = 16_000;
/// Embedding width (E).
pub const EMBED: usize = 50;
/// Hidden units (H).
pub const HIDDEN: usize = 128;
/// Classes.
pub const CLASSES: usize = 5;
/// The issue's targets for the step-time ratio rnnlab (fused) / PyTorch.
pub fn target(cell: &str) -> Option<f64> {
    match cell {
        "rnn" | "gru" => Some(0.7),
        "lstm" => Some(1.5),
        _ => None,
    }
}

/// Gate blocks G of a cell's weight matrices: 1 for `rnn`, 4 for `lstm` (i, f, g, o), 3 for
/// `gru` (r, z, n).
pub fn gates(cell: &str) -> Option<usize> {
    match cell {
        "rnn" => Some(1),
        "lstm" => Some(4),
        "gru" => Some(3),
        _ => None,
    }
}

/// Matrix-product FLOPs of one recurrent layer's forward+backward over `b` sequences of `t` steps,
/// input width `e`, hidden width `h`, `g` gate blocks (so W_ih is `[gh, e]`, W_hh `[gh, h]`),
/// counting a multiply-add as 2:
///
/// - forward: x·W_ihᵀ for all steps `2·b·t·e·gh`, h·W_hhᵀ at every step `2·b·t·h·gh`;
/// - backward: dX = dG·W_ih and dW_ih = dGᵀ·X, `2·2·b·t·e·gh`; dh = dG·W_hh and dW_hh = dGᵀ·H,
///   `2·2·b·t·h·gh`;
///
/// in all `6·b·t·g·h·(e + h)`. The element-wise gate work is not counted. LSTM at 64×32, 50→128:
/// 1.12 GFLOP.
pub fn recurrent_flops(b: usize, t: usize, e: usize, h: usize, g: usize) -> f64 {
    6.0 * b as f64 * t as f64 * g as f64 * h as f64 * (e + h) as f64
}

/// GFLOP/s of `flops` done in `ms` milliseconds.
pub fn gflops_per_s(flops: f64, ms: f64) -> f64 {
    flops / (ms * 1e-3) / 1e9
}

/// What `rnnlab bench step` measures (its command-line options).
#[derive(Clone, Debug, clap::Args)]
pub struct StepOptions {
    /// Cells, comma-separated.
    #[arg(long, default_value = "rnn,lstm,gru", value_parser = super::split_list)]
    // `std::vec::Vec`, not `Vec`: clap reads a bare `Vec<T>` as a repeated option; this is one
    // value that `split_list` cuts at the commas.
    pub cells: std::vec::Vec<String>,
    /// rnnlab encoder kernels, comma-separated: fused, reference.
    #[arg(long, default_value = "fused,reference", value_parser = super::split_list)]
    pub kernels: std::vec::Vec<String>,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Time steps of every sequence.
    #[arg(long, default_value_t = 32)]
    pub steps: usize,
    /// Timed iterations (the median is printed).
    #[arg(long, default_value_t = 30)]
    pub iters: usize,
    /// Untimed iterations first.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// CPU threads (rnnlab and PyTorch).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Seed of the weights and batches.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// A Python with torch: time PyTorch in the same run (e.g. python3).
    #[arg(long, value_name = "PYTHON")]
    pub torch: Option<String>,
    /// torch_reference.py (default: <RNNLAB_DATA>/../peers/torch_reference.py).
    #[arg(long, value_name = "FILE")]
    pub peer: Option<PathBuf>,
    /// Steps of the real-batch comparison (rt-kaggle-phrases, padded random batches of 64);
    /// 0 skips it.
    #[arg(long, default_value_t = 100)]
    pub real_steps: usize,
}

/// One implementation of one cell on the synthetic step.
#[derive(Clone, Debug)]
pub struct StepRow {
    /// rnn, lstm, gru.
    pub cell: String,
    /// `rnnlab fused`, `rnnlab reference`, `torch 2.15.0`.
    pub implementation: String,
    /// Milliseconds of each timed training step.
    pub step_ms: Vec<f64>,
    /// Milliseconds of each timed forward+backward of the recurrent layer alone.
    pub cell_ms: Vec<f64>,
    /// Tokens per step (batch × steps).
    pub tokens: usize,
    /// [`recurrent_flops`] of one forward+backward.
    pub flops: f64,
    /// Why there are no figures, when there are none.
    pub error: Option<String>,
}

impl StepRow {
    /// Median step time in ms.
    pub fn step_median(&self) -> Option<f64> {
        (!self.step_ms.is_empty()).then(|| median(&self.step_ms))
    }

    /// Median recurrent forward+backward time in ms.
    pub fn cell_median(&self) -> Option<f64> {
        (!self.cell_ms.is_empty()).then(|| median(&self.cell_ms))
    }

    /// Tokens per second of the median step.
    pub fn tokens_per_s(&self) -> Option<f64> {
        self.step_median()
            .map(|ms| self.tokens as f64 / (ms * 1e-3))
    }

    /// GFLOP/s of the recurrent forward+backward alone (median time).
    pub fn cell_gflops(&self) -> Option<f64> {
        self.cell_median().map(|ms| gflops_per_s(self.flops, ms))
    }
}

/// One implementation of one cell on the real data's padded random batches.
#[derive(Clone, Debug)]
pub struct RealRow {
    /// rnn, lstm, gru.
    pub cell: String,
    /// `rnnlab fused`, `torch_reference.py`, ...
    pub implementation: String,
    /// Mean milliseconds per step over the first steps of epoch 1 (training loop seconds / steps).
    pub ms_per_step: Option<f64>,
    /// Real (unpadded) tokens per second, when known.
    pub tokens_per_s: Option<f64>,
    /// Why there are no figures, when there are none.
    pub error: Option<String>,
}

/// Everything `rnnlab bench step` found.
#[derive(Clone, Debug)]
pub struct StepBench {
    /// What was asked.
    pub opts: StepOptions,
    /// Synthetic-step rows, cell by cell.
    pub rows: Vec<StepRow>,
    /// Real-batch rows (empty when skipped).
    pub real: Vec<RealRow>,
    /// Remarks printed at the end (skipped parts, versions).
    pub notes: Vec<String>,
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "–".into())
}

impl StepBench {
    /// The torch row of `cell`, if any.
    fn torch_row(&self, cell: &str) -> Option<&StepRow> {
        self.rows
            .iter()
            .find(|r| r.cell == cell && r.implementation.starts_with("torch"))
    }

    /// The printed report: a Markdown table of the synthetic step, the ratios, and the real-batch
    /// table.
    pub fn render(&self) -> String {
        let o = &self.opts;
        let mut s = format!(
            "## rnnlab bench step\n\n\
             One training step: embedding {VOCAB}×{EMBED} (trainable) → cell {EMBED}→{HIDDEN} → linear \
             {HIDDEN}→{CLASSES} → cross-entropy → backward → clip_global_norm 5 → Adam 1e-3; f32, batch {} × {} \
             steps (all full length), {} thread(s); median of {} iterations after {} warm-up. \
             rnnlab runs it through its Trainer; \"cell f+b\" is the recurrent layer's forward+backward \
             alone (input that requires grad, loss = sum of outputs), whose matrix products count \
             6·B·T·G·H·(E+H) FLOPs (G = 1 rnn, 4 lstm, 3 gru).\n\n\
             | cell | implementation | step ms | tokens/s | cell f+b ms | cell GFLOP | cell GFLOP/s | step / torch |\n\
             | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
            o.batch, o.steps, o.threads, o.iters, o.warmup
        );
        for r in &self.rows {
            if let Some(e) = &r.error {
                s += &format!(
                    "| {} | {} | unavailable: {e} | | | | | |\n",
                    r.cell, r.implementation
                );
                continue;
            }
            let vs = if r.implementation.starts_with("torch") {
                String::new()
            } else {
                let t = self.torch_row(&r.cell).and_then(StepRow::step_median);
                fmt(r.step_median().zip(t).and_then(|(a, b)| ratio(a, b)), 2) + "×"
            };
            s += &format!(
                "| {} | {} | {} | {} | {} | {:.3} | {} | {} |\n",
                r.cell,
                r.implementation,
                fmt(r.step_median(), 2),
                fmt(r.tokens_per_s(), 0),
                fmt(r.cell_median(), 2),
                r.flops / 1e9,
                fmt(r.cell_gflops(), 1),
                if self.torch_row(&r.cell).is_some() {
                    vs
                } else {
                    String::new()
                },
            );
        }
        let ratios: Vec<String> = o
            .cells
            .iter()
            .filter_map(|c| {
                let ours = self.rows.iter().find(|r| {
                    &r.cell == c && r.implementation == "rnnlab fused" && r.error.is_none()
                })?;
                let theirs = self.torch_row(c)?;
                let step = ratio(ours.step_median()?, theirs.step_median()?)?;
                let cell = ours
                    .cell_median()
                    .zip(theirs.cell_median())
                    .and_then(|(a, b)| ratio(a, b));
                // The targets are for the issue's shape: batch 64, 32 steps, 2 threads.
                let issue_shape = o.batch == 64 && o.steps == 32 && o.threads == 2;
                let tgt = target(c)
                    .filter(|_| issue_shape)
                    .map(|t| {
                        format!(
                            " (target ≤ {t}×: {})",
                            if step <= t { "met" } else { "not met" }
                        )
                    })
                    .unwrap_or_default();
                Some(format!(
                    "- {c}: step {step:.2}×{tgt}; cell f+b {}×",
                    fmt(cell, 2)
                ))
            })
            .collect();
        if !ratios.is_empty() {
            s += "\nrnnlab fused / torch:\n";
            s += &ratios.join("\n");
            s += "\n";
        }
        if !self.real.is_empty() {
            s += &format!(
                "\n### Real batches\n\n\
                 The first {} steps of epoch 1 on rt-kaggle-phrases/train.tsv (random 80/20, batch 64 in \
                 random order, each padded to its longest phrase: about 32 steps on average; dropout \
                 0.5; no clipping; Adam 1e-3): training-loop seconds / steps. rnnlab: \
                 pipelines/rt-CELL.toml with data.buckets=false, data.split = {{ val = 0, test = 0.2 }}, \
                 in this process. PyTorch: torch_reference.py --epochs 1 --max-steps {} (its loop also \
                 builds the batches).\n\n\
                 | cell | implementation | ms / step | real tokens/s | / torch |\n\
                 | --- | --- | ---: | ---: | ---: |\n",
                o.real_steps, o.real_steps
            );
            for r in &self.real {
                if let Some(e) = &r.error {
                    s += &format!(
                        "| {} | {} | unavailable: {e} | | |\n",
                        r.cell, r.implementation
                    );
                    continue;
                }
                let peer = self
                    .real
                    .iter()
                    .find(|p| p.cell == r.cell && p.implementation.starts_with("torch"))
                    .and_then(|p| p.ms_per_step);
                let vs = if r.implementation.starts_with("torch") {
                    String::new()
                } else {
                    r.ms_per_step
                        .zip(peer)
                        .and_then(|(a, b)| ratio(a, b))
                        .map(|x| format!("{x:.2}×"))
                        .unwrap_or_default()
                };
                s += &format!(
                    "| {} | {} | {} | {} | {vs} |\n",
                    r.cell,
                    r.implementation,
                    fmt(r.ms_per_step, 2),
                    fmt(r.tokens_per_s, 0)
                );
            }
        }
        if !self.notes.is_empty() {
            s += "\n";
            for n in &self.notes {
                s += &format!("Note: {n}\n");
            }
        }
        s
    }
}

/// Records the instant each training step ends (`on_batch_end`).
struct StepClock {
    ends: Arc<Mutex<Vec<Instant>>>,
}

impl Callback for StepClock {
    fn name(&self) -> &str {
        "bench_step_clock"
    }

    fn on_batch_end(&mut self, _stats: &BatchStats, _view: &TrainView) -> rnnlab_core::Result<()> {
        if let Ok(mut v) = self.ends.lock() {
            v.push(Instant::now());
        }
        Ok(())
    }
}

/// Fixed batches handed to the trainer: `train` for epoch 1, no held-out split.
struct FixedBatches {
    train: Vec<Batch>,
    classes: usize,
}

impl BatchSource for FixedBatches {
    fn train_batches(&mut self, _epoch: usize, _rng: &mut Rng) -> rnnlab_core::Result<Vec<Batch>> {
        Ok(self.train.clone())
    }

    fn eval_batches(&self, _split: EvalSplit) -> rnnlab_core::Result<Vec<Batch>> {
        Ok(Vec::new())
    }

    fn num_classes(&self) -> usize {
        self.classes
    }
}

/// The first `steps` training batches of another source, and no held-out split.
struct FirstSteps<'a, S: BatchSource> {
    inner: &'a mut S,
    steps: usize,
}

impl<S: BatchSource> BatchSource for FirstSteps<'_, S> {
    fn train_batches(&mut self, epoch: usize, rng: &mut Rng) -> rnnlab_core::Result<Vec<Batch>> {
        let mut b = self.inner.train_batches(epoch, rng)?;
        b.truncate(self.steps);
        Ok(b)
    }

    fn eval_batches(&self, _split: EvalSplit) -> rnnlab_core::Result<Vec<Batch>> {
        Ok(Vec::new())
    }

    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
}

/// A random batch: ids in `1..VOCAB` (never the pad id 0), every sequence `steps` long.
fn random_batch(rng: &mut Rng, batch: usize, steps: usize) -> Result<Batch> {
    let ids: Vec<u32> = (0..batch * steps)
        .map(|_| rng.random_range(1..VOCAB as u32))
        .collect();
    let labels: Vec<u32> = (0..batch)
        .map(|_| rng.random_range(0..CLASSES as u32))
        .collect();
    Ok(Batch {
        ids: Tensor::from_vec(ids, (batch, steps), &Device::Cpu)?,
        lengths: vec![steps; batch],
        labels: Tensor::from_vec(labels, batch, &Device::Cpu)?,
    })
}

fn table(text: &str, what: &str) -> Result<toml::Table> {
    toml::from_str(text).with_context(|| format!("bench: building the {what} table"))
}

/// The cell table of the synthetic step.
fn cell_table(cell: &str, kernel: &str) -> Result<toml::Table> {
    table(
        &format!("type = \"{cell}\"\nhidden = {HIDDEN}\nkernel = \"{kernel}\"\n"),
        "cell",
    )
}

/// A trainer built from config tables through the registry, as `rnnlab train` builds one.
fn build_trainer(
    registry: &Registry,
    model: &toml::Table,
    transforms: &[toml::Table],
    scheduler: &toml::Table,
    ctx: ModelContext,
    clock: Option<Arc<Mutex<Vec<Instant>>>>,
    rng: &mut Rng,
) -> Result<Trainer> {
    let mut links = Vec::new();
    let mut link_params = Vec::new();
    for (i, t) in transforms.iter().enumerate() {
        let (link, p) = registry.transform(t, &format!("optim.transforms[{i}]"))?;
        links.push(link);
        link_params.push(p);
    }
    let chain = Chain::new(links);
    let base_lr = Registry::base_lr(&link_params)
        .ok_or_else(|| anyhow!("the transforms have no optimizer: {:?}", chain.names()))?;
    let (sched, _) = registry.scheduler(scheduler, "optim.scheduler", base_lr)?;
    let mut init = ParamInit::new(rng, DType::F32, Device::Cpu);
    let (model, _) = registry.model(model, &ctx, &mut init)?;
    let callbacks: Vec<Box<dyn Callback>> = match clock {
        Some(ends) => vec![Box::new(StepClock { ends })],
        None => Vec::new(),
    };
    let cfg = TrainerConfig {
        epochs: 1,
        ..TrainerConfig::default()
    };
    Ok(Trainer::new(model, chain, sched, callbacks, cfg)?)
}

/// Times `warmup + iters` synthetic training steps of `cell` with `kernel` through
/// [`Trainer::fit`]; returns the timed steps' milliseconds (the gaps between step ends).
pub fn time_training_step(
    registry: &Registry,
    cell: &str,
    kernel: &str,
    o: &StepOptions,
) -> Result<Vec<f64>> {
    let mut rng = rnnlab_core::seeded(o.seed);
    let model = {
        let mut t = table(
            "type = \"recurrent\"\nembedding_dim = 50\ndropout = 0.0\npooling = \"last\"\n",
            "model",
        )?;
        t.insert("cell".into(), toml::Value::Table(cell_table(cell, kernel)?));
        t
    };
    let transforms = [
        table("type = \"clip_global_norm\"\nmax_norm = 5.0\n", "clip")?,
        table("type = \"adam\"\nlr = 1e-3\n", "adam")?,
    ];
    let ends = Arc::new(Mutex::new(Vec::new()));
    let ctx = ModelContext {
        vocab_size: VOCAB,
        num_classes: CLASSES,
        pretrained: None,
        freeze_embedding: false,
        pad_id: 0,
        registry,
    };
    let mut trainer = build_trainer(
        registry,
        &model,
        &transforms,
        &toml::Table::new(),
        ctx,
        Some(ends.clone()),
        &mut rng,
    )?;
    let distinct = (0..4)
        .map(|_| random_batch(&mut rng, o.batch, o.steps))
        .collect::<Result<Vec<_>>>()?;
    let warmup = o.warmup.max(1);
    let mut source = FixedBatches {
        train: (0..warmup + o.iters)
            .map(|i| distinct[i % distinct.len()].clone())
            .collect(),
        classes: CLASSES,
    };
    trainer.fit(&mut source, &mut rng)?;
    let ends = ends
        .lock()
        .map_err(|_| anyhow!("the step clock's lock is poisoned"))?
        .clone();
    if ends.len() != warmup + o.iters {
        bail!(
            "the trainer ran {} steps, expected {}",
            ends.len(),
            warmup + o.iters
        );
    }
    // Step i's time is the gap from step i-1's end to its own; the first `warmup` are not timed.
    Ok(ends
        .windows(2)
        .skip(warmup - 1)
        .map(|w| (w[1] - w[0]).as_secs_f64() * 1e3)
        .collect())
}

/// Times the recurrent layer's forward+backward alone (loss = sum of all outputs, the input a
/// variable so dX is computed as in training); returns the timed iterations' milliseconds.
pub fn time_cell(
    registry: &Registry,
    cell: &str,
    kernel: &str,
    o: &StepOptions,
) -> Result<Vec<f64>> {
    let mut rng = rnnlab_core::seeded(o.seed);
    let mut params = Params::new();
    let enc = {
        let mut pb = ParamBuilder::new(&mut params, &mut rng, DType::F32, Device::Cpu);
        rnnlab_models::encoder(
            &cell_table(cell, kernel)?,
            "bench.cell",
            EMBED,
            0.0,
            registry,
            &mut pb,
        )?
    };
    let x = rnnlab_core::uniform_tensor(
        &mut rng,
        &[o.batch, o.steps, EMBED],
        -1.0,
        1.0,
        DType::F32,
        &Device::Cpu,
    )?;
    let x = Var::from_tensor(&x)?;
    let lengths = vec![o.steps; o.batch];
    let warmup = o.warmup.max(1);
    let mut ms = Vec::with_capacity(o.iters);
    for i in 0..warmup + o.iters {
        let start = Instant::now();
        let out = enc.forward(x.as_tensor(), &lengths, true, &mut rng)?;
        let grads = out.outputs.sum_all()?.backward()?;
        if grads.get(x.as_tensor()).is_none() {
            bail!("the {cell} encoder's backward gave no input gradient");
        }
        drop(grads);
        if i >= warmup {
            ms.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(ms)
}

/// Mean ms per step of rnnlab on the real data's first `steps` padded random batches, and the
/// real tokens per second. The data is prepared once per distinct data config (`cache`).
fn real_rnnlab(
    registry: &Registry,
    cell: &str,
    kernel: &str,
    steps: usize,
    cache: &mut Vec<(rnnlab_data::DataConfig, rnnlab_data::Prepared, Rng)>,
) -> Result<(f64, f64)> {
    let pipeline = config::workspace_root().join(format!("pipelines/rt-{cell}.toml"));
    let sets = [
        "data.split.val=0.0".to_string(),
        "data.split.test=0.2".to_string(),
        "data.buckets=false".to_string(),
        format!("model.cell.kernel=\"{kernel}\""),
    ];
    let cfg = config::load(Source::File(&pipeline), &sets)
        .with_context(|| format!("loading {}", pipeline.display()))?;
    let k = match cache.iter().position(|(d, _, _)| *d == cfg.data) {
        Some(k) => k,
        None => {
            let mut rng = rnnlab_core::seeded(cfg.seed);
            let (reader, _) = rnnlab_data::readers::build(&registry.readers, &cfg.data)?;
            let prepared = rnnlab_data::prepare_with(&cfg.data, reader.as_ref(), &mut rng)
                .map_err(|e| anyhow!("data: {e}"))?;
            cache.push((cfg.data.clone(), prepared, rng));
            cache.len() - 1
        }
    };
    let (_, prepared, rng_after) = &mut cache[k];
    let mut rng = rng_after.clone();
    let ctx = rnnlab_pipeline::train::model_context(prepared, registry);
    let mut trainer = build_trainer(
        registry,
        &cfg.model,
        &cfg.optim.transforms,
        &cfg.optim.scheduler,
        ctx,
        None,
        &mut rng,
    )?;
    let mut source = FirstSteps {
        inner: &mut prepared.source,
        steps,
    };
    let fit = trainer.fit(&mut source, &mut rng)?;
    let m = fit
        .history
        .first()
        .ok_or_else(|| anyhow!("the trainer ran no epoch"))?;
    let secs = m
        .get("epoch_seconds")
        .ok_or_else(|| anyhow!("no epoch_seconds in the epoch's metrics"))?;
    let tps = m.get("tokens_per_second").unwrap_or(f64::NAN);
    let n = trainer.step().max(1);
    Ok((secs * 1e3 / n as f64, tps))
}

/// Mean ms per step of `torch_reference.py --epochs 1 --max-steps steps`.
fn real_peer(
    python: &str,
    peer: &Path,
    cell: &str,
    steps: usize,
    threads: usize,
    dir: &Path,
) -> Result<f64> {
    let mut c = torch::peer_command(
        python,
        peer,
        &torch::PeerArgs {
            cell: cell.into(),
            epochs: 1,
            seed: 42,
            threads,
            max_steps: steps,
        },
    )?;
    let run = child::run_measured(&mut c, dir, &format!("peer-steps-{cell}"))?;
    run.check()?;
    let e = torch::parse_peer_output(&run.stdout)?;
    Ok(e[0].train_s * 1e3 / steps as f64)
}

/// Checks the options: known cells and kernels, positive sizes.
fn validate(o: &StepOptions) -> Result<()> {
    for c in &o.cells {
        if gates(c).is_none() {
            bail!("--cells: {}", not_one_of(c, &["rnn", "lstm", "gru"]));
        }
    }
    for k in &o.kernels {
        if k != "fused" && k != "reference" {
            bail!("--kernels: {}", not_one_of(k, &["fused", "reference"]));
        }
    }
    if o.cells.is_empty() || o.kernels.is_empty() {
        bail!("--cells and --kernels need at least one value each");
    }
    for (name, v) in [
        ("--batch", o.batch),
        ("--steps", o.steps),
        ("--iters", o.iters),
        ("--threads", o.threads),
    ] {
        if v == 0 {
            bail!("{name} must be positive");
        }
    }
    Ok(())
}

/// Runs `rnnlab bench step`.
pub fn bench_step(registry: &Registry, o: &StepOptions) -> Result<StepBench> {
    validate(o)?;
    // The same thread set-up as `rnnlab train`: a pool of `--threads` threads.
    rnnlab_pipeline::train::thread_pool(o.threads)?.install(|| bench_step_in_pool(registry, o))
}

fn bench_step_in_pool(registry: &Registry, o: &StepOptions) -> Result<StepBench> {
    let mut bench = StepBench {
        opts: o.clone(),
        rows: Vec::new(),
        real: Vec::new(),
        notes: Vec::new(),
    };
    bench.notes.extend(super::load_note("before the run"));
    let tmp = tempfile::tempdir().context("creating a temporary folder")?;
    // Cell by cell, rnnlab then PyTorch, so both sides of a ratio see the machine in the same state.
    for cell in &o.cells {
        let g = gates(cell).unwrap_or(1);
        let flops = recurrent_flops(o.batch, o.steps, EMBED, HIDDEN, g);
        for kernel in &o.kernels {
            tracing::info!("bench step: rnnlab {cell} {kernel}");
            let mut row = StepRow {
                cell: cell.clone(),
                implementation: format!("rnnlab {kernel}"),
                step_ms: Vec::new(),
                cell_ms: Vec::new(),
                tokens: o.batch * o.steps,
                flops,
                error: None,
            };
            match time_training_step(registry, cell, kernel, o)
                .and_then(|s| Ok((s, time_cell(registry, cell, kernel, o)?)))
            {
                Ok((s, c)) => {
                    row.step_ms = s;
                    row.cell_ms = c;
                }
                Err(e) => row.error = Some(format!("{e:#}")),
            }
            bench.rows.push(row);
        }
        if let Some(python) = &o.torch {
            tracing::info!("bench step: torch {cell} ({python})");
            for t in torch::run_step_script(python, o, cell, tmp.path())? {
                if !bench.notes.iter().any(|n| n.starts_with("PyTorch")) {
                    bench.notes.push(format!(
                        "PyTorch {} (oneDNN {}), {} thread(s), run by {python}.",
                        t.version,
                        if t.mkldnn {
                            "available"
                        } else {
                            "not available"
                        },
                        o.threads
                    ));
                }
                bench.rows.push(StepRow {
                    cell: t.cell,
                    implementation: format!("torch {}", t.version),
                    step_ms: t.step_ms,
                    cell_ms: t.cell_ms,
                    tokens: o.batch * o.steps,
                    flops,
                    error: None,
                });
            }
        }
    }
    if o.real_steps > 0 {
        let (data, glove) = torch::peer_data();
        if !data.is_file() || !glove.is_file() {
            bench.notes.push(format!(
                "real-batch comparison skipped: {} or {} is missing (set RNNLAB_DATA)",
                data.display(),
                glove.display()
            ));
        } else {
            let peer = o.peer.clone().unwrap_or_else(torch::default_peer);
            let mut cache = Vec::new();
            for cell in &o.cells {
                for kernel in &o.kernels {
                    tracing::info!("bench step: real batches, rnnlab {cell} {kernel}");
                    let r = real_rnnlab(registry, cell, kernel, o.real_steps, &mut cache);
                    bench.real.push(RealRow {
                        cell: cell.clone(),
                        implementation: format!("rnnlab {kernel}"),
                        ms_per_step: r.as_ref().ok().map(|r| r.0),
                        tokens_per_s: r.as_ref().ok().map(|r| r.1),
                        error: r.err().map(|e| format!("{e:#}")),
                    });
                }
                if let Some(python) = &o.torch {
                    tracing::info!("bench step: real batches, torch_reference.py {cell}");
                    let r = real_peer(python, &peer, cell, o.real_steps, o.threads, tmp.path());
                    bench.real.push(RealRow {
                        cell: cell.clone(),
                        implementation: "torch_reference.py".into(),
                        ms_per_step: r.as_ref().ok().copied(),
                        tokens_per_s: None,
                        error: r.err().map(|e| format!("{e:#}")),
                    });
                }
            }
        }
    }
    Ok(bench)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flops_follow_the_shapes() {
        // 6·64·32·4·128·178 = 1,119,879,168: the ≈1.1 GFLOP of an LSTM step in DESIGN.md.
        assert_eq!(recurrent_flops(64, 32, 50, 128, 4), 1_119_879_168.0);
        assert_eq!(recurrent_flops(64, 32, 50, 128, 1), 279_969_792.0);
        assert_eq!(recurrent_flops(64, 32, 50, 128, 3), 839_909_376.0);
        // By hand for a tiny shape: b=1,t=1,e=1,h=1,g=1: forward 2+2, backward 4+4 = 12.
        assert_eq!(recurrent_flops(1, 1, 1, 1, 1), 12.0);
        assert_eq!(gates("lstm"), Some(4));
        assert_eq!(gates("gru"), Some(3));
        assert_eq!(gates("rnn"), Some(1));
        assert_eq!(gates("cnn"), None);
        // 1.12 GFLOP in 3.75 ms (PyTorch + oneDNN in DESIGN.md) is ≈ 298.6 GFLOP/s.
        let g = gflops_per_s(1_119_879_168.0, 3.75);
        assert!((g - 298.634_444_8).abs() < 1e-6, "{g}");
    }

    fn row(cell: &str, imp: &str, step: &[f64], cell_ms: &[f64]) -> StepRow {
        StepRow {
            cell: cell.into(),
            implementation: imp.into(),
            step_ms: step.to_vec(),
            cell_ms: cell_ms.to_vec(),
            tokens: 2048,
            flops: recurrent_flops(64, 32, 50, 128, gates(cell).unwrap()),
            error: None,
        }
    }

    #[test]
    fn the_report_has_the_medians_and_ratios() {
        let opts = StepOptions {
            cells: vec!["lstm".into()],
            kernels: vec!["fused".into()],
            batch: 64,
            steps: 32,
            iters: 3,
            warmup: 1,
            threads: 2,
            seed: 1,
            torch: Some("python3".into()),
            peer: None,
            real_steps: 0,
        };
        let b = StepBench {
            opts,
            rows: vec![
                row("lstm", "rnnlab fused", &[9.0, 8.0, 100.0], &[4.0, 5.0, 6.0]),
                row("lstm", "torch 2.15.0", &[6.0, 6.2, 5.0], &[3.75, 3.7, 3.8]),
            ],
            real: Vec::new(),
            notes: vec!["hello".into()],
        };
        let r = &b.rows[0];
        assert_eq!(r.step_median(), Some(9.0));
        // 2048 tokens in 9 ms.
        assert!((r.tokens_per_s().unwrap() - 227_555.555).abs() < 1e-2);
        // 1.119879168 GFLOP in 5 ms.
        assert!((r.cell_gflops().unwrap() - 223.975_833_6).abs() < 1e-6);
        let text = b.render();
        // 9 / 6 = 1.5: the LSTM target (≤ 1.5×) is met; cell 5 / 3.75 = 1.33.
        assert!(
            text.contains("- lstm: step 1.50× (target ≤ 1.5×: met); cell f+b 1.33×"),
            "{text}"
        );
        assert!(
            text.contains("| lstm | rnnlab fused | 9.00 | 227556 | 5.00 | 1.120 | 224.0 | 1.50× |"),
            "{text}"
        );
        assert!(text.contains("Note: hello"));
    }

    #[test]
    fn bad_options_are_refused() {
        let mut o = StepOptions {
            cells: vec!["lstm".into()],
            kernels: vec!["fused".into()],
            batch: 1,
            steps: 1,
            iters: 1,
            warmup: 1,
            threads: 1,
            seed: 1,
            torch: None,
            peer: None,
            real_steps: 0,
        };
        assert!(validate(&o).is_ok());
        o.cells = vec!["transformer".into()];
        let e = format!("{:#}", validate(&o).unwrap_err());
        assert!(
            e.contains("--cells: `transformer` is not one of rnn, lstm, gru"),
            "{e}"
        );
        o.cells = vec!["rnn".into()];
        o.kernels = vec!["fuse".into()];
        let e = format!("{:#}", validate(&o).unwrap_err());
        assert!(
            e.ends_with("`fuse` is not one of fused, reference, did you mean `fused`?"),
            "{e}"
        );
        o.kernels = vec!["reference".into()];
        o.iters = 0;
        assert!(format!("{:#}", validate(&o).unwrap_err()).contains("--iters"));
    }
}
