//! `rnnlab bench step` end to end on a tiny shape: the binary runs, prints a row per cell and
//! kernel, and every figure is a positive number. No timing is asserted.

use std::process::Command;

/// The cells of the markdown row `| cell | implementation | ... |`.
fn cells(line: &str) -> Vec<String> {
    line.trim()
        .trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect()
}

#[test]
fn bench_step_prints_a_row_per_cell_and_kernel() {
    let out = Command::new(env!("CARGO_BIN_EXE_rnnlab"))
        .args([
            "bench",
            "step",
            "--cells",
            "rnn,gru",
            "--steps",
            "4",
            "--batch",
            "4",
            "--iters",
            "2",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--real-steps",
            "0",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("running rnnlab");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("6·B·T·G·H·(E+H)"), "{stdout}");
    let rows: Vec<Vec<String>> = stdout
        .lines()
        .filter(|l| l.starts_with("| rnn |") || l.starts_with("| gru |"))
        .map(cells)
        .collect();
    let names: Vec<(String, String)> = rows.iter().map(|r| (r[0].clone(), r[1].clone())).collect();
    let want = [
        ("rnn", "rnnlab fused"),
        ("rnn", "rnnlab reference"),
        ("gru", "rnnlab fused"),
        ("gru", "rnnlab reference"),
    ];
    assert_eq!(
        names,
        want.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>(),
        "{stdout}"
    );
    for r in &rows {
        // step ms, tokens/s, cell f+b ms, cell GFLOP, cell GFLOP/s: positive numbers.
        for (k, name) in [
            (2, "step ms"),
            (3, "tokens/s"),
            (4, "cell ms"),
            (5, "GFLOP"),
            (6, "GFLOP/s"),
        ] {
            let v: f64 = r[k]
                .parse()
                .unwrap_or_else(|_| panic!("{name} of {r:?} is not a number:\n{stdout}"));
            assert!(v > 0.0 && v.is_finite(), "{name} of {r:?}");
        }
    }
    // The FLOP column follows the shapes: 6·4·4·G·128·178 with G = 1 (rnn) and 3 (gru).
    assert_eq!(
        rows[0][5],
        format!("{:.3}", 6.0 * 16.0 * 128.0 * 178.0 / 1e9)
    );
    assert_eq!(
        rows[2][5],
        format!("{:.3}", 6.0 * 16.0 * 3.0 * 128.0 * 178.0 / 1e9)
    );
}

#[test]
fn bench_step_refuses_an_unknown_cell() {
    let out = Command::new(env!("CARGO_BIN_EXE_rnnlab"))
        .args([
            "bench",
            "step",
            "--cells",
            "transformer",
            "--real-steps",
            "0",
        ])
        .output()
        .expect("running rnnlab");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("transformer"), "{stderr}");
}
