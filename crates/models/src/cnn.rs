//! The CNN baseline of Kim (2014): embedding → dropout → one 1-D convolution per filter width →
//! ReLU → max over time → concatenation → dropout → linear. Each width's convolution and pooling
//! runs as one custom op ([`crate::conv_pool`]), or as candle ops with `kernel = "reference"`.

use candle_core::Tensor;
use rnnlab_core::{
    check_value, cross_entropy, dropout, Batch, Model, ModelContext, ParamInit, Params,
    PluginConfig, Result, Rng,
};

use crate::conv_pool::{conv_max_pool, reference_conv_max_pool};
use crate::encoder::check_dropout;
use crate::{check_classes, check_lengths, class_weights, embedding_from_context, fused, linear};
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

/// The keys of `type = "cnn"`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CnnConfig {
    /// Filter widths (non-empty).
    pub widths: Vec<usize>,
    /// Filters per width (> 0).
    pub maps: usize,
    /// Embedding width when no pretrained vectors are loaded (> 0).
    pub embedding_dim: usize,
    /// Dropout on the embedded tokens, in [0, 1).
    pub embedding_dropout: f64,
    /// Dropout before the output layer, in [0, 1).
    pub dropout: f64,
    /// Convolution and pooling: fused (one CPU op per width) or reference (candle ops).
    pub kernel: Kernel,
    /// Cross-entropy weight per class; [] for none.
    pub class_weights: Vec<f64>,
}

impl Default for CnnConfig {
    fn default() -> Self {
        CnnConfig {
            widths: vec![3, 4, 5],
            maps: 100,
            embedding_dim: 50,
            embedding_dropout: 0.0,
            dropout: 0.5,
            kernel: Kernel::Fused,
            class_weights: Vec::new(),
        }
    }
}

impl PluginConfig for CnnConfig {
    fn validate(&self, at: &str) -> Result<()> {
        let w = &self.widths;
        check_value(
            at,
            "widths",
            w,
            !w.is_empty(),
            "give at least one filter width",
        )?;
        let positive = w.iter().all(|&w| w > 0);
        check_value(at, "widths", w, positive, "filter widths must be positive")?;
        check_value(at, "maps", &self.maps, self.maps > 0, "must be positive")?;
        let d = self.embedding_dim;
        check_value(at, "embedding_dim", &d, d > 0, "must be positive")?;
        check_dropout(at, "dropout", self.dropout)?;
        check_dropout(at, "embedding_dropout", self.embedding_dropout)
    }
}

/// Builds a [`KimCnn`] from the `cnn` model's keys at config path `at` (see
/// [`crate::register`]). The model owns its parameters (its one store, made
/// from `init`).
pub fn kim_cnn(
    c: &CnnConfig,
    at: &str,
    ctx: &ModelContext,
    init: &mut ParamInit,
) -> Result<KimCnn> {
    check_classes(at, ctx.num_classes)?;
    let device = init.device().clone();
    let class_weights =
        class_weights(at, &c.class_weights, ctx.num_classes, init.dtype(), &device)?;
    let (widths, maps) = (&c.widths, c.maps);
    let mut params = Params::new();
    let (embedding, convs, fc) = {
        let pb = &mut init.builder(&mut params);
        let embedding = embedding_from_context(ctx, c.embedding_dim, &mut pb.pp("embedding"))?;
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
        (embedding, convs, fc)
    };
    Ok(KimCnn {
        params,
        embedding,
        convs,
        fc,
        embedding_dropout: c.embedding_dropout,
        dropout: c.dropout,
        kernel: c.kernel,
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
