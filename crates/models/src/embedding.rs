//! Token embedding, as `torch.nn.Embedding`: a `weight` `[V, E]` looked up by id.

use candle_core::Tensor;
use rnnlab_core::{normal_tensor, Error, ModelContext, ParamBuilder, Result};

/// An embedding table `weight` `[V, E]`.
#[derive(Clone, Debug)]
pub struct Embedding {
    weight: Tensor,
}

/// A trainable `[vocab, dim]` table called `weight` under `pb`'s prefix, drawn from N(0, 1) with
/// the run's generator (PyTorch's default).
pub fn embedding(vocab: usize, dim: usize, pb: &mut ParamBuilder) -> Result<Embedding> {
    if vocab == 0 || dim == 0 {
        return Err(Error::invalid(
            "embedding",
            format!("vocabulary ({vocab}) and dimension ({dim}) must be positive"),
        ));
    }
    let (dtype, device) = (pb.dtype(), pb.device().clone());
    let t = normal_tensor(pb.rng(), &[vocab, dim], 0.0, 1.0, dtype, &device)?;
    Ok(Embedding {
        weight: pb.add("weight", t, true)?,
    })
}

/// A table called `weight` under `pb`'s prefix holding a copy of `weight` `[V, E]`; frozen
/// unless `trainable`.
pub fn pretrained_embedding(
    weight: &Tensor,
    trainable: bool,
    pb: &mut ParamBuilder,
) -> Result<Embedding> {
    let (v, e) = weight.dims2()?;
    if v == 0 || e == 0 {
        return Err(Error::Mismatch(format!(
            "empty pretrained embedding [{v}, {e}]"
        )));
    }
    // A fresh copy: the model must not share storage with the caller's matrix.
    let t = weight.to_dtype(pb.dtype())?.copy()?;
    Ok(Embedding {
        weight: pb.add("weight", t, trainable)?,
    })
}

/// The model's embedding as `ModelContext` asks: the pretrained matrix when given (its width wins
/// over `dim`, frozen when `freeze_embedding`), else a fresh N(0, 1) table `[vocab_size, dim]`;
/// a builder loading a checkpoint gives the checkpoint's table, whose width wins as well.
pub fn embedding_from_context(
    ctx: &ModelContext,
    dim: usize,
    pb: &mut ParamBuilder,
) -> Result<Embedding> {
    match &ctx.pretrained {
        Some(w) => {
            let (v, _) = w.dims2()?;
            if v != ctx.vocab_size {
                return Err(Error::Mismatch(format!(
                    "pretrained embedding has {v} rows for a vocabulary of {}",
                    ctx.vocab_size
                )));
            }
            pretrained_embedding(w, !ctx.freeze_embedding, pb)
        }
        None => {
            let dim = match pb.stored("weight") {
                Some(w) => w.dims2()?.1,
                None => dim,
            };
            embedding(ctx.vocab_size, dim, pb)
        }
    }
}

impl Embedding {
    /// The table `[V, E]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// Width of each row.
    pub fn dim(&self) -> usize {
        self.weight.dims()[1]
    }

    /// Looks up `ids` (any shape, integer dtype) and returns `ids.shape ++ [E]`.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let mut shape = ids.dims().to_vec();
        shape.push(self.dim());
        let flat = ids.flatten_all()?.to_dtype(candle_core::DType::U32)?;
        Ok(self.weight.index_select(&flat, 0)?.reshape(shape)?)
    }
}
