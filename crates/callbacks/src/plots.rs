//! `plots`: at the end of a run, the run's figures (PNG and SVG) in `run_dir/plots/`.

use std::sync::Arc;

use rnnlab_core::{
    Callback, Control, EpochMetrics, ParamSpec, PluginParams, PluginSpec, Registry, Result,
    TrainView,
};

use crate::plot;

/// Writes accuracy, loss, gradient-norm (with the warn/explode lines), spectral-radius, learning
/// rate, predicted-share and confusion-matrix figures into `run_dir/<dir>/` when training ends.
/// A figure that fails is a warning, not a failed run.
#[derive(Clone, Debug)]
pub struct Plots {
    /// Folder inside the run folder.
    pub dir: String,
    /// `png`, `svg` or both.
    pub formats: Vec<String>,
    confusions: Vec<(String, Vec<Vec<u64>>)>,
}

impl Callback for Plots {
    fn name(&self) -> &str {
        "plots"
    }

    fn on_epoch_end(&mut self, _metrics: &mut EpochMetrics, view: &TrainView) -> Result<Control> {
        self.confusions.clear();
        for (name, ev) in [("val", view.val), ("test", view.test)] {
            if let Some(ev) = ev {
                self.confusions
                    .push((name.to_string(), ev.confusion.counts.clone()));
            }
        }
        Ok(Control::Continue)
    }

    fn on_train_end(&mut self, history: &[EpochMetrics], view: &TrainView) -> Result<()> {
        let Some(run_dir) = view.run_dir else {
            return Ok(());
        };
        let labels = read_labels(run_dir);
        let dir = run_dir.join(&self.dir);
        match plot::run_plots(history, &self.confusions, &labels, &dir, &self.formats) {
            Ok(files) => tracing::info!("plots: {} figures in {}", files.len(), dir.display()),
            Err(e) => tracing::warn!("plots: {e}"),
        }
        Ok(())
    }
}

/// The class names of a run folder's `labels.json` (empty when absent).
pub fn read_labels(run_dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(run_dir.join("labels.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Vec<serde_json::Value>>(&t).ok())
        .map(|v| {
            v.iter()
                .map(|x| match x {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Registers `plots`.
pub fn register(r: &mut Registry) {
    r.callbacks.add(
        PluginSpec {
            name: "plots",
            doc: "at the end of the run, accuracy / loss / gradient-norm / spectral / lr / share / confusion figures in run_dir/plots",
            params: vec![
                ParamSpec::new("dir", "\"plots\"", "folder inside the run folder (no path separators)"),
                ParamSpec::new("formats", "[\"png\", \"svg\"]", "png, svg or both"),
            ],
        },
        Arc::new(|p: &PluginParams| {
            let dir = p.str("dir")?;
            p.check(
                "dir",
                !dir.is_empty() && !dir.contains(['/', '\\']) && dir != "..",
                "must be a plain folder name",
            )?;
            let formats: Vec<String> = match p.value("formats")? {
                toml::Value::Array(a) => a
                    .iter()
                    .map(|v| v.as_str().unwrap_or("?").to_string())
                    .collect(),
                _ => vec!["?".into()],
            };
            p.check(
                "formats",
                !formats.is_empty() && formats.iter().all(|f| f == "png" || f == "svg"),
                "must be a non-empty list of \"png\" and \"svg\"",
            )?;
            Ok(Box::new(Plots {
                dir: dir.to_string(),
                formats,
                confusions: Vec::new(),
            }) as Box<dyn Callback>)
        }),
    );
}
