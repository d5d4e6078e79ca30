//! One file per label (`type = "lines-per-class"`), one text per line, as rt-polarity's
//! `rt-polarity.pos` / `rt-polarity.neg`: `files = { "0" = "x.neg", "1" = "x.pos" }`.
//! Trailing spaces (and `\r`) are trimmed; blank lines are skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rnnlab_core::{DataKeys, PluginConfig, ReadContext, Reader};
use serde::{Deserialize, Serialize};

use crate::readers::{non_empty, Row, RowLog};
use crate::DataError;

/// `rnnlab list`'s line for `lines-per-class`.
pub const ABOUT: &str = "one file per label, one text per line";

/// The keys of `type = "lines-per-class"`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinesConfig {
    /// Label → file with one text per line, at least two: `{ neg = "a.neg", pos = "a.pos" }`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, PathBuf>,
}

impl PluginConfig for LinesConfig {
    fn validate(&self, at: &str) -> rnnlab_core::Result<()> {
        if self.files.len() < 2 {
            return Err(rnnlab_core::Error::invalid(
                format!("{at}.files"),
                "lines-per-class needs a file per label, at least two: files = { neg = \"a.neg\", pos = \"a.pos\" }",
            ));
        }
        Ok(())
    }
}

/// Builds the lines-per-class reader.
pub fn build(cfg: LinesConfig) -> rnnlab_core::Result<Box<dyn Reader>> {
    Ok(Box::new(LinesPerClass(cfg)))
}

/// The one-file-per-label reader.
pub struct LinesPerClass(pub LinesConfig);

impl Reader for LinesPerClass {
    fn read(&self, _: Option<&Path>, cx: &mut ReadContext) -> rnnlab_core::Result<Vec<Row>> {
        let mut rows = Vec::new();
        for (label, path) in &self.0.files {
            rows.extend(read_lines(path, label, cx.log)?);
        }
        Ok(rows)
    }

    fn reads_path(&self) -> bool {
        false
    }

    fn source(&self) -> String {
        self.0
            .files
            .iter()
            .map(|(l, p)| format!("{l}={}", p.display()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn check(&self, data: &DataKeys) -> rnnlab_core::Result<()> {
        if data.group_by.is_some() {
            return Err(crate::readers::no_columns_to_group_by("lines-per-class"));
        }
        if !data.labels.is_empty() {
            if let Some(k) = self.0.files.keys().find(|k| !data.labels.contains(k)) {
                return Err(rnnlab_core::Error::invalid(
                    "data.files",
                    format!(
                        "label \"{k}\" is not in data.labels ({})",
                        data.labels.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The lines of `path` as rows labelled `label` (trailing whitespace trimmed, blank lines skipped).
pub fn read_lines(path: &Path, label: &str, log: &mut RowLog) -> Result<Vec<Row>, DataError> {
    let mut rows = Vec::new();
    crate::readers::for_each_line(path, |line, bytes| {
        let mut b = bytes;
        while let [rest @ .., b' ' | b'\t' | b'\r'] = b {
            b = rest;
        }
        if b.is_empty() {
            return Ok(());
        }
        match crate::readers::utf8(b, path, line, "text") {
            Ok(text) => rows.push(Row {
                text,
                label: label.to_string(),
                group: None,
                line,
            }),
            Err(e) => log.bad("utf8", e)?,
        }
        Ok(())
    })?;
    non_empty(rows, path, "no lines")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn trims_trailing_spaces_and_names_bad_lines() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"a fine film . \n\n  dull , dull \r\nbad \xe9\n")
            .unwrap();
        let msg = read_lines(f.path(), "pos", &mut RowLog::new(false))
            .unwrap_err()
            .to_string();
        assert!(msg.contains(":4: field \"text\": invalid UTF-8"), "{msg}");
        let mut log = RowLog::new(true);
        let rows = read_lines(f.path(), "pos", &mut log).unwrap();
        assert_eq!(log.skipped.rows, 1);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].text, "a fine film .");
        assert_eq!(rows[1].text, "  dull , dull");
        assert_eq!((rows[1].line, rows[1].label.as_str()), (3, "pos"));
        let msg = read_lines(Path::new("/nonexistent/x.pos"), "pos", &mut log)
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("/nonexistent/x.pos: "), "{msg}");
    }
}
