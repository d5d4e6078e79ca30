//! The LSTM cell, as `torch.nn.LSTM`: gates i, f, g, o stacked in that order;
//! `c' = f ⊙ c + i ⊙ g`, `h' = o ⊙ tanh(c')`.

use candle_core::Tensor;
use candle_nn::ops::sigmoid;
use rnnlab_core::{CellState, Error, ParamBuilder, Result};

use crate::fused::FusedCell;
use crate::gated::{self, CellWeights, Gated};

/// An LSTM layer in one direction, with PyTorch's parameters `weight_ih_{suffix}` `[4H, E]`,
/// `weight_hh_{suffix}` `[4H, H]`, `bias_ih_{suffix}` `[4H]`, `bias_hh_{suffix}` `[4H]`.
#[derive(Clone, Debug)]
pub struct Lstm {
    w: CellWeights,
}

/// Builds an LSTM cell from `input` to `hidden` units, creating its parameters with the name
/// `suffix` (`l0`, `l1_reverse`, ...) under `pb`'s prefix, initialised as PyTorch does.
pub fn lstm(input: usize, hidden: usize, suffix: &str, pb: &mut ParamBuilder) -> Result<Lstm> {
    Ok(Lstm {
        w: CellWeights::new(input, hidden, 4, suffix, pb)?,
    })
}

impl Gated for Lstm {
    fn weights(&self) -> &CellWeights {
        &self.w
    }

    fn combine(&self, xp: &Tensor, hp: &Tensor, state: &CellState) -> Result<CellState> {
        let h = self.w.hidden;
        let c_prev = state
            .c
            .as_ref()
            .ok_or_else(|| Error::Mismatch("LSTM state without a cell part".into()))?;
        let gates = xp.add(hp)?;
        let sig = sigmoid(&gates)?;
        let i = sig.narrow(1, 0, h)?;
        let f = sig.narrow(1, h, h)?;
        let g = gates.narrow(1, 2 * h, h)?.tanh()?;
        let o = sig.narrow(1, 3 * h, h)?;
        let c = f.mul(c_prev)?.add(&i.mul(&g)?)?;
        let h = o.mul(&c.tanh()?)?;
        Ok(CellState { h, c: Some(c) })
    }

    fn fused_cell(&self) -> FusedCell {
        FusedCell::Lstm
    }
}

gated::gated_cell!(Lstm, gates: ["i", "f", "g", "o"], cell_state: true);
