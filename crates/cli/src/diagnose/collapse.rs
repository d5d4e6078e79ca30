//! Collapse: one class predicted for nearly all of val.

use super::fix::Fix;
use super::*;

/// Evaluates the rule on `c`.
pub(super) fn evaluate(c: &Ctx) -> Finding {
    let Ctx {
        run,
        history,
        cfg,
        t,
        ..
    } = *c;
    let mut collapse = Finding {
        cause: Cause::Collapse,
        verdict: Verdict::Clear,
        rule: format!(
            "in the final epoch one class is predicted for more than {}% of val",
            t.collapse
        ),
        evidence: Vec::new(),
        fixes: Vec::new(),
        explained_by: None,
    };
    let final_shares = class_shares(history.last().expect("non-empty"), "val", "share")
        .or_else(|| confusion_shares(run));
    match final_shares {
        None => {
            collapse.verdict = Verdict::Unknown(
                "no predicted shares: add `{type = \"predictions\"}` to the callbacks".into(),
            )
        }
        Some(pred) => {
            let truth = class_shares(history.last().expect("non-empty"), "val", "true_share");
            let (c, top) = pred
                .iter()
                .enumerate()
                .fold(
                    (0, f64::NEG_INFINITY),
                    |a, (i, v)| if *v > a.1 { (i, *v) } else { a },
                );
            let true_c = truth.as_ref().and_then(|t| t.get(c).copied());
            collapse.evidence.push(format!(
                "class {c} is predicted for {top:.1}% of val in the final epoch{}",
                true_c
                    .map(|v| format!(" (its true share is {v:.1}%)"))
                    .unwrap_or_default()
            ));
            if top > t.collapse {
                collapse.verdict = Verdict::Holds;
                collapse.fixes.extend(cfg.lower_lr(10.0));
                if let Some(truth) = truth.filter(|t| t.iter().all(|v| *v > 0.0)) {
                    let mean = truth.iter().sum::<f64>() / truth.len() as f64;
                    let w: Vec<String> = truth.iter().map(|v| format!("{:.3}", mean / v)).collect();
                    collapse.fixes.push(Fix::one(
                        format!("model.class_weights=[{}]", w.join(", ")),
                        "inverse class frequency",
                    ));
                }
            }
        }
    }

    collapse
}

/// Predicted shares of the final val confusion matrix in `confusion.json`.
fn confusion_shares(run: &Path) -> Option<Vec<f64>> {
    let text = std::fs::read_to_string(run.join("confusion.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let counts: Vec<Vec<u64>> = serde_json::from_value(v["val"]["counts"].clone()).ok()?;
    Some(rnnlab_core::Confusion { counts }.predicted_shares())
}
