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

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use rnnlab_core::{
    Cell, CellArgs, Error, Model, ModelContext, ParamBuilder, ParamSpec, Params, PluginParams,
    PluginSpec, Registry, Result,
};

pub use classifier::{recurrent_classifier, Pooling, RecurrentClassifier};
pub use cnn::{kim_cnn, KimCnn};
pub use embedding::{embedding, embedding_from_context, pretrained_embedding, Embedding};
pub use encoder::{
    encoder, kernel_param, shared_cell_params, Encoder, EncoderOutput, Kernel, PREFIX,
};
pub use gru::{gru, Gru};
pub use linear::{linear, Linear};
pub use lstm::{lstm, Lstm};
pub use rnn::{rnn, Nonlinearity, Rnn};

/// Registers the cells `rnn`, `lstm`, `gru` (with the shared cell keys `hidden`, `layers`,
/// `bidirectional`, `recurrent_dropout`, and each its `kernel`: all three have a fused sequence
/// kernel) and the models `recurrent` and `cnn`.
pub fn register(r: &mut Registry) {
    r.cells.set_shared(shared_cell_params());
    r.cells.add(
        PluginSpec {
            name: "rnn",
            doc: "vanilla RNN as torch.nn.RNN: h' = act(W_ih x + b_ih + W_hh h + b_hh)",
            params: vec![
                ParamSpec::new("nonlinearity", "\"tanh\"", "activation: tanh or relu"),
                kernel_param(),
            ],
        },
        Arc::new(make_rnn),
    );
    r.cells.add(
        PluginSpec {
            name: "lstm",
            doc: "LSTM as torch.nn.LSTM (gates i, f, g, o)",
            params: vec![kernel_param()],
        },
        Arc::new(make_lstm),
    );
    r.cells.add(
        PluginSpec {
            name: "gru",
            doc: "GRU as torch.nn.GRU (gates r, z, n)",
            params: vec![kernel_param()],
        },
        Arc::new(make_gru),
    );
    r.models.add(
        PluginSpec {
            name: "recurrent",
            doc: "embedding → recurrent encoder (any cell, layers, directions) → pooling → dropout → linear",
            params: recurrent_params(),
        },
        Arc::new(make_recurrent),
    );
    r.models.add(
        PluginSpec {
            name: "cnn",
            doc: "Kim (2014) CNN: embedding → dropout → 1-D convolutions → ReLU → max over time → dropout → linear",
            params: cnn_params(),
        },
        Arc::new(make_cnn),
    );
}

/// The parameters of the `recurrent` model.
pub fn recurrent_params() -> Vec<ParamSpec> {
    vec![
        ParamSpec::new(
            "cell",
            "{ type = \"lstm\" }",
            "the cell table: type (rnn, lstm, gru, ...), hidden, layers, bidirectional, recurrent_dropout",
        ),
        ParamSpec::new(
            "embedding_dim",
            "50",
            "embedding width when no pretrained vectors are loaded (> 0)",
        ),
        ParamSpec::new(
            "embedding_dropout",
            "0.0",
            "dropout on the embedded tokens, in [0, 1)",
        ),
        ParamSpec::new(
            "dropout",
            "0.5",
            "dropout before the output layer, in [0, 1)",
        ),
        ParamSpec::new(
            "layer_dropout",
            "0.0",
            "dropout between stacked layers (not after the last), in [0, 1)",
        ),
        ParamSpec::new(
            "pooling",
            "\"last\"",
            "last (state at the true length), mean, max (over true tokens), last_padded (state after the padding)",
        ),
        ParamSpec::new(
            "class_weights",
            "[]",
            "cross-entropy weight per class; [] for none",
        ),
    ]
}

/// The parameters of the `cnn` model.
pub fn cnn_params() -> Vec<ParamSpec> {
    vec![
        ParamSpec::new("widths", "[3, 4, 5]", "filter widths (non-empty)"),
        ParamSpec::new("maps", "100", "filters per width (> 0)"),
        ParamSpec::new(
            "embedding_dim",
            "50",
            "embedding width when no pretrained vectors are loaded (> 0)",
        ),
        ParamSpec::new(
            "embedding_dropout",
            "0.0",
            "dropout on the embedded tokens, in [0, 1)",
        ),
        ParamSpec::new(
            "dropout",
            "0.5",
            "dropout before the output layer, in [0, 1)",
        ),
        ParamSpec::new(
            "kernel",
            "\"fused\"",
            "convolution and pooling: fused (one CPU op per width) or reference (candle ops)",
        ),
        ParamSpec::new(
            "class_weights",
            "[]",
            "cross-entropy weight per class; [] for none",
        ),
    ]
}

fn make_rnn(p: &PluginParams, a: &CellArgs, pb: &mut ParamBuilder) -> Result<Box<dyn Cell>> {
    let nl: Nonlinearity = p.choice("nonlinearity", &["tanh", "relu"])?.parse()?;
    Ok(Box::new(rnn(
        a.input_size,
        a.hidden_size,
        nl,
        &a.suffix,
        pb,
    )?))
}

fn make_lstm(_: &PluginParams, a: &CellArgs, pb: &mut ParamBuilder) -> Result<Box<dyn Cell>> {
    Ok(Box::new(lstm(a.input_size, a.hidden_size, &a.suffix, pb)?))
}

fn make_gru(_: &PluginParams, a: &CellArgs, pb: &mut ParamBuilder) -> Result<Box<dyn Cell>> {
    Ok(Box::new(gru(a.input_size, a.hidden_size, &a.suffix, pb)?))
}

fn make_recurrent(
    p: &PluginParams,
    ctx: &ModelContext,
    pb: &mut ParamBuilder,
) -> Result<Box<dyn Model>> {
    Ok(Box::new(recurrent_classifier(p, ctx, pb)?))
}

fn make_cnn(p: &PluginParams, ctx: &ModelContext, pb: &mut ParamBuilder) -> Result<Box<dyn Model>> {
    Ok(Box::new(kim_cnn(p, ctx, pb)?))
}

/// Runs `build` with a builder over a fresh [`Params`] ([`ParamBuilder::fork`]: same generator,
/// dtype, device and checkpoint weights as `pb`) and returns what it built with that store; every parameter is also added to `pb`'s store, as
/// the same variable, so both see the same values.
pub(crate) fn build_owned<T>(
    pb: &mut ParamBuilder,
    build: impl FnOnce(&mut ParamBuilder) -> Result<T>,
) -> Result<(T, Params)> {
    let mut params = Params::new();
    let value = {
        let mut own = pb.fork(&mut params);
        build(&mut own)?
    };
    for p in params.iter() {
        // `add` keeps a variable as is (no copy), so the two stores share it.
        pb.add(&p.name, p.var.as_tensor().clone(), p.trainable)?;
    }
    Ok((value, params))
}

/// Errors unless there is one length per sequence, each in `1..=t`.
pub(crate) fn check_lengths(lengths: &[usize], b: usize, t: usize) -> Result<()> {
    if lengths.len() != b {
        return Err(Error::Mismatch(format!(
            "{} lengths for a batch of {b}",
            lengths.len()
        )));
    }
    if let Some(l) = lengths.iter().find(|&&l| l == 0 || l > t) {
        return Err(Error::Mismatch(format!(
            "sequence length {l} outside 1..={t} (the batch's padded length)"
        )));
    }
    Ok(())
}

/// The `class_weights` tensor: `None` for an empty list, else one finite non-negative weight per
/// class with a positive sum.
pub(crate) fn class_weights(
    p: &PluginParams,
    weights: &[f64],
    num_classes: usize,
    dtype: DType,
    device: &Device,
) -> Result<Option<Tensor>> {
    if weights.is_empty() {
        return Ok(None);
    }
    p.check(
        "class_weights",
        weights.len() == num_classes,
        &format!(
            "{} weights for {num_classes} classes: give one per class, or [] for none",
            weights.len()
        ),
    )?;
    p.check(
        "class_weights",
        weights.iter().all(|w| w.is_finite() && *w >= 0.0) && weights.iter().sum::<f64>() > 0.0,
        "weights must be finite, non-negative and not all zero",
    )?;
    Ok(Some(
        Tensor::from_vec(weights.to_vec(), weights.len(), device)?.to_dtype(dtype)?,
    ))
}
