//! The pipeline file: layered (file < env `RNNLAB__*` < `--set key=value`), `${VAR}`-expanded,
//! and validated once, here, at the border.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use rnnlab_core::ModeSetting;
use serde::{Deserialize, Serialize};

/// The default pipeline compiled into the binary (`pipelines/quickstart.toml`): `rnnlab train`
/// with no file runs it.
pub const DEMO_PIPELINE: &str = include_str!("../../../pipelines/quickstart.toml");

/// The workspace root this binary was built from.
pub fn workspace_root() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}

/// `RNNLAB_DATA`, or `../shared/data` beside the workspace root.
pub fn data_dir() -> PathBuf {
    match std::env::var_os("RNNLAB_DATA") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => workspace_root().join("../shared/data"),
    }
}

/// A whole pipeline after layering and validation of its fixed sections. Plugin tables
/// (`model`, `optim.transforms`, `optim.scheduler`, `callbacks`) are validated by the registry.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Seed of the run's one random generator.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Data: reader, split, tokenizer, embeddings, batching.
    pub data: rnnlab_data::DataConfig,
    /// The model table (`type` picks the model plugin; default `recurrent`).
    #[serde(default)]
    pub model: toml::Table,
    /// Gradient transforms and the scheduler.
    #[serde(default)]
    pub optim: OptimConfig,
    /// Callbacks, in order.
    #[serde(default)]
    pub callbacks: Vec<toml::Table>,
    /// Loop settings.
    #[serde(default)]
    pub train: TrainSection,
}

fn default_seed() -> u64 {
    42
}

/// The callbacks every run has unless its pipeline says `train.default_callbacks = false`: the
/// monitors `diagnose` reads, then the plots and TensorBoard's event file. They go after the
/// pipeline's own callbacks, which keep their indices (`callbacks[0]` in an error is the file's
/// first). A pipeline that lists one of these types keeps its own table for it.
pub const DEFAULT_CALLBACKS: [&str; 6] = [
    "grad_norm",
    "spectral",
    "predictions",
    "stability",
    "plots",
    "tensorboard",
];

impl PipelineConfig {
    /// Adds the [`DEFAULT_CALLBACKS`] the pipeline does not list, with their default settings,
    /// after the listed callbacks, when `train.default_callbacks` is on.
    pub fn add_default_callbacks(&mut self) {
        if !self.train.default_callbacks {
            return;
        }
        let listed = |ty: &str| {
            self.callbacks
                .iter()
                .any(|c| c.get("type").and_then(|v| v.as_str()) == Some(ty))
        };
        let table = |ty: &str| {
            let mut t = toml::Table::new();
            t.insert("type".into(), ty.into());
            t
        };
        let missing: Vec<&str> = DEFAULT_CALLBACKS
            .iter()
            .copied()
            .filter(|ty| !listed(ty))
            .collect();
        self.callbacks.extend(missing.into_iter().map(table));
    }
}

/// `[optim]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    /// Transforms in the order they apply; the optimizer is one of them.
    #[serde(default = "default_transforms")]
    pub transforms: Vec<toml::Table>,
    /// The learning-rate scheduler (default `constant`).
    #[serde(default)]
    pub scheduler: toml::Table,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            transforms: default_transforms(),
            scheduler: toml::Table::new(),
        }
    }
}

fn default_transforms() -> Vec<toml::Table> {
    let mut t = toml::Table::new();
    t.insert("type".into(), "adam".into());
    vec![t]
}

/// `[train]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// Epochs to train.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// CPU threads for tensor work (0: all cores).
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// The metric that picks the best checkpoint.
    #[serde(default = "default_monitor")]
    pub monitor: String,
    /// `max`, `min`, or `auto` (min for a name containing `loss`, else max): which way
    /// `monitor` improves.
    #[serde(default)]
    pub mode: ModeSetting,
    /// Show a progress bar when stderr is a terminal.
    #[serde(default = "default_true")]
    pub progress: bool,
    /// Add the default callbacks ([`DEFAULT_CALLBACKS`]) of a type the pipeline does not list
    /// (default true; false: only the listed callbacks run).
    #[serde(default = "default_true")]
    pub default_callbacks: bool,
}

impl TrainSection {
    /// Which way `monitor` improves: `mode`, with `auto` read from the metric's name.
    pub fn monitor_mode(&self) -> rnnlab_core::Mode {
        self.mode.for_metric(&self.monitor)
    }
}

impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            epochs: default_epochs(),
            threads: default_threads(),
            monitor: default_monitor(),
            mode: ModeSetting::Auto,
            progress: true,
            default_callbacks: true,
        }
    }
}

fn default_epochs() -> usize {
    10
}
fn default_threads() -> usize {
    2
}
fn default_monitor() -> String {
    "val_acc".into()
}
fn default_true() -> bool {
    true
}

/// Where a pipeline's text comes from.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// A file on disk.
    File(&'a Path),
    /// The embedded demo pipeline.
    Demo,
}

impl Source<'_> {
    /// The file's path, or `<embedded quickstart.toml>`.
    pub fn label(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Demo => "<embedded quickstart.toml>".into(),
        }
    }
}

/// Reads, layers, expands and validates a pipeline. Errors name the file, and the line for
/// errors in the file itself.
pub fn load(source: Source, sets: &[String]) -> Result<PipelineConfig> {
    let label = source.label();
    // A run folder's own config (resume, eval, predict, or trained again) may predate the
    // reader registry: migrate its `[data]` table. A user's file is taken as written.
    let run_config = matches!(source, Source::File(p)
        if p.file_name() == Some(std::ffi::OsStr::new("config.resolved.toml")));
    let text = match source {
        Source::File(p) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read pipeline {}", p.display()))?,
        Source::Demo => DEMO_PIPELINE.to_string(),
    };
    // The file alone first, straight from its text: the toml crate reports line and column for
    // syntax errors and for unknown or mistyped keys of the fixed sections.
    toml::from_str::<PipelineConfig>(&text)
        .map_err(|e| anyhow!("{label}: {}", with_suggestion(&e.to_string())))?;

    // Then the layers: file < environment (RNNLAB__TRAIN__EPOCHS=3) < --set. A `--set` of a
    // plugin table with another `type` replaces the file's table instead of merging into it.
    let text = without_replaced_plugins(&text, sets)?;
    let sets = &without_replaced_reader_sets(&text, sets)?;
    let mut builder = config::Config::builder()
        .add_source(config::File::from_str(&text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("RNNLAB")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
    for s in sets {
        let (key, value) = parse_set(s)?;
        builder = builder
            .set_override(config_path(&key), to_config_value(&value))
            .with_context(|| format!("--set {s}"))?;
    }
    let merged: toml::Table = builder
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| anyhow!("{label}: {e}"))?;
    let merged = expand_table(merged, "").map_err(|e| anyhow!("{label}: {e}"))?;
    let mut cfg: PipelineConfig = toml::Value::Table(merged).try_into().map_err(|e| {
        anyhow!(
            "{label} (with environment and --set): {}",
            with_suggestion(&e.to_string())
        )
    })?;
    if run_config {
        rnnlab_data::readers::drop_legacy_keys(&mut cfg.data);
    }
    validate(&cfg).map_err(|e| anyhow!("{label}: {e}"))?;
    Ok(cfg)
}

fn validate(cfg: &PipelineConfig) -> Result<()> {
    if cfg.train.epochs == 0 {
        bail!("invalid value for `train.epochs`: 0: must be at least 1");
    }
    if cfg.optim.transforms.is_empty() {
        bail!("`optim.transforms` is empty: it needs at least an optimizer (e.g. {{ type = \"adam\" }})");
    }
    Ok(())
}

/// Says where the value behind a plugin error comes from: a registry error (unknown plugin or
/// key, bad value) names a config path such as `optim.transforms[0].max_nrom`; this prefixes it
/// with `FILE, line N` when the pipeline file sets that key, or with the `--set` that does.
pub fn locate_error(e: rnnlab_core::Error, source: &Source, sets: &[String]) -> anyhow::Error {
    use rnnlab_core::Error as E;
    let path = match &e {
        E::UnknownKey(u) => format!("{}.{}", u.at, u.name),
        E::UnknownPlugin(u) => u.at.clone(),
        E::InvalidValue { at, .. } => at.clone(),
        _ => return anyhow!("{}: {e}", source.label()),
    };
    let segments = path_segments(&path);
    let from_set = sets.iter().find(|s| {
        let key = s.split_once('=').map_or(s.as_str(), |(k, _)| k).trim();
        let key = path_segments(key);
        let n = key.len().min(segments.len());
        n > 0 && key[..n] == segments[..n]
    });
    if let Some(set) = from_set {
        return anyhow!("--set {set}: {e}");
    }
    let text = match source {
        Source::File(p) => std::fs::read_to_string(p).ok(),
        Source::Demo => Some(DEMO_PIPELINE.to_string()),
    };
    match text.and_then(|t| line_of(&t, &segments)) {
        Some(line) => anyhow!("{}, line {line}: {e}", source.label()),
        None => anyhow!("{}: {e}", source.label()),
    }
}

/// `optim.transforms[0].lr` or `optim.transforms.0.lr` → `["optim", "transforms", "0", "lr"]`.
fn path_segments(path: &str) -> Vec<String> {
    path.replace('[', ".")
        .replace(']', "")
        .split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The 1-based line of the key at `segments` in the TOML `text` (for an array entry, the line
/// where the entry starts), if the text sets it.
fn line_of(text: &str, segments: &[String]) -> Option<usize> {
    enum Node<'a> {
        Item(&'a toml_edit::Item),
        Value(&'a toml_edit::Value),
        Table(&'a toml_edit::Table),
    }
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut node = Node::Table(doc.as_table());
    let mut span = None;
    for seg in segments {
        let table_like = match &node {
            Node::Table(t) => Some(*t as &dyn toml_edit::TableLike),
            Node::Item(i) => i.as_table_like(),
            Node::Value(v) => v.as_inline_table().map(|t| t as &dyn toml_edit::TableLike),
        };
        if let Some(t) = table_like {
            let (key, item) = t.get_key_value(seg)?;
            span = key.span().or(span);
            node = Node::Item(item);
            continue;
        }
        let i: usize = seg.parse().ok()?;
        node = match node {
            Node::Item(toml_edit::Item::ArrayOfTables(a)) => {
                let t = a.get(i)?;
                span = t.span().or(span);
                Node::Table(t)
            }
            Node::Item(toml_edit::Item::Value(toml_edit::Value::Array(a)))
            | Node::Value(toml_edit::Value::Array(a)) => {
                let v = a.get(i)?;
                span = v.span().or(span);
                Node::Value(v)
            }
            _ => return None,
        };
    }
    let start = span?.start;
    Some(text[..start.min(text.len())].matches('\n').count() + 1)
}

/// Splits `key=value` and parses the value as TOML (a bare word that is not TOML is a string).
pub fn parse_set(s: &str) -> Result<(String, toml::Value)> {
    let (key, raw) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("--set expects key=value, got `{s}`"))?;
    let key = key.trim().to_string();
    if key.is_empty() {
        bail!("--set expects key=value, got `{s}`");
    }
    let raw = raw.trim();
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or(toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    Ok((key, value))
}

/// The pipeline text without the plugin tables that a `--set` replaces: a set whose value is a
/// table with a `type` other than the file's table at that key (`model.cell={type="lstm", ...}`
/// on an RNN whose table has `nonlinearity`), and the reader's keys of `[data]` when a
/// `--set data.type=...` names another reader. Tables of the same type still merge.
fn without_replaced_plugins(text: &str, sets: &[String]) -> Result<String> {
    let mut base = toml::Value::Table(toml::from_str(text)?);
    let mut replaced = false;
    for s in sets {
        let (key, value) = parse_set(s)?;
        // Another reader: the file's keys of its reader go, the shared [data] keys stay.
        if key == "data.type" {
            if let Some(data) = table_at(&mut base, &["data"]) {
                let old = data.get("type").and_then(|t| t.as_str()).unwrap_or("tsv");
                if value.as_str().is_some_and(|new| new != old) {
                    data.retain(|k, _| rnnlab_data::readers::SHARED_KEYS.contains(&k));
                    replaced = true;
                }
            }
            continue;
        }
        let Some(new_type) = value.as_table().and_then(|t| t.get("type")) else {
            continue;
        };
        let parts: Vec<&str> = key.split('.').collect();
        let Some((last, parents)) = parts.split_last() else {
            continue;
        };
        if let Some(holder) = table_at(&mut base, parents) {
            let old_type = holder
                .get(*last)
                .and_then(|v| v.as_table())
                .and_then(|t| t.get("type"));
            if old_type.is_some_and(|t| t != new_type) {
                holder.remove(*last);
                replaced = true;
            }
        }
    }
    Ok(if replaced {
        toml::to_string(&base)?
    } else {
        text.to_string()
    })
}

/// `sets` without those that set a reader key of `[data]` (`data.size`) before a later
/// `data.type=...` names another reader: its keys go with it, as the file's do.
fn without_replaced_reader_sets(text: &str, sets: &[String]) -> Result<Vec<String>> {
    let base: toml::Table = toml::from_str(text)?;
    let mut reader = base
        .get("data")
        .and_then(|d| d.get("type"))
        .and_then(|t| t.as_str())
        .unwrap_or("tsv")
        .to_string();
    let mut kept: Vec<String> = Vec::new();
    for s in sets {
        let (key, value) = parse_set(s)?;
        if key == "data.type" {
            if let Some(new) = value.as_str().filter(|new| *new != reader) {
                kept.retain(|k| {
                    let key = k.split_once('=').map_or(k.as_str(), |(k, _)| k).trim();
                    match key.strip_prefix("data.") {
                        Some(rest) => {
                            let first = rest.split('.').next().unwrap_or(rest);
                            rnnlab_data::readers::SHARED_KEYS.contains(&first)
                        }
                        None => true,
                    }
                });
                reader = new.to_string();
            }
        }
        kept.push(s.clone());
    }
    Ok(kept)
}

/// The table at a dotted path of table keys and array indices, if there is one.
fn table_at<'a>(v: &'a mut toml::Value, path: &[&str]) -> Option<&'a mut toml::Table> {
    match path.split_first() {
        None => v.as_table_mut(),
        Some((p, rest)) => {
            let next = match v {
                toml::Value::Table(t) => t.get_mut(*p)?,
                toml::Value::Array(a) => a.get_mut(p.parse::<usize>().ok()?)?,
                _ => return None,
            };
            table_at(next, rest)
        }
    }
}

/// `optim.transforms.0.max_norm` → `optim.transforms[0].max_norm` (the config crate's syntax).
fn config_path(key: &str) -> String {
    let mut out = String::new();
    for part in key.split('.') {
        if !out.is_empty() && part.chars().all(|c| c.is_ascii_digit()) && !part.is_empty() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// A TOML value as the `config` crate's.
pub fn to_config_value(v: &toml::Value) -> config::Value {
    use config::ValueKind;
    let kind = match v {
        toml::Value::String(s) => ValueKind::String(s.clone()),
        toml::Value::Integer(i) => ValueKind::I64(*i),
        toml::Value::Float(f) => ValueKind::Float(*f),
        toml::Value::Boolean(b) => ValueKind::Boolean(*b),
        toml::Value::Datetime(d) => ValueKind::String(d.to_string()),
        toml::Value::Array(a) => ValueKind::Array(a.iter().map(to_config_value).collect()),
        toml::Value::Table(t) => ValueKind::Table(
            t.iter()
                .map(|(k, v)| (k.clone(), to_config_value(v)))
                .collect(),
        ),
    };
    config::Value::new(None, kind)
}

fn expand_table(t: toml::Table, at: &str) -> Result<toml::Table> {
    t.into_iter()
        .map(|(k, v)| {
            let path = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            Ok((k, expand_value(v, &path)?))
        })
        .collect()
}

fn expand_value(v: toml::Value, at: &str) -> Result<toml::Value> {
    Ok(match v {
        toml::Value::String(s) => toml::Value::String(expand_vars(&s, at)?),
        toml::Value::Array(a) => toml::Value::Array(
            a.into_iter()
                .enumerate()
                .map(|(i, v)| expand_value(v, &format!("{at}.{i}")))
                .collect::<Result<_>>()?,
        ),
        toml::Value::Table(t) => toml::Value::Table(expand_table(t, at)?),
        other => other,
    })
}

/// Replaces `${VAR}` with the environment's value; `RNNLAB_DATA` defaults to [`data_dir`].
pub fn expand_vars(s: &str, at: &str) -> Result<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| anyhow!("`{at}`: unclosed `${{` in \"{s}\""))?;
        let name = &after[..end];
        let value = match std::env::var(name) {
            Ok(v) if !v.is_empty() => v,
            _ if name == "RNNLAB_DATA" => data_dir().display().to_string(),
            _ => bail!("`{at}`: environment variable `{name}` is not set (used in \"{s}\")"),
        };
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Appends ", did you mean `x`?" to serde's "unknown field `y`, expected one of ..." messages,
/// and words "unknown variant" as the typed plugin configs do ("`y` is not one of ...").
pub fn with_suggestion(msg: &str) -> String {
    if let Some(pos) = msg.find("unknown variant `") {
        // the typed configs' wording, with the nearest value suggested
        let (head, tail) = msg.split_at(pos);
        let end = tail.find('\n').unwrap_or(tail.len());
        let (line, rest) = tail.split_at(end);
        return format!("{head}{}{rest}", rnnlab_core::reword_unknown_variant(line));
    }
    let Some(pos) = msg.find("unknown field `") else {
        return msg.to_string();
    };
    let after = &msg[pos + "unknown field `".len()..];
    let Some(end) = after.find('`') else {
        return msg.to_string();
    };
    let field = &after[..end];
    let Some(exp) = after.find("expected") else {
        return msg.to_string();
    };
    let expected: Vec<&str> = after[exp..].split('`').skip(1).step_by(2).collect();
    let hint = rnnlab_core::suggest(field, expected.iter().copied());
    if hint.is_empty() {
        msg.to_string()
    } else {
        format!("{}{hint}", msg.trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_parse_as_toml() {
        assert_eq!(
            parse_set("train.epochs=3").unwrap().1,
            toml::Value::Integer(3)
        );
        assert_eq!(parse_set("a.b = 1e-3").unwrap().1, toml::Value::Float(1e-3));
        assert_eq!(
            parse_set("x=lstm").unwrap().1,
            toml::Value::String("lstm".into())
        );
        assert_eq!(
            parse_set("x=\"gru\"").unwrap().1,
            toml::Value::String("gru".into())
        );
        assert!(parse_set("novalue").is_err());
    }

    #[test]
    fn numeric_segments_become_indices() {
        assert_eq!(
            config_path("optim.transforms.0.max_norm"),
            "optim.transforms[0].max_norm"
        );
    }

    #[test]
    fn only_a_run_folders_config_drops_the_pre_registry_data_keys() {
        // `[data]` as config.resolved.toml held it before readers were a registry.
        let text = "[data]\ntype = \"tsv\"\npath = \"x.tsv\"\ntext = \"Phrase\"\n\
                    size = 6000\nby_class = false\nphrases = false\n";
        let dir = tempfile::tempdir().unwrap();
        let data_keys = |name: &str| -> Vec<String> {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            let cfg = load(Source::File(&p), &[]).unwrap();
            cfg.data.reader.keys().cloned().collect()
        };
        // tsv takes none of `size`, `by_class`, `phrases` (the demo's, lines-per-class's, sst's).
        assert_eq!(data_keys("config.resolved.toml"), ["text"]);
        assert_eq!(
            data_keys("mine.toml"),
            ["by_class", "phrases", "size", "text"]
        );
    }

    #[test]
    fn a_misspelt_mode_is_refused_with_its_line_and_the_near_value() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.toml");
        let text = "[data]\ntype = \"demo\"\n[train]\nepochs = 1\nmode = \"maxi\"\n";
        std::fs::write(&p, text).unwrap();
        let e = load(Source::File(&p), &[]).unwrap_err().to_string();
        assert!(e.contains("line 5"), "{e}");
        assert!(
            e.contains("`maxi` is not one of auto, max, min, did you mean `max`?"),
            "{e}"
        );
        let sets = ["train.mode=mni".to_string()];
        std::fs::write(&p, text.replace("maxi", "min")).unwrap();
        assert_eq!(
            load(Source::File(&p), &[]).unwrap().train.mode,
            ModeSetting::Min
        );
        let e = load(Source::File(&p), &sets).unwrap_err().to_string();
        assert!(
            e.contains("`mni` is not one of auto, max, min, did you mean `min`?"),
            "{e}"
        );
        assert!(e.contains("train.mode"), "{e}");
    }

    /// A `--set` of a plugin table with another type replaces it (the RNN's `nonlinearity`
    /// goes with it); with the same type, it merges (the other keys stay).
    #[test]
    fn a_set_table_of_another_type_replaces_the_plugin_table() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.toml");
        std::fs::write(
            &p,
            "[data]\ntype = \"demo\"\n[model]\ntype = \"recurrent\"\ncell = { type = \"rnn\", nonlinearity = \"relu\", hidden = 16 }\n",
        )
        .unwrap();
        let cell = |sets: &[&str]| -> toml::Table {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            load(Source::File(&p), &sets).unwrap().model["cell"]
                .as_table()
                .unwrap()
                .clone()
        };
        let lstm = cell(&["model.cell={type=\"lstm\", hidden=32}"]);
        assert_eq!(
            lstm,
            toml::from_str("type = \"lstm\"\nhidden = 32").unwrap()
        );
        let rnn = cell(&["model.cell={type=\"rnn\", hidden=32}"]);
        assert_eq!(
            rnn,
            toml::from_str("type = \"rnn\"\nnonlinearity = \"relu\"\nhidden = 32").unwrap()
        );
        // A later key set inside the new table still applies.
        let lstm = cell(&["model.cell={type=\"lstm\"}", "model.cell.hidden=8"]);
        assert_eq!(lstm, toml::from_str("type = \"lstm\"\nhidden = 8").unwrap());
    }

    /// The default callbacks the pipeline does not list, after its own; a listed type keeps
    /// its table; `train.default_callbacks = false` adds none.
    #[test]
    fn default_callbacks_fill_in_the_types_a_pipeline_does_not_list() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.toml");
        std::fs::write(
            &p,
            "[data]\ntype = \"demo\"\n[[callbacks]]\ntype = \"early_stopping\"\n[[callbacks]]\ntype = \"grad_norm\"\nwarn = 2.0\n",
        )
        .unwrap();
        let types = |sets: &[&str]| -> Vec<String> {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            let mut cfg = load(Source::File(&p), &sets).unwrap();
            cfg.add_default_callbacks();
            cfg.callbacks
                .iter()
                .map(|c| {
                    let ty = c["type"].as_str().unwrap();
                    match c.get("warn") {
                        Some(w) => format!("{ty}(warn={w})"),
                        None => ty.to_string(),
                    }
                })
                .collect()
        };
        assert_eq!(
            types(&[]),
            [
                "early_stopping",
                "grad_norm(warn=2.0)",
                "spectral",
                "predictions",
                "stability",
                "plots",
                "tensorboard"
            ]
        );
        assert_eq!(
            types(&["train.default_callbacks=false"]),
            ["early_stopping", "grad_norm(warn=2.0)"]
        );
        // Adding twice (a resolved config read back) adds nothing more.
        let mut cfg = load(Source::File(&p), &[]).unwrap();
        cfg.add_default_callbacks();
        let once = cfg.callbacks.clone();
        cfg.add_default_callbacks();
        assert_eq!(cfg.callbacks, once);
    }

    #[test]
    fn suggestion_is_appended_to_unknown_fields() {
        let m = "unknown field `epochz`, expected one of `epochs`, `threads`";
        assert!(with_suggestion(m).ends_with("did you mean `epochs`?"));
    }

    #[test]
    fn keys_inside_plugin_tables_are_found_on_their_line() {
        let text = "seed = 1\n[optim]\ntransforms = [\n  { type = \"clip_global_norm\" },\n  { type = \"adam\", lr = 0.1 },\n]\n[[callbacks]]\ntype = \"grad_norm\"\n\n[[callbacks]]\ntype = \"early_stopping\"\nmonitor = \"val_los\"\n";
        let line = |p: &str| line_of(text, &path_segments(p));
        assert_eq!(line("optim.transforms[1].lr"), Some(5));
        assert_eq!(line("optim.transforms[0].type"), Some(4));
        assert_eq!(line("callbacks[1].monitor"), Some(12));
        assert_eq!(line("callbacks[0].type"), Some(8));
        assert_eq!(line("callbacks[1].patience"), None);
        assert_eq!(line("seed"), Some(1));
    }

    #[test]
    fn unset_variables_are_errors_naming_the_key() {
        let e = expand_vars("${RNNLAB_SURELY_UNSET_VAR}/x", "data.path").unwrap_err();
        assert!(e.to_string().contains("`data.path`"), "{e}");
        assert!(e.to_string().contains("RNNLAB_SURELY_UNSET_VAR"), "{e}");
    }
}
