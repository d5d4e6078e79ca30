//! rnnlab core: the plugin traits (`Cell`, `GradientTransform`, `Scheduler`, `Callback`), the
//! `Model` a trainer fits, the one training loop, metrics, checkpoints and the plugin registry.
//!
//! Core knows no concrete plugin: cells, transforms, schedulers and callbacks live in their own
//! crates and are added to a [`Registry`].
#![warn(missing_docs)]

mod atomic;
mod callback;
mod cell;
pub mod checkpoint;
mod error;
mod metrics;
mod model;
mod monitor;
mod params;
mod reader;
mod registry;
mod scheduler;
mod state;
mod trainer;
mod transform;

pub use atomic::{sync_dir, write_atomic, write_atomic_with};
pub use callback::{BatchStats, Callback, Control, TrainView};
pub use cell::{
    check_batch_lengths, length_mask, reference_forward_seq, Cell, CellState, RecurrentWeight,
    SeqOutput,
};
pub use error::{not_one_of, suggest, Error, Result, UnknownName};
pub use metrics::{
    parse_metrics, quantile, read_metrics, Confusion, EpochMetrics, MetricsWriter, METRICS_FILE,
};
pub use model::{cross_entropy, Batch, BatchSource, EvalSplit, Model};
pub use monitor::{MetricContext, ModeSetting, Watched};
pub use params::{
    dropout, dropout_mask, normal_tensor, squared_norm, uniform_tensor, Grads, Param, ParamBuilder,
    ParamInit, Params,
};
pub use reader::{DataKeys, ReadContext, Reader, ReaderCtor, Row, RowLog, Skipped};
pub use registry::{
    check_value, required, reword_unknown_variant, CallbackCtor, CellArgs, CellCtor, Ctor, Entry,
    ModelContext, ModelCtor, ParamSpec, PluginConfig, PluginParams, PluginSpec, Registry,
    SchedulerArgs, SchedulerCtor, Table, TransformCtor,
};
pub use scheduler::{Interval, Scheduler};
pub use state::StateDict;
pub use trainer::{
    apply_updates, evaluate, EpochProgress, Evaluation, FitResult, Interruption, Mode, ResumePoint,
    Trainer, TrainerConfig, BEST_RECORD, CHECKPOINT_DIR, SNAPSHOT,
};
pub use transform::{Chain, GradientTransform, Link, Outcome, StepContext, StepReport, WeightHook};

/// The run's random generator: every random number of a run comes from one of these, seeded once.
pub type Rng = rand_chacha::ChaCha8Rng;

/// A generator seeded with `seed`.
pub fn seeded(seed: u64) -> Rng {
    use rand::SeedableRng;
    Rng::seed_from_u64(seed)
}
