//! `--threads` / `train.threads` give each run a thread pool of its own, without touching the
//! process environment.

use std::sync::{Arc, Mutex};

use rnnlab_cli::TrainOptions;
use rnnlab_core::{BatchStats, Callback, PluginParams, PluginSpec, Result, TrainView};

/// Records the size of the rayon pool the training steps run in.
struct ThreadProbe(Arc<Mutex<Vec<usize>>>);

impl Callback for ThreadProbe {
    fn name(&self) -> &str {
        "thread_probe"
    }

    fn on_batch_end(&mut self, _stats: &BatchStats, _view: &TrainView) -> Result<()> {
        self.0.lock().unwrap().push(rayon::current_num_threads());
        Ok(())
    }
}

#[test]
fn each_run_trains_in_a_pool_of_its_threads_and_the_environment_is_untouched() {
    let env_before: Vec<_> = ["RAYON_NUM_THREADS", "CANDLE_NUM_THREADS"]
        .iter()
        .map(std::env::var_os)
        .collect();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut registry = rnnlab_cli::registry();
    let probe = seen.clone();
    registry.callbacks.add(
        PluginSpec {
            name: "thread_probe",
            doc: "records rayon::current_num_threads() at every step",
            params: vec![],
        },
        Arc::new(move |_: &PluginParams| {
            Ok(Box::new(ThreadProbe(probe.clone())) as Box<dyn Callback>)
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    for threads in [1, 3, 2] {
        seen.lock().unwrap().clear();
        let opts = TrainOptions {
            pipeline: Some(rnnlab_tests::pipeline("demo.toml")),
            sets: vec![
                "data.size=300".into(),
                "train.epochs=1".into(),
                "callbacks=[{type=\"thread_probe\"}]".into(),
            ],
            out: Some(dir.path().join(format!("run{threads}"))),
            threads: Some(threads),
            progress: false,
            resume: None,
        };
        rnnlab_cli::train(&registry, &opts).unwrap();
        let seen = seen.lock().unwrap();
        assert!(!seen.is_empty());
        assert!(
            seen.iter().all(|&n| n == threads),
            "--threads {threads}: the steps ran in pools of {seen:?} threads"
        );
    }
    let env_after: Vec<_> = ["RAYON_NUM_THREADS", "CANDLE_NUM_THREADS"]
        .iter()
        .map(std::env::var_os)
        .collect();
    assert_eq!(env_before, env_after, "train() changed the environment");
}
