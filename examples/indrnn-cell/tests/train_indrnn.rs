//! A cell added from outside rnnlab's crates: registered by code, selected by config, trained by
//! the one training loop.

use std::path::Path;

use rnnlab_cli::TrainOptions;

fn demo_with(
    registry: &rnnlab_core::Registry,
    out: &Path,
) -> anyhow::Result<rnnlab_cli::RunSummary> {
    let opts = TrainOptions {
        pipeline: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/demo.toml")),
        sets: vec![
            "model.cell.type=\"indrnn\"".into(),
            "model.cell.activation=\"tanh\"".into(),
            // One IndRNN layer cannot compose "not" with the next word (units never mix over
            // time); a second layer, fed all units of the first, can.
            "model.cell.layers=2".into(),
            "data.size=3000".into(),
            "train.epochs=8".into(),
        ],
        out: Some(out.to_path_buf()),
        threads: Some(2),
        progress: false,
        resume: None,
    };
    rnnlab_cli::train(registry, &opts)
}

#[test]
fn indrnn_registered_from_its_own_crate_trains_on_the_demo() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rnnlab_cli::registry();
    rnnlab_indrnn::register(&mut r);
    let out = dir.path().join("run");
    let s = demo_with(&r, &out).unwrap();
    let first = s.history.first().unwrap().get("train_loss").unwrap();
    let last = s.history.last().unwrap();
    assert!(
        last.get("train_loss").unwrap() < first,
        "training loss did not fall"
    );
    // Chance is 50 %, and a bag of words cannot solve the "X but Y" sentences.
    let acc = last.get("test_acc").unwrap();
    assert!(acc >= 85.0, "indrnn test accuracy {acc:.2}");
    let ckpt = rnnlab_core::checkpoint::load(&out.join("checkpoints/last.safetensors")).unwrap();
    assert_eq!(ckpt["rnn.weight_hh_l0"].dims(), &[64], "u is a vector");
    assert!(rnnlab_cli::list::render(&r).contains("indrnn"));
}

#[test]
fn without_registration_the_cell_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let e = demo_with(&rnnlab_cli::registry(), &dir.path().join("run")).unwrap_err();
    assert!(format!("{e:#}").contains("unknown cell `indrnn`"), "{e:#}");
}
