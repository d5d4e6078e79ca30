//! What the built-in cells share: PyTorch's four parameters per layer and direction, and the fused
//! sequence pass (one input projection for all steps, then the fused recurrence).

use candle_core::Tensor;
use rnnlab_core::{Cell, CellState, Error, ParamBuilder, Result, SeqOutput};

use crate::fused::{self, FusedCell};

/// `weight_ih [G·H, E]`, `weight_hh [G·H, H]`, `bias_ih [G·H]`, `bias_hh [G·H]` of one layer and
/// direction, with `G` stacked gates.
#[derive(Clone, Debug)]
pub(crate) struct CellWeights {
    pub w_ih: Tensor,
    pub w_hh: Tensor,
    pub b_ih: Tensor,
    pub b_hh: Tensor,
    /// The full name of `weight_hh_{suffix}` (with the builder's prefix).
    pub hh_name: String,
    pub input: usize,
    pub hidden: usize,
}

impl CellWeights {
    /// Creates the four parameters with PyTorch's names and default init (every entry
    /// U(-1/√H, 1/√H)), in PyTorch's order.
    pub fn new(
        input: usize,
        hidden: usize,
        gates: usize,
        suffix: &str,
        pb: &mut ParamBuilder,
    ) -> Result<Self> {
        if input == 0 || hidden == 0 {
            return Err(Error::invalid(
                format!("weight_ih_{suffix}"),
                format!("input ({input}) and hidden ({hidden}) sizes must be positive"),
            ));
        }
        let bound = 1.0 / (hidden as f64).sqrt();
        let g = gates * hidden;
        let w_ih = pb.uniform(&format!("weight_ih_{suffix}"), &[g, input], bound)?;
        let hh = format!("weight_hh_{suffix}");
        let w_hh = pb.uniform(&hh, &[g, hidden], bound)?;
        let hh_name = pb.full_name(&hh);
        let b_ih = pb.uniform(&format!("bias_ih_{suffix}"), &[g], bound)?;
        let b_hh = pb.uniform(&format!("bias_hh_{suffix}"), &[g], bound)?;
        Ok(CellWeights {
            w_ih,
            w_hh,
            b_ih,
            b_hh,
            hh_name,
            input,
            hidden,
        })
    }

    /// `x W_ihᵀ + b_ih` for `x` `[N, E]`.
    pub fn input_proj(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.w_ih.t()?)?.broadcast_add(&self.b_ih)?)
    }

    /// `(h ⊙ mask) W_hhᵀ + b_hh`, with `w_hh_t` = `W_hhᵀ`.
    pub fn recurrent_proj(
        &self,
        h: &Tensor,
        h_mask: Option<&Tensor>,
        w_hh_t: &Tensor,
    ) -> Result<Tensor> {
        let h = match h_mask {
            Some(m) => h.mul(m)?,
            None => h.clone(),
        };
        Ok(h.matmul(w_hh_t)?.broadcast_add(&self.b_hh)?)
    }
}

/// A cell whose step is `combine(x W_ihᵀ + b_ih, (h ⊙ mask) W_hhᵀ + b_hh, state)`.
pub(crate) trait Gated: Cell {
    /// The cell's parameters.
    fn weights(&self) -> &CellWeights;

    /// The next state from the input projection `xp` and the recurrent projection `hp` (both
    /// `[B, G·H]`) and the previous state.
    fn combine(&self, xp: &Tensor, hp: &Tensor, state: &CellState) -> Result<CellState>;

    /// The equations the fused sequence op runs for this cell.
    fn fused_cell(&self) -> FusedCell;
}

/// Implements [`Cell`] for a [`Gated`] cell type `$ty`: sizes from its [`CellWeights`], the step
/// and the fused sequence pass of this module, and one recurrent weight `weight_hh` stacking the
/// gates `$gate`s in order; `cell_state: true` for a cell that carries `c` besides `h`.
macro_rules! gated_cell {
    ($ty:ty, gates: [$($gate:literal),+] $(, cell_state: $cell_state:literal)?) => {
        impl rnnlab_core::Cell for $ty {
            fn input_size(&self) -> usize {
                $crate::gated::Gated::weights(self).input
            }

            fn hidden_size(&self) -> usize {
                $crate::gated::Gated::weights(self).hidden
            }

            $(
                fn has_cell_state(&self) -> bool {
                    $cell_state
                }
            )?

            fn step(
                &self,
                x_t: &candle_core::Tensor,
                state: &rnnlab_core::CellState,
                h_mask: Option<&candle_core::Tensor>,
            ) -> rnnlab_core::Result<rnnlab_core::CellState> {
                $crate::gated::step(self, x_t, state, h_mask)
            }

            fn recurrent_weights(&self) -> Vec<rnnlab_core::RecurrentWeight> {
                vec![rnnlab_core::RecurrentWeight {
                    name: $crate::gated::Gated::weights(self).hh_name.clone(),
                    gates: vec![$($gate.to_string()),+],
                }]
            }

            fn forward_seq(
                &self,
                x: &candle_core::Tensor,
                lengths: &[usize],
                reverse: bool,
                h_mask: Option<&candle_core::Tensor>,
            ) -> rnnlab_core::Result<rnnlab_core::SeqOutput> {
                $crate::gated::forward_seq(self, x, lengths, reverse, h_mask)
            }
        }
    };
}
pub(crate) use gated_cell;

/// One step of a [`Gated`] cell.
pub(crate) fn step<C: Gated + ?Sized>(
    cell: &C,
    x_t: &Tensor,
    state: &CellState,
    h_mask: Option<&Tensor>,
) -> Result<CellState> {
    let w = cell.weights();
    let xp = w.input_proj(x_t)?;
    let hp = w.recurrent_proj(&state.h, h_mask, &w.w_hh.t()?)?;
    cell.combine(&xp, &hp, state)
}

/// The fused sequence pass of a [`Gated`] cell: the same math as
/// [`rnnlab_core::reference_forward_seq`], as one fused op whose forward and backward each run the
/// input projection of every step as one product and the recurrence (see [`crate::fused`]). Falls back to the reference on devices and dtypes the op lacks.
pub(crate) fn forward_seq<C: Gated + ?Sized>(
    cell: &C,
    x: &Tensor,
    lengths: &[usize],
    reverse: bool,
    h_mask: Option<&Tensor>,
) -> Result<SeqOutput> {
    let (b, _, e) = x.dims3()?;
    rnnlab_core::check_batch_lengths(lengths, b)?;
    let w = cell.weights();
    if e != w.input {
        return Err(Error::Mismatch(format!(
            "input width {e}, the cell expects {}",
            w.input
        )));
    }
    if !fused::supported(x) {
        return rnnlab_core::reference_forward_seq(cell, x, lengths, reverse, h_mask);
    }
    fused::fused_seq(
        cell.fused_cell(),
        x,
        &w.w_ih,
        &w.w_hh,
        &w.b_ih,
        &w.b_hh,
        lengths,
        reverse,
        h_mask,
    )
}
