//! `rnnlab eval RUN DATA`: a trained run evaluated on a data file with its own tokenizer and
//! labels gives the figures the trainer logged for the same rows, and bad input is a clear error.

use std::path::{Path, PathBuf};
use std::process::Command;

use rnnlab_cli::eval::{self, EvalOptions};
use rnnlab_cli::{config, TrainOptions};

const BIN: &str = env!("CARGO_BIN_EXE_rnnlab");

/// Runs `rnnlab eval RUN FILE EXTRA...` quietly.
fn eval_cmd(run: &Path, file: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("eval")
        .arg(run)
        .arg(file)
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// [`eval_cmd`], which must succeed.
fn eval_ok(run: &Path, file: &Path, extra: &[&str]) -> Vec<u8> {
    let out = eval_cmd(run, file, extra);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Trains the demo pipeline (a small LSTM, 2 epochs) into `dir/run`.
fn train_demo(dir: &Path) -> (PathBuf, Vec<rnnlab_core::EpochMetrics>) {
    train_demo_with(dir, &[])
}

/// [`train_demo`] with more overrides.
fn train_demo_with(dir: &Path, extra: &[&str]) -> (PathBuf, Vec<rnnlab_core::EpochMetrics>) {
    let run = dir.join("run");
    let mut sets = vec!["data.size=1200".to_string(), "train.epochs=2".into()];
    sets.extend(extra.iter().map(|s| s.to_string()));
    let opts = TrainOptions {
        pipeline: Some(format!("{}/../../pipelines/demo.toml", env!("CARGO_MANIFEST_DIR")).into()),
        sets,
        out: Some(run.clone()),
        threads: Some(2),
        progress: false,
        resume: None,
    };
    let summary = rnnlab_cli::train(&rnnlab_cli::registry(), &opts).unwrap();
    (run, summary.history)
}

/// The run's own validation rows, drawn again from its seed (the demo corpus and the split come
/// first from the run's generator), written as a TSV with a `text` and a `label` column.
fn write_val_rows(run: &Path, file: &Path) -> Vec<(String, String)> {
    let cfg = config::load(config::Source::File(&run.join("config.resolved.toml")), &[]).unwrap();
    let split = rnnlab_data::read_and_split(&cfg.data, &mut rnnlab_core::seeded(cfg.seed)).unwrap();
    let rows: Vec<(String, String)> = split
        .val
        .iter()
        .map(|r| (r.text.clone(), r.label.clone()))
        .collect();
    let mut text = String::from("text\tlabel\n");
    for (t, l) in &rows {
        assert!(!t.contains('\t'));
        text.push_str(&format!("{t}\t{l}\n"));
    }
    std::fs::write(file, text).unwrap();
    rows
}

#[test]
fn eval_on_the_runs_val_rows_gives_its_logged_val_figures() {
    let dir = tempfile::tempdir().unwrap();
    let (run, history) = train_demo(dir.path());
    let file = dir.path().join("val.tsv");
    let rows = write_val_rows(&run, &file);
    let registry = rnnlab_cli::registry();

    // `last` holds the weights of the last epoch, whose val figures the trainer logged.
    let opts = EvalOptions {
        checkpoint: "last".into(),
        reader: Some("tsv".into()),
        sets: vec![],
    };
    let r = eval::evaluate_file(&registry, &run, &file, &opts).unwrap();
    let last = history.last().unwrap();
    assert_eq!(r.epoch, Some(2));
    assert_eq!(r.examples() as usize, rows.len());
    assert_eq!(r.accuracy(), last.get("val_acc").unwrap());
    assert_eq!(r.macro_f1(), last.get("val_macro_f1").unwrap());
    let val_loss = last.get("val_loss").unwrap();
    assert!(
        (r.evaluation.loss - val_loss).abs() < 1e-6,
        "{} vs {val_loss}",
        r.evaluation.loss
    );

    // The per-class figures, recomputed from `predict` on the same texts.
    let loaded = rnnlab_cli::predict::load_run(&registry, &run, "last").unwrap();
    let texts: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    let preds = loaded.predict(&texts).unwrap();
    let classes = r.classes();
    assert_eq!(
        classes.iter().map(|c| c.label.clone()).collect::<Vec<_>>(),
        loaded.labels
    );
    for c in &classes {
        let predicted = preds.iter().filter(|p| p.label == c.label).count();
        let actual = rows.iter().filter(|r| r.1 == c.label).count();
        let right = preds
            .iter()
            .zip(&rows)
            .filter(|(p, r)| p.label == c.label && r.1 == c.label)
            .count();
        assert_eq!(c.support as usize, actual);
        let close = |x: f64, y: f64| assert!((x - y).abs() < 1e-9, "{}: {x} vs {y}", c.label);
        close(c.precision, 100.0 * right as f64 / predicted as f64);
        close(c.recall, 100.0 * right as f64 / actual as f64);
        close(c.f1, 200.0 * right as f64 / (predicted + actual) as f64);
        close(
            c.predicted_share,
            100.0 * predicted as f64 / rows.len() as f64,
        );
        close(c.true_share, 100.0 * actual as f64 / rows.len() as f64);
    }

    // The command line: `best` is the epoch with the best val_acc; --json for machines.
    let best_epoch = history.iter().fold((0.0, 0), |b, m| {
        let v = m.get("val_acc").unwrap();
        if v > b.0 {
            (v, m.get("epoch").unwrap() as usize)
        } else {
            b
        }
    });
    let out = eval_ok(&run, &file, &["--format", "tsv", "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(j["checkpoint"], "best");
    assert_eq!(j["epoch"], best_epoch.1);
    assert_eq!(j["accuracy"].as_f64().unwrap(), best_epoch.0);
    assert_eq!(j["examples"], rows.len());
    let counts: Vec<Vec<u64>> = serde_json::from_value(j["confusion"]["counts"].clone()).unwrap();
    assert_eq!(counts.iter().flatten().sum::<u64>() as usize, rows.len());
    assert_eq!(j["classes"].as_array().unwrap().len(), 2);

    // The text report has the headline, the per-class table and the matrix.
    let out = eval_ok(&run, &file, &["--reader", "tsv", "--checkpoint", "last"]);
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains(&format!("accuracy {:.2} %", r.accuracy())),
        "{text}"
    );
    assert!(
        text.contains("precision") && text.contains("predicted share"),
        "{text}"
    );
    assert!(
        text.contains("confusion matrix (rows: true class, columns: predicted class)"),
        "{text}"
    );

    // Headerless, other columns: --set says how to read it.
    let swapped = dir.path().join("swapped.tsv");
    let body: String = rows.iter().map(|(t, l)| format!("{l}\t{t}\n")).collect();
    std::fs::write(&swapped, body).unwrap();
    let opts2 = EvalOptions {
        checkpoint: "last".into(),
        reader: Some("tsv".into()),
        sets: vec![
            "header=false".into(),
            "data.text=1".into(),
            "label=0".into(),
        ],
    };
    let r2 = eval::evaluate_file(&registry, &run, &swapped, &opts2).unwrap();
    assert_eq!(r2.evaluation.confusion, r.evaluation.confusion);

    // Bad input: an unknown label names the file, line and field; nothing is printed.
    let bad = dir.path().join("bad.tsv");
    std::fs::write(
        &bad,
        "text\tlabel\na fine film\tpositive\na dull film\tmeh\n",
    )
    .unwrap();
    let e = eval::evaluate_file(&registry, &run, &bad, &opts).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains(&format!("{}:3:", bad.display())), "{msg}");
    assert!(
        msg.contains("field \"label\"") && msg.contains("\"meh\""),
        "{msg}"
    );
    assert!(msg.contains("negative, positive"), "{msg}");
    let out = eval_cmd(&run, &bad, &["--reader", "tsv"]);
    assert!(!out.status.success());
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(":3:"));
    // ... unless bad rows are to be skipped: then it is counted.
    let skip = EvalOptions {
        sets: vec!["skip_bad_rows=true".into()],
        ..opts.clone()
    };
    let r3 = eval::evaluate_file(&registry, &run, &bad, &skip).unwrap();
    assert_eq!((r3.examples(), r3.skipped.rows), (1, 1));

    // A missing column names the header; the demo run's own reader reads no file.
    let e = eval::evaluate_file(
        &registry,
        &run,
        &file,
        &EvalOptions {
            sets: vec!["text=Phrase".into()],
            ..opts.clone()
        },
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("no column \"Phrase\""), "{e:#}");
    let e = eval::evaluate_file(&registry, &run, &file, &EvalOptions::default()).unwrap_err();
    assert!(format!("{e:#}").contains("--reader"), "{e:#}");
    let e = eval::evaluate_file(
        &registry,
        &run,
        &file,
        &EvalOptions {
            sets: vec!["tokenizer.lowercase=false".into()],
            ..opts
        },
    )
    .unwrap_err();
    assert!(
        format!("{e:#}").contains("not a key eval can change"),
        "{e:#}"
    );
}

/// Issue 12, bug 1: with weight averaging the val figures describe the averaged weights, so the
/// best checkpoint must hold them (it held the raw weights: the map it was saved from shared the
/// parameters' storage, which the trainer swapped back to the raw weights before saving).
#[test]
fn under_ema_the_best_checkpoint_holds_the_averaged_weights() {
    let dir = tempfile::tempdir().unwrap();
    // Monitor `epoch` (mode max): the best checkpoint is the last epoch's, whose average the
    // snapshot also holds.
    let (run, history) = train_demo_with(
        dir.path(),
        &[
            r#"optim.transforms=[{type="clip_global_norm",max_norm=5.0},{type="adam",lr=3e-3},{type="ema",decay=0.9}]"#,
            "train.monitor=epoch",
        ],
    );
    let last = history.last().unwrap();
    let ckpt = run.join("checkpoints");
    let best = rnnlab_core::checkpoint::load(&ckpt.join("best.safetensors")).unwrap();
    let raw = rnnlab_core::checkpoint::load(&ckpt.join("last.safetensors")).unwrap();
    let snap = rnnlab_core::checkpoint::load(&ckpt.join(rnnlab_core::SNAPSHOT)).unwrap();
    let values = |t: &candle_core::Tensor| {
        t.to_dtype(candle_core::DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()
    };
    let mut differs = false;
    for (name, w) in &best {
        let avg = snap
            .iter()
            .find(|(k, _)| k.ends_with(&format!(".avg.{name}")))
            .unwrap_or_else(|| panic!("no average of {name} in the snapshot"))
            .1;
        let (w, a, r) = (values(w), values(avg), values(&raw[name]));
        for (x, y) in w.iter().zip(&a) {
            assert!(
                (x - y).abs() <= 1e-6 * (1.0 + y.abs()),
                "{name}: {x} vs {y}"
            );
        }
        differs |= w.iter().zip(&r).any(|(x, y)| (x - y).abs() > 1e-4);
    }
    assert!(
        differs,
        "the average equals the raw weights: the test shows nothing"
    );

    // `rnnlab eval` with `best` on the val rows reproduces the logged val figures (the
    // average's), not the raw weights'.
    let file = dir.path().join("val.tsv");
    write_val_rows(&run, &file);
    let opts = EvalOptions {
        checkpoint: "best".into(),
        reader: Some("tsv".into()),
        sets: vec![],
    };
    let r = eval::evaluate_file(&rnnlab_cli::registry(), &run, &file, &opts).unwrap();
    assert_eq!(r.accuracy(), last.get("val_acc").unwrap());
    let (val_loss, raw_loss) = (
        last.get("val_loss").unwrap(),
        last.get("raw_val_loss").unwrap(),
    );
    assert!(
        (r.evaluation.loss - val_loss).abs() < 1e-6,
        "{} vs {val_loss}",
        r.evaluation.loss
    );
    assert!(
        (r.evaluation.loss - raw_loss).abs() > 1e-4,
        "raw {raw_loss}"
    );
}
