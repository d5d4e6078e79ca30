//! rnnlab models: the recurrent cells (vanilla RNN, LSTM, GRU) with PyTorch's equations, names and
//! init, the stacked/bidirectional [`Encoder`], the [`RecurrentClassifier`] and the [`KimCnn`]
//! baseline. [`register`] adds them all to a [`Registry`].
#![warn(missing_docs)]

mod activation;
mod classifier;
mod cnn;
mod conv_pool;
mod cpu_op;
mod embedding;
mod encoder;
mod fused;
mod gated;
mod gru;
mod linear;
mod lstm;
mod rnn;
mod rows;

use candle_core::{DType, Device, Tensor};
use rnnlab_core::{check_value, Error, Registry, Result};

pub use classifier::{recurrent_classifier, Pooling, RecurrentClassifier, RecurrentConfig};
pub use cnn::{kim_cnn, CnnConfig, KimCnn};
pub use embedding::{embedding, embedding_from_context, pretrained_embedding, Embedding};
pub use encoder::{
    encoder, shared_cell_params, Encoder, EncoderOutput, Kernel, KernelConfig, PREFIX,
};
pub use gru::{gru, Gru};
pub use linear::{linear, Linear};
pub use lstm::{lstm, Lstm};
pub use rnn::{rnn, Nonlinearity, Rnn, RnnConfig};

/// Registers the cells `rnn`, `lstm`, `gru` (with the shared cell keys `hidden`, `layers`,
/// `bidirectional`, `recurrent_dropout`, and each its `kernel`: all three have a fused sequence
/// kernel) and the models `recurrent` and `cnn`.
pub fn register(r: &mut Registry) {
    r.cells.set_shared(shared_cell_params());
    r.cells.register(
        "rnn",
        "vanilla RNN as torch.nn.RNN: h' = act(W_ih x + b_ih + W_hh h + b_hh)",
        RnnConfig::default(),
        |c, a, pb| {
            Ok(Box::new(rnn(
                a.input_size,
                a.hidden_size,
                c.nonlinearity,
                &a.suffix,
                pb,
            )?))
        },
    );
    r.cells.register(
        "lstm",
        "LSTM as torch.nn.LSTM (gates i, f, g, o)",
        KernelConfig::default(),
        |_, a, pb| Ok(Box::new(lstm(a.input_size, a.hidden_size, &a.suffix, pb)?)),
    );
    r.cells.register(
        "gru",
        "GRU as torch.nn.GRU (gates r, z, n)",
        KernelConfig::default(),
        |_, a, pb| Ok(Box::new(gru(a.input_size, a.hidden_size, &a.suffix, pb)?)),
    );
    r.models.register(
        "recurrent",
        "embedding → recurrent encoder (any cell, layers, directions) → pooling → dropout → linear",
        RecurrentConfig::default(),
        |c, at, ctx, init| Ok(Box::new(recurrent_classifier(&c, at, ctx, init)?)),
    );
    r.models.register(
        "cnn",
        "Kim (2014) CNN: embedding → dropout → 1-D convolutions → ReLU → max over time → dropout → linear",
        CnnConfig::default(),
        |c, at, ctx, init| Ok(Box::new(kim_cnn(&c, at, ctx, init)?)),
    );
}

/// Errors unless there is one length per sequence, each in `1..=t`.
pub(crate) fn check_lengths(lengths: &[usize], b: usize, t: usize) -> Result<()> {
    rnnlab_core::check_batch_lengths(lengths, b)?;
    if let Some(l) = lengths.iter().find(|&&l| l == 0 || l > t) {
        return Err(Error::Mismatch(format!(
            "sequence length {l} outside 1..={t} (the batch's padded length)"
        )));
    }
    Ok(())
}

/// Errors unless there are at least 2 classes (a model at config path `at`).
pub(crate) fn check_classes(at: &str, num_classes: usize) -> Result<()> {
    if num_classes < 2 {
        return Err(Error::invalid(
            at,
            format!("{num_classes} classes: a classifier needs at least 2"),
        ));
    }
    Ok(())
}

/// The `class_weights` tensor: `None` for an empty list, else one finite non-negative weight per
/// class with a positive sum (`{at}.class_weights` in the errors).
pub(crate) fn class_weights(
    at: &str,
    weights: &[f64],
    num_classes: usize,
    dtype: DType,
    device: &Device,
) -> Result<Option<Tensor>> {
    if weights.is_empty() {
        return Ok(None);
    }
    check_value(
        at,
        "class_weights",
        weights,
        weights.len() == num_classes,
        &format!(
            "{} weights for {num_classes} classes: give one per class, or [] for none",
            weights.len()
        ),
    )?;
    check_value(
        at,
        "class_weights",
        weights,
        weights.iter().all(|w| w.is_finite() && *w >= 0.0) && weights.iter().sum::<f64>() > 0.0,
        "weights must be finite, non-negative and not all zero",
    )?;
    Ok(Some(
        Tensor::from_vec(weights.to_vec(), weights.len(), device)?.to_dtype(dtype)?,
    ))
}
