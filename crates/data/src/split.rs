//! Train / val / test splits: random rows, or whole groups of rows.

use std::collections::HashMap;

use rand::seq::SliceRandom;

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

/// Splits `n` rows at random: `round(n·test)` test rows, `round(n·val)` validation rows, the rest
/// for training. Deterministic given `rng`.
pub fn random_split(n: usize, val: f64, test: f64, rng: &mut rnnlab_core::Rng) -> SplitIndices {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    let n_test = ((n as f64 * test).round() as usize).min(n);
    let n_val = ((n as f64 * val).round() as usize).min(n - n_test);
    let mut s = SplitIndices {
        test: order[..n_test].to_vec(),
        val: order[n_test..n_test + n_val].to_vec(),
        train: order[n_test + n_val..].to_vec(),
    };
    s.train.sort_unstable();
    s.val.sort_unstable();
    s.test.sort_unstable();
    s
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
    let mut rows_of: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        let g = g.as_ref();
        rows_of
            .entry(g)
            .or_insert_with(|| {
                order.push(g);
                Vec::new()
            })
            .push(i);
    }
    order.shuffle(rng);
    let n = groups.len() as f64;
    let (test_target, val_target) = (n * test, n * (test + val));
    let mut s = SplitIndices::default();
    let mut taken = 0usize;
    for g in order {
        let rows = &rows_of[g];
        let half = 0.5 * rows.len() as f64;
        let dest = if test > 0.0 && (taken as f64) < test_target - half {
            &mut s.test
        } else if val > 0.0 && (taken as f64) < val_target - half {
            &mut s.val
        } else {
            s.train.extend_from_slice(rows);
            continue;
        };
        taken += rows.len();
        dest.extend_from_slice(rows);
    }
    s.train.sort_unstable();
    s.val.sort_unstable();
    s.test.sort_unstable();
    s
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
}
