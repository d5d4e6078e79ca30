//! The environment layer: file < RNNLAB__* < --set, through the binary (the variables are the
//! child's, never this process's).

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_rnnlab");

/// Trains the demo pipeline with `env` and `sets` into `out`; returns its resolved config.
fn resolved(out: &Path, env: &[(&str, &str)], sets: &[&str]) -> toml::Table {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/demo.toml");
    let mut cmd = Command::new(BIN);
    cmd.arg("train").arg(&demo).arg("--out").arg(out);
    cmd.args(["--threads", "1", "--set", "train.progress=false"]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    cmd.envs(env.iter().copied());
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    toml::from_str(&std::fs::read_to_string(out.join("config.resolved.toml")).unwrap()).unwrap()
}

#[test]
fn environment_overrides_the_file_and_set_overrides_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("RNNLAB__TRAIN__EPOCHS", "2"),
        ("RNNLAB__SEED", "9"),
        ("RNNLAB__DATA__SIZE", "300"),
    ];
    let epochs = |t: &toml::Table| t["train"]["epochs"].as_integer();
    let from_env = resolved(&dir.path().join("env"), &env, &[]);
    assert_eq!(epochs(&from_env), Some(2));
    assert_eq!(from_env["seed"].as_integer(), Some(9));
    assert_eq!(from_env["data"]["size"].as_integer(), Some(300));
    let metrics = std::fs::read_to_string(dir.path().join("env/metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 2);

    let from_set = resolved(&dir.path().join("set"), &env, &["train.epochs=1"]);
    assert_eq!(epochs(&from_set), Some(1));
    assert_eq!(from_set["seed"].as_integer(), Some(9));
}

#[test]
fn the_embedded_default_equals_pipelines_quickstart() {
    let embedded = rnnlab_cli::load(rnnlab_cli::Source::Demo, &[]).unwrap();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/quickstart.toml");
    let file = rnnlab_cli::load(rnnlab_cli::Source::File(&file), &[]).unwrap();
    assert_eq!(
        toml::to_string(&embedded).unwrap(),
        toml::to_string(&file).unwrap(),
        "the embedded default equals pipelines/quickstart.toml"
    );
}
