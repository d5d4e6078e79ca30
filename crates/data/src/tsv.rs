//! Delimited files (`tsv`, `csv`): columns by header name or 0-based index, optional quoting.
//!
//! `tsv`: tab-separated, no quoting (every tab separates fields, quotes are ordinary characters).
//! `csv`: comma-separated, RFC 4180 quoting (a quoted field may hold the separator, `""` and
//! newlines). Both take `delimiter`, `quoting` and `header` from the config.

use std::path::Path;

use rnnlab_core::{DataKeys, PluginConfig, ReadContext, Reader};
use serde::{Deserialize, Serialize};

use crate::config::Column;
pub use crate::readers::Row;
use crate::readers::{non_empty, required_path, RowLog};
use crate::DataError;

/// `rnnlab list`'s line for `tsv`.
pub const ABOUT_TSV: &str = "tab-separated columns, no quoting";
/// `rnnlab list`'s line for `csv`.
pub const ABOUT_CSV: &str = "comma-separated columns with RFC 4180 quoting";

/// The keys of `type = "tsv"` and `type = "csv"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DelimitedConfig {
    /// The text column: header name, or 0-based index.
    pub text: Column,
    /// The label column, as `text`.
    pub label: Column,
    /// The first line is a header (without one, columns are 0-based indices).
    pub header: bool,
    /// The field separator, one byte.
    pub delimiter: String,
    /// `"` quotes fields (a quoted field may hold the separator, `""` and newlines).
    pub quoting: bool,
}

impl DelimitedConfig {
    /// tsv's defaults: tab-separated, a header, no quoting, columns `text` and `label`.
    pub fn tsv() -> Self {
        DelimitedConfig {
            text: "text".into(),
            label: "label".into(),
            header: true,
            delimiter: "\t".into(),
            quoting: false,
        }
    }

    /// csv's defaults: as tsv's, comma-separated with quoting.
    pub fn csv() -> Self {
        DelimitedConfig {
            delimiter: ",".into(),
            quoting: true,
            ..Self::tsv()
        }
    }
}

impl PluginConfig for DelimitedConfig {
    fn validate(&self, at: &str) -> rnnlab_core::Result<()> {
        let bad =
            |key: &str, msg: String| Err(rnnlab_core::Error::invalid(format!("{at}.{key}"), msg));
        if self.delimiter.len() != 1 {
            return bad(
                "delimiter",
                format!(
                    "\"{}\" is not one byte (e.g. \",\", \"\\t\", \";\")",
                    self.delimiter.escape_default()
                ),
            );
        }
        check_columns(&self.text, &self.label, at)?;
        if !self.header {
            for (key, c) in [("text", &self.text), ("label", &self.label)] {
                if let Column::Name(n) = c {
                    return bad(
                        key,
                        format!("column \"{n}\" by name, but header = false: give a 0-based index"),
                    );
                }
            }
        }
        Ok(())
    }
}

/// Text and label are two different, non-empty columns (`at.text`, `at.label`).
pub(crate) fn check_columns(text: &Column, label: &Column, at: &str) -> rnnlab_core::Result<()> {
    for (key, v) in [("text", text), ("label", label)] {
        if matches!(v, Column::Name(n) if n.is_empty()) {
            return Err(rnnlab_core::Error::invalid(
                format!("{at}.{key}"),
                "the column name is empty",
            ));
        }
    }
    if text == label {
        return Err(rnnlab_core::Error::invalid(
            format!("{at}.label"),
            format!("same column as {at}.text ({text})"),
        ));
    }
    Ok(())
}

/// Builds the tsv / csv reader.
pub fn build(cfg: DelimitedConfig) -> rnnlab_core::Result<Box<dyn Reader>> {
    Ok(Box::new(Delimited(cfg)))
}

/// A delimited-file reader.
pub struct Delimited(pub DelimitedConfig);

impl Reader for Delimited {
    fn read(&self, path: Option<&Path>, cx: &mut ReadContext) -> rnnlab_core::Result<Vec<Row>> {
        let c = &self.0;
        let path = required_path(path)?;
        let format = Format {
            delimiter: c.delimiter.bytes().next().unwrap_or(b'\t'),
            quoting: c.quoting,
            header: c.header,
        };
        let group = cx.group_by.map(|g| Column::Name(g.to_string()));
        let cols = Columns {
            text: &c.text,
            label: &c.label,
            group: group.as_ref(),
        };
        Ok(read_delimited(path, &cols, &format, cx.log)?)
    }

    fn label_field(&self) -> String {
        self.0.label.to_string()
    }

    fn check(&self, data: &DataKeys) -> rnnlab_core::Result<()> {
        if data.group_by.is_some() && !self.0.header {
            return Err(rnnlab_core::Error::invalid(
                "data.split.group_by",
                "a column by name, but header = false",
            ));
        }
        Ok(())
    }
}

/// The columns to read, with the config keys that named them.
#[derive(Clone, Debug)]
pub struct Columns<'a> {
    /// The text column (`data.text`).
    pub text: &'a Column,
    /// The label column (`data.label`).
    pub label: &'a Column,
    /// The grouping column (`data.split.group_by`), if any.
    pub group: Option<&'a Column>,
}

/// How a delimited file is written.
#[derive(Clone, Debug)]
pub struct Format {
    /// Field separator.
    pub delimiter: u8,
    /// `"` quotes fields.
    pub quoting: bool,
    /// The first line is a header.
    pub header: bool,
}

impl Format {
    /// Tab-separated with a header and no quoting.
    pub fn tsv() -> Self {
        Format {
            delimiter: b'\t',
            quoting: false,
            header: true,
        }
    }

    fn separated(&self) -> String {
        match self.delimiter {
            b'\t' => "tab-separated".into(),
            b',' => "comma-separated".into(),
            d => format!("'{}'-separated", (d as char).escape_default()),
        }
    }
}

/// Reads `path` as a tab-separated file whose first line is a header (see [`read_delimited`]).
pub fn read_tsv(path: &Path, cols: &Columns<'_>) -> Result<Vec<Row>, DataError> {
    read_delimited(path, cols, &Format::tsv(), &mut RowLog::new(false))
}

/// Reads the text, label and optional group columns of every row of `path`.
///
/// Errors name the file and line: a missing column lists the header; a row with another field
/// count than the header (or, without one, the first row), or a field that is not UTF-8, is an
/// error, or with `log.skip` a skipped row counted in `log`.
pub fn read_delimited(
    path: &Path,
    cols: &Columns<'_>,
    format: &Format,
    log: &mut RowLog,
) -> Result<Vec<Row>, DataError> {
    let file = crate::readers::open(path)?;
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(format.delimiter)
        .quoting(format.quoting)
        .has_headers(format.header)
        .flexible(true)
        .from_reader(file);
    let csv_err = |e: csv::Error| {
        let line = e.position().map(|p| p.line()).unwrap_or(0);
        match e.into_kind() {
            csv::ErrorKind::Io(io) => DataError::io(path, io),
            other => DataError::Invalid(format!("{}:{line}: {other:?}", path.display())),
        }
    };
    let names: Vec<String> = if format.header {
        let header = rdr.byte_headers().map_err(csv_err)?.clone();
        if header.is_empty() || header.iter().all(|f| f.is_empty()) && header.len() == 1 {
            return Err(DataError::Empty {
                path: path.into(),
                message: "no header line".into(),
            });
        }
        header
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect()
    } else {
        Vec::new()
    };
    let find = |c: &Column, key: &str| -> Result<usize, DataError> {
        let missing = || DataError::MissingColumn {
            path: path.into(),
            column: c.to_string(),
            key: key.into(),
            header: if names.is_empty() {
                "(no header)".into()
            } else {
                names
                    .iter()
                    .map(|n| format!("\"{n}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        };
        match c {
            Column::Name(n) => names.iter().position(|h| h == n).ok_or_else(missing),
            Column::Index(i) if names.is_empty() || *i < names.len() => Ok(*i),
            Column::Index(_) => Err(missing()),
        }
    };
    let text_i = find(cols.text, "data.text")?;
    let label_i = find(cols.label, "data.label")?;
    let group_i = cols
        .group
        .map(|g| find(g, "data.split.group_by"))
        .transpose()?;
    let field_name = |i: usize| names.get(i).cloned().unwrap_or_else(|| format!("#{i}"));

    let mut expected = (!names.is_empty()).then_some(names.len());
    let mut rows = Vec::new();
    let mut rec = csv::ByteRecord::new();
    while rdr.read_byte_record(&mut rec).map_err(csv_err)? {
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let want = *expected.get_or_insert(rec.len());
        let needed = text_i.max(label_i).max(group_i.unwrap_or(0)) + 1;
        if rec.len() != want || rec.len() < needed {
            log.bad(
                "field_count",
                DataError::FieldCount {
                    path: path.into(),
                    line,
                    separated: format.separated(),
                    expected: want.max(needed),
                    found: rec.len(),
                },
            )?;
            continue;
        }
        let field = |i: usize| {
            crate::readers::utf8(rec.get(i).unwrap_or_default(), path, line, &field_name(i))
        };
        let row: Result<Row, DataError> = (|| {
            Ok(Row {
                text: field(text_i)?,
                label: field(label_i)?,
                group: group_i.map(field).transpose()?,
                line,
            })
        })();
        match row {
            Ok(r) => rows.push(r),
            Err(e) => log.bad("utf8", e)?,
        }
    }
    non_empty(rows, path, "the file holds no data rows")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn fixture(content: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".tsv").tempfile().unwrap();
        f.write_all(content).unwrap();
        f
    }

    fn name(s: &str) -> Column {
        Column::Name(s.into())
    }

    fn cols<'a>(t: &'a Column, l: &'a Column, g: Option<&'a Column>) -> Columns<'a> {
        Columns {
            text: t,
            label: l,
            group: g,
        }
    }

    const HEADER: &[u8] = b"PhraseId\tSentenceId\tPhrase\tSentiment\n";

    fn kaggle(f: &tempfile::NamedTempFile) -> Result<Vec<Row>, DataError> {
        let (t, l, g) = (name("Phrase"), name("Sentiment"), name("SentenceId"));
        read_tsv(f.path(), &cols(&t, &l, Some(&g)))
    }

    #[test]
    fn reads_columns_by_header_name_and_keeps_a_single_space() {
        let f = fixture(
            &[
                HEADER,
                b"1\t1\tA series of \"escapades\"\t1\n2\t1\t \t2\n3\t2\tis n't bad\t3\n",
            ]
            .concat(),
        );
        let rows = kaggle(&f).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].text, "A series of \"escapades\"");
        assert_eq!(rows[0].label, "1");
        assert_eq!(rows[0].group.as_deref(), Some("1"));
        assert_eq!(rows[1].text, " ");
        assert_eq!(rows[1].line, 3);
        assert_eq!(rows[2].text, "is n't bad");
        assert_eq!(rows[2].group.as_deref(), Some("2"));
        // column order does not matter, and the group is optional
        let f = fixture(b"label\tsentence\n4\tgood fun\n");
        let (t, l) = (name("sentence"), name("label"));
        let rows = read_tsv(f.path(), &cols(&t, &l, None)).unwrap();
        assert_eq!(rows[0].text, "good fun");
        assert_eq!(rows[0].group, None);
    }

    /// A gzipped file reads as the plain one (the readers share the GloVe loader's gzip check).
    #[test]
    fn a_gzipped_file_reads_as_the_plain_one() {
        let text = [HEADER, b"1\t1\tgood fun\t3\n2\t1\tdull\t1\n"].concat();
        let plain = fixture(&text);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).unwrap();
        let zipped = fixture(&gz.finish().unwrap());
        let (a, b) = (kaggle(&plain).unwrap(), kaggle(&zipped).unwrap());
        assert_eq!(a.len(), 2);
        assert_eq!(
            a.iter().map(|r| (&r.text, &r.label)).collect::<Vec<_>>(),
            b.iter().map(|r| (&r.text, &r.label)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn csv_quoting_indices_and_no_header() {
        let f = fixture(
            b"id,review,stars\n1,\"good, really \"\"good\"\"\",5\n2,\"two\nlines\",1\n3,plain,3\n",
        );
        let csv = Format {
            delimiter: b',',
            quoting: true,
            header: true,
        };
        let (t, l) = (name("review"), Column::Index(2));
        let rows =
            read_delimited(f.path(), &cols(&t, &l, None), &csv, &mut RowLog::new(false)).unwrap();
        let with_header = f;
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].text, "good, really \"good\"");
        assert_eq!(rows[0].label, "5");
        assert_eq!(rows[1].text, "two\nlines");
        assert_eq!(rows[1].line, 3);
        assert_eq!(rows[2].line, 5);
        // no header: indices only, the first row sets the field count
        let f = fixture(b"pos;fine film\nneg;dull\n");
        let fmt = Format {
            delimiter: b';',
            quoting: false,
            header: false,
        };
        let (t, l) = (Column::Index(1), Column::Index(0));
        let rows =
            read_delimited(f.path(), &cols(&t, &l, None), &fmt, &mut RowLog::new(false)).unwrap();
        assert_eq!(
            (rows[0].text.as_str(), rows[0].label.as_str()),
            ("fine film", "pos")
        );
        assert_eq!(rows[1].line, 2);
        // an index past the header is a missing column
        let l = Column::Index(7);
        let msg = read_delimited(
            with_header.path(),
            &cols(&t, &l, None),
            &csv,
            &mut RowLog::new(false),
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("no column \"#7\""), "{msg}");
    }

    #[test]
    fn wrong_field_count_names_the_line_or_is_skipped() {
        let f = fixture(&[HEADER, b"1\t1\ta\t1\n2\t1\tb\n3\t2\tc\t0\n"].concat());
        let msg = kaggle(&f).unwrap_err().to_string();
        assert!(msg.contains(":3: expected 4 tab-separated fields"), "{msg}");
        assert!(msg.contains("found 3"), "{msg}");
        assert!(msg.contains(&f.path().display().to_string()), "{msg}");
        let (t, l) = (name("Phrase"), name("Sentiment"));
        let mut log = RowLog::new(true);
        let rows = read_delimited(f.path(), &cols(&t, &l, None), &Format::tsv(), &mut log).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(log.skipped.rows, 1);
        assert_eq!(log.skipped.by_reason["field_count"], 1);
        assert!(log.skipped.examples[0].contains(":3:"));
    }

    #[test]
    fn unknown_column_lists_the_header() {
        let f = fixture(&[HEADER, b"1\t1\ta\t1\n"].concat());
        let (t, l) = (name("Text"), name("Sentiment"));
        let msg = read_tsv(f.path(), &cols(&t, &l, None))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("no column \"Text\" (config key `data.text`)"),
            "{msg}"
        );
        assert!(
            msg.contains("\"PhraseId\", \"SentenceId\", \"Phrase\", \"Sentiment\""),
            "{msg}"
        );
    }

    #[test]
    fn invalid_utf8_names_line_and_field_or_is_skipped() {
        let f = fixture(&[HEADER, b"1\t1\tok\t1\n2\t1\tbad \xff\t1\n"].concat());
        let msg = kaggle(&f).unwrap_err().to_string();
        assert!(msg.contains(":3: field \"Phrase\": invalid UTF-8"), "{msg}");
        let (t, l) = (name("Phrase"), name("Sentiment"));
        let mut log = RowLog::new(true);
        let rows = read_delimited(f.path(), &cols(&t, &l, None), &Format::tsv(), &mut log).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(log.skipped.by_reason["utf8"], 1);
    }

    #[test]
    fn missing_file_and_empty_file_are_errors() {
        let (t, l) = (name("Phrase"), name("Sentiment"));
        let msg = read_tsv(Path::new("/nonexistent/x.tsv"), &cols(&t, &l, None))
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("/nonexistent/x.tsv: "), "{msg}");
        let f = fixture(HEADER);
        let msg = read_tsv(f.path(), &cols(&t, &l, None))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("no rows"), "{msg}");
    }
}
