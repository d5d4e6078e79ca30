//! The `tensorboard` callback's event file, read back with a reader written here from the format's
//! documentation (TFRecord framing with both masked CRC32Cs checked; the protobuf wire format and
//! the field numbers of TensorFlow's `event.proto`, `summary.proto` and `tensor.proto` decoded by
//! hand), holds every value of `metrics.jsonl` (tag = metric, step = epoch) and `steps.jsonl`
//! (`step/{loss,grad_norm,lr}` at the global step) once, and the resolved config as text; after
//! `--resume` the same holds for the whole run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_rnnlab");

/// CRC-32C (Castagnoli): reflected polynomial 0x82F63B78, initial and final XOR all ones.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// TFRecord's masked CRC: rotated right by 15 bits, plus 0xa282ead8.
fn masked_crc(bytes: &[u8]) -> u32 {
    let c = crc32c(bytes);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// The records of a TFRecord file: u64 LE length, u32 masked CRC of those 8 bytes, the data,
/// u32 masked CRC of the data.
fn records(bytes: &[u8]) -> Vec<&[u8]> {
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        assert!(
            at + 12 <= bytes.len(),
            "a record header is cut at byte {at}"
        );
        let len_bytes = &bytes[at..at + 8];
        assert_eq!(u32_at(at + 8), masked_crc(len_bytes), "length CRC at {at}");
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
        let data = &bytes[at + 12..at + 12 + len];
        assert_eq!(u32_at(at + 12 + len), masked_crc(data), "data CRC at {at}");
        out.push(data);
        at += 16 + len;
    }
    assert_eq!(at, bytes.len());
    out
}

/// One protobuf field's value by wire type.
#[derive(Clone, Copy, Debug)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

fn varint(bytes: &[u8], at: &mut usize) -> u64 {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = bytes[*at];
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return v;
        }
    }
    panic!("varint longer than 10 bytes");
}

/// The (field number, value) pairs of a message, in order.
fn fields(msg: &[u8]) -> Vec<(u64, Wire<'_>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < msg.len() {
        let key = varint(msg, &mut at);
        let value = match key & 7 {
            0 => Wire::Varint(varint(msg, &mut at)),
            1 => {
                at += 8;
                Wire::Fixed64(u64::from_le_bytes(msg[at - 8..at].try_into().unwrap()))
            }
            2 => {
                let len = varint(msg, &mut at) as usize;
                at += len;
                Wire::Bytes(&msg[at - len..at])
            }
            5 => {
                at += 4;
                Wire::Fixed32(u32::from_le_bytes(msg[at - 4..at].try_into().unwrap()))
            }
            t => panic!("wire type {t}"),
        };
        out.push((key >> 3, value));
    }
    out
}

fn bytes_of(w: Wire<'_>) -> &[u8] {
    match w {
        Wire::Bytes(b) => b,
        other => panic!("expected a length-delimited field, got {other:?}"),
    }
}

fn string_of(w: Wire<'_>) -> String {
    String::from_utf8(bytes_of(w).to_vec()).unwrap()
}

/// A text summary: tag, step, plugin name, tensor dtype, number of shape dimensions, string.
#[derive(Debug, PartialEq)]
struct Text {
    tag: String,
    step: i64,
    plugin: String,
    dtype: u64,
    dims: usize,
    text: String,
}

/// What an event file holds.
#[derive(Default)]
struct Events {
    /// `file_version` of each event that has one, with its index.
    versions: Vec<(usize, String)>,
    /// (tag, step) → value of every scalar (`simple_value`).
    scalars: BTreeMap<(String, i64), f32>,
    texts: Vec<Text>,
}

/// Event{wall_time=1 double, step=2 int64, file_version=3 string, summary=5};
/// Summary{value=1 repeated}; Value{tag=1, simple_value=2 float, tensor=8, metadata=9};
/// SummaryMetadata{plugin_data=1}; PluginData{plugin_name=1}; TensorProto{dtype=1,
/// tensor_shape=2, string_val=8}; TensorShapeProto{dim=2}.
fn read_events(path: &Path) -> Events {
    let bytes = std::fs::read(path).unwrap();
    let mut out = Events::default();
    for (i, record) in records(&bytes).into_iter().enumerate() {
        let mut step = 0i64;
        let mut wall_time = None;
        let mut values = Vec::new();
        for (n, w) in fields(record) {
            match (n, w) {
                (1, Wire::Fixed64(bits)) => wall_time = Some(f64::from_bits(bits)),
                (2, Wire::Varint(v)) => step = v as i64,
                (3, w) => out.versions.push((i, string_of(w))),
                (5, w) => {
                    for (n, w) in fields(bytes_of(w)) {
                        assert_eq!(n, 1, "Summary field {n}");
                        values.push(bytes_of(w));
                    }
                }
                other => panic!("Event field {other:?}"),
            }
        }
        let wall_time = wall_time.expect("an event without wall_time");
        assert!(wall_time > 1.7e9, "wall_time {wall_time}");
        for value in values {
            let (mut tag, mut simple, mut tensor, mut plugin) = (None, None, None, None);
            for (n, w) in fields(value) {
                match n {
                    1 => tag = Some(string_of(w)),
                    2 => match w {
                        Wire::Fixed32(bits) => simple = Some(f32::from_bits(bits)),
                        other => panic!("simple_value {other:?}"),
                    },
                    8 => tensor = Some(bytes_of(w)),
                    9 => {
                        let data = fields(bytes_of(w));
                        let pd = fields(bytes_of(data[0].1));
                        plugin = Some(string_of(pd[0].1));
                    }
                    n => panic!("Value field {n}"),
                }
            }
            let tag = tag.expect("a value without tag");
            match (simple, tensor) {
                (Some(v), None) => {
                    let old = out.scalars.insert((tag.clone(), step), v);
                    assert!(old.is_none(), "{tag} at step {step} twice");
                }
                (None, Some(t)) => {
                    let (mut dtype, mut dims, mut strings) = (0, usize::MAX, Vec::new());
                    for (n, w) in fields(t) {
                        match (n, w) {
                            (1, Wire::Varint(d)) => dtype = d,
                            (2, w) => dims = fields(bytes_of(w)).len(),
                            (8, w) => strings.push(string_of(w)),
                            other => panic!("TensorProto field {other:?}"),
                        }
                    }
                    assert_eq!(strings.len(), 1);
                    out.texts.push(Text {
                        tag,
                        step,
                        plugin: plugin.clone().unwrap_or_default(),
                        dtype,
                        dims,
                        text: strings.remove(0),
                    });
                }
                other => panic!("value {tag}: {other:?}"),
            }
        }
    }
    out
}

fn event_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("events.out.tfevents.")
        })
        .collect()
}

fn jsonl(path: &Path) -> Vec<serde_json::Map<String, serde_json::Value>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| match serde_json::from_str(l).unwrap() {
            serde_json::Value::Object(o) => o,
            other => panic!("{other}"),
        })
        .collect()
}

fn as_f32(v: &serde_json::Value) -> f32 {
    match v {
        serde_json::Value::Null => f32::NAN,
        v => v.as_f64().unwrap() as f32,
    }
}

/// (tag, step) → value the run's own logs say the event file must hold: every key of every
/// `metrics.jsonl` line at its epoch, and `loss`, `grad_norm`, `lr` of every `steps.jsonl`
/// line at its step.
fn expected(run: &Path) -> BTreeMap<(String, i64), f32> {
    let mut want = BTreeMap::new();
    for m in jsonl(&run.join("metrics.jsonl")) {
        let epoch = m["epoch"].as_i64().unwrap();
        for (k, v) in &m {
            want.insert((k.clone(), epoch), as_f32(v));
        }
    }
    for s in jsonl(&run.join("steps.jsonl")) {
        let step = s["step"].as_i64().unwrap();
        for k in ["loss", "grad_norm", "lr"] {
            want.insert((format!("step/{k}"), step), as_f32(&s[k]));
        }
    }
    want
}

/// Every expected (tag, step) is in the file with the same f32 value, and nothing else is.
fn assert_same(got: &BTreeMap<(String, i64), f32>, want: &BTreeMap<(String, i64), f32>) {
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    for (k, w) in want {
        let g = got[k];
        assert!(
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
            "{k:?}: file {g}, log {w}"
        );
    }
}

fn train(args: &[&str]) {
    let out = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rnnlab {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn config_text(run: &Path) -> String {
    let toml = std::fs::read_to_string(run.join("config.resolved.toml")).unwrap();
    format!("```toml\n{}\n```", toml.trim_end())
}

/// A 2-epoch demo run with `tensorboard` listed before the monitors, then resumed to 3 epochs.
#[test]
fn the_event_file_holds_every_logged_value_once() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283, "the CRC-32C check value");
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let demo = format!("{}/../../pipelines/demo.toml", env!("CARGO_MANIFEST_DIR"));
    train(&[
        "train",
        &demo,
        "--threads",
        "2",
        "--out",
        run.to_str().unwrap(),
        "--set",
        "data.size=1200",
        "--set",
        "train.epochs=2",
        "--set",
        r#"callbacks=[{type="tensorboard"}, {type="grad_norm"}, {type="spectral"}, {type="jsonl_logger"}]"#,
    ]);
    let files = event_files(&run);
    assert_eq!(files.len(), 1, "{files:?}");
    let events = read_events(&files[0]);
    assert_eq!(events.versions, [(0, "brain.Event:2".to_string())]);
    let want = expected(&run);
    assert_same(&events.scalars, &want);
    // The monitors' figures are in although the callback runs before them.
    for epoch in [1, 2] {
        let radii = want
            .keys()
            .filter(|(t, e)| *e == epoch && t.starts_with("spectral.") && t.ends_with(".radius"))
            .count();
        assert_eq!(radii, 4, "LSTM gates i, f, g, o at epoch {epoch}");
        assert!(want.contains_key(&("grad_norm.global.p99".to_string(), epoch)));
    }
    let steps_2 = *want.keys().map(|(_, s)| s).max().unwrap();
    assert!(want.contains_key(&("step/lr".to_string(), steps_2)));
    let text = |step, text| Text {
        tag: "config".into(),
        step,
        plugin: "text".into(),
        dtype: 7,
        dims: 0,
        text,
    };
    let config_2 = config_text(&run);
    assert!(config_2.contains("epochs = 2"), "{config_2}");
    assert_eq!(events.texts, [text(0, config_2.clone())]);

    // Resumed to 3 epochs: the same file, every epoch and step once, the config again at the
    // resumed step.
    train(&[
        "train",
        "--resume",
        run.to_str().unwrap(),
        "--threads",
        "2",
        "--set",
        "train.epochs=3",
    ]);
    assert_eq!(event_files(&run), files);
    let events = read_events(&files[0]);
    let want_3 = expected(&run);
    assert!(want_3.contains_key(&("val_acc".to_string(), 3)));
    assert!(want_3.keys().any(|(_, s)| *s > steps_2));
    assert_same(&events.scalars, &want_3);
    // The config text: the first process's at step 0, the resumed one's (3 epochs) at the step
    // it resumed from.
    let config_3 = config_text(&run);
    assert!(config_3.contains("epochs = 3"), "{config_3}");
    assert_eq!(events.texts, [text(0, config_2), text(steps_2, config_3)]);
}
