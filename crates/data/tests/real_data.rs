//! One short test on the real Kaggle phrases and GloVe 6B 50d (found through `RNNLAB_DATA`).

use std::path::PathBuf;

use rnnlab_data::{prepare, DataConfig, EmbeddingsConfig, OovInit, SplitConfig};

fn data_dir() -> PathBuf {
    let dir = std::env::var_os("RNNLAB_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join("../shared/data")
        });
    let probe = dir.join("rt-kaggle-phrases/train.tsv");
    assert!(
        probe.is_file() && dir.join("glove-6b-50d/glove.6B.50d.txt.gz").is_file(),
        "real data missing: expected {} and glove-6b-50d/glove.6B.50d.txt.gz under {}; \
         set RNNLAB_DATA to the shared data folder",
        probe.display(),
        dir.display()
    );
    dir
}

#[test]
fn kaggle_phrases_with_glove() {
    let dir = data_dir();
    let cfg = DataConfig {
        path: Some(dir.join("rt-kaggle-phrases/train.tsv")),
        reader: toml::from_str("text = \"Phrase\"\nlabel = \"Sentiment\"").unwrap(),
        split: SplitConfig {
            val: 0.1.into(),
            test: 0.1.into(),
            group_by: None,
            ..SplitConfig::default()
        },
        embeddings: Some(EmbeddingsConfig {
            kind: Default::default(),
            path: dir.join("glove-6b-50d/glove.6B.50d.txt.gz"),
            freeze: false,
            oov_init: OovInit::Normal,
            dim: Some(50),
            lowercase_fallback: true,
        }),
        ..DataConfig::default()
    };
    let start = std::time::Instant::now();
    let p = prepare(&cfg, &mut rnnlab_core::seeded(42)).unwrap();
    let r = &p.report;
    eprintln!(
        "prepare: {:.2?}\n{}",
        start.elapsed(),
        serde_json::to_string_pretty(r).unwrap()
    );
    assert_eq!(r.rows.train + r.rows.val + r.rows.test, 156_060);
    assert_eq!(r.rows.train, 124_848);
    assert_eq!(p.labels, ["0", "1", "2", "3", "4"]);
    let all: Vec<usize> = (0..5)
        .map(|k| r.label_counts.train[k] + r.label_counts.val[k] + r.label_counts.test[k])
        .collect();
    assert_eq!(all, [7_072, 27_273, 79_582, 32_927, 9_206]);
    assert_eq!(
        r.empty_texts.train + r.empty_texts.val + r.empty_texts.test,
        1
    );
    // README: 15,239 of 16,523 word types of an 80 % training split have a GloVe vector
    let c = r.coverage.as_ref().unwrap();
    assert!(c.types_total.abs_diff(16_523) < 400, "{c:?}");
    assert!(
        (c.type_fraction() - 15_239.0 / 16_523.0).abs() < 0.01,
        "{c:?}"
    );
    assert!(c.token_fraction() > 0.97, "{c:?}");
    assert_eq!(c.file_rows, 400_000);
    assert_eq!(p.embeddings.as_ref().unwrap().dims(), [p.vocab_size, 50]);
    // Length buckets are on by default: batches of 64 pad to about 1.08× the real tokens, where
    // random batches pad to several times.
    assert!(
        r.padding_ratio < 1.2,
        "bucketed batches pad little: {}",
        r.padding_ratio
    );
}
