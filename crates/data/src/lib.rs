//! rnnlab data: text readers, labels, tokenizer, GloVe, splits and batching.
//!
//! [`prepare_with`] turns the `[data]` table of a pipeline into everything training needs: read
//! (the reader `data.type` names, built by [`readers::build`] from the registry) → split → tokenizer (fit on the training split,
//! or loaded) → encode → leakage → embeddings → batcher. Nothing is
//! written to disk here; the CLI saves the tokenizer, labels and report in the run folder.
#![warn(missing_docs)]

pub mod batcher;
pub mod config;
pub mod demo;
mod error;
pub mod glove;
pub mod hub;
pub mod jsonl;
pub mod labels;
pub mod lines;
pub mod readers;
pub mod split;
pub mod sst;
pub mod tokenizer;
pub mod tsv;

use std::path::Path;

use serde::Serialize;

pub use batcher::{BatchOptions, Example, TextBatches};
pub use config::{
    Column, DataConfig, EmbeddingsConfig, EmbeddingsKind, LabelName, OovInit, PreTokenizerKind,
    SplitConfig, SplitPart, TokenizerConfig,
};
pub use error::DataError;
pub use glove::Coverage;
pub use labels::LabelMap;
pub use readers::{ReadContext, Reader, Row, RowLog, Skipped};
pub use split::{Leakage, Strategy};
pub use tokenizer::{PAD_ID, PAD_TOKEN, UNK_ID, UNK_TOKEN};

/// Everything [`prepare`] produces.
pub struct Prepared {
    /// The batches for the trainer.
    pub source: TextBatches,
    /// The fitted (or loaded) tokenizer (the CLI saves it with `tokenizer.save(path, true)`).
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
    /// The reader (`data.type`).
    pub reader: String,
    /// The file(s) read, or `"demo"`.
    pub source: String,
    /// How the split was made (`random`, `grouped by X`, `stratified`, `files`, `fold i of k`).
    pub split: String,
    /// Rows per split.
    pub rows: PerSplit<usize>,
    /// Malformed rows skipped (`skip_bad_rows = true`), in the data files.
    pub skipped: Skipped,
    /// Class names in index order.
    pub labels: Vec<String>,
    /// Rows per class (in `labels` order) per split.
    pub label_counts: PerSplit<Vec<usize>>,
    /// Vocabulary size, `<pad>` and `<unk>` included.
    pub vocab_size: usize,
    /// Whether the tokenizer was loaded from `data.tokenizer.path` rather than fitted.
    pub tokenizer_loaded: bool,
    /// Words (occurrences) in the training split.
    pub training_tokens: u64,
    /// Training words dropped by `min_freq` (distinct words; with a loaded tokenizer: training
    /// words not in its vocabulary).
    pub rare_types_dropped: usize,
    /// Training words dropped by `max_size` (distinct words).
    pub capped_types_dropped: usize,
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
    /// Training batches' padded cells over real tokens for one epoch's order, as configured
    /// (1.0 = no padding).
    pub padding_ratio: f64,
    /// The same for shuffled batches without buckets.
    pub padding_ratio_shuffled: f64,
    /// The same with length buckets.
    pub padding_ratio_bucketed: f64,
    /// Held-out texts that occur in the training split (after normalization).
    pub leakage: Leakage,
    /// Embedding coverage, when embeddings are loaded.
    pub coverage: Option<Coverage>,
}

fn read_file(
    reader: &dyn Reader,
    cfg: &DataConfig,
    path: Option<&Path>,
    log: &mut RowLog,
    labels: Option<&LabelMap>,
    rng: &mut rnnlab_core::Rng,
) -> Result<Vec<Row>, DataError> {
    let mut cx = ReadContext {
        group_by: cfg.split.group_by.as_deref(),
        log,
        rng,
    };
    let rows = reader.read(path, &mut cx)?;
    let (Some(map), Some(path)) = (labels, path) else {
        return Ok(rows);
    };
    let field = reader.label_field();
    let mut kept = Vec::with_capacity(rows.len());
    for r in rows {
        if map.id(&r.label).is_some() {
            kept.push(r);
        } else {
            log.bad(
                "label",
                DataError::Field {
                    path: path.into(),
                    line: r.line,
                    field: field.clone(),
                    message: format!(
                        "label \"{}\" is not one of data.labels ({})",
                        r.label,
                        map.names().join(", ")
                    ),
                },
            )?;
        }
    }
    if kept.is_empty() {
        return Err(DataError::Empty {
            path: path.into(),
            message: "no rows left after skipping bad rows".into(),
        });
    }
    Ok(kept)
}

/// Rows of every split, read and split as `cfg` says, with what was skipped.
pub struct SplitRows {
    /// Training rows.
    pub train: Vec<Row>,
    /// Validation rows.
    pub val: Vec<Row>,
    /// Test rows.
    pub test: Vec<Row>,
    /// The label map (from `data.labels`, else from every row read).
    pub labels: LabelMap,
    /// Malformed rows skipped.
    pub skipped: Skipped,
    /// The file(s) read.
    pub source: String,
    /// How the split was made.
    pub method: String,
}

/// Reads the data of `cfg` with a built-in reader and splits it (the first half of [`prepare`]).
pub fn read_and_split(
    cfg: &DataConfig,
    rng: &mut rnnlab_core::Rng,
) -> Result<SplitRows, DataError> {
    let (reader, _) = readers::build(&readers::builtin().readers, cfg)?;
    read_and_split_with(cfg, reader.as_ref(), rng)
}

/// Reads the data of `cfg` with `reader` (built by [`readers::build`]) and splits it.
pub fn read_and_split_with(
    cfg: &DataConfig,
    reader: &dyn Reader,
    rng: &mut rnnlab_core::Rng,
) -> Result<SplitRows, DataError> {
    cfg.validate()?;
    let mut log = RowLog::new(cfg.skip_bad_rows);
    let given = (!cfg.labels.is_empty()).then(|| LabelMap::from_names(cfg.label_names()));
    let train_path = cfg.train_path();
    let rows = read_file(reader, cfg, train_path, &mut log, given.as_ref(), rng)?;
    let mut extra = |part: &SplitPart| -> Result<Vec<Row>, DataError> {
        match part.file() {
            Some(p) => read_file(reader, cfg, Some(p), &mut log, given.as_ref(), rng),
            None => Ok(Vec::new()),
        }
    };
    let val_file = extra(&cfg.split.val)?;
    let test_file = extra(&cfg.split.test)?;
    let source = if reader.reads_path() {
        [train_path, cfg.split.val.file(), cfg.split.test.file()]
            .iter()
            .flatten()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        reader.source()
    };
    let labels = match given {
        Some(map) => map,
        None => {
            let field = reader.label_field();
            let map = LabelMap::infer(
                &[
                    (train_path, &rows[..]),
                    (cfg.split.val.file(), &val_file[..]),
                    (cfg.split.test.file(), &test_file[..]),
                ],
                &field,
            )?;
            let mut counts = vec![0usize; map.len()];
            for r in rows.iter().chain(&val_file).chain(&test_file) {
                if let Some(i) = map.id(&r.label) {
                    counts[i as usize] += 1;
                }
            }
            let listed: Vec<String> = map
                .names()
                .iter()
                .zip(&counts)
                .map(|(n, c)| format!("{n} ({c} rows)"))
                .collect();
            tracing::info!(
                "{source}: {} classes inferred from the rows (declare data.labels to fix them): {}",
                map.len(),
                listed.join(", ")
            );
            map
        }
    };

    let idx: Vec<usize> = (0..rows.len()).collect();
    let groups: Vec<&str>;
    let ids: Vec<u32>;
    let strategy = if cfg.split.group_by.is_some() {
        groups = rows
            .iter()
            .map(|r| r.group.as_deref().unwrap_or_default())
            .collect();
        Strategy::Grouped(&groups)
    } else if cfg.split.stratify {
        ids = rows
            .iter()
            .map(|r| labels.id(&r.label).unwrap_or(0))
            .collect();
        Strategy::Stratified(&ids)
    } else {
        Strategy::Random
    };
    let s = &cfg.split;
    let parts = if s.folds > 0 {
        split::kfold(&idx, strategy, s.folds, s.fold, s.val.fraction(), rng)
    } else {
        split::holdout(&idx, strategy, s.val.fraction(), s.test.fraction(), rng)
    };
    let how = match strategy {
        Strategy::Random => "random rows".to_string(),
        Strategy::Grouped(_) => format!("grouped by {}", s.group_by.as_deref().unwrap_or_default()),
        Strategy::Stratified(_) => "stratified by label".to_string(),
    };
    let method = if s.folds > 0 {
        format!("fold {} of {} ({how})", s.fold, s.folds)
    } else {
        let part = |name: &str, p: &SplitPart| match p {
            SplitPart::File(_) => format!("{name} from its file"),
            SplitPart::Fraction(f) => format!("{name} {f} ({how})"),
        };
        format!("{}, {}", part("val", &s.val), part("test", &s.test))
    };
    let take = |ix: &[usize]| ix.iter().map(|&i| rows[i].clone()).collect::<Vec<_>>();
    let mut val = take(&parts.val);
    val.extend(val_file);
    let mut test = take(&parts.test);
    test.extend(test_file);
    let train = take(&parts.train);
    if train.is_empty() {
        return Err(DataError::Invalid(format!(
            "{source}: the training split is empty ({} rows, split: {method})",
            rows.len()
        )));
    }
    if log.skipped.rows > 0 {
        tracing::warn!(
            "{source}: skipped {} malformed row(s): {:?}; first: {}",
            log.skipped.rows,
            log.skipped.by_reason,
            log.skipped.examples.first().cloned().unwrap_or_default()
        );
    }
    Ok(SplitRows {
        train,
        val,
        test,
        labels,
        skipped: log.skipped,
        source,
        method,
    })
}

/// [`prepare_with`] a built-in reader.
pub fn prepare(cfg: &DataConfig, rng: &mut rnnlab_core::Rng) -> Result<Prepared, DataError> {
    let (reader, _) = readers::build(&readers::builtin().readers, cfg)?;
    prepare_with(cfg, reader.as_ref(), rng)
}

/// Reads (with `reader`, built by [`readers::build`]), splits, tokenizes and batches the data of
/// `cfg`, drawing every random number from `rng` (in this order: demo corpus, split, OOV
/// embedding rows). The config is validated first.
pub fn prepare_with(
    cfg: &DataConfig,
    reader: &dyn Reader,
    rng: &mut rnnlab_core::Rng,
) -> Result<Prepared, DataError> {
    let label_field = reader.label_field();
    let SplitRows {
        train: train_rows,
        val: val_rows,
        test: test_rows,
        labels: label_map,
        skipped,
        source,
        method,
    } = read_and_split_with(cfg, reader, rng)?;

    let train_texts = train_rows.iter().map(|r| r.text.as_str());
    let (tok, vocab) = match &cfg.tokenizer.path {
        Some(p) => tokenizer::load_tokenizer(p, train_texts)?,
        None => tokenizer::fit_tokenizer(&cfg.tokenizer, train_texts)?,
    };

    let encode = |rows: &[Row]| -> Result<(Vec<Example>, tokenizer::Encoded), DataError> {
        let enc = tokenizer::encode_texts(&tok, rows.iter().map(|r| r.text.as_str()))?;
        let examples = rows
            .iter()
            .zip(&enc.ids)
            .map(|(r, ids)| {
                let label = label_map.id(&r.label).ok_or_else(|| DataError::Field {
                    path: source.clone().into(),
                    line: r.line,
                    field: label_field.clone(),
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
    let (train, enc_train) = encode(&train_rows)?;
    let (val, enc_val) = encode(&val_rows)?;
    let (test, enc_test) = encode(&test_rows)?;

    let words = |rows: &[Row]| -> Result<Vec<Vec<String>>, DataError> {
        rows.iter()
            .map(|r| tokenizer::words(&tok, &r.text))
            .collect()
    };
    let leakage = split::leakage(
        &words(&train_rows)?,
        &words(&val_rows)?,
        &words(&test_rows)?,
    );

    let embeddings = match &cfg.embeddings {
        Some(e) => {
            let opts = glove::LoadOptions {
                dim: e.dim,
                oov_init: e.oov_init,
                lowercase_fallback: e.lowercase_fallback,
                skip_bad_rows: cfg.skip_bad_rows,
            };
            Some(glove::load_embeddings(&e.path, &vocab, &opts, rng)?)
        }
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

    let opts = cfg.batch_options();
    let batches = TextBatches::new(train, val, test, opts.clone(), label_map.len())?;
    // measured on copies, so the run's generator is not advanced
    let padding_ratio = batches.train_padding_ratio(&mut rng.clone());
    let with = |buckets: bool| -> Result<f64, DataError> {
        let o = BatchOptions {
            shuffle: true,
            sort_by_length: false,
            buckets,
            ..opts.clone()
        };
        let b = TextBatches::new(batches.train().to_vec(), vec![], vec![], o, label_map.len())?;
        Ok(b.train_padding_ratio(&mut rng.clone()))
    };

    let report = DataReport {
        reader: cfg.kind.clone(),
        source,
        split: method,
        rows: rows_per,
        skipped,
        labels: label_map.names().to_vec(),
        label_counts,
        vocab_size: vocab.len(),
        tokenizer_loaded: cfg.tokenizer.path.is_some(),
        training_tokens: vocab.training_tokens,
        rare_types_dropped: vocab.dropped_types,
        capped_types_dropped: vocab.capped_types,
        empty_texts,
        truncated_texts,
        unk_rate,
        mean_length,
        max_length,
        padding_ratio,
        padding_ratio_shuffled: with(false)?,
        padding_ratio_bucketed: with(true)?,
        leakage,
        coverage: embeddings.as_ref().map(|e| e.coverage.clone()),
    };
    tracing::info!(
        "data: {} / {} / {} rows (train / val / test), vocabulary {}, {} classes; \
         held-out texts found in train: val {} verbatim / {} contained, test {} / {}",
        report.rows.train,
        report.rows.val,
        report.rows.test,
        report.vocab_size,
        report.labels.len(),
        report.leakage.val_verbatim,
        report.leakage.val_contained,
        report.leakage.test_verbatim,
        report.leakage.test_contained,
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
