//! The environment layer: file < RNNLAB__* < --set. In its own test binary, since it sets
//! process environment variables.

#[test]
fn environment_overrides_the_file_and_set_overrides_the_environment() {
    std::env::set_var("RNNLAB__TRAIN__EPOCHS", "3");
    std::env::set_var("RNNLAB__SEED", "9");
    let path = rnnlab_tests::pipeline("demo.toml");
    let cfg = rnnlab_cli::load(rnnlab_cli::Source::File(&path), &[]).unwrap();
    assert_eq!(cfg.train.epochs, 3);
    assert_eq!(cfg.seed, 9);
    let cfg =
        rnnlab_cli::load(rnnlab_cli::Source::File(&path), &["train.epochs=5".into()]).unwrap();
    assert_eq!(cfg.train.epochs, 5);
    assert_eq!(cfg.seed, 9);
    std::env::remove_var("RNNLAB__TRAIN__EPOCHS");
    std::env::remove_var("RNNLAB__SEED");
    let embedded = rnnlab_cli::load(rnnlab_cli::Source::Demo, &[]).unwrap();
    let file = rnnlab_tests::pipeline("quickstart.toml");
    let file = rnnlab_cli::load(rnnlab_cli::Source::File(&file), &[]).unwrap();
    assert_eq!(
        toml::to_string(&embedded).unwrap(),
        toml::to_string(&file).unwrap(),
        "the embedded default equals pipelines/quickstart.toml"
    );
}
