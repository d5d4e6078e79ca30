//! The CNN baseline of Kim (2014): embedding → one 1-D convolution per filter width → ReLU → max
//! over time → concatenation → dropout → linear.

use candle_core::Tensor;
use rnnlab_core::{
    cross_entropy, dropout, length_mask, Batch, Error, Model, ModelContext, ParamBuilder, Params,
    PluginParams, Result, Rng,
};

use crate::encoder::check_probability;
use crate::{build_owned, check_lengths, class_weights, embedding_from_context, linear};
use crate::{Embedding, Linear};

/// One convolution: `weight` `[maps, E, width]`, `bias` `[maps]`.
#[derive(Clone, Debug)]
struct Conv {
    weight: Tensor,
    bias: Tensor,
    width: usize,
}

/// Kim's CNN for sentence classification, with parameters `embedding.weight`,
/// `convs.{i}.weight` `[maps, E, w]`, `convs.{i}.bias` `[maps]`, `fc.weight`, `fc.bias`.
pub struct KimCnn {
    params: Params,
    embedding: Embedding,
    convs: Vec<Conv>,
    fc: Linear,
    dropout: f64,
    class_weights: Option<Tensor>,
}

/// Builds a [`KimCnn`] from the `cnn` model's parameters (see [`crate::register`]). The model owns
/// its parameters; they are also added to `pb`'s store (same variables) under its prefix.
pub fn kim_cnn(p: &PluginParams, ctx: &ModelContext, pb: &mut ParamBuilder) -> Result<KimCnn> {
    let widths = p.usize_list("widths")?;
    p.check(
        "widths",
        !widths.is_empty(),
        "give at least one filter width",
    )?;
    p.check(
        "widths",
        widths.iter().all(|&w| w > 0),
        "filter widths must be positive",
    )?;
    let maps = p.usize("maps")?;
    p.check("maps", maps > 0, "must be positive")?;
    let embedding_dim = p.usize("embedding_dim")?;
    p.check("embedding_dim", embedding_dim > 0, "must be positive")?;
    let drop = p.f64("dropout")?;
    check_probability(p, "dropout", drop)?;
    if ctx.num_classes < 2 {
        return Err(Error::invalid(
            p.path(),
            format!("{} classes: a classifier needs at least 2", ctx.num_classes),
        ));
    }
    let weights = p.f64_list("class_weights")?;
    let device = pb.device().clone();
    let class_weights = class_weights(p, &weights, ctx.num_classes, pb.dtype(), &device)?;
    let ((embedding, convs, fc), params) = build_owned(pb, |pb| {
        let embedding = embedding_from_context(ctx, embedding_dim, &mut pb.pp("embedding"))?;
        let e = embedding.dim();
        let mut convs = Vec::with_capacity(widths.len());
        for (i, &w) in widths.iter().enumerate() {
            let mut pb = pb.pp(&format!("convs.{i}"));
            let bound = 1.0 / ((e * w) as f64).sqrt();
            let weight = pb.uniform("weight", &[maps, e, w], bound)?;
            let bias = pb.uniform("bias", &[maps], bound)?;
            convs.push(Conv {
                weight,
                bias,
                width: w,
            });
        }
        let fc = linear(maps * widths.len(), ctx.num_classes, &mut pb.pp("fc"))?;
        Ok((embedding, convs, fc))
    })?;
    Ok(KimCnn {
        params,
        embedding,
        convs,
        fc,
        dropout: drop,
        class_weights,
    })
}

impl KimCnn {
    /// The filter widths.
    pub fn widths(&self) -> Vec<usize> {
        self.convs.iter().map(|c| c.width).collect()
    }

    /// The pooled features `[B, maps · widths]` that the output layer reads (before dropout).
    pub fn features(&self, batch: &Batch) -> Result<Tensor> {
        let (b, t) = batch.ids.dims2()?;
        check_lengths(&batch.lengths, b, t)?;
        let x = self.embedding.forward(&batch.ids)?;
        let (dtype, device) = (x.dtype(), x.device().clone());
        // Zero the padding, then pad on the right to the widest filter: a sequence shorter than
        // a filter sees zeros past its end, whatever the batch's padding.
        let mask = length_mask(&batch.lengths, t, dtype, &device)?.unsqueeze(2)?;
        let mut x = x.broadcast_mul(&mask)?;
        let widest = self.convs.iter().map(|c| c.width).max().unwrap_or(1);
        if t < widest {
            let pad = Tensor::zeros((b, widest - t, x.dim(2)?), dtype, &device)?;
            x = Tensor::cat(&[&x, &pad], 1)?;
        }
        let len = t.max(widest);
        let x = x.transpose(1, 2)?.contiguous()?; // [B, E, L]
        let mut feats = Vec::with_capacity(self.convs.len());
        for c in &self.convs {
            let positions = len - c.width + 1;
            let y = x
                .conv1d(&c.weight, 0, 1, 1, 1)?
                .broadcast_add(&c.bias.reshape((1, (), 1))?)?
                .relu()?; // [B, maps, positions]
                          // Windows starting at or past max(len - w + 1, 1) read padding: they become 0, which
                          // never beats a valid window after the ReLU.
            let valid: Vec<usize> = batch
                .lengths
                .iter()
                .map(|&l| (l + 1).saturating_sub(c.width).max(1))
                .collect();
            let m = length_mask(&valid, positions, dtype, &device)?.unsqueeze(1)?;
            feats.push(y.broadcast_mul(&m)?.max(2)?);
        }
        Ok(Tensor::cat(&feats, 1)?)
    }
}

impl Model for KimCnn {
    fn forward(&self, batch: &Batch, train: bool, rng: &mut Rng) -> Result<Tensor> {
        let h = self.features(batch)?;
        let h = dropout(&h, self.dropout, train, rng)?;
        self.fc.forward(&h)
    }

    fn params(&self) -> &Params {
        &self.params
    }

    fn loss(&self, logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
        cross_entropy(logits, labels, self.class_weights.as_ref())
    }
}
