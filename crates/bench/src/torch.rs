//! The PyTorch side of the benchmarks: an embedded script that times the exact synthetic training
//! step, and the peer `torch_reference.py` (real data, padded random batches), with the parsers
//! of what each prints.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

use super::child;

/// Times the same training step as `rnnlab bench step` in PyTorch: `nn.Embedding(V, E)` →
/// `nn.RNN/LSTM/GRU(E, H, batch_first=True)` → `nn.Linear(H, C)` on the last output →
/// `CrossEntropyLoss` → backward → `clip_grad_norm_(5)` → `Adam(lr=1e-3)` (and `loss.item()`, as a
/// training loop reads the loss), on random ids at `[batch, steps]`; then the recurrent layer's
/// forward+backward alone on a random `[batch, steps, E]` input that requires grad. Prints one
/// JSON line per cell with every timed iteration in milliseconds.
pub const STEP_SCRIPT: &str = r#"
import argparse, json, time
import torch, torch.nn as nn
p = argparse.ArgumentParser()
p.add_argument('--cells', default='rnn,lstm,gru')
p.add_argument('--batch', type=int, default=64); p.add_argument('--steps', type=int, default=32)
p.add_argument('--iters', type=int, default=30); p.add_argument('--warmup', type=int, default=5)
p.add_argument('--threads', type=int, default=2); p.add_argument('--seed', type=int, default=42)
p.add_argument('--vocab', type=int, default=16000); p.add_argument('--emb', type=int, default=50)
p.add_argument('--hidden', type=int, default=128); p.add_argument('--classes', type=int, default=5)
a = p.parse_args()
torch.set_num_threads(a.threads); torch.manual_seed(a.seed)
for cell in a.cells.split(','):
    rnn = {'rnn': nn.RNN, 'lstm': nn.LSTM, 'gru': nn.GRU}[cell](a.emb, a.hidden, batch_first=True)
    emb = nn.Embedding(a.vocab, a.emb); fc = nn.Linear(a.hidden, a.classes)
    params = list(emb.parameters()) + list(rnn.parameters()) + list(fc.parameters())
    opt = torch.optim.Adam(params, lr=1e-3); lf = nn.CrossEntropyLoss()
    batches = [(torch.randint(1, a.vocab, (a.batch, a.steps)), torch.randint(0, a.classes, (a.batch,)))
               for _ in range(4)]
    step_ms = []
    for i in range(a.warmup + a.iters):
        x, y = batches[i % len(batches)]
        t = time.perf_counter()
        opt.zero_grad()
        out, _ = rnn(emb(x))
        loss = lf(fc(out[:, -1]), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        loss.item()
        dt = time.perf_counter() - t
        if i >= a.warmup: step_ms.append(1000 * dt)
    x = torch.randn(a.batch, a.steps, a.emb, requires_grad=True)
    cell_ms = []
    for i in range(a.warmup + a.iters):
        t = time.perf_counter()
        x.grad = None; rnn.zero_grad(set_to_none=True)
        out, _ = rnn(x)
        out.sum().backward()
        dt = time.perf_counter() - t
        if i >= a.warmup: cell_ms.append(1000 * dt)
    print(json.dumps(dict(cell=cell, step_ms=step_ms, cell_ms=cell_ms, version=torch.__version__,
                          mkldnn=bool(torch.backends.mkldnn.is_available()))), flush=True)
"#;

/// One cell's figures from [`STEP_SCRIPT`].
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct TorchStep {
    /// `rnn`, `lstm` or `gru`.
    pub cell: String,
    /// Milliseconds of each timed training step.
    pub step_ms: Vec<f64>,
    /// Milliseconds of each timed forward+backward of the recurrent layer alone.
    pub cell_ms: Vec<f64>,
    /// `torch.__version__`.
    pub version: String,
    /// Whether oneDNN (mkldnn) is available.
    #[serde(default)]
    pub mkldnn: bool,
}

/// Parses [`STEP_SCRIPT`]'s output: one JSON object per line (other lines are ignored).
pub fn parse_step_output(stdout: &str) -> Result<Vec<TorchStep>> {
    json_lines(stdout)
        .map(|(n, l)| {
            serde_json::from_str::<TorchStep>(l)
                .with_context(|| format!("torch step script, stdout line {n}: {l}"))
        })
        .collect()
}

/// One epoch line of `torch_reference.py`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct PeerEpoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// Seconds of the epoch's training loop.
    pub train_s: f64,
    /// Test accuracy in percent after the epoch.
    pub test_acc: f64,
}

/// Parses `torch_reference.py`'s stdout: the JSON epoch lines (the leading `vocab ...` line and
/// other non-JSON lines are skipped). Errors name the line.
pub fn parse_peer_output(stdout: &str) -> Result<Vec<PeerEpoch>> {
    let epochs = json_lines(stdout)
        .map(|(n, l)| {
            serde_json::from_str::<PeerEpoch>(l)
                .with_context(|| format!("torch_reference.py, stdout line {n}: {l}"))
        })
        .collect::<Result<Vec<_>>>()?;
    if epochs.is_empty() {
        bail!("torch_reference.py printed no epoch line");
    }
    Ok(epochs)
}

/// `(1-based line number, line)` of the lines that look like JSON objects.
fn json_lines(s: &str) -> impl Iterator<Item = (usize, &str)> {
    s.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| l.starts_with('{'))
}

/// `torch_reference.py` beside the data folder: `<RNNLAB_DATA>/../peers/torch_reference.py`.
pub fn default_peer() -> PathBuf {
    rnnlab_pipeline::config::data_dir().join("../peers/torch_reference.py")
}

/// The peer's real data, as the pipelines read it: the RT phrases file and GloVe 6B 50d.
pub fn peer_data() -> (PathBuf, PathBuf) {
    let d = rnnlab_pipeline::config::data_dir();
    (
        d.join("rt-kaggle-phrases/train.tsv"),
        d.join("glove-6b-50d/glove.6B.50d.txt.gz"),
    )
}

/// What to ask of `torch_reference.py`.
#[derive(Clone, Debug)]
pub struct PeerArgs {
    /// `rnn`, `lstm` or `gru`.
    pub cell: String,
    /// Epochs.
    pub epochs: usize,
    /// Seed.
    pub seed: u64,
    /// CPU threads.
    pub threads: usize,
    /// Stop each epoch after this many steps (0: the whole epoch).
    pub max_steps: usize,
}

/// The command line that runs the peer with the data of [`peer_data`].
pub fn peer_command(python: &str, peer: &Path, a: &PeerArgs) -> Result<Command> {
    if !peer.is_file() {
        bail!(
            "the PyTorch peer {} does not exist: give its path with --peer FILE",
            peer.display()
        );
    }
    let (data, glove) = peer_data();
    for f in [&data, &glove] {
        if !f.is_file() {
            bail!(
                "{}: missing (the peer's data; set RNNLAB_DATA to the data folder)",
                f.display()
            );
        }
    }
    let mut c = Command::new(python);
    c.arg(peer)
        .arg("--cell")
        .arg(&a.cell)
        .arg("--epochs")
        .arg(a.epochs.to_string())
        .arg("--seed")
        .arg(a.seed.to_string())
        .arg("--threads")
        .arg(a.threads.to_string())
        .arg("--data")
        .arg(&data)
        .arg("--glove")
        .arg(&glove);
    if a.max_steps > 0 {
        c.arg("--max-steps").arg(a.max_steps.to_string());
    }
    Ok(c)
}

/// Writes [`STEP_SCRIPT`] into `dir` and runs it with `python` for `cell` with the shapes,
/// iterations, threads and seed of `a`.
pub fn run_step_script(
    python: &str,
    a: &super::step::StepOptions,
    cell: &str,
    dir: &Path,
) -> Result<Vec<TorchStep>> {
    let script = dir.join("torch_step.py");
    std::fs::write(&script, STEP_SCRIPT)
        .with_context(|| format!("writing {}", script.display()))?;
    let mut c = Command::new(python);
    c.arg(&script)
        .arg("--cells")
        .arg(cell)
        .arg("--batch")
        .arg(a.batch.to_string())
        .arg("--steps")
        .arg(a.steps.to_string())
        .arg("--iters")
        .arg(a.iters.to_string())
        .arg("--warmup")
        .arg(a.warmup.max(1).to_string())
        .arg("--threads")
        .arg(a.threads.to_string())
        .arg("--seed")
        .arg(a.seed.to_string());
    let run = child::run_measured(&mut c, dir, "torch_step")?;
    run.check()?;
    let rows = parse_step_output(&run.stdout)?;
    if !rows.iter().any(|r| r.cell == cell) {
        return Err(anyhow!(
            "the torch step script printed no line for cell `{cell}`:\n{}",
            run.stdout
        ));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_output_is_parsed_and_the_vocab_line_skipped() {
        let out = "vocab 15000 glove hits 14000 load 3.1s train 124848 test 31212\n\
            {\"epoch\": 1, \"train_loss\": 1.2, \"test_acc\": 58.5, \"train_s\": 15.25, \"gnorm_p50\": 1.0, \"gnorm_max\": 3.0, \"pred_share\": [1.0, 2.0]}\n\
            {\"epoch\": 2, \"train_loss\": 1.0, \"test_acc\": 61.0, \"train_s\": 14.75}\n";
        let e = parse_peer_output(out).unwrap();
        assert_eq!(
            e,
            vec![
                PeerEpoch {
                    epoch: 1,
                    train_s: 15.25,
                    test_acc: 58.5
                },
                PeerEpoch {
                    epoch: 2,
                    train_s: 14.75,
                    test_acc: 61.0
                }
            ]
        );
        assert!(parse_peer_output("vocab 1\n").is_err());
        let bad = parse_peer_output("{\"epoch\": 1}\n").unwrap_err();
        assert!(format!("{bad:#}").contains("line 1"), "{bad:#}");
    }

    #[test]
    fn step_output_is_parsed() {
        let out = "{\"cell\": \"gru\", \"step_ms\": [15.5, 16.0], \"cell_ms\": [9.0], \"version\": \"2.15.0\", \"mkldnn\": true}\n";
        let r = parse_step_output(out).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].cell, "gru");
        assert_eq!(r[0].step_ms, vec![15.5, 16.0]);
        assert!(r[0].mkldnn);
        assert!(parse_step_output("{\"cell\": 3}").is_err());
    }
}
