//! Property tests of the config layering (file < `--set`): any pipeline text and any `--set`
//! never panic, and either load or fail with an error naming the file or the `--set`; `--set`
//! wins over the file; a loaded pipeline written back as TOML loads as the same pipeline.
//!
//! Cases per property: `PROPTEST_CASES` (default 64, so CI stays quick).

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use rnnlab_cli::config::{self, Source, DEMO_PIPELINE};

fn cases() -> ProptestConfig {
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

fn load(dir: &Path, text: &str, sets: &[String]) -> anyhow::Result<config::PipelineConfig> {
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    config::load(Source::File(&path), sets)
}

/// The demo pipeline with a random stretch replaced by a random fragment: mostly well-formed
/// text with one fault somewhere.
fn mutated_pipeline() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just(String::new()),
        prop::sample::select(vec![
            "=",
            "[",
            "]",
            "[[",
            "]]",
            "{",
            "}",
            "\"",
            "'",
            "\n",
            ",",
            ".",
            "#",
            "\\",
            "${",
            "}",
            "epochs = ",
            "-1",
            "1e999",
            "nan",
            "inf",
            "true",
            "[train]",
            "[data]",
            "type = ",
            "\"lstm\"",
            "[[callbacks]]",
            "transforms = [",
            "${RNNLAB_SURELY_UNSET}",
            "split = { val = 2.0 }",
            "batch_size = 0",
            "\u{feff}",
            "\u{0}",
        ])
        .prop_map(str::to_string),
        any::<String>(),
    ];
    let n = DEMO_PIPELINE.len();
    (0..=n, 0usize..40, fragment).prop_map(move |(at, cut, frag)| {
        let t = DEMO_PIPELINE;
        let start = (0..=at).rev().find(|&i| t.is_char_boundary(i)).unwrap_or(0);
        let end = ((start + cut).min(n)..=n)
            .find(|&i| t.is_char_boundary(i))
            .unwrap_or(n);
        format!("{}{frag}{}", &t[..start], &t[end..])
    })
}

/// A `--set`: a key (real, odd or arbitrary) `=` a value (TOML, odd or arbitrary).
fn any_set() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        prop::sample::select(vec![
            "train.epochs",
            "seed",
            "data.batch_size",
            "data.split.val",
            "model.cell.hidden",
            "optim.transforms.0.lr",
            "optim.transforms.7.lr",
            "optim.transforms",
            "callbacks.0",
            "train",
            "a..b",
            ".",
            "",
            "x.0.y.1",
            "data.tokenizer.max_len",
            "optim.scheduler",
            "optim.transforms.99999999999999999999.lr",
            "model.cell.type",
            "data.path",
        ])
        .prop_map(str::to_string),
        "[a-z0-9_.\\[\\]-]{0,16}",
        any::<String>(),
    ];
    let value = prop_oneof![
        prop::sample::select(vec![
            "3",
            "-1",
            "0",
            "1e-3",
            "\"x\"",
            "[1, 2]",
            "{a = 1}",
            "[{type=\"adam\"}]",
            "${RNNLAB_SURELY_UNSET}",
            "",
            "nan",
            "inf",
            "true",
            "\"",
            "[",
            "{",
            "1979-05-27",
            "9999999999999999999999",
        ])
        .prop_map(str::to_string),
        any::<String>(),
    ];
    (key, value).prop_map(|(k, v)| format!("{k}={v}"))
}

/// `--set`s that keep the demo pipeline valid.
fn valid_set() -> impl Strategy<Value = String> {
    prop_oneof![
        (1usize..50).prop_map(|e| format!("train.epochs={e}")),
        any::<u32>().prop_map(|s| format!("seed={s}")),
        (1usize..512).prop_map(|b| format!("data.batch_size={b}")),
        (1e-6f64..1.0).prop_map(|lr| format!("optim.transforms.1.lr={lr:e}")),
        (1usize..300).prop_map(|h| format!("model.cell.hidden={h}")),
        (0.0f64..0.4).prop_map(|v| format!("data.split.val={v}")),
        prop::sample::select(vec!["lstm", "gru", "rnn"])
            .prop_map(|c| format!("model.cell.type=\"{c}\"")),
        Just(r#"optim.transforms=[{type="adam",lr=1e-3}]"#.to_string()),
        Just(r#"callbacks=[{type="grad_norm"},{type="jsonl_logger"}]"#.to_string()),
    ]
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn any_pipeline_text_and_sets_load_or_name_where(
        text in mutated_pipeline(),
        sets in prop::collection::vec(any_set(), 0..3),
    ) {
        let dir = tempfile::tempdir().unwrap();
        if let Err(e) = load(dir.path(), &text, &sets) {
            let msg = format!("{e:#}");
            let file = dir.path().join("pipeline.toml").display().to_string();
            prop_assert!(
                msg.contains(&file) || msg.contains("--set"),
                "names neither the file nor the --set: {msg}"
            );
        }
    }

    /// A key given in the file and by `--set` takes the `--set`'s value; strings of any text
    /// pass through TOML quoting unchanged.
    #[test]
    fn set_wins_over_the_file(
        file_epochs in 1usize..1000,
        set_epochs in prop::option::of(1usize..1000),
        seed in 0u64..=i64::MAX as u64,
        monitor in any::<String>().prop_filter("no variable", |s| !s.contains("${")),
    ) {
        prop_assert!(DEMO_PIPELINE.contains("\nepochs = 10\n"), "the default's epochs moved");
        let text = DEMO_PIPELINE.replace("\nepochs = 10\n", &format!("\nepochs = {file_epochs}\n"));
        let mut sets = vec![
            format!("seed={seed}"),
            format!("train.monitor={}", toml::Value::String(monitor.clone())),
        ];
        sets.extend(set_epochs.map(|e| format!("train.epochs={e}")));
        let dir = tempfile::tempdir().unwrap();
        let cfg = load(dir.path(), &text, &sets).unwrap();
        prop_assert_eq!(cfg.train.epochs, set_epochs.unwrap_or(file_epochs));
        prop_assert_eq!(cfg.seed, seed);
        prop_assert_eq!(cfg.train.monitor, monitor);
    }

    /// What `rnnlab train` writes as config.resolved.toml loads back as the same pipeline.
    #[test]
    fn a_loaded_pipeline_round_trips(sets in prop::collection::vec(valid_set(), 0..5)) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = load(dir.path(), DEMO_PIPELINE, &sets).unwrap();
        let text = toml::to_string_pretty(&cfg).unwrap();
        let again = load(dir.path(), &text, &[]).unwrap();
        prop_assert_eq!(toml::to_string_pretty(&again).unwrap(), text);
    }
}
