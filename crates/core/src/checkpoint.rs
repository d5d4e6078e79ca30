//! Checkpoints: safetensors with PyTorch's names, replaced atomically ([`crate::write_atomic_with`]).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::{Error, Result};

/// Writes `tensors` to `path` as safetensors, atomically (a temporary file beside it, fsynced,
/// renamed over it).
pub fn save(tensors: &BTreeMap<String, Tensor>, path: &Path) -> Result<()> {
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    crate::write_atomic_with(path, |tmp| {
        candle_core::safetensors::save(&map, tmp)
            .map_err(|e| Error::Mismatch(format!("writing {}: {e}", path.display())))
    })
}

/// Reads every tensor of a safetensors file onto the CPU. A missing or unreadable file is an
/// error that names it.
pub fn load(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    if !path.is_file() {
        return Err(Error::Mismatch(format!(
            "{}: no such checkpoint file",
            path.display()
        )));
    }
    let map = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| {
        Error::Mismatch(format!(
            "{}: not a readable safetensors file ({e})",
            path.display()
        ))
    })?;
    Ok(map.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_corrupt_files_are_named_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("best.safetensors");
        let e = load(&p).unwrap_err().to_string();
        assert!(e.starts_with(&p.display().to_string()), "{e}");
        assert_eq!(e.matches("no such").count(), 1, "{e}");

        let mut t = BTreeMap::new();
        t.insert(
            "w".to_string(),
            Tensor::new(&[1f32, 2., 3.], &Device::Cpu).unwrap(),
        );
        save(&t, &p).unwrap();
        assert_eq!(
            load(&p).unwrap()["w"].to_vec1::<f32>().unwrap(),
            [1., 2., 3.]
        );
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains(&p.display().to_string()), "{e}");
        assert!(e.contains("not a readable safetensors file"), "{e}");
    }
}
