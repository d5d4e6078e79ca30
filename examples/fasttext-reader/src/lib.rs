//! A data reader added to rnnlab from its own crate: fastText's supervised format, one example
//! per line, the label first as `__label__pos` and the text after it:
//!
//! ```text
//! __label__pos a gripping , funny film
//! __label__neg the plot goes nowhere
//! ```
//!
//! One type for the config (its keys of `[data]`), one for the reader, one registration call;
//! a pipeline then says `[data] type = "fasttext"`.
//!
//! ```no_run
//! let mut r = rnnlab_cli::registry();
//! rnnlab_fasttext::register(&mut r);
//! std::process::exit(rnnlab_cli::run(r));
//! ```

use std::path::Path;

use rnnlab_core::{DataKeys, PluginConfig, ReadContext, Reader, Registry, Result, Row};
use rnnlab_data::DataError;
use serde::{Deserialize, Serialize};

/// The keys of `type = "fasttext"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FastTextConfig {
    /// The prefix of the label word that starts every line.
    pub label_prefix: String,
}

impl Default for FastTextConfig {
    fn default() -> Self {
        FastTextConfig {
            label_prefix: "__label__".into(),
        }
    }
}

impl PluginConfig for FastTextConfig {
    fn validate(&self, at: &str) -> Result<()> {
        if self.label_prefix.is_empty() || self.label_prefix.contains(char::is_whitespace) {
            return Err(rnnlab_core::Error::invalid(
                format!("{at}.label_prefix"),
                format!(
                    "\"{}\": must be non-empty, without spaces",
                    self.label_prefix
                ),
            ));
        }
        Ok(())
    }
}

/// The fastText reader.
pub struct FastText(pub FastTextConfig);

impl Reader for FastText {
    fn read(&self, path: Option<&Path>, cx: &mut ReadContext) -> Result<Vec<Row>> {
        let path = path.ok_or_else(|| DataError::config("data.path", "no file given"))?;
        let prefix = &self.0.label_prefix;
        let mut rows = Vec::new();
        rnnlab_data::readers::for_each_line(path, |line, bytes| {
            let text = match rnnlab_data::readers::utf8(bytes, path, line, "line") {
                Ok(t) => t,
                Err(e) => return cx.log.bad("utf8", e),
            };
            let text = text.trim();
            if text.is_empty() {
                return Ok(());
            }
            let (first, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
            let rest = rest.trim_start();
            let bad = |message: String| DataError::Field {
                path: path.into(),
                line,
                field: "label".into(),
                message,
            };
            match first.strip_prefix(prefix.as_str()) {
                None => cx.log.bad(
                    "label",
                    bad(format!("the line does not start with a {prefix}... label")),
                ),
                Some(_) if rest.starts_with(prefix.as_str()) => cx.log.bad(
                    "label",
                    bad("two labels: a line holds one example of one class".into()),
                ),
                Some(label) => {
                    rows.push(Row {
                        text: rest.to_string(),
                        label: label.to_string(),
                        group: None,
                        line,
                    });
                    Ok(())
                }
            }
        })?;
        Ok(rnnlab_data::readers::non_empty(
            rows,
            path,
            "no labelled lines",
        )?)
    }

    fn check(&self, data: &DataKeys) -> Result<()> {
        match data.group_by {
            Some(_) => Err(rnnlab_data::readers::no_columns_to_group_by("fasttext")),
            None => Ok(()),
        }
    }
}

/// Adds the `fasttext` reader to `r`.
pub fn register(r: &mut Registry) {
    r.readers.register(
        "fasttext",
        "fastText's supervised format: __label__X then the text, one example per line",
        FastTextConfig::default(),
        |c| Ok(Box::new(FastText(c)) as Box<dyn Reader>),
    );
}
