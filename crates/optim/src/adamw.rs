//! `adamw`: AdamW (Loshchilov & Hutter) with `torch.optim.AdamW`'s update rule: the weights decay
//! by `lr·weight_decay` (decoupled from the moments), then the Adam step. Default weight decay 0.01
//! as in torch. The state and arithmetic are [`Adam`]'s in decoupled mode.

use std::borrow::Cow;

use rnnlab_core::{Link, PluginConfig, Registry, Result};
use serde::{Deserialize, Serialize};

use crate::adam::{adam, Adam, AdamConfig};

/// An AdamW transform: `p ← p·(1 - lr·weight_decay)` and then Adam's step, as one update.
pub fn adamw(lr: f64, beta1: f64, beta2: f64, eps: f64, weight_decay: f64) -> Adam {
    adam(lr, beta1, beta2, eps)
        .with_weight_decay(weight_decay)
        .decoupled()
}

/// The keys of `type = "adamw"`: [`AdamConfig`]'s, with torch's default weight decay (0.01), which
/// is decoupled here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AdamWConfig(pub AdamConfig);

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig(AdamConfig {
            weight_decay: 0.01,
            ..AdamConfig::default()
        })
    }
}

/// [`AdamConfig`]'s schema with `weight_decay` documented as the decoupled decay.
impl schemars::JsonSchema for AdamWConfig {
    fn schema_name() -> Cow<'static, str> {
        "AdamWConfig".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut schema = AdamConfig::json_schema(generator);
        if let Some(doc) = schema.pointer_mut("/properties/weight_decay/description") {
            *doc = "Decoupled decay: the weights shrink by lr*weight_decay each step, >= 0.".into();
        }
        schema
    }
}

impl AdamWConfig {
    /// The AdamW transform these keys describe.
    pub fn build(&self) -> Adam {
        self.0.build().decoupled()
    }
}

impl PluginConfig for AdamWConfig {
    fn validate(&self, at: &str) -> Result<()> {
        self.0.validate(at)
    }
}

/// Registers `adamw`.
pub fn register(r: &mut Registry) {
    r.transforms.register(
        "adamw",
        "AdamW with torch.optim.AdamW's update rule (decoupled weight decay, default 0.01)",
        AdamWConfig::default(),
        |c| Ok(Link::gradients(c.build())),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adam::tests::{assert_torch, five_steps};

    #[test]
    fn default_adamw_matches_torch() -> Result<()> {
        // run(lambda p: torch.optim.AdamW(p, lr=0.1))   (script in adam.rs's tests)
        let got = five_steps(Box::new(adamw(0.1, 0.9, 0.999, 1e-8, 0.01)), 0.1)?;
        assert_torch(
            &got,
            [
                [0.28423304006294325, -0.8262934261970409],
                [1.6799524756901971, 0.024028483168379498],
            ],
        );
        Ok(())
    }

    #[test]
    fn adamw_amsgrad_matches_torch() -> Result<()> {
        // run(lambda p: torch.optim.AdamW(p, lr=0.1, weight_decay=0.1, amsgrad=True,
        //                                 betas=(0.8, 0.99)))
        let got = five_steps(
            Box::new(adamw(0.1, 0.8, 0.99, 1e-8, 0.1).with_amsgrad(true)),
            0.1,
        )?;
        assert_torch(
            &got,
            [
                [0.27917032762392524, -0.8162803547887503],
                [1.596377924227979, 0.042319696838848855],
            ],
        );
        Ok(())
    }

    #[test]
    fn registered_default_decay_is_torchs() {
        let mut r = Registry::empty();
        register(&mut r);
        let t: toml::Table = toml::from_str("type = \"adamw\"").unwrap();
        let (link, p) = r.transform(&t, "optim.transforms[0]").unwrap();
        assert_eq!(link.name(), "adamw");
        assert_eq!(p.f64("weight_decay").unwrap(), 0.01);
    }
}
