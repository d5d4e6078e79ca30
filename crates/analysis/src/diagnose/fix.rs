//! The fixes diagnose prints: complete `--set` override sets written against the run's own
//! resolved pipeline, none repeating what the run already does.

use std::path::Path;

/// One fix: the `--set` overrides that apply it to the run's own pipeline, and what it does.
///
/// Each fix is complete on its own: `rnnlab train <run>/config.resolved.toml --set ...` with its
/// overrides alone is a valid pipeline that differs from the run's. Fixes are alternatives to try
/// one at a time, not steps to stack (two fixes may each rewrite `optim.transforms`).
#[derive(Clone, Debug, PartialEq)]
pub struct Fix {
    /// The overrides, each `key=value` as `--set` takes it.
    pub sets: Vec<String>,
    /// What the fix does.
    pub why: String,
}

impl Fix {
    pub(super) fn new(sets: Vec<String>, why: impl Into<String>) -> Fix {
        Fix {
            sets,
            why: why.into(),
        }
    }

    pub(super) fn one(set: String, why: impl Into<String>) -> Fix {
        Fix::new(vec![set], why)
    }

    /// The command-line arguments: `--set key=value` for each override.
    pub fn args(&self) -> Vec<String> {
        self.sets
            .iter()
            .flat_map(|s| ["--set".to_string(), s.clone()])
            .collect()
    }
}

impl std::fmt::Display for Fix {
    /// `--set key=value ... (why)`, each override quoted for a POSIX shell when it needs it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plain = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._=-+:/,".contains(c))
        };
        for s in &self.sets {
            if plain(s) {
                write!(f, "--set {s} ")?;
            } else {
                write!(f, "--set '{}' ", s.replace('\'', "'\\''"))?;
            }
        }
        write!(f, "({})", self.why)
    }
}

/// What the fixes are written against: the run's resolved pipeline.
pub(super) struct RunConfig {
    pub(super) transforms: Vec<toml::Table>,
    pub(super) callbacks: Vec<toml::Table>,
    pub(super) scheduler: Option<toml::Table>,
    pub(super) shuffle: Option<bool>,
    pub(super) sort_by_length: Option<bool>,
    pub(super) batch_size: Option<i64>,
    pub(super) dropout: Option<f64>,
    /// `model.pooling`: how the classifier reads the sequence of states.
    pub(super) pooling: Option<String>,
    pub(super) cell: Option<toml::Table>,
    /// Rows of the val and test splits (data_report.json), for the noise of their accuracies.
    pub(super) rows: Option<[usize; 2]>,
    /// Number of classes (labels.json).
    pub(super) classes: Option<usize>,
}

/// A TOML number as f64.
pub(super) fn number(v: &toml::Value) -> Option<f64> {
    v.as_float().or(v.as_integer().map(|x| x as f64))
}

impl RunConfig {
    pub(super) fn read(run: &Path) -> RunConfig {
        let table: toml::Table = std::fs::read_to_string(run.join("config.resolved.toml"))
            .ok()
            .and_then(|t| toml::from_str(&t).ok())
            .unwrap_or_default();
        let get = |path: &[&str]| -> Option<toml::Value> {
            let mut v = toml::Value::Table(table.clone());
            for p in path {
                v = v.as_table()?.get(*p)?.clone();
            }
            Some(v)
        };
        let tables = |v: Option<toml::Value>| -> Vec<toml::Table> {
            v.and_then(|v| v.as_array().cloned())
                .unwrap_or_default()
                .into_iter()
                .filter_map(|v| v.as_table().cloned())
                .collect()
        };
        RunConfig {
            transforms: tables(get(&["optim", "transforms"])),
            callbacks: tables(get(&["callbacks"])),
            scheduler: get(&["optim", "scheduler"]).and_then(|v| v.as_table().cloned()),
            shuffle: get(&["data", "shuffle"]).and_then(|v| v.as_bool()),
            sort_by_length: get(&["data", "sort_by_length"]).and_then(|v| v.as_bool()),
            batch_size: get(&["data", "batch_size"]).and_then(|v| v.as_integer()),
            dropout: get(&["model", "dropout"]).as_ref().and_then(number),
            pooling: get(&["model", "pooling"]).and_then(|v| v.as_str().map(String::from)),
            cell: get(&["model", "cell"]).and_then(|v| v.as_table().cloned()),
            rows: std::fs::read_to_string(run.join("data_report.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| {
                    let n = |s: &str| v["rows"][s].as_u64().map(|x| x as usize);
                    Some([n("val")?, n("test")?])
                }),
            classes: std::fs::read_to_string(run.join("labels.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<Vec<serde_json::Value>>(&t).ok())
                .map(|l| l.len()),
        }
    }

    pub(super) fn kind(t: &toml::Table) -> &str {
        t.get("type").and_then(|v| v.as_str()).unwrap_or("?")
    }

    /// Index and learning rate of the optimizer (the first transform with an `lr`).
    pub(super) fn optimizer(&self) -> Option<(usize, f64)> {
        self.transforms
            .iter()
            .enumerate()
            .find_map(|(i, t)| Some((i, number(t.get("lr")?)?)))
    }

    pub(super) fn find(&self, kind: &str) -> Option<usize> {
        self.transforms.iter().position(|t| Self::kind(t) == kind)
    }

    /// The transform list with `extra` inserted at `at`, as one override.
    pub(super) fn with_transform(&self, at: Insert, extra: &str) -> String {
        let mut items: Vec<String> = self.transforms.iter().map(inline_table).collect();
        match at {
            Insert::Front => items.insert(0, extra.to_string()),
            Insert::BeforeOptimizer => {
                let i = self.optimizer().map(|o| o.0).unwrap_or(items.len());
                items.insert(i, extra.to_string());
            }
            Insert::Back => items.push(extra.to_string()),
        }
        format!("optim.transforms=[{}]", items.join(", "))
    }

    /// A transform of `kind` added at `at`; none when the run has one already.
    pub(super) fn add_transform(
        &self,
        kind: &str,
        at: Insert,
        extra: &str,
        why: &str,
    ) -> Option<Fix> {
        match self.find(kind) {
            Some(_) => None,
            None => Some(Fix::one(self.with_transform(at, extra), why)),
        }
    }

    pub(super) fn lower_lr(&self, factor: f64) -> Option<Fix> {
        let (i, lr) = self.optimizer()?;
        Some(Fix::one(
            format!("optim.transforms.{i}.lr={}", fmt_num(lr / factor)),
            format!("the learning rate / {factor}"),
        ))
    }

    /// Clipping the global norm at `max_norm`; none when the run clips at that or lower already.
    pub(super) fn clip(&self, max_norm: f64, why: &str) -> Option<Fix> {
        let why = format!("clip the global norm at {}{why}", fmt_num(max_norm));
        match self.find("clip_global_norm") {
            Some(i) => {
                let now = self.transforms[i].get("max_norm").and_then(number);
                if now.is_some_and(|n| n <= max_norm) {
                    return None;
                }
                Some(Fix::one(
                    format!("optim.transforms.{i}.max_norm={}", fmt_num(max_norm)),
                    why,
                ))
            }
            None => Some(Fix::one(
                self.with_transform(
                    Insert::Front,
                    &format!(
                        "{{type = \"clip_global_norm\", max_norm = {}}}",
                        fmt_num(max_norm)
                    ),
                ),
                why,
            )),
        }
    }

    /// The run's clipping threshold, if it clips the global norm.
    pub(super) fn clipped_at(&self) -> Option<f64> {
        let i = self.find("clip_global_norm")?;
        self.transforms[i].get("max_norm").and_then(number)
    }

    /// An exponential moving average of the weights (decay 0.999); none when the run has one
    /// with that decay or a higher one.
    pub(super) fn ema(&self) -> Option<Fix> {
        let why = "evaluate an exponential moving average of the weights";
        match self.find("ema") {
            Some(i) => {
                let decay = self.transforms[i].get("decay").and_then(number);
                if decay.is_some_and(|d| d >= 0.999) {
                    return None;
                }
                Some(Fix::one(format!("optim.transforms.{i}.decay=0.999"), why))
            }
            None => Some(Fix::one(
                self.with_transform(Insert::Back, "{type = \"ema\", decay = 0.999}"),
                why,
            )),
        }
    }

    /// The same cell as an LSTM: the cell table without the keys only a vanilla RNN takes.
    pub(super) fn to_lstm(&self) -> Option<Fix> {
        let cell = self.cell.as_ref()?;
        if Self::kind(cell) != "rnn" {
            return None;
        }
        let mut lstm = cell.clone();
        lstm.remove("nonlinearity");
        lstm.insert("type".into(), toml::Value::String("lstm".into()));
        Some(Fix::one(
            format!("model.cell={}", inline_table(&lstm)),
            "gated cells keep gradients in range",
        ))
    }

    pub(super) fn tanh(&self) -> Option<Fix> {
        let cell = self.cell.as_ref()?;
        let relu = Self::kind(cell) == "rnn"
            && cell.get("nonlinearity").and_then(|v| v.as_str()) == Some("relu");
        relu.then(|| {
            Fix::one(
                "model.cell.nonlinearity=\"tanh\"".into(),
                "a bounded nonlinearity",
            )
        })
    }

    /// What to do about figures the `kind` callback logs and the run does not have: add the
    /// callback, or, when the run has it, nothing (it stopped before an epoch's end).
    pub(super) fn missing_callback(&self, kind: &str) -> String {
        if self.callbacks.iter().any(|c| Self::kind(c) == kind) {
            format!("the run has the `{kind}` callback but stopped before an epoch's end")
        } else {
            format!("add `{{type = \"{kind}\"}}` to the callbacks")
        }
    }

    /// Reading the state at each sequence's true length; none unless the run reads it after the
    /// padding (`last_padded`).
    pub(super) fn pool_at_true_length(&self) -> Option<Fix> {
        (self.pooling.as_deref() == Some("last_padded")).then(|| {
            Fix::one(
                "model.pooling=\"last\"".into(),
                "read the state at each phrase's true length; E7 in EXPERIMENTS.md: after the padding 50.56 % (the majority class), at the true length 63.13 %",
            )
        })
    }

    pub(super) fn bigger_batches(&self) -> Option<Fix> {
        let b = self.batch_size?;
        Some(Fix::one(
            format!("data.batch_size={}", b * 2),
            "less gradient noise per step",
        ))
    }

    pub(super) fn reshuffle(&self) -> Option<Fix> {
        (self.shuffle != Some(true)).then(|| {
            Fix::new(
                vec![
                    "data.shuffle=true".into(),
                    "data.sort_by_length=false".into(),
                ],
                "reshuffle every epoch",
            )
        })
    }

    /// A linear warmup over 200 steps before the run's own schedule; none when it warms up.
    pub(super) fn warmup(&self) -> Option<Fix> {
        let inner = match &self.scheduler {
            Some(s) if Self::kind(s) == "warmup" => return None,
            Some(s) if Self::kind(s) != "constant" => format!(", inner = {}", inline_table(s)),
            _ => String::new(),
        };
        Some(Fix::one(
            format!("optim.scheduler={{type = \"warmup\", steps = 200{inner}}}"),
            "a linear warmup of the learning rate",
        ))
    }

    /// Dropout 0.5 before the output layer; none when the run has that much already.
    pub(super) fn more_dropout(&self) -> Option<Fix> {
        (self.dropout.is_some_and(|d| d < 0.5)).then(|| {
            Fix::one(
                "model.dropout=0.5".into(),
                "dropout before the output layer",
            )
        })
    }

    /// Early stopping on val_loss; none when the run stops early already.
    pub(super) fn early_stopping(&self) -> Option<Fix> {
        if self
            .callbacks
            .iter()
            .any(|c| Self::kind(c) == "early_stopping")
        {
            return None;
        }
        let mut items: Vec<String> = self.callbacks.iter().map(inline_table).collect();
        items.push(
            "{type = \"early_stopping\", monitor = \"val_loss\", mode = \"min\", patience = 3}"
                .into(),
        );
        Some(Fix::one(
            format!("callbacks=[{}]", items.join(", ")),
            "stop when val_loss has not improved for 3 epochs; checkpoints/best.safetensors keeps the best",
        ))
    }
}

pub(super) enum Insert {
    Front,
    BeforeOptimizer,
    Back,
}

pub(super) fn inline_table(t: &toml::Table) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(ty) = t.get("type") {
        parts.push(format!("type = {ty}"));
    }
    for (k, v) in t {
        if k != "type" {
            parts.push(format!("{k} = {v}"));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

/// `v` to 4 significant digits as a TOML float (`0.001`, `5.0`, `1e-7`).
pub(super) fn fmt_num(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v:?}");
    }
    let mag = v.abs().log10().floor() as i32;
    let scale = 10f64.powi(3 - mag);
    format!("{:?}", (v * scale).round() / scale)
}
