//! GloVe vectors (text format, plain or gzip) for the words of a vocabulary.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
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
    /// Vocabulary words, specials excluded.
    pub types_total: usize,
    /// Training-split tokens whose word has a vector.
    pub tokens_covered: u64,
    /// Training-split tokens (words below `min_freq` included).
    pub tokens_total: u64,
    /// Rows in the file.
    pub file_rows: usize,
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

/// Opens `path`, decompressing gzip (any file starting with the gzip magic bytes).
fn open(path: &Path) -> Result<Box<dyn BufRead>, DataError> {
    const BUF: usize = 1 << 20;
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut raw = BufReader::with_capacity(BUF, file);
    let gz = raw
        .fill_buf()
        .map_err(|e| DataError::io(path, e))?
        .starts_with(&[0x1f, 0x8b]);
    Ok(if gz {
        Box::new(BufReader::with_capacity(
            BUF,
            flate2::bufread::MultiGzDecoder::new(raw),
        ))
    } else {
        Box::new(raw)
    })
}

/// Loads the vectors of `vocab`'s words from the GloVe text file `path` (`.txt` or `.txt.gz`)
/// into a `[V, E]` matrix.
///
/// Only rows whose word is in the vocabulary are parsed; the others are only checked for their
/// width. The width is `expected_dim`, or that of the first row; a row of another width is an
/// error naming its line. Row 0 (`<pad>`) is zeros; rows of words missing from the file are drawn
/// from `rng` per `oov_init`, in id order, with σ = the standard deviation of the loaded values.
pub fn load_glove(
    path: &Path,
    vocab: &Vocab,
    expected_dim: Option<usize>,
    oov_init: OovInit,
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
    let mut reader = open(path)?;
    let mut dim = expected_dim;
    let mut found: Vec<Option<Vec<f32>>> = vec![None; vocab.len()];
    let (mut sum, mut sum_sq, mut n_values) = (0f64, 0f64, 0u64);
    let mut file_rows = 0usize;
    let mut buf = Vec::with_capacity(4096);
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let mut line = buf.as_slice();
        while let [rest @ .., b'\n' | b'\r' | b' '] = line {
            line = rest;
        }
        if line.is_empty() {
            continue;
        }
        let (word, values) = match line.iter().position(|&b| b == b' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &line[line.len()..]),
        };
        let width = if values.is_empty() {
            0
        } else {
            values.iter().filter(|&&b| b == b' ').count() + 1
        };
        // word2vec-style "count dim" header line
        if line_no == 1 && width == 1 && is_uint(word) && is_uint(values) {
            continue;
        }
        let expected = *dim.get_or_insert(width);
        if width != expected || width == 0 {
            return Err(DataError::VectorWidth {
                path: path.into(),
                line: line_no,
                expected,
                found: width,
            });
        }
        file_rows += 1;
        let Some(&id) = std::str::from_utf8(word).ok().and_then(|w| wanted.get(w)) else {
            continue;
        };
        if found[id].is_some() {
            continue; // a repeated word: the first row wins
        }
        let word = String::from_utf8_lossy(word);
        let mut v = Vec::with_capacity(width);
        for (k, field) in values.split(|&b| b == b' ').enumerate() {
            let x = std::str::from_utf8(field)
                .ok()
                .and_then(|s| s.parse::<f32>().ok())
                .filter(|x| x.is_finite())
                .ok_or_else(|| DataError::VectorValue {
                    path: path.into(),
                    line: line_no,
                    word: word.to_string(),
                    index: k + 1,
                    value: String::from_utf8_lossy(field).into_owned(),
                })?;
            sum += x as f64;
            sum_sq += (x as f64) * (x as f64);
            n_values += 1;
            v.push(x);
        }
        found[id] = Some(v);
    }
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
    let (mut types_found, mut tokens_covered) = (0usize, 0u64);
    for (id, v) in found.iter().enumerate() {
        let row = &mut values[id * dim..(id + 1) * dim];
        match v {
            Some(v) => {
                row.copy_from_slice(v);
                if id >= 2 {
                    types_found += 1;
                    tokens_covered += vocab.counts.get(&vocab.tokens[id]).copied().unwrap_or(0);
                }
            }
            None if id == PAD_ID as usize => {}
            None => match oov_init {
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
        types_total: vocab.len().saturating_sub(2),
        tokens_covered,
        tokens_total: vocab.training_tokens,
        file_rows,
        std,
    };
    tracing::info!(
        "{}: {file_rows} vectors of width {dim} read in {:.2?}; {} of {} vocabulary words found",
        path.display(),
        start.elapsed(),
        types_found,
        coverage.types_total
    );
    Ok(Embeddings {
        values,
        rows: vocab.len(),
        dim,
        coverage,
    })
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

    fn vocab4() -> Vocab {
        vocab(&[("the", 10), ("film", 7), ("bad", 1), ("great", 4)])
    }

    #[test]
    fn loads_plain_and_gzip_keeping_only_vocabulary_rows() {
        let plain = write(GLOVE.as_bytes(), ".txt");
        let a = load_glove(
            plain.path(),
            &vocab4(),
            None,
            OovInit::Normal,
            &mut rnnlab_core::seeded(1),
        )
        .unwrap();
        check(&a);
        let zipped = write(&gz(GLOVE), ".txt.gz");
        let b = load_glove(
            zipped.path(),
            &vocab4(),
            Some(3),
            OovInit::Normal,
            &mut rnnlab_core::seeded(1),
        )
        .unwrap();
        check(&b);
        assert_eq!(a.values, b.values, "same seed, same OOV rows");
        let c = load_glove(
            plain.path(),
            &vocab4(),
            None,
            OovInit::Normal,
            &mut rnnlab_core::seeded(2),
        )
        .unwrap();
        assert_ne!(a.row(5), c.row(5));
    }

    #[test]
    fn oov_init_variants() {
        let plain = write(GLOVE.as_bytes(), ".txt");
        let z = load_glove(
            plain.path(),
            &vocab4(),
            None,
            OovInit::Zeros,
            &mut rnnlab_core::seeded(1),
        )
        .unwrap();
        assert_eq!(z.row(5), [0.0; 3]);
        let u = load_glove(
            plain.path(),
            &vocab4(),
            None,
            OovInit::Uniform,
            &mut rnnlab_core::seeded(1),
        )
        .unwrap();
        let bound = (u.coverage.std * 3f64.sqrt()) as f32;
        assert!(u.row(5).iter().all(|x| x.abs() <= bound && *x != 0.0));
    }

    #[test]
    fn wrong_width_names_the_line() {
        let bad = "the 0.5 -1 2\nfilm 1 1 1\nunused 9 9\n";
        let f = write(bad.as_bytes(), ".txt");
        let msg = load_glove(
            f.path(),
            &vocab4(),
            None,
            OovInit::Zeros,
            &mut rnnlab_core::seeded(1),
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.ends_with(":3: expected 3 values after the word, found 2"),
            "{msg}"
        );
        let f = write(&gz(GLOVE), ".txt.gz");
        let msg = load_glove(
            f.path(),
            &vocab4(),
            Some(50),
            OovInit::Zeros,
            &mut rnnlab_core::seeded(1),
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.ends_with(":1: expected 50 values after the word, found 3"),
            "{msg}"
        );
        let f = write(b"the 0.5 x 2\n", ".txt");
        let msg = load_glove(
            f.path(),
            &vocab4(),
            None,
            OovInit::Zeros,
            &mut rnnlab_core::seeded(1),
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains(":1: value 2 of word \"the\": \"x\" is not a number"),
            "{msg}"
        );
    }
}
