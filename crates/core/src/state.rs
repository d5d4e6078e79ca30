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

    /// Stores `values` as an f64 tensor; nothing when empty ([`StateDict::f64s`] reads a missing
    /// key as empty).
    pub fn insert_f64s(&mut self, key: impl Into<String>, values: &[f64]) -> Result<()> {
        if !values.is_empty() {
            self.insert(key, Tensor::new(values, &Device::Cpu)?);
        }
        Ok(())
    }

    /// The values [`StateDict::insert_f64s`] stored at `key` (empty when there are none).
    pub fn f64s(&self, key: &str) -> Result<Vec<f64>> {
        match self.tensors.get(key) {
            Some(t) => Ok(t
                .flatten_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_vec1::<f64>()?),
            None => Ok(Vec::new()),
        }
    }

    /// Stores bytes as a u8 tensor; nothing when empty ([`StateDict::bytes`] reads a missing
    /// key as empty).
    pub fn insert_bytes(&mut self, key: impl Into<String>, bytes: Vec<u8>) -> Result<()> {
        if !bytes.is_empty() {
            let n = bytes.len();
            self.insert(key, Tensor::from_vec(bytes, n, &Device::Cpu)?);
        }
        Ok(())
    }

    /// The bytes [`StateDict::insert_bytes`] stored at `key` (empty when there are none).
    pub fn bytes(&self, key: &str) -> Result<Vec<u8>> {
        match self.tensors.get(key) {
            Some(t) => Ok(t.flatten_all()?.to_vec1::<u8>()?),
            None => Ok(Vec::new()),
        }
    }

    /// Stores `value` as JSON (for state that is not numbers: names, a generator).
    pub fn insert_json(&mut self, key: &str, value: &impl serde::Serialize) -> Result<()> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| Error::Mismatch(format!("state `{key}`: {e}")))?;
        self.insert_bytes(key, bytes)
    }

    /// The value [`StateDict::insert_json`] stored at `key`.
    pub fn json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T> {
        serde_json::from_slice(&self.tensor(key)?.flatten_all()?.to_vec1::<u8>()?)
            .map_err(|e| Error::Mismatch(format!("state `{key}`: {e}")))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Lists, bytes and JSON survive a safetensors file exactly; empty ones are read back empty.
    #[test]
    fn values_round_trip_through_a_file() -> Result<()> {
        let mut s = StateDict::new();
        let xs = [0.1, f64::MIN_POSITIVE, 1e300, -0.0, f64::NAN, f64::INFINITY];
        s.insert_f64s("xs", &xs)?;
        s.insert_f64s("none", &[])?;
        s.insert_bytes("buf", b"{\"step\":1}\n".to_vec())?;
        s.insert_json("names", &vec!["a.b", "c"])?;
        let path = std::env::temp_dir().join(format!(
            "rnnlab-state-round-trip-{}.safetensors",
            std::process::id()
        ));
        crate::checkpoint::save(&s.tensors, &path)?;
        let back = StateDict {
            tensors: crate::checkpoint::load(&path)?,
        };
        std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        let got = back.f64s("xs")?;
        assert_eq!(got.len(), xs.len());
        for (a, b) in got.iter().zip(xs) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
        assert!(back.f64s("none")?.is_empty());
        assert_eq!(back.bytes("buf")?, b"{\"step\":1}\n");
        assert!(back.bytes("missing")?.is_empty());
        assert_eq!(back.json::<Vec<String>>("names")?, ["a.b", "c"]);
        assert!(back.json::<Vec<String>>("missing").is_err());
        Ok(())
    }
}
