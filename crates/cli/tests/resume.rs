//! `rnnlab train --resume`: a run killed with SIGKILL mid-epoch, or stopped with Ctrl-C, and
//! resumed ends with the same metrics as a run never stopped; so do runs killed at random points,
//! during checkpoint writes too, and their folders stay loadable.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng as _;

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
    // Kill half-way through epoch 3.
    until_half_way_through_epoch_3(&mut child, &killed);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = metric_lines(&killed).len();
    assert!(
        before < 4,
        "killed after the last epoch ({before} epochs logged)"
    );

    resume_to_the_same_metrics(&killed, &whole);
}

/// Waits until epoch 2 of `run` is logged and then half an epoch more; `child` must still run.
fn until_half_way_through_epoch_3(child: &mut Child, run: &Path) {
    let t0 = Instant::now();
    let lines = loop {
        let lines = metric_lines(run);
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
        "the run finished before it could be stopped"
    );
}

/// Resumes `run` (2 threads); its metrics must then equal `whole`'s.
fn resume_to_the_same_metrics(run: &Path, whole: &Path) {
    let status = rnnlab(&["train", "--resume", run.to_str().unwrap(), "--threads", "2"])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(untimed(run), untimed(whole));
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

/// Callbacks with state within an epoch (step logs, norm and learning-rate lists, the spike
/// detector), so a resume that lost any of it would log other figures.
const CALLBACKS: &str = r#"callbacks=[{type="jsonl_logger"},{type="grad_norm"},{type="lr_monitor"},{type="stability"},{type="predictions"}]"#;

/// A learning rate that changes every step.
const STEP_SCHEDULE: &str = r#"optim.scheduler={type="cosine",T_max=400,interval="step"}"#;

/// A child process that is killed when dropped, so a failing test leaves none running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) with the pid of a child this process spawned and has not reaped.
    let r = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(r, 0, "kill({}, {sig})", child.id());
}

/// Waits for `child` to exit, at most `limit`.
fn wait_for(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("the run did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut s).unwrap();
    s
}

/// A scalar of a snapshot.
fn snapshot_scalar(run: &Path, key: &str) -> Option<f64> {
    let snap =
        rnnlab_core::checkpoint::load(&run.join("checkpoints").join(rnnlab_core::SNAPSHOT)).ok()?;
    let t = snap.get(key)?.to_dtype(candle_core::DType::F64).ok()?;
    t.flatten_all()
        .ok()?
        .to_vec1::<f64>()
        .ok()?
        .first()
        .copied()
}

/// Ctrl-C half-way through epoch 3: the run finishes its step, writes a snapshot that resumes
/// mid-epoch, says how to resume and exits with 130; resumed, its metrics, step log and
/// stability report equal an uninterrupted run's (dropout, a per-step learning rate and
/// monitors with state within the epoch included).
#[test]
fn ctrl_c_mid_epoch_writes_a_snapshot_that_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, stopped) = (dir.path().join("whole"), dir.path().join("stopped"));
    let demo = demo();
    let sets = [&SETS[..], &["--set", CALLBACKS, "--set", STEP_SCHEDULE]].concat();
    let args = ["train", demo.as_str(), "--threads", "2", "--out"];
    let status = rnnlab(&[&args[..], &[whole.to_str().unwrap()], &sets].concat())
        .status()
        .unwrap();
    assert!(status.success());

    let mut running = Running(
        rnnlab(&[&args[..], &[stopped.to_str().unwrap()], &sets].concat())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let child = &mut running.0;
    until_half_way_through_epoch_3(child, &stopped);
    signal(child, libc::SIGINT);
    let status = wait_for(child, Duration::from_secs(60));
    let err = stderr_of(child);
    assert_eq!(status.code(), Some(130), "{status:?}: {err}");
    let resume_cmd = format!("rnnlab train --resume {}", stopped.display());
    assert!(err.contains(&resume_cmd), "{err}");
    let done = metric_lines(&stopped).len();
    assert!(done < 4, "stopped after the last epoch");
    assert_eq!(
        snapshot_scalar(&stopped, "trainer.epoch"),
        Some(done as f64)
    );
    let batch = snapshot_scalar(&stopped, "trainer.partial.batches");
    assert!(
        batch.is_some_and(|b| b > 0.0),
        "not a mid-epoch snapshot: {batch:?}"
    );

    // The resumed run says where it goes on from: inside the epoch, after the batch.
    let out = rnnlab(&[
        "train",
        "--resume",
        stopped.to_str().unwrap(),
        "--threads",
        "2",
    ])
    .env("RUST_LOG", "info")
    .stderr(Stdio::piped())
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let at = format!(
        "in epoch {} after batch {}",
        done + 1,
        batch.unwrap_or_default() as usize
    );
    assert!(err.contains(&at), "{at}: {err}");
    assert_eq!(untimed(&stopped), untimed(&whole));
    for file in ["steps.jsonl", "stability.json"] {
        assert_eq!(
            std::fs::read_to_string(stopped.join(file)).unwrap(),
            std::fs::read_to_string(whole.join(file)).unwrap(),
            "{file}"
        );
    }
}

/// A second Ctrl-C exits at once: here both come while the data is prepared (a large demo), so
/// the run exits with 130 before it has a run folder, and without the resume hint.
#[test]
fn a_second_ctrl_c_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut running = Running(
        rnnlab(&[
            "train",
            "--out",
            out.to_str().unwrap(),
            "--set",
            "data.size=100000",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    let child = &mut running.0;
    // The handler is a thread named rnnlab-sigint; signal once it is there.
    let tasks = format!("/proc/{}/task", child.id());
    let t0 = Instant::now();
    while !std::fs::read_dir(&tasks).unwrap().flatten().any(|t| {
        std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "rnnlab-sigint")
    }) {
        assert!(t0.elapsed() < Duration::from_secs(60), "no SIGINT handler");
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(child, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(50));
    signal(child, libc::SIGINT);
    let status = wait_for(child, Duration::from_secs(10));
    let err = stderr_of(child);
    assert_eq!(status.code(), Some(130), "{status:?}: {err}");
    assert!(err.contains("interrupted again: exiting now"), "{err}");
    assert!(!err.contains("resume with"), "{err}");
    assert!(!out.join("checkpoints").exists());
}

/// The small run the random kills hit: 420 training rows, 3 epochs of an LSTM large enough that a
/// snapshot takes a while to write (about 1 MB), with the stateful callbacks.
fn killable_run(out: &Path) -> Command {
    let demo = demo();
    let mut c = rnnlab(&[
        "train",
        demo.as_str(),
        "--threads",
        "1",
        "--out",
        out.to_str().unwrap(),
        "--set",
        "data.size=600",
        "--set",
        "train.epochs=3",
        "--set",
        "model.cell.hidden=128",
        "--set",
        CALLBACKS,
    ]);
    c.stderr(Stdio::piped());
    c
}

const FINAL_FILES: [&str; 4] = [
    "last.safetensors",
    "best.safetensors",
    rnnlab_core::SNAPSHOT,
    rnnlab_core::BEST_RECORD,
];

/// Whether a file other than the final checkpoints is in the checkpoint folder: a write under way.
fn writing(ckpt: &Path) -> bool {
    std::fs::read_dir(ckpt).is_ok_and(|d| {
        d.flatten()
            .any(|e| !FINAL_FILES.contains(&e.file_name().to_string_lossy().as_ref()))
    })
}

/// Watches the checkpoint folder; when a write is under way, stops the run (SIGSTOP), and if the
/// write still is, kills it there; else lets it go on. Whether it killed one mid-write.
fn kill_during_a_checkpoint_write(child: &mut Child, run: &Path) -> bool {
    let ckpt = run.join("checkpoints");
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() && t0.elapsed() < Duration::from_secs(120) {
        if writing(&ckpt) {
            signal(child, libc::SIGSTOP);
            if writing(&ckpt) {
                child.kill().unwrap();
                return true;
            }
            signal(child, libc::SIGCONT);
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    false
}

/// What a killed run left can be read: each checkpoint, the metrics.
fn assert_loadable(run: &Path, what: &str) {
    for name in FINAL_FILES {
        let p = run.join("checkpoints").join(name);
        if !p.exists() {
            continue;
        }
        if name.ends_with(".json") {
            let text = std::fs::read_to_string(&p).unwrap();
            serde_json::from_str::<serde_json::Value>(&text)
                .unwrap_or_else(|e| panic!("{what}: {} does not parse: {e}", p.display()));
        } else {
            rnnlab_core::checkpoint::load(&p)
                .unwrap_or_else(|e| panic!("{what}: {} does not load: {e}", p.display()));
        }
    }
    let m = run.join("metrics.jsonl");
    if m.exists() {
        rnnlab_core::read_metrics(&m).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

/// 20 tries, seeded: a run killed with SIGKILL at a random time (every fourth try while a
/// checkpoint is being written, and every fourth with Ctrl-C at a random time, which stops it
/// mid-epoch) leaves a folder whose files load, and resumed it ends with the metrics and step log
/// of a run never stopped. A run killed before its first snapshot cannot resume, and says so.
#[test]
fn runs_killed_at_random_points_resume_to_the_same_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let t0 = Instant::now();
    let out = killable_run(&whole).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run_seconds = t0.elapsed().as_secs_f64();
    let expected = untimed(&whole);
    let expected_steps = std::fs::read_to_string(whole.join("steps.jsonl")).unwrap();
    assert_eq!(expected.len(), 3);

    let mut rng = rnnlab_core::seeded(12);
    let (mut mid_write, mut interrupted, mut no_snapshot) = (0, 0, 0);
    for i in 0..20 {
        let run = dir.path().join(format!("try{i}"));
        let mut running = Running(killable_run(&run).spawn().unwrap());
        let child = &mut running.0;
        let started = Instant::now();
        let at = Duration::from_secs_f64(rng.random_range(0.0..run_seconds));
        let what = match i % 4 {
            0 => {
                let hit = kill_during_a_checkpoint_write(child, &run);
                mid_write += usize::from(hit);
                format!("try {i}: killed during a checkpoint write: {hit}")
            }
            1 => {
                std::thread::sleep(at.saturating_sub(started.elapsed()));
                if child.try_wait().unwrap().is_none() {
                    signal(child, libc::SIGINT);
                }
                format!("try {i}: Ctrl-C after {at:?}")
            }
            _ => {
                std::thread::sleep(at.saturating_sub(started.elapsed()));
                let _ = child.kill();
                format!("try {i}: killed after {at:?}")
            }
        };
        let status = wait_for(child, Duration::from_secs(120));
        let err = stderr_of(child);
        // A Ctrl-C exits with 130 once the handler is there; before, SIGINT ends the process.
        if status.code() == Some(130) {
            interrupted += 1;
        } else {
            assert!(
                status.success() || status.signal().is_some(),
                "{what}: {status:?}: {err}"
            );
        }
        assert_loadable(&run, &what);

        let resumed = rnnlab(&["train", "--resume", run.to_str().unwrap(), "--threads", "1"])
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let resume_err = String::from_utf8_lossy(&resumed.stderr);
        if !run.join("checkpoints").join(rnnlab_core::SNAPSHOT).exists() {
            assert!(
                !resumed.status.success(),
                "{what}: resumed without a snapshot"
            );
            assert!(
                resume_err.contains(rnnlab_core::SNAPSHOT)
                    || resume_err.contains("config.resolved.toml"),
                "{what}: {resume_err}"
            );
            no_snapshot += 1;
            continue;
        }
        assert!(resumed.status.success(), "{what}: {resume_err}");
        assert_eq!(untimed(&run), expected, "{what}");
        assert_eq!(
            std::fs::read_to_string(run.join("steps.jsonl")).unwrap(),
            expected_steps,
            "{what}"
        );
    }
    eprintln!(
        "20 tries: {mid_write} killed mid-write, {interrupted} stopped by Ctrl-C, {no_snapshot} before the first snapshot"
    );
    assert!(
        mid_write >= 1,
        "no try was killed during a checkpoint write"
    );
}

/// A run folder written before `train.default_callbacks` existed (its resolved config lists no
/// callbacks and has no such key) resumes with the callbacks its snapshot holds: the defaults
/// are added to new runs only.
#[test]
fn a_resumed_run_gets_no_default_callbacks() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let demo = demo();
    let mut c = Command::new(BIN);
    c.args(["train", &demo, "--threads", "1", "--out"])
        .arg(&run)
        .args(SMALL)
        .args(["--set", "train.default_callbacks=false"]);
    succeeds(c);
    let resolved = run.join("config.resolved.toml");
    let text = std::fs::read_to_string(&resolved).unwrap();
    assert!(text.contains("default_callbacks = false"), "{text}");
    std::fs::write(&resolved, text.replace("default_callbacks = false\n", "")).unwrap();
    let (ok, err) = resume(&run, &["--set", "train.epochs=3"]);
    assert!(ok, "{err}");
    assert_eq!(metric_lines(&run).len(), 3);
    let m = &metric_lines(&run)[2];
    assert!(m.get("grad_norm.global.p99").is_none(), "{m}");
    assert!(!run.join("plots").exists());
}

/// A snapshot written before the model checkpoint became a callback holds the best monitored
/// value as `trainer.best`. Resumed, that value is the callback's: an unbeatable 1000 keeps
/// `best.safetensors` and `best.json` as they were, and the new snapshot holds it under the
/// callback's name.
#[test]
fn an_older_snapshot_keeps_its_best_value() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    small_run(&run, "1");
    let ckpt = run.join("checkpoints");
    let snap_path = ckpt.join(rnnlab_core::SNAPSHOT);
    let mut snap = rnnlab_core::checkpoint::load(&snap_path).unwrap();
    let key = snap
        .keys()
        .find(|k| k.ends_with(".model_checkpoint.best"))
        .cloned()
        .expect("the model checkpoint's state");
    snap.remove(&key);
    let unbeatable = candle_core::Tensor::new(&[1000.0f64], &candle_core::Device::Cpu).unwrap();
    snap.insert("trainer.best".into(), unbeatable);
    rnnlab_core::checkpoint::save(&snap, &snap_path).unwrap();
    let best_before = std::fs::read(ckpt.join("best.safetensors")).unwrap();
    let record_before = std::fs::read_to_string(ckpt.join("best.json")).unwrap();

    let (ok, err) = resume(&run, &["--set", "train.epochs=3"]);
    assert!(ok, "{err}");
    assert_eq!(metric_lines(&run).len(), 3);
    assert_eq!(
        std::fs::read(ckpt.join("best.safetensors")).unwrap(),
        best_before
    );
    assert_eq!(
        std::fs::read_to_string(ckpt.join("best.json")).unwrap(),
        record_before
    );
    assert_eq!(snapshot_scalar(&run, &key), Some(1000.0));
    assert_eq!(snapshot_scalar(&run, "trainer.best"), None);
}
