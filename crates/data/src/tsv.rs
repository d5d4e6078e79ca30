//! Tab-separated files with a header: columns are found by name, quoting is off.

use std::path::Path;

use crate::DataError;

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

/// The columns to read, by header name, with the config keys that named them.
#[derive(Clone, Debug)]
pub struct Columns<'a> {
    /// The text column (`data.text`).
    pub text: &'a str,
    /// The label column (`data.label`).
    pub label: &'a str,
    /// The grouping column (`data.split.group_by`), if any.
    pub group: Option<&'a str>,
}

/// Reads `path` as a tab-separated file whose first line is a header, keeping the text, label
/// and optional group columns of every row.
///
/// Every tab separates fields and quotes are ordinary characters. Errors name the file and line:
/// a missing column lists the header; a row with another field count than the header, or a field
/// that is not UTF-8, is an error rather than a silently dropped row.
pub fn read_tsv(path: &Path, cols: &Columns<'_>) -> Result<Vec<Row>, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(b'\t')
        .quoting(false)
        .has_headers(true)
        .flexible(true)
        .from_reader(std::io::BufReader::with_capacity(1 << 20, file));
    let csv_err = |e: csv::Error| match e.into_kind() {
        csv::ErrorKind::Io(io) => DataError::io(path, io),
        other => DataError::Invalid(format!("{}: {other:?}", path.display())),
    };
    let header = rdr.byte_headers().map_err(csv_err)?.clone();
    if header.is_empty() {
        return Err(DataError::Empty {
            path: path.into(),
            message: "no header line".into(),
        });
    }
    let names: Vec<String> = header
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    let find = |name: &str, key: &str| {
        names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| DataError::MissingColumn {
                path: path.into(),
                column: name.into(),
                key: key.into(),
                header: names
                    .iter()
                    .map(|n| format!("\"{n}\""))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    };
    let text_i = find(cols.text, "data.text")?;
    let label_i = find(cols.label, "data.label")?;
    let group_i = cols
        .group
        .map(|g| find(g, "data.split.group_by"))
        .transpose()?;

    let mut rows = Vec::new();
    let mut rec = csv::ByteRecord::new();
    while rdr.read_byte_record(&mut rec).map_err(csv_err)? {
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        if rec.len() != header.len() {
            return Err(DataError::FieldCount {
                path: path.into(),
                line,
                expected: header.len(),
                found: rec.len(),
            });
        }
        let field = |i: usize| -> Result<String, DataError> {
            let bytes = rec.get(i).unwrap_or_default();
            std::str::from_utf8(bytes)
                .map(str::to_owned)
                .map_err(|e| DataError::Utf8 {
                    path: path.into(),
                    line,
                    field: names[i].clone(),
                    detail: e.to_string(),
                })
        };
        rows.push(Row {
            text: field(text_i)?,
            label: field(label_i)?,
            group: group_i.map(field).transpose()?,
            line,
        });
    }
    if rows.is_empty() {
        return Err(DataError::Empty {
            path: path.into(),
            message: "the header is followed by no rows".into(),
        });
    }
    Ok(rows)
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

    const COLS: Columns<'static> = Columns {
        text: "Phrase",
        label: "Sentiment",
        group: Some("SentenceId"),
    };

    #[test]
    fn reads_columns_by_header_name_and_keeps_a_single_space() {
        let f = fixture(
            b"PhraseId\tSentenceId\tPhrase\tSentiment\n\
              1\t1\tA series of \"escapades\"\t1\n\
              2\t1\t \t2\n\
              3\t2\tis n't bad\t3\n",
        );
        let rows = read_tsv(f.path(), &COLS).unwrap();
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
        let rows = read_tsv(
            f.path(),
            &Columns {
                text: "sentence",
                label: "label",
                group: None,
            },
        )
        .unwrap();
        assert_eq!(rows[0].text, "good fun");
        assert_eq!(rows[0].group, None);
    }

    #[test]
    fn wrong_field_count_names_the_line() {
        let f = fixture(b"PhraseId\tSentenceId\tPhrase\tSentiment\n1\t1\ta\t1\n2\t1\tb\n");
        let msg = read_tsv(f.path(), &COLS).unwrap_err().to_string();
        assert!(msg.contains(":3: expected 4 tab-separated fields"), "{msg}");
        assert!(msg.contains("found 3"), "{msg}");
        assert!(msg.contains(&f.path().display().to_string()), "{msg}");
    }

    #[test]
    fn unknown_column_lists_the_header() {
        let f = fixture(b"PhraseId\tSentenceId\tPhrase\tSentiment\n1\t1\ta\t1\n");
        let cols = Columns {
            text: "Text",
            ..COLS
        };
        let msg = read_tsv(f.path(), &cols).unwrap_err().to_string();
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
    fn invalid_utf8_names_line_and_field() {
        let f =
            fixture(b"PhraseId\tSentenceId\tPhrase\tSentiment\n1\t1\tok\t1\n2\t1\tbad \xff\t1\n");
        let msg = read_tsv(f.path(), &COLS).unwrap_err().to_string();
        assert!(msg.contains(":3: field \"Phrase\": invalid UTF-8"), "{msg}");
    }

    #[test]
    fn missing_file_and_empty_file_are_errors() {
        let msg = read_tsv(Path::new("/nonexistent/x.tsv"), &COLS)
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("/nonexistent/x.tsv: "), "{msg}");
        let f = fixture(b"PhraseId\tSentenceId\tPhrase\tSentiment\n");
        let msg = read_tsv(f.path(), &COLS).unwrap_err().to_string();
        assert!(msg.contains("no rows"), "{msg}");
    }
}
