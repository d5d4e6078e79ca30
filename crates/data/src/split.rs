//! Train / val / test splits: random rows, whole groups, per class, k-fold; and leakage.

use std::collections::{HashMap, HashSet};

use rand::seq::SliceRandom;
use serde::Serialize;

/// Row indices of each split, each in ascending (file) order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SplitIndices {
    /// Training rows.
    pub train: Vec<usize>,
    /// Validation rows.
    pub val: Vec<usize>,
    /// Test rows.
    pub test: Vec<usize>,
}

/// How held-out rows are drawn.
#[derive(Clone, Copy, Debug)]
pub enum Strategy<'a> {
    /// Rows at random.
    Random,
    /// Whole groups: `groups[i]` is row i's group; no group is in two splits.
    Grouped(&'a [&'a str]),
    /// Per class: `labels[i]` is row i's class; every split gets each class's share.
    Stratified(&'a [u32]),
}

/// Splits `n` rows at random: `round(n·test)` test rows, `round(n·val)` validation rows, the rest
/// for training. Deterministic given `rng`.
pub fn random_split(n: usize, val: f64, test: f64, rng: &mut rnnlab_core::Rng) -> SplitIndices {
    holdout(
        &(0..n).collect::<Vec<_>>(),
        Strategy::Random,
        val,
        test,
        rng,
    )
}

/// Splits rows by group (`groups[i]` is row i's group): the distinct groups are shuffled with
/// `rng` and taken in that order, for test until it holds `test·n` rows, then for validation until
/// it holds `val·n`, the rest for training; so no group is in two splits and the row fractions are
/// met up to the size of one group.
pub fn grouped_split<S: AsRef<str>>(
    groups: &[S],
    val: f64,
    test: f64,
    rng: &mut rnnlab_core::Rng,
) -> SplitIndices {
    let g: Vec<&str> = groups.iter().map(AsRef::as_ref).collect();
    holdout(
        &(0..groups.len()).collect::<Vec<_>>(),
        Strategy::Grouped(&g),
        val,
        test,
        rng,
    )
}

/// Splits rows per class (`labels[i]` is row i's class): each class's rows are shuffled and
/// `round(n_c·test)` go to test, `round(n_c·val)` to validation, the rest to training.
pub fn stratified_split(
    labels: &[u32],
    val: f64,
    test: f64,
    rng: &mut rnnlab_core::Rng,
) -> SplitIndices {
    holdout(
        &(0..labels.len()).collect::<Vec<_>>(),
        Strategy::Stratified(labels),
        val,
        test,
        rng,
    )
}

fn sorted(mut s: SplitIndices) -> SplitIndices {
    s.train.sort_unstable();
    s.val.sort_unstable();
    s.test.sort_unstable();
    s
}

/// The distinct groups of the rows `idx`, in order of first appearance, with their rows.
fn group_rows<'a>(idx: &[usize], groups: &[&'a str]) -> Vec<Vec<usize>> {
    let mut pos: HashMap<&'a str, usize> = HashMap::new();
    let mut out: Vec<Vec<usize>> = Vec::new();
    for &i in idx {
        let k = *pos.entry(groups[i]).or_insert_with(|| {
            out.push(Vec::new());
            out.len() - 1
        });
        out[k].push(i);
    }
    out
}

/// The rows `idx` per class, classes in ascending order.
fn class_rows(idx: &[usize], labels: &[u32]) -> Vec<Vec<usize>> {
    let mut by: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
    for &i in idx {
        by.entry(labels[i]).or_default().push(i);
    }
    by.into_values().collect()
}

/// Holds out fractions `val` and `test` of the rows `idx` (row numbers) with `strategy`.
pub fn holdout(
    idx: &[usize],
    strategy: Strategy<'_>,
    val: f64,
    test: f64,
    rng: &mut rnnlab_core::Rng,
) -> SplitIndices {
    let n = idx.len();
    match strategy {
        Strategy::Random => {
            let mut order = idx.to_vec();
            order.shuffle(rng);
            let n_test = ((n as f64 * test).round() as usize).min(n);
            let n_val = ((n as f64 * val).round() as usize).min(n - n_test);
            sorted(SplitIndices {
                test: order[..n_test].to_vec(),
                val: order[n_test..n_test + n_val].to_vec(),
                train: order[n_test + n_val..].to_vec(),
            })
        }
        Strategy::Grouped(groups) => {
            let mut order = group_rows(idx, groups);
            order.shuffle(rng);
            let (test_target, val_target) = (n as f64 * test, n as f64 * (test + val));
            let mut s = SplitIndices::default();
            let mut taken = 0usize;
            for rows in order {
                let half = 0.5 * rows.len() as f64;
                let dest = if test > 0.0 && (taken as f64) < test_target - half {
                    &mut s.test
                } else if val > 0.0 && (taken as f64) < val_target - half {
                    &mut s.val
                } else {
                    s.train.extend_from_slice(&rows);
                    continue;
                };
                taken += rows.len();
                dest.extend_from_slice(&rows);
            }
            sorted(s)
        }
        Strategy::Stratified(labels) => {
            let mut s = SplitIndices::default();
            for rows in class_rows(idx, labels) {
                let part = holdout(&rows, Strategy::Random, val, test, rng);
                s.train.extend(part.train);
                s.val.extend(part.val);
                s.test.extend(part.test);
            }
            sorted(s)
        }
    }
}

/// k-fold cross-validation: the rows `idx` are dealt into `folds` folds with `strategy` (random
/// rows in equal folds; whole groups, each to the fold with fewest rows so far; or per class,
/// dealt in turn), fold `fold` is the test split, and `val` (a fraction of all of `idx`) is held
/// out of the other folds with the same strategy.
pub fn kfold(
    idx: &[usize],
    strategy: Strategy<'_>,
    folds: usize,
    fold: usize,
    val: f64,
    rng: &mut rnnlab_core::Rng,
) -> SplitIndices {
    let n = idx.len();
    let mut fold_of: HashMap<usize, usize> = HashMap::with_capacity(n);
    match strategy {
        Strategy::Random => {
            let mut order = idx.to_vec();
            order.shuffle(rng);
            for (p, &i) in order.iter().enumerate() {
                fold_of.insert(i, p * folds / n.max(1));
            }
        }
        Strategy::Grouped(groups) => {
            let mut order = group_rows(idx, groups);
            order.shuffle(rng);
            let mut sizes = vec![0usize; folds];
            for rows in order {
                let f = (0..folds).min_by_key(|&f| (sizes[f], f)).unwrap_or(0);
                sizes[f] += rows.len();
                rows.iter().for_each(|&i| {
                    fold_of.insert(i, f);
                });
            }
        }
        Strategy::Stratified(labels) => {
            let mut p = 0usize;
            for mut rows in class_rows(idx, labels) {
                rows.shuffle(rng);
                for i in rows {
                    fold_of.insert(i, p % folds);
                    p += 1;
                }
            }
        }
    }
    let (test, rest): (Vec<usize>, Vec<usize>) = idx.iter().partition(|i| fold_of[*i] == fold);
    let rel = if rest.is_empty() {
        0.0
    } else {
        (val * n as f64 / rest.len() as f64).min(1.0)
    };
    let inner = holdout(&rest, strategy, rel, 0.0, rng);
    sorted(SplitIndices {
        train: inner.train,
        val: inner.val,
        test,
    })
}

/// How many held-out texts also occur in the training split, after the tokenizer's
/// normalization and pre-tokenization.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Leakage {
    /// Validation texts (with at least one word) equal to a training text.
    pub val_verbatim: usize,
    /// Validation texts found as a contiguous run of words inside a training text (verbatim
    /// ones included).
    pub val_contained: usize,
    /// Test texts equal to a training text.
    pub test_verbatim: usize,
    /// Test texts found inside a training text.
    pub test_contained: usize,
    /// Validation texts with at least one word.
    pub val_texts: usize,
    /// Test texts with at least one word.
    pub test_texts: usize,
}

fn word_hash(w: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(w)
}

const MIX: u64 = 0x9E37_79B9_7F4A_7C15;

fn seq_hash(words: &[u64]) -> u64 {
    words.iter().fold(0u64, |h, &w| {
        h.wrapping_mul(MIX).wrapping_add(w) ^ (h >> 29)
    })
}

/// Counts held-out texts of `val` and `test` (each a text's words) that equal, or are contained
/// as a contiguous word sequence in, a text of `train`. Word sequences are compared by 64-bit
/// hashes.
pub fn leakage<S: AsRef<str>>(train: &[Vec<S>], val: &[Vec<S>], test: &[Vec<S>]) -> Leakage {
    let hashed = |texts: &[Vec<S>]| -> Vec<Vec<u64>> {
        texts
            .iter()
            .map(|t| t.iter().map(|w| word_hash(w.as_ref())).collect())
            .collect()
    };
    let (tr, va, te) = (hashed(train), hashed(val), hashed(test));
    let full: HashSet<u64> = tr.iter().map(|t| seq_hash(t)).collect();
    let targets: HashSet<u64> = va
        .iter()
        .chain(&te)
        .filter(|t| !t.is_empty())
        .map(|t| seq_hash(t))
        .collect();
    let longest = va.iter().chain(&te).map(Vec::len).max().unwrap_or(0);
    let mut contained: HashSet<u64> = HashSet::new();
    for t in &tr {
        for start in 0..t.len() {
            let mut h = 0u64;
            for &w in &t[start..t.len().min(start + longest)] {
                h = h.wrapping_mul(MIX).wrapping_add(w) ^ (h >> 29);
                if targets.contains(&h) {
                    contained.insert(h);
                }
            }
        }
    }
    let count = |texts: &[Vec<u64>], set: &HashSet<u64>| {
        texts
            .iter()
            .filter(|t| !t.is_empty() && set.contains(&seq_hash(t)))
            .count()
    };
    Leakage {
        val_verbatim: count(&va, &full),
        val_contained: count(&va, &contained),
        test_verbatim: count(&te, &full),
        test_contained: count(&te, &contained),
        val_texts: va.iter().filter(|t| !t.is_empty()).count(),
        test_texts: te.iter().filter(|t| !t.is_empty()).count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn check_partition(s: &SplitIndices, n: usize) {
        let all: HashSet<usize> = s
            .train
            .iter()
            .chain(&s.val)
            .chain(&s.test)
            .copied()
            .collect();
        assert_eq!(all.len(), n);
        assert_eq!(s.train.len() + s.val.len() + s.test.len(), n);
    }

    #[test]
    fn random_split_fractions_and_determinism() {
        let s = random_split(1000, 0.1, 0.2, &mut rnnlab_core::seeded(7));
        check_partition(&s, 1000);
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (700, 100, 200));
        assert_eq!(s, random_split(1000, 0.1, 0.2, &mut rnnlab_core::seeded(7)));
        assert_ne!(s, random_split(1000, 0.1, 0.2, &mut rnnlab_core::seeded(8)));
        let none = random_split(10, 0.0, 0.0, &mut rnnlab_core::seeded(7));
        assert_eq!(none.train.len(), 10);
    }

    #[test]
    fn grouped_split_keeps_groups_whole() {
        // 400 groups of 1..=12 rows, rows of a group not contiguous
        let mut groups = Vec::new();
        for g in 0..400usize {
            for _ in 0..(g * 7 % 12 + 1) {
                groups.push(format!("s{g}"));
            }
        }
        let mut rng = rnnlab_core::seeded(3);
        groups.shuffle(&mut rng);
        let n = groups.len();
        let s = grouped_split(&groups, 0.1, 0.2, &mut rnnlab_core::seeded(11));
        check_partition(&s, n);
        let set = |ix: &[usize]| {
            ix.iter()
                .map(|&i| groups[i].clone())
                .collect::<HashSet<_>>()
        };
        let (tr, va, te) = (set(&s.train), set(&s.val), set(&s.test));
        assert!(tr.is_disjoint(&va) && tr.is_disjoint(&te) && va.is_disjoint(&te));
        assert_eq!(tr.len() + va.len() + te.len(), 400);
        let frac = |k: usize| k as f64 / n as f64;
        assert!(
            (frac(s.test.len()) - 0.2).abs() < 0.01,
            "{}",
            frac(s.test.len())
        );
        assert!(
            (frac(s.val.len()) - 0.1).abs() < 0.01,
            "{}",
            frac(s.val.len())
        );
        assert_eq!(
            s,
            grouped_split(&groups, 0.1, 0.2, &mut rnnlab_core::seeded(11))
        );
        assert_ne!(
            s,
            grouped_split(&groups, 0.1, 0.2, &mut rnnlab_core::seeded(12))
        );
    }

    fn labels(n: usize) -> Vec<u32> {
        // 60 % class 0, 30 % class 1, 10 % class 2
        (0..n)
            .map(|i| match i % 10 {
                0..=5 => 0,
                6..=8 => 1,
                _ => 2,
            })
            .collect()
    }

    #[test]
    fn stratified_split_keeps_the_label_shares() {
        let y = labels(1000);
        let s = stratified_split(&y, 0.1, 0.2, &mut rnnlab_core::seeded(5));
        check_partition(&s, 1000);
        let count = |ix: &[usize], c: u32| ix.iter().filter(|&&i| y[i] == c).count();
        assert_eq!(
            [count(&s.test, 0), count(&s.test, 1), count(&s.test, 2)],
            [120, 60, 20]
        );
        assert_eq!(
            [count(&s.val, 0), count(&s.val, 1), count(&s.val, 2)],
            [60, 30, 10]
        );
        assert_eq!(
            s,
            stratified_split(&y, 0.1, 0.2, &mut rnnlab_core::seeded(5))
        );
    }

    #[test]
    fn kfold_test_folds_partition_the_rows() {
        let n = 103;
        let idx: Vec<usize> = (0..n).collect();
        let y = labels(n);
        let groups: Vec<String> = (0..n).map(|i| format!("g{}", i / 3)).collect();
        let g: Vec<&str> = groups.iter().map(String::as_str).collect();
        for strategy in [
            Strategy::Random,
            Strategy::Stratified(&y),
            Strategy::Grouped(&g),
        ] {
            let mut seen = vec![0usize; n];
            for fold in 0..5 {
                let s = kfold(&idx, strategy, 5, fold, 0.1, &mut rnnlab_core::seeded(9));
                check_partition(&s, n);
                assert!(
                    (18..=23).contains(&s.test.len()),
                    "{strategy:?} {}",
                    s.test.len()
                );
                assert!(
                    (8..=12).contains(&s.val.len()),
                    "{strategy:?} {}",
                    s.val.len()
                );
                s.test.iter().for_each(|&i| seen[i] += 1);
                if let Strategy::Grouped(g) = strategy {
                    let set = |ix: &[usize]| ix.iter().map(|&i| g[i]).collect::<HashSet<_>>();
                    assert!(set(&s.train).is_disjoint(&set(&s.test)));
                    assert!(set(&s.val).is_disjoint(&set(&s.test)));
                    assert!(set(&s.train).is_disjoint(&set(&s.val)));
                }
                if let Strategy::Stratified(y) = strategy {
                    let c0 = s.test.iter().filter(|&&i| y[i] == 0).count();
                    assert!((11..=13).contains(&c0), "{c0}");
                }
            }
            // every row is in exactly one test fold
            assert!(seen.iter().all(|&c| c == 1), "{strategy:?}");
        }
    }

    #[test]
    fn leakage_counts_verbatim_and_contained_texts() {
        let w = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        let train = vec![w("the film is not good"), w("a dull plot")];
        let val = vec![w("a dull plot"), w("is not good"), w("not bad"), vec![]];
        let test = vec![w("film is"), w("plot a")];
        let l = leakage(&train, &val, &test);
        assert_eq!((l.val_verbatim, l.val_contained, l.val_texts), (1, 2, 3));
        assert_eq!((l.test_verbatim, l.test_contained, l.test_texts), (0, 1, 2));
    }
}
