//! `rnnlab bench epoch`: `rnnlab train pipelines/rt-CELL.toml` set to the peer's split (random
//! 80/20, no validation) as a child process of this binary, beside `torch_reference.py --cell
//! CELL`; training seconds of epochs 2..E, test accuracy after E epochs (mean over seeds), and the
//! peak resident memory of each whole process. CELL is a recurrent cell or `cnn` (Kim's CNN).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use rnnlab_core::{not_one_of, EpochMetrics};

use super::{child, ratio, torch};
use rnnlab_pipeline::config;

/// What `rnnlab bench epoch` runs (its command-line options).
#[derive(Clone, Debug, clap::Args)]
pub struct EpochOptions {
    /// Cells, comma-separated: rnn, lstm, gru, cnn (the Kim CNN, pipelines/rt-cnn.toml).
    #[arg(long, default_value = "rnn,lstm,gru", value_parser = super::split_list)]
    // `std::vec::Vec`, not `Vec`: clap reads a bare `Vec<T>` as a repeated option; this is one
    // value that `split_list` cuts at the commas.
    pub cells: std::vec::Vec<String>,
    /// Epochs per run (the time is the mean of epochs 2..E; with E = 1, epoch 1).
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Seeds per cell (FIRST_SEED, FIRST_SEED + 1, ...).
    #[arg(long, default_value_t = 1)]
    pub seeds: usize,
    /// The first seed.
    #[arg(long, default_value_t = 42)]
    pub first_seed: u64,
    /// CPU threads of each run.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// rnnlab's kernel (model.cell.kernel; model.kernel for the cnn): fused or reference.
    #[arg(long, default_value = "fused", value_parser = ["fused", "reference"])]
    pub kernel: String,
    /// An extra override for rnnlab's runs, `--set model.embedding_dropout=0.5`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// A Python with torch: run torch_reference.py too (e.g. python3).
    #[arg(long, value_name = "PYTHON")]
    pub torch: Option<String>,
    /// torch_reference.py (default: <RNNLAB_DATA>/../peers/torch_reference.py).
    #[arg(long, value_name = "FILE")]
    pub peer: Option<PathBuf>,
    /// Keep the run folders and the children's logs here (default: a temporary folder,
    /// removed at the end).
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
}

/// One run's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct RunFigures {
    /// Training seconds of each epoch, in order.
    pub epoch_seconds: Vec<f64>,
    /// Test accuracy (percent) after the last epoch.
    pub final_test_acc: f64,
    /// Peak resident memory of the process in MiB.
    pub max_rss_mib: Option<f64>,
    /// Real tokens per second of the timed epochs, when the side reports it.
    pub tokens_per_s: Option<f64>,
}

/// The timed epochs: 2..E when there are at least two, else all.
pub fn timed(epoch_seconds: &[f64]) -> &[f64] {
    if epoch_seconds.len() >= 2 {
        &epoch_seconds[1..]
    } else {
        epoch_seconds
    }
}

/// Mean of `v` (NaN when empty).
pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// One side (rnnlab or torch) of one cell, over its seeds.
#[derive(Clone, Debug, Default)]
pub struct Side {
    /// Each seed's run.
    pub runs: Vec<RunFigures>,
}

impl Side {
    /// Mean over seeds of the mean training seconds of the timed epochs.
    pub fn epoch_seconds(&self) -> f64 {
        mean(
            &self
                .runs
                .iter()
                .map(|r| mean(timed(&r.epoch_seconds)))
                .collect::<Vec<_>>(),
        )
    }

    /// Mean over seeds of the final test accuracy.
    pub fn test_acc(&self) -> f64 {
        mean(
            &self
                .runs
                .iter()
                .map(|r| r.final_test_acc)
                .collect::<Vec<_>>(),
        )
    }

    /// Largest peak resident memory over the seeds, MiB.
    pub fn max_rss_mib(&self) -> Option<f64> {
        self.runs
            .iter()
            .filter_map(|r| r.max_rss_mib)
            .reduce(f64::max)
    }

    /// Mean real tokens per second, when known.
    pub fn tokens_per_s(&self) -> Option<f64> {
        let v: Vec<f64> = self.runs.iter().filter_map(|r| r.tokens_per_s).collect();
        (!v.is_empty()).then(|| mean(&v))
    }
}

/// Both sides of one cell.
#[derive(Clone, Debug)]
pub struct CellEpochs {
    /// rnn, lstm, gru.
    pub cell: String,
    /// rnnlab's runs.
    pub rnnlab: Side,
    /// torch_reference.py's runs (none without --torch).
    pub torch: Option<Side>,
}

/// Everything `rnnlab bench epoch` found.
#[derive(Clone, Debug)]
pub struct EpochBench {
    /// What was asked.
    pub opts: EpochOptions,
    /// One entry per cell.
    pub cells: Vec<CellEpochs>,
    /// Remarks printed at the end (machine load).
    pub notes: Vec<String>,
}

/// rnnlab's figures from its metrics: `epoch_seconds` of every epoch, `test_acc` of the last,
/// mean `tokens_per_second` of the timed epochs. Errors name the missing field and epoch.
pub fn rnnlab_figures(history: &[EpochMetrics], source: &Path) -> Result<RunFigures> {
    if history.is_empty() {
        bail!("{}: no epoch", source.display());
    }
    let field = |m: &EpochMetrics, k: &str, i: usize| {
        m.get(k).ok_or_else(|| {
            anyhow!(
                "{}: line {} has no `{k}` (no test split?)",
                source.display(),
                i + 1
            )
        })
    };
    let mut secs = Vec::with_capacity(history.len());
    let mut tps = Vec::with_capacity(history.len());
    for (i, m) in history.iter().enumerate() {
        secs.push(field(m, "epoch_seconds", i)?);
        tps.push(field(m, "tokens_per_second", i)?);
    }
    let last = history.len() - 1;
    Ok(RunFigures {
        epoch_seconds: secs,
        final_test_acc: field(&history[last], "test_acc", last)?,
        max_rss_mib: None,
        tokens_per_s: Some(mean(timed(&tps))),
    })
}

/// The peer's figures from its epoch lines.
pub fn peer_figures(epochs: &[torch::PeerEpoch]) -> Result<RunFigures> {
    let last = epochs
        .last()
        .ok_or_else(|| anyhow!("torch_reference.py printed no epoch"))?;
    Ok(RunFigures {
        epoch_seconds: epochs.iter().map(|e| e.train_s).collect(),
        final_test_acc: last.test_acc,
        max_rss_mib: None,
        tokens_per_s: None,
    })
}

/// The `--set` overrides that put `cell`'s pipeline on the peer's split and length.
pub fn peer_split_sets(cell: &str, epochs: usize, seed: u64, kernel: &str) -> Vec<String> {
    vec![
        "data.split.val=0.0".into(),
        "data.split.test=0.2".into(),
        format!("train.epochs={epochs}"),
        format!("seed={seed}"),
        format!("{}=\"{kernel}\"", kernel_key(cell)),
    ]
}

/// The pipeline key of `cell`'s kernel choice.
fn kernel_key(cell: &str) -> &'static str {
    if cell == "cnn" {
        "model.kernel"
    } else {
        "model.cell.kernel"
    }
}

/// The time target rnnlab / torch of `cell`: half the peer's for the recurrent cells, no slower
/// than the peer for the CNN (issue 12).
fn time_target(cell: &str) -> f64 {
    if cell == "cnn" {
        1.0
    } else {
        0.5
    }
}

fn rnnlab_run(o: &EpochOptions, cell: &str, seed: u64, dir: &Path) -> Result<RunFigures> {
    let exe = std::env::current_exe().context("finding this program (current_exe)")?;
    let pipeline = config::workspace_root().join(format!("pipelines/rt-{cell}.toml"));
    if !pipeline.is_file() {
        bail!("{}: no such pipeline", pipeline.display());
    }
    let out = dir.join(format!("rnnlab-{cell}-seed{seed}"));
    let mut c = Command::new(exe);
    c.arg("train").arg(&pipeline);
    for s in peer_split_sets(cell, o.epochs, seed, &o.kernel)
        .iter()
        .chain(&o.sets)
    {
        c.arg("--set").arg(s);
    }
    c.arg("--out")
        .arg(&out)
        .arg("--threads")
        .arg(o.threads.to_string());
    let run = child::run_measured(&mut c, dir, &format!("rnnlab-{cell}-seed{seed}"))?;
    run.check()?;
    let metrics = out.join(rnnlab_core::METRICS_FILE);
    let history = rnnlab_core::read_metrics(&metrics)
        .with_context(|| format!("reading {}", metrics.display()))?;
    let mut f = rnnlab_figures(&history, &metrics)?;
    f.max_rss_mib = run.max_rss_mib();
    Ok(f)
}

fn peer_run(
    o: &EpochOptions,
    python: &str,
    peer: &Path,
    cell: &str,
    seed: u64,
    dir: &Path,
) -> Result<RunFigures> {
    let mut c = torch::peer_command(
        python,
        peer,
        &torch::PeerArgs {
            cell: cell.into(),
            epochs: o.epochs,
            seed,
            threads: o.threads,
            max_steps: 0,
        },
    )?;
    let run = child::run_measured(&mut c, dir, &format!("torch-{cell}-seed{seed}"))?;
    run.check()?;
    let mut f = peer_figures(&torch::parse_peer_output(&run.stdout)?)?;
    f.max_rss_mib = run.max_rss_mib();
    Ok(f)
}

/// Runs `rnnlab bench epoch`: for each cell and seed, rnnlab then (with `torch`) the peer, one
/// after the other (never both at once).
pub fn bench_epoch(o: &EpochOptions) -> Result<EpochBench> {
    for c in &o.cells {
        if super::step::gates(c).is_none() && c != "cnn" {
            bail!("--cells: {}", not_one_of(c, &["rnn", "lstm", "gru", "cnn"]));
        }
    }
    if o.epochs == 0 || o.seeds == 0 || o.threads == 0 {
        bail!("--epochs, --seeds and --threads must be positive");
    }
    let tmp = tempfile::tempdir().context("creating a temporary folder")?;
    let dir = match &o.keep {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => tmp.path().to_path_buf(),
    };
    let peer = o.peer.clone().unwrap_or_else(torch::default_peer);
    let mut notes: Vec<String> = super::load_note("before the run").into_iter().collect();
    let mut cells = Vec::new();
    for cell in &o.cells {
        let mut entry = CellEpochs {
            cell: cell.clone(),
            rnnlab: Side::default(),
            torch: o.torch.as_ref().map(|_| Side::default()),
        };
        for k in 0..o.seeds as u64 {
            let seed = o.first_seed + k;
            tracing::info!("bench epoch: rnnlab {cell} seed {seed}");
            entry.rnnlab.runs.push(rnnlab_run(o, cell, seed, &dir)?);
            if let (Some(python), Some(side)) = (&o.torch, entry.torch.as_mut()) {
                tracing::info!("bench epoch: torch_reference.py {cell} seed {seed}");
                side.runs
                    .push(peer_run(o, python, &peer, cell, seed, &dir)?);
            }
        }
        cells.push(entry);
    }
    if let Some(d) = &o.keep {
        notes.push(format!("run folders and logs kept in {}", d.display()));
    }
    Ok(EpochBench {
        opts: o.clone(),
        cells,
        notes,
    })
}

fn f(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "–".into()
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| f(v, digits)).unwrap_or_else(|| "–".into())
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "not met"
    }
}

impl EpochBench {
    /// The printed report: a Markdown table per side and the ratios with the targets.
    pub fn render(&self) -> String {
        let o = &self.opts;
        let timed_what = if o.epochs == 2 {
            "epoch 2".to_string()
        } else if o.epochs > 2 {
            format!("epochs 2–{}", o.epochs)
        } else {
            "epoch 1".into()
        };
        let mut s = format!(
            "## rnnlab bench epoch\n\n\
             rnnlab: `rnnlab train pipelines/rt-CELL.toml --set data.split.val=0.0 --set \
             data.split.test=0.2 --set train.epochs={e} --set seed=S --set model.cell.kernel=\"{k}\"{extra}` \
             (`model.kernel` for the cnn; its own batching: length buckets as the pipeline sets them).{peer} \
             {t} thread(s) each, run one after the other; seeds {s0}..={s1}. Time: mean training seconds \
             of {timed_what} (rnnlab `epoch_seconds`, the peer's `train_s`); accuracy: test accuracy \
             after epoch {e}, mean over seeds; memory: peak resident set of the whole process \
             (wait4 ru_maxrss, as /usr/bin/time -v), largest over seeds.\n\n\
             | cell | side | s / epoch | real tokens/s | test acc % | peak RSS MiB |\n\
             | --- | --- | ---: | ---: | ---: | ---: |\n",
            e = o.epochs,
            k = o.kernel,
            extra = o
                .sets
                .iter()
                .map(|x| format!(" --set {x}"))
                .collect::<String>(),
            peer = if o.torch.is_some() {
                format!(
                    " PyTorch: `torch_reference.py --cell CELL --epochs {} --seed S` (random \
                     padded batches of 64).",
                    o.epochs
                )
            } else {
                String::new()
            },
            t = o.threads,
            s0 = o.first_seed,
            s1 = o.first_seed + o.seeds as u64 - 1,
        );
        for c in &self.cells {
            let mut side = |name: &str, x: &Side| {
                s += &format!(
                    "| {} | {name} | {} | {} | {} | {} |\n",
                    c.cell,
                    f(x.epoch_seconds(), 2),
                    opt(x.tokens_per_s(), 0),
                    f(x.test_acc(), 2),
                    opt(x.max_rss_mib(), 0)
                );
            };
            side("rnnlab", &c.rnnlab);
            if let Some(t) = &c.torch {
                side("torch_reference.py", t);
            }
        }
        let lines: Vec<String> = self
            .cells
            .iter()
            .filter_map(|c| {
                let t = c.torch.as_ref()?;
                let time = ratio(c.rnnlab.epoch_seconds(), t.epoch_seconds());
                let target = time_target(&c.cell);
                let acc = c.rnnlab.test_acc() - t.test_acc();
                let mem = c
                    .rnnlab
                    .max_rss_mib()
                    .zip(t.max_rss_mib())
                    .and_then(|(a, b)| ratio(a, b));
                Some(format!(
                    "- {}: time {}× (target ≤ {target}×: {}); accuracy {:+.2} points (target within 1.5: {}); \
                     memory {}× (target ≤ 1×: {})",
                    c.cell,
                    opt(time, 2),
                    verdict(time.is_some_and(|x| x <= target)),
                    acc,
                    verdict(acc.abs() <= 1.5),
                    opt(mem, 2),
                    verdict(mem.is_some_and(|x| x <= 1.0)),
                ))
            })
            .collect();
        if !lines.is_empty() {
            s += "\nrnnlab / torch:\n";
            s += &lines.join("\n");
            s += "\n";
        }
        if !self.notes.is_empty() {
            s += "\n";
            for n in &self.notes {
                s += &format!("Note: {n}\n");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(epoch: f64, secs: f64, acc: Option<f64>) -> EpochMetrics {
        let mut m = EpochMetrics::new();
        m.set("epoch", epoch);
        m.set("epoch_seconds", secs);
        m.set("tokens_per_second", 1000.0 * epoch);
        if let Some(a) = acc {
            m.set("test_acc", a);
        }
        m
    }

    #[test]
    fn rnnlab_metrics_give_the_timed_epochs_and_final_accuracy() {
        let h = vec![
            metrics(1.0, 9.0, Some(55.0)),
            metrics(2.0, 4.0, Some(58.0)),
            metrics(3.0, 6.0, Some(60.5)),
        ];
        let f = rnnlab_figures(&h, Path::new("m.jsonl")).unwrap();
        assert_eq!(f.epoch_seconds, vec![9.0, 4.0, 6.0]);
        assert_eq!(f.final_test_acc, 60.5);
        // tokens/s of epochs 2 and 3: (2000 + 3000) / 2.
        assert_eq!(f.tokens_per_s, Some(2500.0));
        let side = Side {
            runs: vec![f.clone()],
        };
        // Epoch 1 (warm-up, 9 s) is left out: (4 + 6) / 2.
        assert_eq!(side.epoch_seconds(), 5.0);

        let bad = vec![metrics(1.0, 9.0, None)];
        let e = rnnlab_figures(&bad, Path::new("m.jsonl")).unwrap_err();
        assert!(
            format!("{e:#}").contains("m.jsonl: line 1 has no `test_acc`"),
            "{e:#}"
        );
        assert!(rnnlab_figures(&[], Path::new("m.jsonl")).is_err());
        assert_eq!(timed(&[7.0]), &[7.0]);
    }

    /// Options for one cell with the peer (python3), seeds from 42, two threads.
    fn options(cell: &str, epochs: usize, seeds: usize) -> EpochOptions {
        EpochOptions {
            cells: vec![cell.into()],
            epochs,
            seeds,
            first_seed: 42,
            threads: 2,
            kernel: "fused".into(),
            sets: vec![],
            torch: Some("python3".into()),
            peer: None,
            keep: None,
        }
    }

    #[test]
    fn sides_average_over_seeds_and_ratios_are_reported() {
        let run = |secs: Vec<f64>, acc: f64, rss: f64| RunFigures {
            epoch_seconds: secs,
            final_test_acc: acc,
            max_rss_mib: Some(rss),
            tokens_per_s: None,
        };
        let ours = Side {
            runs: vec![
                run(vec![5.0, 3.0, 5.0], 60.0, 300.0),
                run(vec![5.0, 2.0, 2.0], 61.0, 350.0),
            ],
        };
        let theirs = Side {
            runs: vec![
                run(vec![16.0, 15.0, 15.0], 61.0, 700.0),
                run(vec![16.0, 17.0, 17.0], 62.0, 650.0),
            ],
        };
        // ours: mean(4, 2) = 3; theirs: mean(15, 17) = 16.
        assert_eq!(ours.epoch_seconds(), 3.0);
        assert_eq!(theirs.epoch_seconds(), 16.0);
        assert_eq!(ours.test_acc(), 60.5);
        assert_eq!(ours.max_rss_mib(), Some(350.0));
        let b = EpochBench {
            opts: options("gru", 3, 2),
            cells: vec![CellEpochs {
                cell: "gru".into(),
                rnnlab: ours,
                torch: Some(theirs),
            }],
            notes: vec![],
        };
        let text = b.render();
        // 3 / 16 = 0.1875; 60.5 - 61.5 = -1; 350 / 700 = 0.5.
        assert!(
            text.contains(
                "- gru: time 0.19× (target ≤ 0.5×: met); accuracy -1.00 points (target within 1.5: met); \
                 memory 0.50× (target ≤ 1×: met)"
            ),
            "{text}"
        );
        assert!(
            text.contains("| gru | rnnlab | 3.00 | – | 60.50 | 350 |"),
            "{text}"
        );
        assert!(text.contains("epochs 2–3"));
    }

    #[test]
    fn the_cnn_is_a_cell_with_its_own_time_target() {
        let run = |secs: f64, acc: f64| RunFigures {
            epoch_seconds: vec![secs, secs],
            final_test_acc: acc,
            max_rss_mib: None,
            tokens_per_s: None,
        };
        let opts = options("cnn", 2, 1);
        let b = EpochBench {
            opts: opts.clone(),
            cells: vec![CellEpochs {
                cell: "cnn".into(),
                rnnlab: Side {
                    runs: vec![run(18.0, 61.0)],
                },
                torch: Some(Side {
                    runs: vec![run(24.0, 61.7)],
                }),
            }],
            notes: vec![],
        };
        // 18 / 24 = 0.75: met against the CNN's target (no slower than the peer).
        let text = b.render();
        assert!(
            text.contains("- cnn: time 0.75× (target ≤ 1×: met); accuracy -0.70 points"),
            "{text}"
        );
        // An unknown cell is refused before anything runs.
        let e = bench_epoch(&EpochOptions {
            cells: vec!["cnm".into()],
            ..opts
        })
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("`cnm` is not one of rnn, lstm, gru, cnn, did you mean `cnn`?"),
            "{e}"
        );
    }

    #[test]
    fn peer_epochs_become_figures() {
        let e = vec![
            torch::PeerEpoch {
                epoch: 1,
                train_s: 15.0,
                test_acc: 58.0,
            },
            torch::PeerEpoch {
                epoch: 2,
                train_s: 14.0,
                test_acc: 60.0,
            },
        ];
        let f = peer_figures(&e).unwrap();
        assert_eq!(f.epoch_seconds, vec![15.0, 14.0]);
        assert_eq!(f.final_test_acc, 60.0);
        assert!(peer_figures(&[]).is_err());
        let sets = peer_split_sets("gru", 3, 7, "reference");
        assert!(sets.contains(&"data.split.val=0.0".to_string()));
        assert!(sets.contains(&"seed=7".to_string()));
        assert!(sets.contains(&"model.cell.kernel=\"reference\"".to_string()));
        // The CNN has no cell table: its kernel is a model key.
        let sets = peer_split_sets("cnn", 3, 7, "fused");
        assert!(
            sets.contains(&"model.kernel=\"fused\"".to_string()),
            "{sets:?}"
        );
        assert!(
            !sets.iter().any(|s| s.starts_with("model.cell")),
            "{sets:?}"
        );
    }
}
