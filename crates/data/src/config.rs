//! The `[data]` table of the pipeline TOML, with its defaults and validation.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{BatchOptions, DataError};

/// A column of a delimited file (or a key of a JSON object): by header name, or by 0-based index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Column {
    /// 0-based position of the field on the line.
    Index(usize),
    /// Header name (or JSON key).
    Name(String),
}

impl From<&str> for Column {
    fn from(s: &str) -> Self {
        Column::Name(s.to_string())
    }
}

impl std::fmt::Display for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Column::Index(i) => write!(f, "#{i}"),
            Column::Name(n) => f.write_str(n),
        }
    }
}

/// A label as written in the config: an integer or a string (both compared as text).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LabelName {
    /// An integer label (`labels = [0, 1]`).
    Int(i64),
    /// A string label (`labels = ["neg", "pos"]`).
    Str(String),
}

impl std::fmt::Display for LabelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LabelName::Int(i) => write!(f, "{i}"),
            LabelName::Str(s) => f.write_str(s),
        }
    }
}

/// One held-out part of `data.split`: a fraction of the rows, or a file of its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SplitPart {
    /// This fraction of the (training file's) rows, drawn with the split's method.
    Fraction(f64),
    /// The rows of this file, read with the same reader.
    File(PathBuf),
}

impl SplitPart {
    /// The fraction, or 0 for a file.
    pub fn fraction(&self) -> f64 {
        match self {
            SplitPart::Fraction(f) => *f,
            SplitPart::File(_) => 0.0,
        }
    }

    /// The file, if this part is one.
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            SplitPart::Fraction(_) => None,
            SplitPart::File(p) => Some(p),
        }
    }
}

impl From<f64> for SplitPart {
    fn from(f: f64) -> Self {
        SplitPart::Fraction(f)
    }
}

/// The `[data]` table: the keys every reader shares, and (flattened into the same table) the
/// keys of the reader `type` names, which that reader's typed config checks
/// ([`crate::readers::build`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataConfig {
    /// The reader, a name registered in [`rnnlab_core::Registry::readers`] (built in: `tsv`,
    /// `csv`, `jsonl`, `sst-trees`, `lines-per-class`, `demo`); default `tsv`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The data file (the training file when `split.val`/`split.test` are files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The label set, in class-index order; a row with another label is a bad row. Empty
    /// (default): the labels found, integers sorted numerically, others as strings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<LabelName>,
    /// Skip malformed rows (counted in the data report) instead of failing (default false).
    pub skip_bad_rows: bool,
    /// How rows are split into train / val / test.
    pub split: SplitConfig,
    /// Training batch size (default 64).
    pub batch_size: usize,
    /// Evaluation batch size (default 256).
    pub eval_batch_size: usize,
    /// Reshuffle the training examples every epoch, from the run's generator (default true).
    pub shuffle: bool,
    /// With `shuffle = false`: train in a fixed order sorted by length (default false).
    pub sort_by_length: bool,
    /// Length buckets: shuffle, sort by length within chunks of 50 batches, shuffle the batches,
    /// so that little padding is computed (default true; only with `shuffle = true`: unshuffled
    /// training keeps its fixed order).
    pub buckets: bool,
    /// Drop the last, incomplete training batch (default false).
    pub drop_last: bool,
    /// The `[data.tokenizer]` table.
    pub tokenizer: TokenizerConfig,
    /// The optional `[data.embeddings]` table; absent, the model learns its own embeddings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embeddings: Option<EmbeddingsConfig>,
    /// The reader's own keys (`text`, `label`, `delimiter`, `files`, `size`, ...), as written.
    #[serde(flatten)]
    pub reader: toml::Table,
}

impl Default for DataConfig {
    fn default() -> Self {
        // the batching defaults are BatchOptions' (one place)
        let b = BatchOptions::default();
        DataConfig {
            kind: "tsv".into(),
            path: None,
            labels: Vec::new(),
            skip_bad_rows: false,
            split: SplitConfig::default(),
            batch_size: b.batch_size,
            eval_batch_size: b.eval_batch_size,
            shuffle: b.shuffle,
            sort_by_length: b.sort_by_length,
            buckets: b.buckets,
            drop_last: b.drop_last,
            tokenizer: TokenizerConfig::default(),
            embeddings: None,
            reader: toml::Table::new(),
        }
    }
}

/// `data.split`: which rows are held out for validation and test.
///
/// `val` and `test` are fractions of the rows (drawn at random, by group with `group_by`, or per
/// label with `stratify`) or files of their own; with `folds = k` the test split is fold `fold`
/// of k (`test` is then unused) and `val` is drawn from the other folds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitConfig {
    /// The training file, instead of `data.path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train: Option<PathBuf>,
    /// Validation: a fraction of the rows (default 0.1) or a file.
    pub val: SplitPart,
    /// Test: a fraction of the rows (default 0.1) or a file.
    pub test: SplitPart,
    /// A column whose value groups rows: no group is in two splits (default none: random rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_by: Option<String>,
    /// Draw the held-out fractions per label, so every split has the label distribution.
    pub stratify: bool,
    /// k-fold cross-validation: the number of folds (0, default: off).
    pub folds: usize,
    /// With `folds`: the 0-based fold used as the test split.
    pub fold: usize,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            train: None,
            val: SplitPart::Fraction(0.1),
            test: SplitPart::Fraction(0.1),
            group_by: None,
            stratify: false,
            folds: 0,
            fold: 0,
        }
    }
}

/// The pre-tokenizer that splits normalized text into words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreTokenizerKind {
    /// Split on whitespace only (keeps `n't` and punctuation attached as the corpus has them).
    #[default]
    WhitespaceSplit,
    /// BERT's pre-tokenizer: whitespace and punctuation.
    Bert,
    /// Split on the ASCII space only (U+00A0 and other Unicode spaces stay inside words, as in
    /// the SST trees).
    SpaceSplit,
}

/// `[data.tokenizer]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizerConfig {
    /// An existing tokenizer.json to load instead of fitting one; the keys below are then unused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Unicode NFKC normalization before anything else (default false).
    pub nfkc: bool,
    /// Lowercase the text before splitting (default true).
    pub lowercase: bool,
    /// `"whitespace_split"` (default), `"bert"` or `"space_split"` (ASCII space only).
    pub pre_tokenizer: PreTokenizerKind,
    /// Words seen fewer times than this in the training split become `<unk>` (default 1).
    pub min_freq: usize,
    /// Keep at most this many words (the most frequent), specials not counted; 0: all (default).
    pub max_size: usize,
    /// Keep at most this many tokens per text; 0 keeps all (default [`DEFAULT_MAX_LEN`]).
    pub max_len: usize,
}

/// The default `data.tokenizer.max_len`: longer texts are cut (and counted in the data report),
/// so one huge row cannot take the machine's memory. The shipped data sets' longest texts are
/// under 100 tokens.
pub const DEFAULT_MAX_LEN: usize = 512;

impl Default for TokenizerConfig {
    fn default() -> Self {
        TokenizerConfig {
            path: None,
            nfkc: false,
            lowercase: true,
            pre_tokenizer: PreTokenizerKind::WhitespaceSplit,
            min_freq: 1,
            max_size: 0,
            max_len: DEFAULT_MAX_LEN,
        }
    }
}

/// The format of a pretrained embeddings file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingsKind {
    /// GloVe text format (`.txt` or `.txt.gz`): a word, then space-separated values.
    #[default]
    Glove,
    /// word2vec text format: a `count dim` header line, then as GloVe.
    Word2vec,
}

/// How rows of words missing from the embeddings file are initialised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OovInit {
    /// N(0, σ²), σ = the standard deviation of the loaded vectors' values.
    #[default]
    Normal,
    /// U(-σ√3, σ√3): the same variance as `normal`.
    Uniform,
    /// Zeros.
    Zeros,
}

/// `[data.embeddings]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsConfig {
    /// `"glove"` (default) or `"word2vec"` (text); a `count dim` header line is detected in both.
    #[serde(rename = "type", default)]
    pub kind: EmbeddingsKind,
    /// The vectors file (required), plain or gzip.
    pub path: PathBuf,
    /// Keep the embedding matrix fixed during training (default false: fine-tune).
    #[serde(default)]
    pub freeze: bool,
    /// Initialisation of rows missing from the file (default `"normal"`).
    #[serde(default)]
    pub oov_init: OovInit,
    /// The expected vector width; default: the width of the file's first row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dim: Option<usize>,
    /// A vocabulary word missing from the file takes the vector of its lowercase form
    /// (default true).
    #[serde(default = "yes")]
    pub lowercase_fallback: bool,
}

fn yes() -> bool {
    true
}

impl DataConfig {
    /// The batching keys, as the batcher takes them.
    pub fn batch_options(&self) -> BatchOptions {
        BatchOptions {
            batch_size: self.batch_size,
            eval_batch_size: self.eval_batch_size,
            shuffle: self.shuffle,
            sort_by_length: self.sort_by_length,
            buckets: self.buckets,
            drop_last: self.drop_last,
        }
    }

    /// The label set of `labels`, as strings, in class-index order.
    pub fn label_names(&self) -> Vec<String> {
        self.labels.iter().map(ToString::to_string).collect()
    }

    /// The training file: `split.train`, else `path`.
    pub fn train_path(&self) -> Option<&std::path::Path> {
        self.split.train.as_deref().or(self.path.as_deref())
    }

    /// Checks every value once; errors name the config key (`data.split.val`).
    pub fn validate(&self) -> Result<(), DataError> {
        let s = &self.split;
        for (key, part) in [("data.split.val", &s.val), ("data.split.test", &s.test)] {
            if let SplitPart::Fraction(v) = part {
                if !(v.is_finite() && (0.0..1.0).contains(v)) {
                    return Err(DataError::config(
                        key,
                        format!("{v} is not a fraction in [0, 1)"),
                    ));
                }
            }
        }
        if s.folds > 0 {
            if s.folds < 2 {
                return Err(DataError::config(
                    "data.split.folds",
                    "k-fold needs at least 2 folds",
                ));
            }
            if s.fold >= s.folds {
                return Err(DataError::config(
                    "data.split.fold",
                    format!(
                        "fold {} of {} folds: folds are numbered 0..{}",
                        s.fold,
                        s.folds,
                        s.folds - 1
                    ),
                ));
            }
            if s.test.file().is_some() {
                return Err(DataError::config(
                    "data.split.test",
                    "with folds the test split is a fold; give no test file",
                ));
            }
        } else if s.fold != 0 {
            return Err(DataError::config(
                "data.split.fold",
                "needs data.split.folds",
            ));
        }
        let held_out = s.val.fraction()
            + if s.folds > 0 {
                1.0 / s.folds as f64
            } else {
                s.test.fraction()
            };
        if held_out >= 1.0 {
            return Err(DataError::config(
                "data.split",
                format!("val + test = {held_out} leaves no training rows; the sum must be below 1"),
            ));
        }
        if s.stratify && s.group_by.is_some() {
            return Err(DataError::config(
                "data.split.stratify",
                "cannot stratify by label and keep groups whole at once; choose one",
            ));
        }
        if self.batch_size == 0 {
            return Err(DataError::config("data.batch_size", "must be at least 1"));
        }
        if self.eval_batch_size == 0 {
            return Err(DataError::config(
                "data.eval_batch_size",
                "must be at least 1",
            ));
        }
        if self.sort_by_length && self.shuffle {
            return Err(DataError::config(
                "data.sort_by_length",
                "a fixed length-sorted order needs shuffle = false",
            ));
        }
        if self.tokenizer.min_freq == 0 {
            return Err(DataError::config(
                "data.tokenizer.min_freq",
                "must be at least 1 (1 keeps every training word)",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for l in self.label_names() {
            if !seen.insert(l.clone()) {
                return Err(DataError::config(
                    "data.labels",
                    format!("\"{l}\" is listed twice"),
                ));
            }
        }
        if let Some(e) = &self.embeddings {
            if e.dim == Some(0) {
                return Err(DataError::config(
                    "data.embeddings.dim",
                    "must be at least 1",
                ));
            }
        }
        Ok(())
    }

    /// Sets the reader key `key` (as `--set data.key=value` would).
    pub fn set_reader_key(&mut self, key: &str, value: impl Into<toml::Value>) {
        self.reader.insert(key.to_string(), value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_table_and_fills_defaults() {
        let cfg: DataConfig = toml::from_str(
            r#"
            type = "tsv"
            path = "/data/train.tsv"
            text = "Phrase"
            label = "Sentiment"
            split = { val = 0.1, test = 0.2, group_by = "SentenceId" }
            buckets = true
            [tokenizer]
            pre_tokenizer = "bert"
            [embeddings]
            type = "glove"
            path = "/data/glove.txt.gz"
            oov_init = "uniform"
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.split.test, SplitPart::Fraction(0.2));
        assert_eq!(cfg.split.group_by.as_deref(), Some("SentenceId"));
        assert_eq!(cfg.batch_size, 64);
        assert_eq!(cfg.reader["text"], toml::Value::String("Phrase".into()));
        assert!(cfg.tokenizer.lowercase);
        assert_eq!(cfg.tokenizer.pre_tokenizer, PreTokenizerKind::Bert);
        let e = cfg.embeddings.as_ref().unwrap();
        assert_eq!(e.oov_init, OovInit::Uniform);
        assert!(!e.freeze);
        assert!(e.lowercase_fallback);
        // serialises back to a table that parses to the same config
        let back: DataConfig = toml::from_str(&toml::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn new_keys_parse_and_round_trip() {
        let cfg: DataConfig = toml::from_str(
            r#"
            type = "csv"
            path = "a.csv"
            text = 1
            label = "stars"
            labels = [1, 2, "five"]
            skip_bad_rows = true
            delimiter = ";"
            split = { train = "t.csv", val = "v.csv", test = 0.1, stratify = true }
            [tokenizer]
            nfkc = true
            max_size = 100
            [embeddings]
            type = "word2vec"
            path = "w.txt"
            lowercase_fallback = false
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.reader["text"], toml::Value::Integer(1));
        assert_eq!(cfg.label_names(), ["1", "2", "five"]);
        assert_eq!(cfg.split.val, SplitPart::File("v.csv".into()));
        assert_eq!(cfg.train_path(), Some(std::path::Path::new("t.csv")));
        let back: DataConfig = toml::from_str(&toml::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);
        let cfg: DataConfig = toml::from_str(
            r#"
            type = "lines-per-class"
            files = { neg = "x.neg", pos = "x.pos" }
            split = { folds = 10, fold = 3, stratify = true }
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.split.folds, 10);
    }

    /// The error of `cfg`'s shared keys, else of its reader's.
    fn check(cfg: &DataConfig) -> Result<(), String> {
        cfg.validate().map_err(|e| e.to_string())?;
        crate::readers::build(&crate::readers::builtin().readers, cfg)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let cfg: DataConfig = toml::from_str("path = \"x\"\nbatch_sise = 3").unwrap();
        let err = check(&cfg).unwrap_err();
        assert!(err.contains("unknown key `batch_sise` at `data`"), "{err}");
        let err = toml::from_str::<DataConfig>("[tokenizer]\nlowercse = true").unwrap_err();
        assert!(err.to_string().contains("lowercse"), "{err}");
    }

    #[test]
    fn validation_names_the_key() {
        let base = DataConfig {
            path: Some("x.tsv".into()),
            ..DataConfig::default()
        };
        check(&base).unwrap();
        let split = |f: &dyn Fn(&mut SplitConfig)| {
            let mut c = base.clone();
            f(&mut c.split);
            c
        };
        let with = |f: &dyn Fn(&mut DataConfig)| {
            let mut c = base.clone();
            f(&mut c);
            c
        };
        let cases: Vec<(DataConfig, &str)> = vec![
            (split(&|s| s.val = 1.2.into()), "data.split.val"),
            (
                split(&|s| {
                    s.val = 0.5.into();
                    s.test = 0.5.into();
                }),
                "data.split",
            ),
            (split(&|s| s.folds = 1), "data.split.folds"),
            (
                split(&|s| {
                    s.folds = 5;
                    s.fold = 5;
                }),
                "data.split.fold",
            ),
            (split(&|s| s.fold = 2), "data.split.fold"),
            (
                split(&|s| {
                    s.stratify = true;
                    s.group_by = Some("g".into());
                }),
                "data.split.stratify",
            ),
            (with(&|c| c.batch_size = 0), "data.batch_size"),
            (with(&|c| c.path = None), "data.path"),
            (with(&|c| c.sort_by_length = true), "data.sort_by_length"),
            (with(&|c| c.kind = "tvs".into()), "data.type"),
            (
                with(&|c| c.set_reader_key("delimiter", "::")),
                "data.delimiter",
            ),
            (
                with(&|c| c.labels = vec![LabelName::Int(1), LabelName::Str("1".into())]),
                "data.labels",
            ),
            (
                with(&|c| {
                    c.set_reader_key("header", false);
                }),
                "data.text",
            ),
            (
                with(&|c| {
                    c.kind = "lines-per-class".into();
                    c.path = None;
                }),
                "data.files",
            ),
            (
                with(&|c| {
                    c.kind = "sst-trees".into();
                    c.split.group_by = Some("SentenceId".into());
                }),
                "data.split.group_by",
            ),
            (
                with(&|c| {
                    c.kind = "demo".into();
                    c.path = None;
                    c.set_reader_key("size", 3);
                }),
                "data.size",
            ),
        ];
        for (cfg, key) in cases {
            let msg = check(&cfg).unwrap_err();
            assert!(msg.contains(&format!("`{key}`")), "{key}: {msg}");
        }
    }
}
