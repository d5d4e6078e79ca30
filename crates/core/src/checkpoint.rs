//! Checkpoints: safetensors with PyTorch's names, written to a temporary file and renamed.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::{Error, Result};

/// Writes `tensors` to `path` as safetensors, atomically (temporary file, then rename).
pub fn save(tensors: &BTreeMap<String, Tensor>, path: &Path) -> Result<()> {
    let tmp = path.with_extension("safetensors.tmp");
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    candle_core::safetensors::save(&map, &tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    Ok(())
}

/// Reads every tensor of a safetensors file onto the CPU.
pub fn load(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such checkpoint"),
        ));
    }
    let map = candle_core::safetensors::load(path, &Device::Cpu)?;
    Ok(map.into_iter().collect())
}
