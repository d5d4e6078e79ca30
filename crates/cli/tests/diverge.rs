//! A non-finite loss: with `skip_nonfinite` the step is skipped and counted; without it the run
//! stops with an error naming the step as `steps.jsonl` numbers it, and leaves what it had (the
//! partial epoch's figures, the last epoch end's checkpoints) for `rnnlab diagnose`.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_rnnlab");

/// A ReLU RNN on 600 demo rows: Adam at 1e3 makes the loss overflow within a few steps.
const RELU_RNN: [&str; 8] = [
    "--set",
    "data.size=600",
    "--set",
    "model.cell.type=rnn",
    "--set",
    "model.cell.nonlinearity=relu",
    "--set",
    "callbacks=[{type=\"jsonl_logger\"}]",
];

fn rnnlab(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .unwrap()
}

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The issue's command (`skip_nonfinite` first, Adam at 1e3): the run finishes, and every step
/// whose loss was not finite is skipped and counted in `skipped_steps`.
#[test]
fn skip_nonfinite_skips_a_step_whose_loss_is_not_finite() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let transforms = r#"optim.transforms=[{type="skip_nonfinite"},{type="adam",lr=1e3}]"#;
    let out = rnnlab(
        &[
            &["train", "--out", run.to_str().unwrap(), "--threads", "1"][..],
            &RELU_RNN,
            &["--set", transforms, "--set", "train.epochs=1"],
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let steps = jsonl(&run.join("steps.jsonl"));
    let nonfinite_loss: Vec<&serde_json::Value> =
        steps.iter().filter(|s| s["loss"].is_null()).collect();
    assert!(
        !nonfinite_loss.is_empty(),
        "the setting no longer overflows the loss"
    );
    assert!(nonfinite_loss.iter().all(|s| s["skipped"] == true));
    let skipped = steps.iter().filter(|s| s["skipped"] == true).count();
    let metrics = jsonl(&run.join("metrics.jsonl"));
    assert_eq!(metrics.len(), 1);
    assert_eq!(metrics[0]["skipped_steps"], skipped);
    assert!(metrics[0]["train_loss"].as_f64().unwrap().is_finite());
}

/// Without `skip_nonfinite`: a learning rate that warms up from 1e-3 in epoch 1 to 500 in epoch
/// 2 diverges in epoch 2. The error names the step `steps.jsonl` logged last (loss null);
/// `metrics.jsonl` has epoch 1 and epoch 2's partial record; the checkpoints are epoch 1's;
/// `diagnose` names the divergence and `predict` still works.
#[test]
fn a_nonfinite_loss_stops_the_run_and_keeps_what_it_had() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();
    let out = rnnlab(
        &[
            &["train", "--out", run_s, "--threads", "1"][..],
            &RELU_RNN,
            &[
                "--set",
                r#"optim.transforms=[{type="adam",lr=1e3}]"#,
                "--set",
                r#"optim.scheduler={type="warmup",steps=2,start_factor=1e-6,interval="epoch"}"#,
                "--set",
                "train.epochs=3",
            ],
        ]
        .concat(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");

    let steps = jsonl(&run.join("steps.jsonl"));
    let last = steps.last().unwrap();
    assert!(last["loss"].is_null(), "{last}");
    assert_eq!(last["epoch"], 2);
    let step = last["step"].as_u64().unwrap();
    assert!(
        err.contains(&format!("non-finite loss at epoch 2, step {step}")),
        "the error names another step than steps.jsonl's last ({step}): {err}"
    );
    assert!(
        err.contains("the model checkpoints of epoch 1"),
        "the error does not say which checkpoints were kept: {err}"
    );
    assert!(steps[..steps.len() - 1]
        .iter()
        .all(|s| s["loss"].as_f64().is_some()));

    let metrics = jsonl(&run.join("metrics.jsonl"));
    assert_eq!(metrics.len(), 2, "{metrics:?}");
    assert!(metrics[0].get("partial").is_none());
    let m = &metrics[1];
    assert_eq!(
        (&m["epoch"], &m["partial"], &m["diverged"]),
        (&2.into(), &1.into(), &1.into())
    );
    assert_eq!(m["diverged_step"], step);
    // The steps of epoch 2 before the bad one, and their figures.
    let before: Vec<&serde_json::Value> = steps
        .iter()
        .filter(|s| s["epoch"] == 2 && s["step"].as_u64() < Some(step))
        .collect();
    assert_eq!(m["steps"], before.len());
    let max = before
        .iter()
        .map(|s| s["grad_norm"].as_f64().unwrap())
        .fold(f64::NAN, f64::max);
    assert_eq!(m["grad_norm_max"].as_f64(), Some(max));

    // The checkpoints are epoch 1's: the snapshot is after epoch 1, and last.safetensors holds
    // its (finite) weights.
    let ckpt = run.join("checkpoints");
    let snap = rnnlab_core::checkpoint::load(&ckpt.join(rnnlab_core::SNAPSHOT)).unwrap();
    let scalar = |k: &str| {
        snap[k]
            .to_dtype(candle_core::DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()[0]
    };
    assert_eq!(scalar("trainer.epoch"), 1.0);
    let last_weights = rnnlab_core::checkpoint::load(&ckpt.join("last.safetensors")).unwrap();
    for (name, w) in &last_weights {
        let w = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(w.iter().all(|v| v.is_finite()), "{name}");
        let s = snap[&format!("model.{name}")]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(w, s, "{name}: last.safetensors is not the snapshot's epoch");
    }

    let diag = rnnlab(&["diagnose", run_s]);
    let text = String::from_utf8_lossy(&diag.stdout);
    assert!(
        diag.status.success(),
        "{}",
        String::from_utf8_lossy(&diag.stderr)
    );
    assert!(
        text.contains("## divergence (non-finite loss) — holds"),
        "{text}"
    );
    assert!(
        text.contains(&format!("epoch 2 stopped at step {step}: loss not finite")),
        "{text}"
    );
    assert!(
        text.contains("the checkpoints are those of epoch 1"),
        "{text}"
    );
    assert!(text.contains(r#"{type = "skip_nonfinite"}"#), "{text}");

    let predict = rnnlab(&["predict", run_s, "a fine film"]);
    assert!(
        predict.status.success(),
        "{}",
        String::from_utf8_lossy(&predict.stderr)
    );
}
