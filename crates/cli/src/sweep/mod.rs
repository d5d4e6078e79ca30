//! `rnnlab sweep`: a base pipeline × variants (named `--set` lists and/or a grid) × seeds, each
//! run an ordinary run folder `OUT/<variant>/seed-<seed>` below the sweep's folder.
//!
//! Every launcher runs each run through [`exec::exec`] (`rnnlab sweep exec SWEEP --index I`):
//! skip a finished run, resume an unfinished one from its snapshot, else start it. The local
//! launcher runs `--jobs` of those processes at a time; the Slurm launcher submits them as one
//! job array. The report reads only the run folders' `metrics.jsonl`.

pub mod evaluate;
pub mod exec;
pub mod local;
pub mod slurm;
pub mod status;

/// `rnnlab sweep report`'s table and figures: the analysis crate's, over [`Plan::report_runs`].
pub use rnnlab_analysis::sweep_report as report;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

use crate::config::{self, Source};
use rnnlab_core::Registry;

/// A sweep file, as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweepFile {
    /// The base pipeline, relative to the sweep file (`${VAR}` expanded); none: the demo.
    pub base: Option<String>,
    /// Seeds: every variant runs once per seed (`--set seed=S`; default `[42]`).
    pub seeds: Vec<u64>,
    /// Overrides for every run, before the variant's own.
    pub set: Vec<String>,
    /// Where the run folders go, relative to the sweep file (default `sweeps/<file stem>`).
    pub out: Option<String>,
    /// Named lists of overrides.
    pub variants: Vec<Variant>,
    /// Keys × values: every combination, crossed with the variants.
    pub grid: BTreeMap<String, Vec<toml::Value>>,
    /// Runs at a time with the local launcher (default 1; `--jobs`).
    pub jobs: Option<usize>,
    /// CPU threads shared by the local launcher's runs (default: all cores; `--threads`).
    pub threads: Option<usize>,
    /// The last K epochs the report's swing and std look at (default 10).
    pub window: Option<usize>,
    /// Slurm job settings (`--launcher slurm`).
    pub slurm: slurm::SlurmSettings,
}

impl Default for SweepFile {
    fn default() -> Self {
        SweepFile {
            base: None,
            seeds: vec![42],
            set: Vec::new(),
            out: None,
            variants: Vec::new(),
            grid: BTreeMap::new(),
            jobs: None,
            threads: None,
            window: None,
            slurm: slurm::SlurmSettings::default(),
        }
    }
}

/// One named list of overrides.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// The variant's name (its folder).
    pub name: String,
    /// `key=value` overrides, as `--set`.
    #[serde(default)]
    pub set: Vec<String>,
    /// Another base pipeline for this variant (relative to the sweep file), e.g. a model of
    /// another type whose table cannot be reached by overrides.
    #[serde(default)]
    pub base: Option<String>,
}

/// One run of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedRun {
    /// `<variant>/seed-<seed>`: the run's name, and its folder below the sweep's.
    pub id: String,
    /// The variant's name.
    pub variant: String,
    /// The seed.
    pub seed: u64,
    /// Every override, in order: the sweep's, the variant's, `seed=S`.
    pub sets: Vec<String>,
    /// The run folder.
    pub dir: PathBuf,
    /// Its base pipeline (none: the demo).
    pub base: Option<PathBuf>,
    /// Epochs the run is to train (`train.epochs` of its config).
    pub epochs: usize,
}

impl PlannedRun {
    /// The pipeline source of the run.
    pub fn source(&self) -> Source<'_> {
        match &self.base {
            Some(p) => Source::File(p),
            None => Source::Demo,
        }
    }
}

/// A sweep file resolved into its runs.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The sweep file.
    pub file: PathBuf,
    /// What it says.
    pub sweep: SweepFile,
    /// The base pipeline (none: the demo).
    pub base: Option<PathBuf>,
    /// The sweep's folder.
    pub out: PathBuf,
    /// Variant names in order.
    pub variants: Vec<String>,
    /// Every run: variants in order, seeds in order within each.
    pub runs: Vec<PlannedRun>,
}

impl Plan {
    /// The run folders by variant, named by the sweep file's stem, as [`report`] reads them.
    pub fn report_runs(&self) -> report::SweepRuns {
        let name = self
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let variants = self
            .variants
            .iter()
            .map(|v| {
                let runs = self.runs.iter().filter(|r| &r.variant == v);
                (v.clone(), runs.map(|r| (r.seed, r.dir.clone())).collect())
            })
            .collect();
        report::SweepRuns { name, variants }
    }

    /// The run named `id` (`<variant>/seed-<seed>`).
    pub fn run(&self, id: &str) -> Result<&PlannedRun> {
        self.runs.iter().find(|r| r.id == id).ok_or_else(|| {
            anyhow!(
                "{}: no run `{id}`; runs: {}",
                self.file.display(),
                self.runs
                    .iter()
                    .map(|r| r.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }

    /// Where the launchers keep each run's state and log (`OUT/.sweep/`).
    pub fn state_dir(&self) -> PathBuf {
        self.out.join(".sweep")
    }
}

/// Reads a sweep file and expands it into runs, without validating the pipelines.
pub fn read(file: &Path) -> Result<Plan> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read sweep file {}", file.display()))?;
    let sweep: SweepFile = toml::from_str(&text).map_err(|e| {
        anyhow!(
            "{}: {}",
            file.display(),
            config::with_suggestion(&e.to_string())
        )
    })?;
    let here = file.parent().unwrap_or(Path::new("."));
    let rel = |s: &str, key: &str| -> Result<PathBuf> {
        let p = PathBuf::from(config::expand_vars(s, key)?);
        Ok(if p.is_absolute() { p } else { here.join(p) })
    };
    let base = sweep.base.as_deref().map(|b| rel(b, "base")).transpose()?;
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sweep".into());
    let out = match &sweep.out {
        Some(o) => rel(o, "out")?,
        None => here.join("sweeps").join(&stem),
    };
    if sweep.seeds.is_empty() {
        bail!("{}: `seeds` is empty: give at least one", file.display());
    }
    let dup_seeds = sweep.seeds.len() != sweep.seeds.iter().collect::<BTreeSet<_>>().len();
    if dup_seeds {
        bail!("{}: `seeds` repeats a seed", file.display());
    }
    let named: Vec<Variant> = if sweep.variants.is_empty() {
        vec![Variant {
            name: "base".into(),
            set: vec![],
            base: None,
        }]
    } else {
        sweep.variants.clone()
    };
    let grid = grid_points(&sweep.grid);
    let mut variants: Vec<(String, Vec<String>, Option<PathBuf>)> = Vec::new();
    for v in &named {
        check_name(file, &v.name)?;
        let vbase = match &v.base {
            Some(b) => Some(rel(b, &format!("variants.{}.base", v.name))?),
            None => base.clone(),
        };
        for (gname, gsets) in &grid {
            let name = match (sweep.variants.is_empty(), gname.is_empty()) {
                (true, false) => gname.clone(),
                (_, true) => v.name.clone(),
                (false, false) => format!("{},{gname}", v.name),
            };
            let mut sets = v.set.clone();
            sets.extend(gsets.iter().cloned());
            variants.push((name, sets, vbase.clone()));
        }
    }
    let mut seen = BTreeSet::new();
    for (name, _, _) in &variants {
        if !seen.insert(name.clone()) {
            bail!("{}: two variants are named `{name}`", file.display());
        }
    }
    let mut runs = Vec::new();
    for (name, vsets, vbase) in &variants {
        for &seed in &sweep.seeds {
            let mut sets = sweep.set.clone();
            sets.extend(vsets.iter().cloned());
            sets.push(format!("seed={seed}"));
            let id = format!("{name}/seed-{seed}");
            runs.push(PlannedRun {
                dir: out.join(&id),
                base: vbase.clone(),
                id,
                variant: name.clone(),
                seed,
                sets,
                epochs: 0,
            });
        }
    }
    Ok(Plan {
        file: file.to_path_buf(),
        base,
        out,
        variants: variants.into_iter().map(|(n, _, _)| n).collect(),
        runs,
        sweep,
    })
}

/// Reads a sweep file and validates every run's full pipeline (every plugin built, the model
/// included) before anything runs; fills in each run's epochs. Errors name the variant.
pub fn load(registry: &Registry, file: &Path) -> Result<Plan> {
    let mut plan = read(file)?;
    for b in plan.runs.iter().filter_map(|r| r.base.as_ref()) {
        if !b.is_file() {
            bail!(
                "{}: base pipeline {} does not exist",
                file.display(),
                b.display()
            );
        }
    }
    let mut checked: BTreeMap<String, usize> = BTreeMap::new();
    let mut runs = std::mem::take(&mut plan.runs);
    for run in &mut runs {
        // Seeds do not change validity: check each variant once.
        let epochs = match checked.get(&run.variant) {
            Some(e) => *e,
            None => {
                let cfg = crate::train::check(registry, run.source(), &run.sets)
                    .with_context(|| format!("{}: variant `{}`", file.display(), run.variant))?;
                checked.insert(run.variant.clone(), cfg.train.epochs);
                cfg.train.epochs
            }
        };
        run.epochs = epochs;
    }
    for run in &runs {
        status::check_owner(&plan, run)?;
    }
    plan.runs = runs;
    Ok(plan)
}

/// Every combination of the grid's values: `(name, sets)`, keys in order; one empty point
/// when the grid is empty.
fn grid_points(grid: &BTreeMap<String, Vec<toml::Value>>) -> Vec<(String, Vec<String>)> {
    let mut points = vec![(String::new(), Vec::new())];
    for (key, values) in grid {
        let mut next = Vec::new();
        for (name, sets) in &points {
            for v in values {
                let value = v.to_string();
                let item = format!("{key}={value}");
                let name = if name.is_empty() {
                    item.clone()
                } else {
                    format!("{name},{item}")
                };
                let mut sets: Vec<String> = sets.clone();
                sets.push(item);
                next.push((name, sets));
            }
        }
        points = next;
    }
    points
}

fn check_name(file: &Path, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.,=+".contains(c));
    if !ok {
        bail!(
            "{}: variant name `{name}`: use letters, digits and - _ . , = + (it names a folder)",
            file.display()
        );
    }
    Ok(())
}

/// CPU threads of this machine.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let f = dir.join("s.toml");
        std::fs::write(&f, text).unwrap();
        f
    }

    #[test]
    fn variants_cross_the_grid_and_seeds() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            r#"
seeds = [1, 2]
set = ["train.epochs=2"]
out = "o"
[[variants]]
name = "a"
set = ["data.batch_size=8"]
[[variants]]
name = "b"
[grid]
"optim.transforms.0.lr" = [0.1, 0.01]
"#,
        );
        let p = read(&f).unwrap();
        assert_eq!(
            p.variants,
            [
                "a,optim.transforms.0.lr=0.1",
                "a,optim.transforms.0.lr=0.01",
                "b,optim.transforms.0.lr=0.1",
                "b,optim.transforms.0.lr=0.01"
            ]
        );
        assert_eq!(p.runs.len(), 8);
        let r = &p.runs[1];
        assert_eq!(r.id, "a,optim.transforms.0.lr=0.1/seed-2");
        assert_eq!(
            r.sets,
            [
                "train.epochs=2",
                "data.batch_size=8",
                "optim.transforms.0.lr=0.1",
                "seed=2"
            ]
        );
        assert_eq!(r.dir, dir.path().join("o").join(&r.id));
        assert!(p.base.is_none());
    }

    #[test]
    fn a_grid_alone_names_its_points_and_bad_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "[grid]\n\"data.batch_size\" = [8, 16]\n");
        let p = read(&f).unwrap();
        assert_eq!(p.variants, ["data.batch_size=8", "data.batch_size=16"]);
        assert_eq!(p.runs[0].id, "data.batch_size=8/seed-42");
        assert_eq!(p.out, dir.path().join("sweeps").join("s"));
        let f = write(dir.path(), "[[variants]]\nname = \"a/b\"\n");
        let e = read(&f).unwrap_err().to_string();
        assert!(e.contains("variant name `a/b`"), "{e}");
        let f = write(
            dir.path(),
            "[[variants]]\nname = \"a\"\n[[variants]]\nname = \"a\"\n",
        );
        let e = read(&f).unwrap_err().to_string();
        assert!(e.contains("two variants are named `a`"), "{e}");
        let f = write(dir.path(), "seed = [1]\n");
        let e = read(&f).unwrap_err().to_string();
        assert!(e.contains("s.toml") && e.contains("seed"), "{e}");
    }
}
