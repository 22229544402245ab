//! A PEFT LoRA adapter that `peft.PeftModel.from_pretrained(base, DIR)` and vLLM load:
//! `adapter_config.json` and `adapter_model.safetensors` with keys
//! `base_model.model.<module>.lora_A.weight` (`[r, in]`) and `…lora_B.weight` (`[out, r]`).

use super::{write_json, ExportSource};
use crate::tensor_file::write_tensors;
use crate::trainable::Method;
use anyhow::{bail, Result};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;

/// PEFT's prefix for adapter keys of a causal LM (`PeftModelForCausalLM.base_model.model`).
const PREFIX: &str = "base_model.model.";

pub fn write(source: &ExportSource, dir: &Path) -> Result<()> {
    let Method::Lora(options) = &source.trainable.method else {
        bail!("a PEFT adapter needs a LoRA run (--lora); this run fine-tuned every weight: export hf or gguf");
    };
    let mut tensors = Vec::with_capacity(2 * source.trainable.adapters.len());
    for a in &source.trainable.adapters {
        tensors.push((format!("{PREFIX}{}", a.a_name()), a.a.as_tensor().clone()));
        tensors.push((format!("{PREFIX}{}", a.b_name()), a.b.as_tensor().clone()));
    }
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    write_tensors(
        &dir.join("adapter_model.safetensors"),
        &tensors,
        Some(metadata),
    )?;
    write_json(
        &dir.join("adapter_config.json"),
        &json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": source.base_spec,
            "r": options.rank,
            "lora_alpha": options.alpha,
            "lora_dropout": options.dropout,
            "target_modules": options.targets,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "use_rslora": false,
            "use_dora": false,
            "modules_to_save": null,
            "layers_to_transform": null,
            "layers_pattern": null,
            "rank_pattern": {},
            "alpha_pattern": {},
            "revision": null,
        }),
    )
}
