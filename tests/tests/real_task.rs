//! The real task (../shared/data, through RNNLAB_DATA): an LSTM on GloVe reaches 60 % test
//! accuracy on Rotten Tomatoes phrases in 3 epochs.

use rnnlab_tests::{real_data, train};

#[test]
fn rt_lstm_reaches_60_percent_in_three_epochs() {
    real_data();
    let dir = tempfile::tempdir().unwrap();
    let s = train("rt-lstm.toml", &["train.epochs=3"], &dir.path().join("run")).unwrap();
    let acc = s.history.last().unwrap().get("test_acc").unwrap();
    // Always predicting the majority class ("neutral") gives 51 %.
    assert!(
        acc >= 60.0,
        "rt-lstm test accuracy after 3 epochs: {acc:.2} < 60"
    );
    eprintln!("{}", s.line());
}
