//! `rnnlab sweep --launcher slurm`: the job-array script (`--dry-run`, no Slurm needed; the
//! printed script run as Slurm runs a task), and a real sweep through `sbatch` on the cluster of
//! `scripts/slurm-up.sh`: the same metrics as the local launcher, status, a resubmission that
//! submits nothing, failed tasks reported after `--wait`.
//!
//! The real-Slurm tests skip with a printed reason where `sbatch` is missing, except when `CI` is
//! set (e.g. `CI=true`; `.ci/run` sets it and starts the cluster first), where that is a failure.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod common;
use common::{metrics, text, without_timings};

const BIN: &str = env!("CARGO_BIN_EXE_rnnlab");
/// Generous: the machine may be loaded; on an idle one each sweep takes seconds.
const TIMEOUT: Duration = Duration::from_secs(600);

const RUNS: [&str; 4] = ["adam/seed-1", "adam/seed-2", "sgd/seed-1", "sgd/seed-2"];

/// Runs `rnnlab ARGS` in `dir`; kills it after [`TIMEOUT`] (and cancels the job array it
/// printed it submitted, if any).
fn rnnlab_in(dir: &Path, args: &[&str]) -> Output {
    let (log, err) = (tempfile::tempfile().unwrap(), tempfile::tempfile().unwrap());
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdout(log.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .spawn()
        .unwrap();
    let read = |mut f: &std::fs::File| {
        let mut v = Vec::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut v).unwrap();
        v
    };
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            let out = String::from_utf8_lossy(&read(&log)).to_string();
            if let Some(job) = job_id(&out) {
                let _ = Command::new("scancel").arg(job).status();
            }
            panic!("rnnlab {args:?} did not end within {TIMEOUT:?}:\n{out}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Output {
        status: child.wait().unwrap(),
        stdout: read(&log),
        stderr: read(&err),
    }
}

/// `rnnlab sweep FILE --launcher slurm FLAGS...` in `dir`.
fn slurm(dir: &Path, file: &str, flags: &[&str]) -> Output {
    let mut args = vec!["sweep", file, "--launcher", "slurm"];
    args.extend_from_slice(flags);
    rnnlab_in(dir, &args)
}

/// A folder for a sweep under the target dir (not /tmp: a cluster's tasks may get a private
/// /tmp).
fn workdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sweep-slurm-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

/// The 2-variant × 2-seed demo sweep (small corpus, small LSTM), one CPU per Slurm task.
fn demo_sweep(dir: &Path, extra: &str) -> PathBuf {
    let file = dir.join("sweep.toml");
    std::fs::write(
        &file,
        format!(
            "seeds = [1, 2]\nout = \"runs\"\n\
             set = [\"data.size=600\", \"train.epochs=2\", \"model.cell.hidden=16\"]\n\
             [[variants]]\nname = \"adam\"\n\n[[variants]]\nname = \"sgd\"\n\
             set = ['optim.transforms=[{{type=\"sgd\",lr=0.1}}]']\n\n{extra}"
        ),
    )
    .unwrap();
    file
}

/// Whether a Slurm cluster is here to test against; prints why not. With `CI` set a missing
/// `sbatch` fails the test.
fn slurm_here() -> bool {
    let found = Command::new("sbatch")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but sbatch is not found (.ci/run starts Slurm with scripts/slurm-up.sh)"
        );
        eprintln!("skipped: sbatch not found (run scripts/slurm-up.sh as root to test with Slurm)");
        return false;
    }
    let node = Command::new("sinfo").args(["-h", "-o", "%T"]).output();
    let states = node
        .as_ref()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    assert!(
        ["idle", "mixed", "allocated", "completing"]
            .iter()
            .any(|s| states.contains(s)),
        "sbatch is installed but no Slurm node is up (sinfo: {states:?} {:?}): run \
         scripts/slurm-up.sh as root",
        node.map(|o| String::from_utf8_lossy(&o.stderr).to_string())
    );
    true
}

#[test]
fn a_sweep_through_sbatch_equals_the_local_launchers() {
    if !slurm_here() {
        return;
    }
    let local = workdir();
    demo_sweep(local.path(), "");
    let started = Instant::now();
    let out = rnnlab_in(
        local.path(),
        &["sweep", "sweep.toml", "--jobs", "2", "--threads", "2"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let local_secs = started.elapsed().as_secs_f64();

    let cluster = workdir();
    let file = demo_sweep(
        cluster.path(),
        "[slurm]\ncpus_per_task = 1\nmem = \"1G\"\ntime = \"00:10:00\"\n",
    );
    let file = file.to_str().unwrap();
    let started = Instant::now();
    let out = slurm(cluster.path(), file, &["--wait"]);
    let t = text(&out);
    println!(
        "local launcher: {local_secs:.1} s; slurm launcher: {:.1} s\n{t}",
        started.elapsed().as_secs_f64()
    );
    assert!(out.status.success(), "{t}");
    assert!(t.contains("submitted job array"), "{t}");
    for run in RUNS {
        assert!(t.contains(&format!("done {run} in ")), "{run}: {t}");
    }
    assert!(t.contains("4 trained, 0 already finished, 0 failed"), "{t}");
    for (i, run) in RUNS.iter().enumerate() {
        let a = metrics(&local.path().join("runs").join(run));
        let b = metrics(&cluster.path().join("runs").join(run));
        assert_eq!(b.len(), 2, "{run}");
        assert_eq!(without_timings(&a), without_timings(&b), "{run}");
        // Each run was trained by its own array task, whose output went to its Slurm log.
        let state = std::fs::read_to_string(cluster.path().join(format!("runs/.sweep/{run}.json")))
            .unwrap();
        let state: serde_json::Value = serde_json::from_str(&state).unwrap();
        let task = state["slurm_job"].as_str().unwrap().to_string();
        assert!(task.ends_with(&format!("_{i}")), "{run}: {state}");
        let log = cluster.path().join(format!("runs/.sweep/slurm-{task}.out"));
        let log = std::fs::read_to_string(&log).unwrap();
        assert!(log.contains(&format!("{run}: finished")), "{run}: {log}");
    }

    let st = rnnlab_in(cluster.path(), &["sweep", "status", file]);
    assert!(st.status.success(), "{}", text(&st));
    assert!(text(&st).contains("4 runs: 4 done"), "{}", text(&st));

    let again = slurm(cluster.path(), file, &[]);
    let t = text(&again);
    assert!(again.status.success(), "{t}");
    assert!(t.contains("is finished: nothing to submit"), "{t}");
    assert!(!t.contains("submitted"), "{t}");
}

#[test]
fn failed_tasks_are_reported_after_wait() {
    if !slurm_here() {
        return;
    }
    let dir = workdir();
    let file = dir.path().join("sweep.toml");
    std::fs::write(
        &file,
        "seeds = [1]\nout = \"runs\"\n\
         set = [\"data.size=600\", \"train.epochs=1\", \"model.cell.hidden=16\"]\n\
         [[variants]]\nname = \"good\"\n\n[[variants]]\nname = \"missing-file\"\n\
         set = ['data.type=\"tsv\"', 'data.path=\"no/such/file.tsv\"', 'data.text=\"t\"', \
         'data.label=\"l\"']\n\n[slurm]\ncpus_per_task = 1\nmem = \"1G\"\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    // A run that fails in its task: its error, from the state file the task wrote.
    let out = slurm(dir.path(), file, &["--wait"]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("done good/seed-1"), "{t}");
    assert!(
        t.contains("FAILED missing-file/seed-1: data: no/such/file.tsv"),
        "{t}"
    );
    assert!(t.contains("1 of the sweep's runs failed"), "{t}");

    // A task Slurm fails before it runs (its output file cannot be opened): Slurm's account,
    // not the run's stale error from the array before.
    let out = slurm(
        dir.path(),
        file,
        &["--wait", "--sbatch=--output=/nonexistent-dir/%A_%a.out"],
    );
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("1 already finished"), "{t}");
    let line = t
        .lines()
        .find(|l| l.contains("FAILED missing-file/seed-1"))
        .unwrap_or_else(|| panic!("{t}"));
    assert!(
        line.contains("ended without finishing the run")
            && line.contains("JobState=FAILED")
            && line.contains("Reason=JobLaunchFailure")
            && line.contains("log: /nonexistent-dir/"),
        "{t}"
    );

    // A state file saying "running" on another host, written by a task Slurm has ended (e.g.
    // killed at its time limit): the run is interrupted, not running.
    let job = job_id(&t).unwrap_or_else(|| panic!("no job id: {t}"));
    let state = dir.path().join("runs/.sweep/missing-file/seed-1.json");
    let written = serde_json::json!({
        "state": "running", "host": "another-node", "pid": 1, "slurm_job": format!("{job}_1"),
        "epochs": 1, "started": 0
    });
    std::fs::write(&state, written.to_string()).unwrap();
    std::fs::create_dir_all(dir.path().join("runs/missing-file/seed-1")).unwrap();
    let st = text(&rnnlab_in(dir.path(), &["sweep", "status", file]));
    assert!(st.contains("2 runs: 1 done, 1 interrupted"), "{st}");
}

/// The job id in `submitted job array ID: ...`.
fn job_id(out: &str) -> Option<String> {
    out.split_whitespace()
        .skip_while(|w| *w != "array")
        .nth(1)
        .map(|j| j.trim_end_matches(':').to_string())
}

#[test]
fn a_queued_array_blocks_another_launch_of_the_sweep() {
    if !slurm_here() {
        return;
    }
    let dir = workdir();
    let file = demo_sweep(dir.path(), "[slurm]\ncpus_per_task = 1\nmem = \"1G\"\n");
    let file = file.to_str().unwrap();
    // Held in the queue for an hour.
    let out = slurm(dir.path(), file, &["--sbatch", "--begin=now+3600"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let job = job_id(&t).unwrap_or_else(|| panic!("no job id: {t}"));
    let local = rnnlab_in(dir.path(), &["sweep", file]);
    let again = slurm(dir.path(), file, &[]);
    let _ = Command::new("scancel").arg(&job).status();
    for out in [local, again] {
        let t = text(&out);
        assert!(!out.status.success(), "{t}");
        assert!(
            t.contains(&format!("job array {job}")) && t.contains("still queued"),
            "{t}"
        );
    }
    assert!(!dir.path().join("runs/adam").exists());
    let st = text(&rnnlab_in(dir.path(), &["sweep", "status", file]));
    assert!(st.contains("4 runs: 4 pending"), "{st}");
}

/// The script's `#SBATCH` lines, in order.
fn sbatch_lines(script: &str) -> Vec<&str> {
    script
        .lines()
        .filter_map(|l| l.strip_prefix("#SBATCH "))
        .collect()
}

#[test]
fn the_dry_run_prints_the_array_of_the_unfinished_runs() {
    let dir = workdir();
    let file = demo_sweep(
        dir.path(),
        "[slurm]\npartition = \"short\"\ncpus_per_task = 1\nmem = \"1G\"\ntime = \"00:10:00\"\n\
         max_parallel = 3\nextra = [\"--qos=normal\", \"#SBATCH --account=lab\"]\n",
    );
    let file = file.to_str().unwrap();
    // Runs 1 and 3 (adam/seed-2, sgd/seed-2) finish, through the code path of every task.
    for run in ["adam/seed-2", "sgd/seed-2"] {
        let out = rnnlab_in(
            dir.path(),
            &["sweep", "exec", file, "--run", run, "--threads", "1"],
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    let out = slurm(
        dir.path(),
        file,
        &["--dry-run", "--mem", "2G", "--sbatch", "--constraint=avx2"],
    );
    let script = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", text(&out));
    let state_dir = std::path::absolute(dir.path().join("runs/.sweep")).unwrap();
    assert_eq!(
        sbatch_lines(&script),
        [
            "--job-name=rnnlab-sweep",
            "--array=0,2%3",
            "--cpus-per-task=1",
            "--mem=2G",
            "--time=00:10:00",
            "--partition=short",
            &format!("--output={}/slurm-%A_%a.out", state_dir.display()),
            "--qos=normal",
            "--account=lab",
            "--constraint=avx2",
        ]
    );
    assert!(script.starts_with("#!/bin/bash\n"), "{script}");
    // Nothing written or submitted.
    assert!(!dir.path().join("runs/.sweep/slurm-array.sh").exists());

    // The script, run as Slurm runs task 0, trains run 0 (a relative RNNLAB_DATA reaches the
    // task as an absolute path).
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let out = Command::new(BIN)
        .args(["sweep", file, "--launcher", "slurm", "--dry-run"])
        .current_dir(dir.path())
        .env("RNNLAB_DATA", "data")
        .output()
        .unwrap();
    let script = String::from_utf8_lossy(&out.stdout).to_string();
    let data_abs = std::path::absolute(&data).unwrap();
    assert!(
        script.contains(&format!("export RNNLAB_DATA={}\n", data_abs.display())),
        "{script}"
    );
    let path = dir.path().join("array.sh");
    std::fs::write(&path, &script).unwrap();
    let task = Command::new("bash")
        .arg(&path)
        .current_dir(std::env::temp_dir())
        .env("SLURM_ARRAY_TASK_ID", "0")
        .env("SLURM_ARRAY_JOB_ID", "77")
        .env("SLURM_CPUS_PER_TASK", "1")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(task.status.success(), "{}", text(&task));
    assert_eq!(metrics(&dir.path().join("runs/adam/seed-1")).len(), 2);
    let state = std::fs::read_to_string(dir.path().join("runs/.sweep/adam/seed-1.json")).unwrap();
    assert!(state.contains("\"slurm_job\": \"77_0\""), "{state}");

    // Only sgd/seed-1 is left; with every run finished, there is no script.
    let out = slurm(dir.path(), file, &["--dry-run"]);
    assert!(
        sbatch_lines(&String::from_utf8_lossy(&out.stdout)).contains(&"--array=2%3"),
        "{}",
        text(&out)
    );
    let out = rnnlab_in(
        dir.path(),
        &[
            "sweep",
            "exec",
            file,
            "--run",
            "sgd/seed-1",
            "--threads",
            "1",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = slurm(dir.path(), file, &["--dry-run"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("nothing to submit") && !t.contains("#SBATCH"),
        "{t}"
    );
}
