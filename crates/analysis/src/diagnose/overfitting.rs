//! Overfitting: train loss falls while val loss rises, in a model that fits better than chance.

use super::fix::Insert;
use super::*;

/// Evaluates the rule on `c`.
pub(super) fn evaluate(c: &Ctx) -> Finding {
    let Ctx {
        cfg,
        k,
        tail,
        history,
        t,
        ..
    } = *c;
    let mut overfit = Finding {
        cause: Cause::Overfitting,
        verdict: Verdict::Clear,
        rule: format!(
            "over the last {k} epochs (3 or more) train loss falls (least-squares slope < 0) while val loss rises (slope > 0), and the final train loss is below ln C (C classes), a uniform guess's, and the final train accuracy more than {} points above always predicting the majority class",
            t.majority
        ),
        evidence: Vec::new(),
        fixes: Vec::new(),
        explained_by: None,
    };
    let tl = series(tail, "train_loss");
    let vl = series(tail, "val_loss");
    if tl.len() < 3 || vl.len() < 3 {
        overfit.verdict = Verdict::Unknown(format!(
            "needs 3 epochs with train and val loss in the window, has {}",
            tl.len().min(vl.len())
        ));
    } else {
        let (st, sv) = (slope(&tl), slope(&vl));
        let best_val = vl
            .iter()
            .fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { *b } else { a });
        overfit.evidence.push(format!(
            "train loss {:.4} -> {:.4} (slope {st:+.4}/epoch), val loss {:.4} -> {:.4} (slope {sv:+.4}/epoch, lowest {:.4} at epoch {})",
            tl[0].1,
            tl[tl.len() - 1].1,
            vl[0].1,
            vl[vl.len() - 1].1,
            best_val.1,
            best_val.0
        ));
        // A model that fits the training data no better than a uniform guess (cross-entropy
        // ln C) is not overfitting, whatever its losses do.
        let uniform = cfg.classes.filter(|c| *c >= 2).map(|c| (c as f64).ln());
        let fits = uniform.is_none_or(|u| tl[tl.len() - 1].1 < u);
        if let (Some(u), false) = (uniform, fits) {
            overfit.evidence.push(format!(
                "the final train loss {:.4} is not below ln {} = {u:.4}, a uniform guess's: the model does not fit the training data",
                tl[tl.len() - 1].1,
                cfg.classes.unwrap_or(0)
            ));
        }
        // Nor is one whose training accuracy is that of always predicting the majority class
        // (E7's `last_padded` runs: train loss under ln C from the class prior alone).
        let last = history.last().expect("non-empty");
        let majority = class_shares(last, "val", "true_share")
            .map(|s| s.into_iter().fold(f64::NAN, f64::max))
            .filter(|m| m.is_finite());
        let learned = match (majority, last.get("train_acc")) {
            (Some(m), Some(a)) if a <= m + t.majority => {
                overfit.evidence.push(format!(
                    "the final train accuracy {a:.2} is not above {m:.2}, always predicting the majority class, by more than {} points: the model has not learned beyond the class prior",
                    t.majority
                ));
                false
            }
            _ => true,
        };
        if st < 0.0 && sv > 0.0 && fits && learned {
            overfit.verdict = Verdict::Holds;
            // What it cost: the held-out accuracy given up since its best epoch.
            let acc = series(history, "val_acc");
            let peak = acc.iter().fold(None, |b: Option<(usize, f64)>, x| match b {
                Some(b) if b.1 >= x.1 => Some(b),
                _ => Some(*x),
            });
            if let (Some((e, best)), Some((_, end))) = (peak, acc.last()) {
                if best > *end {
                    overfit.evidence.push(format!(
                        "val accuracy peaked at {best:.2} in epoch {e} and ended at {end:.2}, {:.2} points lower; checkpoints/best.safetensors keeps the best epoch by train.monitor",
                        best - end
                    ));
                }
            }
            overfit.fixes.extend(cfg.early_stopping());
            overfit.fixes.extend(cfg.more_dropout());
            overfit.fixes.extend(cfg.add_transform(
                "weight_decay",
                Insert::BeforeOptimizer,
                "{type = \"weight_decay\", value = 1e-4}",
                "coupled L2 weight decay",
            ));
        }
    }

    overfit
}
