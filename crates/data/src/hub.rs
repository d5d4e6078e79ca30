//! The catalogue behind `rnnlab fetch NAME` (cargo feature `hub` of rnnlab-cli): where each data
//! set or vector file lives on the Hugging Face hub, and the `[data]` pipeline text that reads the
//! downloaded files with this crate's readers. No network code here: the CLI downloads, this
//! module says what to download and how to read it (tested on local files).

use std::path::{Path, PathBuf};

use crate::DataError;

/// One fetchable item.
#[derive(Clone, Copy, Debug)]
pub struct HubEntry {
    /// The name given to `rnnlab fetch`.
    pub name: &'static str,
    /// One line about it.
    pub about: &'static str,
    /// The hub repository (`owner/name`).
    pub repo: &'static str,
    /// A dataset repository (else a model repository).
    pub dataset: bool,
    /// The files to download, in the order [`HubEntry::pipeline_toml`] takes them.
    pub files: &'static [&'static str],
}

/// Everything `rnnlab fetch` knows.
pub const CATALOGUE: &[HubEntry] = &[
    HubEntry {
        name: "glove-6b-50d",
        about: "GloVe 6B (Wikipedia + Gigaword), 400,000 lowercase words × 50, text format",
        repo: "kcz358/glove",
        dataset: false,
        files: &["glove.6B/glove.6B.50d.txt"],
    },
    HubEntry {
        name: "glove-6b-100d",
        about: "GloVe 6B, 400,000 words × 100, text format",
        repo: "kcz358/glove",
        dataset: false,
        files: &["glove.6B/glove.6B.100d.txt"],
    },
    HubEntry {
        name: "glove-6b-300d",
        about: "GloVe 6B, 400,000 words × 300, text format",
        repo: "kcz358/glove",
        dataset: false,
        files: &["glove.6B/glove.6B.300d.txt"],
    },
    HubEntry {
        name: "sst5",
        about: "SST-5 sentences (8,544 / 1,101 / 2,210), JSON lines with text and label 0..4",
        repo: "SetFit/sst5",
        dataset: true,
        files: &["train.jsonl", "dev.jsonl", "test.jsonl"],
    },
];

/// The entry called `name`; an unknown name lists the catalogue.
pub fn find(name: &str) -> Result<&'static HubEntry, DataError> {
    CATALOGUE.iter().find(|e| e.name == name).ok_or_else(|| {
        let names: Vec<&str> = CATALOGUE.iter().map(|e| e.name).collect();
        DataError::Invalid(format!(
            "rnnlab fetch: no entry \"{name}\"{}; known: {}",
            rnnlab_core::suggest(name, names.iter().copied()),
            names.join(", ")
        ))
    })
}

fn quoted(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

impl HubEntry {
    /// Pipeline text that reads the downloaded `paths` (one per [`HubEntry::files`]): a
    /// `[data]` table for a data set, a `[data.embeddings]` table for vectors.
    pub fn pipeline_toml(&self, paths: &[PathBuf]) -> Result<String, DataError> {
        if paths.len() != self.files.len() {
            return Err(DataError::Invalid(format!(
                "{}: {} files expected, {} given",
                self.name,
                self.files.len(),
                paths.len()
            )));
        }
        Ok(if self.name.starts_with("glove") {
            format!(
                "[data.embeddings]\ntype = \"glove\"\npath = {}\n",
                quoted(&paths[0])
            )
        } else {
            format!(
                "[data]\ntype = \"jsonl\"\ntext = \"text\"\nlabel = \"label\"\nlabels = [0, 1, 2, 3, 4]\n\
                 split = {{ train = {}, val = {}, test = {} }}\n",
                quoted(&paths[0]),
                quoted(&paths[1]),
                quoted(&paths[2])
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{prepare, DataConfig};

    #[test]
    fn catalogue_names_are_unique_and_found() {
        for e in CATALOGUE {
            assert_eq!(find(e.name).unwrap().name, e.name);
        }
        let msg = find("sst-5").unwrap_err().to_string();
        assert!(msg.contains("did you mean `sst5`"), "{msg}");
    }

    #[test]
    fn sst5_files_load_with_the_generated_pipeline() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for (f, n) in [("train.jsonl", 40), ("dev.jsonl", 7), ("test.jsonl", 9)] {
            let text: String = (0..n)
                .map(|i| {
                    format!(
                        "{{\"text\": \"a \\\"quoted\\\" film {i}\", \"label\": {}, \"label_text\": \"x\"}}\n",
                        i % 5
                    )
                })
                .collect();
            let p = dir.path().join(f);
            std::fs::write(&p, text).unwrap();
            paths.push(p);
        }
        let toml_text = find("sst5").unwrap().pipeline_toml(&paths).unwrap();
        let table: toml::Table = toml::from_str(&toml_text).unwrap();
        let cfg: DataConfig = table["data"].clone().try_into().unwrap();
        let p = prepare(&cfg, &mut rnnlab_core::seeded(1)).unwrap();
        assert_eq!(
            (p.report.rows.train, p.report.rows.val, p.report.rows.test),
            (40, 7, 9)
        );
        assert_eq!(p.labels, ["0", "1", "2", "3", "4"]);
    }

    #[test]
    fn glove_file_loads_with_the_generated_table() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("glove.6B.50d.txt");
        std::fs::write(&p, "the 0.1 0.2\nfilm 0.3 0.4\n").unwrap();
        let toml_text = find("glove-6b-50d").unwrap().pipeline_toml(&[p]).unwrap();
        let table: toml::Table = toml::from_str(&toml_text).unwrap();
        let e: crate::EmbeddingsConfig = table["data"]["embeddings"].clone().try_into().unwrap();
        let all = crate::glove::load_all(&e.path, None).unwrap();
        assert_eq!((all.words.len(), all.dim), (2, 2));
    }
}
