//! rnnlab callbacks: monitors, loggers and training controls, one file per callback; [`register`]
//! adds them all.
#![warn(missing_docs)]

pub mod early_stopping;

use rnnlab_core::Registry;

/// Registers every callback of this crate.
pub fn register(r: &mut Registry) {
    early_stopping::register(r);
}
