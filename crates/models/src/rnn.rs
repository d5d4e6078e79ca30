//! The vanilla (Elman) RNN cell, as `torch.nn.RNN`: `h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)`.

use candle_core::Tensor;
use rnnlab_core::{CellState, ParamBuilder, PluginConfig, Result};

use crate::Kernel;

use crate::fused::FusedCell;
use crate::gated::{self, CellWeights, Gated};

/// The activation of a vanilla RNN (`nonlinearity = "tanh"` or `"relu"`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Nonlinearity {
    /// `tanh` (PyTorch's default).
    Tanh,
    /// `relu`.
    Relu,
}

/// The keys of `type = "rnn"` (besides the shared cell keys).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RnnConfig {
    /// Activation: tanh or relu.
    pub nonlinearity: Nonlinearity,
    /// Sequence pass: fused (the cell's own sequence kernel) or reference (step-by-step autograd).
    pub kernel: Kernel,
}

impl Default for RnnConfig {
    fn default() -> Self {
        RnnConfig {
            nonlinearity: Nonlinearity::Tanh,
            kernel: Kernel::Fused,
        }
    }
}

impl PluginConfig for RnnConfig {}

/// A vanilla RNN layer in one direction, with PyTorch's parameters `weight_ih_{suffix}` `[H, E]`,
/// `weight_hh_{suffix}` `[H, H]`, `bias_ih_{suffix}` `[H]`, `bias_hh_{suffix}` `[H]`.
#[derive(Clone, Debug)]
pub struct Rnn {
    w: CellWeights,
    nonlinearity: Nonlinearity,
}

/// Builds a vanilla RNN cell from `input` to `hidden` units, creating its parameters with the name
/// `suffix` (`l0`, `l1_reverse`, ...) under `pb`'s prefix, initialised as PyTorch does.
pub fn rnn(
    input: usize,
    hidden: usize,
    nonlinearity: Nonlinearity,
    suffix: &str,
    pb: &mut ParamBuilder,
) -> Result<Rnn> {
    Ok(Rnn {
        w: CellWeights::new(input, hidden, 1, suffix, pb)?,
        nonlinearity,
    })
}

impl Rnn {
    /// The activation.
    pub fn nonlinearity(&self) -> Nonlinearity {
        self.nonlinearity
    }
}

impl Gated for Rnn {
    fn weights(&self) -> &CellWeights {
        &self.w
    }

    fn combine(&self, xp: &Tensor, hp: &Tensor, _state: &CellState) -> Result<CellState> {
        let pre = xp.add(hp)?;
        let h = match self.nonlinearity {
            Nonlinearity::Tanh => pre.tanh()?,
            Nonlinearity::Relu => pre.relu()?,
        };
        Ok(CellState { h, c: None })
    }

    fn fused_cell(&self) -> FusedCell {
        match self.nonlinearity {
            Nonlinearity::Tanh => FusedCell::RnnTanh,
            Nonlinearity::Relu => FusedCell::RnnRelu,
        }
    }
}

gated::gated_cell!(Rnn, gates: ["h"]);
