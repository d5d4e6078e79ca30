//! Learning rate too high: batch loss spikes above a uniform guess's loss.

use super::*;

/// Evaluates the rule on `c`.
pub(super) fn evaluate(c: &Ctx) -> Finding {
    let Ctx {
        run,
        history,
        cfg,
        t,
        warn,
        ..
    } = *c;
    let spikes = series(history, "stability.loss_spikes");
    let mut lr_high = Finding {
        cause: Cause::LearningRateTooHigh,
        verdict: Verdict::Clear,
        rule: format!(
            "at least {} batch loss spikes in the run (the stability monitor's rule: a batch loss above its spike_factor times the median of the previous batches) whose loss is above ln C (C classes), a uniform guess's: a step that undid what the model had learned",
            t.spikes
        ),
        evidence: Vec::new(),
        fixes: Vec::new(),
        explained_by: None,
    };
    if spikes.is_empty() {
        lr_high.verdict = Verdict::Unknown(format!(
            "no `stability.loss_spikes`: {}",
            cfg.missing_callback("stability")
        ));
    } else {
        let total: f64 = spikes.iter().map(|s| s.1).sum();
        let per: Vec<String> = spikes
            .iter()
            .filter(|s| s.1 > 0.0)
            .map(|s| format!("epoch {}: {}", s.0, s.1))
            .collect();
        lr_high.evidence.push(format!(
            "{total} loss spikes in {} epochs{}{}",
            spikes.len(),
            if per.is_empty() { "" } else { " (" },
            if per.is_empty() {
                String::new()
            } else {
                per.join(", ") + ")"
            }
        ));
        if let Some(detail) = spike_detail(run) {
            lr_high.evidence.push(detail);
        }
        // A spike of a model that fits well (0.2 against a median of 0.07) is a batch with a
        // few errors; only a spike above a uniform guess's loss counts.
        let uniform = cfg.classes.filter(|c| *c >= 2).map(|c| (c as f64).ln());
        let counted = match (uniform, spike_losses(run)) {
            (Some(u), Some(losses)) => {
                let above = losses.iter().filter(|l| !l.is_finite() || **l > u).count();
                lr_high.evidence.push(format!(
                    "{above} of them above ln {} = {u:.4}, a uniform guess's loss",
                    cfg.classes.unwrap_or(0)
                ));
                above as f64
            }
            _ => total,
        };
        if counted >= t.spikes as f64 {
            lr_high.verdict = Verdict::Holds;
            lr_high.fixes.extend(cfg.lower_lr(3.0));
            lr_high.fixes.extend(cfg.warmup());
            lr_high.fixes.extend(cfg.clip(warn, ", the warn level"));
        }
    }

    lr_high
}

/// The loss of every spike in `stability.json` (null, a non-finite loss, as infinity).
fn spike_losses(run: &Path) -> Option<Vec<f64>> {
    let text = std::fs::read_to_string(run.join("stability.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(
        v["spikes"]
            .as_array()?
            .iter()
            .map(|s| s["loss"].as_f64().unwrap_or(f64::INFINITY))
            .collect(),
    )
}

fn spike_detail(run: &Path) -> Option<String> {
    let text = std::fs::read_to_string(run.join("stability.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let spikes = v["spikes"].as_array()?;
    let worst = spikes.iter().max_by(|a, b| {
        let r = |s: &serde_json::Value| {
            s["loss"].as_f64().unwrap_or(f64::INFINITY) / s["median"].as_f64().unwrap_or(1.0)
        };
        r(a).total_cmp(&r(b))
    })?;
    Some(format!(
        "worst spike: loss {} at step {} (epoch {}) against a median of {:.4} over the previous {} batches",
        worst["loss"]
            .as_f64()
            .map(|x| format!("{x:.4}"))
            .unwrap_or_else(|| "non-finite".into()),
        worst["step"],
        worst["epoch"],
        worst["median"].as_f64().unwrap_or(f64::NAN),
        v["spike_window"]
    ))
}
