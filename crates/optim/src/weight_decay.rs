//! `weight_decay`: L2 added to the gradient (coupled, as torch Adam's `weight_decay`) or, placed
//! after the optimizer, a decoupled decay of the parameters (AdamW).

use std::sync::Arc;

use rnnlab_core::{
    GradientTransform, Grads, Outcome, ParamSpec, Params, PluginParams, PluginSpec, Registry,
    Result, StepContext, StepReport,
};

/// Adds `value · p` to each gradient (coupled), or `-lr · value · p` to each update (decoupled).
#[derive(Clone, Debug)]
pub struct WeightDecay {
    /// The decay coefficient.
    pub value: f64,
    /// Decoupled (AdamW) rather than coupled (L2).
    pub decoupled: bool,
}

/// A `weight_decay` transform.
pub fn weight_decay(value: f64, decoupled: bool) -> WeightDecay {
    WeightDecay { value, decoupled }
}

impl GradientTransform for WeightDecay {
    fn name(&self) -> &str {
        "weight_decay"
    }

    fn apply(
        &mut self,
        grads: &mut Grads,
        params: &Params,
        ctx: &StepContext,
        _report: &mut StepReport,
    ) -> Result<Outcome> {
        let scale = if self.decoupled {
            -ctx.lr * self.value
        } else {
            self.value
        };
        for (p, (_, g)) in params.trainable().zip(grads.iter_mut()) {
            let decay = p.var.as_tensor().affine(scale, 0.0)?.to_dtype(g.dtype())?;
            *g = g.add(&decay)?;
        }
        Ok(Outcome::Update)
    }
}

/// Registers `weight_decay`.
pub fn register(r: &mut Registry) {
    r.transforms.add(
        PluginSpec {
            name: "weight_decay",
            doc: "L2 penalty: before the optimizer adds value*p to the gradient; decoupled=true (after it) decays the weights as AdamW",
            params: vec![
                ParamSpec::new("value", "1e-5", "decay coefficient (>= 0)"),
                ParamSpec::new("decoupled", "false", "decay the weights by lr*value (AdamW); put it after the optimizer"),
            ],
        },
        Arc::new(|p: &PluginParams| {
            let value = p.f64("value")?;
            p.check("value", value >= 0.0 && value.is_finite(), "must be >= 0")?;
            Ok(Box::new(weight_decay(value, p.bool("decoupled")?)) as Box<dyn GradientTransform>)
        }),
    );
}
