//! The label map: label strings to class indices.

use std::collections::HashMap;

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

    #[test]
    fn other_labels_sort_as_strings() {
        let m = LabelMap::from_labels(["pos", "neg", "10", "neutral", "neg"]);
        assert_eq!(m.names(), ["10", "neg", "neutral", "pos"]);
        assert_eq!(m.len(), 4);
        assert_eq!(m.id("pos"), Some(3));
    }
}
