//! `rnnlab predict RUN "text" ...`: the label and class probabilities of each text, from a run
//! folder's resolved config, tokenizer, labels and checkpoint.

use std::io::{BufRead, Read};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor, D};
use rnnlab_core::{checkpoint, Batch, Model, ModelContext, ParamInit, Registry};

use crate::config::{self, Source};

/// A trained model loaded back from its run folder.
pub struct LoadedRun {
    /// The model with the checkpoint's weights.
    pub model: Box<dyn Model>,
    /// The run's tokenizer.
    pub tokenizer: tokenizers::Tokenizer,
    /// Class index → label.
    pub labels: Vec<String>,
    /// Tokens of a text the model sees at most: the run's `data.tokenizer.max_len`, or
    /// [`rnnlab_data::config::DEFAULT_MAX_LEN`] when the run has none.
    pub max_tokens: usize,
}

/// The most of one text `predict` reads (1 MiB); the rest of a longer line is skipped, with a
/// warning. Far more than `max_len` tokens of any text.
pub const MAX_TEXT_BYTES: usize = 1 << 20;

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

/// `checkpoints/{which}.safetensors` of `run` (`which`: `best` or `last`).
pub fn checkpoint_path(run: &Path, which: &str) -> std::path::PathBuf {
    run.join(rnnlab_core::CHECKPOINT_DIR)
        .join(format!("{which}.safetensors"))
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
    let ckpt_path = checkpoint_path(run, which);
    let weights = checkpoint::load(&ckpt_path).map_err(|e| match which {
        "best" => anyhow!(
            "{e}; `--checkpoint last` loads the last epoch's weights \
             (checkpoints/last.safetensors) instead"
        ),
        _ => anyhow!("{e}"),
    })?;
    let vocab = tokenizer.get_vocab_size(true);
    let ctx = ModelContext {
        vocab_size: vocab,
        num_classes: labels.len(),
        // The checkpoint holds the embedding (and its width): the builder loads every parameter.
        pretrained: None,
        freeze_embedding: false,
        pad_id: tokenizer
            .token_to_id(rnnlab_data::tokenizer::PAD_TOKEN)
            .unwrap_or(rnnlab_data::tokenizer::PAD_ID),
        registry,
    };
    let mut rng = rnnlab_core::seeded(cfg.seed);
    let mut init = ParamInit::from_weights(&mut rng, &weights, DType::F32, Device::Cpu);
    let (model, _) = registry
        .model(&cfg.model, &ctx, &mut init)
        .map_err(|e| anyhow!("{}: {e}", ckpt_path.display()))?;
    let unknown = model.params().unknown_in(&weights);
    if !unknown.is_empty() {
        bail!(
            "{}: tensors the run's model does not have: {unknown:?}",
            ckpt_path.display()
        );
    }
    let max_tokens = match cfg.data.tokenizer.max_len {
        0 => rnnlab_data::config::DEFAULT_MAX_LEN,
        n => n,
    };
    Ok(LoadedRun {
        model,
        tokenizer,
        labels,
        max_tokens,
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
                    let ids = enc.get_ids();
                    let ids = ids[..ids.len().min(self.max_tokens)].to_vec();
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

/// Reads one line of at most `cap` bytes (without its line end) into `line`; the rest of a
/// longer line is skipped. Returns `None` at the end of the input, else whether it was cut.
pub fn read_capped_line(
    input: &mut impl BufRead,
    cap: usize,
    line: &mut String,
) -> std::io::Result<Option<bool>> {
    let mut buf = Vec::new();
    // Room for the line end (`\r\n`) after `cap` bytes of text.
    let n = (&mut *input)
        .take(cap as u64 + 2)
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    let ended = buf.last() == Some(&b'\n');
    if ended {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    let cut = buf.len() > cap;
    if cut {
        buf.truncate(cap);
        if !ended {
            input.skip_until(b'\n')?;
        }
    }
    line.clear();
    match String::from_utf8(buf) {
        Ok(s) => line.push_str(&s),
        // A cut may split a character: keep the whole ones.
        Err(e) if cut => {
            let valid = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            line.push_str(std::str::from_utf8(&bytes[..valid]).unwrap_or_default());
        }
        Err(e) => {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
        }
    }
    Ok(Some(cut))
}

/// `text` cut to at most `cap` bytes, on a character boundary.
fn capped(text: &str, cap: usize) -> &str {
    if text.len() <= cap {
        return text;
    }
    let mut end = cap;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn print_predictions(loaded: &LoadedRun, texts: &[String]) -> Result<()> {
    for p in loaded.predict(texts)? {
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

/// `rnnlab predict`: texts from the arguments, or one per line from stdin when none are given,
/// 256 at a time. Each text is read up to [`MAX_TEXT_BYTES`] and cut to the run's `max_len`
/// tokens.
pub fn run(registry: &Registry, run_dir: &Path, texts: Vec<String>, which: &str) -> Result<()> {
    let loaded = load_run(registry, run_dir, which)?;
    let warn_cut = |n: usize| {
        tracing::warn!(
            "text {n} is longer than {} MiB: only its beginning was read (the model sees at \
             most {} tokens)",
            MAX_TEXT_BYTES >> 20,
            loaded.max_tokens
        )
    };
    if !texts.is_empty() {
        let texts: Vec<String> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if t.len() > MAX_TEXT_BYTES {
                    warn_cut(i + 1);
                }
                capped(t, MAX_TEXT_BYTES).to_string()
            })
            .collect();
        return print_predictions(&loaded, &texts);
    }
    let mut input = std::io::stdin().lock();
    let mut batch = Vec::new();
    let mut line = String::new();
    let mut n = 0;
    while let Some(cut) = read_capped_line(&mut input, MAX_TEXT_BYTES, &mut line)
        .context("reading texts from stdin")?
    {
        n += 1;
        if cut {
            warn_cut(n);
        }
        batch.push(std::mem::take(&mut line));
        if batch.len() == 256 {
            print_predictions(&loaded, &batch)?;
            batch.clear();
        }
    }
    print_predictions(&loaded, &batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_and_skipped_to_their_end() {
        let text = "short\r\nééééé tail\nlast";
        let mut input = std::io::Cursor::new(text.as_bytes());
        let mut line = String::new();
        let mut got = Vec::new();
        while let Some(cut) = read_capped_line(&mut input, 5, &mut line).unwrap() {
            got.push((line.clone(), cut));
        }
        // "ééééé" is 10 bytes: 5 bytes hold two whole characters.
        assert_eq!(
            got,
            [
                ("short".to_string(), false),
                ("éé".to_string(), true),
                ("last".to_string(), false)
            ]
        );
        assert_eq!(capped("ééé", 5), "éé");
        assert_eq!(capped("abc", 5), "abc");
    }
}
