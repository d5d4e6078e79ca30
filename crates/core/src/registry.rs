//! The plugin registry: for each plugin kind, a table `name → constructor(params)`.
//!
//! Core registers nothing itself; `rnnlab_cli::registry()` returns the built-in plugins and a
//! downstream crate adds its own with one `add` call per plugin.

use std::borrow::Cow;
use std::sync::Arc;

use candle_core::Tensor;
use schemars::JsonSchema;
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    error::{not_one_of, suggest, UnknownName},
    Callback, Cell, Error, Link, Model, ParamBuilder, ParamInit, ReaderCtor, Result, Scheduler,
};

/// One parameter a plugin takes.
#[derive(Clone, Debug)]
pub struct ParamSpec {
    /// The key in the plugin's table.
    pub name: Cow<'static, str>,
    /// The default as a TOML literal (`"5.0"`, `"\"l2\""`, `"[3, 4, 5]"`); `None` when the key
    /// has none (required unless [`ParamSpec::optional`]).
    pub default: Option<Cow<'static, str>>,
    /// One line on what it does and which values it takes.
    pub doc: Cow<'static, str>,
    /// The key may be left out, and then has no value.
    pub optional: bool,
}

impl ParamSpec {
    /// A parameter with a default.
    pub const fn new(name: &'static str, default: &'static str, doc: &'static str) -> Self {
        ParamSpec {
            name: Cow::Borrowed(name),
            default: Some(Cow::Borrowed(default)),
            doc: Cow::Borrowed(doc),
            optional: false,
        }
    }

    /// A parameter the config must set.
    pub const fn required(name: &'static str, doc: &'static str) -> Self {
        ParamSpec {
            name: Cow::Borrowed(name),
            default: None,
            doc: Cow::Borrowed(doc),
            optional: false,
        }
    }

    /// How `rnnlab list` shows the default: the literal, `(required)` or `(none)`.
    pub fn default_shown(&self) -> &str {
        match (&self.default, self.optional) {
            (Some(d), _) => d,
            (None, true) => "(none)",
            (None, false) => "(required)",
        }
    }
}

/// A plugin's typed config, in the manner of burn's `Config`: a serde struct (with
/// `#[serde(deny_unknown_fields)]`) whose doc comments document its keys. The defaults are the
/// value given at registration ([`Table::register`]); `rnnlab list`, the suggestions for unknown
/// keys and the resolved config with every default filled in all come from it.
pub trait PluginConfig: JsonSchema + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Checks values and combinations the types cannot; `at` is the table's config path, for
    /// the error (`Error::invalid(format!("{at}.key"), ...)`).
    fn validate(&self, _at: &str) -> Result<()> {
        Ok(())
    }
}

/// A check for [`PluginConfig::validate`]: unless `ok`, the error at `{at}.{key}` that shows
/// `value` (as TOML) before `message`, as [`PluginParams::check`] words it.
pub fn check_value<V: Serialize + ?Sized>(
    at: &str,
    key: &str,
    value: &V,
    ok: bool,
    message: &str,
) -> Result<()> {
    if ok {
        return Ok(());
    }
    let shown = toml::Value::try_from(value)
        .map(|v| v.to_string())
        .unwrap_or_default();
    Err(Error::invalid(
        format!("{at}.{key}"),
        format!("{shown}: {message}"),
    ))
}

/// A plugin's name, description and parameters, as `rnnlab list` prints them.
#[derive(Clone, Debug)]
pub struct PluginSpec {
    /// The name the config's `type` key selects.
    pub name: &'static str,
    /// One line on what it is.
    pub doc: &'static str,
    /// Its parameters.
    pub params: Vec<ParamSpec>,
}

impl PluginSpec {
    /// The spec of a plugin with the typed config `C`: one parameter per field, documented by
    /// the field's doc comment, with its value in `defaults` as the default (a field `defaults`
    /// leaves out, such as a `None` skipped in serialization, is optional if its type is an
    /// `Option`, else required).
    ///
    /// Panics if `defaults` cannot be written as TOML: a mistake in the plugin, not in a config.
    pub fn typed<C: PluginConfig>(name: &'static str, doc: &'static str, defaults: &C) -> Self {
        let values = toml::Table::try_from(defaults).unwrap_or_else(|e| {
            panic!("plugin `{name}`: its default config is not a TOML table: {e}")
        });
        let schema = schemars::schema_for!(C);
        let required: Vec<&str> = schema
            .get("required")
            .and_then(|r| r.as_array())
            .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let params = schema
            .get("properties")
            .and_then(|p| p.as_object())
            .map(|props| {
                props
                    .iter()
                    .map(|(key, prop)| ParamSpec {
                        name: Cow::Owned(key.clone()),
                        default: values.get(key).map(|v| Cow::Owned(v.to_string())),
                        doc: Cow::Owned(
                            prop.get("description")
                                .and_then(|d| d.as_str())
                                .unwrap_or_default()
                                .split_whitespace()
                                .collect::<Vec<_>>()
                                .join(" "),
                        ),
                        optional: !values.contains_key(key) && !required.contains(&key.as_str()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        PluginSpec { name, doc, params }
    }
}

/// A plugin's parameters, validated against its spec, with defaults filled in.
#[derive(Clone, Debug)]
pub struct PluginParams {
    at: String,
    table: toml::Table,
    /// The keys every plugin of the kind takes ([`Table::set_shared`]): read by the caller, not
    /// part of the plugin's typed config.
    shared: Vec<String>,
}

impl PluginParams {
    /// Validates `table` (the plugin's config table, `type` included) against `specs`: unknown keys
    /// are errors that suggest the nearest valid key, missing required keys are errors, and
    /// defaults fill the rest. `at` is the table's config path, used in every error.
    pub fn parse(specs: &[ParamSpec], table: &toml::Table, at: &str) -> Result<Self> {
        let known: Vec<&str> = specs.iter().map(|s| s.name.as_ref()).collect();
        for key in table.keys() {
            if key != "type" && !known.contains(&key.as_str()) {
                return Err(Error::UnknownKey(Box::new(UnknownName {
                    kind: "key".into(),
                    name: key.clone(),
                    at: at.to_string(),
                    suggestion: suggest(key, known.iter().copied()),
                    known: if known.is_empty() {
                        "(none)".into()
                    } else {
                        known.join(", ")
                    },
                })));
            }
        }
        let mut filled = table.clone();
        for s in specs {
            if filled.contains_key(s.name.as_ref()) {
                continue;
            }
            match &s.default {
                Some(lit) => {
                    let v = parse_literal(lit).map_err(|e| {
                        Error::invalid(format!("{at}.{}", s.name), format!("bad default: {e}"))
                    })?;
                    filled.insert(s.name.to_string(), v);
                }
                None if s.optional => {}
                None => {
                    return Err(Error::invalid(
                        format!("{at}.{}", s.name),
                        format!("required: {}", s.doc),
                    ))
                }
            }
        }
        Ok(PluginParams {
            at: at.to_string(),
            table: filled,
            shared: Vec::new(),
        })
    }

    /// Parameters from a table without validation (tests, programmatic use).
    pub fn from_table(table: toml::Table, at: &str) -> Self {
        PluginParams {
            at: at.to_string(),
            table,
            shared: Vec::new(),
        }
    }

    /// The config path of `key`, for error messages.
    pub fn at(&self, key: &str) -> String {
        format!("{}.{key}", self.at)
    }

    /// The config path of the table.
    pub fn path(&self) -> &str {
        &self.at
    }

    /// The full table with defaults filled in (for the resolved config).
    pub fn table(&self) -> &toml::Table {
        &self.table
    }

    /// The table (without `type` and the kind's shared keys) as the typed config `C`,
    /// validated.
    pub fn typed<C: PluginConfig>(&self) -> Result<C> {
        let mut t = self.table.clone();
        t.remove("type");
        for key in &self.shared {
            t.remove(key);
        }
        let c: C = serde_path_to_error::deserialize(toml::Value::Table(t)).map_err(
            |e: serde_path_to_error::Error<toml::de::Error>| {
                let path = e.path().to_string();
                let (at, given) = match path.as_str() {
                    "." | "" => (self.at.clone(), None),
                    key => (format!("{}.{key}", self.at), self.table.get(key)),
                };
                Error::invalid(at, reword_serde_message(e.inner().message(), given))
            },
        )?;
        c.validate(&self.at)?;
        Ok(c)
    }

    /// The raw value of `key`.
    pub fn value(&self, key: &str) -> Result<&toml::Value> {
        self.table
            .get(key)
            .ok_or_else(|| Error::invalid(self.at(key), "missing"))
    }

    /// The value of `key` read with serde, as a typed config reads it (an enum by its names; a
    /// misspelt name gets the nearest suggested): for a key another plugin's config declares.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<T> {
        self.value(key)?
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| {
                Error::invalid(
                    self.at(key),
                    reword_serde_message(e.message(), self.table.get(key)),
                )
            })
    }

    /// Whether `key` is set (explicitly or by default).
    pub fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    /// A number (integers are accepted).
    pub fn f64(&self, key: &str) -> Result<f64> {
        match self.value(key)? {
            toml::Value::Float(f) => Ok(*f),
            toml::Value::Integer(i) => Ok(*i as f64),
            other => Err(Error::invalid(
                self.at(key),
                format!("expected a number, got {}", other.type_str()),
            )),
        }
    }

    /// A non-negative integer.
    pub fn usize(&self, key: &str) -> Result<usize> {
        match self.value(key)? {
            toml::Value::Integer(i) if *i >= 0 => Ok(*i as usize),
            other => Err(Error::invalid(
                self.at(key),
                format!("expected a non-negative integer, got {other}"),
            )),
        }
    }

    /// A boolean.
    pub fn bool(&self, key: &str) -> Result<bool> {
        match self.value(key)? {
            toml::Value::Boolean(b) => Ok(*b),
            other => Err(Error::invalid(
                self.at(key),
                format!("expected true or false, got {other}"),
            )),
        }
    }

    /// A string.
    pub fn str(&self, key: &str) -> Result<&str> {
        match self.value(key)? {
            toml::Value::String(s) => Ok(s),
            other => Err(Error::invalid(
                self.at(key),
                format!("expected a string, got {other}"),
            )),
        }
    }

    /// One of `choices`.
    pub fn choice(&self, key: &str, choices: &[&str]) -> Result<String> {
        let s = self.str(key)?;
        if choices.contains(&s) {
            Ok(s.to_string())
        } else {
            Err(Error::invalid(self.at(key), not_one_of(s, choices)))
        }
    }

    /// A list of numbers; an empty list is allowed.
    pub fn f64_list(&self, key: &str) -> Result<Vec<f64>> {
        match self.value(key)? {
            toml::Value::Array(a) => a
                .iter()
                .map(|v| match v {
                    toml::Value::Float(f) => Ok(*f),
                    toml::Value::Integer(i) => Ok(*i as f64),
                    other => Err(Error::invalid(
                        self.at(key),
                        format!("expected numbers, got {other}"),
                    )),
                })
                .collect(),
            other => Err(Error::invalid(
                self.at(key),
                format!("expected a list of numbers, got {other}"),
            )),
        }
    }

    /// A list of non-negative integers.
    pub fn usize_list(&self, key: &str) -> Result<Vec<usize>> {
        self.f64_list(key)?
            .into_iter()
            .map(|f| {
                if f >= 0.0 && f.fract() == 0.0 {
                    Ok(f as usize)
                } else {
                    Err(Error::invalid(
                        self.at(key),
                        format!("expected integers, got {f}"),
                    ))
                }
            })
            .collect()
    }

    /// Errors with `message` at `key` unless `ok`.
    pub fn check(&self, key: &str, ok: bool, message: &str) -> Result<()> {
        if ok {
            Ok(())
        } else {
            let shown = self
                .table
                .get(key)
                .map(|v| v.to_string())
                .unwrap_or_default();
            Err(Error::invalid(self.at(key), format!("{shown}: {message}")))
        }
    }
}

fn parse_literal(lit: &str) -> std::result::Result<toml::Value, toml::de::Error> {
    let t: toml::Table = toml::from_str(&format!("v = {lit}"))?;
    Ok(t["v"].clone())
}

/// Sizes a cell constructor is given.
#[derive(Clone, Debug)]
pub struct CellArgs {
    /// Input width.
    pub input_size: usize,
    /// Hidden width.
    pub hidden_size: usize,
    /// PyTorch's name suffix for this layer and direction: `l0`, `l1_reverse`, ...
    pub suffix: String,
}

/// What a model constructor is given besides its parameters.
pub struct ModelContext<'a> {
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Pretrained embedding rows `[vocab_size, dim]`, when the pipeline loads them.
    pub pretrained: Option<Tensor>,
    /// Keep the embedding fixed.
    pub freeze_embedding: bool,
    /// The padding token id.
    pub pad_id: u32,
    /// The registry, for models built from other plugins (cells).
    pub registry: &'a Registry,
}

/// Builds a cell for one layer and direction.
pub type CellCtor =
    Arc<dyn Fn(&PluginParams, &CellArgs, &mut ParamBuilder) -> Result<Box<dyn Cell>> + Send + Sync>;
/// Builds a model.
pub type ModelCtor = Arc<
    dyn Fn(&PluginParams, &ModelContext, &mut ParamInit) -> Result<Box<dyn Model>> + Send + Sync,
>;
/// Builds an entry of `optim.transforms`: a gradient transform or a weight hook.
pub type TransformCtor = Arc<dyn Fn(&PluginParams) -> Result<Link> + Send + Sync>;
/// Builds a scheduler from its parameters, the optimizer's base learning rate, and the registry
/// (for schedulers that wrap another, such as a warmup).
pub type SchedulerCtor =
    Arc<dyn Fn(&PluginParams, f64, &Registry) -> Result<Box<dyn Scheduler>> + Send + Sync>;
/// Builds a callback.
pub type CallbackCtor = Arc<dyn Fn(&PluginParams) -> Result<Box<dyn Callback>> + Send + Sync>;
/// A constructor from the plugin's parameters alone (transforms, callbacks, readers).
pub type Ctor<T> = Arc<dyn Fn(&PluginParams) -> Result<T> + Send + Sync>;

/// A registered plugin.
pub struct Entry<F> {
    /// Name, description, parameters.
    pub spec: PluginSpec,
    /// The constructor.
    pub ctor: F,
}

/// The plugins of one kind.
pub struct Table<F> {
    kind: &'static str,
    entries: Vec<Entry<F>>,
    shared: Vec<ParamSpec>,
}

impl<F: Clone> Table<F> {
    fn new(kind: &'static str) -> Self {
        Table {
            kind,
            entries: Vec::new(),
            shared: Vec::new(),
        }
    }

    /// The kind's name (`cell`, `transform`, ...).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Registers a plugin; a later entry with the same name replaces the earlier one.
    pub fn add(&mut self, spec: PluginSpec, ctor: F) {
        self.entries.retain(|e| e.spec.name != spec.name);
        self.entries.push(Entry { spec, ctor });
    }

    /// Parameters that every plugin of this kind takes besides its own (a cell's `hidden`, ...).
    pub fn set_shared(&mut self, shared: Vec<ParamSpec>) {
        self.shared = shared;
    }

    /// See [`Table::set_shared`].
    pub fn shared(&self) -> &[ParamSpec] {
        &self.shared
    }

    /// The registered plugins, in registration order.
    pub fn entries(&self) -> &[Entry<F>] {
        &self.entries
    }

    /// The registered names.
    pub fn names(&self) -> Vec<&'static str> {
        self.entries.iter().map(|e| e.spec.name).collect()
    }

    /// The entry called `name`; the error lists the known names and suggests the nearest.
    pub fn get(&self, name: &str, at: &str) -> Result<&Entry<F>> {
        self.entries
            .iter()
            .find(|e| e.spec.name == name)
            .ok_or_else(|| {
                Error::UnknownPlugin(Box::new(UnknownName {
                    kind: self.kind.to_string(),
                    name: name.to_string(),
                    at: at.to_string(),
                    suggestion: suggest(name, self.names()),
                    known: self.names().join(", "),
                }))
            })
    }

    /// Looks up the table's `type` (or `default_type` when absent) and validates the rest of the
    /// table against the plugin's parameters and the kind's shared ones.
    pub fn resolve(
        &self,
        table: &toml::Table,
        at: &str,
        default_type: Option<&str>,
    ) -> Result<(F, PluginParams)> {
        let name = match table.get("type") {
            Some(toml::Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(Error::invalid(
                    format!("{at}.type"),
                    format!("expected a string, got {other}"),
                ))
            }
            None => match default_type {
                Some(d) => d.to_string(),
                None => {
                    return Err(Error::invalid(
                        format!("{at}.type"),
                        format!("missing; known {}s: {}", self.kind, self.names().join(", ")),
                    ))
                }
            },
        };
        let entry = self.get(&name, &format!("{at}.type"))?;
        let mut specs = self.shared.clone();
        specs.extend(entry.spec.params.iter().cloned());
        let mut params = PluginParams::parse(&specs, table, at)?;
        params
            .table
            .insert("type".into(), toml::Value::String(name));
        params.shared = self.shared.iter().map(|s| s.name.to_string()).collect();
        Ok((entry.ctor.clone(), params))
    }
}

impl<T: 'static> Table<Ctor<T>> {
    /// Registers the plugin `name` with the typed config `C`: `defaults` gives every default,
    /// and `build` makes the plugin from a validated config. One line per plugin:
    /// `r.readers.register("tsv", "tab-separated columns", DelimitedConfig::tsv(), build)`.
    pub fn register<C: PluginConfig>(
        &mut self,
        name: &'static str,
        doc: &'static str,
        defaults: C,
        build: impl Fn(C) -> Result<T> + Send + Sync + 'static,
    ) {
        self.register_at(name, doc, defaults, move |c, _| build(c));
    }

    /// [`Table::register`] for a plugin that keeps its config path (`callbacks[2]`) for an
    /// error it may raise while running: `build` also gets the path.
    pub fn register_at<C: PluginConfig>(
        &mut self,
        name: &'static str,
        doc: &'static str,
        defaults: C,
        build: impl Fn(C, &str) -> Result<T> + Send + Sync + 'static,
    ) {
        let spec = PluginSpec::typed(name, doc, &defaults);
        self.add(
            spec,
            Arc::new(move |p: &PluginParams| build(p.typed()?, p.path())),
        );
    }
}

/// What a scheduler is built from besides its typed config.
pub struct SchedulerArgs<'a> {
    /// The optimizer's base learning rate.
    pub base_lr: f64,
    /// The config path of the scheduler's table (`optim.scheduler`), for errors.
    pub at: &'a str,
    /// The registry, for a schedule that wraps another (a warmup).
    pub registry: &'a Registry,
}

impl SchedulerArgs<'_> {
    /// The config path of `key` in the scheduler's table.
    pub fn at(&self, key: &str) -> String {
        format!("{}.{key}", self.at)
    }
}

impl Table<SchedulerCtor> {
    /// Registers the scheduler `name` with the typed config `C`, as [`Table::register`] does for
    /// the other kinds; `build` also gets the base rate, the config path and the registry.
    pub fn register<C: PluginConfig>(
        &mut self,
        name: &'static str,
        doc: &'static str,
        defaults: C,
        build: impl Fn(C, &SchedulerArgs) -> Result<Box<dyn Scheduler>> + Send + Sync + 'static,
    ) {
        let spec = PluginSpec::typed(name, doc, &defaults);
        let ctor = move |p: &PluginParams, base_lr: f64, registry: &Registry| {
            let args = SchedulerArgs {
                base_lr,
                at: p.path(),
                registry,
            };
            build(p.typed()?, &args)
        };
        self.add(spec, Arc::new(ctor));
    }
}

impl Table<CellCtor> {
    /// Registers the cell `name` with the typed config `C` (its own keys; the shared ones,
    /// `hidden`, `layers`, ..., are the encoder's), as [`Table::register`] does for the other
    /// kinds; `build` makes one layer and direction's cell.
    pub fn register<C: PluginConfig>(
        &mut self,
        name: &'static str,
        doc: &'static str,
        defaults: C,
        build: impl Fn(C, &CellArgs, &mut ParamBuilder) -> Result<Box<dyn Cell>> + Send + Sync + 'static,
    ) {
        let spec = PluginSpec::typed(name, doc, &defaults);
        let ctor = move |p: &PluginParams, args: &CellArgs, pb: &mut ParamBuilder| {
            build(p.typed()?, args, pb)
        };
        self.add(spec, Arc::new(ctor));
    }
}

impl Table<ModelCtor> {
    /// Registers the model `name` with the typed config `C`, as [`Table::register`] does for
    /// the other kinds; `build` also gets the config path (`model`), the data's context and
    /// where the parameters come from (fresh or a checkpoint): the model makes its store with
    /// [`ParamInit::builder`].
    pub fn register<C: PluginConfig>(
        &mut self,
        name: &'static str,
        doc: &'static str,
        defaults: C,
        build: impl Fn(C, &str, &ModelContext, &mut ParamInit) -> Result<Box<dyn Model>>
            + Send
            + Sync
            + 'static,
    ) {
        let spec = PluginSpec::typed(name, doc, &defaults);
        let ctor = move |p: &PluginParams, ctx: &ModelContext, init: &mut ParamInit| {
            build(p.typed()?, p.path(), ctx, init)
        };
        self.add(spec, Arc::new(ctor));
    }
}

/// serde's "unknown variant `mena`, expected one of `last`, `mean`, ..." in the words of
/// [`PluginParams::choice`], with the nearest variant suggested as for unknown keys:
/// "`mena` is not one of last, mean, max, did you mean `mean`?".
pub fn reword_unknown_variant(message: &str) -> String {
    if !message.starts_with("unknown variant") {
        return message.to_string();
    }
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    match quoted.split_first() {
        Some((given, known)) if !known.is_empty() => not_one_of(given, known),
        _ => message.to_string(),
    }
}

/// serde's message for a key whose value is `given`, in the words of [`PluginParams`]' getters:
/// an unknown variant as [`reword_unknown_variant`]; a non-string given for a named choice (toml
/// says "invalid type: unit variant, expected string only") as "expected a string, got 3".
fn reword_serde_message(message: &str, given: Option<&toml::Value>) -> String {
    match given {
        Some(v) if message.starts_with("invalid type: unit variant") && !v.is_str() => {
            format!("expected a string, got {v}")
        }
        _ => reword_unknown_variant(message),
    }
}

/// A key that a typed config declares `Option` only because it has no default (marked
/// `#[schemars(required)]`, so [`PluginParams`] has already refused a table without it):
/// its value, or an error naming `{at}.{key}`.
pub fn required<T>(value: Option<T>, at: &str, key: &str) -> Result<T> {
    value.ok_or_else(|| Error::invalid(format!("{at}.{key}"), "required"))
}

/// Every plugin kind's table.
pub struct Registry {
    /// Recurrent cells.
    pub cells: Table<CellCtor>,
    /// Whole models (recurrent classifier, CNN, ...).
    pub models: Table<ModelCtor>,
    /// Gradient transforms and optimizers.
    pub transforms: Table<TransformCtor>,
    /// Learning-rate schedulers.
    pub schedulers: Table<SchedulerCtor>,
    /// Callbacks and monitors.
    pub callbacks: Table<CallbackCtor>,
    /// Data-file readers (`data.type`).
    pub readers: Table<ReaderCtor>,
}

impl Registry {
    /// A registry with no plugins.
    pub fn empty() -> Self {
        Registry {
            cells: Table::new("cell"),
            models: Table::new("model"),
            transforms: Table::new("transform"),
            schedulers: Table::new("scheduler"),
            callbacks: Table::new("callback"),
            readers: Table::new("reader"),
        }
    }

    /// Builds the model of a `[model]` table (type `recurrent` when none is given) from `init`:
    /// fresh ([`ParamInit::new`]) or from a checkpoint ([`ParamInit::from_weights`]). The one
    /// way train, eval, predict and bench build a model; its parameters live in one store, the
    /// model's own ([`Model::params`]).
    pub fn model(
        &self,
        table: &toml::Table,
        ctx: &ModelContext,
        init: &mut ParamInit,
    ) -> Result<(Box<dyn Model>, PluginParams)> {
        let (ctor, p) = self.models.resolve(table, "model", Some("recurrent"))?;
        Ok((ctor(&p, ctx, init)?, p))
    }

    /// Builds a transform or weight hook from its config table.
    pub fn transform(&self, table: &toml::Table, at: &str) -> Result<(Link, PluginParams)> {
        let (ctor, p) = self.transforms.resolve(table, at, None)?;
        Ok((ctor(&p)?, p))
    }

    /// The learning rate a schedule starts from: the `lr` of the first link that has one (the
    /// optimizer), as PyTorch's schedulers read `param_groups[0]["lr"]`. `links` are the
    /// parameters [`Registry::transform`] returned, in `optim.transforms` order.
    pub fn base_lr(links: &[PluginParams]) -> Option<f64> {
        links
            .iter()
            .find(|p| p.has("lr"))
            .and_then(|p| p.f64("lr").ok())
    }

    /// Builds a scheduler from its config table and the optimizer's base learning rate.
    pub fn scheduler(
        &self,
        table: &toml::Table,
        at: &str,
        base_lr: f64,
    ) -> Result<(Box<dyn Scheduler>, PluginParams)> {
        let (ctor, p) = self.schedulers.resolve(table, at, Some("constant"))?;
        Ok((ctor(&p, base_lr, self)?, p))
    }

    /// Builds a callback from its config table.
    pub fn callback(
        &self,
        table: &toml::Table,
        at: &str,
    ) -> Result<(Box<dyn Callback>, PluginParams)> {
        let (ctor, p) = self.callbacks.resolve(table, at, None)?;
        Ok((ctor(&p)?, p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<ParamSpec> {
        vec![
            ParamSpec::new("max_norm", "5.0", "largest global norm"),
            ParamSpec::new("norm_type", "\"l2\"", "l2 or inf"),
            ParamSpec::required("lr", "learning rate"),
        ]
    }

    #[test]
    fn unknown_key_suggests_the_near_one() {
        let t: toml::Table = toml::from_str("max_nrom = 1.0\nlr = 0.1").unwrap();
        let e = PluginParams::parse(&specs(), &t, "optim.transforms[0]").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("unknown key `max_nrom` at `optim.transforms[0]`"),
            "{msg}"
        );
        assert!(msg.contains("did you mean `max_norm`?"), "{msg}");
    }

    #[test]
    fn defaults_fill_and_required_keys_are_enforced() {
        let t: toml::Table = toml::from_str("lr = 1").unwrap();
        let p = PluginParams::parse(&specs(), &t, "x").unwrap();
        assert_eq!(p.f64("max_norm").unwrap(), 5.0);
        assert_eq!(p.str("norm_type").unwrap(), "l2");
        assert_eq!(p.f64("lr").unwrap(), 1.0);
        let e = PluginParams::parse(&specs(), &toml::Table::new(), "x").unwrap_err();
        assert!(e.to_string().contains("`x.lr`: required"), "{e}");
    }

    /// A typed config for the test below.
    #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Clip {
        /// Largest global norm.
        max_norm: f64,
        /// l2 or inf.
        norm_type: String,
    }

    impl PluginConfig for Clip {}

    #[test]
    fn a_type_error_in_a_typed_config_names_its_key_and_integers_are_numbers() {
        let defaults = Clip {
            max_norm: 5.0,
            norm_type: "l2".into(),
        };
        let spec = PluginSpec::typed("clip", "doc", &defaults);
        let parse = |text: &str| {
            let t: toml::Table = toml::from_str(text).unwrap();
            PluginParams::parse(&spec.params, &t, "optim.transforms[0]")
                .unwrap()
                .typed::<Clip>()
        };
        let e = parse("max_norm = \"x\"").err().unwrap().to_string();
        assert!(e.contains("`optim.transforms[0].max_norm`"), "{e}");
        assert!(e.contains("invalid type"), "{e}");
        let c = parse("max_norm = 2").unwrap();
        assert_eq!(c.max_norm, 2.0);
        assert_eq!(c.norm_type, "l2");
    }

    #[test]
    fn unknown_plugin_lists_the_known_ones() {
        let mut t: Table<u8> = Table::new("transform");
        t.add(
            PluginSpec {
                name: "clip_global_norm",
                doc: "",
                params: vec![],
            },
            1,
        );
        let table: toml::Table = toml::from_str("type = \"clip_globl_norm\"").unwrap();
        let e = t
            .resolve(&table, "optim.transforms[0]", None)
            .err()
            .unwrap();
        let msg = e.to_string();
        assert!(msg.contains("did you mean `clip_global_norm`?"), "{msg}");
        assert!(msg.contains("known transforms: clip_global_norm"), "{msg}");
    }

    #[test]
    fn a_misspelt_variant_gets_the_nearest_suggested() {
        let m = "unknown variant `mena`, expected one of `last`, `mean`, `max`, `last_padded`";
        assert_eq!(
            reword_unknown_variant(m),
            "`mena` is not one of last, mean, max, last_padded, did you mean `mean`?"
        );
        let m = "unknown variant `batch`, expected `step` or `epoch`";
        assert_eq!(
            reword_unknown_variant(m),
            "`batch` is not one of step, epoch",
            "nothing is close to `batch`"
        );
        assert_eq!(reword_unknown_variant("invalid type"), "invalid type");
        // a number where a name is expected: said as the getters say it
        let unit = "invalid type: unit variant, expected string only";
        let three = toml::Value::Integer(3);
        assert_eq!(
            reword_serde_message(unit, Some(&three)),
            "expected a string, got 3"
        );
        assert_eq!(reword_serde_message(unit, None), unit);
    }
}
