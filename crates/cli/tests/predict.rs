//! `rnnlab predict`: a run folder alone (resolved config, tokenizer.json, labels.json, checkpoint)
//! rebuilds the model and predicts new texts.

use rnnlab_cli::{predict, TrainOptions};

#[test]
fn a_trained_run_predicts_fresh_demo_sentences() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let registry = rnnlab_cli::registry();
    let opts = TrainOptions {
        pipeline: Some(format!("{}/../../pipelines/demo.toml", env!("CARGO_MANIFEST_DIR")).into()),
        sets: vec!["data.size=2400".into(), "train.epochs=4".into()],
        out: Some(run.clone()),
        threads: Some(2),
        progress: false,
        resume: None,
    };
    let summary = rnnlab_cli::train(&registry, &opts).unwrap();
    let trained_acc = summary.history.last().unwrap().get("test_acc").unwrap();

    // Sentences the run never saw, from another seed, with their rule labels.
    let rows = rnnlab_data::demo::generate(400, &mut rnnlab_core::seeded(12345));
    let texts: Vec<String> = rows.iter().map(|r| r.text.clone()).collect();
    let loaded = predict::load_run(&registry, &run, "best").unwrap();
    let preds = loaded.predict(&texts).unwrap();
    assert_eq!(preds.len(), 400);
    let right = preds
        .iter()
        .zip(&rows)
        .filter(|(p, r)| p.label == r.label)
        .count();
    let acc = 100.0 * right as f64 / 400.0;
    assert!(
        acc >= 85.0,
        "predict accuracy {acc:.1} (the run's test accuracy {trained_acc:.1})"
    );
    for p in &preds {
        let sum: f64 = p.probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-9, "{sum}");
    }
    // Deterministic (eval mode, no dropout): the same call gives the same numbers; in another
    // batch (other padding, other f32 rounding in the products) they agree to 1e-6.
    let again = loaded.predict(&texts[..5]).unwrap();
    assert_eq!(
        loaded
            .predict(&texts[..5])
            .unwrap()
            .iter()
            .map(|p| p.probabilities.clone())
            .collect::<Vec<_>>(),
        again
            .iter()
            .map(|p| p.probabilities.clone())
            .collect::<Vec<_>>()
    );
    for (a, b) in again.iter().zip(&preds) {
        for (x, y) in a.probabilities.iter().zip(&b.probabilities) {
            assert!((x - y).abs() < 1e-6, "{x} vs {y}");
        }
    }
}

#[test]
fn a_folder_that_is_not_a_run_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = predict::load_run(&rnnlab_cli::registry(), dir.path(), "best")
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("config.resolved.toml"), "{e:#}");
}

/// A run trained on pretrained vectors of another width than `model.embedding_dim` (7 against
/// its default 50): the run folder alone rebuilds the model with the checkpoint's width, every
/// parameter equal to the checkpoint's.
#[test]
fn a_run_with_pretrained_vectors_of_its_own_width_is_rebuilt_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let vectors = dir.path().join("vectors.txt");
    let mut text = String::new();
    let words = rnnlab_data::demo::POSITIVE_WORDS
        .iter()
        .chain(rnnlab_data::demo::NEGATIVE_WORDS);
    for (i, w) in words.enumerate() {
        let v: Vec<String> = (0..7)
            .map(|j| format!("{:.3}", ((i * 7 + j) % 11) as f64 / 10.0 - 0.5))
            .collect();
        text.push_str(&format!("{w} {}\n", v.join(" ")));
    }
    std::fs::write(&vectors, text).unwrap();
    let run = dir.path().join("run");
    let registry = rnnlab_cli::registry();
    let opts = TrainOptions {
        pipeline: Some(format!("{}/../../pipelines/demo.toml", env!("CARGO_MANIFEST_DIR")).into()),
        sets: vec![
            "data.size=600".into(),
            "train.epochs=1".into(),
            format!(
                "data.embeddings={{type=\"glove\", path={:?}}}",
                vectors.display().to_string()
            ),
        ],
        out: Some(run.clone()),
        threads: Some(1),
        progress: false,
        resume: None,
    };
    rnnlab_cli::train(&registry, &opts).unwrap();
    let weights = rnnlab_core::checkpoint::load(&run.join("checkpoints/best.safetensors")).unwrap();
    assert_eq!(weights["embedding.weight"].dims()[1], 7);
    let loaded = predict::load_run(&registry, &run, "best").unwrap();
    let params = loaded.model.params();
    assert_eq!(params.len(), weights.len());
    for (name, w) in &weights {
        let got = params.tensor(name).unwrap().flatten_all().unwrap();
        assert_eq!(
            got.to_vec1::<f32>().unwrap(),
            w.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            "{name}"
        );
    }
    let preds = loaded.predict(&["the plot was good".to_string()]).unwrap();
    assert!((preds[0].probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-9);
}
