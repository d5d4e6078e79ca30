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
            "in the final epoch one class is predicted for more than {}% of val, or in each of the last 3 epochs val accuracy is at most {} points above always predicting the majority class while the final train accuracy is too (a model that fits its training set has learned: see overfitting)",
            t.collapse, t.majority
        ),
        evidence: Vec::new(),
        fixes: Vec::new(),
        explained_by: None,
    };
    let final_shares = class_shares(history.last().expect("non-empty"), "val", "share")
        .or_else(|| confusion_shares(run));
    match final_shares {
        None => {
            collapse.verdict = Verdict::Unknown(format!(
                "no predicted shares: {}",
                cfg.missing_callback("predictions")
            ))
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
            let stuck = match majority_level(history, truth.as_deref(), t.majority) {
                Some(Level::Prior(line)) => {
                    collapse.evidence.push(line);
                    true
                }
                Some(Level::TrainLearned(line)) => {
                    collapse.evidence.push(line);
                    false
                }
                None => false,
            };
            if top > t.collapse || stuck {
                collapse.verdict = Verdict::Holds;
                // E7 (EXPERIMENTS.md): read after the padding, the RNN never leaves the
                // majority class; read at the true length, it learns.
                if let Some(fix) = cfg.pool_at_true_length() {
                    collapse.evidence.push(
                        "the classifier reads the state after the padding (model.pooling = \"last_padded\"): a short phrase's state has run on through the padding to its batch's longest phrase, and E7 in EXPERIMENTS.md measured such runs stuck on the majority class".into(),
                    );
                    collapse.fixes.push(fix);
                }
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

/// Val accuracy at the majority class's level over the last 3 epochs.
enum Level {
    /// Train accuracy is at that level too (or not logged): nothing learned beyond the prior.
    Prior(String),
    /// Train accuracy is well above it: the model learned its training set and does not
    /// generalise, which is overfitting's to name, not collapse.
    TrainLearned(String),
}

/// When val accuracy stayed within `margin` points of the majority class's true share over the
/// last 3 epochs, the evidence line, and whether the final train accuracy stayed there too.
fn majority_level(history: &[EpochMetrics], truth: Option<&[f64]>, margin: f64) -> Option<Level> {
    let majority = truth?.iter().copied().fold(f64::NAN, f64::max);
    let acc = series(history, "val_acc");
    if acc.len() < 3 || !majority.is_finite() {
        return None;
    }
    let last = &acc[acc.len() - 3..];
    if !last.iter().all(|(_, a)| *a <= majority + margin) {
        return None;
    }
    let figs: Vec<String> = last
        .iter()
        .map(|(e, a)| format!("{a:.2} (epoch {e})"))
        .collect();
    let val = format!(
        "val accuracy {} over the last 3 epochs is at most {margin} points above {majority:.2}, always predicting the majority class",
        figs.join(", ")
    );
    let train = history
        .last()
        .and_then(|m| m.get("train_acc"))
        .filter(|a| a.is_finite());
    Some(match train {
        Some(a) if a > majority + margin => Level::TrainLearned(format!(
            "{val}; but train accuracy {a:.2} in the final epoch is {:.2} points above it: the model learned its training set and does not generalise (see overfitting), it did not collapse",
            a - majority
        )),
        Some(a) => Level::Prior(format!(
            "{val}, and so is train accuracy ({a:.2} in the final epoch): the model has learned nothing beyond the class prior"
        )),
        None => Level::Prior(format!(
            "{val}: the model has learned nothing beyond the class prior"
        )),
    })
}

/// Predicted shares of the final val confusion matrix in `confusion.json`.
fn confusion_shares(run: &Path) -> Option<Vec<f64>> {
    let text = std::fs::read_to_string(run.join("confusion.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let counts: Vec<Vec<u64>> = serde_json::from_value(v["val"]["counts"].clone()).ok()?;
    Some(rnnlab_core::Confusion { counts }.predicted_shares())
}
