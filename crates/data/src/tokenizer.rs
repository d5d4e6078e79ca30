//! The word-level tokenizer: a `tokenizers::Tokenizer` (normalizer, pre-tokenizer, `WordLevel`
//! model) whose vocabulary is counted on the training split.

use std::collections::HashMap;

use tokenizers::models::wordlevel::WordLevel;
use tokenizers::normalizers::unicode::NFKC;
use tokenizers::normalizers::utils::{Lowercase, Sequence};
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::split::Split;
use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
use tokenizers::NormalizerWrapper;
use tokenizers::SplitDelimiterBehavior;
use tokenizers::{
    AddedToken, NormalizedString, Normalizer, OffsetReferential, OffsetType, PreTokenizedString,
    PreTokenizer, PreTokenizerWrapper, Tokenizer, TruncationDirection, TruncationParams,
    TruncationStrategy,
};

use crate::config::{PreTokenizerKind, TokenizerConfig};
use crate::DataError;

/// The padding token; always id [`PAD_ID`].
pub const PAD_TOKEN: &str = "<pad>";
/// The unknown-word token; always id [`UNK_ID`].
pub const UNK_TOKEN: &str = "<unk>";
/// Id of [`PAD_TOKEN`].
pub const PAD_ID: u32 = 0;
/// Id of [`UNK_TOKEN`].
pub const UNK_ID: u32 = 1;

/// The vocabulary counted on the training split.
#[derive(Clone, Debug, Default)]
pub struct Vocab {
    /// Tokens in id order: `<pad>`, `<unk>`, then by descending count, ties alphabetical.
    pub tokens: Vec<String>,
    /// Training-split count of every word seen (including those below `min_freq`).
    pub counts: HashMap<String, u64>,
    /// Words (occurrences) in the training split.
    pub training_tokens: u64,
    /// Distinct words dropped because they occur fewer than `min_freq` times.
    pub dropped_types: usize,
    /// Distinct words (frequent enough) dropped because of `max_size`.
    pub capped_types: usize,
}

impl Vocab {
    /// Number of ids, specials included.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the vocabulary is empty (never, once built: it holds the specials).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// Token ids of a list of texts, with what encoding them changed.
#[derive(Clone, Debug, Default)]
pub struct Encoded {
    /// One id sequence per text, never empty.
    pub ids: Vec<Vec<u32>>,
    /// Texts with no token, encoded as `[<unk>]`.
    pub empty: usize,
    /// Texts cut to `max_len`.
    pub truncated: usize,
    /// `<unk>` ids in the result (including those of empty texts).
    pub unk: usize,
}

fn pre_tokenizer(kind: PreTokenizerKind) -> PreTokenizerWrapper {
    match kind {
        PreTokenizerKind::WhitespaceSplit => WhitespaceSplit.into(),
        PreTokenizerKind::Bert => BertPreTokenizer.into(),
        PreTokenizerKind::SpaceSplit => Split::new(" ", SplitDelimiterBehavior::Removed, false)
            .map(Into::into)
            .unwrap_or_else(|_| WhitespaceSplit.into()),
    }
}

/// The words of `text` as the tokenizer's normalizer and pre-tokenizer see them (the units the
/// vocabulary counts and the model looks up).
pub fn words(tokenizer: &Tokenizer, text: &str) -> Result<Vec<String>, DataError> {
    let mut normalized = NormalizedString::from(text);
    if let Some(n) = tokenizer.get_normalizer() {
        n.normalize(&mut normalized).map_err(DataError::tokenizer)?;
    }
    let mut pre = PreTokenizedString::from(normalized);
    if let Some(p) = tokenizer.get_pre_tokenizer() {
        p.pre_tokenize(&mut pre).map_err(DataError::tokenizer)?;
    }
    Ok(pre
        .get_splits(OffsetReferential::Normalized, OffsetType::None)
        .into_iter()
        .map(|(s, _, _)| s.to_owned())
        .collect())
}

/// Builds the tokenizer and counts its vocabulary on `train_texts` (the training split only).
///
/// Words are counted by running the tokenizer's own normalizer and pre-tokenizer, so counting and
/// encoding agree. Ids: `<pad>` = 0, `<unk>` = 1, then words by descending count, ties in
/// alphabetical order; words seen fewer than `min_freq` times are left out (they encode as
/// `<unk>`). With `max_len > 0` the tokenizer truncates to that many tokens, also after
/// `save`/`from_file`. With `max_size > 0` only the `max_size` first words in that order are
/// kept. `nfkc` applies Unicode NFKC before lowercasing.
pub fn fit_tokenizer<'a>(
    cfg: &TokenizerConfig,
    train_texts: impl IntoIterator<Item = &'a str>,
) -> Result<(Tokenizer, Vocab), DataError> {
    let placeholder = WordLevel::builder()
        .vocab([(UNK_TOKEN.to_string(), 0u32)].into_iter().collect())
        .unk_token(UNK_TOKEN.into())
        .build()
        .map_err(DataError::tokenizer)?;
    let mut tok = Tokenizer::new(placeholder);
    let mut norms: Vec<NormalizerWrapper> = Vec::new();
    if cfg.nfkc {
        norms.push(NFKC.into());
    }
    if cfg.lowercase {
        norms.push(Lowercase.into());
    }
    match norms.len() {
        0 => {}
        1 => {
            tok.with_normalizer(norms.pop());
        }
        _ => {
            tok.with_normalizer(Some(Sequence::new(norms)));
        }
    }
    tok.with_pre_tokenizer(Some(pre_tokenizer(cfg.pre_tokenizer)));

    let (counts, training_tokens) = count_words(&tok, train_texts)?;
    let min = cfg.min_freq.max(1) as u64;
    let mut kept: Vec<(&String, u64)> = counts
        .iter()
        .filter(|(w, &c)| c >= min && w.as_str() != PAD_TOKEN && w.as_str() != UNK_TOKEN)
        .map(|(w, &c)| (w, c))
        .collect();
    let dropped_types = counts.len()
        - kept.len()
        - [PAD_TOKEN, UNK_TOKEN]
            .iter()
            .filter(|s| counts.get(**s).is_some_and(|&c| c >= min))
            .count();
    kept.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let mut capped_types = 0;
    if cfg.max_size > 0 && kept.len() > cfg.max_size {
        capped_types = kept.len() - cfg.max_size;
        kept.truncate(cfg.max_size);
    }
    let mut tokens = vec![PAD_TOKEN.to_string(), UNK_TOKEN.to_string()];
    tokens.extend(kept.into_iter().map(|(w, _)| w.clone()));

    let model = WordLevel::builder()
        .vocab(
            tokens
                .iter()
                .enumerate()
                .map(|(i, t)| (t.clone(), i as u32))
                .collect(),
        )
        .unk_token(UNK_TOKEN.into())
        .build()
        .map_err(DataError::tokenizer)?;
    tok.with_model(model);
    tok.add_special_tokens(&[
        AddedToken::from(PAD_TOKEN, true),
        AddedToken::from(UNK_TOKEN, true),
    ]);
    if cfg.max_len > 0 {
        tok.with_truncation(Some(TruncationParams {
            direction: TruncationDirection::Right,
            max_length: cfg.max_len,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        }))
        .map_err(DataError::tokenizer)?;
    }
    Ok((
        tok,
        Vocab {
            tokens,
            counts,
            training_tokens,
            dropped_types,
            capped_types,
        },
    ))
}

/// Counts `train_texts` with `tok`'s normalizer and pre-tokenizer.
fn count_words<'a>(
    tok: &Tokenizer,
    train_texts: impl IntoIterator<Item = &'a str>,
) -> Result<(HashMap<String, u64>, u64), DataError> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut training_tokens = 0u64;
    for text in train_texts {
        for w in words(tok, text)? {
            training_tokens += 1;
            *counts.entry(w).or_insert(0) += 1;
        }
    }
    Ok((counts, training_tokens))
}

/// Loads an existing tokenizer.json (`data.tokenizer.path`) instead of fitting one; the training
/// texts are only counted (for the report and the embedding coverage). The file's vocabulary must
/// hold `<pad>` at id 0 and `<unk>` at id 1, as rnnlab writes it, with ids 0..V.
pub fn load_tokenizer<'a>(
    path: &std::path::Path,
    train_texts: impl IntoIterator<Item = &'a str>,
) -> Result<(Tokenizer, Vocab), DataError> {
    if !path.is_file() {
        return Err(DataError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such tokenizer file"),
        ));
    }
    let tok = Tokenizer::from_file(path)
        .map_err(|e| DataError::Tokenizer(format!("{}: {e}", path.display())))?;
    let mut vocab: Vec<(String, u32)> = tok.get_vocab(true).into_iter().collect();
    vocab.sort_by_key(|(_, id)| *id);
    for (i, (_, id)) in vocab.iter().enumerate() {
        if *id as usize != i {
            return Err(DataError::Tokenizer(format!(
                "{}: the vocabulary's ids are not 0..{} (id {i} missing)",
                path.display(),
                vocab.len()
            )));
        }
    }
    for (token, id) in [(PAD_TOKEN, PAD_ID), (UNK_TOKEN, UNK_ID)] {
        if tok.token_to_id(token) != Some(id) {
            return Err(DataError::Tokenizer(format!(
                "{}: expected {token} at id {id}, found {:?}",
                path.display(),
                tok.token_to_id(token)
            )));
        }
    }
    let (counts, training_tokens) = count_words(&tok, train_texts)?;
    let tokens: Vec<String> = vocab.into_iter().map(|(t, _)| t).collect();
    let known: std::collections::HashSet<&str> = tokens.iter().map(String::as_str).collect();
    let dropped_types = counts
        .keys()
        .filter(|w| !known.contains(w.as_str()))
        .count();
    Ok((
        tok,
        Vocab {
            tokens,
            counts,
            training_tokens,
            dropped_types,
            capped_types: 0,
        },
    ))
}

/// Encodes `texts` to ids with `tokenizer`; a text with no token becomes `[<unk>]` (counted in
/// [`Encoded::empty`]), never dropped.
pub fn encode_texts<'a>(
    tokenizer: &Tokenizer,
    texts: impl IntoIterator<Item = &'a str>,
) -> Result<Encoded, DataError> {
    let unk = tokenizer.token_to_id(UNK_TOKEN).unwrap_or(UNK_ID);
    let mut out = Encoded::default();
    for text in texts {
        let enc = tokenizer
            .encode_fast(text, false)
            .map_err(DataError::tokenizer)?;
        let mut ids = enc.get_ids().to_vec();
        if !enc.get_overflowing().is_empty() {
            out.truncated += 1;
        }
        if ids.is_empty() {
            out.empty += 1;
            ids.push(unk);
        }
        out.unk += ids.iter().filter(|&&i| i == unk).count();
        out.ids.push(ids);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRAIN: [&str; 4] = [
        "The film is n't bad .",
        "the FILM is great",
        "a film , the end",
        "  ",
    ];

    fn fit(cfg: &TokenizerConfig) -> (Tokenizer, Vocab) {
        fit_tokenizer(cfg, TRAIN.iter().copied()).unwrap()
    }

    #[test]
    fn vocabulary_order_lowercase_and_whitespace_split() {
        let (tok, vocab) = fit(&TokenizerConfig::default());
        // the:3 film:3 is:2, then the count-1 words alphabetically
        assert_eq!(
            vocab.tokens,
            ["<pad>", "<unk>", "film", "the", "is", ",", ".", "a", "bad", "end", "great", "n't"]
        );
        assert_eq!(vocab.training_tokens, 15);
        assert_eq!(tok.token_to_id("<pad>"), Some(PAD_ID));
        assert_eq!(tok.token_to_id("<unk>"), Some(UNK_ID));
        assert_eq!(tok.get_vocab_size(true), vocab.len());
        assert_eq!(
            words(&tok, "It is N'T bad.").unwrap(),
            ["it", "is", "n't", "bad."]
        );
        let enc = encode_texts(&tok, ["The film is n't good", "", " "]).unwrap();
        assert_eq!(enc.ids[0], [3, 2, 4, 11, UNK_ID]);
        assert_eq!(enc.ids[1], [UNK_ID]);
        assert_eq!(enc.ids[2], [UNK_ID]);
        assert_eq!(enc.empty, 2);
        assert_eq!(enc.unk, 3);
    }

    #[test]
    fn case_kept_without_lowercase_and_min_freq_drops_rare_words() {
        let cfg = TokenizerConfig {
            lowercase: false,
            min_freq: 2,
            ..TokenizerConfig::default()
        };
        let (tok, vocab) = fit(&cfg);
        assert_eq!(vocab.tokens, ["<pad>", "<unk>", "film", "is", "the"]);
        assert_eq!(vocab.dropped_types, 9);
        let enc = encode_texts(&tok, ["The film is great"]).unwrap();
        assert_eq!(enc.ids[0], [UNK_ID, 2, 3, UNK_ID]);
    }

    #[test]
    fn bert_pre_tokenizer_splits_punctuation() {
        let cfg = TokenizerConfig {
            pre_tokenizer: PreTokenizerKind::Bert,
            ..TokenizerConfig::default()
        };
        let (tok, _) = fit(&cfg);
        assert_eq!(
            words(&tok, "isn't bad.").unwrap(),
            ["isn", "'", "t", "bad", "."]
        );
    }

    #[test]
    fn space_split_keeps_no_break_spaces_inside_words() {
        let texts = ["2\u{a0}1/2 stars  for it", " "];
        let (tok, vocab) = fit(&TokenizerConfig::default());
        assert_eq!(
            words(&tok, texts[0]).unwrap(),
            ["2", "1/2", "stars", "for", "it"]
        );
        drop(vocab);
        let cfg = TokenizerConfig {
            pre_tokenizer: PreTokenizerKind::SpaceSplit,
            ..TokenizerConfig::default()
        };
        let (tok, vocab) = fit_tokenizer(&cfg, texts).unwrap();
        assert_eq!(
            words(&tok, texts[0]).unwrap(),
            ["2\u{a0}1/2", "stars", "for", "it"]
        );
        assert!(words(&tok, " ").unwrap().is_empty());
        assert_eq!(vocab.training_tokens, 4);
    }

    #[test]
    fn max_len_truncates() {
        let cfg = TokenizerConfig {
            max_len: 2,
            ..TokenizerConfig::default()
        };
        let (tok, _) = fit(&cfg);
        let enc = encode_texts(&tok, ["the film is great", "film"]).unwrap();
        assert_eq!(enc.ids, [vec![3, 2], vec![2]]);
        assert_eq!(enc.truncated, 1);
    }

    #[test]
    fn saved_tokenizer_encodes_identically() {
        let cfg = TokenizerConfig {
            max_len: 4,
            ..TokenizerConfig::default()
        };
        let (tok, _) = fit(&cfg);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        tok.save(&path, true).unwrap();
        let back = Tokenizer::from_file(&path).unwrap();
        let texts = [
            "The FILM is n't bad .",
            "unseen words , the end is great , very great",
            "",
            " ",
            "<unk> <pad> film",
        ];
        let a = encode_texts(&tok, texts).unwrap();
        let b = encode_texts(&back, texts).unwrap();
        assert_eq!(a.ids, b.ids);
        assert_eq!(a.truncated, 2);
        assert_eq!(b.truncated, 2);
        assert_eq!(tok.get_vocab(true), back.get_vocab(true));
    }

    #[test]
    fn max_size_keeps_the_most_frequent_words() {
        let cfg = TokenizerConfig {
            max_size: 3,
            ..TokenizerConfig::default()
        };
        let (_, vocab) = fit(&cfg);
        assert_eq!(vocab.tokens, ["<pad>", "<unk>", "film", "the", "is"]);
        assert_eq!(vocab.capped_types, 7);
        assert_eq!(vocab.dropped_types, 0);
    }

    #[test]
    fn nfkc_folds_compatibility_forms() {
        let texts = ["ﬁlm ＧＯＯＤ café", "film good cafe\u{301}"];
        let plain = fit_tokenizer(&TokenizerConfig::default(), texts).unwrap().1;
        assert_eq!(plain.tokens.len(), 2 + 6);
        let cfg = TokenizerConfig {
            nfkc: true,
            ..TokenizerConfig::default()
        };
        let (tok, vocab) = fit_tokenizer(&cfg, texts).unwrap();
        assert_eq!(vocab.tokens, ["<pad>", "<unk>", "café", "film", "good"]);
        assert_eq!(words(&tok, "ＦＩＬＭ").unwrap(), ["film"]);
        // the saved tokenizer keeps both normalizers
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        tok.save(&path, true).unwrap();
        let (back, v2) = load_tokenizer(&path, texts).unwrap();
        assert_eq!(words(&back, "ＦＩＬＭ").unwrap(), ["film"]);
        assert_eq!(v2.tokens, vocab.tokens);
    }

    #[test]
    fn an_existing_tokenizer_is_loaded_not_fitted() {
        let (tok, _) = fit(&TokenizerConfig {
            max_len: 3,
            ..TokenizerConfig::default()
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        tok.save(&path, true).unwrap();
        // other training texts: the vocabulary stays the file's, new words are <unk>
        let (back, vocab) = load_tokenizer(&path, ["zebra film zebra", "the"]).unwrap();
        assert_eq!(vocab.tokens.len(), 12);
        assert_eq!(vocab.training_tokens, 4);
        assert_eq!(vocab.dropped_types, 1);
        assert_eq!(vocab.counts["zebra"], 2);
        let enc = encode_texts(&back, ["zebra film is great ok"]).unwrap();
        assert_eq!(enc.ids[0], [UNK_ID, 2, 4]);
        assert_eq!(enc.truncated, 1);
        let msg = load_tokenizer(&dir.path().join("nope.json"), ["a"])
            .err()
            .unwrap()
            .to_string();
        assert!(msg.contains("nope.json"), "{msg}");
        std::fs::write(&path, "{not json").unwrap();
        let msg = load_tokenizer(&path, ["a"]).err().unwrap().to_string();
        assert!(msg.contains("tokenizer.json"), "{msg}");
    }
}
