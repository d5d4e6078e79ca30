//! The error type shared by the plugin traits.

use std::path::PathBuf;

/// Result with rnnlab's core [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong while building or running a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error (in the message, so not also a `source()`: printed chains
        /// would say it twice).
        error: std::io::Error,
    },

    /// A plugin name that no registry entry has.
    #[error("unknown {} `{}` at `{}`{}; known {}s: {}", .0.kind, .0.name, .0.at, .0.suggestion, .0.kind, .0.known)]
    UnknownPlugin(Box<UnknownName>),

    /// A config key that the section or plugin does not take.
    #[error("unknown key `{}` at `{}`{}; valid keys: {}", .0.name, .0.at, .0.suggestion, .0.known)]
    UnknownKey(Box<UnknownName>),

    /// A config value of the wrong type or out of range.
    #[error("invalid value for `{at}`: {message}")]
    InvalidValue {
        /// The config path of the value.
        at: String,
        /// What is wrong and what is allowed.
        message: String,
    },

    /// The loss or a gradient became NaN or infinite.
    #[error("non-finite {what} at epoch {epoch}, step {step}")]
    NonFinite {
        /// What was not finite ("loss", ...).
        what: String,
        /// 1-based epoch.
        epoch: usize,
        /// Global step.
        step: usize,
    },

    /// Tensors or state that do not fit together (shapes, names, missing entries).
    #[error("{0}")]
    Mismatch(String),

    /// Any other error raised by a plugin crate.
    #[error(transparent)]
    Plugin(Box<dyn std::error::Error + Send + Sync>),
}

/// A name (of a plugin or a key) that is not known, with what is.
#[derive(Debug, Clone)]
pub struct UnknownName {
    /// The kind of thing named (`cell`, `transform`, `key`, ...).
    pub kind: String,
    /// The name that was given.
    pub name: String,
    /// Where in the config it was given.
    pub at: String,
    /// ", did you mean `x`?" or empty.
    pub suggestion: String,
    /// The known names, comma separated.
    pub known: String,
}

impl Error {
    /// An [`Error::InvalidValue`] for the config path `at`.
    pub fn invalid(at: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidValue {
            at: at.into(),
            message: message.into(),
        }
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error: source,
        }
    }

    /// Wraps a plugin crate's own error.
    pub fn plugin(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Plugin(Box::new(e))
    }
}

/// "`x` is not one of a, b, c" with the nearest of `known` suggested ([`suggest`]): how every
/// refused choice (a plugin key's value, a mode) is worded.
pub fn not_one_of(given: &str, known: &[&str]) -> String {
    format!(
        "`{given}` is not one of {}{}",
        known.join(", "),
        suggest(given, known.iter().copied())
    )
}

/// ", did you mean `x`?" for the known name closest to `name`, or "" when none is close.
pub fn suggest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let best = known
        .into_iter()
        .map(|k| (strsim::damerau_levenshtein(name, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, k)) => format!(", did you mean `{k}`?"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_name() {
        assert_eq!(
            suggest("max_nrom", ["max_norm", "norm_type"]),
            ", did you mean `max_norm`?"
        );
        assert_eq!(suggest("zzzzzz", ["max_norm", "norm_type"]), "");
    }
}
