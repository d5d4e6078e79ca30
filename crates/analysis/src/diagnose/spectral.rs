//! A recurrent gate block with spectral radius above `radius`.

use super::fix::Insert;
use super::*;

/// Evaluates the rule on `c`.
pub(super) fn evaluate(c: &Ctx, healthy: bool) -> Finding {
    let Ctx {
        history, cfg, t, ..
    } = *c;
    let last = history.last().expect("non-empty");
    let radii: Vec<(String, f64)> = last
        .iter()
        .filter(|(k, _)| k.starts_with("spectral.") && k.ends_with(".radius"))
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let mut spectral = Finding {
        cause: Cause::SpectralRadius,
        verdict: Verdict::Clear,
        rule: format!(
            "in the final epoch a recurrent gate block has spectral radius above {}",
            t.radius
        ),
        evidence: Vec::new(),
        fixes: Vec::new(),
        explained_by: None,
    };
    if radii.is_empty() {
        spectral.verdict = Verdict::Unknown(format!(
            "no `spectral.*.radius`: {} (recurrent models only)",
            cfg.missing_callback("spectral")
        ));
    } else {
        let above: Vec<&(String, f64)> = radii.iter().filter(|r| r.1 > t.radius).collect();
        let top = radii
            .iter()
            .fold(("".to_string(), f64::NEG_INFINITY), |a, b| {
                if b.1 > a.1 {
                    b.clone()
                } else {
                    a
                }
            });
        if above.is_empty() {
            spectral.evidence.push(format!(
                "largest radius {:.3} ({}) <= {}",
                top.1,
                block_name(&top.0),
                t.radius
            ));
        } else {
            spectral.verdict = Verdict::Holds;
            for (key, v) in above.iter().take(8) {
                let first = history.iter().find_map(|m| m.get(key));
                spectral.evidence.push(format!(
                    "{}: radius {v:.3}{}",
                    block_name(key),
                    first
                        .map(|f| format!(" (epoch 1: {f:.3})"))
                        .unwrap_or_default()
                ));
            }
            if healthy {
                spectral.evidence.push(
                    "the gradient norms are healthy: a risk for long sequences rather than the cause of the swings".into(),
                );
            }
            spectral.fixes.extend(cfg.add_transform(
                "max_singular_value",
                Insert::Back,
                "{type = \"max_singular_value\", bound = 1.0}",
                "bound the largest singular value of each W_hh gate block",
            ));
        }
    }

    spectral
}
