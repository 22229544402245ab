//! The base model a run starts from: f32 weights by Hugging Face name, config and tokenizer,
//! plus the GGUF header when it came from a GGUF file (its tokenizer metadata is carried into
//! GGUF exports unchanged).

use crate::error::TrainError;
use anyhow::{Context, Result};
use candle_core::quantized::gguf_file;
use candle_core::Tensor;
use ilf_lm::load::{resolve, ModelSource};
use ilf_lm::models::{Architecture, Config};
use std::collections::HashMap;
use std::path::Path;
use tokenizers::Tokenizer;

/// A loaded base model.
pub struct Base {
    /// What the user passed (`--base`): a registry name, a `.gguf` path or a directory.
    pub spec: String,
    pub config: Config,
    pub weights: HashMap<String, Tensor>,
    pub tokenizer: Tokenizer,
    /// The base file's GGUF metadata, when it is a GGUF file.
    pub gguf_metadata: Option<HashMap<String, gguf_file::Value>>,
}

const TRAINABLE: &str = "qwen2, llama";

/// The base model when none is named: the registry's default policy model.
pub use ilf_lm::registry::DEFAULT as DEFAULT_BASE;

/// Resolves `spec`, checks that its architecture is one the trainer can train (reading only
/// the header or `config.json`), then loads every weight as f32.
pub fn load_base(spec: &str) -> Result<Base> {
    let source = resolve(spec)?;
    let gguf_metadata = match &source {
        ModelSource::Gguf(path) => {
            let header = read_gguf_header(path)?;
            let arch = header
                .metadata
                .get("general.architecture")
                .and_then(|v| v.to_string().ok())
                .cloned()
                .unwrap_or_else(|| "(none)".into());
            check_architecture(&arch)?;
            Some(header.metadata)
        }
        ModelSource::HfDir(dir) => {
            let path = dir.join("config.json");
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            check_architecture(value["model_type"].as_str().unwrap_or("(none)"))?;
            None
        }
    };
    let (config, weights, tokenizer) = ilf_lm::load::load_f32_weights(spec)?;
    Ok(Base {
        spec: spec.to_string(),
        config,
        weights,
        tokenizer,
        gguf_metadata,
    })
}

fn check_architecture(name: &str) -> Result<(), TrainError> {
    match Architecture::from_name(name) {
        Some(_) => Ok(()),
        None => Err(TrainError::UnsupportedArchitecture {
            architecture: name.to_string(),
            supported: TRAINABLE.into(),
        }),
    }
}

/// The header (metadata and tensor table) of a GGUF file, without its tensor data.
pub fn read_gguf_header(path: &Path) -> Result<gguf_file::Content> {
    let mut file = std::io::BufReader::new(
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
    );
    gguf_file::Content::read(&mut file)
        .map_err(|e| anyhow::anyhow!("{} is not a readable GGUF file: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_architecture_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"model_type": "gpt_neox"}"#,
        )
        .unwrap();
        let err = load_base(dir.path().to_str().unwrap())
            .err()
            .expect("must fail");
        let text = err.to_string();
        assert!(
            text.contains("`gpt_neox`") && text.contains("qwen2, llama"),
            "{text}"
        );
    }
}
