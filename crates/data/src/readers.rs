//! The reader registry: `data.type` names a reader; each reader is one file and one line here.
//!
//! To add a reader, write a module with a `pub const READER: Reader` (its name, a validation of
//! the keys it uses, and its read function) and list it in [`READERS`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::{DataConfig, DataError};

/// One example as read from a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The text, exactly as in the file (a single space stays a single space).
    pub text: String,
    /// The label, as a string (see [`crate::LabelMap`]).
    pub label: String,
    /// The value of the grouping column, when one was asked for.
    pub group: Option<String>,
    /// 1-based line number in the file (0 for generated rows).
    pub line: u64,
}

/// Reads the rows of one file (`path`: `data.path`, `split.train` or a split file; `None` for
/// readers that take their files from other keys or need none).
pub type ReadFn = fn(
    cfg: &DataConfig,
    path: Option<&Path>,
    log: &mut RowLog,
    rng: &mut rnnlab_core::Rng,
) -> Result<Vec<Row>, DataError>;

/// A registered reader.
#[derive(Clone, Copy)]
pub struct Reader {
    /// The `data.type` that picks it.
    pub name: &'static str,
    /// One line for `rnnlab list` and error messages.
    pub about: &'static str,
    /// Checks the `[data]` keys the reader uses (errors name the key).
    pub validate: fn(&DataConfig) -> Result<(), DataError>,
    /// Reads the rows.
    pub read: ReadFn,
}

/// Every reader, by `data.type`.
pub const READERS: &[Reader] = &[
    crate::tsv::TSV,
    crate::tsv::CSV,
    crate::jsonl::READER,
    crate::sst::READER,
    crate::lines::READER,
    crate::demo::READER,
];

/// The reader named `name`; an unknown name is an error listing the readers.
pub fn find(name: &str) -> Result<&'static Reader, DataError> {
    READERS.iter().find(|r| r.name == name).ok_or_else(|| {
        let names: Vec<&str> = READERS.iter().map(|r| r.name).collect();
        DataError::config(
            "data.type",
            format!(
                "unknown reader \"{name}\"{}; readers: {}",
                rnnlab_core::suggest(name, names.iter().copied()),
                names.join(", ")
            ),
        )
    })
}

/// Rows found malformed and skipped (`data.skip_bad_rows = true`), for the data report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Skipped {
    /// Rows skipped in all.
    pub rows: usize,
    /// Rows skipped per reason (`field_count`, `utf8`, `label`, `parse`, `empty`).
    pub by_reason: BTreeMap<String, usize>,
    /// The first few messages, naming file and line.
    pub examples: Vec<String>,
}

/// Where readers send malformed rows: an error, or (with `skip_bad_rows`) a count.
#[derive(Clone, Debug, Default)]
pub struct RowLog {
    /// Skip bad rows instead of failing.
    pub skip: bool,
    /// What was skipped.
    pub skipped: Skipped,
}

impl RowLog {
    /// A log that fails on the first bad row unless `skip`.
    pub fn new(skip: bool) -> Self {
        RowLog {
            skip,
            skipped: Skipped::default(),
        }
    }

    /// Reports a bad row: returns `err` unless skipping, else counts it under `reason`.
    pub fn bad(&mut self, reason: &str, err: DataError) -> Result<(), DataError> {
        if !self.skip {
            return Err(err);
        }
        let s = &mut self.skipped;
        s.rows += 1;
        *s.by_reason.entry(reason.to_string()).or_insert(0) += 1;
        if s.examples.len() < 5 {
            s.examples.push(err.to_string());
        }
        Ok(())
    }
}

/// `bytes` as UTF-8, or a [`DataError::Utf8`] naming file, line and field.
pub(crate) fn utf8(bytes: &[u8], path: &Path, line: u64, field: &str) -> Result<String, DataError> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|e| DataError::Utf8 {
            path: path.into(),
            line,
            field: field.into(),
            detail: e.to_string(),
        })
}

/// Opens `path` for buffered reading, decompressing gzip (a file that starts with the gzip magic
/// bytes, whatever its name): every reader and the GloVe loader read through this one function.
pub(crate) fn open(path: &Path) -> Result<Box<dyn std::io::BufRead + Send>, DataError> {
    use std::io::BufRead as _;
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut raw = std::io::BufReader::with_capacity(1 << 20, file);
    let gz = raw
        .fill_buf()
        .map_err(|e| DataError::io(path, e))?
        .starts_with(&[0x1f, 0x8b]);
    Ok(if gz {
        Box::new(std::io::BufReader::with_capacity(
            1 << 20,
            flate2::bufread::MultiGzDecoder::new(raw),
        ))
    } else {
        Box::new(raw)
    })
}

/// Calls `f(line_no, line)` for every line of `path` (without `\n` / `\r\n`).
pub(crate) fn for_each_line(
    path: &Path,
    mut f: impl FnMut(u64, &[u8]) -> Result<(), DataError>,
) -> Result<(), DataError> {
    use std::io::BufRead;
    let mut r = open(path)?;
    let mut buf = Vec::new();
    let mut line = 0u64;
    loop {
        buf.clear();
        if r.read_until(b'\n', &mut buf)
            .map_err(|e| DataError::io(path, e))?
            == 0
        {
            return Ok(());
        }
        line += 1;
        let mut l = buf.as_slice();
        if let [rest @ .., b'\n'] = l {
            l = rest;
        }
        if let [rest @ .., b'\r'] = l {
            l = rest;
        }
        f(line, l)?;
    }
}

/// Fails with "no rows" when `rows` is empty.
pub(crate) fn non_empty(rows: Vec<Row>, path: &Path, what: &str) -> Result<Vec<Row>, DataError> {
    if rows.is_empty() {
        return Err(DataError::Empty {
            path: path.into(),
            message: format!("no rows ({what})"),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_reader_lists_the_readers() {
        let msg = find("jsnl").err().unwrap().to_string();
        assert!(msg.contains("`data.type`"), "{msg}");
        assert!(msg.contains("jsonl"), "{msg}");
        assert!(msg.contains("sst-trees, lines-per-class, demo"), "{msg}");
        for r in READERS {
            assert_eq!(find(r.name).unwrap().name, r.name);
        }
    }
}
