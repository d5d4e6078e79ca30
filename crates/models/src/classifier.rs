//! The recurrent classifier: embedding → encoder → pooling → dropout → linear.

use std::str::FromStr;

use candle_core::{DType, Tensor};
use rnnlab_core::{
    cross_entropy, dropout, length_mask, Batch, Error, Model, ModelContext, ParamBuilder, Params,
    PluginParams, RecurrentWeight, Registry, Result, Rng,
};

use crate::encoder::{check_probability, encoder, Encoder};
use crate::{build_owned, check_lengths, class_weights, embedding_from_context, linear};
use crate::{Embedding, Linear};

/// How the encoder's outputs become one vector per sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The final state at each sequence's true length (both directions when bidirectional).
    Last,
    /// The mean of the outputs over the true tokens.
    Mean,
    /// The element-wise maximum of the outputs over the true tokens.
    Max,
    /// The final state after reading the padding too, as a hand-written model that takes `h_n`
    /// of an unpacked padded batch.
    LastPadded,
}

impl Pooling {
    /// The config names, in order.
    pub const NAMES: [&'static str; 4] = ["last", "mean", "max", "last_padded"];
}

impl FromStr for Pooling {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "last" => Ok(Pooling::Last),
            "mean" => Ok(Pooling::Mean),
            "max" => Ok(Pooling::Max),
            "last_padded" => Ok(Pooling::LastPadded),
            other => Err(Error::invalid(
                "pooling",
                format!("`{other}` is not one of {}", Pooling::NAMES.join(", ")),
            )),
        }
    }
}

/// A recurrent text classifier with PyTorch's parameter names: `embedding.weight`, `rnn.*`,
/// `fc.weight`, `fc.bias`.
pub struct RecurrentClassifier {
    params: Params,
    embedding: Embedding,
    encoder: Encoder,
    fc: Linear,
    embedding_dropout: f64,
    dropout: f64,
    pooling: Pooling,
    class_weights: Option<Tensor>,
}

/// Builds a [`RecurrentClassifier`] from the `recurrent` model's parameters (see
/// [`crate::register`]). The model owns its parameters; they are also added to `pb`'s store (same
/// variables) under its prefix.
pub fn recurrent_classifier(
    p: &PluginParams,
    ctx: &ModelContext,
    pb: &mut ParamBuilder,
) -> Result<RecurrentClassifier> {
    let cell = match p.value("cell")? {
        toml::Value::Table(t) => t.clone(),
        toml::Value::String(s) => {
            let mut t = toml::Table::new();
            t.insert("type".into(), toml::Value::String(s.clone()));
            t
        }
        other => {
            return Err(Error::invalid(
                p.at("cell"),
                format!(
                    "expected a table such as {{ type = \"lstm\", hidden = 128 }}, got {}",
                    other.type_str()
                ),
            ))
        }
    };
    let embedding_dim = p.usize("embedding_dim")?;
    p.check("embedding_dim", embedding_dim > 0, "must be positive")?;
    let drop = p.f64("dropout")?;
    check_probability(p, "dropout", drop)?;
    let embedding_dropout = p.f64("embedding_dropout")?;
    check_probability(p, "embedding_dropout", embedding_dropout)?;
    let layer_dropout = p.f64("layer_dropout")?;
    check_probability(p, "layer_dropout", layer_dropout)?;
    let pooling: Pooling = p.choice("pooling", &Pooling::NAMES)?.parse()?;
    if ctx.num_classes < 2 {
        return Err(Error::invalid(
            p.path(),
            format!("{} classes: a classifier needs at least 2", ctx.num_classes),
        ));
    }
    let weights = p.f64_list("class_weights")?;
    let dtype = pb.dtype();
    let device = pb.device().clone();
    let class_weights = class_weights(p, &weights, ctx.num_classes, dtype, &device)?;
    let cell_at = p.at("cell");
    let registry: &Registry = ctx.registry;
    let ((embedding, encoder, fc), params) = build_owned(pb, |pb| {
        let embedding = embedding_from_context(ctx, embedding_dim, &mut pb.pp("embedding"))?;
        let encoder = encoder(
            &cell,
            &cell_at,
            embedding.dim(),
            layer_dropout,
            registry,
            pb,
        )?;
        let fc = linear(encoder.output_size(), ctx.num_classes, &mut pb.pp("fc"))?;
        Ok((embedding, encoder, fc))
    })?;
    Ok(RecurrentClassifier {
        params,
        embedding,
        encoder,
        fc,
        embedding_dropout,
        dropout: drop,
        pooling,
        class_weights,
    })
}

impl RecurrentClassifier {
    /// The encoder.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// The embedding.
    pub fn embedding(&self) -> &Embedding {
        &self.embedding
    }

    /// The pooling.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// The pooled features `[B, D]` that the output layer reads (before dropout).
    pub fn features(&self, batch: &Batch, train: bool, rng: &mut Rng) -> Result<Tensor> {
        let (b, t) = batch.ids.dims2()?;
        check_lengths(&batch.lengths, b, t)?;
        let x = self.embedding.forward(&batch.ids)?;
        let x = dropout(&x, self.embedding_dropout, train, rng)?;
        let dtype = x.dtype();
        let device = x.device().clone();
        Ok(match self.pooling {
            Pooling::Last => self.encoder.forward(&x, &batch.lengths, train, rng)?.last,
            Pooling::LastPadded => self.encoder.forward(&x, &vec![t; b], train, rng)?.last,
            Pooling::Mean => {
                let out = self
                    .encoder
                    .forward(&x, &batch.lengths, train, rng)?
                    .outputs;
                let mask = length_mask(&batch.lengths, t, dtype, &device)?.unsqueeze(2)?;
                let lens: Vec<f32> = batch.lengths.iter().map(|&l| l as f32).collect();
                let lens = Tensor::from_vec(lens, (b, 1), &device)?.to_dtype(dtype)?;
                out.broadcast_mul(&mask)?.sum(1)?.broadcast_div(&lens)?
            }
            Pooling::Max => {
                let out = self
                    .encoder
                    .forward(&x, &batch.lengths, train, rng)?
                    .outputs;
                let mask = length_mask(&batch.lengths, t, DType::U8, &device)?
                    .unsqueeze(2)?
                    .broadcast_as(out.shape())?
                    .contiguous()?;
                let neg = Tensor::full(f32::NEG_INFINITY, out.shape(), &device)?.to_dtype(dtype)?;
                mask.where_cond(&out, &neg)?.max(1)?
            }
        })
    }
}

impl Model for RecurrentClassifier {
    fn forward(&self, batch: &Batch, train: bool, rng: &mut Rng) -> Result<Tensor> {
        let h = self.features(batch, train, rng)?;
        let h = dropout(&h, self.dropout, train, rng)?;
        self.fc.forward(&h)
    }

    fn params(&self) -> &Params {
        &self.params
    }

    fn recurrent_weights(&self) -> Vec<RecurrentWeight> {
        self.encoder.recurrent_weights()
    }

    fn loss(&self, logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
        cross_entropy(logits, labels, self.class_weights.as_ref())
    }
}
