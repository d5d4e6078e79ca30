//! `rnnlab train --resume`: a run killed with SIGKILL mid-epoch and resumed ends with the same
//! metrics as a run never killed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rnnlab");

fn demo() -> String {
    format!("{}/../../pipelines/demo.toml", env!("CARGO_MANIFEST_DIR"))
}

const SETS: [&str; 4] = ["--set", "data.size=2400", "--set", "train.epochs=4"];

fn rnnlab(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn metric_lines(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Each epoch's metrics without the timings.
fn untimed(run: &Path) -> Vec<serde_json::Value> {
    metric_lines(run)
        .into_iter()
        .map(|mut v| {
            let o = v.as_object_mut().unwrap();
            for k in ["epoch_seconds", "eval_seconds", "tokens_per_second"] {
                o.remove(k);
            }
            v
        })
        .collect()
}

#[test]
fn killed_mid_epoch_and_resumed_matches_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let killed = dir.path().join("killed");
    let demo = demo();

    let mut args = vec!["train", demo.as_str(), "--threads", "2", "--out"];
    let status = rnnlab(&[&args[..], &[whole.to_str().unwrap()], &SETS[..]].concat())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(metric_lines(&whole).len(), 4);

    args.push(killed.to_str().unwrap());
    let mut child = rnnlab(&[&args[..], &SETS[..]].concat()).spawn().unwrap();
    // Wait for epoch 2 to end, then kill half-way through epoch 3.
    let t0 = Instant::now();
    let lines = loop {
        let lines = metric_lines(&killed);
        if lines.len() >= 2 {
            break lines;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before epoch 2 was logged"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "epoch 2 never ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let epoch_seconds = lines[1]["epoch_seconds"].as_f64().unwrap();
    std::thread::sleep(Duration::from_secs_f64(epoch_seconds / 2.0));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run finished before it could be killed"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = metric_lines(&killed).len();
    assert!(
        before < 4,
        "killed after the last epoch ({before} epochs logged)"
    );

    let status = rnnlab(&[
        "train",
        "--resume",
        killed.to_str().unwrap(),
        "--threads",
        "2",
    ])
    .status()
    .unwrap();
    assert!(status.success());
    assert_eq!(untimed(&killed), untimed(&whole));
}

#[test]
fn resume_without_a_snapshot_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["train", "--resume", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("config.resolved.toml"), "{err}");
}
