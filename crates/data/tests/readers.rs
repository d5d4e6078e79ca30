//! Every reader, split kind and bad input through `prepare`, on small written fixtures.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rnnlab_core::EvalSplit;
use rnnlab_data::{prepare, DataConfig, Example, TextBatches};

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

fn parse(toml_text: &str) -> DataConfig {
    toml::from_str(toml_text).unwrap()
}

fn toml_path(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

fn texts(src: &TextBatches, tok: &tokenizers::Tokenizer, split: Option<EvalSplit>) -> Vec<String> {
    let ex: &[Example] = match split {
        None => src.train(),
        Some(s) => src.eval(s),
    };
    ex.iter()
        .map(|e| tok.decode(&e.ids, false).unwrap())
        .collect()
}

/// 30 reviews, labels pos/neg/mixed as strings, in a quoted CSV.
fn reviews_csv(dir: &Path, extra: &str) -> PathBuf {
    let mut s = String::from("id,review,sentiment\n");
    for i in 0..30 {
        let label = ["pos", "neg", "mixed"][i % 3];
        s.push_str(&format!("{i},\"film {i}, quite {label}\",{label}\n"));
    }
    s.push_str(extra);
    write(dir, "reviews.csv", &s)
}

#[test]
fn csv_with_string_labels_and_a_label_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = reviews_csv(dir.path(), "30,\"film 30, quite good\",great\n");
    let base = format!(
        "type = \"csv\"\npath = {}\ntext = \"review\"\nlabel = 2\nsplit = {{ val = 0.2, test = 0.2, stratify = true }}\n",
        toml_path(&path)
    );
    // labels from the data, sorted as strings
    let p = prepare(&parse(&base), &mut rnnlab_core::seeded(1)).unwrap();
    assert_eq!(p.labels, ["great", "mixed", "neg", "pos"]);
    // a label set in the config: the extra label is a bad row naming file, line and field
    let strict = format!("{base}labels = [\"neg\", \"pos\", \"mixed\"]\n");
    let msg = prepare(&parse(&strict), &mut rnnlab_core::seeded(1))
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("reviews.csv:32: field \"#2\": label \"great\" is not one of data.labels (neg, pos, mixed)"), "{msg}");
    let skip = format!("{strict}skip_bad_rows = true\n");
    let p = prepare(&parse(&skip), &mut rnnlab_core::seeded(1)).unwrap();
    assert_eq!(p.labels, ["neg", "pos", "mixed"]);
    let r = &p.report;
    assert_eq!(r.skipped.rows, 1);
    assert_eq!(r.skipped.by_reason["label"], 1);
    // stratified: 10 per class, 2 of each in val and test
    assert_eq!(r.label_counts.val, [2, 2, 2]);
    assert_eq!(r.label_counts.test, [2, 2, 2]);
    assert_eq!(r.label_counts.train, [6, 6, 6]);
}

#[test]
fn explicit_split_files_with_jsonl_and_leakage() {
    let dir = tempfile::tempdir().unwrap();
    let line = |t: &str, l: u32| format!("{{\"text\": \"{t}\", \"label\": {l}}}\n");
    let train: String = (0..20)
        .map(|i| line(&format!("Good film number {i}"), i % 2))
        .collect();
    let val = line("GOOD FILM NUMBER 3", 1) + &line("film number", 0) + &line("unseen words", 0);
    let test = line("another one", 1);
    let (tr, va, te) = (
        write(dir.path(), "train.jsonl", &train),
        write(dir.path(), "val.jsonl", &val),
        write(dir.path(), "test.jsonl", &test),
    );
    let cfg = parse(&format!(
        "type = \"jsonl\"\nsplit = {{ train = {}, val = {}, test = {} }}\n",
        toml_path(&tr),
        toml_path(&va),
        toml_path(&te)
    ));
    let p = prepare(&cfg, &mut rnnlab_core::seeded(1)).unwrap();
    let r = &p.report;
    assert_eq!((r.rows.train, r.rows.val, r.rows.test), (20, 3, 1));
    assert!(r.split.contains("val from its file"), "{}", r.split);
    // after lowercasing, "good film number 3" is a training text; "film number" is inside one
    let l = &r.leakage;
    assert_eq!((l.val_verbatim, l.val_contained, l.val_texts), (1, 2, 3));
    assert_eq!((l.test_verbatim, l.test_contained), (0, 0));
    // the val file's rows are val, in file order
    let val_texts = texts(&p.source, &p.tokenizer, Some(EvalSplit::Val));
    assert!(
        val_texts.iter().any(|t| t.contains("<unk>")),
        "{val_texts:?}"
    );
    // a missing split file is an error naming it
    let mut bad = cfg.clone();
    bad.split.test = rnnlab_data::SplitPart::File(dir.path().join("nope.jsonl"));
    let msg = prepare(&bad, &mut rnnlab_core::seeded(1))
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("nope.jsonl"), "{msg}");
}

#[test]
fn grouped_tsv_split_has_no_group_in_two_splits() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = String::from("doc\ttext\tlabel\n");
    for d in 0..40 {
        for k in 0..(d % 3 + 1) {
            s.push_str(&format!("d{d}\tpart {k} of doc {d}\t{}\n", d % 2));
        }
    }
    let path = write(dir.path(), "docs.tsv", &s);
    let cfg = parse(&format!(
        "path = {}\nsplit = {{ val = 0.2, test = 0.2, group_by = \"doc\" }}\n",
        toml_path(&path)
    ));
    let rows = rnnlab_data::read_and_split(&cfg, &mut rnnlab_core::seeded(3)).unwrap();
    let set = |rows: &[rnnlab_data::Row]| {
        rows.iter()
            .map(|r| r.group.clone().unwrap())
            .collect::<HashSet<_>>()
    };
    let (tr, va, te) = (set(&rows.train), set(&rows.val), set(&rows.test));
    assert!(tr.is_disjoint(&va) && tr.is_disjoint(&te) && va.is_disjoint(&te));
    assert_eq!(tr.len() + va.len() + te.len(), 40);
    assert!(!va.is_empty() && !te.is_empty());
    // prepare splits the same way (same seed) and says how
    let p = prepare(&cfg, &mut rnnlab_core::seeded(3)).unwrap();
    assert_eq!(p.report.rows.val, rows.val.len());
    assert!(
        p.report.split.contains("grouped by doc"),
        "{}",
        p.report.split
    );
}

#[test]
fn lines_per_class_k_fold_covers_every_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let neg: String = (0..25).map(|i| format!("dull film {i} \n")).collect();
    let pos: String = (0..25).map(|i| format!("fine film {i} \n")).collect();
    let (n, p) = (
        write(dir.path(), "x.neg", &neg),
        write(dir.path(), "x.pos", &pos),
    );
    let mut seen: Vec<String> = Vec::new();
    for fold in 0..5 {
        let cfg = parse(&format!(
            "type = \"lines-per-class\"\nfiles = {{ neg = {}, pos = {} }}\n\
             split = {{ folds = 5, fold = {fold}, val = 0.2, stratify = true }}\n",
            toml_path(&n),
            toml_path(&p)
        ));
        let prep = prepare(&cfg, &mut rnnlab_core::seeded(7)).unwrap();
        let r = &prep.report;
        assert_eq!(prep.labels, ["neg", "pos"]);
        assert_eq!((r.rows.train, r.rows.val, r.rows.test), (30, 10, 10));
        assert_eq!(r.label_counts.val, [5, 5]);
        assert_eq!(r.label_counts.test, [5, 5]);
        let rows = rnnlab_data::read_and_split(&cfg, &mut rnnlab_core::seeded(7)).unwrap();
        assert_eq!(rows.test.len(), 10);
        seen.extend(rows.test.iter().map(|r| r.text.clone()));
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 50, "each line is in exactly one test fold");
    // trailing spaces were trimmed: "film 3" not "film 3 "
    assert!(seen.iter().all(|t| !t.ends_with(' ')));
}

#[test]
fn sst_phrases_grouped_by_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let trees: String = (0..20)
        .map(|i| format!("({} ({} good) (2 (2 film) (2 n{i})))\n", i % 5, (i + 1) % 5))
        .collect();
    let path = write(dir.path(), "train.txt", &trees);
    let cfg = parse(&format!(
        "type = \"sst-trees\"\npath = {}\nphrases = true\nsplit = {{ val = 0.2, test = 0.2, group_by = \"sentence\" }}\n",
        toml_path(&path)
    ));
    let p = prepare(&cfg, &mut rnnlab_core::seeded(1)).unwrap();
    let r = &p.report;
    assert_eq!(r.rows.train + r.rows.val + r.rows.test, 20 * 5);
    assert_eq!(r.rows.val % 5, 0);
    // every phrase of a held-out sentence is held out with it: of its 5 phrases only "good" and
    // "film" (in every sentence) are in train
    assert_eq!(
        r.leakage.test_verbatim,
        r.rows.test / 5 * 2,
        "{:?}",
        r.leakage
    );
}

#[test]
fn a_saved_tokenizer_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = reviews_csv(dir.path(), "");
    let base = format!(
        "type = \"csv\"\npath = {}\ntext = \"review\"\nlabel = \"sentiment\"\n",
        toml_path(&path)
    );
    let first = prepare(&parse(&base), &mut rnnlab_core::seeded(1)).unwrap();
    let tok_path = dir.path().join("tokenizer.json");
    first.tokenizer.save(&tok_path, true).unwrap();
    let again = format!("{base}[tokenizer]\npath = {}\n", toml_path(&tok_path));
    // another seed, another split: the vocabulary is still the saved one
    let second = prepare(&parse(&again), &mut rnnlab_core::seeded(2)).unwrap();
    assert!(second.report.tokenizer_loaded);
    assert_eq!(
        second.tokenizer.get_vocab(true),
        first.tokenizer.get_vocab(true)
    );
    assert_eq!(second.vocab_size, first.vocab_size);
}

#[test]
fn bad_glove_rows_fail_or_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = reviews_csv(dir.path(), "");
    let glove = write(dir.path(), "g.txt", "film 1 2\nquite 1\nneg 3 4\n");
    let base = format!(
        "type = \"csv\"\npath = {}\ntext = \"review\"\nlabel = \"sentiment\"\n\
         [embeddings]\npath = {}\n",
        toml_path(&path),
        toml_path(&glove)
    );
    let msg = prepare(&parse(&base), &mut rnnlab_core::seeded(1))
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("g.txt:2: expected 2 values after the word, found 1"),
        "{msg}"
    );
    let skip = base.replace("[embeddings]", "skip_bad_rows = true\n[embeddings]");
    let p = prepare(&parse(&skip), &mut rnnlab_core::seeded(1)).unwrap();
    let c = p.report.coverage.unwrap();
    assert_eq!((c.bad_rows, c.file_rows, c.types_found), (1, 2, 2));
}

#[test]
fn missing_files_name_the_path() {
    for toml_text in [
        "path = \"/nonexistent/a.tsv\"",
        "type = \"jsonl\"\npath = \"/nonexistent/a.jsonl\"",
        "type = \"sst-trees\"\npath = \"/nonexistent/a.txt\"",
        "type = \"lines-per-class\"\nfiles = { a = \"/nonexistent/a.txt\", b = \"/x\" }",
    ] {
        let msg = prepare(&parse(toml_text), &mut rnnlab_core::seeded(1))
            .err()
            .unwrap()
            .to_string();
        assert!(msg.starts_with("/nonexistent/a."), "{msg}");
    }
}
