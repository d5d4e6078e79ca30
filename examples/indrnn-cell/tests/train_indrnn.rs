//! A cell added from outside rnnlab's crates: registered by code, selected by config, trained by
//! the one training loop.

use std::path::Path;

use rnnlab_cli::TrainOptions;

fn demo_with(
    registry: &rnnlab_core::Registry,
    out: &Path,
) -> anyhow::Result<rnnlab_cli::RunSummary> {
    demo_with_sets(registry, out, &[])
}

fn demo_with_sets(
    registry: &rnnlab_core::Registry,
    out: &Path,
    extra: &[&str],
) -> anyhow::Result<rnnlab_cli::RunSummary> {
    let mut sets: Vec<String> = vec![
        "model.cell.type=\"indrnn\"".into(),
        "model.cell.activation=\"tanh\"".into(),
        // One IndRNN layer cannot compose "not" with the next word (units never mix over
        // time); a second layer, fed all units of the first, can.
        "model.cell.layers=2".into(),
        "data.size=3000".into(),
        "train.epochs=8".into(),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    let opts = TrainOptions {
        pipeline: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/demo.toml")),
        sets,
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

/// IndRNN has no sequence kernel of its own (it is stepped), so it takes no `kernel` key, which
/// the built-in cells take to pick theirs.
#[test]
fn a_cell_without_a_sequence_kernel_refuses_the_kernel_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = rnnlab_cli::registry();
    rnnlab_indrnn::register(&mut r);
    let e = demo_with_sets(
        &r,
        &dir.path().join("run"),
        &["model.cell.kernel=\"fused\""],
    )
    .unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("unknown key `kernel` at `model.cell`"),
        "{msg}"
    );
    assert!(!dir.path().join("run").exists());
}
