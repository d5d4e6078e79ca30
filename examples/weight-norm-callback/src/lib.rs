//! A callback added to rnnlab from its own crate: one file and one registration call. At each
//! epoch end, `weight_norm` logs the L2 norm of the trainable weights, in all and per parameter
//! (growing weights go with overfitting, and weight decay should hold them).
//!
//! ```no_run
//! let mut r = rnnlab_cli::registry();
//! rnnlab_weight_norm::register(&mut r);
//! std::process::exit(rnnlab_cli::run(r));
//! ```

use rnnlab_core::{
    squared_norm, Callback, Control, EpochMetrics, MetricContext, PluginConfig, Registry, Result,
    TrainView,
};
use serde::{Deserialize, Serialize};

/// Logs `weight_norm.total` and, with `per_param`, `weight_norm.<param>`.
#[derive(Clone, Debug)]
pub struct WeightNorm {
    /// Also log each parameter's norm.
    pub per_param: bool,
}

impl Callback for WeightNorm {
    fn name(&self) -> &str {
        "weight_norm"
    }

    fn on_epoch_end(&mut self, metrics: &mut EpochMetrics, view: &TrainView) -> Result<Control> {
        let mut total = 0.0;
        for p in view.params.iter().filter(|p| p.trainable) {
            let sq = squared_norm(p.var.as_tensor())?;
            total += sq;
            if self.per_param {
                metrics.set(format!("weight_norm.{}", p.name), sq.sqrt());
            }
        }
        metrics.set("weight_norm.total", total.sqrt());
        Ok(Control::Continue)
    }

    /// `None`: any `weight_norm.*` name may be watched (the per-parameter names depend on the
    /// model).
    fn metric_names(&self, _ctx: &MetricContext) -> Option<Vec<String>> {
        None
    }
}

/// The keys of `type = "weight_norm"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WeightNormConfig {
    /// Also log weight_norm.<param> for every trainable parameter.
    pub per_param: bool,
}

impl Default for WeightNormConfig {
    fn default() -> Self {
        WeightNormConfig { per_param: true }
    }
}

impl PluginConfig for WeightNormConfig {}

/// Registers `weight_norm`.
pub fn register(r: &mut Registry) {
    r.callbacks.register(
        "weight_norm",
        "L2 norm of the trainable weights at each epoch end, in all and per parameter",
        WeightNormConfig::default(),
        |c| {
            Ok(Box::new(WeightNorm {
                per_param: c.per_param,
            }) as Box<dyn Callback>)
        },
    );
}
