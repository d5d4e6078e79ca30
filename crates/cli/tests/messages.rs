//! What a person sees on the terminal: the help, clap's errors, error texts that name the file
//! and say each thing once, and log lines without colour codes when they go to a file.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_rnnlab");

fn rnnlab(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("NO_COLOR")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// No `: X: X` in a message: each part of an error chain said once.
fn assert_no_repeats(msg: &str) {
    let parts: Vec<&str> = msg.trim().split(": ").collect();
    for w in parts.windows(2) {
        assert_ne!(w[0], w[1], "repeated part in: {msg}");
    }
}

#[test]
fn bare_rnnlab_prints_the_help_as_clap_does() {
    let o = rnnlab(&[]);
    let err = stderr(&o);
    // clap's `arg_required_else_help`: the help on stderr, exit code 2, no "error:" line.
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("Usage: rnnlab"), "{err}");
    assert!(err.contains("Commands:"), "{err}");
    assert!(!err.contains("error:"), "{err}");
    assert!(o.stdout.is_empty());
    // `--help` is not an error: stdout, exit 0.
    let o = rnnlab(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Commands:"));
    // A group without its subcommand prints its help the same way.
    let o = rnnlab(&["data"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("inspect"), "{}", stderr(&o));
}

#[test]
fn clap_errors_are_printed_once() {
    let o = rnnlab(&["train", "--bogus"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("error: unexpected argument '--bogus'"),
        "{err}"
    );
    assert!(!err.contains("error: error:"), "{err}");
}

#[test]
fn a_missing_file_is_named_once() {
    let o = rnnlab(&["report", "/nonexistent-run"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("/nonexistent-run/metrics.jsonl"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert_no_repeats(&err);
}

fn train_small(run: &Path) {
    let demo = format!("{}/../../pipelines/demo.toml", env!("CARGO_MANIFEST_DIR"));
    let o = Command::new(BIN)
        .args(["train", &demo, "--threads", "1", "--out"])
        .arg(run)
        .args(["--set", "data.size=300", "--set", "train.epochs=1"])
        .args(["--set", "model.cell.hidden=8"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `rnnlab train 2> log`, even with `TERM=dumb`: log lines without colour codes.
#[test]
fn log_lines_in_a_file_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .args(["train", "--threads", "1", "--out"])
        .arg(dir.path().join("run"))
        .args(["--set", "data.size=300", "--set", "train.epochs=1"])
        .env("RUST_LOG", "info")
        .env("TERM", "dumb")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("epoch 1/1"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "escape codes in a log file: {err:?}"
    );
}

#[test]
fn missing_or_corrupt_checkpoints_name_the_file_and_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train_small(&run);
    let run_s = run.to_str().unwrap();
    let best = run.join("checkpoints/best.safetensors");
    let bytes = std::fs::read(&best).unwrap();

    std::fs::write(&best, &bytes[..bytes.len() / 3]).unwrap();
    let o = rnnlab(&["predict", run_s, "a fine film"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains(best.to_str().unwrap()), "{err}");
    assert!(err.contains("--checkpoint last"), "{err}");
    assert_no_repeats(&err);

    std::fs::remove_file(&best).unwrap();
    let o = rnnlab(&["predict", run_s, "a fine film"]);
    let err = stderr(&o);
    assert!(err.contains(best.to_str().unwrap()), "{err}");
    assert!(err.contains("--checkpoint last"), "{err}");
    assert_eq!(err.matches("no such").count(), 1, "{err}");
    assert_no_repeats(&err);
    let o = rnnlab(&["eval", run_s, "/dev/null"]);
    assert!(stderr(&o).contains("--checkpoint last"), "{}", stderr(&o));

    // The way out works.
    let o = rnnlab(&["predict", run_s, "--checkpoint", "last", "a fine film"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// On a terminal (a pseudo-terminal from util-linux `script`) the log is coloured, unless
/// `NO_COLOR` is set.
#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    if Command::new("script").arg("--version").output().is_err() {
        panic!("`script` (util-linux) is needed for this test");
    }
    let dir = tempfile::tempdir().unwrap();
    let on_tty = |no_color: Option<&str>| {
        let run = dir.path().join(format!("run-{}", no_color.is_some()));
        let cmd = format!(
            "{BIN} train --threads 1 --out {} --set data.size=300 --set train.epochs=1 --set model.cell.hidden=8 --set train.progress=false",
            run.display()
        );
        let mut c = Command::new("script");
        c.args(["-qec", &cmd, "/dev/null"])
            .env("RUST_LOG", "info")
            .env("TERM", "xterm");
        match no_color {
            Some(v) => c.env("NO_COLOR", v),
            None => c.env_remove("NO_COLOR"),
        };
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let coloured = on_tty(None);
    assert!(coloured.contains("epoch 1/1"), "{coloured}");
    assert!(
        coloured.contains('\u{1b}'),
        "no colour on a terminal: {coloured:?}"
    );
    let plain = on_tty(Some("1"));
    assert!(plain.contains("epoch 1/1"), "{plain}");
    assert!(
        !plain.contains("\u{1b}["),
        "colour with NO_COLOR: {plain:?}"
    );
}

/// The binary gives candle's element-wise pool one thread unless `CANDLE_NUM_THREADS` says
/// otherwise (by starting itself again with the variable set: see `rnnlab_cli::run`), and the
/// run records it.
#[test]
fn candle_threads_default_to_one_and_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    for (env, expected) in [(None, "1"), (Some("2"), "2")] {
        let run = dir.path().join(format!("run-{expected}"));
        let mut c = Command::new(BIN);
        c.args(["train", "--threads", "1", "--out"])
            .arg(&run)
            .args(["--set", "data.size=300", "--set", "train.epochs=1"])
            .env("RUST_LOG", "warn");
        match env {
            Some(v) => c.env("CANDLE_NUM_THREADS", v),
            None => c.env_remove("CANDLE_NUM_THREADS"),
        };
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let p: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("provenance.json")).unwrap()).unwrap();
        assert_eq!(p["candle_threads"], expected, "{p:#}");
        // The command line is the one given, program name included.
        assert_eq!(p["command_line"][0], BIN, "{p:#}");
    }
}
