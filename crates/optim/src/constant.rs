//! `constant`: the learning rate stays at the optimizer's base value.

use std::sync::Arc;

use rnnlab_core::{Interval, ParamSpec, PluginParams, PluginSpec, Registry, Result, Scheduler};

/// A constant learning rate.
#[derive(Clone, Debug)]
pub struct Constant {
    /// The learning rate.
    pub lr: f64,
}

impl Scheduler for Constant {
    fn name(&self) -> &str {
        "constant"
    }

    fn interval(&self) -> Interval {
        Interval::Step
    }

    fn lr(&self, _t: usize) -> f64 {
        self.lr
    }
}

/// Registers `constant`.
pub fn register(r: &mut Registry) {
    r.schedulers.add(
        PluginSpec {
            name: "constant",
            doc: "the optimizer's base learning rate at every step (the default)",
            params: vec![ParamSpec::new(
                "interval",
                "\"step\"",
                "step or epoch (no effect for a constant rate)",
            )],
        },
        Arc::new(
            |p: &PluginParams, base_lr: f64, _: &Registry| -> Result<Box<dyn Scheduler>> {
                p.choice("interval", &["step", "epoch"])?;
                Ok(Box::new(Constant { lr: base_lr }))
            },
        ),
    );
}
