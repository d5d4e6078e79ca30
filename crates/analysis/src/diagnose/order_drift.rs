//! Order drift: a fixed training order that every epoch ends on, pulling the held-out
//! predictions towards the last batches' labels.

use super::fix::RunConfig;
use super::*;

/// One epoch's order-drift figures on one held-out split.
struct DriftEpoch {
    split: &'static str,
    epoch: usize,
    /// Training accuracy minus the split's accuracy, in points.
    acc_gap: f64,
    /// What the gap must exceed: `drift_acc_gap`, or `drift_se` standard errors of the split's
    /// accuracy when that is more.
    gap_needed: f64,
    train_acc: f64,
    acc: f64,
    predicted: Vec<f64>,
    truth: Vec<f64>,
    /// Total variation between the predicted and true shares, in points.
    tv: f64,
    /// The largest move of a predicted share away from its true share since the previous epoch.
    away: Option<ShareMove>,
    /// The largest move towards the true share (learning).
    towards: Option<ShareMove>,
}

/// A predicted share's move between epochs: (class, previous share, share).
type ShareMove = (usize, f64, f64);

impl DriftEpoch {
    fn away_size(&self) -> f64 {
        self.away.map_or(0.0, |(_, a, b)| (b - a).abs())
    }

    fn towards_size(&self) -> f64 {
        self.towards.map_or(0.0, |(_, a, b)| (b - a).abs())
    }

    /// Whether the epoch shows order drift under `t`.
    fn fires(&self, t: &Thresholds) -> bool {
        self.acc_gap > self.gap_needed && (self.tv > t.drift_tv || self.away_size() > t.drift)
    }

    fn describe(&self, t: &Thresholds) -> String {
        let pct = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mv = match self.away {
            Some((c, a, b)) => format!(
                "; largest move away from a true share since the previous epoch: class {c} {a:.1}% -> {b:.1}% ({:.1} points {} {}, true share {:.1}%)",
                (b - a).abs(),
                if (b - a).abs() > t.drift { ">" } else { "<=" },
                t.drift,
                self.truth[c]
            ),
            None => String::new(),
        };
        format!(
            "epoch {}, {}: accuracy {:.2}% is {:.2} points below the training accuracy {:.2}% ({} {}); predicted shares [{}]% vs true [{}]%: {:.1} points apart ({} {}){mv}",
            self.epoch,
            self.split,
            self.acc,
            self.acc_gap,
            self.train_acc,
            if self.acc_gap > self.gap_needed { ">" } else { "<=" },
            fmt_gap(self.gap_needed, t),
            pct(&self.predicted),
            pct(&self.truth),
            self.tv,
            if self.tv > t.drift_tv { ">" } else { "<=" },
            t.drift_tv,
        )
    }
}

/// The order-drift figures of every epoch of the window, per split with predicted shares.
fn drift_epochs(
    history: &[EpochMetrics],
    t: &Thresholds,
    rows: Option<[usize; 2]>,
) -> Vec<DriftEpoch> {
    let k = t.window;
    let first = history.len().saturating_sub(k);
    let mut out = Vec::new();
    for i in first..history.len() {
        let m = &history[i];
        let epoch = m.get("epoch").map_or(i + 1, |e| e as usize);
        for (s, split) in ["val", "test"].into_iter().enumerate() {
            let (Some(predicted), Some(truth), Some(acc), Some(train_acc)) = (
                class_shares(m, split, "share"),
                class_shares(m, split, "true_share"),
                m.get(&format!("{split}_acc")),
                m.get("train_acc"),
            ) else {
                continue;
            };
            let tv = 0.5
                * predicted
                    .iter()
                    .zip(&truth)
                    .map(|(p, q)| (p - q).abs())
                    .sum::<f64>();
            let prev = i
                .checked_sub(1)
                .and_then(|j| class_shares(&history[j], split, "share"))
                .filter(|p| p.len() == predicted.len());
            let (mut away, mut towards): (Option<ShareMove>, Option<ShareMove>) = (None, None);
            if let Some(prev) = &prev {
                for (c, (x, y)) in prev.iter().zip(&predicted).enumerate() {
                    let size = (y - x).abs();
                    // A move that closes at least half its size of the gap to the true share is
                    // learning, not drift.
                    let learning = (y - truth[c]).abs() - (x - truth[c]).abs() <= -0.5 * size;
                    let slot = if learning { &mut towards } else { &mut away };
                    if slot.is_none_or(|(_, a, b)| size > (b - a).abs()) {
                        *slot = Some((c, *x, *y));
                    }
                }
            }
            // The standard error of an accuracy measured on n examples, in points.
            let se = rows
                .map(|r| (acc * (100.0 - acc) / r[s].max(1) as f64).sqrt())
                .unwrap_or(0.0);
            out.push(DriftEpoch {
                split,
                epoch,
                acc_gap: train_acc - acc,
                gap_needed: t.drift_acc_gap.max(t.drift_se * se),
                train_acc,
                acc,
                predicted,
                truth,
                tv,
                away,
                towards,
            });
        }
    }
    out
}

/// The accuracy gap an epoch needs, named by the threshold that set it.
fn fmt_gap(needed: f64, t: &Thresholds) -> String {
    if needed > t.drift_acc_gap {
        format!(
            "{needed:.2}, {} standard errors of the split's accuracy",
            t.drift_se
        )
    } else {
        format!("{}", t.drift_acc_gap)
    }
}

/// The order-drift rule (see the README's "Diagnose rules").
pub(super) fn evaluate(
    history: &[EpochMetrics],
    cfg: &RunConfig,
    t: &Thresholds,
    healthy: bool,
    max_p99: f64,
    explode: f64,
) -> Finding {
    let k = t.window;
    let mut drift = Finding {
        cause: Cause::OrderDrift,
        verdict: Verdict::Clear,
        rule: format!(
            "the run trains in a fixed order (data.shuffle = false), the gradient norms are healthy, and in at least {} of the last {k} epochs, on every held-out split (val and test), the accuracy is more than {} points (and more than {} standard errors of the split's accuracy, when data_report.json gives its size) below the training accuracy while the predicted class shares are off: more than {} points from the true shares (total variation, half the sum of the differences), or one moved more than {} points away from its true share since the previous epoch (a move that closes at least half its size of the gap is learning). The model follows the last batches of each epoch: a model that learns nothing has no such accuracy gap, one that overfits keeps the true shares, and a gap on one split only is that split's sample",
            t.drift_epochs, t.drift_acc_gap, t.drift_se, t.drift_tv, t.drift
        ),
        evidence: Vec::new(),
        fixes: Vec::new(),
        explained_by: None,
    };
    let rows = drift_epochs(history, t, cfg.rows);
    if rows.is_empty() {
        drift.verdict = Verdict::Unknown(format!(
            "no `predictions.*.share`: {}",
            cfg.missing_callback("predictions")
        ));
        return drift;
    }
    let epochs_seen: std::collections::BTreeSet<usize> = rows.iter().map(|r| r.epoch).collect();
    let firing: Vec<&DriftEpoch> = rows.iter().filter(|r| r.fires(t)).collect();
    // An epoch counts when every held-out split of it fires: drift is the model's, not a split's.
    let fired_epochs: std::collections::BTreeSet<usize> = epochs_seen
        .iter()
        .copied()
        .filter(|e| rows.iter().filter(|r| r.epoch == *e).all(|r| r.fires(t)))
        .collect();
    let one_split = firing
        .iter()
        .filter(|r| !fired_epochs.contains(&r.epoch))
        .count();
    let order = match (cfg.shuffle, cfg.sort_by_length) {
        (Some(false), Some(true)) => Some(
            "the run trains unshuffled in a fixed length-sorted order (data.shuffle = false, data.sort_by_length = true): every epoch ends on the longest examples",
        ),
        (Some(false), _) => Some(
            "the run trains unshuffled (data.shuffle = false): every epoch ends on the same batches",
        ),
        _ => None,
    };
    let fixed_order = cfg.shuffle != Some(true);
    let by = |f: fn(&DriftEpoch) -> f64| {
        rows.iter()
            .max_by(|a, b| f(a).total_cmp(&f(b)))
            .expect("non-empty")
    };
    let n = fired_epochs.len();
    let count = format!(
        "{n} of the last {} epochs show it (the rule needs {})",
        epochs_seen.len(),
        t.drift_epochs
    );
    if n >= t.drift_epochs && fixed_order && healthy {
        drift.verdict = Verdict::Holds;
        drift.evidence.extend(order.map(str::to_string));
        drift.evidence.push(format!("{count}:"));
        for e in &fired_epochs {
            for r in firing.iter().filter(|r| r.epoch == *e) {
                drift.evidence.push(r.describe(t));
            }
        }
        drift.evidence.push(format!(
            "norms healthy: gradient p99 at most {} <= explode {explode}",
            fmt_fig(max_p99)
        ));
        drift.fixes.extend(cfg.reshuffle());
        drift.fixes.extend(cfg.ema());
        drift.fixes.extend(cfg.lower_lr(3.0));
        return drift;
    }
    drift.evidence.push(count);
    if one_split > 0 {
        drift.evidence.push(format!(
            "{one_split} epoch-split(s) fire on one held-out split only (not counted)"
        ));
    }
    if n >= t.drift_epochs && !fixed_order {
        drift.evidence.push(
            "but the run reshuffles its data every epoch (data.shuffle = true): there is no fixed order to follow (see gradient noise and overfitting)".into(),
        );
    } else if n >= t.drift_epochs {
        drift
            .evidence
            .push("but the gradient norms are not healthy (see exploding gradients)".into());
    }
    let gap = by(|r| r.acc_gap);
    let tv = by(|r| r.tv);
    drift.evidence.push(format!(
        "largest accuracy gap: {} {:.2}% vs training {:.2}% in epoch {}, {:.2} points ({} {})",
        gap.split,
        gap.acc,
        gap.train_acc,
        gap.epoch,
        gap.acc_gap,
        if gap.acc_gap > t.drift_acc_gap {
            ">"
        } else {
            "<="
        },
        t.drift_acc_gap
    ));
    drift.evidence.push(format!(
        "predicted shares furthest from the true shares: {} epoch {}, {:.1} points ({} {})",
        tv.split,
        tv.epoch,
        tv.tv,
        if tv.tv > t.drift_tv { ">" } else { "<=" },
        t.drift_tv
    ));
    let away = by(DriftEpoch::away_size);
    if let Some((c, a, b)) = away.away {
        drift.evidence.push(format!(
            "largest move of a predicted share away from its true share: {} class {c} {a:.1}% -> {b:.1}% into epoch {}, {:.1} points ({} {}; true share {:.1}%)",
            away.split,
            away.epoch,
            (b - a).abs(),
            if (b - a).abs() > t.drift { ">" } else { "<=" },
            t.drift,
            away.truth[c]
        ));
    }
    let towards = by(DriftEpoch::towards_size);
    if let Some((c, a, b)) = towards.towards {
        drift.evidence.push(format!(
            "moves towards the true share are learning and not counted; the largest: {} class {c} {a:.1}% -> {b:.1}% into epoch {} (true share {:.1}%)",
            towards.split, towards.epoch, towards.truth[c]
        ));
    }
    drift
}
