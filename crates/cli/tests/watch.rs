//! `rnnlab watch`: the live view in a real terminal (tmux) on a run that is being written, and
//! the plain-text snapshot of a finished run against its metrics.jsonl and steps.jsonl.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_rnnlab");
const CALLBACKS: &str =
    r#"callbacks=[{type="jsonl_logger"},{type="predictions"},{type="grad_norm"}]"#;

fn train(out: &Path, size: usize, epochs: usize) -> Command {
    let mut c = Command::new(BIN);
    c.args(["train", "--threads", "1", "--out"])
        .arg(out)
        .args(["--set", &format!("data.size={size}")])
        .args(["--set", &format!("train.epochs={epochs}")])
        .args(["--set", CALLBACKS])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn metric_lines(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A tmux server of its own (`tmux -L NAME`), killed when dropped, even when the test fails.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Tmux {
            socket: format!("rnnlab-watch-{}-{nanos}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running tmux")
    }

    fn capture(&self, session: &str) -> Option<String> {
        let out = self.run(&["capture-pane", "-p", "-t", session]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn alive(&self, session: &str) -> bool {
        self.run(&["has-session", "-t", session]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// Kills the training process when dropped (a failed assertion must not leave it running).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `N` of the progress text `N/T epochs done` (the gauge's bar may run up to the digits).
fn epochs_done(screen: &str) -> Option<usize> {
    let head = &screen[..screen.find(" epochs done")?];
    let head = &head[..head.rfind('/')?];
    let digits = head.len() - head.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    head[head.len() - digits..].parse().ok()
}

fn tmux_present() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// The live view follows a run while it is written (two or more different epoch counts seen
/// on screen, with every panel), shows the final figures of metrics.jsonl, and `q` ends it with
/// exit code 0; so do Esc and Ctrl-C, leaving the alternate screen.
#[test]
fn live_view_follows_a_running_run_in_tmux_and_quits_on_q() {
    if !tmux_present() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but tmux is missing: .ci/run installs it"
        );
        eprintln!("skipped: tmux is not installed (apt-get install tmux)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let status = dir.path().join("status");
    let stderr = dir.path().join("watch.err");
    let tmux = Tmux::new();
    let session = "watch";
    // A session that lives through the test: without it the server exits when the view quits,
    // and the next `new-session` can meet it shutting down ("server exited unexpectedly").
    let keeper = tmux.run(&["new-session", "-d", "-s", "keeper", "sleep 600"]);
    assert!(
        keeper.status.success(),
        "{}",
        String::from_utf8_lossy(&keeper.stderr)
    );

    let train_err = dir.path().join("train.err");
    let mut training = train(&run, 6000, 6);
    training.stderr(std::fs::File::create(&train_err).unwrap());
    let mut training = Running(training.spawn().unwrap());
    let command = format!(
        "{} watch {} --interval-ms 200 2>{}; echo $? >{}",
        quote(Path::new(BIN)),
        quote(&run),
        quote(&stderr),
        quote(&status)
    );
    let out = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        session,
        "-x",
        "120",
        "-y",
        "40",
        &command,
    ]);
    assert!(
        out.status.success(),
        "tmux new-session: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // While the run is written, the view must show at least two different epoch counts.
    let mut seen = Vec::new();
    let mut mid_run = None;
    let t0 = Instant::now();
    let trained = loop {
        let screen = tmux.capture(session).unwrap_or_else(|| {
            panic!(
                "the watch session ended early; its stderr: {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            )
        });
        let running = training.0.try_wait().unwrap().is_none();
        if running {
            if let Some(n) = epochs_done(&screen) {
                if !seen.contains(&n) {
                    seen.push(n);
                }
                // Kept: the last screen at most half-way through.
                if (1..=3).contains(&n) {
                    mid_run = Some(screen.clone());
                }
            }
        } else {
            break training.0.wait().unwrap();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "the run did not end in 300 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        trained.success(),
        "training failed: {}",
        std::fs::read_to_string(&train_err).unwrap_or_default()
    );
    assert!(
        seen.len() >= 2,
        "the view showed epoch counts {seen:?} while the run was written: it did not update"
    );
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "epoch counts went back: {seen:?}"
    );
    println!("epoch counts seen while the run was written: {seen:?}");
    let mid_run = mid_run.expect("no capture in the middle of the run");
    println!("live view during the run:\n{mid_run}");
    for label in [
        "accuracy %",
        "loss",
        "gradient norm",
        "warn 5",
        "explode 10",
        "learning rate",
        "predicted shares (val %)",
        "progress",
        "s/epoch",
        "ETA",
        "last update",
        "q quits",
    ] {
        assert!(mid_run.contains(label), "no {label:?} in\n{mid_run}");
    }
    let folder: String = run.display().to_string().chars().take(40).collect();
    assert!(
        mid_run.contains(&folder),
        "the footer does not name the run folder\n{mid_run}"
    );

    // After the run: the final epoch's figures from metrics.jsonl.
    let last = metric_lines(&run).pop().unwrap();
    let want = [
        format!("val {:.2}", last["val_acc"].as_f64().unwrap()),
        format!("test {:.2}", last["test_acc"].as_f64().unwrap()),
        format!("train {:.4}", last["train_loss"].as_f64().unwrap()),
        format!("p99 {:.2}", last["grad_norm_p99"].as_f64().unwrap()),
        "6/6 epochs done · finished".to_string(),
    ];
    let t1 = Instant::now();
    let final_screen = loop {
        let screen = tmux.capture(session).expect("the watch session ended");
        if want.iter().all(|w| screen.contains(w.as_str())) {
            break screen;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(10),
            "the finished view lacks one of {want:?}:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("live view after the run:\n{final_screen}");

    // `q` quits: the session ends, and the program exited with 0.
    tmux.run(&["send-keys", "-t", session, "q"]);
    let t2 = Instant::now();
    while tmux.alive(session) {
        assert!(
            t2.elapsed() < Duration::from_secs(10),
            "the view did not exit on q"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read_to_string(&status).unwrap().trim(),
        "0",
        "watch's exit code; stderr: {}",
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );

    // Esc and Ctrl-C quit too, with exit code 0 (Ctrl-C is a key in raw mode, not SIGINT) and
    // the terminal restored: the pane, kept after its program ended, left the alternate screen.
    for key in ["Escape", "C-c"] {
        let name = format!("quit-{key}");
        let key_status = dir.path().join(format!("status-{key}"));
        let out = tmux.run(&[
            "new-session",
            "-d",
            "-s",
            &name,
            "-x",
            "120",
            "-y",
            "40",
            &format!(
                "{} watch {}; echo $? >{}",
                quote(Path::new(BIN)),
                quote(&run),
                quote(&key_status)
            ),
            ";",
            "set-option",
            "-w",
            "-t",
            &name,
            "remain-on-exit",
            "on",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pane = |format: &str| {
            let out = tmux.run(&["display-message", "-p", "-t", &name, format]);
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let t = Instant::now();
        while !tmux
            .capture(&name)
            .is_some_and(|s| s.contains("6/6 epochs done"))
        {
            assert!(t.elapsed() < Duration::from_secs(10), "no view for {key}");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            pane("#{alternate_on}"),
            "1",
            "the view is on the alternate screen"
        );
        tmux.run(&["send-keys", "-t", &name, key]);
        while pane("#{pane_dead}") != "1" {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "the view did not exit on {key}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The exit code as the shell saw it: tmux 3.3's `#{pane_dead_status}` stays empty for
        // some programs that exited with 0 (`sleep 1; true` does it too).
        assert_eq!(
            std::fs::read_to_string(&key_status)
                .unwrap_or_default()
                .trim(),
            "0",
            "exit code after {key}"
        );
        assert_eq!(
            pane("#{alternate_on}"),
            "0",
            "alternate screen left after {key}"
        );
    }
}

/// The numbers of one column of the snapshot's table.
fn column(table: &[Vec<String>], name: &str) -> Vec<String> {
    let c = table[0]
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {:?}", table[0]));
    table[1..].iter().map(|r| r[c].clone()).collect()
}

/// `quantile` as numpy's default (linear interpolation between the closest ranks).
fn percentile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// `watch RUN --once` on a finished run prints every epoch's figures as metrics.jsonl has them,
/// the per-step gradient-norm summary of steps.jsonl, and the same table without `--once`
/// when stdout is not a terminal.
#[test]
fn once_prints_the_figures_of_metrics_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = train(&run, 1200, 3).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let watch = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("watch")
            .arg(&run)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = watch(&["--once"]);
    println!("{text}");
    assert!(
        text.contains("3/3 epochs done · finished"),
        "no finished progress line in\n{text}"
    );
    assert!(text.contains("gradient-norm bands: warn 5, explode 10"));
    let table: Vec<Vec<String>> = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("epoch "))
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    assert_eq!(table.len(), 4, "header and 3 epochs expected in\n{text}");

    let metrics = metric_lines(&run);
    let labels: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(run.join("labels.json")).unwrap()).unwrap();
    let fmt = |key: &str, digits: usize| -> Vec<String> {
        metrics
            .iter()
            .map(|m| format!("{:.digits$}", m[key].as_f64().unwrap()))
            .collect()
    };
    assert_eq!(column(&table, "epoch"), ["1", "2", "3"]);
    for key in ["train_acc", "val_acc", "test_acc"] {
        assert_eq!(column(&table, key), fmt(key, 2), "{key}");
    }
    for key in [
        "train_loss",
        "val_loss",
        "test_loss",
        "grad_norm_p50",
        "grad_norm_p99",
    ] {
        assert_eq!(column(&table, key), fmt(key, 4), "{key}");
    }
    let lr: Vec<String> = metrics
        .iter()
        .map(|m| format!("{:.3e}", m["lr"].as_f64().unwrap()))
        .collect();
    assert_eq!(column(&table, "lr"), lr);
    for (c, label) in labels.iter().enumerate() {
        assert_eq!(
            column(&table, &format!("share.{label}")),
            fmt(&format!("predictions.val.share.{c}"), 2),
            "class {c}"
        );
    }
    let seconds: Vec<String> = metrics
        .iter()
        .map(|m| {
            let s = m["epoch_seconds"].as_f64().unwrap() + m["eval_seconds"].as_f64().unwrap();
            format!("{s:.2}")
        })
        .collect();
    assert_eq!(column(&table, "seconds"), seconds);

    let norms: Vec<f64> = std::fs::read_to_string(run.join("steps.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["grad_norm"].as_f64().unwrap()
        })
        .collect();
    let want = format!(
        "per-step gradient norm ({} steps): p50 {:.4}, p99 {:.4}, max {:.4};",
        norms.len(),
        percentile(&norms, 0.5),
        percentile(&norms, 0.99),
        norms.iter().copied().fold(f64::MIN, f64::max)
    );
    assert!(text.contains(&want), "no {want:?} in\n{text}");

    // Not a terminal: the same snapshot without --once (the first line and the table).
    let auto = watch(&[]);
    let table_of = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with("last update"))
            .map(String::from)
            .collect()
    };
    assert_eq!(table_of(&auto), table_of(&text));
}

/// A folder that does not exist, or that is not a run folder, is an error naming it.
#[test]
fn once_on_a_missing_or_foreign_folder_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    for (path, want) in [
        (dir.path().join("nope"), "no such run folder"),
        (dir.path().to_path_buf(), "not a run folder"),
    ] {
        let out = Command::new(BIN)
            .arg("watch")
            .arg(&path)
            .arg("--once")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains(want), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
    }
}
