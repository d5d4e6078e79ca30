//! The embedded demo pipeline end to end: accuracy, the run folder, determinism.

use rnnlab_tests::{train, untimed};

const METRICS: &[&str] = &[
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "val_macro_f1",
    "test_loss",
    "test_acc",
    "test_macro_f1",
    "lr",
    "grad_norm_p50",
    "grad_norm_p99",
    "grad_norm_max",
    "clipped_frac",
    "skipped_steps",
    "epoch_seconds",
    "tokens_per_second",
];

#[test]
fn demo_learns_word_order_and_writes_a_complete_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let s = train("demo.toml", &[], &out).unwrap();
    let last = s.history.last().unwrap();
    let acc = last.get("test_acc").unwrap();
    // Chance is 50 % (balanced binary labels); a bag of words cannot solve the "but" sentences.
    assert!(acc >= 85.0, "demo test accuracy {acc:.2} < 85");

    for f in [
        "config.resolved.toml",
        "provenance.json",
        "tokenizer.json",
        "labels.json",
        "metrics.jsonl",
        "confusion.json",
        "data_report.json",
        "checkpoints/last.safetensors",
        "checkpoints/best.safetensors",
    ] {
        assert!(out.join(f).is_file(), "run folder lacks {f}");
    }
    let lines = rnnlab_core::read_metrics(&out.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.len(), s.history.len());
    for k in METRICS {
        assert!(lines[0].get(k).is_some(), "metrics.jsonl lacks `{k}`");
    }
    // The checkpoint uses PyTorch's names and layouts.
    let ckpt = rnnlab_core::checkpoint::load(&out.join("checkpoints/last.safetensors")).unwrap();
    let vocab = ckpt["embedding.weight"].dims()[0];
    assert_eq!(ckpt["embedding.weight"].dims(), &[vocab, 32]);
    assert_eq!(ckpt["rnn.weight_ih_l0"].dims(), &[4 * 64, 32]);
    assert_eq!(ckpt["rnn.weight_hh_l0"].dims(), &[4 * 64, 64]);
    assert_eq!(ckpt["rnn.bias_ih_l0"].dims(), &[4 * 64]);
    assert_eq!(ckpt["fc.weight"].dims(), &[2, 64]);
    // The resolved config is a pipeline that loads again, with defaults filled in.
    let resolved = std::fs::read_to_string(out.join("config.resolved.toml")).unwrap();
    let table: toml::Table = toml::from_str(&resolved).unwrap();
    assert_eq!(
        table["optim"]["transforms"][1]["beta2"].as_float(),
        Some(0.999)
    );
    let confusion: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("confusion.json")).unwrap())
            .unwrap();
    let counts = &confusion["test"]["counts"];
    let total: u64 = counts
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()))
        .sum();
    assert!(total > 0);
}

#[test]
fn one_seed_gives_identical_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let sets = ["data.size=1200", "train.epochs=2"];
    let a = train("demo.toml", &sets, &dir.path().join("a")).unwrap();
    let b = train("demo.toml", &sets, &dir.path().join("b")).unwrap();
    assert_eq!(untimed(&a), untimed(&b));
    let c = train(
        "demo.toml",
        &["data.size=1200", "train.epochs=2", "seed=7"],
        &dir.path().join("c"),
    )
    .unwrap();
    assert_ne!(
        untimed(&a),
        untimed(&c),
        "a different seed should change the metrics"
    );
}
