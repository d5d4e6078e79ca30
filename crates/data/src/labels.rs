//! The label map: label strings to class indices.

use std::collections::HashMap;
use std::path::Path;

use crate::{DataError, Row};

/// Class names in index order, and the reverse lookup.
///
/// When every label parses as an integer the classes are sorted numerically (`"2" < "10"`),
/// otherwise as strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelMap {
    names: Vec<String>,
    index: HashMap<String, u32>,
}

impl LabelMap {
    /// The map of the distinct labels in `labels`.
    pub fn from_labels<'a>(labels: impl IntoIterator<Item = &'a str>) -> Self {
        let mut names: Vec<String> = labels
            .into_iter()
            .collect::<std::collections::HashSet<_>>()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let numeric: Option<Vec<i128>> = names.iter().map(|n| n.trim().parse().ok()).collect();
        match numeric {
            Some(_) => {
                names.sort_by_cached_key(|n| (n.trim().parse::<i128>().unwrap_or(0), n.clone()))
            }
            None => names.sort(),
        }
        Self::from_names(names)
    }

    /// The map of the labels of `parts` (each a file, or `None` for generated rows, with its
    /// rows), as [`LabelMap::from_labels`], but a mix of integer and other labels is an error
    /// naming the first row of the rarer kind (a typo such as `four` among `0`-`4` would
    /// otherwise become a class of its own). `field` names the label column in the error.
    pub fn infer(parts: &[(Option<&Path>, &[Row])], field: &str) -> Result<Self, DataError> {
        let is_int = |l: &str| l.trim().parse::<i128>().is_ok();
        let rows = || {
            parts
                .iter()
                .flat_map(|(p, rows)| rows.iter().map(move |r| (*p, r)))
        };
        let ints = rows().filter(|(_, r)| is_int(&r.label)).count();
        let others = rows().count() - ints;
        if ints > 0 && others > 0 {
            let odd_is_int = ints < others;
            let (path, row) = rows()
                .find(|(_, r)| is_int(&r.label) == odd_is_int)
                .expect("a row of each kind exists");
            let (kind, rest) = if odd_is_int {
                ("an integer", "text")
            } else {
                ("not an integer", "integers")
            };
            return Err(DataError::Field {
                path: path.map(Path::to_path_buf).unwrap_or_default(),
                line: row.line,
                field: field.to_string(),
                message: format!(
                    "label \"{}\" is {kind} while {} other rows' labels are {rest}: \
                     fix the row, or declare the classes with data.labels",
                    row.label,
                    ints.max(others)
                ),
            });
        }
        Ok(Self::from_labels(rows().map(|(_, r)| r.label.as_str())))
    }

    /// The map whose classes are `names`, in this order (e.g. read back from labels.json).
    pub fn from_names(names: Vec<String>) -> Self {
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u32))
            .collect();
        LabelMap { names, index }
    }

    /// The class index of `label`.
    pub fn id(&self, label: &str) -> Option<u32> {
        self.index.get(label).copied()
    }

    /// The class names in index order (what the CLI saves as labels.json).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no classes.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_sort_numerically() {
        let m = LabelMap::from_labels(["10", "2", "0", "2", "-1"]);
        assert_eq!(m.names(), ["-1", "0", "2", "10"]);
        assert_eq!(m.id("10"), Some(3));
        assert_eq!(m.id("2"), Some(2));
        assert_eq!(m.id("7"), None);
    }

    fn row(label: &str, line: u64) -> Row {
        Row {
            text: "t".into(),
            label: label.into(),
            group: None,
            line,
        }
    }

    #[test]
    fn a_typo_among_integer_labels_is_an_error_naming_its_row() {
        let train = [row("0", 2), row("3", 3), row("four", 4), row("1", 5)];
        let test = [row("2", 2)];
        let parts = [
            (Some(Path::new("a.tsv")), &train[..]),
            (Some(Path::new("b.tsv")), &test[..]),
        ];
        let e = LabelMap::infer(&parts, "Sentiment")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("a.tsv:4: field \"Sentiment\": label \"four\""),
            "{e}"
        );
        assert!(e.contains("data.labels"), "{e}");
        // Mostly text labels: the odd one out is the integer, in the second file.
        let train = [row("pos", 2), row("neg", 3)];
        let test = [row("neg", 2), row("7", 3)];
        let parts = [
            (Some(Path::new("a.tsv")), &train[..]),
            (Some(Path::new("b.tsv")), &test[..]),
        ];
        let e = LabelMap::infer(&parts, "label").unwrap_err().to_string();
        assert!(
            e.starts_with("b.tsv:3: field \"label\": label \"7\" is an integer"),
            "{e}"
        );
        let ok = [row("10", 1), row("2", 2), row("2", 3)];
        let m = LabelMap::infer(&[(None, &ok[..])], "label").unwrap();
        assert_eq!(m.names(), ["2", "10"]);
    }

    #[test]
    fn other_labels_sort_as_strings() {
        let m = LabelMap::from_labels(["pos", "neg", "10", "neutral", "neg"]);
        assert_eq!(m.names(), ["10", "neg", "neutral", "pos"]);
        assert_eq!(m.len(), 4);
        assert_eq!(m.id("pos"), Some(3));
    }
}
