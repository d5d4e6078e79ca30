//! One huge row cannot take the machine: training cuts texts to `max_len` tokens (512 by
//! default) and says so, and `predict` reads a bounded part of each text.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_rnnlab");

/// A TSV of 60 short rows and one of `long` words, and a pipeline that reads it.
fn write_data(dir: &Path, long: usize) -> std::path::PathBuf {
    let mut tsv = String::from("text\tlabel\n");
    for i in 0..60 {
        let (text, label) = if i % 2 == 0 {
            ("a good film", "pos")
        } else {
            ("a bad film", "neg")
        };
        tsv.push_str(&format!("{text} {i}\t{label}\n"));
    }
    tsv.push_str(&"good ".repeat(long));
    tsv.push_str("\tpos\n");
    std::fs::write(dir.join("rows.tsv"), tsv).unwrap();
    let pipeline = dir.join("long.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[data]\ntype = \"tsv\"\npath = \"{}\"\ntext = \"text\"\nlabel = \"label\"\n\
             split = {{ val = 0.2, test = 0.2 }}\nbatch_size = 8\n\
             [model]\ncell = {{ type = \"rnn\", hidden = 8 }}\nembedding_dim = 8\n\
             [train]\nepochs = 1\n",
            dir.join("rows.tsv").display()
        ),
    )
    .unwrap();
    pipeline
}

/// `rnnlab train PIPELINE --threads 1 --out RUN`.
fn train(pipeline: &Path, run: &Path) -> std::process::Output {
    Command::new(BIN)
        .arg("train")
        .arg(pipeline)
        .args(["--threads", "1", "--out"])
        .arg(run)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn a_long_training_text_is_cut_counted_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_data(dir.path(), 3000);
    let run = dir.path().join("run");
    let o = train(&pipeline, &run);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("1 text(s) longer than data.tokenizer.max_len = 512 tokens were cut"),
        "{err}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("data_report.json")).unwrap()).unwrap();
    let t = &report["truncated_texts"];
    let cut = ["train", "val", "test"]
        .iter()
        .map(|s| t[s].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(cut, 1, "{report:#}");
    assert_eq!(report["max_length"], 512);
    let resolved = std::fs::read_to_string(run.join("config.resolved.toml")).unwrap();
    assert!(resolved.contains("max_len = 512"), "{resolved}");

    let o = Command::new(BIN)
        .args(["data", "inspect", pipeline.to_str().unwrap()])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.contains("cut to max_len = 512 tokens: 1 texts"),
        "{out}"
    );
}

/// `rnnlab predict` on a 400,000-word line (2 MB) stays small: it reads the first MiB of the line
/// and the model sees `max_len` tokens. Peak memory is the kernel's `ru_maxrss` of the process.
#[test]
fn predict_on_a_huge_text_reads_a_bounded_part() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_data(dir.path(), 10);
    let run = dir.path().join("run");
    let o = train(&pipeline, &run);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let input = dir.path().join("input.txt");
    std::fs::write(&input, format!("{}\na bad film\n", "good ".repeat(400_000))).unwrap();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "exec \"$0\" predict \"$1\" < \"$2\"", BIN])
        .arg(&run)
        .arg(&input)
        .env("RUST_LOG", "warn");
    let r = rnnlab_cli::bench::child::run_measured(&mut cmd, dir.path(), "predict").unwrap();
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.stdout);
    assert!(lines[1].ends_with("\ta bad film"), "{}", lines[1]);
    assert!(
        r.stderr.contains("text 1 is longer than 1 MiB"),
        "{}",
        r.stderr
    );
    let mib = r.max_rss_mib().unwrap();
    assert!(mib < 300.0, "predict peaked at {mib:.0} MiB");
}
