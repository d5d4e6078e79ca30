//! The CNN baseline of Kim (2014): embedding → dropout → one 1-D convolution per filter width →
//! ReLU → max over time → concatenation → dropout → linear. Each width's convolution and pooling
//! runs as one custom op ([`crate::conv_pool`]), or as candle ops with `kernel = "reference"`.

use candle_core::Tensor;
use rnnlab_core::{
    cross_entropy, dropout, Batch, Error, Model, ModelContext, ParamBuilder, Params, PluginParams,
    Result, Rng,
};

use crate::conv_pool::{conv_max_pool, reference_conv_max_pool};
use crate::encoder::check_probability;
use crate::{build_owned, check_lengths, class_weights, embedding_from_context, fused, linear};
use crate::{Embedding, Kernel, Linear};

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
    embedding_dropout: f64,
    dropout: f64,
    kernel: Kernel,
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
    let embedding_dropout = p.f64("embedding_dropout")?;
    check_probability(p, "embedding_dropout", embedding_dropout)?;
    let kernel: Kernel = p.choice("kernel", &["fused", "reference"])?.parse()?;
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
        embedding_dropout,
        dropout: drop,
        kernel,
        class_weights,
    })
}

impl KimCnn {
    /// The filter widths.
    pub fn widths(&self) -> Vec<usize> {
        self.convs.iter().map(|c| c.width).collect()
    }

    /// The pooled features `[B, maps · widths]` that the output layer reads (before dropout).
    /// A window reads only its row's true tokens, and zeros past the row's end (a row shorter
    /// than a filter has one window): the padding never matters.
    pub fn features(&self, batch: &Batch, train: bool, rng: &mut Rng) -> Result<Tensor> {
        let (b, t) = batch.ids.dims2()?;
        check_lengths(&batch.lengths, b, t)?;
        let x = self.embedding.forward(&batch.ids)?;
        let x = dropout(&x, self.embedding_dropout, train, rng)?;
        let fused = self.kernel == Kernel::Fused && fused::supported(&x);
        let feats = self
            .convs
            .iter()
            .map(|c| {
                if fused {
                    conv_max_pool(&x, &c.weight, &c.bias, &batch.lengths)
                } else {
                    reference_conv_max_pool(&x, &c.weight, &c.bias, &batch.lengths)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&feats, 1)?)
    }

    /// How each width's convolution and pooling runs.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }
}

impl Model for KimCnn {
    fn forward(&self, batch: &Batch, train: bool, rng: &mut Rng) -> Result<Tensor> {
        let h = self.features(batch, train, rng)?;
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
