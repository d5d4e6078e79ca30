//! The `Model` a trainer fits, the `Batch` it sees, and the loss.

use candle_core::{DType, Tensor, D};

use crate::{Params, RecurrentWeight, Result, Rng};

/// One padded batch of token ids.
#[derive(Clone, Debug)]
pub struct Batch {
    /// `[B, T]` u32 token ids, padded with the pad id.
    pub ids: Tensor,
    /// True length of each sequence (at least 1).
    pub lengths: Vec<usize>,
    /// `[B]` u32 class indices.
    pub labels: Tensor,
}

impl Batch {
    /// Sequences in the batch.
    pub fn size(&self) -> usize {
        self.lengths.len()
    }

    /// Real (unpadded) tokens in the batch.
    pub fn tokens(&self) -> usize {
        self.lengths.iter().sum()
    }
}

/// Which held-out split to evaluate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalSplit {
    /// The validation split.
    Val,
    /// The test split.
    Test,
}

/// Where the trainer gets its batches.
pub trait BatchSource {
    /// The training batches of epoch `epoch` (1-based), in the order to train on; shuffling
    /// draws from `rng`.
    fn train_batches(&mut self, epoch: usize, rng: &mut Rng) -> Result<Vec<Batch>>;

    /// The batches of a held-out split (empty when the pipeline has none).
    fn eval_batches(&self, split: EvalSplit) -> Result<Vec<Batch>>;

    /// Number of classes.
    fn num_classes(&self) -> usize;
}

/// A classifier over padded token sequences.
pub trait Model: Send {
    /// Logits `[B, C]`. `train` turns dropout on; masks are drawn from `rng`.
    fn forward(&self, batch: &Batch, train: bool, rng: &mut Rng) -> Result<Tensor>;

    /// The parameters (trainable and frozen), with PyTorch's names.
    fn params(&self) -> &Params;

    /// The recurrent matrices monitors may read (empty for models without recurrence).
    fn recurrent_weights(&self) -> Vec<RecurrentWeight> {
        Vec::new()
    }

    /// The training loss; cross-entropy by default.
    fn loss(&self, logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
        cross_entropy(logits, labels, None)
    }
}

/// Mean cross-entropy of `logits` `[B, C]` against `labels` `[B]` (u32), as
/// `torch.nn.functional.cross_entropy`: with `weights` `[C]`, the weighted mean
/// `Σ w[y_i]·nll_i / Σ w[y_i]`.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor, weights: Option<&Tensor>) -> Result<Tensor> {
    let log_p = candle_core::Tensor::log_sum_exp(logits, D::Minus1)?;
    let labels = labels.to_dtype(DType::U32)?;
    let picked = logits.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?;
    let nll = log_p.sub(&picked)?;
    match weights {
        None => Ok(nll.mean_all()?),
        Some(w) => {
            let wi = w.to_dtype(logits.dtype())?.index_select(&labels, 0)?;
            Ok(nll.mul(&wi)?.sum_all()?.div(&wi.sum_all()?)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn cross_entropy_matches_torch() -> Result<()> {
        // torch.nn.functional.cross_entropy(torch.tensor([[1.,2.,3.],[1.,0.,-1.]]), torch.tensor([2,1]))
        // per row 0.40760596 and 1.40760596, mean 0.90760596
        let logits = Tensor::new(&[[1f64, 2., 3.], [1., 0., -1.]], &Device::Cpu)?;
        let labels = Tensor::new(&[2u32, 1], &Device::Cpu)?;
        let l = cross_entropy(&logits, &labels, None)?.to_scalar::<f64>()?;
        assert!((l - 0.907_605_96).abs() < 1e-7, "{l}");
        // weight=torch.tensor([1.,3.,0.5]): (0.5*0.40760596 + 3*1.40760596)/3.5 = 1.26474882
        let w = Tensor::new(&[1f64, 3., 0.5], &Device::Cpu)?;
        let l = cross_entropy(&logits, &labels, Some(&w))?.to_scalar::<f64>()?;
        assert!((l - 1.264_748_82).abs() < 1e-7, "{l}");
        Ok(())
    }
}
