//! A Hugging Face model directory that `transformers.AutoModelForCausalLM.from_pretrained` loads:
//! `config.json`, `model.safetensors` (LoRA merged in), `tokenizer.json`, `tokenizer_config.json`
//! and `generation_config.json`.

use super::{write_json, ExportSource};
use crate::tensor_file::write_tensors;
use anyhow::Result;
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;

pub fn write(source: &ExportSource, dir: &Path) -> Result<()> {
    let config = source.trainable.model.config();
    write_json(&dir.join("config.json"), &config.to_hf_json())?;
    // transformers refuses safetensors files without `format` metadata.
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    write_tensors(
        &dir.join("model.safetensors"),
        source.merged_tensors()?,
        Some(metadata),
    )?;
    let tokenizer_path = dir.join("tokenizer.json");
    source
        .tokenizer
        .save(&tokenizer_path, false)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", tokenizer_path.display()))?;
    let token = |id: u32| source.tokenizer.id_to_token(id);
    let mut eos = vec![source.end_of_text];
    eos.extend(
        config
            .eos_token_ids
            .iter()
            .copied()
            .filter(|&t| t != source.end_of_text),
    );
    write_json(
        &dir.join("tokenizer_config.json"),
        &json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "eos_token": token(source.end_of_text),
            "pad_token": token(source.end_of_text),
            "bos_token": config.bos_token_id.and_then(token),
            "add_bos_token": false,
            "model_max_length": config.max_position_embeddings,
            "clean_up_tokenization_spaces": false,
        }),
    )?;
    write_json(
        &dir.join("generation_config.json"),
        &json!({
            "bos_token_id": config.bos_token_id,
            "eos_token_id": eos,
            "pad_token_id": source.end_of_text,
        }),
    )
}
