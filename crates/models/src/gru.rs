//! The GRU cell, as `torch.nn.GRU`: gates r, z, n stacked in that order;
//! `n = tanh(x W_inᵀ + b_in + r ⊙ (h W_hnᵀ + b_hn))`, `h' = (1 − z) ⊙ n + z ⊙ h`.

use candle_core::Tensor;
use candle_nn::ops::sigmoid;
use rnnlab_core::{CellState, ParamBuilder, Result};

use crate::fused::FusedCell;
use crate::gated::{self, CellWeights, Gated};

/// A GRU layer in one direction, with PyTorch's parameters `weight_ih_{suffix}` `[3H, E]`,
/// `weight_hh_{suffix}` `[3H, H]`, `bias_ih_{suffix}` `[3H]`, `bias_hh_{suffix}` `[3H]`.
#[derive(Clone, Debug)]
pub struct Gru {
    w: CellWeights,
}

/// Builds a GRU cell from `input` to `hidden` units, creating its parameters with the name
/// `suffix` (`l0`, `l1_reverse`, ...) under `pb`'s prefix, initialised as PyTorch does.
pub fn gru(input: usize, hidden: usize, suffix: &str, pb: &mut ParamBuilder) -> Result<Gru> {
    Ok(Gru {
        w: CellWeights::new(input, hidden, 3, suffix, pb)?,
    })
}

impl Gated for Gru {
    fn weights(&self) -> &CellWeights {
        &self.w
    }

    fn combine(&self, xp: &Tensor, hp: &Tensor, state: &CellState) -> Result<CellState> {
        let h = self.w.hidden;
        let rz = sigmoid(&xp.narrow(1, 0, 2 * h)?.add(&hp.narrow(1, 0, 2 * h)?)?)?;
        let r = rz.narrow(1, 0, h)?;
        let z = rz.narrow(1, h, h)?;
        let n = xp
            .narrow(1, 2 * h, h)?
            .add(&r.mul(&hp.narrow(1, 2 * h, h)?)?)?
            .tanh()?;
        // (1 − z) ⊙ n + z ⊙ h, written as n + z ⊙ (h − n); `h` is the carried (unmasked) state.
        let h = n.add(&z.mul(&state.h.sub(&n)?)?)?;
        Ok(CellState { h, c: None })
    }

    fn fused_cell(&self) -> FusedCell {
        FusedCell::Gru
    }
}

gated::gated_cell!(Gru, gates: ["r", "z", "n"]);
