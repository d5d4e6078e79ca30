//! A reader added from outside rnnlab's crates: registered by code, named by a pipeline's
//! `data.type`, its keys checked and filled in like a built-in reader's, read by the one data
//! pipeline (split, tokenizer, batches) for training and for `eval`; without the registration
//! the name is unknown and the error says so.

use std::path::{Path, PathBuf};

use rnnlab_cli::TrainOptions;
use rnnlab_core::{ReadContext, Reader, RowLog};
use rnnlab_fasttext::{FastText, FastTextConfig};

/// Writes the demo corpus (`n` rows) in fastText's format; returns the file and the rows.
fn write_corpus(dir: &Path, n: usize) -> (PathBuf, Vec<rnnlab_core::Row>) {
    let rows = rnnlab_data::demo::generate(n, &mut rnnlab_core::seeded(7));
    let text: String = rows
        .iter()
        .map(|r| format!("__label__{} {}\n", r.label, r.text))
        .collect();
    let path = dir.join("corpus.txt");
    std::fs::write(&path, text).unwrap();
    (path, rows)
}

fn pipeline(dir: &Path, data: &Path, extra: &str) -> PathBuf {
    let text = format!(
        "seed = 3\n\
         [data]\n\
         type = \"fasttext\"\n\
         path = \"{}\"\n\
         labels = [\"negative\", \"positive\"]\n\
         split = {{ val = 0.1, test = 0.2 }}\n\
         batch_size = 32\n\
         {extra}\n\
         [model]\n\
         cell = {{ type = \"gru\", hidden = 16 }}\n\
         embedding_dim = 16\n\
         [train]\n\
         epochs = 2\n",
        data.display()
    );
    let p = dir.join("fasttext.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn train(
    registry: &rnnlab_core::Registry,
    pipeline: PathBuf,
    out: &Path,
) -> anyhow::Result<rnnlab_cli::RunSummary> {
    rnnlab_cli::train(
        registry,
        &TrainOptions {
            pipeline: Some(pipeline),
            sets: vec![],
            out: Some(out.to_path_buf()),
            threads: Some(1),
            progress: false,
            resume: None,
        },
    )
}

fn registry() -> rnnlab_core::Registry {
    let mut r = rnnlab_cli::registry();
    rnnlab_fasttext::register(&mut r);
    r
}

#[test]
fn reads_label_and_text_of_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let (path, rows) = write_corpus(dir.path(), 50);
    let mut log = RowLog::new(false);
    let mut cx = ReadContext {
        group_by: None,
        log: &mut log,
        rng: &mut rnnlab_core::seeded(0),
    };
    let read = FastText(FastTextConfig::default())
        .read(Some(&path), &mut cx)
        .unwrap();
    assert_eq!(read.len(), 50);
    for (i, (got, want)) in read.iter().zip(&rows).enumerate() {
        assert_eq!(got.text, want.text, "line {}", i + 1);
        assert_eq!(got.label, want.label, "line {}", i + 1);
        assert_eq!(got.line, i as u64 + 1);
    }
}

#[test]
fn a_pipeline_trains_on_a_fasttext_file_and_eval_reads_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_corpus(dir.path(), 600);
    let r = registry();
    let out = dir.path().join("run");
    let s = train(&r, pipeline(dir.path(), &path, ""), &out).unwrap();
    assert_eq!(s.history.len(), 2);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("data_report.json")).unwrap())
            .unwrap();
    assert_eq!(report["reader"], "fasttext");
    let rows = &report["rows"];
    let total = rows["train"].as_u64().unwrap()
        + rows["val"].as_u64().unwrap()
        + rows["test"].as_u64().unwrap();
    assert_eq!(total, 600);
    assert_eq!(rows["test"], 120);
    // The resolved config holds the reader's defaults, so the run folder says how it was read.
    let resolved: toml::Table =
        toml::from_str(&std::fs::read_to_string(out.join("config.resolved.toml")).unwrap())
            .unwrap();
    assert_eq!(resolved["data"]["label_prefix"].as_str(), Some("__label__"));
    // eval reads a file with the run's reader: the same 600 rows.
    let e = rnnlab_cli::eval::evaluate_file(&r, &out, &path, &Default::default()).unwrap();
    assert_eq!(e.reader, "fasttext");
    assert_eq!(e.evaluation.confusion.total(), 600);
    assert!(rnnlab_cli::list::render(&r).contains("label_prefix       = \"__label__\""));
}

#[test]
fn bad_lines_and_keys_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_corpus(dir.path(), 300);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text = text.replacen("__label__", "label:", 3); // line 3 is now unlabelled
    text = text.replacen("label:", "__label__", 2);
    std::fs::write(&path, &text).unwrap();
    let r = registry();
    let e = train(&r, pipeline(dir.path(), &path, ""), &dir.path().join("a")).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains(&format!("{}:3: field \"label\"", path.display())),
        "{msg}"
    );
    assert!(
        !dir.path().join("a").exists(),
        "a failed run wrote its folder"
    );
    // skipped and counted instead
    let out = dir.path().join("b");
    train(
        &r,
        pipeline(dir.path(), &path, "skip_bad_rows = true"),
        &out,
    )
    .unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("data_report.json")).unwrap())
            .unwrap();
    assert_eq!(report["skipped"]["rows"], 1);
    // a misspelt key of the reader, with the line it is on
    let p = pipeline(dir.path(), &path, "label_prefx = \"__l__\"");
    let msg = format!("{:#}", train(&r, p, &dir.path().join("c")).unwrap_err());
    assert!(msg.contains("line 8"), "{msg}");
    assert!(msg.contains("did you mean `label_prefix`?"), "{msg}");
    let p = pipeline(dir.path(), &path, "label_prefix = \"\"");
    let msg = format!("{:#}", train(&r, p, &dir.path().join("d")).unwrap_err());
    assert!(msg.contains("`data.label_prefix`"), "{msg}");
}

#[test]
fn without_registration_the_reader_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_corpus(dir.path(), 100);
    let p = pipeline(dir.path(), &path, "");
    let e = train(&rnnlab_cli::registry(), p, &dir.path().join("run")).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("unknown reader `fasttext`"), "{msg}");
    assert!(msg.contains("tsv, csv, jsonl"), "{msg}");
}
