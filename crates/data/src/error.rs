//! The crate's error type: every message names the file, line and field, or the config key.

use std::path::PathBuf;

/// Everything that can go wrong while reading and preparing data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be opened or read.
    #[error("{path}: {error}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error (in the message, so not also a `source()`: printed chains
        /// would say it twice).
        error: std::io::Error,
    },

    /// A column named in the config is not in the file's header.
    #[error("{path}:1: no column \"{column}\" (config key `{key}`); the header has: {header}")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column that was asked for.
        column: String,
        /// The config key that named it (`data.text`, ...).
        key: String,
        /// The header's column names, comma separated.
        header: String,
    },

    /// A line with another number of fields than the header.
    #[error(
        "{path}:{line}: expected {expected} {separated} fields (as the header), found {found}"
    )]
    FieldCount {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// How fields are separated ("tab-separated", "comma-separated").
        separated: String,
        /// Fields in the header.
        expected: usize,
        /// Fields on this line.
        found: usize,
    },

    /// A field that is not valid UTF-8.
    #[error("{path}:{line}: field \"{field}\": invalid UTF-8 ({detail})")]
    Utf8 {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The column name (or "word" for GloVe).
        field: String,
        /// The decoder's message.
        detail: String,
    },

    /// A field whose value is not allowed.
    #[error("{path}:{line}: field \"{field}\": {message}")]
    Field {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The column name.
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },

    /// A GloVe row with another width than the first row (or the expected dimension).
    #[error("{path}:{line}: expected {expected} values after the word, found {found}")]
    VectorWidth {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The width of the first row or the configured dimension.
        expected: usize,
        /// Values on this line.
        found: usize,
    },

    /// A GloVe value that is not a number.
    #[error("{path}:{line}: value {index} of word \"{word}\": \"{value}\" is not a number")]
    VectorValue {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The word of the row.
        word: String,
        /// 1-based position of the value after the word.
        index: usize,
        /// The text that did not parse.
        value: String,
    },

    /// A file with no usable content (no rows, no vectors).
    #[error("{path}: {message}")]
    Empty {
        /// The file.
        path: PathBuf,
        /// What was missing.
        message: String,
    },

    /// A config value out of range or inconsistent with another.
    #[error("invalid value for `{key}`: {message}")]
    Config {
        /// The config path of the value (`data.split.val`).
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },

    /// A data set that cannot be used as configured (e.g. an empty training split).
    #[error("{0}")]
    Invalid(String),

    /// The tokenizers crate failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// A tensor could not be built.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// An error of a plugin (a reader registered by another crate, a reader's config).
    #[error(transparent)]
    Core(Box<rnnlab_core::Error>),
}

impl DataError {
    /// A [`DataError::Config`] for the config key `key`.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        DataError::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    /// A [`DataError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            error: source,
        }
    }

    /// A [`DataError::Tokenizer`] from any error of the tokenizers crate.
    pub fn tokenizer(e: impl std::fmt::Display) -> Self {
        DataError::Tokenizer(e.to_string())
    }
}

/// A data error that went through a [`rnnlab_core::Reader`] comes back as itself; a config
/// error as [`DataError::Config`]; anything else as [`DataError::Core`].
impl From<rnnlab_core::Error> for DataError {
    fn from(e: rnnlab_core::Error) -> Self {
        match e {
            rnnlab_core::Error::Plugin(b) => match b.downcast::<DataError>() {
                Ok(d) => *d,
                Err(b) => DataError::Core(Box::new(rnnlab_core::Error::Plugin(b))),
            },
            rnnlab_core::Error::InvalidValue { at, message } => {
                DataError::Config { key: at, message }
            }
            other => DataError::Core(Box::new(other)),
        }
    }
}

impl From<DataError> for rnnlab_core::Error {
    fn from(e: DataError) -> Self {
        match e {
            DataError::Core(c) => *c,
            e => rnnlab_core::Error::plugin(e),
        }
    }
}
