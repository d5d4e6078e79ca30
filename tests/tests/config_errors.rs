//! Bad pipelines get clear errors that name the file, the key and a near valid key, and write
//! nothing.

use std::path::Path;

use rnnlab_cli::TrainOptions;

/// Trains the demo pipeline with `sets`, or the pipeline text `file` when given; returns the error.
fn fails(file: Option<&str>, sets: &[&str], out: &Path) -> String {
    let dir = out.parent().unwrap();
    let pipeline = file.map(|text| {
        let p = dir.join("bad.toml");
        std::fs::write(&p, text).unwrap();
        p
    });
    let opts = TrainOptions {
        pipeline: pipeline.or_else(|| Some(rnnlab_tests::pipeline("demo.toml"))),
        sets: sets.iter().map(|s| s.to_string()).collect(),
        out: Some(out.to_path_buf()),
        threads: Some(2),
        progress: false,
        resume: None,
    };
    let e = rnnlab_cli::train(&rnnlab_cli::registry(), &opts).unwrap_err();
    assert!(
        !out.exists(),
        "a failed run must write nothing, but {} exists",
        out.display()
    );
    format!("{e:#}")
}

#[test]
fn unknown_section_key_names_file_line_and_suggests() {
    let dir = tempfile::tempdir().unwrap();
    let demo = std::fs::read_to_string(rnnlab_tests::pipeline("demo.toml")).unwrap();
    let bad = demo.replace("epochs = 8", "epochz = 8");
    let line = bad.lines().position(|l| l.starts_with("epochz")).unwrap() + 1;
    let e = fails(Some(&bad), &[], &dir.path().join("run"));
    assert!(e.contains("bad.toml"), "{e}");
    assert!(e.contains(&format!("line {line}")), "{e}");
    assert!(e.contains("did you mean `epochs`?"), "{e}");
}

#[test]
fn unknown_plugin_key_and_name_suggest_the_near_one() {
    let dir = tempfile::tempdir().unwrap();
    let e = fails(
        None,
        &["optim.transforms.0.max_nrom=1.0"],
        &dir.path().join("a"),
    );
    assert!(
        e.contains("unknown key `max_nrom` at `optim.transforms[0]`"),
        "{e}"
    );
    assert!(e.contains("did you mean `max_norm`?"), "{e}");

    let e = fails(None, &["model.cell.type=lstn"], &dir.path().join("b"));
    assert!(e.contains("unknown cell `lstn`"), "{e}");
    assert!(e.contains("did you mean `lstm`?"), "{e}");
    assert!(e.contains("gru"), "the error lists the known cells: {e}");
}

#[test]
fn out_of_range_values_are_rejected_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let e = fails(None, &["optim.transforms.1.lr=-0.1"], &dir.path().join("a"));
    assert!(e.contains("optim.transforms[1].lr"), "{e}");
    let e = fails(None, &["model.dropout=1.5"], &dir.path().join("b"));
    assert!(e.contains("model.dropout"), "{e}");
    let e = fails(None, &["train.epochs=0"], &dir.path().join("c"));
    assert!(e.contains("train.epochs"), "{e}");
}

#[test]
fn a_missing_data_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(rnnlab_tests::pipeline("rt-lstm.toml"))
        .unwrap()
        .replace(
            "${RNNLAB_DATA}/rt-kaggle-phrases/train.tsv",
            "/nonexistent/phrases.tsv",
        );
    let e = fails(Some(&text), &[], &dir.path().join("run"));
    assert!(e.contains("/nonexistent/phrases.tsv"), "{e}");
}

#[test]
fn set_overrides_nested_array_entries() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    rnnlab_tests::train(
        "demo.toml",
        &[
            "optim.transforms.0.max_norm=1.5",
            "train.epochs=1",
            "data.size=300",
        ],
        &out,
    )
    .unwrap();
    let resolved: toml::Table =
        toml::from_str(&std::fs::read_to_string(out.join("config.resolved.toml")).unwrap())
            .unwrap();
    assert_eq!(
        resolved["optim"]["transforms"][0]["max_norm"].as_float(),
        Some(1.5)
    );
    assert_eq!(resolved["train"]["epochs"].as_integer(), Some(1));
}

#[test]
fn list_shows_every_plugin_with_parameters() {
    let text = rnnlab_cli::list::render(&rnnlab_cli::registry());
    for name in [
        "recurrent",
        "cnn",
        "rnn",
        "lstm",
        "gru",
        "adam",
        "clip_global_norm",
        "weight_decay",
        "constant",
        "early_stopping",
        "max_norm",
        "nonlinearity",
        "hidden",
        "pooling",
    ] {
        assert!(text.contains(name), "`rnnlab list` lacks {name}:\n{text}");
    }
    // Every reader, under its own heading, with its description and its keys' defaults.
    let readers = text
        .split("readers ([data] type; their keys go in [data]):\n")
        .nth(1)
        .unwrap_or_else(|| panic!("`rnnlab list` has no readers section:\n{text}"));
    for e in rnnlab_cli::registry().readers.entries() {
        assert!(
            readers
                .lines()
                .any(|l| l.trim_start().starts_with(e.spec.name) && l.ends_with(e.spec.doc)),
            "`rnnlab list` lacks the reader {}:\n{text}",
            e.spec.name
        );
    }
    for line in [
        "delimiter          = \",\"",
        "size               = 6000",
        "files              = (required)",
        "phrases            = false",
    ] {
        assert!(
            readers.contains(line),
            "`rnnlab list` lacks `{line}`:\n{text}"
        );
    }
}

#[test]
fn keys_inside_plugin_tables_and_unknown_plugins_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let demo = std::fs::read_to_string(rnnlab_tests::pipeline("demo.toml")).unwrap();
    let line_of =
        |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;

    let bad = demo.replace("max_norm = 5.0", "max_nrom = 5.0");
    let e = fails(Some(&bad), &[], &dir.path().join("a"));
    let line = line_of(&bad, "max_nrom");
    assert!(
        e.contains(&format!("bad.toml, line {line}: unknown key `max_nrom`")),
        "{e}"
    );
    assert!(e.contains("did you mean `max_norm`?"), "{e}");

    let bad = demo.replace("type = \"adam\"", "type = \"adamm\"");
    let e = fails(Some(&bad), &[], &dir.path().join("b"));
    let line = line_of(&bad, "adamm");
    assert!(
        e.contains(&format!("bad.toml, line {line}: unknown transform `adamm`")),
        "{e}"
    );

    let bad = format!("{demo}\n[[callbacks]]\ntype = \"early_stopping\"\npatience = 0\n");
    let e = fails(Some(&bad), &[], &dir.path().join("c"));
    let line = line_of(&bad, "patience = 0");
    assert!(
        e.contains(&format!(
            "bad.toml, line {line}: invalid value for `callbacks[0].patience`"
        )),
        "{e}"
    );

    // The same key set by --set names the override instead.
    let e = fails(
        None,
        &["optim.transforms.0.max_nrom=1.0"],
        &dir.path().join("d"),
    );
    assert!(
        e.starts_with("--set optim.transforms.0.max_nrom=1.0: unknown key"),
        "{e}"
    );
}

#[test]
fn watched_metrics_are_checked_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let e = fails(None, &["train.monitor=val_accc"], &dir.path().join("a"));
    assert!(e.contains("`train.monitor`"), "{e}");
    assert!(e.contains("did you mean `val_acc`?"), "{e}");

    let e = fails(
        None,
        &["callbacks=[{type=\"early_stopping\", monitor=\"val_los\"}]"],
        &dir.path().join("b"),
    );
    assert!(e.contains("`callbacks[0].monitor`"), "{e}");
    assert!(e.contains("did you mean `val_loss`?"), "{e}");

    let e = fails(
        None,
        &["optim.scheduler={type=\"reduce_on_plateau\", monitor=\"val_macro_f\"}"],
        &dir.path().join("c"),
    );
    assert!(e.contains("`optim.scheduler.monitor`"), "{e}");
    assert!(e.contains("did you mean `val_macro_f1`?"), "{e}");

    // No test split: no test_acc to watch.
    let e = fails(
        None,
        &["data.split.test=0.0", "train.monitor=test_acc"],
        &dir.path().join("d"),
    );
    assert!(
        e.contains("metric `test_acc` is not logged by this run"),
        "{e}"
    );

    // A monitor's figure read by a callback that runs before the monitor has logged it.
    let e = fails(
        None,
        &["callbacks=[{type=\"early_stopping\", monitor=\"grad_norm.global.p99\"}, {type=\"grad_norm\"}]"],
        &dir.path().join("e"),
    );
    assert!(e.contains("logged by callbacks[1] (grad_norm)"), "{e}");
}

/// `train.monitor = "val_loss"` picks the epoch with the lowest validation loss (the mode
/// follows the name), and the summary reports that metric.
#[test]
fn a_loss_monitor_keeps_the_lowest_and_the_summary_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let s = rnnlab_tests::train(
        "demo.toml",
        &[
            "train.monitor=val_loss",
            "train.epochs=4",
            "data.size=600",
            "optim.transforms.1.lr=0.05",
        ],
        &out,
    )
    .unwrap();
    let losses: Vec<f64> = s
        .history
        .iter()
        .map(|m| m.get("val_loss").unwrap())
        .collect();
    let (best_epoch, best) =
        losses.iter().enumerate().fold(
            (0, f64::INFINITY),
            |b, (i, &v)| if v < b.1 { (i + 1, v) } else { b },
        );
    let worst = losses.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert!(worst > best, "the losses do not differ: {losses:?}");
    // The model checkpoint's record, and its state in the snapshot (which a resume compares
    // with).
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("checkpoints/best.json")).unwrap())
            .unwrap();
    assert_eq!(record["epoch"], best_epoch, "{record}");
    assert_eq!(record["value"].as_f64(), Some(best), "{record}");
    let snap =
        rnnlab_core::checkpoint::load(&out.join("checkpoints/last.state.safetensors")).unwrap();
    let (_, kept) = snap
        .iter()
        .find(|(k, _)| k.ends_with(".model_checkpoint.best"))
        .expect("the snapshot holds the model checkpoint's state");
    let kept = kept.to_vec1::<f64>().unwrap()[0];
    assert_eq!(
        kept, best,
        "best checkpoint value {kept}, val_loss per epoch {losses:?}"
    );
    let line = s.line();
    assert!(
        line.contains(&format!(
            "best val_loss {best:.4} (min) at epoch {best_epoch}"
        )),
        "{line}"
    );
}
