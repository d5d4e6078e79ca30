//! Property tests of every reader, the tokenizer and the GloVe parser: arbitrary bytes never
//! panic and either load or fail with an error that names the file (and a line of it when it
//! names one); rows written in a reader's format read back as written.
//!
//! Cases per property: `PROPTEST_CASES` (default 64, so CI stays quick).

use std::io::Write;
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use rnnlab_data::config::{Column, PreTokenizerKind, TokenizerConfig};
use rnnlab_data::tokenizer::{encode_texts, fit_tokenizer, load_tokenizer, Vocab};
use rnnlab_data::tsv::{read_delimited, Columns, Format};
use rnnlab_data::{glove, jsonl, lines, sst, DataError, Row, RowLog};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A file holding `bytes`, in a folder that goes away with it.
struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

fn fixture(name: &str, bytes: &[u8]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    Fixture { _dir: dir, path }
}

/// Lines of `bytes` as an editor counts them (a last line without `\n` counts too).
fn line_count(bytes: &[u8]) -> u64 {
    let n = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
    n + u64::from(bytes.last().is_some_and(|&b| b != b'\n'))
}

/// `err` names `path`, and when it names a line (`path:N:`), N is a line of the file.
fn names_file_and_line(err: &DataError, path: &Path, lines: u64) -> Result<(), TestCaseError> {
    let msg = err.to_string();
    let p = path.display().to_string();
    prop_assert!(
        msg.starts_with(&p),
        "the error does not start with the file: {msg}"
    );
    if let Some(rest) = msg[p.len()..].strip_prefix(':') {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() {
            let n: u64 = digits.parse().unwrap();
            prop_assert!(
                (1..=lines.max(1)).contains(&n),
                "line {n} of a {lines}-line file: {msg}"
            );
        }
    }
    Ok(())
}

/// Every row of a successful read points at a line of the file.
fn rows_point_at_lines(rows: &[Row], lines: u64) -> Result<(), TestCaseError> {
    for r in rows {
        prop_assert!(
            (1..=lines).contains(&r.line),
            "row at line {} of {lines}",
            r.line
        );
    }
    Ok(())
}

/// Bytes biased towards what the formats give meaning to.
fn bytes_with(special: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        3 => any::<u8>(),
        3 => prop::sample::select(special),
        4 => prop::sample::select(b"abcxyz019 ".as_slice()),
    ];
    prop::collection::vec(byte, 0..400)
}

/// Text of a field: any characters, often plain words.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,6}( [a-z]{1,6}){0,4}",
        any::<String>(),
        "\\PC{0,20}",
    ]
}

fn delimited(bytes: &[u8], format: &Format, skip: bool) -> Result<(), TestCaseError> {
    let f = fixture("data.txt", bytes);
    let (t, l) = if format.header {
        (Column::Name("text".into()), Column::Name("label".into()))
    } else {
        (Column::Index(0), Column::Index(1))
    };
    let cols = Columns {
        text: &t,
        label: &l,
        group: None,
    };
    match read_delimited(&f.path, &cols, format, &mut RowLog::new(skip)) {
        Ok(rows) => rows_point_at_lines(&rows, line_count(bytes)),
        Err(e) => names_file_and_line(&e, &f.path, line_count(bytes)),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn tsv_arbitrary_bytes(
        body in bytes_with(b"\t\n\r\""),
        header in any::<bool>(),
        skip in any::<bool>(),
    ) {
        let bytes = if header { [b"text\tlabel\n".as_slice(), &body].concat() } else { body };
        delimited(&bytes, &Format { delimiter: b'\t', quoting: false, header }, skip)?;
    }

    #[test]
    fn csv_arbitrary_bytes(
        body in bytes_with(b",\n\r\"\""),
        header in any::<bool>(),
        skip in any::<bool>(),
    ) {
        let bytes = if header { [b"text,label\n".as_slice(), &body].concat() } else { body };
        delimited(&bytes, &Format { delimiter: b',', quoting: true, header }, skip)?;
    }

    /// TSV rows (fields without tab or line break) read back as written, with their lines.
    #[test]
    fn tsv_rows_round_trip(rows in prop::collection::vec(
        ("[^\t\r\n]{0,30}", "[^\t\r\n]{0,10}"), 1..20)
    ) {
        let mut s = String::from("text\tlabel\n");
        for (t, l) in &rows {
            s.push_str(&format!("{t}\t{l}\n"));
        }
        let f = fixture("rows.tsv", s.as_bytes());
        let (t, l) = (Column::Name("text".into()), Column::Name("label".into()));
        let cols = Columns { text: &t, label: &l, group: None };
        let got = read_delimited(&f.path, &cols, &Format::tsv(), &mut RowLog::new(false)).unwrap();
        prop_assert_eq!(got.len(), rows.len());
        for (i, (r, (t, l))) in got.iter().zip(&rows).enumerate() {
            prop_assert_eq!((&r.text, &r.label, r.line), (t, l, i as u64 + 2));
        }
    }

    /// CSV rows of any text, written by the csv crate (quoting what needs it), read back as
    /// written.
    #[test]
    fn csv_rows_round_trip(rows in prop::collection::vec((text(), "[a-z0-9]{1,5}"), 1..20)) {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(["text", "label"]).unwrap();
        for (t, l) in &rows {
            w.write_record([t, l]).unwrap();
        }
        let f = fixture("rows.csv", &w.into_inner().unwrap());
        let (t, l) = (Column::Name("text".into()), Column::Name("label".into()));
        let cols = Columns { text: &t, label: &l, group: None };
        let format = Format { delimiter: b',', quoting: true, header: true };
        let got = read_delimited(&f.path, &cols, &format, &mut RowLog::new(false)).unwrap();
        let got: Vec<(String, String)> = got.into_iter().map(|r| (r.text, r.label)).collect();
        prop_assert_eq!(got, rows);
    }

    #[test]
    fn jsonl_arbitrary_bytes(body in bytes_with(b"{}\":,[]\n\\"), skip in any::<bool>()) {
        let f = fixture("data.jsonl", &body);
        match jsonl::read_jsonl(&f.path, "text", "label", Some("group"), &mut RowLog::new(skip)) {
            Ok(rows) => rows_point_at_lines(&rows, line_count(&body))?,
            Err(e) => names_file_and_line(&e, &f.path, line_count(&body))?,
        }
    }

    /// Lines of JSON values of every kind under the keys the reader looks for.
    #[test]
    fn jsonl_arbitrary_values(
        values in prop::collection::vec(
            prop::collection::vec((prop::sample::select(vec!["text", "label", "group", "x"]), json()), 0..4),
            1..10),
        skip in any::<bool>(),
    ) {
        let body: String = values
            .iter()
            .map(|kv| {
                let obj: serde_json::Map<String, serde_json::Value> =
                    kv.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
                format!("{}\n", serde_json::Value::Object(obj))
            })
            .collect();
        let f = fixture("data.jsonl", body.as_bytes());
        match jsonl::read_jsonl(&f.path, "text", "label", Some("group"), &mut RowLog::new(skip)) {
            Ok(rows) => rows_point_at_lines(&rows, line_count(body.as_bytes()))?,
            Err(e) => names_file_and_line(&e, &f.path, line_count(body.as_bytes()))?,
        }
    }

    #[test]
    fn jsonl_rows_round_trip(rows in prop::collection::vec((text(), prop_oneof![
        "[a-z]{1,5}".prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
    ]), 1..20)) {
        let body: String = rows
            .iter()
            .map(|(t, l)| format!("{}\n", serde_json::json!({"text": t, "label": l})))
            .collect();
        let f = fixture("rows.jsonl", body.as_bytes());
        let got = jsonl::read_jsonl(&f.path, "text", "label", None, &mut RowLog::new(false)).unwrap();
        prop_assert_eq!(got.len(), rows.len());
        for (i, (r, (t, l))) in got.iter().zip(&rows).enumerate() {
            let label = match l {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            prop_assert_eq!((&r.text, &r.label, r.line), (t, &label, i as u64 + 1));
        }
    }

    #[test]
    fn sst_arbitrary_bytes(
        body in bytes_with(b"(() ) (3 -LRB-\n"),
        phrases in any::<bool>(),
        skip in any::<bool>(),
    ) {
        let f = fixture("trees.txt", &body);
        match sst::read_trees(&f.path, phrases, &mut RowLog::new(skip)) {
            Ok(rows) => rows_point_at_lines(&rows, line_count(&body))?,
            Err(e) => names_file_and_line(&e, &f.path, line_count(&body))?,
        }
    }

    /// A binarized tree written as PTB text parses back: the root's label and leaves, and one
    /// phrase per node.
    #[test]
    fn sst_trees_round_trip(trees in prop::collection::vec(tree(), 1..8)) {
        let body: String = trees.iter().map(|t| format!("{}\n", t.ptb())).collect();
        let f = fixture("trees.txt", body.as_bytes());
        let roots = sst::read_trees(&f.path, false, &mut RowLog::new(false)).unwrap();
        let phrases = sst::read_trees(&f.path, true, &mut RowLog::new(false)).unwrap();
        prop_assert_eq!(roots.len(), trees.len());
        prop_assert_eq!(phrases.len(), trees.iter().map(Tree::nodes).sum::<usize>());
        for (i, (r, t)) in roots.iter().zip(&trees).enumerate() {
            prop_assert_eq!(&r.label, &t.label().to_string());
            prop_assert_eq!(&r.text, &t.leaves().join(" "));
            prop_assert_eq!(r.line, i as u64 + 1);
        }
    }

    #[test]
    fn lines_per_class_arbitrary_bytes(body in bytes_with(b"\n\r \t"), skip in any::<bool>()) {
        let f = fixture("x.pos", &body);
        match lines::read_lines(&f.path, "pos", &mut RowLog::new(skip)) {
            Ok(rows) => rows_point_at_lines(&rows, line_count(&body))?,
            Err(e) => names_file_and_line(&e, &f.path, line_count(&body))?,
        }
    }

    /// Non-blank lines without trailing blanks read back as written, blank lines skipped.
    #[test]
    fn lines_per_class_round_trip(
        texts in prop::collection::vec(prop_oneof!["[^\r\n]*[^\r\n \t]", Just(String::new())], 1..20)
    ) {
        let body: String = texts.iter().map(|t| format!("{t}\n")).collect();
        let f = fixture("x.neg", body.as_bytes());
        match lines::read_lines(&f.path, "neg", &mut RowLog::new(false)) {
            Ok(rows) => {
                let want: Vec<(String, u64)> = texts
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| !t.is_empty())
                    .map(|(i, t)| (t.clone(), i as u64 + 1))
                    .collect();
                let got: Vec<(String, u64)> = rows.into_iter().map(|r| (r.text, r.line)).collect();
                prop_assert_eq!(got, want);
            }
            Err(e) => {
                prop_assert!(texts.iter().all(String::is_empty), "{e}");
            }
        }
    }

    /// Any texts and settings: the vocabulary starts with the specials and has no repeats, every
    /// text encodes to ids below its size (never none, at most `max_len`), and the saved
    /// tokenizer encodes as the fitted one.
    #[test]
    fn tokenizer_on_any_text(
        train in prop::collection::vec(text(), 0..12),
        other in prop::collection::vec(text(), 0..6),
        nfkc in any::<bool>(),
        lowercase in any::<bool>(),
        pre in prop::sample::select(vec![
            PreTokenizerKind::WhitespaceSplit,
            PreTokenizerKind::Bert,
            PreTokenizerKind::SpaceSplit,
        ]),
        min_freq in 1usize..3,
        max_size in 0usize..6,
        max_len in 0usize..5,
    ) {
        let cfg = TokenizerConfig {
            nfkc,
            lowercase,
            pre_tokenizer: pre,
            min_freq,
            max_size,
            max_len,
            ..TokenizerConfig::default()
        };
        let (tok, vocab) = fit_tokenizer(&cfg, train.iter().map(String::as_str)).unwrap();
        check_vocab(&vocab, max_size)?;
        let texts: Vec<&str> = train.iter().chain(&other).map(String::as_str).collect();
        let enc = encode_texts(&tok, texts.iter().copied()).unwrap();
        prop_assert_eq!(enc.ids.len(), texts.len());
        for ids in &enc.ids {
            prop_assert!(!ids.is_empty());
            prop_assert!(max_len == 0 || ids.len() <= max_len);
            prop_assert!(ids.iter().all(|&i| (i as usize) < vocab.len()), "{ids:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        tok.save(&path, false).unwrap();
        let (loaded, _) = load_tokenizer(&path, train.iter().map(String::as_str)).unwrap();
        let again = encode_texts(&loaded, texts.iter().copied()).unwrap();
        prop_assert_eq!(again.ids, enc.ids);
    }

    #[test]
    fn glove_arbitrary_bytes(body in bytes_with(b" \n.-e0123456789"), gz in any::<bool>()) {
        let bytes = if gz { gzip(&body) } else { body.clone() };
        let f = fixture("vectors.txt", &bytes);
        match glove::load_all(&f.path, None) {
            Ok(all) => prop_assert_eq!(all.values.len(), all.words.len() * all.dim),
            Err(e) => names_file_and_line(&e, &f.path, line_count(&body))?,
        }
        let (_, vocab) = fit_tokenizer(&TokenizerConfig::default(), ["abc xyz a b 0"]).unwrap();
        let opts = glove::LoadOptions { skip_bad_rows: gz, ..glove::LoadOptions::default() };
        match glove::load_embeddings(&f.path, &vocab, &opts, &mut rnnlab_core::seeded(0)) {
            Ok(e) => {
                prop_assert_eq!(e.values.len(), vocab.len() * e.dim);
                prop_assert!(e.values.iter().all(|v| v.is_finite()));
            }
            Err(e) => names_file_and_line(&e, &f.path, line_count(&body))?,
        }
    }

    /// Words and vectors written as GloVe text (plain or gzip) load back bit for bit. (A file of
    /// one-value rows whose first row is two whole numbers, `3 2`, reads as a word2vec header:
    /// the formats cannot tell them apart, so that first row is left out here.)
    #[test]
    fn glove_rows_round_trip(
        rows in (1usize..5).prop_flat_map(|dim| prop::collection::btree_map(
            "[a-zA-Z0-9_'.,-]{1,8}",
            prop::collection::vec(any::<f32>().prop_filter("finite", |v| v.is_finite()), dim),
            1..12,
        )).prop_filter("not a word2vec header", |rows| {
            let (w, v) = rows.iter().next().unwrap();
            !(v.len() == 1 && w.bytes().all(|b| b.is_ascii_digit()) && v[0] >= 1.0 && v[0].fract() == 0.0 && v[0].to_string().bytes().all(|b| b.is_ascii_digit()))
        }),
        gz in any::<bool>(),
    ) {
        let mut text = String::new();
        for (w, v) in &rows {
            let vals: Vec<String> = v.iter().map(f32::to_string).collect();
            text.push_str(&format!("{w} {}\n", vals.join(" ")));
        }
        let bytes = if gz { gzip(text.as_bytes()) } else { text.into_bytes() };
        let f = fixture("vectors.txt", &bytes);
        let all = glove::load_all(&f.path, None).unwrap();
        prop_assert_eq!(&all.words, &rows.keys().cloned().collect::<Vec<_>>());
        let want: Vec<u32> = rows.values().flatten().map(|v| v.to_bits()).collect();
        let got: Vec<u32> = all.values.iter().map(|v| v.to_bits()).collect();
        prop_assert_eq!(got, want);
    }
}

fn check_vocab(vocab: &Vocab, max_size: usize) -> Result<(), TestCaseError> {
    prop_assert_eq!(&vocab.tokens[..2], ["<pad>", "<unk>"]);
    let mut seen = std::collections::HashSet::new();
    prop_assert!(
        vocab.tokens.iter().all(|t| seen.insert(t)),
        "{:?}",
        vocab.tokens
    );
    prop_assert!(max_size == 0 || vocab.len() <= max_size + 2);
    Ok(())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(serde_json::Value::from),
        text().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..3)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A binarized sentiment tree: a leaf word or two subtrees, each with a 0..4 label.
#[derive(Clone, Debug)]
enum Tree {
    Leaf(u8, String),
    Node(u8, Box<Tree>, Box<Tree>),
}

impl Tree {
    fn label(&self) -> u8 {
        match self {
            Tree::Leaf(l, _) | Tree::Node(l, _, _) => *l,
        }
    }

    fn leaves(&self) -> Vec<String> {
        match self {
            Tree::Leaf(_, w) => vec![w.clone()],
            Tree::Node(_, a, b) => [a.leaves(), b.leaves()].concat(),
        }
    }

    fn nodes(&self) -> usize {
        match self {
            Tree::Leaf(..) => 1,
            Tree::Node(_, a, b) => 1 + a.nodes() + b.nodes(),
        }
    }

    fn ptb(&self) -> String {
        match self {
            Tree::Leaf(l, w) => format!("({l} {w})"),
            Tree::Node(l, a, b) => format!("({l} {} {})", a.ptb(), b.ptb()),
        }
    }
}

fn tree() -> impl Strategy<Value = Tree> {
    // Leaf words: no space or parenthesis, and no escape sequence (those are unescaped).
    let leaf = (0u8..5, "[a-zA-Z0-9.,'!?:;\u{e9}\u{a0}-]{1,6}")
        .prop_filter("not an escape", |(_, w)| {
            !w.starts_with("-L") && !w.starts_with("-R") && !w.contains('\\')
        })
        .prop_map(|(l, w)| Tree::Leaf(l, w));
    leaf.prop_recursive(4, 16, 2, |inner| {
        (0u8..5, inner.clone(), inner).prop_map(|(l, a, b)| Tree::Node(l, Box::new(a), Box::new(b)))
    })
}
