//! Divergence: the run stopped at a non-finite loss.

use super::fix::{Insert, RunConfig};
use super::*;

/// The run stopped at a non-finite loss: its last record is marked `diverged` by the trainer,
/// with the step's number, loss and gradient norm and the figures of the epoch's steps before it.
pub(super) fn evaluate(history: &[EpochMetrics], cfg: &RunConfig, warn: f64) -> Finding {
    let mut f = Finding {
        cause: Cause::Divergence,
        verdict: Verdict::Clear,
        rule: "the run stopped at a non-finite loss (an epoch record marked `diverged`)".into(),
        evidence: Vec::new(),
        fixes: Vec::new(),
        explained_by: None,
    };
    let Some(m) = history.iter().find(|m| m.get("diverged") == Some(1.0)) else {
        f.evidence
            .push("no step had a non-finite loss that stopped the run".into());
        return f;
    };
    f.verdict = Verdict::Holds;
    let get = |k: &str| m.get(k).unwrap_or(f64::NAN);
    let fig = |k: &str| match get(k) {
        v if v.is_finite() => fmt_fig(v),
        _ => "not finite".into(),
    };
    f.evidence.push(format!(
        "epoch {} stopped at step {}: loss {}, gradient norm {}",
        get("epoch"),
        get("diverged_step"),
        fig("diverged_loss"),
        fig("diverged_grad_norm"),
    ));
    let steps = get("steps");
    if steps >= 1.0 {
        f.evidence.push(format!(
            "the epoch's {steps} steps before it: train_loss {}, gradient norm p50 {}, max {}, learning rate {}",
            fig("train_loss"),
            fig("grad_norm_p50"),
            fig("grad_norm_max"),
            get("lr")
        ));
    }
    let done = history
        .iter()
        .filter(|m| m.get("partial").is_none())
        .count();
    f.evidence.push(if done == 0 {
        "no epoch completed: there is no trained checkpoint".into()
    } else {
        format!("the checkpoints are those of epoch {done}, the last completed")
    });
    f.fixes.extend(cfg.lower_lr(10.0));
    f.fixes.extend(cfg.clip(warn, ", the warn level"));
    f.fixes.extend(cfg.add_transform(
        "skip_nonfinite",
        Insert::Front,
        "{type = \"skip_nonfinite\"}",
        "skip steps whose loss or gradients are not finite instead of stopping; counted in skipped_steps",
    ));
    f
}
