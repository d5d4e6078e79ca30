//! GloVe and word2vec text vectors (plain or gzip) for the words of a vocabulary, and the whole
//! file for benchmarks.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use rand::Rng as _;
use rand_distr::Distribution;
use serde::Serialize;

use crate::config::OovInit;
use crate::tokenizer::{Vocab, PAD_ID};
use crate::DataError;

/// How much of the vocabulary the file covers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Coverage {
    /// Vector width.
    pub dim: usize,
    /// Vocabulary words (specials excluded) that have a vector in the file.
    pub types_found: usize,
    /// Of those, words found only through their lowercase form.
    pub types_lowercase: usize,
    /// Vocabulary words, specials excluded.
    pub types_total: usize,
    /// Training-split tokens whose word has a vector.
    pub tokens_covered: u64,
    /// Training-split tokens (words below `min_freq` included).
    pub tokens_total: u64,
    /// Rows in the file.
    pub file_rows: usize,
    /// Rows skipped as malformed (`skip_bad_rows`).
    pub bad_rows: usize,
    /// Rows of a vocabulary word that an earlier row already gave (each is warned about with
    /// its line; the first row is kept).
    pub duplicate_rows: usize,
    /// Standard deviation of the loaded vectors' values (the scale of the OOV init).
    pub std: f64,
}

impl Coverage {
    /// `types_found / types_total`.
    pub fn type_fraction(&self) -> f64 {
        self.types_found as f64 / self.types_total.max(1) as f64
    }

    /// `tokens_covered / tokens_total`.
    pub fn token_fraction(&self) -> f64 {
        self.tokens_covered as f64 / self.tokens_total.max(1) as f64
    }
}

/// A `[V, E]` row-major embedding matrix in vocabulary order, and its coverage.
#[derive(Clone, Debug)]
pub struct Embeddings {
    /// `V * E` values; row 0 (`<pad>`) is zeros.
    pub values: Vec<f32>,
    /// Rows (the vocabulary size).
    pub rows: usize,
    /// Columns (the vector width).
    pub dim: usize,
    /// What the file covered.
    pub coverage: Coverage,
}

impl Embeddings {
    /// Row `id`.
    pub fn row(&self, id: usize) -> &[f32] {
        &self.values[id * self.dim..(id + 1) * self.dim]
    }

    /// The matrix as a `[V, E]` f32 tensor on the CPU.
    pub fn to_tensor(&self) -> Result<candle_core::Tensor, DataError> {
        Ok(candle_core::Tensor::from_slice(
            &self.values,
            (self.rows, self.dim),
            &candle_core::Device::Cpu,
        )?)
    }
}

const CHUNK: usize = 4 << 20;

/// Calls `f(line_no, line)` for every line of `path` (gzip or plain), without its `\n`, `\r`
/// and trailing spaces. A second thread reads and decompresses while this one runs `f`.
pub fn for_each_line(
    path: &Path,
    mut f: impl FnMut(u64, &[u8]) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let mut reader = crate::readers::open(path)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(4);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut carry: Vec<u8> = Vec::new();
            loop {
                let mut buf = std::mem::take(&mut carry);
                let start = buf.len();
                buf.resize(start + CHUNK, 0);
                let mut filled = start;
                let res = loop {
                    match reader.read(&mut buf[filled..]) {
                        Ok(0) => break Ok(true),
                        Ok(n) => {
                            filled += n;
                            if filled == buf.len() {
                                break Ok(false);
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                buf.truncate(filled);
                match res {
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                    Ok(true) => {
                        if !buf.is_empty() && tx.send(Ok(buf)).is_err() {
                            return;
                        }
                        return;
                    }
                    Ok(false) => {
                        // keep the partial last line for the next chunk
                        let cut = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                        carry = buf.split_off(cut);
                        if !buf.is_empty() && tx.send(Ok(buf)).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut line_no = 0u64;
        for chunk in rx {
            let chunk = chunk.map_err(|e| DataError::io(path, e))?;
            let mut rest = chunk.as_slice();
            while !rest.is_empty() {
                let (mut line, next) = match rest.iter().position(|&b| b == b'\n') {
                    Some(i) => (&rest[..i], &rest[i + 1..]),
                    None => (rest, &rest[rest.len()..]),
                };
                rest = next;
                line_no += 1;
                while let [r @ .., b'\r' | b' '] = line {
                    line = r;
                }
                f(line_no, line)?;
            }
        }
        Ok(())
    })
}

/// Splits a vectors row into its word and the text of its values, and counts the values.
fn split_row(line: &[u8]) -> (&[u8], &[u8], usize) {
    let (word, values) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &line[line.len()..]),
    };
    let width = if values.is_empty() {
        0
    } else {
        values.iter().filter(|&&b| b == b' ').count() + 1
    };
    (word, values, width)
}

/// A word2vec `count dim` header, if `line` (the first) is one. A width of 0 is no header but
/// a one-value row (`0 0`: the word "0"); a one-value row of two whole numbers `w n` with n ≥ 1
/// cannot be told from a header, and is read as one.
fn header(line: &[u8]) -> Option<(usize, usize)> {
    let (a, b, width) = split_row(line);
    if width == 1 && is_uint(a) && is_uint(b) {
        let n = |s: &[u8]| std::str::from_utf8(s).ok()?.parse().ok();
        Some((n(a)?, n(b)?)).filter(|&(_, dim)| dim >= 1)
    } else {
        None
    }
}

fn parse_values(
    values: &[u8],
    out: &mut Vec<f32>,
    path: &Path,
    line: u64,
    word: &[u8],
) -> Result<(), DataError> {
    for (k, field) in values.split(|&b| b == b' ').enumerate() {
        let x = std::str::from_utf8(field)
            .ok()
            .and_then(|s| s.parse::<f32>().ok())
            .filter(|x| x.is_finite())
            .ok_or_else(|| DataError::VectorValue {
                path: path.into(),
                line,
                word: String::from_utf8_lossy(word).into_owned(),
                index: k + 1,
                value: String::from_utf8_lossy(field).into_owned(),
            })?;
        out.push(x);
    }
    Ok(())
}

/// How to read an embeddings file into a vocabulary's matrix.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Expected width (default: the header's, else the first row's).
    pub dim: Option<usize>,
    /// Initialisation of the rows the file does not cover.
    pub oov_init: OovInit,
    /// A word missing from the file takes the vector of its lowercase form.
    pub lowercase_fallback: bool,
    /// Skip rows of the wrong width or with a bad value (counted) instead of failing.
    pub skip_bad_rows: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            dim: None,
            oov_init: OovInit::Normal,
            lowercase_fallback: true,
            skip_bad_rows: false,
        }
    }
}

/// Loads the vectors of `vocab`'s words from the GloVe text file `path` (`.txt` or `.txt.gz`)
/// into a `[V, E]` matrix (see [`load_embeddings`]; lowercase fallback on, bad rows fail).
pub fn load_glove(
    path: &Path,
    vocab: &Vocab,
    expected_dim: Option<usize>,
    oov_init: OovInit,
    rng: &mut rnnlab_core::Rng,
) -> Result<Embeddings, DataError> {
    let opts = LoadOptions {
        dim: expected_dim,
        oov_init,
        ..LoadOptions::default()
    };
    load_embeddings(path, vocab, &opts, rng)
}

/// Loads the vectors of `vocab`'s words from a GloVe or word2vec text file (plain or gzip; a
/// `count dim` header line is detected) into a `[V, E]` matrix.
///
/// Only rows whose word is in the vocabulary (or, with `lowercase_fallback`, is the lowercase
/// form of a vocabulary word missing from the file) are parsed; the others are only checked for
/// their width. The width is `dim`, or the header's, or that of the first row; a row of another
/// width is an error naming its line (or, with `skip_bad_rows`, counted in
/// [`Coverage::bad_rows`]). Row 0 (`<pad>`) is zeros; rows of words missing from the file are
/// drawn from `rng` per `oov_init`, in id order, with σ = the standard deviation of the loaded
/// values.
pub fn load_embeddings(
    path: &Path,
    vocab: &Vocab,
    opts: &LoadOptions,
    rng: &mut rnnlab_core::Rng,
) -> Result<Embeddings, DataError> {
    let start = std::time::Instant::now();
    let wanted: HashMap<&str, usize> = vocab
        .tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != PAD_ID as usize)
        .map(|(i, w)| (w.as_str(), i))
        .collect();
    // lowercase form → ids of vocabulary words that differ from it
    let mut lower: HashMap<String, Vec<usize>> = HashMap::new();
    if opts.lowercase_fallback {
        for (i, w) in vocab.tokens.iter().enumerate().skip(2) {
            let l = w.to_lowercase();
            if l != *w {
                lower.entry(l).or_default().push(i);
            }
        }
    }
    let mut dim = opts.dim;
    let mut found: Vec<Option<Vec<f32>>> = vec![None; vocab.len()];
    // The line of each vocabulary word's first row, and the rows that repeat one.
    let mut first_line = vec![0u64; vocab.len()];
    let mut duplicate_rows = 0usize;
    let mut fallback: Vec<Option<Vec<f32>>> = vec![None; vocab.len()];
    let (mut sum, mut sum_sq, mut n_values) = (0f64, 0f64, 0u64);
    let mut file_rows = 0usize;
    let mut log = crate::readers::RowLog::new(opts.skip_bad_rows);
    let mut v = Vec::new();
    for_each_line(path, |line_no, line| {
        if line.is_empty() {
            return Ok(());
        }
        if line_no == 1 {
            if let Some((_, d)) = header(line) {
                dim.get_or_insert(d);
                return Ok(());
            }
        }
        let (word, values, width) = split_row(line);
        let expected = *dim.get_or_insert(width);
        if width != expected || width == 0 {
            return log.bad(
                "width",
                DataError::VectorWidth {
                    path: path.into(),
                    line: line_no,
                    expected,
                    found: width,
                },
            );
        }
        file_rows += 1;
        let Ok(w) = std::str::from_utf8(word) else {
            return Ok(());
        };
        let exact = match wanted.get(w) {
            Some(&id) if found[id].is_some() => {
                duplicate_rows += 1;
                const SHOWN: usize = 10;
                if duplicate_rows <= SHOWN {
                    tracing::warn!(
                        "{}:{line_no}: the word \"{w}\" again (first at line {}); the first \
                         vector is kept{}",
                        path.display(),
                        first_line[id],
                        if duplicate_rows == SHOWN {
                            " (further repeats are only counted)"
                        } else {
                            ""
                        }
                    );
                }
                None
            }
            Some(&id) => Some(id),
            None => None,
        };
        let by_lower = lower.get(w).filter(|ids| {
            ids.iter()
                .any(|&id| found[id].is_none() && fallback[id].is_none())
        });
        if exact.is_none() && by_lower.is_none() {
            return Ok(());
        }
        v.clear();
        if let Err(e) = parse_values(values, &mut v, path, line_no, word) {
            return log.bad("value", e);
        }
        for &x in &v {
            sum += x as f64;
            sum_sq += (x as f64) * (x as f64);
        }
        n_values += v.len() as u64;
        if let Some(id) = exact {
            found[id] = Some(v.clone());
            first_line[id] = line_no;
        }
        if let Some(ids) = by_lower {
            for &id in ids {
                if found[id].is_none() && fallback[id].is_none() {
                    fallback[id] = Some(v.clone());
                }
            }
        }
        Ok(())
    })?;
    let Some(dim) = dim.filter(|_| file_rows > 0) else {
        return Err(DataError::Empty {
            path: path.into(),
            message: "no vectors in the file".into(),
        });
    };
    if n_values == 0 {
        return Err(DataError::Empty {
            path: path.into(),
            message: format!(
                "none of the {} vocabulary words has a vector in this file ({file_rows} rows)",
                vocab.len().saturating_sub(2)
            ),
        });
    }
    let mean = sum / n_values as f64;
    let std = (sum_sq / n_values as f64 - mean * mean).max(0.0).sqrt();

    let mut values = vec![0f32; vocab.len() * dim];
    let normal = rand_distr::Normal::new(0.0, std.max(f64::MIN_POSITIVE))
        .map_err(|e| DataError::Invalid(format!("{}: {e}", path.display())))?;
    let bound = std * 3f64.sqrt();
    let (mut types_found, mut tokens_covered, mut types_lowercase) = (0usize, 0u64, 0usize);
    for id in 0..vocab.len() {
        let row = &mut values[id * dim..(id + 1) * dim];
        let (vec, by_lower) = match (&found[id], &fallback[id]) {
            (Some(v), _) => (Some(v), false),
            (None, Some(v)) => (Some(v), true),
            (None, None) => (None, false),
        };
        match vec {
            Some(v) => {
                row.copy_from_slice(v);
                if id >= 2 {
                    types_found += 1;
                    types_lowercase += usize::from(by_lower);
                    tokens_covered += vocab.counts.get(&vocab.tokens[id]).copied().unwrap_or(0);
                }
            }
            None if id == PAD_ID as usize => {}
            None => match opts.oov_init {
                OovInit::Zeros => {}
                OovInit::Normal => row.iter_mut().for_each(|x| *x = normal.sample(rng) as f32),
                OovInit::Uniform if bound > 0.0 => row
                    .iter_mut()
                    .for_each(|x| *x = rng.random_range(-bound..bound) as f32),
                OovInit::Uniform => {}
            },
        }
    }
    let coverage = Coverage {
        dim,
        types_found,
        types_lowercase,
        types_total: vocab.len().saturating_sub(2),
        tokens_covered,
        tokens_total: vocab.training_tokens,
        file_rows,
        bad_rows: log.skipped.rows,
        duplicate_rows,
        std,
    };
    tracing::info!(
        "{}: {file_rows} vectors of width {dim} read in {:.2?}; {} of {} vocabulary words found \
         ({} by lowercase), {:.2} % of training tokens",
        path.display(),
        start.elapsed(),
        types_found,
        coverage.types_total,
        types_lowercase,
        100.0 * coverage.token_fraction()
    );
    Ok(Embeddings {
        values,
        rows: vocab.len(),
        dim,
        coverage,
    })
}

/// Every vector of a file, in file order (what `rnnlab bench glove` loads).
#[derive(Clone, Debug, Default)]
pub struct AllVectors {
    /// The words, in file order.
    pub words: Vec<String>,
    /// `words.len() * dim` values, row-major.
    pub values: Vec<f32>,
    /// Vector width.
    pub dim: usize,
}

/// One chunk of whole lines for the parse workers of [`load_all`].
struct Chunk {
    seq: usize,
    first_line: u64,
    bytes: Vec<u8>,
}

/// What a parse worker made of one chunk.
struct Parsed {
    words: Vec<String>,
    values: Vec<f32>,
}

fn parse_chunk(
    chunk: &Chunk,
    dim: usize,
    path: &Path,
    words: &mut Vec<String>,
    values: &mut Vec<f32>,
) -> Result<(), DataError> {
    for (this, raw) in (chunk.first_line..).zip(chunk.bytes.split(|&b| b == b'\n')) {
        let mut line = raw;
        while let [r @ .., b'\r' | b' '] = line {
            line = r;
        }
        if line.is_empty() || (this == 1 && header(line).is_some()) {
            continue;
        }
        let (word, vals, _) = split_row(line);
        let before = values.len();
        parse_values(vals, values, path, this, word)?;
        let width = values.len() - before;
        if width != dim || width == 0 {
            return Err(DataError::VectorWidth {
                path: path.into(),
                line: this,
                expected: dim,
                found: width,
            });
        }
        words.push(crate::readers::utf8(word, path, this, "word")?);
    }
    Ok(())
}

/// Loads every row of a GloVe / word2vec text file (plain or gzip), parsing every value; errors
/// name the file and line. One thread decompresses and cuts the text into chunks of whole lines,
/// two more parse them; the rows come back in file order.
pub fn load_all(path: &Path, expected_dim: Option<usize>) -> Result<AllVectors, DataError> {
    use std::sync::{mpsc, Arc, Mutex};
    const WORKERS: usize = 2;
    let mut reader = crate::readers::open(path)?;
    let (chunk_tx, chunk_rx) = mpsc::sync_channel::<Chunk>(WORKERS * 2);
    let chunk_rx = Arc::new(Mutex::new(chunk_rx));
    let (out_tx, out_rx) = mpsc::channel::<(usize, Result<Parsed, DataError>)>();
    let (dim_tx, dim_rx) = mpsc::channel::<Option<usize>>();
    let mut results: std::collections::BTreeMap<usize, Result<Parsed, DataError>> =
        Default::default();
    let read_result: Result<(), DataError> = std::thread::scope(|scope| {
        let reader_thread = scope.spawn(move || -> Result<(), DataError> {
            let mut carry: Vec<u8> = Vec::new();
            let (mut seq, mut line) = (0usize, 1u64);
            let mut dim_sent = false;
            loop {
                let mut buf = std::mem::take(&mut carry);
                let start = buf.len();
                buf.resize(start + CHUNK, 0);
                let mut filled = start;
                let eof = loop {
                    match reader.read(&mut buf[filled..]) {
                        Ok(0) => break true,
                        Ok(n) => {
                            filled += n;
                            if filled == buf.len() {
                                break false;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(DataError::io(path, e)),
                    }
                };
                buf.truncate(filled);
                if !eof {
                    let cut = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                    carry = buf.split_off(cut);
                } else if buf.last() == Some(&b'\n') {
                    buf.pop();
                }
                if !dim_sent {
                    // the width: the config's, the header's, or the first row's
                    let first = buf.split(|&b| b == b'\n').find(|l| !l.is_empty());
                    let d = expected_dim.or_else(|| {
                        first.map(|l| match header(l) {
                            Some((_, d)) => d,
                            None => split_row(l).2,
                        })
                    });
                    let _ = dim_tx.send(d);
                    dim_sent = true;
                }
                if !buf.is_empty() {
                    let lines = buf.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
                    let chunk = Chunk {
                        seq,
                        first_line: line,
                        bytes: buf,
                    };
                    if chunk_tx.send(chunk).is_err() {
                        return Ok(());
                    }
                    seq += 1;
                    line += lines;
                }
                if eof {
                    return Ok(());
                }
            }
        });
        let Ok(Some(dim)) = dim_rx.recv() else {
            drop(chunk_rx);
            return reader_thread
                .join()
                .unwrap_or(Ok(()))
                .and(Err(DataError::Empty {
                    path: path.into(),
                    message: "no vectors in the file".into(),
                }));
        };
        for _ in 0..WORKERS {
            let rx = Arc::clone(&chunk_rx);
            let tx = out_tx.clone();
            scope.spawn(move || loop {
                let next = rx.lock().map(|r| r.recv());
                let Ok(Ok(chunk)) = next else {
                    return;
                };
                let mut p = Parsed {
                    words: Vec::with_capacity(chunk.bytes.len() / (8 * dim + 8)),
                    values: Vec::with_capacity(chunk.bytes.len() / 8),
                };
                let r = parse_chunk(&chunk, dim, path, &mut p.words, &mut p.values).map(|_| p);
                let failed = r.is_err();
                if tx.send((chunk.seq, r)).is_err() || failed {
                    return;
                }
            });
        }
        drop(out_tx);
        drop(chunk_rx);
        for (seq, r) in out_rx {
            results.insert(seq, r);
        }
        reader_thread.join().unwrap_or(Ok(()))
    });
    let mut out = AllVectors::default();
    // the earliest failing chunk is the first error in the file; a read error comes after it
    for (_, r) in std::mem::take(&mut results) {
        let p = r?;
        if out.words.is_empty() {
            out.words = p.words;
            out.values = p.values;
        } else {
            out.words.extend(p.words);
            out.values.extend(p.values);
        }
    }
    read_result?;
    if out.words.is_empty() {
        return Err(DataError::Empty {
            path: path.into(),
            message: "no vectors in the file".into(),
        });
    }
    out.dim = out.values.len() / out.words.len();
    Ok(out)
}

fn is_uint(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn vocab(words: &[(&str, u64)]) -> Vocab {
        let mut tokens = vec!["<pad>".to_string(), "<unk>".to_string()];
        tokens.extend(words.iter().map(|(w, _)| w.to_string()));
        Vocab {
            tokens,
            counts: words.iter().map(|(w, c)| (w.to_string(), *c)).collect(),
            training_tokens: words.iter().map(|(_, c)| c).sum::<u64>() + 5,
            dropped_types: 0,
            capped_types: 0,
        }
    }

    const GLOVE: &str = "the 0.5 -1 2\nfilm 1 1 1\nunused 9 9 9\nbad -0.5 0.25 0\nis 3 3 3\n";

    fn write(content: &[u8], suffix: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(suffix).tempfile().unwrap();
        f.write_all(content).unwrap();
        f
    }

    fn gz(text: &str) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap()
    }

    fn check(emb: &Embeddings) {
        assert_eq!((emb.rows, emb.dim), (6, 3));
        assert_eq!(emb.row(0), [0.0; 3]);
        assert_eq!(emb.row(2), [0.5, -1.0, 2.0]); // the
        assert_eq!(emb.row(4), [-0.5, 0.25, 0.0]); // bad
        assert_eq!(emb.row(3), [1.0; 3]); // film
                                          // "great" (5) and <unk> (1) are not in the file: drawn, not zero
        assert!(emb.row(5).iter().any(|&x| x != 0.0));
        assert!(emb.row(1).iter().any(|&x| x != 0.0));
        let c = &emb.coverage;
        assert_eq!((c.types_found, c.types_total), (3, 4));
        assert_eq!(
            (c.tokens_covered, c.tokens_total),
            (10 + 7 + 1, 10 + 7 + 1 + 4 + 5)
        );
        assert_eq!(c.file_rows, 5);
        // std of the 9 loaded values, not of "unused" or "is"
        let v = [0.5f64, -1., 2., 1., 1., 1., -0.5, 0.25, 0.];
        let m = v.iter().sum::<f64>() / 9.0;
        let s = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / 9.0).sqrt();
        assert!((c.std - s).abs() < 1e-6, "{} vs {s}", c.std);
    }

    /// Log lines written while `f` runs on this thread.
    fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
        #[derive(Clone)]
        struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf(Default::default());
        let writer = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let out = tracing::subscriber::with_default(sub, f);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        (out, text)
    }

    #[test]
    fn a_repeated_word_is_warned_about_with_its_lines_and_the_first_kept() {
        let f = write(b"the 1 1 1\nfilm 2 2 2\nunused 0 0 0\nthe 3 3 3\n", ".txt");
        let (emb, log) = logged(|| load4(f.path(), None, OovInit::Zeros, 0));
        let emb = emb.unwrap();
        assert_eq!(emb.row(2), [1.0; 3], "the first row of `the` is kept");
        assert_eq!(emb.coverage.duplicate_rows, 1);
        let expected = format!(
            "{}:4: the word \"the\" again (first at line 1)",
            f.path().display()
        );
        assert!(log.contains(&expected), "{log}");
    }

    fn vocab4() -> Vocab {
        vocab(&[("the", 10), ("film", 7), ("bad", 1), ("great", 4)])
    }

    /// [`load_glove`] of `path` for [`vocab4`], drawing the OOV rows from `seeded(seed)`.
    fn load4(
        path: &Path,
        dim: Option<usize>,
        oov_init: OovInit,
        seed: u64,
    ) -> Result<Embeddings, DataError> {
        load_glove(
            path,
            &vocab4(),
            dim,
            oov_init,
            &mut rnnlab_core::seeded(seed),
        )
    }

    #[test]
    fn loads_plain_and_gzip_keeping_only_vocabulary_rows() {
        let plain = write(GLOVE.as_bytes(), ".txt");
        let a = load4(plain.path(), None, OovInit::Normal, 1).unwrap();
        check(&a);
        let zipped = write(&gz(GLOVE), ".txt.gz");
        let b = load4(zipped.path(), Some(3), OovInit::Normal, 1).unwrap();
        check(&b);
        assert_eq!(a.values, b.values, "same seed, same OOV rows");
        let c = load4(plain.path(), None, OovInit::Normal, 2).unwrap();
        assert_ne!(a.row(5), c.row(5));
    }

    #[test]
    fn oov_init_variants() {
        let plain = write(GLOVE.as_bytes(), ".txt");
        let z = load4(plain.path(), None, OovInit::Zeros, 1).unwrap();
        assert_eq!(z.row(5), [0.0; 3]);
        let u = load4(plain.path(), None, OovInit::Uniform, 1).unwrap();
        let bound = (u.coverage.std * 3f64.sqrt()) as f32;
        assert!(u.row(5).iter().all(|x| x.abs() <= bound && *x != 0.0));
    }

    #[test]
    fn wrong_width_names_the_line() {
        let cases: [(&[u8], &str, Option<usize>, &str); 3] = [
            (
                b"the 0.5 -1 2\nfilm 1 1 1\nunused 9 9\n",
                ".txt",
                None,
                ":3: expected 3 values after the word, found 2",
            ),
            (
                &gz(GLOVE),
                ".txt.gz",
                Some(50),
                ":1: expected 50 values after the word, found 3",
            ),
            (
                b"the 0.5 x 2\n",
                ".txt",
                None,
                ":1: value 2 of word \"the\": \"x\" is not a number",
            ),
        ];
        for (content, suffix, dim, want) in cases {
            let f = write(content, suffix);
            let msg = load4(f.path(), dim, OovInit::Zeros, 1)
                .unwrap_err()
                .to_string();
            assert!(msg.ends_with(want), "{msg}");
        }
    }

    /// Found by the property tests: `0 0` was taken for a header of width 0, so a file of one
    /// such row had "no vectors".
    #[test]
    fn a_first_row_of_width_zero_is_no_header() {
        let f = write(b"0 0\nx 2\n", ".txt");
        let all = load_all(f.path(), None).unwrap();
        assert_eq!(
            (all.words, all.values, all.dim),
            (vec!["0".into(), "x".into()], vec![0.0, 2.0], 1)
        );
    }

    #[test]
    fn word2vec_header_lowercase_fallback_and_skipped_rows() {
        let text = "4 3\nThe 1 2 3\nthe 0.5 -1 2\nfilm 1 1 1\nbad 9 9\n";
        let f = write(&gz(text), ".txt.gz");
        let vocab = vocab(&[("The", 2), ("FILM", 3), ("Bad", 1), ("x", 1)]);
        let opts = LoadOptions {
            oov_init: OovInit::Zeros,
            skip_bad_rows: true,
            ..LoadOptions::default()
        };
        let e = load_embeddings(f.path(), &vocab, &opts, &mut rnnlab_core::seeded(1)).unwrap();
        assert_eq!(e.dim, 3);
        assert_eq!(e.row(2), [1.0, 2.0, 3.0]); // exact "The" wins over "the"
        assert_eq!(e.row(3), [1.0, 1.0, 1.0]); // FILM → film
        assert_eq!(e.row(4), [0.0; 3]); // "bad" row skipped
        let c = &e.coverage;
        assert_eq!(
            (c.types_found, c.types_lowercase, c.bad_rows, c.file_rows),
            (2, 1, 1, 3)
        );
        assert_eq!(c.tokens_covered, 5);
        // without skipping the short row is an error; without fallback FILM is missing
        let strict = LoadOptions {
            oov_init: OovInit::Zeros,
            ..LoadOptions::default()
        };
        let msg = load_embeddings(f.path(), &vocab, &strict, &mut rnnlab_core::seeded(1))
            .unwrap_err()
            .to_string();
        assert!(
            msg.ends_with(":5: expected 3 values after the word, found 2"),
            "{msg}"
        );
        let exact = LoadOptions {
            lowercase_fallback: false,
            ..opts
        };
        let e = load_embeddings(f.path(), &vocab, &exact, &mut rnnlab_core::seeded(1)).unwrap();
        assert_eq!(e.coverage.types_found, 1);
        // the header's width is checked against the rows
        let f = write(b"2 4\nthe 1 2 3\n", ".txt");
        let msg = load_embeddings(f.path(), &vocab, &strict, &mut rnnlab_core::seeded(1))
            .unwrap_err()
            .to_string();
        assert!(
            msg.ends_with(":2: expected 4 values after the word, found 3"),
            "{msg}"
        );
    }

    #[test]
    fn load_all_reads_every_row_across_chunks() {
        // more than one 4 MiB chunk, so lines straddle chunk borders
        let mut text = String::new();
        let n = 150_000;
        for i in 0..n {
            text.push_str(&format!("w{i} {} -0.25 {}.5 1e-3 7.0000000\r\n", i, i % 7));
            if i == 10 {
                text.push('\n'); // a blank line is ignored
            }
        }
        assert!(text.len() > CHUNK);
        for content in [text.clone().into_bytes(), gz(&text)] {
            let f = write(&content, ".txt");
            let all = load_all(f.path(), None).unwrap();
            assert_eq!((all.words.len(), all.dim), (n, 5));
            assert_eq!(all.words[n - 1], format!("w{}", n - 1));
            let last = &all.values[(n - 1) * 5..];
            assert_eq!(
                last,
                [(n - 1) as f32, -0.25, ((n - 1) % 7) as f32 + 0.5, 1e-3, 7.0]
            );
        }
        let f = write(b"a 1 2\nb 1 2 3\n", ".txt");
        let msg = load_all(f.path(), None).unwrap_err().to_string();
        assert!(
            msg.ends_with(":2: expected 2 values after the word, found 3"),
            "{msg}"
        );
        let msg = load_all(Path::new("/nonexistent/g.txt.gz"), None)
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("/nonexistent/g.txt.gz: "), "{msg}");
    }
}
