//! Gradient noise: held-out accuracy falls between epochs while the norms are healthy.

use super::*;
use rnnlab_callbacks::stability::series_stability;

/// Evaluates the rule on `c`.
pub(super) fn evaluate(c: &Ctx, healthy: bool, max_p99: f64) -> Finding {
    let Ctx {
        history,
        cfg,
        t,
        explode,
        k,
        tail,
        ..
    } = *c;
    let mut noise = Finding {
        cause: Cause::GradientNoise,
        verdict: Verdict::Clear,
        rule: format!(
            "over the last {k} epochs val or test accuracy falls by more than {} points from one epoch to the next (rises are learning) while the gradient norms are healthy",
            t.swing
        ),
        evidence: Vec::new(),
        fixes: Vec::new(),
        explained_by: None,
    };
    let stab: Vec<_> = ["val_acc", "test_acc"]
        .iter()
        .filter_map(|m| series_stability(history, m, k))
        .collect();
    if stab.is_empty() || history.len() < 2 {
        noise.verdict = Verdict::Unknown("fewer than 2 epochs with val or test accuracy".into());
    } else {
        for s in &stab {
            noise.evidence.push(format!(
                "{}: largest swing {:.2} points (into epoch {}), std {:.2} over the last {} epochs; best {:.2} at epoch {}, final {:.2}",
                s.metric, s.max_swing, s.max_swing_epoch, s.std, s.epochs, s.best, s.best_epoch, s.last
            ));
        }
        let mut falls: Vec<String> = Vec::new();
        for key in ["val_acc", "test_acc"] {
            let pts = series(tail, key);
            let pts: Vec<(usize, f64)> = series(history, key)
                .into_iter()
                .skip_while(|p| pts.first().is_some_and(|f| p.0 + 1 < f.0))
                .collect();
            for w in pts.windows(2) {
                if w[0].1 - w[1].1 > t.swing {
                    falls.push(format!(
                        "{key} falls {:.2} -> {:.2} into epoch {}",
                        w[0].1, w[1].1, w[1].0
                    ));
                }
            }
        }
        let swinging = !falls.is_empty();
        noise.evidence.extend(falls.into_iter().take(6));
        if swinging && healthy {
            noise.verdict = Verdict::Holds;
            noise.evidence.push(format!(
                "norms healthy: gradient p99 at most {} <= explode {explode}",
                fmt_fig(max_p99)
            ));
            // In a fixed order the swings are the order's: E6 (EXPERIMENTS.md) measured the
            // same models steady when reshuffled, whether or not order drift is named.
            if let Some(mut fix) = cfg.reshuffle() {
                noise.evidence.push(
                    "the run trains in a fixed order (data.shuffle = false): E6 in EXPERIMENTS.md measured such swings going away with reshuffling".into(),
                );
                fix.why = "reshuffle every epoch; E6 in EXPERIMENTS.md: sorted swings 1.35-3.91 points, reshuffled 0.57-0.79".into();
                noise.fixes.push(fix);
            }
            noise.fixes.extend(cfg.bigger_batches());
            noise.fixes.extend(cfg.ema());
            noise.fixes.extend(cfg.lower_lr(3.0));
        } else if swinging {
            noise
                .evidence
                .push("swings above the threshold, but the gradient norms are not healthy".into());
        }
    }

    noise
}
