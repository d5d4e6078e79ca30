//! `constant`: the learning rate stays at the optimizer's base value.

use rnnlab_core::{Interval, PluginConfig, Registry, Scheduler};
use serde::{Deserialize, Serialize};

/// A constant learning rate.
#[derive(Clone, Debug)]
pub struct Constant {
    /// The learning rate.
    pub lr: f64,
}

impl Scheduler for Constant {
    fn interval(&self) -> Interval {
        Interval::Step
    }

    fn lr(&self, _t: usize) -> f64 {
        self.lr
    }
}

/// The keys of `type = "constant"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConstantConfig {
    /// step or epoch (no effect for a constant rate).
    pub interval: Interval,
}

impl Default for ConstantConfig {
    fn default() -> Self {
        ConstantConfig {
            interval: Interval::Step,
        }
    }
}

impl PluginConfig for ConstantConfig {}

/// Registers `constant`.
pub fn register(r: &mut Registry) {
    r.schedulers.register(
        "constant",
        "the optimizer's base learning rate at every step (the default)",
        ConstantConfig::default(),
        |_, a| Ok(Box::new(Constant { lr: a.base_lr })),
    );
}
