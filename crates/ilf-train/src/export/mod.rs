//! Standard outputs of a run, so the rest of the ecosystem can serve what was trained here:
//! a Hugging Face directory (`transformers`, vLLM), a PEFT adapter (`peft`, vLLM's LoRA), and a
//! GGUF file (llama.cpp, and `ilf-lm`'s own loader). Each is written under a temporary name and
//! renamed into place, so a killed export never leaves a half-written directory behind.

pub mod gguf;
pub mod hf;
pub mod peft;

use crate::trainable::Trainable;
use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file;
use candle_core::Tensor;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// An export format, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// `DIR/hf/`: config.json, model.safetensors (merged), tokenizer files, generation_config.json.
    Hf,
    /// `DIR/adapter/`: adapter_config.json and adapter_model.safetensors (LoRA runs only).
    Peft,
    /// `DIR/model.gguf` with f32 tensors.
    Gguf,
    /// `DIR/model-f16.gguf`: matrices as f16, norms and biases f32 (half the size).
    GgufF16,
}

impl std::str::FromStr for ExportFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "hf" => Self::Hf,
            "peft" => Self::Peft,
            "gguf" => Self::Gguf,
            "gguf-f16" => Self::GgufF16,
            other => bail!("unknown export format `{other}` (known: hf, peft, gguf, gguf-f16)"),
        })
    }
}

/// What every exporter needs besides the trained tensors.
pub struct ExportSource<'a> {
    pub trainable: &'a Trainable,
    pub tokenizer: &'a Tokenizer,
    /// The end-of-text token the run appended to every completion; generation stops on it.
    pub end_of_text: u32,
    /// The `--base` the run started from (PEFT's `base_model_name_or_path`).
    pub base_spec: &'a str,
    /// The base's GGUF metadata, when the base was a GGUF file.
    pub gguf_metadata: Option<&'a HashMap<String, gguf_file::Value>>,
    /// The merged tensors, built once for every export that writes them (over a bf16 base the
    /// merge reloads the f32 base from `base_spec`).
    merged: std::cell::OnceCell<Vec<(String, Tensor)>>,
}

impl<'a> ExportSource<'a> {
    pub fn new(
        trainable: &'a Trainable,
        tokenizer: &'a Tokenizer,
        end_of_text: u32,
        base_spec: &'a str,
        gguf_metadata: Option<&'a HashMap<String, gguf_file::Value>>,
    ) -> Self {
        Self {
            trainable,
            tokenizer,
            end_of_text,
            base_spec,
            gguf_metadata,
            merged: std::cell::OnceCell::new(),
        }
    }

    /// Every tensor of the trained model, LoRA merged in ([`Trainable::merged_tensors_for`]),
    /// computed on first use.
    pub(crate) fn merged_tensors(&self) -> Result<&[(String, Tensor)]> {
        if let Some(m) = self.merged.get() {
            return Ok(m);
        }
        let m = self.trainable.merged_tensors_for(self.base_spec)?;
        Ok(self.merged.get_or_init(|| m))
    }
}

/// Writes `format` into `out_dir` and returns the path written.
pub fn export(source: &ExportSource, format: ExportFormat, out_dir: &Path) -> Result<PathBuf> {
    match format {
        ExportFormat::Hf => in_place(&out_dir.join("hf"), |tmp| hf::write(source, tmp)),
        ExportFormat::Peft => in_place(&out_dir.join("adapter"), |tmp| peft::write(source, tmp)),
        ExportFormat::Gguf => {
            gguf::write(source, &out_dir.join("model.gguf"), gguf::TensorType::F32)
        }
        ExportFormat::GgufF16 => gguf::write(
            source,
            &out_dir.join("model-f16.gguf"),
            gguf::TensorType::F16,
        ),
    }
}

/// Fills a temporary sibling of `target` with `fill`, then swaps it in.
fn in_place(target: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    let name = target
        .file_name()
        .context("export target has a name")?
        .to_string_lossy();
    let tmp = target.with_file_name(format!(".tmp-{name}"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    fill(&tmp)?;
    if target.exists() {
        std::fs::remove_dir_all(target)
            .with_context(|| format!("removing {}", target.display()))?;
    }
    std::fs::rename(&tmp, target)
        .with_context(|| format!("renaming {} to {}", tmp.display(), target.display()))?;
    Ok(target.to_path_buf())
}

/// Writes pretty JSON to `path`.
fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}
