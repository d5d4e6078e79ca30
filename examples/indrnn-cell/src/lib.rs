//! An IndRNN cell (Li et al. 2018) added to rnnlab from its own crate: one file for the cell and
//! one registration call. `h' = act(x·W_ihᵀ + b_ih + u ⊙ h + b_hh)`, where the recurrent weight
//! `u` is a vector: each unit sees only its own past.
//!
//! ```no_run
//! let mut r = rnnlab_cli::registry();
//! rnnlab_indrnn::register(&mut r);
//! std::process::exit(rnnlab_cli::run(r));
//! ```

use candle_core::Tensor;
use rnnlab_core::{Cell, CellState, ParamBuilder, PluginConfig, RecurrentWeight, Registry, Result};
use serde::{Deserialize, Serialize};

/// The activation of an IndRNN cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// max(0, x), the paper's choice.
    Relu,
    /// tanh.
    Tanh,
}

/// One IndRNN layer in one direction.
pub struct IndRnn {
    w_ih: Tensor,
    u: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    activation: Activation,
    hh_name: String,
    input: usize,
    hidden: usize,
}

/// An IndRNN layer `input → hidden`, parameters named `weight_ih_{suffix}`, `weight_hh_{suffix}`
/// (the vector `u`), `bias_ih_{suffix}`, `bias_hh_{suffix}` under the builder's prefix, all
/// drawn from U(±1/√hidden) as PyTorch's RNNs.
pub fn indrnn(
    input: usize,
    hidden: usize,
    activation: Activation,
    suffix: &str,
    pb: &mut ParamBuilder,
) -> Result<IndRnn> {
    let k = 1.0 / (hidden as f64).sqrt();
    let w_ih = pb.uniform(&format!("weight_ih_{suffix}"), &[hidden, input], k)?;
    let u = pb.uniform(&format!("weight_hh_{suffix}"), &[hidden], k)?;
    let b_ih = pb.uniform(&format!("bias_ih_{suffix}"), &[hidden], k)?;
    let b_hh = pb.uniform(&format!("bias_hh_{suffix}"), &[hidden], k)?;
    Ok(IndRnn {
        w_ih,
        u,
        b_ih,
        b_hh,
        activation,
        hh_name: pb.full_name(&format!("weight_hh_{suffix}")),
        input,
        hidden,
    })
}

impl Cell for IndRnn {
    fn input_size(&self) -> usize {
        self.input
    }

    fn hidden_size(&self) -> usize {
        self.hidden
    }

    fn step(&self, x_t: &Tensor, state: &CellState, h_mask: Option<&Tensor>) -> Result<CellState> {
        let h = match h_mask {
            Some(m) => state.h.mul(m)?,
            None => state.h.clone(),
        };
        let pre = x_t
            .matmul(&self.w_ih.t()?)?
            .broadcast_add(&self.b_ih)?
            .add(&h.broadcast_mul(&self.u)?)?
            .broadcast_add(&self.b_hh)?;
        let h = match self.activation {
            Activation::Relu => pre.relu()?,
            Activation::Tanh => pre.tanh()?,
        };
        Ok(CellState { h, c: None })
    }

    fn recurrent_weights(&self) -> Vec<RecurrentWeight> {
        vec![RecurrentWeight {
            name: self.hh_name.clone(),
            gates: vec!["h".into()],
        }]
    }
}

/// The keys of `type = "indrnn"` (besides the shared cell keys `hidden`, `layers`, ...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IndRnnConfig {
    /// relu or tanh.
    pub activation: Activation,
}

impl Default for IndRnnConfig {
    fn default() -> Self {
        IndRnnConfig {
            activation: Activation::Relu,
        }
    }
}

impl PluginConfig for IndRnnConfig {}

/// Registers the `indrnn` cell.
pub fn register(r: &mut Registry) {
    r.cells.register(
        "indrnn",
        "IndRNN (Li et al. 2018): a diagonal recurrent weight, each unit sees only its own past",
        IndRnnConfig::default(),
        |c, a, pb| {
            let cell = indrnn(a.input_size, a.hidden_size, c.activation, &a.suffix, pb)?;
            Ok(Box::new(cell))
        },
    );
}
