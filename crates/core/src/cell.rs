//! The `Cell` trait: one recurrent layer in one direction over a batch of padded sequences.

use candle_core::{DType, Device, Tensor};

use crate::Result;

/// The state a cell carries from one step to the next.
#[derive(Clone, Debug)]
pub struct CellState {
    /// Hidden state `[B, H]`.
    pub h: Tensor,
    /// Cell state `[B, H]` (LSTM only).
    pub c: Option<Tensor>,
}

impl CellState {
    /// `where(mask, new, old)` for every tensor of the state; `mask` is `[B, 1]` of 0/1 in the state's dtype.
    pub fn select(mask: &Tensor, new: &CellState, old: &CellState) -> Result<CellState> {
        let keep = |n: &Tensor, o: &Tensor| -> Result<Tensor> {
            // o + mask * (n - o): exact where mask is 0 or 1, and differentiable in both.
            Ok(o.add(&n.sub(o)?.broadcast_mul(mask)?)?)
        };
        let h = keep(&new.h, &old.h)?;
        let c = match (&new.c, &old.c) {
            (Some(n), Some(o)) => Some(keep(n, o)?),
            _ => None,
        };
        Ok(CellState { h, c })
    }
}

/// A recurrent weight matrix that monitors may read, with the names of its stacked gates.
#[derive(Clone, Debug)]
pub struct RecurrentWeight {
    /// The parameter name, e.g. `rnn.weight_hh_l0`.
    pub name: String,
    /// Gate names in row-block order (`["i","f","g","o"]` for LSTM); one entry for a vanilla RNN.
    pub gates: Vec<String>,
}

/// What [`Cell::forward_seq`] returns.
#[derive(Clone, Debug)]
pub struct SeqOutput {
    /// `[B, T, H]` hidden state at every step; zero at padded positions.
    pub outputs: Tensor,
    /// The state at each sequence's true length (for a reversed pass: after its first token).
    pub last: CellState,
}

/// One recurrent layer in one direction. Implement [`Cell::step`]; override
/// [`Cell::forward_seq`] for a fused sequence kernel.
pub trait Cell: Send + Sync {
    /// Width of the input at each step.
    fn input_size(&self) -> usize;

    /// Width of the hidden state.
    fn hidden_size(&self) -> usize;

    /// Whether the state has a cell part (`c`), as the LSTM's.
    fn has_cell_state(&self) -> bool {
        false
    }

    /// One step: `x_t` `[B, E]` and the previous state give the next state. `h_mask` (`[B, H]`),
    /// when given, is the recurrent-dropout mask applied to `h_{t-1}` before the recurrent product.
    fn step(&self, x_t: &Tensor, state: &CellState, h_mask: Option<&Tensor>) -> Result<CellState>;

    /// The recurrent weight matrices, for monitors.
    fn recurrent_weights(&self) -> Vec<RecurrentWeight>;

    /// The zero state for a batch of `batch` sequences.
    fn zero_state(&self, batch: usize, dtype: DType, device: &Device) -> Result<CellState> {
        let h = Tensor::zeros((batch, self.hidden_size()), dtype, device)?;
        let c = if self.has_cell_state() {
            Some(h.clone())
        } else {
            None
        };
        Ok(CellState { h, c })
    }

    /// Runs the whole padded batch `x` `[B, T, E]`. Each sequence stops at its length: padding
    /// never changes the state or the result. With `reverse`, each sequence is read from its last
    /// true token back to its first.
    fn forward_seq(
        &self,
        x: &Tensor,
        lengths: &[usize],
        reverse: bool,
        h_mask: Option<&Tensor>,
    ) -> Result<SeqOutput> {
        reference_forward_seq(self, x, lengths, reverse, h_mask)
    }
}

/// `[B, T]` tensor of 1 where `t < lengths[b]`, else 0.
pub fn length_mask(lengths: &[usize], t: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let b = lengths.len();
    let mut v = vec![0f32; b * t];
    for (i, &len) in lengths.iter().enumerate() {
        for x in v[i * t..i * t + len.min(t)].iter_mut() {
            *x = 1.0;
        }
    }
    Ok(Tensor::from_vec(v, (b, t), device)?.to_dtype(dtype)?)
}

/// Errors unless there is one length per sequence of a batch of `batch`.
pub fn check_batch_lengths(lengths: &[usize], batch: usize) -> Result<()> {
    if lengths.len() != batch {
        return Err(crate::Error::Mismatch(format!(
            "{} lengths for a batch of {batch}",
            lengths.len()
        )));
    }
    Ok(())
}

/// The step-by-step sequence pass that every cell gets by default: the reference that fused
/// kernels are checked against.
pub fn reference_forward_seq<C: Cell + ?Sized>(
    cell: &C,
    x: &Tensor,
    lengths: &[usize],
    reverse: bool,
    h_mask: Option<&Tensor>,
) -> Result<SeqOutput> {
    let (b, t, _) = x.dims3()?;
    check_batch_lengths(lengths, b)?;
    let mask = length_mask(lengths, t, x.dtype(), x.device())?;
    let mut state = cell.zero_state(b, x.dtype(), x.device())?;
    let mut outs: Vec<Tensor> = Vec::with_capacity(t);
    let order: Vec<usize> = if reverse {
        (0..t).rev().collect()
    } else {
        (0..t).collect()
    };
    for &s in &order {
        let x_s = x.narrow(1, s, 1)?.squeeze(1)?;
        let m = mask.narrow(1, s, 1)?;
        let next = cell.step(&x_s, &state, h_mask)?;
        outs.push(next.h.broadcast_mul(&m)?);
        state = CellState::select(&m, &next, &state)?;
    }
    if reverse {
        outs.reverse();
    }
    let outputs = if outs.is_empty() {
        Tensor::zeros((b, 0, cell.hidden_size()), x.dtype(), x.device())?
    } else {
        Tensor::stack(&outs, 1)?
    };
    Ok(SeqOutput {
        outputs,
        last: state,
    })
}
