//! `weight_decay`: L2 added to the gradient (coupled, as torch Adam's `weight_decay`) or, placed
//! after the optimizer, a decoupled decay of the parameters (AdamW). `exclude` lists name patterns
//! (`*` is any run of characters) of parameters that are not decayed, e.g.
//! `exclude = ["*bias*", "embedding.*"]`.

use rnnlab_core::{
    Error, GradientTransform, Grads, Link, Outcome, Params, PluginConfig, Registry, Result,
    StepContext, StepReport,
};
use serde::{Deserialize, Serialize};

use crate::flat::axpy;
use crate::util::{check_non_negative, glob_match, param};

/// Adds `value · p` to each gradient (coupled), or `-lr · value · p` to each update (decoupled).
#[derive(Clone, Debug)]
pub struct WeightDecay {
    /// The decay coefficient.
    pub value: f64,
    /// Decoupled (AdamW) rather than coupled (L2).
    pub decoupled: bool,
    /// Name patterns of parameters left undecayed (see [`crate::util::glob_match`]).
    pub exclude: Vec<String>,
}

/// A `weight_decay` transform that decays every trainable parameter.
pub fn weight_decay(value: f64, decoupled: bool) -> WeightDecay {
    WeightDecay {
        value,
        decoupled,
        exclude: Vec::new(),
    }
}

impl WeightDecay {
    /// Leaves the parameters whose names match any of `patterns` undecayed.
    pub fn with_exclude(mut self, patterns: Vec<String>) -> Self {
        self.exclude = patterns;
        self
    }

    /// Whether the parameter called `name` is decayed.
    pub fn decays(&self, name: &str) -> bool {
        !self.exclude.iter().any(|p| glob_match(p, name))
    }
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
        for (name, g) in grads.iter_mut() {
            if !self.decays(name) {
                continue;
            }
            // g + scale·p in one pass (not a scaled copy of p, then a sum)
            *g = axpy(
                g,
                scale,
                &param(params, name)?,
                &format!("weight_decay `{name}`"),
            )?;
        }
        Ok(Outcome::Update)
    }
}

/// The keys of `type = "weight_decay"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WeightDecayConfig {
    /// Decay coefficient (>= 0).
    pub value: f64,
    /// Decay the weights by lr*value (AdamW); put it after the optimizer.
    pub decoupled: bool,
    /// Name patterns (* = any characters) of parameters not decayed, e.g. ["*bias*",
    /// "embedding.*"]; one pattern may be given as a string.
    #[schemars(with = "Vec<String>")]
    pub exclude: toml::Value,
}

impl Default for WeightDecayConfig {
    fn default() -> Self {
        WeightDecayConfig {
            value: 1e-5,
            decoupled: false,
            exclude: toml::Value::Array(Vec::new()),
        }
    }
}

impl PluginConfig for WeightDecayConfig {
    fn validate(&self, at: &str) -> Result<()> {
        check_non_negative(at, "value", self.value)?;
        patterns(&self.exclude, &format!("{at}.exclude")).map(|_| ())
    }
}

/// The name patterns of `value` (a list of non-empty strings, or one string); errors at `at`.
fn patterns(value: &toml::Value, at: &str) -> Result<Vec<String>> {
    match value {
        toml::Value::Array(a) => a
            .iter()
            .map(|v| match v {
                toml::Value::String(s) if !s.is_empty() => Ok(s.clone()),
                other => Err(Error::invalid(
                    at,
                    format!("expected non-empty name patterns (strings with `*`), got {other}"),
                )),
            })
            .collect(),
        toml::Value::String(s) => Ok(vec![s.clone()]),
        other => Err(Error::invalid(
            at,
            format!("expected a list of name patterns, got {other}"),
        )),
    }
}

/// Registers `weight_decay`.
pub fn register(r: &mut Registry) {
    r.transforms.register(
        "weight_decay",
        "L2 penalty: before the optimizer adds value*p to the gradient; decoupled=true (after it) decays the weights as AdamW",
        WeightDecayConfig::default(),
        |c| {
            let exclude = patterns(&c.exclude, "exclude")?;
            Ok(Link::gradients(weight_decay(c.value, c.decoupled).with_exclude(exclude)))
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adam::adam;
    use crate::adam::tests::run_fixed;
    use crate::util::transform_test::{assert_within, step_ctx};
    use candle_core::{DType, Device, Tensor, Var};
    use rnnlab_core::{Chain, Link};

    /// Three steps of a chain on fixed gradients; returns the final weights.
    fn run(links: Vec<Box<dyn GradientTransform>>) -> Result<Vec<Vec<f64>>> {
        let mut chain = Chain::new(links.into_iter().map(Link::from).collect());
        let step = |c: &mut Chain, g: &mut Grads, p: &Params, ctx: &StepContext| {
            c.apply(g, p, ctx, &mut StepReport::default())?;
            Ok(())
        };
        run_fixed(&mut chain, 3, 0.1, DType::F64, |c, p| c.init(p), step)
    }

    fn assert_close(got: &[Vec<f64>], want: [[f64; 2]; 2]) {
        assert_within(got, &want, 1e-9);
    }

    #[test]
    fn coupled_decay_before_adam_matches_torch_adam_weight_decay() -> Result<()> {
        // w = torch.tensor([[0.5, -1.0], [2.0, 0.25]], dtype=torch.float64, requires_grad=True)
        // opt = torch.optim.Adam([w], lr=0.1, weight_decay=0.1)
        // for g in fixed[:3]: w.grad = torch.tensor(g, dtype=torch.float64); opt.step()
        let got = run(vec![
            Box::new(weight_decay(0.1, false)),
            Box::new(adam(0.1, 0.9, 0.999, 1e-8)),
        ])?;
        assert_close(
            &got,
            [
                [0.32334756848296975, -0.8178683746889782],
                [1.7715753441146034, 0.05892586519411312],
            ],
        );
        Ok(())
    }

    #[test]
    fn decoupled_decay_after_adam_matches_torch_adamw() -> Result<()> {
        // the same with opt = torch.optim.AdamW([w], lr=0.1, weight_decay=0.1)
        let got = run(vec![
            Box::new(adam(0.1, 0.9, 0.999, 1e-8)),
            Box::new(weight_decay(0.1, true)),
        ])?;
        assert_close(
            &got,
            [
                [0.3183073455256663, -0.8010865962468913],
                [1.7581575362478943, 0.055149151929708],
            ],
        );
        Ok(())
    }

    #[test]
    fn excluded_names_are_not_decayed() -> Result<()> {
        let d = Device::Cpu;
        let mut params = Params::new();
        for name in [
            "embedding.weight",
            "rnn.weight_hh_l0",
            "rnn.bias_hh_l0",
            "fc.bias",
        ] {
            params.insert(name, Var::from_tensor(&Tensor::new(&[2.0f64], &d)?)?, true)?;
        }
        let mut r = Registry::empty();
        register(&mut r);
        let t: toml::Table = toml::from_str(
            "type = \"weight_decay\"\nvalue = 0.5\nexclude = [\"*bias*\", \"embedding.*\"]",
        )
        .unwrap();
        let (Link::Gradients(mut wd), _) = r.transform(&t, "optim.transforms[0]")? else {
            panic!("a gradient transform");
        };
        let mut g = Grads::from_pairs(
            params
                .iter()
                .map(|p| Ok((p.name.clone(), Tensor::new(&[1.0f64], &d)?)))
                .collect::<Result<Vec<_>>>()?,
        );
        let ctx = step_ctx(0, 0.1);
        wd.apply(&mut g, &params, &ctx, &mut StepReport::default())?;
        let got: Vec<(String, f64)> = g
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_vec1::<f64>().unwrap()[0]))
            .collect();
        assert_eq!(
            got,
            vec![
                ("embedding.weight".to_string(), 1.0),
                ("rnn.weight_hh_l0".to_string(), 2.0),
                ("rnn.bias_hh_l0".to_string(), 1.0),
                ("fc.bias".to_string(), 1.0),
            ]
        );
        let bad: toml::Table = toml::from_str("type = \"weight_decay\"\nexclude = [1]").unwrap();
        let e = r.transform(&bad, "optim.transforms[0]").err().unwrap();
        assert!(e.to_string().contains("optim.transforms[0].exclude"), "{e}");
        Ok(())
    }
}
