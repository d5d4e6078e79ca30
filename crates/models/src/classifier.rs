//! The recurrent classifier: embedding → encoder → pooling → dropout → linear.

use candle_core::{DType, Tensor};
use rnnlab_core::{
    check_value, cross_entropy, dropout, length_mask, Batch, Error, Model, ModelContext, ParamInit,
    Params, PluginConfig, RecurrentWeight, Registry, Result, Rng,
};

use crate::encoder::{check_dropout, encoder, Encoder};
use crate::{check_classes, check_lengths, class_weights, embedding_from_context, linear};
use crate::{Embedding, Linear};

/// How the encoder's outputs become one vector per sequence.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
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

/// The keys of `type = "recurrent"`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecurrentConfig {
    /// The cell table: type (rnn, lstm, gru, ...), hidden, layers, bidirectional,
    /// recurrent_dropout.
    #[schemars(with = "std::collections::BTreeMap<String, String>")]
    pub cell: toml::Value,
    /// Embedding width when no pretrained vectors are loaded (> 0).
    pub embedding_dim: usize,
    /// Dropout on the embedded tokens, in [0, 1).
    pub embedding_dropout: f64,
    /// Dropout before the output layer, in [0, 1).
    pub dropout: f64,
    /// Dropout between stacked layers (not after the last), in [0, 1).
    pub layer_dropout: f64,
    /// last (state at the true length), mean, max (over true tokens), last_padded (state after
    /// the padding).
    pub pooling: Pooling,
    /// Cross-entropy weight per class; [] for none.
    pub class_weights: Vec<f64>,
}

impl Default for RecurrentConfig {
    fn default() -> Self {
        let mut cell = toml::Table::new();
        cell.insert("type".into(), "lstm".into());
        RecurrentConfig {
            cell: toml::Value::Table(cell),
            embedding_dim: 50,
            embedding_dropout: 0.0,
            dropout: 0.5,
            layer_dropout: 0.0,
            pooling: Pooling::Last,
            class_weights: Vec::new(),
        }
    }
}

impl PluginConfig for RecurrentConfig {
    fn validate(&self, at: &str) -> Result<()> {
        let d = self.embedding_dim;
        check_value(at, "embedding_dim", &d, d > 0, "must be positive")?;
        check_dropout(at, "dropout", self.dropout)?;
        check_dropout(at, "embedding_dropout", self.embedding_dropout)?;
        check_dropout(at, "layer_dropout", self.layer_dropout)
    }
}

impl RecurrentConfig {
    /// The cell table (`cell = "gru"` stands for `{ type = "gru" }`).
    fn cell_table(&self, at: &str) -> Result<toml::Table> {
        match &self.cell {
            toml::Value::Table(t) => Ok(t.clone()),
            toml::Value::String(s) => {
                let mut t = toml::Table::new();
                t.insert("type".into(), toml::Value::String(s.clone()));
                Ok(t)
            }
            other => Err(Error::invalid(
                format!("{at}.cell"),
                format!(
                    "expected a table such as {{ type = \"lstm\", hidden = 128 }}, got {}",
                    other.type_str()
                ),
            )),
        }
    }
}

/// Builds a [`RecurrentClassifier`] from the `recurrent` model's keys at config path `at`
/// (see [`crate::register`]). The model owns its parameters (its one store, made
/// from `init`).
pub fn recurrent_classifier(
    c: &RecurrentConfig,
    at: &str,
    ctx: &ModelContext,
    init: &mut ParamInit,
) -> Result<RecurrentClassifier> {
    let cell = c.cell_table(at)?;
    check_classes(at, ctx.num_classes)?;
    let dtype = init.dtype();
    let device = init.device().clone();
    let class_weights = class_weights(at, &c.class_weights, ctx.num_classes, dtype, &device)?;
    let cell_at = format!("{at}.cell");
    let registry: &Registry = ctx.registry;
    let mut params = Params::new();
    let (embedding, encoder, fc) = {
        let pb = &mut init.builder(&mut params);
        let embedding = embedding_from_context(ctx, c.embedding_dim, &mut pb.pp("embedding"))?;
        let encoder = encoder(
            &cell,
            &cell_at,
            embedding.dim(),
            c.layer_dropout,
            registry,
            pb,
        )?;
        let fc = linear(encoder.output_size(), ctx.num_classes, &mut pb.pp("fc"))?;
        (embedding, encoder, fc)
    };
    Ok(RecurrentClassifier {
        params,
        embedding,
        encoder,
        fc,
        embedding_dropout: c.embedding_dropout,
        dropout: c.dropout,
        pooling: c.pooling,
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
