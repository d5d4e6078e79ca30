//! rnnlab analysis: what a finished (or running) run folder says. [`diagnose`] names the causes of
//! unstable training that hold, with evidence and fixes; [`report`] compares runs (Markdown,
//! figures, one self-contained HTML page); [`sweep_report`] averages a sweep's variants over their
//! seeds; [`summary`] is what `rnnlab train` prints at the end. Everything reads the files a run
//! writes (`metrics.jsonl`, `config.resolved.toml`, ...), so folders copied from elsewhere work.
#![warn(missing_docs)]

pub mod diagnose;
pub mod report;
pub mod summary;
pub mod sweep_report;
