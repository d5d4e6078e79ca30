//! The `Reader` trait: a data-file format, picked by the pipeline's `data.type`.
//!
//! A reader turns one file (or none, for generated data) into [`Row`]s; splitting, tokenizing and
//! batching are the data crate's and the same for every reader. Readers are registered in
//! [`crate::Registry::readers`] with their typed config (the reader's keys of the `[data]` table).

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

use crate::{Ctor, Result, Rng};

/// One example as read from a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The text, exactly as in the file (a single space stays a single space).
    pub text: String,
    /// The label, as a string (class indices are given to labels later, by the data crate).
    pub label: String,
    /// The value of the grouping column (`data.split.group_by`), when one was asked for.
    pub group: Option<String>,
    /// 1-based line number in the file (0 for generated rows).
    pub line: u64,
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
    pub fn bad<E: std::fmt::Display>(
        &mut self,
        reason: &str,
        err: E,
    ) -> std::result::Result<(), E> {
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

/// What a reader is given besides the file.
pub struct ReadContext<'a> {
    /// The grouping column (`data.split.group_by`), whose value goes to [`Row::group`].
    pub group_by: Option<&'a str>,
    /// Where malformed rows go.
    pub log: &'a mut RowLog,
    /// The run's generator, for readers that generate rows (the demo corpus).
    pub rng: &'a mut Rng,
}

/// A data-file format.
pub trait Reader: Send + Sync {
    /// The rows of `path`: `data.path`, `data.split.train` or a split file; `None` when the
    /// pipeline gives no file (readers that need one fail, naming `data.path`). Errors name the
    /// file, the line and the field.
    fn read(&self, path: Option<&Path>, cx: &mut ReadContext) -> Result<Vec<Row>>;

    /// The field labels are read from, for error messages (`label`, `Sentiment`, `#2`).
    fn label_field(&self) -> String {
        "label".into()
    }

    /// Whether the rows come from `data.path` and the split files (default). A reader that
    /// takes its files from its own keys, or generates rows, returns false and describes them
    /// in [`Reader::source`]; `data.path` and split files are then errors.
    fn reads_path(&self) -> bool {
        true
    }

    /// Where the rows come from, for readers that do not read `data.path`.
    fn source(&self) -> String {
        String::new()
    }

    /// Checks the shared `[data]` keys against this reader before anything is read (a grouping
    /// column it cannot give, labels its files do not have); errors name the key
    /// (`Error::invalid("data.split.group_by", ...)`). Default: everything goes.
    fn check(&self, _data: &DataKeys) -> Result<()> {
        Ok(())
    }
}

/// The `[data]` keys every reader shares, as [`Reader::check`] sees them.
#[derive(Clone, Copy, Debug)]
pub struct DataKeys<'a> {
    /// `data.split.group_by`.
    pub group_by: Option<&'a str>,
    /// `data.labels`, in class order (empty: inferred from the rows).
    pub labels: &'a [String],
}

/// Builds a reader from its keys of the `[data]` table.
pub type ReaderCtor = Ctor<Box<dyn Reader>>;
