//! The `[data]` table of the pipeline TOML, with its defaults and validation.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::DataError;

/// Where the examples come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A tab-separated file with a header (`path`, `text`, `label`).
    #[default]
    Tsv,
    /// The synthetic binary sentiment corpus of [`crate::demo`]; needs no file.
    Demo,
}

/// The `[data]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// `"tsv"` (default) or `"demo"`.
    #[serde(rename = "type")]
    pub kind: SourceKind,
    /// The data file (tsv only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Header name of the text column (default `"text"`).
    pub text: String,
    /// Header name of the label column (default `"label"`).
    pub label: String,
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
    /// Length buckets: shuffle, sort by length within chunks of 50 batches, shuffle the batches
    /// (default false; needs `shuffle = true`).
    pub buckets: bool,
    /// Drop the last, incomplete training batch (default false).
    pub drop_last: bool,
    /// Demo only: number of synthetic examples (default 6000).
    pub size: usize,
    /// The `[data.tokenizer]` table.
    pub tokenizer: TokenizerConfig,
    /// The optional `[data.embeddings]` table; absent, the model learns its own embeddings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embeddings: Option<EmbeddingsConfig>,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            kind: SourceKind::Tsv,
            path: None,
            text: "text".into(),
            label: "label".into(),
            split: SplitConfig::default(),
            batch_size: 64,
            eval_batch_size: 256,
            shuffle: true,
            sort_by_length: false,
            buckets: false,
            drop_last: false,
            size: 6000,
            tokenizer: TokenizerConfig::default(),
            embeddings: None,
        }
    }
}

/// `data.split`: fractions of the rows held out, optionally grouped by a column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitConfig {
    /// Fraction of rows for validation (default 0.1).
    pub val: f64,
    /// Fraction of rows for test (default 0.1).
    pub test: f64,
    /// A column whose value groups rows: no group is in two splits (default none: random rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_by: Option<String>,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            val: 0.1,
            test: 0.1,
            group_by: None,
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
}

/// `[data.tokenizer]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizerConfig {
    /// Lowercase the text before splitting (default true).
    pub lowercase: bool,
    /// `"whitespace_split"` (default) or `"bert"`.
    pub pre_tokenizer: PreTokenizerKind,
    /// Words seen fewer times than this in the training split become `<unk>` (default 1).
    pub min_freq: usize,
    /// Keep at most this many tokens per text; 0 keeps all (default 0).
    pub max_len: usize,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        TokenizerConfig {
            lowercase: true,
            pre_tokenizer: PreTokenizerKind::WhitespaceSplit,
            min_freq: 1,
            max_len: 0,
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
    /// `"glove"` (default).
    #[serde(rename = "type", default)]
    pub kind: EmbeddingsKind,
    /// The vectors file (required).
    pub path: PathBuf,
    /// Keep the embedding matrix fixed during training (default false).
    #[serde(default)]
    pub freeze: bool,
    /// Initialisation of rows missing from the file (default `"normal"`).
    #[serde(default)]
    pub oov_init: OovInit,
    /// The expected vector width; default: the width of the file's first row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dim: Option<usize>,
}

impl DataConfig {
    /// Checks every value once; errors name the config key (`data.split.val`).
    pub fn validate(&self) -> Result<(), DataError> {
        let frac = |key: &str, v: f64| {
            if v.is_finite() && (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(DataError::config(
                    key,
                    format!("{v} is not a fraction in [0, 1)"),
                ))
            }
        };
        frac("data.split.val", self.split.val)?;
        frac("data.split.test", self.split.test)?;
        if self.split.val + self.split.test >= 1.0 {
            return Err(DataError::config(
                "data.split",
                format!(
                    "val + test = {} leaves no training rows; the sum must be below 1",
                    self.split.val + self.split.test
                ),
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
        if self.buckets && !self.shuffle {
            return Err(DataError::config(
                "data.buckets",
                "length buckets shuffle the batches; they need shuffle = true",
            ));
        }
        if self.tokenizer.min_freq == 0 {
            return Err(DataError::config(
                "data.tokenizer.min_freq",
                "must be at least 1 (1 keeps every training word)",
            ));
        }
        match self.kind {
            SourceKind::Tsv => {
                if self.path.is_none() {
                    return Err(DataError::config(
                        "data.path",
                        "type = \"tsv\" needs a path",
                    ));
                }
                for (key, v) in [("data.text", &self.text), ("data.label", &self.label)] {
                    if v.is_empty() {
                        return Err(DataError::config(key, "the column name is empty"));
                    }
                }
                if self.text == self.label {
                    return Err(DataError::config(
                        "data.label",
                        format!("same column as data.text (\"{}\")", self.text),
                    ));
                }
            }
            SourceKind::Demo => {
                if self.size < 10 {
                    return Err(DataError::config(
                        "data.size",
                        format!("{} synthetic examples; ask for at least 10", self.size),
                    ));
                }
                if self.split.group_by.is_some() {
                    return Err(DataError::config(
                        "data.split.group_by",
                        "the demo corpus has no columns to group by",
                    ));
                }
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
        assert_eq!(cfg.split.test, 0.2);
        assert_eq!(cfg.split.group_by.as_deref(), Some("SentenceId"));
        assert_eq!(cfg.batch_size, 64);
        assert!(cfg.tokenizer.lowercase);
        assert_eq!(cfg.tokenizer.pre_tokenizer, PreTokenizerKind::Bert);
        let e = cfg.embeddings.as_ref().unwrap();
        assert_eq!(e.oov_init, OovInit::Uniform);
        assert!(!e.freeze);
        // serialises back to a table that parses to the same config
        let back: DataConfig = toml::from_str(&toml::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<DataConfig>("batch_sise = 3").unwrap_err();
        assert!(err.to_string().contains("batch_sise"), "{err}");
        let err = toml::from_str::<DataConfig>("[tokenizer]\nlowercse = true").unwrap_err();
        assert!(err.to_string().contains("lowercse"), "{err}");
    }

    #[test]
    fn validation_names_the_key() {
        let base = DataConfig {
            path: Some("x.tsv".into()),
            ..DataConfig::default()
        };
        base.validate().unwrap();
        let cases: Vec<(DataConfig, &str)> = vec![
            (
                DataConfig {
                    split: SplitConfig {
                        val: 1.2,
                        ..SplitConfig::default()
                    },
                    ..base.clone()
                },
                "data.split.val",
            ),
            (
                DataConfig {
                    split: SplitConfig {
                        val: 0.5,
                        test: 0.5,
                        group_by: None,
                    },
                    ..base.clone()
                },
                "data.split",
            ),
            (
                DataConfig {
                    batch_size: 0,
                    ..base.clone()
                },
                "data.batch_size",
            ),
            (
                DataConfig {
                    path: None,
                    ..base.clone()
                },
                "data.path",
            ),
            (
                DataConfig {
                    shuffle: false,
                    buckets: true,
                    ..base.clone()
                },
                "data.buckets",
            ),
            (
                DataConfig {
                    sort_by_length: true,
                    ..base.clone()
                },
                "data.sort_by_length",
            ),
        ];
        for (cfg, key) in cases {
            let msg = cfg.validate().unwrap_err().to_string();
            assert!(msg.contains(&format!("`{key}`")), "{key}: {msg}");
        }
    }
}
