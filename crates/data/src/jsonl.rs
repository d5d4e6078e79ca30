//! JSON lines (`type = "jsonl"`): one JSON object per line; `text`, `label` and `group_by` name
//! its keys. Labels may be strings or integers; blank lines are ignored.

use std::path::Path;

use rnnlab_core::{PluginConfig, ReadContext, Reader};
use serde::{Deserialize, Serialize};

use crate::config::Column;
use crate::readers::{non_empty, required_path, Row, RowLog};
use crate::DataError;

/// `rnnlab list`'s line for `jsonl`.
pub const ABOUT: &str = "one JSON object per line; text and label name keys";

/// The keys of `type = "jsonl"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonlConfig {
    /// The key of the text.
    pub text: Column,
    /// The key of the label (a string or an integer).
    pub label: Column,
}

impl Default for JsonlConfig {
    fn default() -> Self {
        JsonlConfig {
            text: "text".into(),
            label: "label".into(),
        }
    }
}

impl PluginConfig for JsonlConfig {
    fn validate(&self, at: &str) -> rnnlab_core::Result<()> {
        crate::tsv::check_columns(&self.text, &self.label, at)?;
        for (key, c) in [("text", &self.text), ("label", &self.label)] {
            if let Column::Index(i) = c {
                return Err(rnnlab_core::Error::invalid(
                    format!("{at}.{key}"),
                    format!("jsonl names keys, not positions ({i})"),
                ));
            }
        }
        Ok(())
    }
}

/// Builds the jsonl reader.
pub fn build(cfg: JsonlConfig) -> rnnlab_core::Result<Box<dyn Reader>> {
    Ok(Box::new(Jsonl(cfg)))
}

/// The JSON-lines reader.
pub struct Jsonl(pub JsonlConfig);

impl Reader for Jsonl {
    fn read(&self, path: Option<&Path>, cx: &mut ReadContext) -> rnnlab_core::Result<Vec<Row>> {
        let path = required_path(path)?;
        let (text, label) = (self.0.text.to_string(), self.0.label.to_string());
        Ok(read_jsonl(path, &text, &label, cx.group_by, cx.log)?)
    }

    fn label_field(&self) -> String {
        self.0.label.to_string()
    }
}

/// Reads `text`, `label` (and `group`) of every JSON object line of `path`.
pub fn read_jsonl(
    path: &Path,
    text: &str,
    label: &str,
    group: Option<&str>,
    log: &mut RowLog,
) -> Result<Vec<Row>, DataError> {
    let mut rows = Vec::new();
    crate::readers::for_each_line(path, |line, bytes| {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let s = match std::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => {
                return log.bad(
                    "utf8",
                    DataError::Utf8 {
                        path: path.into(),
                        line,
                        field: "line".into(),
                        detail: e.to_string(),
                    },
                )
            }
        };
        let field_err = |field: &str, message: String| DataError::Field {
            path: path.into(),
            line,
            field: field.into(),
            message,
        };
        let obj: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(s) {
            Ok(o) => o,
            Err(e) => {
                return log.bad(
                    "parse",
                    field_err("line", format!("not a JSON object: {e}")),
                )
            }
        };
        let get = |key: &str, numbers: bool| -> Result<String, DataError> {
            match obj.get(key) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(serde_json::Value::Number(n)) if numbers && n.is_i64() => Ok(n.to_string()),
                Some(v) => Err(field_err(
                    key,
                    format!(
                        "expected a string{}, found {v}",
                        if numbers { " or an integer" } else { "" }
                    ),
                )),
                None => Err(field_err(
                    key,
                    format!(
                        "no such key; the object has: {}",
                        obj.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                )),
            }
        };
        let row: Result<Row, DataError> = (|| {
            Ok(Row {
                text: get(text, false)?,
                label: get(label, true)?,
                group: group.map(|g| get(g, true)).transpose()?,
                line,
            })
        })();
        match row {
            Ok(r) => rows.push(r),
            Err(e) => log.bad("field", e)?,
        }
        Ok(())
    })?;
    non_empty(rows, path, "no JSON object lines")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn fixture(content: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new()
            .suffix(".jsonl")
            .tempfile()
            .unwrap();
        f.write_all(content).unwrap();
        f
    }

    #[test]
    fn reads_string_and_integer_labels_and_groups() {
        let f = fixture(
            b"{\"text\": \"good \\\"fun\\\"\", \"label\": 1, \"doc\": 7}\n\n\
              {\"label\": \"neg\", \"text\": \"dull\", \"doc\": \"a\"}\r\n",
        );
        let rows = read_jsonl(
            f.path(),
            "text",
            "label",
            Some("doc"),
            &mut RowLog::new(false),
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].text, "good \"fun\"");
        assert_eq!(rows[0].label, "1");
        assert_eq!(rows[0].group.as_deref(), Some("7"));
        assert_eq!(rows[1].label, "neg");
        assert_eq!(rows[1].line, 3);
    }

    #[test]
    fn bad_lines_name_line_and_key_or_are_skipped() {
        let f = fixture(
            b"{\"text\": \"ok\", \"label\": 0}\n{\"text\": \"x\"}\n{\"text\": \"y\", \"label\": 0.5}\nnot json\n{\"text\": \"\xff\", \"label\": 1}\n",
        );
        let msg = read_jsonl(f.path(), "text", "label", None, &mut RowLog::new(false))
            .unwrap_err()
            .to_string();
        assert!(msg.contains(":2: field \"label\": no such key"), "{msg}");
        let mut log = RowLog::new(true);
        let rows = read_jsonl(f.path(), "text", "label", None, &mut log).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(log.skipped.rows, 4);
        assert_eq!(log.skipped.by_reason["field"], 2);
        assert_eq!(log.skipped.by_reason["parse"], 1);
        assert_eq!(log.skipped.by_reason["utf8"], 1);
        assert!(
            log.skipped.examples[1]
                .contains(":3: field \"label\": expected a string or an integer, found 0.5"),
            "{:?}",
            log.skipped
        );
    }
}
