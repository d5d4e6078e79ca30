//! The metric names a run lists before training (what watched metrics are checked against) are
//! exactly the names its epoch records hold, for the trainer and every built-in monitor.

use candle_core::{DType, Device};
use rnnlab_core::{Chain, ModelContext, ParamInit, Trainer, TrainerConfig};
use rnnlab_data::{BatchOptions, Example, TextBatches};

fn table(text: &str) -> toml::Table {
    toml::from_str(text).unwrap()
}

/// Twelve short sequences of 3 classes, the same rows for every split.
fn data() -> TextBatches {
    let rows: Vec<Example> = (0..12u32)
        .map(|i| Example {
            ids: vec![2 + i % 5, 2 + (i * 7) % 5, 2 + i % 3],
            label: i % 3,
        })
        .collect();
    let opts = BatchOptions {
        batch_size: 4,
        ..BatchOptions::default()
    };
    TextBatches::new(rows.clone(), rows.clone(), rows, opts, 3).unwrap()
}

#[test]
fn listed_names_are_the_logged_names() {
    let registry = rnnlab_cli::registry();
    let mut rng = rnnlab_core::seeded(1);
    let model = {
        let ctx = ModelContext {
            vocab_size: 8,
            num_classes: 3,
            pretrained: None,
            freeze_embedding: false,
            pad_id: 0,
            registry: &registry,
        };
        let t = table(
            "type = \"recurrent\"\nembedding_dim = 3\ncell = { type = \"gru\", hidden = 4, bidirectional = true }",
        );
        let (ctor, p) = registry.models.resolve(&t, "model", None).unwrap();
        ctor(
            &p,
            &ctx,
            &mut ParamInit::new(&mut rng, DType::F32, Device::Cpu),
        )
        .unwrap()
    };
    let links = ["type = \"adam\"", "type = \"ema\"\ndecay = 0.5"]
        .iter()
        .map(|t| registry.transform(&table(t), "t").unwrap().0)
        .collect();
    let callbacks = [
        "type = \"grad_norm\"\nper_param = true",
        "type = \"spectral\"",
        "type = \"predictions\"",
        "type = \"stability\"",
        "type = \"lr_monitor\"",
        "type = \"early_stopping\"\nmonitor = \"grad_norm.global.p99\"\npatience = 10",
    ]
    .iter()
    .map(|t| registry.callback(&table(t), "c").unwrap().0)
    .collect();
    let scheduler = registry
        .scheduler(&table("type = \"constant\""), "s", 1e-3)
        .unwrap()
        .0;
    let mut trainer = Trainer::new(
        model,
        Chain::new(links),
        scheduler,
        callbacks,
        TrainerConfig {
            epochs: 2,
            ..TrainerConfig::default()
        },
    )
    .unwrap();
    let mut data = data();
    trainer.check_watched_metrics(&data).unwrap();
    let listed = trainer.logged_metric_names(&data).unwrap();
    let fit = trainer.fit(&mut data, &mut rng).unwrap();
    let mut logged: Vec<String> = fit
        .history
        .iter()
        .flat_map(|m| m.iter().map(|(k, _)| k.to_string()))
        .collect();
    logged.sort();
    logged.dedup();
    assert_eq!(listed, logged);
    // Per parameter, per gate block, per class: the names depend on the model and the data.
    for name in [
        "grad_norm.rnn.weight_hh_l0_reverse.p99",
        "spectral.rnn.weight_hh_l0.z.radius",
        "predictions.test.share.2",
        "raw_val_acc",
        "stability.val_acc_swing",
    ] {
        assert!(listed.iter().any(|n| n == name), "{name}: {listed:?}");
    }
}
