//! rnnlab optim: gradient transforms (clipping, weight decay), optimizers written as transforms
//! (after optax: each keeps its own state), and learning-rate schedulers (after
//! `torch.optim.lr_scheduler`). One file per plugin; [`register`] adds them all.
#![warn(missing_docs)]

pub mod adam;
pub mod clip_global_norm;
pub mod constant;
pub mod weight_decay;

use rnnlab_core::Registry;

/// Registers every transform and scheduler of this crate.
pub fn register(r: &mut Registry) {
    clip_global_norm::register(r);
    weight_decay::register(r);
    adam::register(r);
    constant::register(r);
}
