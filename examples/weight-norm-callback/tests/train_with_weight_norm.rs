//! A callback added from outside rnnlab's crates: registered by code, listed in a pipeline,
//! run by the one training loop, its figures in metrics.jsonl; without the registration the
//! name is unknown and the error says so.

use std::path::Path;

use rnnlab_cli::TrainOptions;

fn demo_with(
    registry: &rnnlab_core::Registry,
    out: &Path,
) -> anyhow::Result<rnnlab_cli::RunSummary> {
    let opts = TrainOptions {
        pipeline: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/demo.toml")),
        sets: vec![
            "data.size=600".into(),
            "train.epochs=2".into(),
            "callbacks=[{type=\"weight_norm\"}]".into(),
            // A watched name of the new callback is accepted.
            "train.monitor=\"weight_norm.total\"".into(),
        ],
        out: Some(out.to_path_buf()),
        threads: Some(1),
        progress: false,
        resume: None,
    };
    rnnlab_cli::train(registry, &opts)
}

#[test]
fn weight_norm_registered_from_its_own_crate_logs_every_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rnnlab_cli::registry();
    rnnlab_weight_norm::register(&mut r);
    let out = dir.path().join("run");
    let s = demo_with(&r, &out).unwrap();
    assert_eq!(s.history.len(), 2);
    // The logged total is the norm of the last checkpoint's trainable weights.
    let ckpt = rnnlab_core::checkpoint::load(&out.join("checkpoints/last.safetensors")).unwrap();
    let mut total = 0.0;
    for (name, t) in &ckpt {
        let n = rnnlab_core::squared_norm(t).unwrap();
        total += n;
        let logged = s.history[1].get(&format!("weight_norm.{name}")).unwrap();
        assert!(
            (logged - n.sqrt()).abs() <= 1e-9 * n.sqrt().max(1.0),
            "{name}"
        );
    }
    let logged = s.history[1].get("weight_norm.total").unwrap();
    assert!(
        (logged - total.sqrt()).abs() <= 1e-9 * total.sqrt(),
        "{logged} vs {}",
        total.sqrt()
    );
    assert!(rnnlab_cli::list::render(&r).contains("weight_norm"));
}

#[test]
fn without_registration_the_callback_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let e = demo_with(&rnnlab_cli::registry(), &dir.path().join("run")).unwrap_err();
    assert!(
        format!("{e:#}").contains("unknown callback `weight_norm`"),
        "{e:#}"
    );
}
