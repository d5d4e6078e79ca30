//! `progress`: the progress bar of each epoch's training steps (indicatif), drawn on stderr only
//! when it is a terminal. The command line adds it to a run (`train.progress`, on by default); it
//! is not a pipeline callback, and it keeps no state, so snapshots are the same with or without it.

use rnnlab_core::{BatchStats, Callback, Result, TrainView};

/// The bar of the epoch being trained, if any.
#[derive(Debug, Default)]
pub struct Progress {
    epochs: usize,
    bar: Option<indicatif::ProgressBar>,
}

/// A progress bar over `epochs` epochs.
pub fn progress(epochs: usize) -> Progress {
    Progress { epochs, bar: None }
}

impl Progress {
    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Callback for Progress {
    fn name(&self) -> &str {
        "progress"
    }

    fn on_epoch_start(&mut self, batches: usize, done: usize, view: &TrainView) -> Result<()> {
        self.clear();
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return Ok(());
        }
        let bar = indicatif::ProgressBar::new(batches as u64);
        let style = indicatif::ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} {elapsed}<{eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(format!("{}/{}", view.epoch, self.epochs));
        bar.set_position(done as u64);
        self.bar = Some(bar);
        Ok(())
    }

    fn on_batch_end(&mut self, stats: &BatchStats, _view: &TrainView) -> Result<()> {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("loss {:.4} |g| {:.2}", stats.loss, stats.grad_norm));
            bar.inc(1);
            if bar.position() >= bar.length().unwrap_or(0) {
                self.clear();
            }
        }
        Ok(())
    }
}

impl Drop for Progress {
    /// A run stopped mid-epoch (Ctrl-C, an error) leaves no half-drawn bar.
    fn drop(&mut self) {
        self.clear();
    }
}
