//! Watched metrics: which way a metric improves, which names a run logs, and a check, before
//! anything is written, that every metric the trainer or a plugin watches (`train.monitor`,
//! `early_stopping.monitor`, `reduce_on_plateau.monitor`, ...) is one of them.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    error::suggest, BatchSource, Error, EvalSplit, Mode, Params, RecurrentWeight, Result, Trainer,
};

/// A config's `mode` key (`train.mode`, `early_stopping.mode`, `reduce_on_plateau.mode`): which
/// way the monitored metric improves, or `auto` to follow its name; [`Mode::resolve`] turns it
/// into a [`Mode`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModeSetting {
    /// Min when the metric's name contains `loss`, else max.
    #[default]
    Auto,
    /// Larger is better.
    Max,
    /// Smaller is better.
    Min,
}

impl ModeSetting {
    /// The mode this setting gives `metric`, silently (a run's own config, read again).
    pub fn for_metric(self, metric: &str) -> Mode {
        match self {
            ModeSetting::Auto => Mode::for_metric(metric),
            ModeSetting::Max => Mode::Max,
            ModeSetting::Min => Mode::Min,
        }
    }
}

impl Mode {
    /// The way a metric's name says it improves: down for losses (a name containing `loss`), up
    /// for everything else (accuracies, F1).
    pub fn for_metric(metric: &str) -> Mode {
        if metric.contains("loss") {
            Mode::Min
        } else {
            Mode::Max
        }
    }

    /// The mode a config at `at` sets for `metric`: `max`, `min`, or `auto` (as
    /// [`Mode::for_metric`]). An explicit mode against the name's direction is allowed but
    /// warned about.
    pub fn resolve(setting: ModeSetting, metric: &str, at: &str) -> Mode {
        let inferred = Mode::for_metric(metric);
        let given = setting.for_metric(metric);
        if given != inferred {
            tracing::warn!(
                "`{at}` = \"{}\" for `{metric}`, whose name says it improves the other way \
                 ({}); set `{at}` = \"auto\" to follow the name",
                given.as_str(),
                match inferred {
                    Mode::Min => "down, as a loss",
                    Mode::Max => "up",
                }
            );
        }
        given
    }

    /// `max` or `min`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Max => "max",
            Mode::Min => "min",
        }
    }
}

/// A metric that a plugin (or the trainer) reads from each epoch's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watched {
    /// The config path that names it, e.g. `callbacks[0].monitor`.
    pub at: String,
    /// The metric's name, e.g. `val_loss`.
    pub metric: String,
}

impl Watched {
    /// The metric `metric`, named at config path `at`.
    pub fn new(at: impl Into<String>, metric: impl Into<String>) -> Self {
        Watched {
            at: at.into(),
            metric: metric.into(),
        }
    }
}

/// What the names of a run's epoch records depend on, for plugins to list theirs.
pub struct MetricContext<'a> {
    /// The model's parameters (trainable ones get gradients).
    pub params: &'a Params,
    /// The model's recurrent matrices.
    pub recurrent: &'a [RecurrentWeight],
    /// Number of classes.
    pub num_classes: usize,
    /// Whether there is a validation split (`val_*` metrics).
    pub val: bool,
    /// Whether there is a test split (`test_*` metrics).
    pub test: bool,
}

impl MetricContext<'_> {
    /// The held-out splits present, of `val` and `test`.
    pub fn eval_splits(&self) -> Vec<&'static str> {
        [("val", self.val), ("test", self.test)]
            .into_iter()
            .filter_map(|(s, on)| on.then_some(s))
            .collect()
    }
}

/// The metric names an epoch record may hold, by who logs them.
#[derive(Clone, Debug, Default)]
struct Logged {
    names: BTreeSet<String>,
    /// Plugins that did not list their names: anything under `<plugin>.` may be theirs.
    open_prefixes: Vec<String>,
}

impl Logged {
    fn add(&mut self, plugin: &str, names: Option<Vec<String>>) {
        match names {
            Some(n) => self.names.extend(n),
            None => self.open_prefixes.push(format!("{plugin}.")),
        }
    }

    fn has(&self, metric: &str) -> bool {
        self.names.contains(metric) || self.open_prefixes.iter().any(|p| metric.starts_with(p))
    }
}

/// The names the trainer itself logs every epoch.
fn trainer_names(ctx: &MetricContext, averaged: bool) -> Vec<String> {
    let mut v: Vec<String> = ["epoch", "train_loss", "train_acc"]
        .map(String::from)
        .to_vec();
    let mut prefixes: Vec<String> = ctx.eval_splits().iter().map(|s| s.to_string()).collect();
    if averaged {
        prefixes.extend(ctx.eval_splits().iter().map(|s| format!("raw_{s}")));
    }
    for p in prefixes {
        for m in ["loss", "acc", "macro_f1"] {
            v.push(format!("{p}_{m}"));
        }
    }
    v.extend(
        [
            "lr",
            "grad_norm_p50",
            "grad_norm_p99",
            "grad_norm_max",
            "clipped_frac",
            "skipped_steps",
            "epoch_seconds",
            "eval_seconds",
            "tokens_per_second",
        ]
        .map(String::from),
    );
    v
}

impl Trainer {
    /// Checks every watched metric against the names this run logs, before training starts: the
    /// scheduler sees the trainer's and the transforms' figures, a callback also those of the
    /// callbacks listed before it (the model checkpoint, listed after the pipeline's callbacks,
    /// checks `train.monitor`). An unknown name is an error naming its config path, with the
    /// nearest logged name.
    pub fn check_watched_metrics(&self, data: &dyn BatchSource) -> Result<()> {
        let recurrent = self.model.recurrent_weights();
        let ctx = self.metric_context(data, &recurrent)?;
        let mut logged = self.trainer_and_chain_names(&ctx);
        for w in self.scheduler.watched_metrics() {
            let later = self.later_names(&ctx, 0);
            check(
                &logged,
                &w,
                &later,
                "the scheduler (it sees an epoch before the callbacks)",
            )?;
        }
        for (i, cb) in self.callbacks.iter().enumerate() {
            for w in cb.watched_metrics() {
                let later = self.later_names(&ctx, i + 1);
                check(
                    &logged,
                    &w,
                    &later,
                    &format!("callbacks[{i}] ({})", cb.name()),
                )?;
            }
            logged.add(cb.name(), cb.metric_names(&ctx));
        }
        Ok(())
    }

    /// Every metric name this trainer's epoch records may hold on `data`, as listed by the
    /// trainer, the transforms and the callbacks (plugins that list none are left out).
    pub fn logged_metric_names(&self, data: &dyn BatchSource) -> Result<Vec<String>> {
        let recurrent = self.model.recurrent_weights();
        let ctx = self.metric_context(data, &recurrent)?;
        let mut logged = self.trainer_and_chain_names(&ctx);
        for cb in &self.callbacks {
            logged.add(cb.name(), cb.metric_names(&ctx));
        }
        Ok(logged.names.into_iter().collect())
    }

    /// The names the trainer and the transforms log.
    fn trainer_and_chain_names(&self, ctx: &MetricContext) -> Logged {
        let mut logged = Logged::default();
        logged.add(
            "trainer",
            Some(trainer_names(ctx, self.chain.averages_weights())),
        );
        for (name, names) in self.chain.metric_names() {
            logged.add(&name, names);
        }
        logged
    }

    fn metric_context<'a>(
        &'a self,
        data: &dyn BatchSource,
        recurrent: &'a [RecurrentWeight],
    ) -> Result<MetricContext<'a>> {
        Ok(MetricContext {
            params: self.model.params(),
            recurrent,
            num_classes: data.num_classes(),
            val: !data.eval_batches(EvalSplit::Val)?.is_empty(),
            test: !data.eval_batches(EvalSplit::Test)?.is_empty(),
        })
    }

    /// The names logged by callbacks from index `from` on, with the callback's index and name.
    fn later_names(&self, ctx: &MetricContext, from: usize) -> Vec<(usize, String, Logged)> {
        self.callbacks
            .iter()
            .enumerate()
            .skip(from)
            .map(|(i, cb)| {
                let mut l = Logged::default();
                l.add(cb.name(), cb.metric_names(ctx));
                (i, cb.name().to_string(), l)
            })
            .collect()
    }
}

/// Checks `w` against the names logged before its reader runs; `later` are the callbacks that
/// run after it, for the hint that one of them logs the name.
fn check(
    logged: &Logged,
    w: &Watched,
    later: &[(usize, String, Logged)],
    reader: &str,
) -> Result<()> {
    if logged.has(&w.metric) {
        return Ok(());
    }
    if let Some((i, name, _)) = later.iter().find(|(_, _, l)| l.has(&w.metric)) {
        return Err(Error::invalid(
            &w.at,
            format!(
                "`{}` is logged by callbacks[{i}] ({name}), which runs after {reader}: the \
                 metric is not there yet when it is read{}",
                w.metric,
                if reader.starts_with("callbacks") {
                    format!("; list `{name}` before it")
                } else {
                    String::new()
                }
            ),
        ));
    }
    let known: Vec<&str> = logged.names.iter().map(String::as_str).collect();
    const SHOWN: usize = 24;
    let mut list = known
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if known.len() > SHOWN {
        list.push_str(&format!(", ... ({} in all)", known.len()));
    }
    let hint = suggest(&w.metric, known.iter().copied());
    let hint = match hint.strip_prefix(", ") {
        Some(h) => format!(" ({h})"),
        None => String::new(),
    };
    Err(Error::invalid(
        &w.at,
        format!(
            "metric `{}` is not logged by this run{hint}; it logs: {list}",
            w.metric
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_improve_down_everything_else_up() {
        assert_eq!(Mode::for_metric("val_loss"), Mode::Min);
        assert_eq!(Mode::for_metric("raw_test_loss"), Mode::Min);
        assert_eq!(Mode::for_metric("val_acc"), Mode::Max);
        assert_eq!(Mode::for_metric("val_macro_f1"), Mode::Max);
        assert_eq!(Mode::resolve(ModeSetting::Auto, "val_loss", "x"), Mode::Min);
        assert_eq!(Mode::resolve(ModeSetting::Auto, "val_acc", "x"), Mode::Max);
        assert_eq!(Mode::resolve(ModeSetting::Max, "val_loss", "x"), Mode::Max);
        assert_eq!(Mode::resolve(ModeSetting::Min, "val_acc", "x"), Mode::Min);
    }

    #[test]
    fn an_unknown_name_suggests_the_near_one() {
        let params = Params::new();
        let ctx = MetricContext {
            params: &params,
            recurrent: &[],
            num_classes: 2,
            val: true,
            test: false,
        };
        let mut logged = Logged::default();
        logged.add("trainer", Some(trainer_names(&ctx, false)));
        let e = check(&logged, &Watched::new("train.monitor", "val_accc"), &[], "").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("`train.monitor`"), "{msg}");
        assert!(msg.contains("did you mean `val_acc`?"), "{msg}");
        // No test split: test_acc is not logged; no averaging: no raw_*.
        assert!(check(&logged, &Watched::new("x", "test_acc"), &[], "").is_err());
        assert!(check(&logged, &Watched::new("x", "raw_val_acc"), &[], "").is_err());
        assert!(check(&logged, &Watched::new("x", "val_loss"), &[], "").is_ok());
        // A plugin that does not list its names owns its prefix.
        logged.add("mine", None);
        assert!(check(&logged, &Watched::new("x", "mine.anything"), &[], "").is_ok());
    }
}
