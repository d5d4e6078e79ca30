//! rnnlab optim: gradient transforms (clipping, weight decay, accumulation, skipping), optimizers
//! written as transforms with `torch.optim`'s update rules (after optax: each keeps its own state),
//! weight averaging and post-step constraints, and learning-rate schedulers with
//! `torch.optim.lr_scheduler`'s semantics. One file per plugin; [`register`] adds them all.
//!
//! Transforms: `skip_nonfinite`, `accumulate`, `clip_global_norm`, `clip_value`, `adaptive_clip`,
//! `weight_decay`; optimizers: `sgd`, `adam`, `adamw`, `rmsprop`, `adagrad`; after the step:
//! `ema`, `swa`, `max_singular_value`. Schedulers: `constant`, `step`, `multistep`,
//! `exponential`, `cosine`, `cosine_warm_restarts`, `warmup`, `one_cycle`, `reduce_on_plateau`.
#![warn(missing_docs)]

pub mod accumulate;
pub mod adagrad;
pub mod adam;
pub mod adamw;
pub mod adaptive_clip;
pub mod clip_global_norm;
pub mod clip_value;
pub mod constant;
pub mod cosine;
pub mod cosine_warm_restarts;
pub mod ema;
pub mod exponential;
mod flat;
pub mod max_singular_value;
pub mod multistep;
pub mod one_cycle;
pub mod reduce_on_plateau;
pub mod rmsprop;
pub mod sgd;
pub mod skip_nonfinite;
pub mod step;
pub mod swa;
pub mod util;
pub mod warmup;
pub mod weight_decay;

#[cfg(test)]
mod resume_tests;

use rnnlab_core::Registry;

/// Registers every transform and scheduler of this crate.
pub fn register(r: &mut Registry) {
    skip_nonfinite::register(r);
    accumulate::register(r);
    clip_global_norm::register(r);
    clip_value::register(r);
    adaptive_clip::register(r);
    weight_decay::register(r);
    sgd::register(r);
    adam::register(r);
    adamw::register(r);
    rmsprop::register(r);
    adagrad::register(r);
    ema::register(r);
    swa::register(r);
    max_singular_value::register(r);
    constant::register(r);
    step::register(r);
    multistep::register(r);
    exponential::register(r);
    cosine::register(r);
    cosine_warm_restarts::register(r);
    warmup::register(r);
    one_cycle::register(r);
    reduce_on_plateau::register(r);
}
