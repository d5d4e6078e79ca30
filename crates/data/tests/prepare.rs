//! `prepare` end to end on fixture files and on the demo corpus.

use std::io::Write;

use rnnlab_core::{BatchSource, EvalSplit};
use rnnlab_data::{prepare, DataConfig, EmbeddingsConfig, OovInit, SplitConfig};

/// 60 sentences (groups) of 1..=4 phrases each; labels 0..=4; one phrase a single space.
fn write_tsv(dir: &std::path::Path) -> std::path::PathBuf {
    let words = [
        "good", "bad", "film", "is", "n't", "the", "plot", "dull", "fun", "a",
    ];
    let mut s = String::from("PhraseId\tSentenceId\tPhrase\tSentiment\n");
    let mut id = 1;
    for sent in 0..60usize {
        for k in 0..(sent % 4 + 1) {
            let text: Vec<&str> = (0..(k + sent % 5 + 1))
                .map(|j| words[(sent * 3 + k * 7 + j) % words.len()])
                .collect();
            let text = if id == 5 {
                " ".to_string()
            } else {
                text.join(" ")
            };
            s.push_str(&format!("{id}\t{sent}\t{text}\t{}\n", (sent + k) % 5));
            id += 1;
        }
    }
    let path = dir.join("train.tsv");
    std::fs::write(&path, s).unwrap();
    path
}

fn write_glove(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("glove.txt.gz");
    let f = std::fs::File::create(&path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    for (i, w) in ["the", "film", "good", "bad", "zebra", "plot", "fun"]
        .iter()
        .enumerate()
    {
        writeln!(gz, "{w} {} 0.5 -0.5 {}", i as f32 / 10.0, -(i as f32)).unwrap();
    }
    gz.finish().unwrap();
    path
}

fn config(dir: &std::path::Path) -> DataConfig {
    DataConfig {
        path: Some(write_tsv(dir)),
        reader: toml::from_str("text = \"Phrase\"\nlabel = \"Sentiment\"").unwrap(),
        split: SplitConfig {
            val: 0.2.into(),
            test: 0.2.into(),
            group_by: Some("SentenceId".into()),
            ..SplitConfig::default()
        },
        batch_size: 8,
        eval_batch_size: 16,
        embeddings: Some(EmbeddingsConfig {
            kind: Default::default(),
            path: write_glove(dir),
            freeze: true,
            oov_init: OovInit::Normal,
            dim: None,
            lowercase_fallback: true,
        }),
        ..DataConfig::default()
    }
}

#[test]
fn prepare_reads_splits_tokenizes_embeds_and_batches() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let mut rng = rnnlab_core::seeded(42);
    let p = prepare(&cfg, &mut rng).unwrap();
    let r = &p.report;
    assert_eq!(r.rows.train + r.rows.val + r.rows.test, 150);
    assert!(r.rows.val > 15 && r.rows.test > 15, "{:?}", r.rows);
    assert_eq!(p.labels, ["0", "1", "2", "3", "4"]);
    assert_eq!(r.label_counts.train.iter().sum::<usize>(), r.rows.train);
    // the single-space phrase is kept and encoded as <unk>
    assert_eq!(
        r.empty_texts.train + r.empty_texts.val + r.empty_texts.test,
        1
    );
    assert_eq!(p.vocab_size, p.tokenizer.get_vocab_size(true));
    assert!(p.vocab_size <= 12 && p.vocab_size > 5, "{}", p.vocab_size);
    let emb = p.embeddings.as_ref().unwrap();
    assert_eq!(emb.dims(), [p.vocab_size, 4]);
    assert!(p.freeze_embeddings);
    let rows = emb.to_vec2::<f32>().unwrap();
    assert_eq!(rows[0], [0.0; 4]);
    let film = p.tokenizer.token_to_id("film").unwrap() as usize;
    assert_eq!(rows[film], [0.1, 0.5, -0.5, -1.0]);
    let cov = r.coverage.as_ref().unwrap();
    assert_eq!(cov.types_total, p.vocab_size - 2);
    assert!(cov.types_found <= 6 && cov.types_found >= 4, "{cov:?}");
    assert!(r.padding_ratio >= 1.0);
    assert!(r.mean_length.train >= 1.0);

    // batches cover every example once, padded with 0
    let mut src = p.source;
    let batches = src.train_batches(1, &mut rng).unwrap();
    assert_eq!(
        batches.iter().map(|b| b.size()).sum::<usize>(),
        r.rows.train
    );
    assert!(batches.iter().all(|b| b.lengths.iter().all(|&l| l >= 1)));
    let val: usize = src
        .eval_batches(EvalSplit::Val)
        .unwrap()
        .iter()
        .map(|b| b.size())
        .sum();
    assert_eq!(val, r.rows.val);
    assert_eq!(src.num_classes(), 5);

    // same seed, same everything; another seed, another split
    let q = prepare(&cfg, &mut rnnlab_core::seeded(42)).unwrap();
    assert_eq!(q.report, p.report);
    assert_eq!(
        q.embeddings.unwrap().to_vec2::<f32>().unwrap(),
        rows,
        "OOV rows come from the run's generator"
    );
    let other = prepare(&cfg, &mut rnnlab_core::seeded(43)).unwrap();
    assert_ne!(other.report.rows, p.report.rows);
}

#[test]
fn prepare_reports_config_and_file_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.set_reader_key("label", "Label");
    let msg = prepare(&cfg, &mut rnnlab_core::seeded(1))
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("no column \"Label\""), "{msg}");
    let mut cfg = config(dir.path());
    cfg.split.test = (-0.1).into();
    let msg = prepare(&cfg, &mut rnnlab_core::seeded(1))
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("`data.split.test`"), "{msg}");
    // into the core error, keeping the message
    let core: rnnlab_core::Error = prepare(&cfg, &mut rnnlab_core::seeded(1))
        .err()
        .unwrap()
        .into();
    assert!(core.to_string().contains("`data.split.test`"));
}

#[test]
fn demo_pipeline_is_balanced_and_deterministic() {
    let cfg = DataConfig {
        kind: "demo".into(),
        reader: toml::from_str("size = 2000").unwrap(),
        batch_size: 32,
        buckets: true,
        ..DataConfig::default()
    };
    let p = prepare(&cfg, &mut rnnlab_core::seeded(5)).unwrap();
    assert_eq!(p.labels, ["negative", "positive"]);
    let r = &p.report;
    assert_eq!((r.rows.train, r.rows.val, r.rows.test), (1600, 200, 200));
    let c = &r.label_counts.train;
    assert!(c[0].abs_diff(c[1]) < 100, "{c:?}");
    assert!((60..=110).contains(&p.vocab_size), "{}", p.vocab_size);
    assert!(r.padding_ratio < 1.2, "buckets: {}", r.padding_ratio);
    let q = prepare(&cfg, &mut rnnlab_core::seeded(5)).unwrap();
    assert_eq!(q.report, p.report);
}
