//! Padded batches of token ids: the [`rnnlab_core::BatchSource`] of a text pipeline.

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rnnlab_core::{Batch, BatchSource, EvalSplit};

use crate::tokenizer::PAD_ID;
use crate::DataError;

/// Batches per length bucket when `buckets` is on.
pub const BUCKET_BATCHES: usize = 50;

/// One encoded example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    /// Token ids, at least one.
    pub ids: Vec<u32>,
    /// Class index.
    pub label: u32,
}

/// How training batches are formed (the batching keys of [`crate::DataConfig`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchOptions {
    /// Training batch size.
    pub batch_size: usize,
    /// Evaluation batch size.
    pub eval_batch_size: usize,
    /// Reshuffle every epoch.
    pub shuffle: bool,
    /// Without shuffling: a fixed order sorted by length.
    pub sort_by_length: bool,
    /// Length buckets (shuffle, sort chunks of [`BUCKET_BATCHES`] batches, shuffle batches); only
    /// with `shuffle`: unshuffled training keeps its fixed order.
    pub buckets: bool,
    /// Drop the last incomplete training batch.
    pub drop_last: bool,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            batch_size: 64,
            eval_batch_size: 256,
            shuffle: true,
            sort_by_length: false,
            buckets: true,
            drop_last: false,
        }
    }
}

/// The training, validation and test examples of a pipeline, batched on demand.
#[derive(Clone, Debug)]
pub struct TextBatches {
    train: Vec<Example>,
    val: Vec<Example>,
    test: Vec<Example>,
    opts: BatchOptions,
    num_classes: usize,
    last_padding: Option<f64>,
}

impl TextBatches {
    /// Checks the examples (non-empty, labels below `num_classes`) and the options.
    pub fn new(
        train: Vec<Example>,
        val: Vec<Example>,
        test: Vec<Example>,
        opts: BatchOptions,
        num_classes: usize,
    ) -> Result<Self, DataError> {
        if opts.batch_size == 0 {
            return Err(DataError::config("data.batch_size", "must be at least 1"));
        }
        if opts.eval_batch_size == 0 {
            return Err(DataError::config(
                "data.eval_batch_size",
                "must be at least 1",
            ));
        }
        if train.is_empty() {
            return Err(DataError::Invalid(
                "the training split has no examples".into(),
            ));
        }
        for (name, split) in [("train", &train), ("val", &val), ("test", &test)] {
            for (i, e) in split.iter().enumerate() {
                if e.ids.is_empty() {
                    return Err(DataError::Invalid(format!(
                        "{name} example {i} has no token"
                    )));
                }
                if e.label as usize >= num_classes {
                    return Err(DataError::Invalid(format!(
                        "{name} example {i}: label {} but only {num_classes} classes",
                        e.label
                    )));
                }
            }
        }
        Ok(TextBatches {
            train,
            val,
            test,
            opts,
            num_classes,
            last_padding: None,
        })
    }

    /// The training examples.
    pub fn train(&self) -> &[Example] {
        &self.train
    }

    /// The examples of a held-out split.
    pub fn eval(&self, split: EvalSplit) -> &[Example] {
        match split {
            EvalSplit::Val => &self.val,
            EvalSplit::Test => &self.test,
        }
    }

    /// The batching options.
    pub fn options(&self) -> &BatchOptions {
        &self.opts
    }

    /// The training examples' indices for one epoch, grouped into batches, in training order.
    /// Draws from `rng` only when shuffling.
    pub fn train_order(&self, rng: &mut rnnlab_core::Rng) -> Vec<Vec<usize>> {
        let o = &self.opts;
        let n = self.train.len();
        let len = |i: &usize| self.train[*i].ids.len();
        let mut idx: Vec<usize> = (0..n).collect();
        let mut batches: Vec<Vec<usize>> = if o.buckets && o.shuffle {
            idx.shuffle(rng);
            for chunk in idx.chunks_mut(o.batch_size * BUCKET_BATCHES) {
                chunk.sort_by_key(len);
            }
            let mut b: Vec<Vec<usize>> = idx.chunks(o.batch_size).map(<[_]>::to_vec).collect();
            b.shuffle(rng);
            b
        } else {
            if o.shuffle {
                idx.shuffle(rng);
            } else if o.sort_by_length {
                idx.sort_by_key(len); // stable: ties keep file order
            }
            idx.chunks(o.batch_size).map(<[_]>::to_vec).collect()
        };
        if o.drop_last {
            batches.retain(|b| b.len() == o.batch_size);
        }
        batches
    }

    /// The held-out examples' indices in evaluation batches: sorted by length, so batches pad
    /// little (results do not depend on the order).
    pub fn eval_order(&self, split: EvalSplit) -> Vec<Vec<usize>> {
        let ex = self.eval(split);
        let mut idx: Vec<usize> = (0..ex.len()).collect();
        idx.sort_by_key(|&i| ex[i].ids.len());
        idx.chunks(self.opts.eval_batch_size)
            .map(<[_]>::to_vec)
            .collect()
    }

    /// The padding ratio of the last epoch's training batches (from
    /// [`BatchSource::train_batches`]); `None` before the first epoch.
    pub fn padding_ratio(&self) -> Option<f64> {
        self.last_padding
    }

    /// The padding ratio of the training batches `rng` would give (cells of the padded
    /// `[B, T]` matrices over real tokens; 1.0 is no padding).
    pub fn train_padding_ratio(&self, rng: &mut rnnlab_core::Rng) -> f64 {
        padding_ratio(&self.train, &self.train_order(rng))
    }
}

/// Cells of the padded `[B, T]` matrices of `batches` (indices into `examples`), over the real
/// tokens in them: 1.0 means no padding, 2.0 as many pad cells as tokens.
pub fn padding_ratio(examples: &[Example], batches: &[Vec<usize>]) -> f64 {
    let (mut cells, mut tokens) = (0usize, 0usize);
    for b in batches {
        let lens = b.iter().map(|&i| examples[i].ids.len());
        cells += b.len() * lens.clone().max().unwrap_or(0);
        tokens += lens.sum::<usize>();
    }
    if tokens == 0 {
        1.0
    } else {
        cells as f64 / tokens as f64
    }
}

/// Builds the padded batch of `examples[indices]`: ids `[B, T]` (T = the longest), padded with
/// `<pad>` (0).
pub fn make_batch(examples: &[Example], indices: &[usize]) -> candle_core::Result<Batch> {
    let t = indices
        .iter()
        .map(|&i| examples[i].ids.len())
        .max()
        .unwrap_or(0);
    let mut ids = vec![PAD_ID; indices.len() * t];
    let mut lengths = Vec::with_capacity(indices.len());
    let mut labels = Vec::with_capacity(indices.len());
    for (row, &i) in indices.iter().enumerate() {
        let e = &examples[i];
        ids[row * t..row * t + e.ids.len()].copy_from_slice(&e.ids);
        lengths.push(e.ids.len());
        labels.push(e.label);
    }
    Ok(Batch {
        ids: Tensor::from_vec(ids, (indices.len(), t), &Device::Cpu)?,
        lengths,
        labels: Tensor::from_vec(labels, indices.len(), &Device::Cpu)?,
    })
}

/// The `[B, T]` f32 mask of a padded batch: 1 where `t < lengths[b]`, 0 on padding.
pub fn mask(lengths: &[usize], t: usize) -> candle_core::Result<Tensor> {
    let mut m = vec![0f32; lengths.len() * t];
    for (b, &l) in lengths.iter().enumerate() {
        m[b * t..b * t + l.min(t)].fill(1.0);
    }
    Tensor::from_vec(m, (lengths.len(), t), &Device::Cpu)
}

impl BatchSource for TextBatches {
    fn train_batches(
        &mut self,
        epoch: usize,
        rng: &mut rnnlab_core::Rng,
    ) -> rnnlab_core::Result<Vec<Batch>> {
        let order = self.train_order(rng);
        let ratio = padding_ratio(&self.train, &order);
        self.last_padding = Some(ratio);
        tracing::info!("epoch {epoch}: training batches pad to {ratio:.3}× the real tokens");
        order
            .iter()
            .map(|b| make_batch(&self.train, b))
            .collect::<candle_core::Result<_>>()
            .map_err(Into::into)
    }

    fn eval_batches(&self, split: EvalSplit) -> rnnlab_core::Result<Vec<Batch>> {
        let ex = self.eval(split);
        self.eval_order(split)
            .iter()
            .map(|b| make_batch(ex, b))
            .collect::<candle_core::Result<_>>()
            .map_err(Into::into)
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng as _;

    /// `n` examples of pseudo-random lengths 1..=40; label = length % 3; ids encode the index.
    fn examples(n: usize, seed: u64) -> Vec<Example> {
        let mut rng = rnnlab_core::seeded(seed);
        (0..n)
            .map(|i| {
                let len = rng.random_range(1..=40usize);
                Example {
                    ids: (0..len).map(|k| (i * 100 + k + 2) as u32).collect(),
                    label: (len % 3) as u32,
                }
            })
            .collect()
    }

    fn source(n: usize, opts: BatchOptions) -> TextBatches {
        TextBatches::new(examples(n, 5), examples(30, 6), vec![], opts, 3).unwrap()
    }

    fn opts(batch_size: usize) -> BatchOptions {
        BatchOptions {
            batch_size,
            eval_batch_size: 8,
            ..BatchOptions::default()
        }
    }

    #[test]
    fn batches_are_padded_to_their_longest_sequence() {
        let mut s = source(
            10,
            BatchOptions {
                shuffle: false,
                ..opts(4)
            },
        );
        let batches = s.train_batches(1, &mut rnnlab_core::seeded(0)).unwrap();
        assert_eq!(
            batches.iter().map(|b| b.size()).collect::<Vec<_>>(),
            [4, 4, 2]
        );
        let ex = examples(10, 5);
        for (b, chunk) in batches.iter().zip(ex.chunks(4)) {
            let t = chunk.iter().map(|e| e.ids.len()).max().unwrap();
            assert_eq!(b.ids.dims(), [chunk.len(), t]);
            assert_eq!(
                b.lengths,
                chunk.iter().map(|e| e.ids.len()).collect::<Vec<_>>()
            );
            let ids = b.ids.to_vec2::<u32>().unwrap();
            for (row, e) in ids.iter().zip(chunk) {
                assert_eq!(&row[..e.ids.len()], e.ids.as_slice());
                assert!(row[e.ids.len()..].iter().all(|&x| x == PAD_ID));
            }
            let labels = b.labels.to_vec1::<u32>().unwrap();
            assert_eq!(labels, chunk.iter().map(|e| e.label).collect::<Vec<_>>());
        }
    }

    fn order(s: &TextBatches, seed: u64, epochs: usize) -> Vec<Vec<Vec<usize>>> {
        let mut rng = rnnlab_core::seeded(seed);
        (0..epochs).map(|_| s.train_order(&mut rng)).collect()
    }

    #[test]
    fn shuffling_is_deterministic_per_seed_and_differs_per_epoch() {
        let s = source(100, opts(16));
        let a = order(&s, 1, 2);
        assert_eq!(a, order(&s, 1, 2));
        assert_ne!(a[0], a[1]);
        assert_ne!(a[0], order(&s, 2, 1)[0]);
        let mut all: Vec<usize> = a[0].concat();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        // the trait's batches follow the same order
        let mut s2 = s.clone();
        let b = s2.train_batches(1, &mut rnnlab_core::seeded(1)).unwrap();
        let ex = examples(100, 5);
        let first: Vec<usize> = a[0][0].iter().map(|&i| ex[i].ids.len()).collect();
        assert_eq!(b[0].lengths, first);
    }

    #[test]
    fn unshuffled_orders_are_fixed() {
        let s = source(
            50,
            BatchOptions {
                shuffle: false,
                ..opts(8)
            },
        );
        let a = order(&s, 1, 2);
        assert_eq!(a[0], a[1]);
        assert_eq!(a[0].concat(), (0..50).collect::<Vec<_>>());
        let s = source(
            50,
            BatchOptions {
                shuffle: false,
                sort_by_length: true,
                ..opts(8)
            },
        );
        let a = order(&s, 1, 2);
        assert_eq!(a[0], order(&s, 9, 1)[0]);
        let lens: Vec<usize> = a[0]
            .concat()
            .iter()
            .map(|&i| s.train()[i].ids.len())
            .collect();
        assert!(lens.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn buckets_reduce_padding_and_still_shuffle() {
        let random = source(
            3000,
            BatchOptions {
                buckets: false,
                ..opts(16)
            },
        );
        let bucketed = source(
            3000,
            BatchOptions {
                buckets: true,
                ..opts(16)
            },
        );
        let mut rng = rnnlab_core::seeded(4);
        let r = random.train_padding_ratio(&mut rng);
        let b = bucketed.train_padding_ratio(&mut rng);
        assert!(r > 1.5, "random batches of lengths 1..40 pad a lot: {r}");
        assert!(b < 1.2 && b < r, "bucketed {b} vs random {r}");
        let a = order(&bucketed, 1, 2);
        assert_ne!(a[0], a[1]);
        let mut all = a[0].concat();
        all.sort();
        assert_eq!(all, (0..3000).collect::<Vec<_>>());
    }

    #[test]
    fn drop_last_drops_only_the_short_batch() {
        for buckets in [false, true] {
            let s = source(
                100,
                BatchOptions {
                    drop_last: true,
                    buckets,
                    ..opts(16)
                },
            );
            let o = order(&s, 3, 1).remove(0);
            assert_eq!(o.len(), 6);
            assert!(o.iter().all(|b| b.len() == 16));
            let keep = source(
                100,
                BatchOptions {
                    buckets,
                    ..opts(16)
                },
            );
            assert_eq!(order(&keep, 3, 1)[0].len(), 7);
        }
    }

    #[test]
    fn padding_ratio_of_the_last_epoch_and_mask() {
        let mut s = source(200, opts(16));
        assert_eq!(s.padding_ratio(), None);
        let mut rng = rnnlab_core::seeded(2);
        let expected = s.train_padding_ratio(&mut rng.clone());
        let batches = s.train_batches(1, &mut rng).unwrap();
        assert_eq!(s.padding_ratio(), Some(expected));
        let cells: usize = batches
            .iter()
            .map(|b| b.ids.dims().iter().product::<usize>())
            .sum();
        let tokens: usize = batches.iter().flat_map(|b| b.lengths.clone()).sum();
        assert!((expected - cells as f64 / tokens as f64).abs() < 1e-12);
        let b = &batches[0];
        let m = mask(&b.lengths, b.ids.dims()[1])
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let ids = b.ids.to_vec2::<u32>().unwrap();
        for (row, ids) in m.iter().zip(&ids) {
            for (x, id) in row.iter().zip(ids) {
                assert_eq!(*x == 1.0, *id != PAD_ID);
            }
        }
    }

    #[test]
    fn eval_batches_are_sorted_by_length() {
        let s = source(10, opts(4));
        let b = s.eval_batches(EvalSplit::Val).unwrap();
        assert_eq!(b.iter().map(|b| b.size()).collect::<Vec<_>>(), [8, 8, 8, 6]);
        let lens: Vec<usize> = b.iter().flat_map(|b| b.lengths.clone()).collect();
        assert!(lens.windows(2).all(|w| w[0] <= w[1]));
        assert!(s.eval_batches(EvalSplit::Test).unwrap().is_empty());
        assert_eq!(s.num_classes(), 3);
    }

    #[test]
    fn padding_ratio_counts_cells_over_tokens() {
        let ex = vec![
            Example {
                ids: vec![2; 4],
                label: 0,
            },
            Example {
                ids: vec![2; 1],
                label: 0,
            },
            Example {
                ids: vec![2; 3],
                label: 0,
            },
        ];
        // [4,1] → 8 cells for 5 tokens; [3] → 3 for 3
        assert!((padding_ratio(&ex, &[vec![0, 1], vec![2]]) - 11.0 / 8.0).abs() < 1e-12);
    }

    #[test]
    fn rejects_bad_examples() {
        let bad = vec![Example {
            ids: vec![],
            label: 0,
        }];
        assert!(TextBatches::new(bad, vec![], vec![], opts(2), 2).is_err());
        let bad = vec![Example {
            ids: vec![3],
            label: 2,
        }];
        assert!(TextBatches::new(bad, vec![], vec![], opts(2), 2).is_err());
    }
}
