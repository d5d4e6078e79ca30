//! `tensorboard`: TensorBoard event files (`events.out.tfevents.*`) in the run folder: every epoch
//! metric, the per-step loss, gradient norm and learning rate, and the resolved config as text.
//!
//! The file is a sequence of TFRecords (length as u64 LE, masked CRC32C of the length, the
//! bytes, masked CRC32C of the bytes), each holding one serialised `tensorflow.Event`. The
//! messages below declare only the fields written, with the numbers of TensorFlow's
//! `event.proto`, `summary.proto` and `tensor.proto`; prost encodes them.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use candle_core::{Device, Tensor};
use rnnlab_core::{
    check_value, BatchStats, Callback, EpochMetrics, Error, PluginConfig, Registry, Result,
    StateDict, TrainView,
};
use serde::{Deserialize, Serialize};

/// The subset of TensorFlow's protobuf messages that the callback writes.
pub mod proto {
    /// `tensorflow.Event`: one record of an event file.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Event {
        /// Seconds since the Unix epoch.
        #[prost(double, tag = "1")]
        pub wall_time: f64,
        /// The global step (or the epoch, for epoch metrics).
        #[prost(int64, tag = "2")]
        pub step: i64,
        /// What the event carries.
        #[prost(oneof = "What", tags = "3, 5")]
        pub what: Option<What>,
    }

    /// `Event.what`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum What {
        /// The file's first event: `brain.Event:2`.
        #[prost(string, tag = "3")]
        FileVersion(String),
        /// Summary values.
        #[prost(message, tag = "5")]
        Summary(Summary),
    }

    /// `tensorflow.Summary`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Summary {
        /// The values of this event.
        #[prost(message, repeated, tag = "1")]
        pub value: Vec<Value>,
    }

    /// `tensorflow.Summary.Value`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Value {
        /// The series' name.
        #[prost(string, tag = "1")]
        pub tag: String,
        /// The value.
        #[prost(oneof = "Data", tags = "2, 8")]
        pub data: Option<Data>,
        /// Which TensorBoard plugin reads a tensor value.
        #[prost(message, optional, tag = "9")]
        pub metadata: Option<SummaryMetadata>,
    }

    /// `Summary.Value.value`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Data {
        /// A scalar (the scalars dashboard).
        #[prost(float, tag = "2")]
        SimpleValue(f32),
        /// A tensor (here a string for the text dashboard).
        #[prost(message, tag = "8")]
        Tensor(TensorProto),
    }

    /// `tensorflow.SummaryMetadata`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SummaryMetadata {
        /// The plugin that reads the value.
        #[prost(message, optional, tag = "1")]
        pub plugin_data: Option<PluginData>,
    }

    /// `tensorflow.SummaryMetadata.PluginData`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PluginData {
        /// `text`, `scalars`, ...
        #[prost(string, tag = "1")]
        pub plugin_name: String,
        /// The plugin's own metadata (empty for text version 0).
        #[prost(bytes = "vec", tag = "2")]
        pub content: Vec<u8>,
    }

    /// `tensorflow.TensorProto`, string tensors only.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        /// `tensorflow.DataType`: [`DT_STRING`].
        #[prost(int32, tag = "1")]
        pub dtype: i32,
        /// The shape; no dimensions is a scalar.
        #[prost(message, optional, tag = "2")]
        pub tensor_shape: Option<TensorShapeProto>,
        /// The strings, row-major.
        #[prost(bytes = "vec", repeated, tag = "8")]
        pub string_val: Vec<Vec<u8>>,
    }

    /// `tensorflow.TensorShapeProto` (a scalar has no dimensions).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorShapeProto {}

    /// `tensorflow.DataType.DT_STRING`.
    pub const DT_STRING: i32 = 7;
}

use proto::{Data, Event, PluginData, Summary, SummaryMetadata, TensorProto, Value, What};

/// The tag of the resolved config's text summary.
pub const CONFIG_TAG: &str = "config";

/// The masked CRC32C of TFRecord framing.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
        .rotate_right(15)
        .wrapping_add(0xa282_ead8)
}

/// `data` framed as one TFRecord.
pub fn tf_record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// An event carrying `values` at `step`.
pub fn summary_event(step: i64, values: Vec<Value>) -> Event {
    Event {
        wall_time: now(),
        step,
        what: Some(What::Summary(Summary { value: values })),
    }
}

/// A scalar value.
pub fn scalar(tag: &str, v: f64) -> Value {
    Value {
        tag: tag.to_string(),
        metadata: None,
        data: Some(Data::SimpleValue(v as f32)),
    }
}

/// A text value (markdown, for the text dashboard).
pub fn text(tag: &str, markdown: &str) -> Value {
    Value {
        tag: tag.to_string(),
        metadata: Some(SummaryMetadata {
            plugin_data: Some(PluginData {
                plugin_name: "text".into(),
                content: Vec::new(),
            }),
        }),
        data: Some(Data::Tensor(TensorProto {
            dtype: proto::DT_STRING,
            tensor_shape: Some(proto::TensorShapeProto {}),
            string_val: vec![markdown.as_bytes().to_vec()],
        })),
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// An open event file; `written` counts every byte handed to it, flushed or not.
struct EventFile {
    path: PathBuf,
    out: BufWriter<File>,
    written: u64,
}

impl EventFile {
    /// A new `events.out.tfevents.<unix seconds>.rnnlab.<pid>` in `dir`, starting with the
    /// `brain.Event:2` version record.
    fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let path = dir.join(format!(
            "events.out.tfevents.{secs:010}.rnnlab.{}",
            std::process::id()
        ));
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut f = EventFile {
            path,
            out: BufWriter::new(file),
            written: 0,
        };
        f.write(&Event {
            wall_time: now(),
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".into())),
        })?;
        Ok(f)
    }

    /// `path` cut back to its first `len` bytes, for appending; `None` when it is missing or
    /// shorter (then it is not the file the snapshot knew).
    fn reopen(path: &Path, len: u64) -> Result<Option<Self>> {
        match std::fs::metadata(path) {
            Ok(m) if m.len() >= len => {}
            _ => return Ok(None),
        }
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        file.set_len(len).map_err(|e| Error::io(path, e))?;
        Ok(Some(EventFile {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            written: len,
        }))
    }

    fn write(&mut self, event: &Event) -> Result<()> {
        let record = tf_record(&prost::Message::encode_to_vec(event));
        self.out
            .write_all(&record)
            .map_err(|e| Error::io(&self.path, e))?;
        self.written += record.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::io(&self.path, e))
    }
}

/// Writes a TensorBoard event file into `dir` (relative to the run folder; empty = the run
/// folder itself): each epoch's metrics in `on_epoch_logged` (so monitors' figures of the epoch
/// are in, wherever this callback is listed), tag = metric name, step = epoch; `step/loss`,
/// `step/grad_norm` and `step/lr` of every `every`-th optimizer step, step = global step (with
/// gradient accumulation, the batch that completed the step); the run folder's
/// `config.resolved.toml` as text (tag `config`) when training starts. Flushed every
/// `flush_every` logged steps and at every epoch end.
///
/// Resume: the file's name and its length at the epoch end are checkpointed; a resumed run cuts
/// that file back to the snapshot's length (dropping the steps of the interrupted epoch) and
/// appends to it, so no step appears twice, and adds the config text again at the resumed step.
pub struct TensorBoard {
    /// Folder of the event file: relative to the run folder, or absolute.
    pub dir: String,
    /// Log every this many optimizer steps.
    pub every: usize,
    /// Flush after this many logged steps.
    pub flush_every: usize,
    file: Option<EventFile>,
    resume_from: Option<(String, u64)>,
    last_step: usize,
    unflushed: usize,
}

impl TensorBoard {
    /// A callback writing into `dir` (see the type's doc).
    pub fn new(dir: &str, every: usize, flush_every: usize) -> Self {
        TensorBoard {
            dir: dir.to_string(),
            every: every.max(1),
            flush_every: flush_every.max(1),
            file: None,
            resume_from: None,
            last_step: 0,
            unflushed: 0,
        }
    }

    /// The folder the events go to; `None` when it is relative and the run has no folder.
    fn folder(&self, run_dir: Option<&Path>) -> Option<PathBuf> {
        let dir = Path::new(&self.dir);
        if dir.is_absolute() {
            Some(dir.to_path_buf())
        } else {
            run_dir.map(|r| r.join(dir))
        }
    }

    /// The path of the open event file.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|f| f.path.as_path())
    }

    fn open(&mut self, dir: &Path, step: usize) -> Result<EventFile> {
        if let Some((name, len)) = self.resume_from.take() {
            let path = dir.join(&name);
            if let Some(f) = EventFile::reopen(&path, len)? {
                return Ok(f);
            }
            tracing::warn!(
                "tensorboard: {} is missing or shorter than the snapshot's {len} bytes; \
                 a new event file starts at step {step}",
                path.display()
            );
        }
        EventFile::create(dir)
    }
}

impl Callback for TensorBoard {
    fn name(&self) -> &str {
        "tensorboard"
    }

    fn on_train_start(&mut self, _history: &[EpochMetrics], view: &TrainView) -> Result<()> {
        let Some(dir) = self.folder(view.run_dir) else {
            return Ok(());
        };
        let mut file = self.open(&dir, view.step)?;
        if let Some(run) = view.run_dir {
            let path = run.join("config.resolved.toml");
            if path.exists() {
                let toml = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
                let markdown = format!("```toml\n{}\n```", toml.trim_end());
                file.write(&summary_event(
                    view.step as i64,
                    vec![text(CONFIG_TAG, &markdown)],
                ))?;
            }
        }
        file.flush()?;
        self.file = Some(file);
        self.last_step = view.step;
        self.unflushed = 0;
        Ok(())
    }

    fn on_batch_end(&mut self, stats: &BatchStats, view: &TrainView) -> Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        // A micro-batch taken into an accumulation has not moved the step.
        if view.step == self.last_step {
            return Ok(());
        }
        self.last_step = view.step;
        if !view.step.is_multiple_of(self.every) {
            return Ok(());
        }
        file.write(&summary_event(
            view.step as i64,
            vec![
                scalar("step/loss", stats.loss),
                scalar("step/grad_norm", stats.grad_norm),
                scalar("step/lr", stats.lr),
            ],
        ))?;
        self.unflushed += 1;
        if self.unflushed >= self.flush_every {
            file.flush()?;
            self.unflushed = 0;
        }
        Ok(())
    }

    fn on_epoch_logged(&mut self, metrics: &EpochMetrics, view: &TrainView) -> Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let values = metrics.iter().map(|(k, v)| scalar(k, v)).collect();
        file.write(&summary_event(view.epoch as i64, values))?;
        file.flush()?;
        self.unflushed = 0;
        Ok(())
    }

    fn on_train_end(&mut self, _history: &[EpochMetrics], _view: &TrainView) -> Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }

    fn state_dict(&self) -> Result<StateDict> {
        let mut s = StateDict::new();
        if let Some(f) = &self.file {
            let name = f
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned().into_bytes())
                .unwrap_or_default();
            let n = name.len();
            s.insert("file", Tensor::from_vec(name, n, &Device::Cpu)?);
            s.insert_scalar("written", f.written as f64)?;
        }
        Ok(s)
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        self.resume_from = match (state.tensors.get("file"), state.tensors.get("written")) {
            (Some(name), Some(_)) => {
                let name = String::from_utf8(name.to_vec1::<u8>()?).map_err(|e| {
                    Error::Mismatch(format!("tensorboard state `file`: not UTF-8: {e}"))
                })?;
                Some((name, state.scalar("written")? as u64))
            }
            _ => None,
        };
        Ok(())
    }
}

/// The keys of `type = "tensorboard"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TensorBoardConfig {
    /// Folder of the event file: relative to the run folder ("" = the run folder), or absolute.
    pub dir: String,
    /// Log the per-step scalars every this many optimizer steps (>= 1).
    pub every: usize,
    /// Flush the file after this many logged steps (>= 1); it is also flushed at every epoch end.
    pub flush_every: usize,
}

impl Default for TensorBoardConfig {
    fn default() -> Self {
        TensorBoardConfig {
            dir: String::new(),
            every: 1,
            flush_every: 100,
        }
    }
}

impl PluginConfig for TensorBoardConfig {
    fn validate(&self, at: &str) -> Result<()> {
        let (every, flush_every) = (self.every, self.flush_every);
        check_value(at, "every", &every, every >= 1, "must be at least 1")?;
        check_value(
            at,
            "flush_every",
            &flush_every,
            flush_every >= 1,
            "must be at least 1",
        )
    }
}

/// Registers `tensorboard`.
pub fn register(r: &mut Registry) {
    r.callbacks.register(
        "tensorboard",
        "TensorBoard event file: epoch metrics (step = epoch), per-step loss/grad_norm/lr (step = global step), the resolved config as text",
        TensorBoardConfig::default(),
        |c| Ok(Box::new(TensorBoard::new(&c.dir, c.every, c.flush_every)) as Box<dyn Callback>),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden bytes from TensorBoard's own writer (tensorboard 2.21.0), for three events: the
    /// version record, two scalars at step 3, a text summary at step 7; wall time 1.5 in each.
    /// ```python
    /// import io
    /// from tensorboard.compat.proto import event_pb2, summary_pb2
    /// from tensorboard.summary.writer.record_writer import RecordWriter
    /// from tensorboard.plugins.text.summary_v2 import text_pb
    /// buf = io.BytesIO(); w = RecordWriter(buf)
    /// w.write(event_pb2.Event(wall_time=1.5, step=0, file_version="brain.Event:2").SerializeToString())
    /// w.write(event_pb2.Event(wall_time=1.5, step=3, summary=summary_pb2.Summary(value=[
    ///     summary_pb2.Summary.Value(tag="val_acc", simple_value=87.5),
    ///     summary_pb2.Summary.Value(tag="step/lr", simple_value=0.001)])).SerializeToString())
    /// w.write(event_pb2.Event(wall_time=1.5, step=7, summary=text_pb("config", "seed = 1")).SerializeToString())
    /// print(buf.getvalue().hex())
    /// ```
    const GOLDEN: &str =
        "1800000000000000a37f4b2209000000000000f83f1a0d627261696e2e4576656e743a322a28646c\
        2d000000000000003c418afb09000000000000f83f10032a200a0e0a0776616c5f616363150000af420a0e0a07\
        737465702f6c72156f12833a67b8911631000000000000009d8383e909000000000000f83f10072a240a220a06\
        636f6e666967420e08071200420873656564203d20314a080a060a0474657874fc7a58c5";

    #[test]
    fn records_match_tensorboards_own_writer() {
        let event = |step, what| Event {
            wall_time: 1.5,
            step,
            what: Some(what),
        };
        let summary = |value| What::Summary(Summary { value });
        let events = [
            event(0, What::FileVersion("brain.Event:2".into())),
            event(
                3,
                summary(vec![scalar("val_acc", 87.5), scalar("step/lr", 0.001)]),
            ),
            event(7, summary(vec![text("config", "seed = 1")])),
        ];
        let bytes: Vec<u8> = events
            .iter()
            .flat_map(|e| tf_record(&prost::Message::encode_to_vec(e)))
            .collect();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, GOLDEN);
    }

    /// The events of a file, split by the records' length fields (the CI test reads files with
    /// its own parser that also checks the CRCs).
    fn events(path: &Path) -> Vec<Event> {
        let bytes = std::fs::read(path).unwrap();
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
            let data = &bytes[at + 12..at + 12 + len];
            out.push(<Event as prost::Message>::decode(data).unwrap());
            at += 16 + len;
        }
        assert_eq!(at, bytes.len());
        out
    }

    /// (step, tag, value) of every scalar.
    fn scalars(events: &[Event]) -> Vec<(i64, String, f32)> {
        let mut out = Vec::new();
        for e in events {
            if let Some(What::Summary(s)) = &e.what {
                for v in &s.value {
                    if let Some(Data::SimpleValue(x)) = v.data {
                        out.push((e.step, v.tag.clone(), x));
                    }
                }
            }
        }
        out
    }

    /// A run killed in epoch 2 after some of its steps were flushed, resumed from epoch 1's
    /// snapshot: the file is cut back to epoch 1 and epoch 2 is written once, by the new
    /// process; micro-batches that did not move the step are not logged.
    #[test]
    fn a_resumed_run_cuts_the_interrupted_epoch_and_appends() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.resolved.toml"), "seed = 1\n").unwrap();
        let params = rnnlab_core::Params::new();
        let view = |epoch, step| crate::test_view(&params, epoch, step, Some(dir.path()));
        let stats = |loss| BatchStats {
            loss,
            grad_norm: 2.0,
            lr: 0.5,
            skipped: false,
            clipped: false,
            batch_size: 4,
        };
        let metrics = |epoch: usize, acc: f64| {
            let mut m = EpochMetrics::new();
            m.set("epoch", epoch as f64);
            m.set("val_acc", acc);
            m
        };
        // Epoch 1: steps 1, 2 (a micro-batch at step 1 repeats it); the snapshot follows.
        let mut a = TensorBoard::new("", 1, 1);
        a.on_train_start(&[], &view(0, 0)).unwrap();
        for (step, loss) in [(1, 1.0), (1, 1.5), (2, 2.0)] {
            a.on_batch_end(&stats(loss), &view(1, step)).unwrap();
        }
        a.on_epoch_logged(&metrics(1, 60.0), &view(1, 2)).unwrap();
        let snapshot = a.state_dict().unwrap();
        let path = a.path().unwrap().to_path_buf();
        let snapshot_len = std::fs::metadata(&path).unwrap().len();
        // Epoch 2 flushed step 3, then the process died.
        a.on_batch_end(&stats(9.0), &view(2, 3)).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > snapshot_len);
        drop(a);

        let mut b = TensorBoard::new("", 1, 1);
        b.load_state_dict(&snapshot).unwrap();
        b.on_train_start(&[], &view(0, 2)).unwrap();
        assert_eq!(b.path(), Some(path.as_path()));
        for (step, loss) in [(3, 3.0), (4, 4.0)] {
            b.on_batch_end(&stats(loss), &view(2, step)).unwrap();
        }
        b.on_epoch_logged(&metrics(2, 70.0), &view(2, 4)).unwrap();
        b.on_train_end(&[], &view(2, 4)).unwrap();

        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("events.out.tfevents."))
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        let events = events(&path);
        assert_eq!(
            events[0].what,
            Some(What::FileVersion("brain.Event:2".into()))
        );
        let loss: Vec<(i64, f32)> = scalars(&events)
            .into_iter()
            .filter(|(_, t, _)| t == "step/loss")
            .map(|(s, _, v)| (s, v))
            .collect();
        assert_eq!(loss, [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)]);
        let acc: Vec<(i64, f32)> = scalars(&events)
            .into_iter()
            .filter(|(_, t, _)| t == "val_acc")
            .map(|(s, _, v)| (s, v))
            .collect();
        assert_eq!(acc, [(1, 60.0), (2, 70.0)]);
        // The config text: at step 0, and again at the resumed step 2.
        let config: Vec<(i64, Vec<u8>)> = events
            .iter()
            .filter_map(|e| match &e.what {
                Some(What::Summary(s)) => s.value.iter().find_map(|v| match &v.data {
                    Some(Data::Tensor(t)) if v.tag == CONFIG_TAG => {
                        Some((e.step, t.string_val[0].clone()))
                    }
                    _ => None,
                }),
                _ => None,
            })
            .collect();
        let md = b"```toml\nseed = 1\n```".to_vec();
        assert_eq!(config, [(0, md.clone()), (2, md)]);
    }

    /// Without a run folder a relative `dir` writes nothing; a snapshot whose file is gone
    /// starts a new file.
    #[test]
    fn no_folder_writes_nothing_and_a_missing_file_starts_anew() {
        let params = rnnlab_core::Params::new();
        let mut tb = TensorBoard::new("tb", 1, 1);
        tb.on_train_start(&[], &crate::test_view(&params, 0, 0, None))
            .unwrap();
        assert!(tb.path().is_none());
        assert!(tb.state_dict().unwrap().tensors.is_empty());

        let dir = tempfile::tempdir().unwrap();
        let mut state = StateDict::new();
        let name = b"events.out.tfevents.gone".to_vec();
        state.insert("file", Tensor::from_vec(name, 24, &Device::Cpu).unwrap());
        state.insert_scalar("written", 100.0).unwrap();
        tb.load_state_dict(&state).unwrap();
        tb.on_train_start(&[], &crate::test_view(&params, 0, 5, Some(dir.path())))
            .unwrap();
        let path = tb.path().unwrap();
        assert_eq!(path.parent(), Some(dir.path().join("tb").as_path()));
        assert_ne!(path.file_name().unwrap(), "events.out.tfevents.gone");
        // No config.resolved.toml in this folder: the file holds the version record only.
        assert_eq!(events(path).len(), 1);
    }
}
