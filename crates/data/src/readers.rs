//! The built-in readers and what every reader shares: registration, building the reader a
//! `[data]` table names, and the file helpers (gzip-aware opening, line iteration).
//!
//! A reader is one file: a typed config (its keys of `[data]`), a type implementing
//! [`rnnlab_core::Reader`], and one `register` line (here, or in a downstream crate's own
//! `register` function).

use std::path::Path;

use rnnlab_core::{DataKeys, PluginParams, ReaderCtor, Registry, Table};
pub use rnnlab_core::{ReadContext, Reader, Row, RowLog, Skipped};

use crate::{DataConfig, DataError};

/// Registers the built-in readers.
pub fn register(r: &mut Registry) {
    use crate::{demo, jsonl, lines, sst, tsv};
    let t = &mut r.readers;
    t.register(
        "tsv",
        tsv::ABOUT_TSV,
        tsv::DelimitedConfig::tsv(),
        tsv::build,
    );
    t.register(
        "csv",
        tsv::ABOUT_CSV,
        tsv::DelimitedConfig::csv(),
        tsv::build,
    );
    t.register(
        "jsonl",
        jsonl::ABOUT,
        jsonl::JsonlConfig::default(),
        jsonl::build,
    );
    t.register(
        "sst-trees",
        sst::ABOUT,
        sst::SstConfig::default(),
        sst::build,
    );
    t.register(
        "lines-per-class",
        lines::ABOUT,
        lines::LinesConfig::default(),
        lines::build,
    );
    t.register(
        "demo",
        demo::ABOUT,
        demo::DemoConfig::default(),
        demo::build,
    );
}

/// A registry holding only the built-in readers.
pub fn builtin() -> Registry {
    let mut r = Registry::empty();
    register(&mut r);
    r
}

/// The keys of `[data]` every reader shares; the others are the reader's.
pub const SHARED_KEYS: &[&str] = &[
    "type",
    "path",
    "labels",
    "skip_bad_rows",
    "split",
    "batch_size",
    "eval_batch_size",
    "shuffle",
    "sort_by_length",
    "buckets",
    "drop_last",
    "tokenizer",
    "embeddings",
];

/// Keys that the one flat `[data]` table held for every reader before readers were a registry,
/// at their defaults: run folders written then list them all in config.resolved.toml (a TSV run
/// has `size = 6000`). See [`drop_legacy_keys`].
const LEGACY_DEFAULTS: &[(&str, &str)] = &[
    ("text", "\"text\""),
    ("label", "\"label\""),
    ("header", "true"),
    ("phrases", "false"),
    ("size", "6000"),
    ("by_class", "false"),
];

/// Migrates a `[data]` table that a run folder's config.resolved.toml held before readers were
/// a registry: a key that the built-in reader `cfg.kind` does not take, at its old default, did
/// nothing then and is dropped, so those runs still evaluate, predict and resume. Anything
/// else is left for [`build`] to judge (a user's own file is not migrated: an unknown key there
/// is an error).
pub fn drop_legacy_keys(cfg: &mut DataConfig) {
    let builtin = builtin();
    let Ok(entry) = builtin.readers.get(&cfg.kind, "data.type") else {
        return;
    };
    let own: Vec<&str> = entry.spec.params.iter().map(|p| p.name.as_ref()).collect();
    cfg.reader.retain(|k, v| {
        own.contains(&k)
            || !LEGACY_DEFAULTS
                .iter()
                .any(|(key, default)| *key == k && v.to_string() == *default)
    });
}

/// Builds the reader `cfg.kind` names from `readers` with its keys of `cfg`, and checks the
/// shared keys against it: `data.path` (or split files) given to a reader that reads none, or
/// missing for one that needs it, a grouping column it cannot give. Returns the reader and its
/// keys with every default filled in. Errors name the key (`data.delimiter`, `data.type`).
pub fn build(
    readers: &Table<ReaderCtor>,
    cfg: &DataConfig,
) -> rnnlab_core::Result<(Box<dyn Reader>, PluginParams)> {
    let mut table = cfg.reader.clone();
    table.insert("type".into(), toml::Value::String(cfg.kind.clone()));
    let (ctor, params) = readers
        .resolve(&table, "data", Some("tsv"))
        .map_err(|e| match e {
            rnnlab_core::Error::UnknownKey(mut u) => {
                if u.suggestion.is_empty() {
                    u.suggestion = rnnlab_core::suggest(&u.name, SHARED_KEYS.iter().copied());
                }
                u.known = format!("{} (the reader's); {}", u.known, SHARED_KEYS.join(", "));
                rnnlab_core::Error::UnknownKey(u)
            }
            e => e,
        })?;
    let reader = ctor(&params)?;
    let split_files = cfg.split.val.file().is_some() || cfg.split.test.file().is_some();
    if reader.reads_path() {
        if cfg.train_path().is_none() {
            return Err(rnnlab_core::Error::invalid(
                "data.path",
                format!("type = \"{}\" needs a path", cfg.kind),
            ));
        }
    } else if cfg.path.is_some() || cfg.split.train.is_some() {
        return Err(rnnlab_core::Error::invalid(
            "data.path",
            format!(
                "type = \"{}\" reads no data.path ({}); give none",
                cfg.kind,
                reader.source()
            ),
        ));
    } else if split_files {
        return Err(rnnlab_core::Error::invalid(
            "data.split",
            format!(
                "type = \"{}\" takes fractions or folds, not split files",
                cfg.kind
            ),
        ));
    }
    let labels = cfg.label_names();
    reader.check(&DataKeys {
        group_by: cfg.split.group_by.as_deref(),
        labels: &labels,
    })?;
    Ok((reader, params))
}

/// The error for a grouping column asked of a reader whose rows have no columns.
pub fn no_columns_to_group_by(kind: &str) -> rnnlab_core::Error {
    rnnlab_core::Error::invalid(
        "data.split.group_by",
        format!("type = \"{kind}\" has no columns to group by"),
    )
}

/// `bytes` as UTF-8, or a [`DataError::Utf8`] naming file, line and field.
pub fn utf8(bytes: &[u8], path: &Path, line: u64, field: &str) -> Result<String, DataError> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|e| DataError::Utf8 {
            path: path.into(),
            line,
            field: field.into(),
            detail: e.to_string(),
        })
}

/// Opens `path` for buffered reading, decompressing gzip (a file that starts with the gzip magic
/// bytes, whatever its name): every reader and the GloVe loader read through this one function.
pub fn open(path: &Path) -> Result<Box<dyn std::io::BufRead + Send>, DataError> {
    use std::io::BufRead as _;
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut raw = std::io::BufReader::with_capacity(1 << 20, file);
    let gz = raw
        .fill_buf()
        .map_err(|e| DataError::io(path, e))?
        .starts_with(&[0x1f, 0x8b]);
    Ok(if gz {
        Box::new(std::io::BufReader::with_capacity(
            1 << 20,
            flate2::bufread::MultiGzDecoder::new(raw),
        ))
    } else {
        Box::new(raw)
    })
}

/// Calls `f(line_no, line)` for every line of `path` (without `\n` / `\r\n`).
pub fn for_each_line(
    path: &Path,
    mut f: impl FnMut(u64, &[u8]) -> Result<(), DataError>,
) -> Result<(), DataError> {
    use std::io::BufRead;
    let mut r = open(path)?;
    let mut buf = Vec::new();
    let mut line = 0u64;
    loop {
        buf.clear();
        if r.read_until(b'\n', &mut buf)
            .map_err(|e| DataError::io(path, e))?
            == 0
        {
            return Ok(());
        }
        line += 1;
        let mut l = buf.as_slice();
        if let [rest @ .., b'\n'] = l {
            l = rest;
        }
        if let [rest @ .., b'\r'] = l {
            l = rest;
        }
        f(line, l)?;
    }
}

/// The file a reader that [`Reader::reads_path`] was given: `data.path` errors when there is none.
pub fn required_path(path: Option<&Path>) -> Result<&Path, DataError> {
    path.ok_or_else(|| DataError::config("data.path", "no file given"))
}

/// Fails with "no rows" when `rows` is empty.
pub fn non_empty(rows: Vec<Row>, path: &Path, what: &str) -> Result<Vec<Row>, DataError> {
    if rows.is_empty() {
        return Err(DataError::Empty {
            path: path.into(),
            message: format!("no rows ({what})"),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> DataConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn unknown_reader_lists_the_readers() {
        let r = builtin();
        let msg = build(&r.readers, &cfg("type = \"jsnl\"\npath = \"x\""))
            .err()
            .unwrap()
            .to_string();
        assert!(msg.contains("`data.type`"), "{msg}");
        assert!(msg.contains("did you mean `jsonl`?"), "{msg}");
        assert!(msg.contains("sst-trees, lines-per-class, demo"), "{msg}");
    }

    #[test]
    fn a_misspelt_key_is_suggested_from_the_reader_and_the_shared_keys() {
        let r = builtin();
        let msg = build(&r.readers, &cfg("path = \"x\"\ndelimitr = \";\""))
            .err()
            .unwrap()
            .to_string();
        assert!(msg.contains("unknown key `delimitr` at `data`"), "{msg}");
        assert!(msg.contains("did you mean `delimiter`?"), "{msg}");
        let msg = build(&r.readers, &cfg("path = \"x\"\nbatch_sise = 3"))
            .err()
            .unwrap()
            .to_string();
        assert!(msg.contains("did you mean `batch_size`?"), "{msg}");
    }

    /// A `[data]` table as config.resolved.toml held it before readers were a registry.
    #[test]
    fn run_folders_from_before_the_registry_still_build() {
        let r = builtin();
        let old = "type = \"tsv\"\npath = \"x\"\ntext = \"Phrase\"\nlabel = \"Sentiment\"\n\
                   header = true\nphrases = false\nsize = 6000\nby_class = false";
        // Unmigrated (a user's own file), the foreign key is refused.
        let e = build(&r.readers, &cfg(old)).err().unwrap().to_string();
        assert!(e.contains("unknown key `by_class`"), "{e}");
        let mut migrated = cfg(old);
        drop_legacy_keys(&mut migrated);
        let (_, p) = build(&r.readers, &migrated).unwrap();
        assert_eq!(p.table()["text"].as_str(), Some("Phrase"));
        assert_eq!(p.table()["header"].as_bool(), Some(true));
        assert!(!p.table().contains_key("size"));
        // a foreign key away from its old default still fails
        let mut moved = cfg(&old.replace("size = 6000", "size = 10"));
        drop_legacy_keys(&mut moved);
        let e = build(&r.readers, &moved);
        assert!(e.err().unwrap().to_string().contains("unknown key `size`"));
    }

    #[test]
    fn defaults_of_the_typed_config_are_filled_in() {
        let r = builtin();
        let (_, p) = build(&r.readers, &cfg("type = \"csv\"\npath = \"x\"\ntext = 1")).unwrap();
        let t = p.table();
        assert_eq!(t["text"], toml::Value::Integer(1));
        assert_eq!(t["label"], toml::Value::String("label".into()));
        assert_eq!(t["delimiter"], toml::Value::String(",".into()));
        assert_eq!(t["quoting"], toml::Value::Boolean(true));
        assert_eq!(t["header"], toml::Value::Boolean(true));
    }
}
