//! One file per label (`type = "lines-per-class"`), one text per line, as rt-polarity's
//! `rt-polarity.pos` / `rt-polarity.neg`: `files = { "0" = "x.neg", "1" = "x.pos" }`.
//! Trailing spaces (and `\r`) are trimmed; blank lines are skipped.

use std::path::Path;

use crate::readers::{non_empty, Reader, Row, RowLog};
use crate::DataError;

/// `type = "lines-per-class"`.
pub const READER: Reader = Reader {
    name: "lines-per-class",
    about: "one file per label, one text per line (files = { label = path, ... })",
    validate: |cfg| {
        if cfg.files.len() < 2 {
            return Err(DataError::config(
                "data.files",
                "lines-per-class needs a file per label, at least two: files = { neg = \"a.neg\", pos = \"a.pos\" }",
            ));
        }
        if cfg.path.is_some() || cfg.split.train.is_some() {
            return Err(DataError::config(
                "data.path",
                "lines-per-class reads data.files; give no path",
            ));
        }
        for part in [&cfg.split.val, &cfg.split.test] {
            if part.file().is_some() {
                return Err(DataError::config(
                    "data.split",
                    "lines-per-class takes fractions or folds, not split files",
                ));
            }
        }
        cfg.forbid_group_by()?;
        let names = cfg.label_names();
        if !names.is_empty() {
            if let Some(k) = cfg.files.keys().find(|k| !names.contains(k)) {
                return Err(DataError::config(
                    "data.files",
                    format!("label \"{k}\" is not in data.labels ({})", names.join(", ")),
                ));
            }
        }
        Ok(())
    },
    read: |cfg, _, log, _| {
        let mut rows = Vec::new();
        for (label, path) in &cfg.files {
            rows.extend(read_lines(path, label, log)?);
        }
        Ok(rows)
    },
};

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
