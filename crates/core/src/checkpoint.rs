//! Checkpoints: safetensors with PyTorch's names, replaced atomically ([`crate::write_atomic`]).

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::{Error, Result};

/// Writes `tensors` to `path` as safetensors, atomically (a temporary file beside it, fsynced,
/// renamed over it).
///
/// The file is serialised in memory (the bytes `candle_core::safetensors::save` writes) and
/// written by [`crate::write_atomic`]: safetensors' own file writer replaces its target by a
/// rename of its own, so the file that [`crate::write_atomic_with`] fsynced would not be the one
/// renamed into place.
pub fn save(tensors: &BTreeMap<String, Tensor>, path: &Path) -> Result<()> {
    let bytes = safetensors::serialize(tensors.iter(), None)
        .map_err(|e| Error::Mismatch(format!("writing {}: {e}", path.display())))?;
    crate::write_atomic(path, &bytes)
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

    /// The bytes are those of candle's own safetensors writer, and the file has the mode of any
    /// new file (safetensors' writer left its private temporary file's 0600).
    #[test]
    fn a_checkpoint_is_candles_safetensors_with_a_new_files_mode() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = BTreeMap::new();
        let d = Device::Cpu;
        t.insert("b".to_string(), Tensor::new(&[1f32, 2.], &d).unwrap());
        t.insert("a".to_string(), Tensor::new(&[[3f64], [4.]], &d).unwrap());
        t.insert("c".to_string(), Tensor::new(&[5u32], &d).unwrap());
        let ours = dir.path().join("ours.safetensors");
        save(&t, &ours).unwrap();
        let theirs = dir.path().join("theirs.safetensors");
        let map: std::collections::HashMap<_, _> = t.clone().into_iter().collect();
        candle_core::safetensors::save(&map, &theirs).unwrap();
        assert_eq!(
            std::fs::read(&ours).unwrap(),
            std::fs::read(&theirs).unwrap()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let fresh = dir.path().join("fresh");
            std::fs::File::create(&fresh).unwrap();
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&ours), mode(&fresh));
        }
    }

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
