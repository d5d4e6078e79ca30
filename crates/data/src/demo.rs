//! A synthetic binary sentiment corpus where word order matters; generated from the run's
//! generator, needing no file.
//!
//! Sentences are one or two clauses such as `the plot was not very good`, with optional filler
//! words before and after. A clause's polarity is its adjective's, flipped by a `not` before it;
//! intensifiers (`very`, `really`, ...) do not change it. Two clauses joined by `and` agree; with
//! `but` they disagree and the label follows the clause after `but`. So `the plot was good but the
//! acting was dull` and `the acting was dull but the plot was good` have the same words and
//! opposite labels: a bag of words cannot solve it. Labels: `negative` (class 0) and `positive`
//! (class 1), exactly balanced. Sentences have 6 to 20 tokens; the vocabulary has about 90 words.
//! With `data.by_class = true` the rows come grouped by class (negatives first), as a corpus
//! stored one file per class reads: unshuffled, a model learns them in that order.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng as _;

use rnnlab_core::{DataKeys, PluginConfig, ReadContext, Reader};
use serde::{Deserialize, Serialize};

use crate::readers::Row;

/// `rnnlab list`'s line for `demo`.
pub const ABOUT: &str = "synthetic sentiment corpus with negation and contrast, no file";

/// The keys of `type = "demo"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    /// Number of synthetic examples (at least 10).
    pub size: usize,
    /// The corpus comes grouped by class, every negative sentence and then every positive one,
    /// as a data set stored one file per class is read.
    pub by_class: bool,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            size: 6000,
            by_class: false,
        }
    }
}

impl PluginConfig for DemoConfig {
    fn validate(&self, at: &str) -> rnnlab_core::Result<()> {
        if self.size < 10 {
            return Err(rnnlab_core::Error::invalid(
                format!("{at}.size"),
                format!("{} synthetic examples; ask for at least 10", self.size),
            ));
        }
        Ok(())
    }
}

/// Builds the demo reader.
pub fn build(cfg: DemoConfig) -> rnnlab_core::Result<Box<dyn Reader>> {
    Ok(Box::new(Demo(cfg)))
}

/// The synthetic corpus.
pub struct Demo(pub DemoConfig);

impl Reader for Demo {
    fn read(
        &self,
        _: Option<&std::path::Path>,
        cx: &mut ReadContext,
    ) -> rnnlab_core::Result<Vec<Row>> {
        let mut rows = generate(self.0.size, cx.rng);
        if self.0.by_class {
            // Stable: within a class the rows keep their random order.
            rows.sort_by_key(|r| r.label != NEGATIVE);
        }
        Ok(rows)
    }

    fn reads_path(&self) -> bool {
        false
    }

    fn source(&self) -> String {
        "demo".into()
    }

    fn check(&self, data: &DataKeys) -> rnnlab_core::Result<()> {
        match data.group_by {
            Some(_) => Err(crate::readers::no_columns_to_group_by("demo")),
            None => Ok(()),
        }
    }
}

/// Label name of class 0.
pub const NEGATIVE: &str = "negative";
/// Label name of class 1.
pub const POSITIVE: &str = "positive";

const OPENERS: &[&str] = &[
    "honestly ,",
    "overall ,",
    "i think",
    "in my opinion ,",
    "to be fair ,",
    "frankly ,",
    "as expected ,",
    "well ,",
];
const DETERMINERS: &[&str] = &["the", "this"];
const SUBJECTS: &[&str] = &[
    "plot",
    "acting",
    "film",
    "movie",
    "story",
    "script",
    "cast",
    "music",
    "ending",
    "dialogue",
    "soundtrack",
    "direction",
    "pacing",
    "humor",
    "editing",
    "finale",
    "premise",
    "score",
];
const VERBS: &[&str] = &["was", "is", "felt", "seemed"];
const INTENSIFIERS: &[&str] = &[
    "very",
    "really",
    "quite",
    "truly",
    "rather",
    "so",
    "extremely",
    "incredibly",
];
/// Adjectives of positive polarity.
pub const POSITIVE_WORDS: &[&str] = &[
    "good",
    "great",
    "brilliant",
    "excellent",
    "wonderful",
    "superb",
    "charming",
    "moving",
    "clever",
    "delightful",
    "funny",
    "gripping",
    "fresh",
    "beautiful",
];
/// Adjectives of negative polarity.
pub const NEGATIVE_WORDS: &[&str] = &[
    "bad",
    "dull",
    "boring",
    "awful",
    "terrible",
    "weak",
    "bland",
    "tedious",
    "clumsy",
    "predictable",
    "lifeless",
    "messy",
    "flat",
    "silly",
];
const CLOSERS: &[&str] = &[
    "at times",
    "in places",
    "throughout",
    "for the most part",
    "if you ask me",
    "to me",
];

/// Generates `n` labelled sentences (half of each class, in random order) from `rng`.
pub fn generate(n: usize, rng: &mut rnnlab_core::Rng) -> Vec<Row> {
    let mut rows: Vec<Row> = (0..n)
        .map(|i| {
            let positive = i % 2 == 1;
            Row {
                text: sentence(positive, rng),
                label: if positive { POSITIVE } else { NEGATIVE }.into(),
                group: None,
                line: 0,
            }
        })
        .collect();
    rows.shuffle(rng);
    rows
}

fn pick<'a>(list: &[&'a str], rng: &mut rnnlab_core::Rng) -> &'a str {
    list.choose(rng).copied().unwrap_or_default()
}

/// A clause of the given polarity: `<det> <subject> <verb> [not] [intensifier] <adjective>`.
fn clause(positive: bool, rng: &mut rnnlab_core::Rng, out: &mut Vec<&'static str>) {
    out.push(pick(DETERMINERS, rng));
    out.push(pick(SUBJECTS, rng));
    out.push(pick(VERBS, rng));
    let negated = rng.random_bool(0.35);
    if negated {
        out.push("not");
    }
    if rng.random_bool(0.4) {
        out.push(pick(INTENSIFIERS, rng));
    }
    let adjective_positive = positive != negated;
    out.push(pick(
        if adjective_positive {
            POSITIVE_WORDS
        } else {
            NEGATIVE_WORDS
        },
        rng,
    ));
}

fn sentence(positive: bool, rng: &mut rnnlab_core::Rng) -> String {
    let mut body = Vec::new();
    match rng.random_range(0..10) {
        0..4 => clause(positive, rng, &mut body),
        4..6 => {
            clause(positive, rng, &mut body);
            body.push("and");
            clause(positive, rng, &mut body);
        }
        _ => {
            clause(!positive, rng, &mut body);
            body.push("but");
            clause(positive, rng, &mut body);
        }
    }
    let mut opener = rng.random_bool(0.4).then(|| pick(OPENERS, rng));
    let mut closer = rng.random_bool(0.3).then(|| pick(CLOSERS, rng));
    let words = |s: Option<&str>| s.map_or(0, |s| s.split(' ').count());
    while body.len() + words(opener) + words(closer) < 6 {
        if opener.is_none() {
            opener = Some(pick(OPENERS, rng));
        } else {
            closer = Some(pick(CLOSERS, rng));
        }
    }
    if body.len() + words(opener) + words(closer) > 20 {
        closer = None;
    }
    let mut parts: Vec<&str> = Vec::new();
    parts.extend(opener);
    parts.extend(body);
    parts.extend(closer);
    parts.join(" ")
}

/// The label the corpus's rule gives `text` (1 positive, 0 negative): the polarity of the clause
/// after the last `but` (else of the first clause), i.e. of its adjective, flipped by a `not`.
/// `None` when the clause has no known adjective.
pub fn rule_label(text: &str) -> Option<u32> {
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let start = tokens
        .iter()
        .rposition(|&t| t == "but")
        .map_or(0, |i| i + 1);
    let clause = &tokens[start..];
    let clause = match clause.iter().position(|&t| t == "and") {
        Some(i) => &clause[..i],
        None => clause,
    };
    let negated = clause.contains(&"not");
    clause.iter().find_map(|t| {
        let p = if POSITIVE_WORDS.contains(t) {
            true
        } else if NEGATIVE_WORDS.contains(t) {
            false
        } else {
            return None;
        };
        Some(u32::from(p != negated))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn label(r: &Row) -> u32 {
        u32::from(r.label == POSITIVE)
    }

    #[test]
    fn balanced_and_deterministic() {
        let a = generate(1000, &mut rnnlab_core::seeded(3));
        assert_eq!(a.iter().filter(|r| label(r) == 1).count(), 500);
        assert_eq!(a, generate(1000, &mut rnnlab_core::seeded(3)));
        assert_ne!(a, generate(1000, &mut rnnlab_core::seeded(4)));
        let first_half = a[..500].iter().filter(|r| label(r) == 1).count();
        assert!(
            (200..300).contains(&first_half),
            "labels are shuffled: {first_half}"
        );
    }

    #[test]
    fn lengths_vocabulary_and_structure() {
        let rows = generate(6000, &mut rnnlab_core::seeded(1));
        let mut vocab = HashSet::new();
        let (mut buts, mut nots, mut ands) = (0, 0, 0);
        for r in &rows {
            let t: Vec<&str> = r.text.split(' ').collect();
            assert!(
                (6..=20).contains(&t.len()),
                "{} tokens: {}",
                t.len(),
                r.text
            );
            buts += usize::from(t.contains(&"but"));
            ands += usize::from(t.contains(&"and"));
            nots += usize::from(t.contains(&"not"));
            vocab.extend(t);
        }
        assert!((60..=100).contains(&vocab.len()), "{}", vocab.len());
        assert!(
            buts > 1500 && ands > 700 && nots > 1500,
            "{buts} {ands} {nots}"
        );
        let unique: HashSet<&str> = rows.iter().map(|r| r.text.as_str()).collect();
        assert!(unique.len() > 5000, "{}", unique.len());
    }

    #[test]
    fn labels_follow_the_rule_and_but_makes_order_matter() {
        let rows = generate(3000, &mut rnnlab_core::seeded(2));
        let mut swapped = 0;
        for r in &rows {
            assert_eq!(rule_label(&r.text), Some(label(r)), "{}", r.text);
            // "X but Y": the clause after "but" decides and the two clauses disagree, so the
            // same words in the other order have the other label
            if let Some(i) = r.text.find(" but ") {
                let (x, y) = (&r.text[..i], &r.text[i + 5..]);
                let other = format!("{y} but {x}");
                let mut a: Vec<&str> = r.text.split(' ').collect();
                let mut b: Vec<&str> = other.split(' ').collect();
                a.sort();
                b.sort();
                assert_eq!(a, b);
                assert_eq!(rule_label(&other), Some(1 - label(r)), "{other}");
                swapped += 1;
            }
        }
        assert!(swapped > 500);
        // negation flips, intensifiers do not
        assert_eq!(rule_label("the plot was good"), Some(1));
        assert_eq!(rule_label("the plot was not good"), Some(0));
        assert_eq!(rule_label("the plot was not very bad"), Some(1));
        assert_eq!(rule_label("the plot was really bad"), Some(0));
    }
}
