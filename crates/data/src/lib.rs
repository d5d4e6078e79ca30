//! rnnlab data: text readers, labels, tokenizer, GloVe, splits and batching.
//!
//! [`prepare`] turns the `[data]` table of a pipeline into everything training needs: read →
//! split → tokenizer (fit on the training split) → encode → embeddings → batcher. Nothing is
//! written to disk here; the CLI saves the tokenizer, labels and report in the run folder.
#![warn(missing_docs)]

pub mod batcher;
pub mod config;
pub mod demo;
mod error;
pub mod glove;
pub mod labels;
pub mod split;
pub mod tokenizer;
pub mod tsv;

use serde::Serialize;

pub use batcher::{BatchOptions, Example, TextBatches};
pub use config::{
    DataConfig, EmbeddingsConfig, OovInit, PreTokenizerKind, SourceKind, SplitConfig,
    TokenizerConfig,
};
pub use error::DataError;
pub use glove::Coverage;
pub use labels::LabelMap;
pub use tokenizer::{PAD_ID, PAD_TOKEN, UNK_ID, UNK_TOKEN};

/// Everything [`prepare`] produces.
pub struct Prepared {
    /// The batches for the trainer.
    pub source: TextBatches,
    /// The fitted tokenizer (the CLI saves it with `tokenizer.save(path, true)`).
    pub tokenizer: tokenizers::Tokenizer,
    /// Class names in index order (the CLI saves them as labels.json).
    pub labels: Vec<String>,
    /// The `[V, E]` f32 pretrained embedding matrix, when `[data.embeddings]` is set.
    pub embeddings: Option<candle_core::Tensor>,
    /// Whether the embedding matrix is to stay fixed.
    pub freeze_embeddings: bool,
    /// The padding id (0).
    pub pad_id: u32,
    /// Vocabulary size V, specials included.
    pub vocab_size: usize,
    /// Figures about the data, for the run's report.
    pub report: DataReport,
}

/// One figure per split.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PerSplit<T> {
    /// Training split.
    pub train: T,
    /// Validation split.
    pub val: T,
    /// Test split.
    pub test: T,
}

/// Figures about the prepared data (serialised into the run's report).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DataReport {
    /// The file read, or `"demo"`.
    pub source: String,
    /// Rows per split.
    pub rows: PerSplit<usize>,
    /// Class names in index order.
    pub labels: Vec<String>,
    /// Rows per class (in `labels` order) per split.
    pub label_counts: PerSplit<Vec<usize>>,
    /// Vocabulary size, `<pad>` and `<unk>` included.
    pub vocab_size: usize,
    /// Words (occurrences) in the training split.
    pub training_tokens: u64,
    /// Training words dropped by `min_freq` (distinct words).
    pub rare_types_dropped: usize,
    /// Texts with no token, encoded as `[<unk>]`.
    pub empty_texts: PerSplit<usize>,
    /// Texts cut to `max_len`.
    pub truncated_texts: PerSplit<usize>,
    /// Fraction of token ids that are `<unk>`.
    pub unk_rate: PerSplit<f64>,
    /// Mean tokens per example (after encoding).
    pub mean_length: PerSplit<f64>,
    /// Longest example, in tokens.
    pub max_length: usize,
    /// Training batches' padded cells over real tokens for one epoch's order (1.0 = no padding).
    pub padding_ratio: f64,
    /// GloVe coverage, when embeddings are loaded.
    pub coverage: Option<Coverage>,
}

/// Reads, splits, tokenizes and batches the data of `cfg`, drawing every random number from
/// `rng` (in this order: demo corpus, split, OOV embedding rows). The config is validated first.
pub fn prepare(cfg: &DataConfig, rng: &mut rnnlab_core::Rng) -> Result<Prepared, DataError> {
    cfg.validate()?;
    let (rows, source) = match cfg.kind {
        SourceKind::Tsv => {
            let path = cfg
                .path
                .as_deref()
                .ok_or_else(|| DataError::config("data.path", "type = \"tsv\" needs a path"))?;
            let cols = tsv::Columns {
                text: &cfg.text,
                label: &cfg.label,
                group: cfg.split.group_by.as_deref(),
            };
            (tsv::read_tsv(path, &cols)?, path.display().to_string())
        }
        SourceKind::Demo => (demo::generate(cfg.size, rng), "demo".to_string()),
    };
    let label_map = LabelMap::from_labels(rows.iter().map(|r| r.label.as_str()));

    let parts = match &cfg.split.group_by {
        Some(_) => {
            let groups: Vec<&str> = rows
                .iter()
                .map(|r| r.group.as_deref().unwrap_or_default())
                .collect();
            split::grouped_split(&groups, cfg.split.val, cfg.split.test, rng)
        }
        None => split::random_split(rows.len(), cfg.split.val, cfg.split.test, rng),
    };
    if parts.train.is_empty() {
        return Err(DataError::Invalid(format!(
            "{source}: the training split is empty ({} rows, val = {}, test = {})",
            rows.len(),
            cfg.split.val,
            cfg.split.test
        )));
    }

    let (tok, vocab) = tokenizer::fit_tokenizer(
        &cfg.tokenizer,
        parts.train.iter().map(|&i| rows[i].text.as_str()),
    )?;

    let encode = |idx: &[usize]| -> Result<(Vec<Example>, tokenizer::Encoded), DataError> {
        let enc = tokenizer::encode_texts(&tok, idx.iter().map(|&i| rows[i].text.as_str()))?;
        let examples = idx
            .iter()
            .zip(&enc.ids)
            .map(|(&i, ids)| {
                let r = &rows[i];
                let label = label_map.id(&r.label).ok_or_else(|| DataError::Field {
                    path: source.clone().into(),
                    line: r.line,
                    field: cfg.label.clone(),
                    message: format!(
                        "label \"{}\" is not one of {}",
                        r.label,
                        label_map.names().join(", ")
                    ),
                })?;
                Ok(Example {
                    ids: ids.clone(),
                    label,
                })
            })
            .collect::<Result<Vec<_>, DataError>>()?;
        Ok((examples, enc))
    };
    let (train, enc_train) = encode(&parts.train)?;
    let (val, enc_val) = encode(&parts.val)?;
    let (test, enc_test) = encode(&parts.test)?;

    let embeddings = match &cfg.embeddings {
        Some(e) => Some(glove::load_glove(&e.path, &vocab, e.dim, e.oov_init, rng)?),
        None => None,
    };

    let per = |f: &dyn Fn(&[Example], &tokenizer::Encoded) -> f64| PerSplit {
        train: f(&train, &enc_train),
        val: f(&val, &enc_val),
        test: f(&test, &enc_test),
    };
    let tokens = |ex: &[Example]| ex.iter().map(|e| e.ids.len()).sum::<usize>() as f64;
    let mean_length = per(&|ex, _| tokens(ex) / ex.len().max(1) as f64);
    let unk_rate = per(&|ex, enc| enc.unk as f64 / tokens(ex).max(1.0));
    let count = |f: &dyn Fn(&tokenizer::Encoded) -> usize| PerSplit {
        train: f(&enc_train),
        val: f(&enc_val),
        test: f(&enc_test),
    };
    let empty_texts = count(&|e| e.empty);
    let truncated_texts = count(&|e| e.truncated);
    let class_counts = |ex: &[Example]| {
        let mut c = vec![0usize; label_map.len()];
        ex.iter().for_each(|e| c[e.label as usize] += 1);
        c
    };
    let label_counts = PerSplit {
        train: class_counts(&train),
        val: class_counts(&val),
        test: class_counts(&test),
    };
    let max_length = [&train, &val, &test]
        .iter()
        .flat_map(|s| s.iter().map(|e| e.ids.len()))
        .max()
        .unwrap_or(0);
    let rows_per = PerSplit {
        train: train.len(),
        val: val.len(),
        test: test.len(),
    };
    let total_empty = empty_texts.train + empty_texts.val + empty_texts.test;
    if total_empty > 0 {
        tracing::warn!(
            "{source}: {total_empty} text(s) with no token encoded as [{UNK_TOKEN}] \
             (train {}, val {}, test {})",
            empty_texts.train,
            empty_texts.val,
            empty_texts.test
        );
    }

    let opts = BatchOptions {
        batch_size: cfg.batch_size,
        eval_batch_size: cfg.eval_batch_size,
        shuffle: cfg.shuffle,
        sort_by_length: cfg.sort_by_length,
        buckets: cfg.buckets,
        drop_last: cfg.drop_last,
    };
    let batches = TextBatches::new(train, val, test, opts, label_map.len())?;
    // measured on a copy, so the run's generator is not advanced
    let padding_ratio = batches.train_padding_ratio(&mut rng.clone());

    let report = DataReport {
        source,
        rows: rows_per,
        labels: label_map.names().to_vec(),
        label_counts,
        vocab_size: vocab.len(),
        training_tokens: vocab.training_tokens,
        rare_types_dropped: vocab.dropped_types,
        empty_texts,
        truncated_texts,
        unk_rate,
        mean_length,
        max_length,
        padding_ratio,
        coverage: embeddings.as_ref().map(|e| e.coverage.clone()),
    };
    tracing::info!(
        "data: {} / {} / {} rows (train / val / test), vocabulary {}, {} classes",
        report.rows.train,
        report.rows.val,
        report.rows.test,
        report.vocab_size,
        report.labels.len()
    );
    Ok(Prepared {
        source: batches,
        tokenizer: tok,
        labels: label_map.names().to_vec(),
        embeddings: embeddings.as_ref().map(|e| e.to_tensor()).transpose()?,
        freeze_embeddings: cfg.embeddings.as_ref().is_some_and(|e| e.freeze),
        pad_id: PAD_ID,
        vocab_size: vocab.len(),
        report,
    })
}
