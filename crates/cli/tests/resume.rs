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

/// Every file below `dir` with its bytes.
fn files(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

const SMALL: [&str; 6] = [
    "--set",
    "data.size=600",
    "--set",
    "train.epochs=2",
    "--set",
    "model.cell.hidden=16",
];

/// Trains a small demo run into `run` with `threads`.
fn small_run(run: &Path, threads: &str) {
    let demo = demo();
    let mut c = Command::new(BIN);
    c.args(["train", &demo, "--threads", threads, "--out"])
        .arg(run)
        .args(SMALL);
    succeeds(c);
}

/// Runs `c` (logging warnings only) and checks it succeeded.
fn succeeds(mut c: Command) {
    let out = c.env("RUST_LOG", "warn").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `rnnlab train --resume RUN ARGS...`: (success, stderr).
fn resume(run: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["train", "--resume"])
        .arg(run)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_failed_resume_changes_nothing_and_names_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    small_run(&run, "2");
    let before = files(&run);

    // An architecture-changing override is refused, naming the key.
    let (ok, err) = resume(
        &run,
        &["--set", "model.cell.hidden=32", "--set", "train.epochs=3"],
    );
    assert!(!ok);
    assert!(err.contains("`model.cell.hidden`"), "{err}");
    assert!(err.contains("architecture"), "{err}");
    assert_eq!(
        files(&run),
        before,
        "a refused resume changed the run folder"
    );
    // So is a change of the data the checkpoint was trained on.
    let (ok, err) = resume(&run, &["--set", "data.split.val=0.3"]);
    assert!(!ok);
    assert!(err.contains("`data.split.val`"), "{err}");
    assert_eq!(files(&run), before);

    // A truncated snapshot: the error names the file, nothing is rewritten.
    let snap = run.join("checkpoints/last.state.safetensors");
    let good = std::fs::read(&snap).unwrap();
    std::fs::write(&snap, &good[..good.len() / 2]).unwrap();
    let truncated = files(&run);
    let (ok, err) = resume(&run, &["--set", "train.epochs=3"]);
    assert!(!ok);
    assert!(err.contains("last.state.safetensors"), "{err}");
    assert_eq!(
        files(&run),
        truncated,
        "a failed resume changed the run folder"
    );

    // The folder is still whole: with the snapshot back, predict and resume work.
    std::fs::write(&snap, &good).unwrap();
    let mut c = Command::new(BIN);
    c.arg("predict").arg(&run).arg("a good film");
    succeeds(c);
    let (ok, err) = resume(
        &run,
        &["--set", "train.epochs=3", "--set", "model.dropout=0.3"],
    );
    assert!(ok, "{err}");
    assert_eq!(metric_lines(&run).len(), 3);
}

#[test]
fn provenance_keeps_the_first_command_and_resume_keeps_the_threads() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    small_run(&run, "1");
    let first: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("provenance.json")).unwrap()).unwrap();
    assert_eq!(first["threads"], 1);

    let (ok, err) = resume(&run, &["--set", "train.epochs=3"]);
    assert!(ok, "{err}");
    let (ok, err) = resume(&run, &["--set", "train.epochs=4", "--threads", "2"]);
    assert!(ok, "{err}");
    let p: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("provenance.json")).unwrap()).unwrap();
    assert_eq!(p["command_line"], first["command_line"], "{p:#}");
    assert_eq!(p["started_utc"], first["started_utc"], "{p:#}");
    assert_eq!(p["threads"], 1);
    let resumes = p["resumes"].as_array().unwrap();
    assert_eq!(resumes.len(), 2, "{p:#}");
    // Without --threads the run's own thread count; with it, the new one.
    assert_eq!(resumes[0]["threads"], 1, "{p:#}");
    assert_eq!(resumes[0]["after_epoch"], 2);
    assert_eq!(resumes[1]["threads"], 2, "{p:#}");
    assert_eq!(resumes[1]["after_epoch"], 3);
    for r in resumes {
        let cmd: Vec<&str> = r["command_line"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(cmd.contains(&"--resume"), "{cmd:?}");
        assert_eq!(r["started_utc"].as_str().unwrap().len(), 15);
    }
    assert_eq!(metric_lines(&run).len(), 4);
}

/// Two runs started at once on one `--out`: exactly one trains, the other fails saying why, and
/// the folder holds one run's epochs.
#[test]
fn two_runs_on_one_folder_one_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo();
    for attempt in 0..3 {
        let run = dir.path().join(format!("run{attempt}"));
        let spawn = || {
            Command::new(BIN)
                .args(["train", &demo, "--threads", "1", "--out"])
                .arg(&run)
                .args(SMALL)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
        let ok = outs.iter().filter(|o| o.status.success()).count();
        assert_eq!(ok, 1, "attempt {attempt}: {ok} of the two runs succeeded");
        let loser = outs.iter().find(|o| !o.status.success()).unwrap();
        let err = String::from_utf8_lossy(&loser.stderr);
        assert!(
            err.contains("in use by another rnnlab process") || err.contains("is not empty"),
            "{err}"
        );
        let epochs: Vec<i64> = metric_lines(&run)
            .iter()
            .map(|m| m["epoch"].as_i64().unwrap())
            .collect();
        assert_eq!(epochs, [1, 2], "attempt {attempt}");
    }
}
