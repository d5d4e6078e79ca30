//! `StateDict`: named tensors that make up a plugin's checkpointable state.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};

use crate::{Error, Result};

/// Named tensors (scalars as one-element f64 tensors), saved with the checkpoint.
#[derive(Clone, Debug, Default)]
pub struct StateDict {
    /// The entries.
    pub tensors: BTreeMap<String, Tensor>,
}

impl StateDict {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores a tensor.
    pub fn insert(&mut self, key: impl Into<String>, t: Tensor) {
        self.tensors.insert(key.into(), t);
    }

    /// Stores a scalar.
    pub fn insert_scalar(&mut self, key: impl Into<String>, v: f64) -> Result<()> {
        self.insert(key, Tensor::new(&[v], &Device::Cpu)?);
        Ok(())
    }

    /// The tensor at `key`, or an error naming it.
    pub fn tensor(&self, key: &str) -> Result<&Tensor> {
        self.tensors
            .get(key)
            .ok_or_else(|| Error::Mismatch(format!("state has no `{key}`")))
    }

    /// The scalar at `key`.
    pub fn scalar(&self, key: &str) -> Result<f64> {
        let t = self.tensor(key)?.to_dtype(candle_core::DType::F64)?;
        Ok(t.flatten_all()?
            .to_vec1::<f64>()?
            .first()
            .copied()
            .unwrap_or(f64::NAN))
    }

    /// Adds `other`'s entries under `prefix.`.
    pub fn extend_prefixed(&mut self, prefix: &str, other: StateDict) {
        for (k, v) in other.tensors {
            self.tensors.insert(format!("{prefix}.{k}"), v);
        }
    }

    /// The entries under `prefix.`, with the prefix removed.
    pub fn sub(&self, prefix: &str) -> StateDict {
        let p = format!("{prefix}.");
        StateDict {
            tensors: self
                .tensors
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(&p).map(|s| (s.to_string(), v.clone())))
                .collect(),
        }
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}
