//! Stanford Sentiment Treebank PTB trees (`type = "sst-trees"`): one binarized tree per line,
//! `(3 (2 (2 The) (2 Rock)) (4 ...))`, a 0..4 label on every node.
//!
//! One example per sentence (the root's label, the leaves joined by single spaces), or with
//! `phrases = true` one per node (every phrase, repeats kept). Leaves are unescaped: `-LRB-` →
//! `(`, `-RRB-` → `)`, `\/` → `/`. Tree text splits on ASCII space and parentheses only, so a
//! NO-BREAK SPACE (U+00A0) inside a leaf stays inside it. `split.group_by = "sentence"` keeps
//! the phrases of a sentence in one split.

use std::path::Path;

use rnnlab_core::{DataKeys, PluginConfig, ReadContext, Reader};
use serde::{Deserialize, Serialize};

use crate::readers::{non_empty, required_path, Row, RowLog};
use crate::DataError;

/// `rnnlab list`'s line for `sst-trees`.
pub const ABOUT: &str = "SST PTB trees: root labels, or every phrase; group_by = \"sentence\"";

/// The keys of `type = "sst-trees"`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SstConfig {
    /// One example per phrase (every node of every tree) instead of one per sentence (the root).
    pub phrases: bool,
}

impl PluginConfig for SstConfig {}

/// Builds the sst-trees reader.
pub fn build(cfg: SstConfig) -> rnnlab_core::Result<Box<dyn Reader>> {
    Ok(Box::new(SstTrees(cfg)))
}

/// The SST tree reader.
pub struct SstTrees(pub SstConfig);

impl Reader for SstTrees {
    fn read(&self, path: Option<&Path>, cx: &mut ReadContext) -> rnnlab_core::Result<Vec<Row>> {
        let path = required_path(path)?;
        Ok(read_trees(path, self.0.phrases, cx.log)?)
    }

    fn check(&self, data: &DataKeys) -> rnnlab_core::Result<()> {
        match data.group_by {
            None | Some("sentence") => Ok(()),
            Some(g) => Err(rnnlab_core::Error::invalid(
                "data.split.group_by",
                format!("sst-trees groups only by \"sentence\", not \"{g}\""),
            )),
        }
    }
}

/// One node: its label and the range of leaves under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The node's label, as written.
    pub label: String,
    /// First leaf index.
    pub start: usize,
    /// One past the last leaf index.
    pub end: usize,
}

/// A parsed tree: the unescaped leaves, and the nodes in pre-order (the root first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    /// The leaf tokens, unescaped.
    pub leaves: Vec<String>,
    /// Every node, root first.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// The leaves of `node` joined by single spaces.
    pub fn text(&self, node: &Node) -> String {
        self.leaves[node.start..node.end].join(" ")
    }
}

/// `-LRB-` → `(`, `-RRB-` → `)`, `\/` → `/` (and `-LSB-`/`-RSB-`, `-LCB-`/`-RCB-`, `\*`).
pub fn unescape(token: &str) -> String {
    match token {
        "-LRB-" => "(".into(),
        "-RRB-" => ")".into(),
        "-LSB-" => "[".into(),
        "-RSB-" => "]".into(),
        "-LCB-" => "{".into(),
        "-RCB-" => "}".into(),
        t => t.replace("\\/", "/").replace("\\*", "*"),
    }
}

/// Parses one PTB tree; the error says what was expected at which byte.
pub fn parse_tree(s: &str) -> Result<Tree, String> {
    let b = s.as_bytes();
    let mut pos = 0usize;
    let mut tree = Tree::default();
    let skip = |pos: &mut usize| {
        while *pos < b.len() && b[*pos] == b' ' {
            *pos += 1;
        }
    };
    let token = |pos: &mut usize| -> &str {
        let start = *pos;
        while *pos < b.len() && !matches!(b[*pos], b' ' | b'(' | b')') {
            *pos += 1;
        }
        &s[start..*pos]
    };
    // iterative parse with an explicit stack of open node indices
    let mut stack: Vec<usize> = Vec::new();
    skip(&mut pos);
    loop {
        skip(&mut pos);
        if pos >= b.len() {
            break;
        }
        match b[pos] {
            b'(' => {
                if stack.is_empty() && !tree.nodes.is_empty() {
                    return Err(format!("byte {}: text after the tree", pos + 1));
                }
                pos += 1;
                skip(&mut pos);
                let label = token(&mut pos);
                if label.is_empty() {
                    return Err(format!("byte {}: expected a label after '('", pos + 1));
                }
                tree.nodes.push(Node {
                    label: label.to_string(),
                    start: tree.leaves.len(),
                    end: tree.leaves.len(),
                });
                stack.push(tree.nodes.len() - 1);
                skip(&mut pos);
                if pos < b.len() && !matches!(b[pos], b'(' | b')') {
                    let leaf = token(&mut pos);
                    tree.leaves.push(unescape(leaf));
                }
            }
            b')' => {
                let Some(n) = stack.pop() else {
                    return Err(format!("byte {}: unbalanced ')'", pos + 1));
                };
                tree.nodes[n].end = tree.leaves.len();
                if tree.nodes[n].start == tree.nodes[n].end {
                    return Err(format!("byte {}: a node with no words", pos + 1));
                }
                pos += 1;
            }
            _ => {
                return Err(format!(
                    "byte {}: expected '(' or ')', found \"{}\"",
                    pos + 1,
                    token(&mut pos)
                ))
            }
        }
    }
    if !stack.is_empty() {
        return Err(format!("{} unclosed '('", stack.len()));
    }
    if tree.nodes.is_empty() {
        return Err("no tree".into());
    }
    Ok(tree)
}

/// Reads `path`: one example per tree (root label), or per node with `phrases`. Every row's
/// group is its tree's line number.
pub fn read_trees(path: &Path, phrases: bool, log: &mut RowLog) -> Result<Vec<Row>, DataError> {
    let mut rows = Vec::new();
    crate::readers::for_each_line(path, |line, bytes| {
        if bytes.iter().all(|&c| c == b' ') {
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
                        field: "tree".into(),
                        detail: e.to_string(),
                    },
                )
            }
        };
        let tree = match parse_tree(s) {
            Ok(t) => t,
            Err(message) => {
                return log.bad(
                    "parse",
                    DataError::Field {
                        path: path.into(),
                        line,
                        field: "tree".into(),
                        message,
                    },
                )
            }
        };
        let nodes = if phrases {
            &tree.nodes[..]
        } else {
            &tree.nodes[..1]
        };
        for n in nodes {
            rows.push(Row {
                text: tree.text(n),
                label: n.label.clone(),
                group: Some(line.to_string()),
                line,
            });
        }
        Ok(())
    })?;
    non_empty(rows, path, "no trees")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn parses_labels_spans_and_unescapes() {
        let t =
            parse_tree("(3 (2 (2 -LRB-) (2 Rock\\/2\u{a0}1\\/2)) (4 (3 is) (2 -RRB-)))").unwrap();
        assert_eq!(t.leaves, ["(", "Rock/2\u{a0}1/2", "is", ")"]);
        assert_eq!(t.nodes.len(), 7);
        assert_eq!(t.nodes[0].label, "3");
        assert_eq!(t.text(&t.nodes[0]), "( Rock/2\u{a0}1/2 is )");
        assert_eq!(t.text(&t.nodes[1]), "( Rock/2\u{a0}1/2");
        assert_eq!(
            (t.nodes[4].label.as_str(), t.text(&t.nodes[4]).as_str()),
            ("4", "is )")
        );
        assert_eq!(unescape("-LRB-"), "(");
        for bad in [
            "(3 (2 a)",
            "(3 a))",
            "(3 a) (2 b)",
            "3 a",
            "(3 (2 a) x)",
            "(3)",
        ] {
            assert!(parse_tree(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sentences_or_every_phrase_and_bad_lines() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"(3 (2 good) (4 fun))\n(1 (1 dull))\n(0 (0 bad\n")
            .unwrap();
        let msg = read_trees(f.path(), false, &mut RowLog::new(false))
            .unwrap_err()
            .to_string();
        assert!(msg.contains(":3: field \"tree\": 2 unclosed '('"), "{msg}");
        let mut log = RowLog::new(true);
        let rows = read_trees(f.path(), false, &mut log).unwrap();
        assert_eq!(log.skipped.by_reason["parse"], 1);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].text.as_str(), rows[0].label.as_str()),
            ("good fun", "3")
        );
        assert_eq!((rows[1].text.as_str(), rows[1].line), ("dull", 2));
        let rows = read_trees(f.path(), true, &mut RowLog::new(true)).unwrap();
        let got: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.text.as_str(), r.label.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("good fun", "3"),
                ("good", "2"),
                ("fun", "4"),
                ("dull", "1"),
                ("dull", "1")
            ]
        );
        assert_eq!(rows[3].group.as_deref(), Some("2"));
    }
}
