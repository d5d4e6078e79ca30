//! Helpers shared by the `rnnlab sweep` tests.

use std::path::Path;
use std::process::Output;

use rnnlab_core::{read_metrics, EpochMetrics};

/// stdout, then stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every metric but the timings.
pub fn without_timings(h: &[EpochMetrics]) -> Vec<Vec<(String, f64)>> {
    h.iter()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !k.contains("seconds") && !k.contains("per_second"))
                .map(|(k, v)| (k.to_string(), v))
                .collect()
        })
        .collect()
}

/// The run folder's `metrics.jsonl`.
pub fn metrics(run: &Path) -> Vec<EpochMetrics> {
    read_metrics(&run.join("metrics.jsonl")).unwrap()
}
