//! `rnnlab sweep` with the local launcher: every variant is validated before a run starts; a
//! failed run does not stop the others; a killed sweep, run again, skips what finished, resumes
//! what did not, and ends with the metrics of an unbroken sweep; the report's mean ± std.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rnnlab_core::{read_metrics, SNAPSHOT};

mod common;
use common::{metrics, text, without_timings};

const BIN: &str = env!("CARGO_BIN_EXE_rnnlab");

fn rnnlab(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// A sweep of the demo pipeline (small corpus, small LSTM) written into `dir/sweep.toml`.
fn demo_sweep(dir: &Path, seeds: &str, epochs: usize, variants: &str) -> PathBuf {
    sized_demo_sweep(dir, seeds, epochs, 600, variants)
}

/// A sweep of the LSTM demo pipeline (`pipelines/demo.toml`) on `size` synthetic rows.
fn sized_demo_sweep(
    dir: &Path,
    seeds: &str,
    epochs: usize,
    size: usize,
    variants: &str,
) -> PathBuf {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/demo.toml");
    let file = dir.join("sweep.toml");
    std::fs::write(
        &file,
        format!(
            "base = {base:?}\nseeds = {seeds}\nout = \"runs\"\nthreads = 1\n\
             set = [\"data.size={size}\", \"train.epochs={epochs}\", \"model.cell.hidden=16\"]\n{variants}",
            base = base.display().to_string()
        ),
    )
    .unwrap();
    file
}

const TWO_VARIANTS: &str = "[[variants]]\nname = \"adam\"\n\n[[variants]]\nname = \"sgd\"\n\
     set = ['optim.transforms=[{type=\"sgd\",lr=0.1}]']\n";

#[test]
fn a_bad_variant_key_is_named_before_any_run_starts() {
    let dir = tempfile::tempdir().unwrap();
    let file = demo_sweep(
        dir.path(),
        "[1]",
        1,
        "[[variants]]\nname = \"fine\"\n\n[[variants]]\nname = \"typo\"\n\
         set = [\"optim.transforms.1.lrr=0.1\"]\n",
    );
    let out = rnnlab(&["sweep", file.to_str().unwrap()]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("variant `typo`"), "{t}");
    assert!(t.contains("lrr"), "{t}");
    assert!(!dir.path().join("runs").exists(), "a run started: {t}");
}

#[test]
fn a_failed_run_is_reported_and_the_others_finish() {
    let dir = tempfile::tempdir().unwrap();
    let file = demo_sweep(
        dir.path(),
        "[1]",
        1,
        "[[variants]]\nname = \"good\"\n\n[[variants]]\nname = \"missing-file\"\n\
         set = ['data.type=\"tsv\"', 'data.path=\"no/such/file.tsv\"', 'data.text=\"t\"', \
         'data.label=\"l\"']\n\n[[variants]]\nname = \"good2\"\nset = [\"seed=5\"]\n",
    );
    let out = rnnlab(&["sweep", file.to_str().unwrap()]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("FAILED missing-file/seed-1"), "{t}");
    assert!(t.contains("no/such/file.tsv"), "{t}");
    assert!(t.contains("1 of the sweep's runs failed"), "{t}");
    for ok in ["good", "good2"] {
        let m = metrics(&dir.path().join(format!("runs/{ok}/seed-1")));
        assert_eq!(m.len(), 1, "{ok}: {t}");
    }
    let st = text(&rnnlab(&["sweep", "status", file.to_str().unwrap()]));
    assert!(st.contains("3 runs: 2 done, 1 failed"), "{st}");
    assert!(
        st.lines()
            .any(|l| l.contains("missing-file/seed-1") && l.contains("failed")),
        "{st}"
    );
}

#[test]
fn a_variant_name_reused_with_other_overrides_in_a_shared_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = demo_sweep(dir.path(), "[1]", 1, "[[variants]]\nname = \"x\"\n");
    let out = rnnlab(&["sweep", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let other = dir.path().join("other.toml");
    std::fs::write(
        &other,
        "seeds = [1]\nout = \"runs\"\nthreads = 1\n\
         set = [\"data.size=600\", \"train.epochs=1\", \"model.cell.hidden=16\"]\n\
         [[variants]]\nname = \"x\"\nset = [\"data.batch_size=8\"]\n",
    )
    .unwrap();
    for args in [
        vec!["sweep", other.to_str().unwrap()],
        vec!["sweep", "status", other.to_str().unwrap()],
    ] {
        let out = rnnlab(&args);
        let t = text(&out);
        assert!(!out.status.success(), "{t}");
        assert!(
            t.contains("made with other overrides") && t.contains("`x`"),
            "{t}"
        );
    }
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_sweep_run_again_ends_as_an_unbroken_one() {
    // Epochs long enough (3000 rows) that the kill lands within the second run.
    let unbroken = tempfile::tempdir().unwrap();
    let file = sized_demo_sweep(unbroken.path(), "[1, 2]", 3, 3000, TWO_VARIANTS);
    let out = rnnlab(&["sweep", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));

    let broken = tempfile::tempdir().unwrap();
    let file = sized_demo_sweep(broken.path(), "[1, 2]", 3, 3000, TWO_VARIANTS);
    let first = broken.path().join("runs/adam/seed-1");
    let second = broken.path().join("runs/adam/seed-2");
    let mut child = Command::new(BIN)
        .args(["sweep", file.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill the launcher (its run dies with it) when the second run has one epoch of three and
    // its snapshot (written after the epoch's metrics line, atomically).
    wait_for(
        "an epoch of the second run",
        Duration::from_secs(300),
        || {
            read_metrics(&second.join("metrics.jsonl")).is_ok_and(|m| !m.is_empty())
                && second.join("checkpoints").join(SNAPSHOT).is_file()
        },
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(metrics(&first).len(), 3);
    let cut = metrics(&second).len();
    assert!(cut < 3, "the second run finished before the kill");
    assert!(!broken.path().join("runs/sgd").exists());

    let st = text(&rnnlab(&["sweep", "status", file.to_str().unwrap()]));
    assert!(
        st.contains("4 runs: 1 done, 1 interrupted, 2 pending"),
        "{st}"
    );

    let out = rnnlab(&["sweep", file.to_str().unwrap()]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("resuming adam/seed-2"), "{t}");
    assert!(t.contains("3 trained, 1 already finished"), "{t}");
    for run in ["adam/seed-1", "adam/seed-2", "sgd/seed-1", "sgd/seed-2"] {
        let a = metrics(&unbroken.path().join("runs").join(run));
        let b = metrics(&broken.path().join("runs").join(run));
        assert_eq!(a.len(), 3, "{run}");
        assert_eq!(without_timings(&a), without_timings(&b), "{run}");
    }
    let out = rnnlab(&["sweep", file.to_str().unwrap()]);
    assert!(
        text(&out).contains("0 trained, 4 already finished"),
        "{}",
        text(&out)
    );
}

/// Writes a run folder holding only `metrics.jsonl` with `test_acc`, `grad_norm_p50`,
/// `grad_norm_p99` and `clipped_frac` per epoch.
fn write_run(dir: &Path, rows: &[(f64, f64, f64, f64)]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut s = String::new();
    for (i, (acc, p50, p99, clipped)) in rows.iter().enumerate() {
        s.push_str(&format!(
            "{{\"epoch\":{},\"test_acc\":{acc},\"grad_norm_p50\":{p50},\"grad_norm_p99\":{p99},\"clipped_frac\":{clipped}}}\n",
            i + 1
        ));
    }
    std::fs::write(dir.join("metrics.jsonl"), s).unwrap();
}

#[test]
fn the_report_averages_each_variant_over_its_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let file = demo_sweep(
        dir.path(),
        "[1, 2, 3]",
        3,
        "window = 2\n[[variants]]\nname = \"a\"\n\n[[variants]]\nname = \"b\"\n",
    );
    let runs = dir.path().join("runs");
    // a: final 60 / 62 / 64 → 62 ± 2; swings over the last 2 epochs 4, 2, 6 → 4 ± 2;
    // best 64, 63, 65 → 64 ± 1; p50 means 1.0, 2.0, 3.0 → 2 ± 1; p99 max 5, 7, 9 → 7 ± 2;
    // clipped 10 %, 20 %, 30 % → 20 ± 10.
    write_run(
        &runs.join("a/seed-1"),
        &[
            (50.0, 1.0, 4.0, 0.1),
            (64.0, 1.0, 5.0, 0.1),
            (60.0, 1.0, 3.0, 0.1),
        ],
    );
    write_run(
        &runs.join("a/seed-2"),
        &[
            (63.0, 2.0, 7.0, 0.2),
            (60.0, 2.0, 1.0, 0.2),
            (62.0, 2.0, 1.0, 0.2),
        ],
    );
    write_run(
        &runs.join("a/seed-3"),
        &[
            (65.0, 3.0, 9.0, 0.3),
            (58.0, 3.0, 2.0, 0.3),
            (64.0, 3.0, 2.0, 0.3),
        ],
    );
    // b: one seed only, two epochs: no std.
    write_run(
        &runs.join("b/seed-2"),
        &[(40.0, 0.5, 0.5, 0.0), (41.5, 0.5, 0.5, 0.0)],
    );
    let out_dir = dir.path().join("report");
    let out = rnnlab(&[
        "sweep",
        "report",
        file.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("| a | 3 | 3 | 62.00 ± 2.00 | 64.00 ± 1.00 | – | 4.00 ± 2.00 |"),
        "{t}"
    );
    // std over the last 2 epochs: |60 - 64| / 2 = 2, 1, 3 → 2 ± 1; then p50 2 ± 1, p99 7 ± 2.
    assert!(
        t.contains("| 2.00 ± 1.00 | 2.00 ± 1.00 | 7.00 ± 2.00 | – | – | 20.0 ± 10.0 |"),
        "{t}"
    );
    assert!(
        t.contains("| b | 1 | 2 | 41.50 | 41.50 | – | 1.50 | 0.75 | 0.50 | 0.50 |"),
        "{t}"
    );
    let csv = std::fs::read_to_string(out_dir.join("sweep.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let a: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let num = |name: &str| a[col(name)].parse::<f64>().unwrap();
    assert!((num("final_test_acc_mean") - 62.0).abs() < 1e-9);
    assert!((num("final_test_acc_std") - 2.0).abs() < 1e-9);
    assert!((num("pct_clipped_mean") - 20.0).abs() < 1e-9);
    assert!((num("pct_clipped_std") - 10.0).abs() < 1e-9);
    assert_eq!(a[col("grad_norm_max_mean")], "");
    assert!(out_dir.join("plots/sweep_test_acc.svg").is_file());
    assert!(out_dir.join("sweep.md").is_file());
}

/// The validation rows of seed `seed`'s split of `run`'s corpus, written as a `text` / `label`
/// TSV (the demo corpus and the split come first from the run's generator).
fn write_val_rows(run: &Path, seed: u64, file: &Path) {
    let cfg = rnnlab_cli::config::load(
        rnnlab_cli::config::Source::File(&run.join("config.resolved.toml")),
        &[],
    )
    .unwrap();
    let split = rnnlab_data::read_and_split(&cfg.data, &mut rnnlab_core::seeded(seed)).unwrap();
    let mut text = String::from("text\tlabel\n");
    for r in &split.val {
        text.push_str(&format!("{}\t{}\n", r.text, r.label));
    }
    std::fs::write(file, text).unwrap();
}

/// The `val_acc` the trainer logged for the epoch that `checkpoints/best.json` names.
fn logged_best_val_acc(run: &Path) -> f64 {
    let best: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("checkpoints/best.json")).unwrap())
            .unwrap();
    let epoch = best["epoch"].as_u64().unwrap() as f64;
    metrics(run)
        .iter()
        .find(|m| m.get("epoch") == Some(epoch))
        .and_then(|m| m.get("val_acc"))
        .unwrap()
}

fn stored_accuracy(run: &Path, name: &str) -> f64 {
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join(format!("evals/{name}.json"))).unwrap(),
    )
    .unwrap();
    v["accuracy"].as_f64().unwrap()
}

#[test]
fn sweep_eval_scores_each_best_checkpoint_and_the_report_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = demo_sweep(dir.path(), "[1, 2]", 2, TWO_VARIANTS);
    let out = rnnlab(&["sweep", file.to_str().unwrap(), "--jobs", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    let runs = dir.path().join("runs");
    // Seed 1's validation rows: for the seed-1 runs, evaluating the best checkpoint on them must
    // give the val_acc logged at the best epoch.
    let heldout = dir.path().join("heldout.tsv");
    write_val_rows(&runs.join("adam/seed-1"), 1, &heldout);
    // A run whose best checkpoint is gone is skipped, and said to be.
    std::fs::remove_file(runs.join("adam/seed-2/checkpoints/best.safetensors")).unwrap();
    let eval = |extra: &[&str]| {
        let mut args = vec![
            "sweep",
            "eval",
            file.to_str().unwrap(),
            heldout.to_str().unwrap(),
            "--name",
            "heldout",
            "--reader",
            "tsv",
        ];
        args.extend_from_slice(extra);
        let out = rnnlab(&args);
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        t
    };
    let t = eval(&[]);
    assert!(
        t.contains("adam/seed-2  skipped: no checkpoints/best.safetensors"),
        "{t}"
    );
    assert!(t.contains("4 runs: 3 evaluated, 0 kept, 1 skipped"), "{t}");
    for v in ["adam", "sgd"] {
        let run = runs.join(format!("{v}/seed-1"));
        assert_eq!(
            stored_accuracy(&run, "heldout"),
            logged_best_val_acc(&run),
            "{v}"
        );
    }
    let sgd2 = stored_accuracy(&runs.join("sgd/seed-2"), "heldout");
    // Run again: kept; with --force: evaluated again, to the same figure.
    assert!(eval(&[]).contains("0 evaluated, 3 kept, 1 skipped"));
    assert!(eval(&["--force"]).contains("3 evaluated, 0 kept, 1 skipped"));
    assert_eq!(stored_accuracy(&runs.join("sgd/seed-2"), "heldout"), sgd2);

    // The report: one more column, mean ± sample std over the runs that have it.
    let out = rnnlab(&["sweep", "report", file.to_str().unwrap()]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("| params | heldout acc |"), "{t}");
    let adam1 = stored_accuracy(&runs.join("adam/seed-1"), "heldout");
    assert!(t.contains(&format!("| {adam1:.2} (1 of 2) |")), "{t}");
    let sgd1 = stored_accuracy(&runs.join("sgd/seed-1"), "heldout");
    let mean = (sgd1 + sgd2) / 2.0;
    let std = ((sgd1 - mean).powi(2) + (sgd2 - mean).powi(2)).sqrt();
    assert!(t.contains(&format!("| {mean:.2} ± {std:.2} |")), "{t}");
    assert!(
        t.contains(
            "heldout acc = accuracy in percent of each run's best checkpoint on heldout.tsv"
        ),
        "{t}"
    );
}
