//! `rnnlab data inspect PIPELINE.toml`: what the pipeline's data looks like before training —
//! rows, labels, lengths, vocabulary, embedding coverage, split leakage, padding.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use clap::Subcommand;
use rnnlab_data::{DataReport, Leakage};

use crate::config::{self, Source};

/// `rnnlab data ...`.
#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Read, split and tokenize a pipeline's data and print its figures (writes nothing).
    Inspect {
        /// The pipeline file (TOML).
        pipeline: PathBuf,
        /// Override a key, the value parsed as TOML (`--set data.split.val=0.2`). Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Also report the leakage of the same fractions split grouped by this column (e.g.
        /// `SentenceId`), to compare with the configured split.
        #[arg(long, value_name = "COLUMN")]
        compare_group_by: Option<String>,
    },
}

/// Runs a `data` subcommand, printing to stdout.
pub fn run(registry: &rnnlab_core::Registry, cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Inspect {
            pipeline,
            sets,
            compare_group_by,
        } => {
            let i = inspect(registry, &pipeline, &sets, compare_group_by.as_deref())?;
            print!("{}", i.render());
            Ok(())
        }
    }
}

/// `rnnlab fetch NAME` (feature `hub`): downloads the files of a catalogue entry
/// ([`rnnlab_data::hub::CATALOGUE`]) into the Hugging Face hub cache and prints the pipeline text
/// that reads them. Offline (`HF_HUB_OFFLINE=1`, or the hub unreachable within 3 s) it uses the
/// cache when every file is there and fails at once otherwise.
#[cfg(feature = "hub")]
pub fn fetch(name: &str) -> Result<()> {
    use hf_hub::{Cache, Repo, RepoType};
    let entry = rnnlab_data::hub::find(name)?;
    let kind = if entry.dataset {
        RepoType::Dataset
    } else {
        RepoType::Model
    };
    let repo = Repo::new(entry.repo.to_string(), kind);
    let cached: Option<Vec<PathBuf>> = entry
        .files
        .iter()
        .map(|f| Cache::from_env().repo(repo.clone()).get(f))
        .collect();
    let paths = match cached {
        Some(p) => p,
        None => {
            let endpoint = std::env::var("HF_ENDPOINT")
                .unwrap_or_else(|_| "https://huggingface.co".to_string());
            let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0");
            if offline || !reachable(&endpoint) {
                anyhow::bail!(
                    "rnnlab fetch {name}: offline ({}) and not in the hub cache ({}); \
                     run it where {endpoint} is reachable, or put the files there by hand",
                    if offline {
                        "HF_HUB_OFFLINE is set"
                    } else {
                        "the hub is unreachable"
                    },
                    Cache::from_env().path().display()
                );
            }
            let api = hf_hub::api::sync::ApiBuilder::from_env()
                .build()
                .map_err(|e| anyhow!("hub client: {e}"))?;
            let r = api.repo(repo);
            entry
                .files
                .iter()
                .map(|f| {
                    r.get(f)
                        .map_err(|e| anyhow!("downloading {}/{f}: {e}", entry.repo))
                })
                .collect::<Result<_>>()?
        }
    };
    for p in &paths {
        eprintln!("{}", p.display());
    }
    print!("{}", entry.pipeline_toml(&paths)?);
    Ok(())
}

/// Whether `endpoint`'s host accepts a TCP connection within 3 seconds.
#[cfg(feature = "hub")]
fn reachable(endpoint: &str) -> bool {
    use std::net::ToSocketAddrs;
    let host = endpoint
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    let port = if endpoint.starts_with("http://") {
        80
    } else {
        443
    };
    let addr = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:{port}")
    };
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| {
            std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(3)).is_ok()
        })
}

/// The figures of `rnnlab data inspect`.
#[derive(Clone, Debug)]
pub struct Inspection {
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// The data report of `prepare` (as a run's data_report.json).
    pub report: DataReport,
    /// Examples per token-length bin (`1`, `2-3`, `4-7`, ...), all splits together.
    pub length_histogram: Vec<(String, usize)>,
    /// With `--compare-group-by COL`: the column and the leakage of that grouped split.
    pub compared: Option<(String, Leakage)>,
    /// `data.tokenizer.max_len` (0: no limit).
    pub max_len: usize,
}

/// Loads `pipeline` (with `--set` overrides), prepares its data and gathers the figures.
pub fn inspect(
    registry: &rnnlab_core::Registry,
    pipeline: &std::path::Path,
    sets: &[String],
    compare_group_by: Option<&str>,
) -> Result<Inspection> {
    let cfg = config::load(Source::File(pipeline), sets)?;
    let prepare = |d: &rnnlab_data::DataConfig| -> Result<rnnlab_data::Prepared> {
        let (reader, _) = rnnlab_data::readers::build(&registry.readers, d)
            .map_err(|e| config::locate_error(e, &Source::File(pipeline), sets))?;
        rnnlab_data::prepare_with(d, reader.as_ref(), &mut rnnlab_core::seeded(cfg.seed))
            .map_err(|e| anyhow!("data: {e}"))
    };
    let p = prepare(&cfg.data)?;
    let lengths = p
        .source
        .train()
        .iter()
        .chain(p.source.eval(rnnlab_core::EvalSplit::Val))
        .chain(p.source.eval(rnnlab_core::EvalSplit::Test))
        .map(|e| e.ids.len());
    let mut bins: Vec<usize> = Vec::new();
    for l in lengths {
        let b = (usize::BITS - l.max(1).leading_zeros() - 1) as usize; // floor(log2 l)
        if bins.len() <= b {
            bins.resize(b + 1, 0);
        }
        bins[b] += 1;
    }
    let length_histogram = bins
        .iter()
        .enumerate()
        .map(|(b, &n)| {
            let (lo, hi) = (1usize << b, (1usize << (b + 1)) - 1);
            let label = if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            };
            (label, n)
        })
        .collect();
    let compared = match compare_group_by {
        Some(col) => {
            let mut d = cfg.data.clone();
            d.split.group_by = Some(col.to_string());
            d.split.stratify = false;
            d.embeddings = None;
            let q = prepare(&d).with_context(|| format!("data grouped by {col}"))?;
            Some((col.to_string(), q.report.leakage))
        }
        None => None,
    };
    Ok(Inspection {
        pipeline: pipeline.to_path_buf(),
        report: p.report,
        length_histogram,
        compared,
        max_len: cfg.data.tokenizer.max_len,
    })
}

/// `1234567` → `"1,234,567"`.
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn pct(a: usize, b: usize) -> String {
    format!("{:.2} %", 100.0 * a as f64 / b.max(1) as f64)
}

fn leakage_line(l: &Leakage) -> String {
    format!(
        "val {} verbatim / {} contained of {} ({} / {}), test {} / {} of {} ({} / {})",
        thousands(l.val_verbatim),
        thousands(l.val_contained),
        thousands(l.val_texts),
        pct(l.val_verbatim, l.val_texts),
        pct(l.val_contained, l.val_texts),
        thousands(l.test_verbatim),
        thousands(l.test_contained),
        thousands(l.test_texts),
        pct(l.test_verbatim, l.test_texts),
        pct(l.test_contained, l.test_texts),
    )
}

impl Inspection {
    /// The report as printed by `rnnlab data inspect`.
    pub fn render(&self) -> String {
        let r = &self.report;
        let mut s = String::new();
        let total = r.rows.train + r.rows.val + r.rows.test;
        let _ = writeln!(s, "pipeline: {}", self.pipeline.display());
        let _ = writeln!(s, "reader: {} ({})", r.reader, r.source);
        let _ = writeln!(
            s,
            "rows: {} (train {} / val {} / test {}); split: {}",
            thousands(total),
            thousands(r.rows.train),
            thousands(r.rows.val),
            thousands(r.rows.test),
            r.split
        );
        if r.skipped.rows > 0 {
            let _ = writeln!(
                s,
                "skipped bad rows: {} {:?}; first: {}",
                thousands(r.skipped.rows),
                r.skipped.by_reason,
                r.skipped.examples.first().cloned().unwrap_or_default()
            );
        }
        let _ = writeln!(s, "labels ({}):", r.labels.len());
        for (k, name) in r.labels.iter().enumerate() {
            let (tr, va, te) = (
                r.label_counts.train[k],
                r.label_counts.val[k],
                r.label_counts.test[k],
            );
            let all = tr + va + te;
            let _ = writeln!(
                s,
                "  {name:>12}: {:>9} ({:>7})   train {} / val {} / test {}",
                thousands(all),
                pct(all, total),
                thousands(tr),
                thousands(va),
                thousands(te)
            );
        }
        let _ = writeln!(
            s,
            "lengths (tokens): mean train {:.1} / val {:.1} / test {:.1}, max {}",
            r.mean_length.train, r.mean_length.val, r.mean_length.test, r.max_length
        );
        let t = &r.truncated_texts;
        let _ = if self.max_len == 0 {
            writeln!(s, "  no max_len (data.tokenizer.max_len = 0): no text cut")
        } else {
            writeln!(
                s,
                "  cut to max_len = {} tokens: {} texts (train {} / val {} / test {})",
                self.max_len,
                thousands(t.train + t.val + t.test),
                thousands(t.train),
                thousands(t.val),
                thousands(t.test)
            )
        };
        let most = self
            .length_histogram
            .iter()
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(1);
        for (label, n) in &self.length_histogram {
            let bar = "#".repeat((40 * n).div_ceil(most.max(1)));
            let _ = writeln!(s, "  {label:>9}: {:>9} {bar}", thousands(*n));
        }
        let _ = writeln!(
            s,
            "vocabulary: {} ids ({}{} training tokens; dropped: {} rare, {} over max_size); \
             <unk> rate train {:.2} % / val {:.2} % / test {:.2} %; empty texts {}",
            thousands(r.vocab_size),
            if r.tokenizer_loaded {
                "loaded tokenizer; "
            } else {
                ""
            },
            thousands(r.training_tokens as usize),
            thousands(r.rare_types_dropped),
            thousands(r.capped_types_dropped),
            100.0 * r.unk_rate.train,
            100.0 * r.unk_rate.val,
            100.0 * r.unk_rate.test,
            r.empty_texts.train + r.empty_texts.val + r.empty_texts.test
        );
        match &r.coverage {
            Some(c) => {
                let _ = writeln!(
                    s,
                    "embeddings: width {}, {} file rows; coverage {} of {} types ({}, {} by \
                     lowercase), {} of {} training tokens ({}); σ = {:.4}{}",
                    c.dim,
                    thousands(c.file_rows),
                    thousands(c.types_found),
                    thousands(c.types_total),
                    pct(c.types_found, c.types_total),
                    thousands(c.types_lowercase),
                    thousands(c.tokens_covered as usize),
                    thousands(c.tokens_total as usize),
                    pct(c.tokens_covered as usize, c.tokens_total as usize),
                    c.std,
                    if c.bad_rows > 0 {
                        format!("; {} bad rows skipped", c.bad_rows)
                    } else {
                        String::new()
                    }
                );
            }
            None => {
                let _ = writeln!(s, "embeddings: none (learned)");
            }
        }
        let _ = writeln!(
            s,
            "leakage (held-out texts found in train after normalization), this split: {}",
            leakage_line(&r.leakage)
        );
        if let Some((col, l)) = &self.compared {
            let _ = writeln!(
                s,
                "leakage, same fractions grouped by {col}: {}",
                leakage_line(l)
            );
        }
        let _ = writeln!(
            s,
            "padding (cells / tokens, one epoch): as configured {:.3}, shuffled without buckets \
             {:.3}, with buckets {:.3}",
            r.padding_ratio, r.padding_ratio_shuffled, r.padding_ratio_bucketed
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(name: &str) -> PathBuf {
        config::workspace_root().join("pipelines").join(name)
    }

    fn real_data(sub: &str) -> PathBuf {
        let dir = config::data_dir();
        assert!(
            dir.join(sub).is_dir(),
            "real data not found: {} is missing; set RNNLAB_DATA to the shared data folder",
            dir.join(sub).display()
        );
        dir
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(156_060), "156,060");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn inspect_rt_lstm_rows_labels_coverage_and_leakage() {
        real_data("rt-kaggle-phrases");
        let i = inspect(
            &crate::registry(),
            &pipeline("rt-lstm.toml"),
            &[],
            Some("SentenceId"),
        )
        .unwrap();
        let r = &i.report;
        let text = i.render();
        eprintln!("{text}");
        assert!(text.contains("rows: 156,060 "), "{text}");
        let all: Vec<usize> = (0..5)
            .map(|k| r.label_counts.train[k] + r.label_counts.val[k] + r.label_counts.test[k])
            .collect();
        // ../shared/data/rt-kaggle-phrases/README.md
        assert_eq!(all, [7_072, 27_273, 79_582, 32_927, 9_206]);
        for n in ["7,072", "27,273", "79,582", "32,927", "9,206"] {
            assert!(text.contains(n), "{n}: {text}");
        }
        let c = r.coverage.as_ref().unwrap();
        assert_eq!(c.file_rows, 400_000);
        assert!(
            c.type_fraction() > 0.9 && c.token_fraction() > 0.97,
            "{c:?}"
        );
        assert!(text.contains("coverage "), "{text}");
        // a random split of overlapping phrases leaks: most held-out phrases are inside a
        // training phrase; grouping by sentence cuts that down
        let random = &r.leakage;
        let (col, grouped) = i.compared.as_ref().unwrap();
        assert_eq!(col, "SentenceId");
        let frac = |a: usize, b: usize| a as f64 / b as f64;
        assert!(
            frac(random.test_contained, random.test_texts) > 0.9,
            "{random:?}"
        );
        assert!(
            frac(grouped.test_contained, grouped.test_texts)
                < 0.75 * frac(random.test_contained, random.test_texts),
            "{grouped:?} vs {random:?}"
        );
        assert!(text.contains("grouped by SentenceId"), "{text}");
        assert!(r.padding_ratio_bucketed < r.padding_ratio_shuffled);
    }

    #[test]
    fn sst_and_rt_polarity_pipelines_give_the_readme_counts() {
        real_data("sst-trees");
        let cfg = config::load(Source::File(&pipeline("sst-lstm.toml")), &[]).unwrap();
        let mut d = cfg.data.clone();
        d.embeddings = None;
        let p = rnnlab_data::prepare(&d, &mut rnnlab_core::seeded(cfg.seed)).unwrap();
        let r = &p.report;
        // ../shared/data/sst-trees/README.md, sentence level
        assert_eq!(
            (r.rows.train, r.rows.val, r.rows.test),
            (8_544, 1_101, 2_210)
        );
        assert_eq!(p.labels, ["0", "1", "2", "3", "4"]);
        assert_eq!(r.label_counts.train, [1_092, 2_218, 1_624, 2_322, 1_288]);
        assert_eq!(r.label_counts.val, [139, 289, 229, 279, 165]);
        assert_eq!(r.label_counts.test, [279, 633, 389, 510, 399]);
        assert_eq!(r.max_length, 56);
        assert!(p.tokenizer.token_to_id("2\u{a0}1/2").is_some());
        assert!(p.tokenizer.token_to_id("-lrb-").is_none());

        real_data("rt-polarity");
        let cfg = config::load(Source::File(&pipeline("rt-polarity-lstm.toml")), &[]).unwrap();
        let mut d = cfg.data.clone();
        d.embeddings = None;
        let p = rnnlab_data::prepare(&d, &mut rnnlab_core::seeded(cfg.seed)).unwrap();
        let r = &p.report;
        // ../shared/data/rt-polarity/README.md: 5,331 + 5,331
        assert_eq!(r.rows.train + r.rows.val + r.rows.test, 10_662);
        assert_eq!(
            (r.rows.train, r.rows.val, r.rows.test),
            (8_530, 1_066, 1_066)
        );
        assert_eq!(p.labels, ["0", "1"]);
        assert_eq!(r.label_counts.val, [533, 533]);
        assert_eq!(r.label_counts.test, [533, 533]);
    }
}
