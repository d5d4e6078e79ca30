//! Exploding gradients: the p99 of the global gradient norm, or the share of steps, above `explode`.

use super::fix::fmt_num;
use super::*;

/// Evaluates the rule on `c`.
pub(super) fn evaluate(c: &Ctx) -> (Finding, (usize, f64)) {
    let Ctx {
        run,
        history,
        cfg,
        t,
        warn,
        explode,
        ..
    } = *c;
    let (p99_key, monitor) = if history
        .iter()
        .any(|m| m.get("grad_norm.global.p99").is_some())
    {
        ("grad_norm.global.p99", true)
    } else {
        ("grad_norm_p99", false)
    };
    let p99 = series(history, p99_key);
    let (share, share_note) = exploding_shares(run, history, explode);
    let mut exploding = Finding {
        cause: Cause::ExplodingGradients,
        verdict: Verdict::Clear,
        rule: format!(
            "in some epoch the p99 of the global gradient norm is above explode = {explode}, or more than {}% of its steps are above it",
            t.explode_share
        ),
        evidence: Vec::new(),
        fixes: Vec::new(),
        explained_by: None,
    };
    let mut fired: Vec<String> = Vec::new();
    for (e, v) in &p99 {
        let sh = share.iter().find(|s| s.0 == *e).map(|s| s.1);
        let too_high = !v.is_finite() || *v > explode;
        let too_many = sh.is_some_and(|s| s > t.explode_share);
        if too_high || too_many {
            fired.push(format!(
                "epoch {e}: p99 {} {} explode {explode}{}",
                fmt_fig(*v),
                if too_high { ">" } else { "<=" },
                sh.map(|s| format!(", {s:.1}% of steps above it"))
                    .unwrap_or_default()
            ));
        }
    }
    let max_p99 = p99.iter().fold((0, f64::NAN), |a, b| {
        if b.1 > a.1 || a.1.is_nan() {
            *b
        } else {
            a
        }
    });
    let max_norm = last_max(
        history,
        if monitor {
            "grad_norm.global.max"
        } else {
            "grad_norm_max"
        },
    );
    let max_share = share.iter().map(|s| s.1).fold(0.0, f64::max);
    if p99.is_empty() {
        exploding.verdict = Verdict::Unknown("no gradient norms logged".into());
    } else if !fired.is_empty() {
        exploding.verdict = Verdict::Holds;
        let n = fired.len();
        exploding
            .evidence
            .push(format!("{n} of {} epochs fire", p99.len()));
        exploding.evidence.extend(fired.into_iter().take(6));
        exploding.evidence.push(format!(
            "largest p99 {} at epoch {}; largest single-step norm {}",
            fmt_fig(max_p99.1),
            max_p99.0,
            fmt_fig(max_norm)
        ));
    } else {
        exploding.evidence.push(format!(
            "norms healthy: p99 at most {} (epoch {}) <= explode {explode}{}",
            fmt_fig(max_p99.1),
            max_p99.0,
            if share.is_empty() {
                String::new()
            } else {
                format!(", at most {max_share:.1}% of an epoch's steps above it")
            }
        ));
    }
    exploding.evidence.extend(share_note);
    if exploding.verdict == Verdict::Holds {
        let clipped = cfg.clipped_at().filter(|c| *c <= warn);
        if let Some(c) = clipped {
            exploding.evidence.push(format!(
                "the run clips the global norm at {} already (the norms are measured before clipping)",
                fmt_num(c)
            ));
        }
        match largest_fall(c) {
            // Clipped, so no step applied those norms, and still falling: something else moves
            // the accuracy. E9 measured it: clipping such a run changed no epoch's accuracy.
            Some(fall) if fall > t.swing && clipped.is_some() => {
                exploding.evidence.push(format!(
                    "held-out accuracy falls by up to {fall:.2} points between epochs although every step's norm is clipped: the falls are not from large updates. E9 in EXPERIMENTS.md measured this: on whole sentences at lr 1e-4 (p99 12.5), clipping at 5 acted on 18% of the steps and left every epoch's test accuracy within 0.4 points of the unclipped run, falls included"
                ));
                exploding.fixes.extend(cfg.lower_lr(10.0));
            }
            // Norms above the band in a run that trains steadily: E2 measured them on its
            // steadiest runs, and E1 measured clipping changing nothing on steady runs.
            Some(fall) if fall <= t.swing => {
                exploding.evidence.push(format!(
                    "the run is steady: held-out accuracy falls by at most {fall:.2} points (<= swing {}) between epochs over the last {} epochs. E2 in EXPERIMENTS.md measured such norms (p99 12.1 at lr 1e-4) on its steadiest runs, the norms rising as the rate fell; E1 measured clipping at 5 changing nothing on steady runs",
                    t.swing, c.k
                ));
                if let Some(mut fix) = cfg.clip(warn, ", the warn level") {
                    fix.why
                        .push_str("; E1 in EXPERIMENTS.md: no measurable change on a steady run");
                    exploding.fixes.push(fix);
                }
            }
            _ => {
                exploding.fixes.extend(cfg.clip(warn, ", the warn level"));
                exploding.fixes.extend(cfg.lower_lr(10.0));
            }
        }
        exploding.fixes.extend(cfg.tanh());
        exploding.fixes.extend(cfg.to_lstm());
    }

    (exploding, max_p99)
}

/// The largest epoch-to-epoch fall of val or test accuracy over the window (and the step into
/// it), in points; `None` without two such epochs or with a non-finite figure.
fn largest_fall(c: &Ctx) -> Option<f64> {
    let from = c.history.len().saturating_sub(c.k + 1);
    let mut largest: Option<f64> = None;
    for key in ["val_acc", "test_acc"] {
        let pts = series(&c.history[from..], key);
        for w in pts.windows(2) {
            let fall = w[0].1 - w[1].1;
            if !fall.is_finite() {
                return None;
            }
            largest = Some(largest.map_or(fall, |l| l.max(fall)));
        }
    }
    largest
}

/// Per epoch, the percent of steps whose gradient norm is above `explode`, and a note when they
/// are not the logged `grad_norm.frac_exploding`. The grad_norm monitor counts them at its own
/// `explode`; at another threshold they are recounted from `steps.jsonl` (jsonl_logger), else
/// left out.
fn exploding_shares(
    run: &Path,
    history: &[EpochMetrics],
    explode: f64,
) -> (Vec<(usize, f64)>, Option<String>) {
    let logged = series(history, "grad_norm.frac_exploding");
    let Some(at) = last_value(history, "grad_norm.explode") else {
        return (logged, None);
    };
    if at == explode || logged.is_empty() {
        return (logged, None);
    }
    match step_shares_above(run, explode) {
        Some(recounted) => (
            recounted,
            Some(format!(
                "shares of steps above explode {explode} recounted from steps.jsonl (the monitor counted them at {at})"
            )),
        ),
        None => (
            Vec::new(),
            Some(format!(
                "the logged shares of steps count those above the monitor's explode {at}, not {explode}: not used (log the steps with jsonl_logger to recount them)"
            )),
        ),
    }
}

/// From `steps.jsonl`, per epoch, the percent of steps with a gradient norm above `explode` (a
/// null, non-finite norm counts as above).
fn step_shares_above(run: &Path, explode: f64) -> Option<Vec<(usize, f64)>> {
    let text = std::fs::read_to_string(run.join("steps.jsonl")).ok()?;
    let mut counts: std::collections::BTreeMap<usize, (usize, usize)> = Default::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let epoch = v["epoch"].as_u64()? as usize;
        let above = v["grad_norm"].as_f64().is_none_or(|g| g > explode);
        let c = counts.entry(epoch).or_default();
        c.0 += usize::from(above);
        c.1 += 1;
    }
    (!counts.is_empty()).then(|| {
        counts
            .into_iter()
            .map(|(e, (above, n))| (e, 100.0 * above as f64 / n as f64))
            .collect()
    })
}
