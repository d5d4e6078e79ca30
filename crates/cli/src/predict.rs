//! `rnnlab predict RUN "text" ...`: the label and class probabilities of each text, from a run
//! folder's resolved config, tokenizer, labels and checkpoint.

use std::io::BufRead;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor, D};
use rnnlab_core::{checkpoint, Batch, Model, ModelContext, ParamBuilder, Params, Registry};

use crate::config::{self, Source};

/// A trained model loaded back from its run folder.
pub struct LoadedRun {
    /// The model with the checkpoint's weights.
    pub model: Box<dyn Model>,
    /// The run's tokenizer.
    pub tokenizer: tokenizers::Tokenizer,
    /// Class index → label.
    pub labels: Vec<String>,
}

/// One text's prediction.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Prediction {
    /// The text.
    pub text: String,
    /// The most probable label.
    pub label: String,
    /// Probability of each class, in label order.
    pub probabilities: Vec<f64>,
}

/// Loads `run`'s model from `checkpoints/{which}.safetensors` (`best` or `last`).
pub fn load_run(registry: &Registry, run: &Path, which: &str) -> Result<LoadedRun> {
    let cfg_path = run.join("config.resolved.toml");
    let cfg = config::load(Source::File(&cfg_path), &[])?;
    let tokenizer = tokenizers::Tokenizer::from_file(run.join("tokenizer.json"))
        .map_err(|e| anyhow!("{}: {e}", run.join("tokenizer.json").display()))?;
    let labels_path = run.join("labels.json");
    let labels: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(&labels_path)
            .with_context(|| format!("reading {}", labels_path.display()))?,
    )
    .with_context(|| format!("parsing {}", labels_path.display()))?;
    let ckpt_path = run.join("checkpoints").join(format!("{which}.safetensors"));
    let weights = checkpoint::load(&ckpt_path)?;
    let emb = weights
        .get("embedding.weight")
        .ok_or_else(|| anyhow!("{}: no `embedding.weight`", ckpt_path.display()))?;
    let (vocab, dim) = emb.dims2()?;
    if vocab != tokenizer.get_vocab_size(true) {
        bail!(
            "{}: embedding has {vocab} rows but tokenizer.json has {} words",
            ckpt_path.display(),
            tokenizer.get_vocab_size(true)
        );
    }
    let (ctor, p) = registry
        .models
        .resolve(&cfg.model, "model", Some("recurrent"))?;
    let mut params = Params::new();
    let mut rng = rnnlab_core::seeded(cfg.seed);
    let model = {
        let ctx = ModelContext {
            vocab_size: vocab,
            num_classes: labels.len(),
            // The checkpoint's rows replace these; only the shape matters here.
            pretrained: Some(Tensor::zeros((vocab, dim), DType::F32, &Device::Cpu)?),
            freeze_embedding: false,
            pad_id: 0,
            registry,
        };
        let mut pb = ParamBuilder::new(&mut params, &mut rng, DType::F32, Device::Cpu);
        ctor(&p, &ctx, &mut pb)?
    };
    model
        .params()
        .load_map(&weights)
        .with_context(|| format!("loading {}", ckpt_path.display()))?;
    Ok(LoadedRun {
        model,
        tokenizer,
        labels,
    })
}

impl LoadedRun {
    /// Predicts every text (in eval mode, so deterministically).
    pub fn predict(&self, texts: &[String]) -> Result<Vec<Prediction>> {
        let unk = self.tokenizer.token_to_id("<unk>").unwrap_or(1);
        let mut out = Vec::with_capacity(texts.len());
        let mut rng = rnnlab_core::seeded(0);
        for chunk in texts.chunks(256) {
            let ids: Vec<Vec<u32>> = chunk
                .iter()
                .map(|t| {
                    let enc = self
                        .tokenizer
                        .encode(t.as_str(), false)
                        .map_err(|e| anyhow!("tokenizing {t:?}: {e}"))?;
                    let ids = enc.get_ids().to_vec();
                    // A text with no token is one <unk>, as in training.
                    Ok(if ids.is_empty() { vec![unk] } else { ids })
                })
                .collect::<Result<_>>()?;
            let t = ids.iter().map(|v| v.len()).max().unwrap_or(1);
            let mut flat = vec![0u32; chunk.len() * t];
            for (i, v) in ids.iter().enumerate() {
                flat[i * t..i * t + v.len()].copy_from_slice(v);
            }
            let batch = Batch {
                ids: Tensor::from_vec(flat, (chunk.len(), t), &Device::Cpu)?,
                lengths: ids.iter().map(|v| v.len()).collect(),
                labels: Tensor::zeros(chunk.len(), DType::U32, &Device::Cpu)?,
            };
            let logits = self.model.forward(&batch, false, &mut rng)?;
            let probs = softmax_rows(&logits)?;
            for (text, p) in chunk.iter().zip(probs) {
                let best = p
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(i, _)| i)
                    .unwrap_or(0);
                out.push(Prediction {
                    text: text.clone(),
                    label: self.labels[best].clone(),
                    probabilities: p,
                });
            }
        }
        Ok(out)
    }
}

fn softmax_rows(logits: &Tensor) -> Result<Vec<Vec<f64>>> {
    let l = logits.to_dtype(DType::F64)?;
    let max = l.max_keepdim(D::Minus1)?;
    let e = l.broadcast_sub(&max)?.exp()?;
    let p = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
    Ok(p.to_vec2::<f64>()?)
}

/// `rnnlab predict`: texts from the arguments, or one per line from stdin when none are given.
pub fn run(registry: &Registry, run_dir: &Path, texts: Vec<String>, which: &str) -> Result<()> {
    let loaded = load_run(registry, run_dir, which)?;
    let texts = if texts.is_empty() {
        std::io::stdin()
            .lock()
            .lines()
            .collect::<std::io::Result<Vec<_>>>()
            .context("reading texts from stdin")?
    } else {
        texts
    };
    for p in loaded.predict(&texts)? {
        let probs = p
            .probabilities
            .iter()
            .zip(&loaded.labels)
            .map(|(v, l)| format!("{l}={v:.4}"))
            .collect::<Vec<_>>()
            .join(" ");
        println!("{}\t{}\t{}", p.label, probs, p.text);
    }
    Ok(())
}
