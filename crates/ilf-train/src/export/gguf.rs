//! A GGUF file of the trained model (LoRA merged) that llama.cpp and `ilf-lm`'s loader load.
//!
//! Tensors take llama.cpp's names (`blk.N.attn_q.weight`, …); Llama's q/k rows are permuted the
//! way `convert_hf_to_gguf.py` does for llama.cpp's RoPE. The metadata holds the architecture's
//! hyper-parameters and the tokenizer: copied from the base file when it was a GGUF (so the
//! vocabulary, merges, special ids and chat template are exactly the base's), otherwise
//! rebuilt from `tokenizer.json`.

use super::ExportSource;
use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Tensor;
use ilf_lm::models::{Architecture, Config};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// The element type of the exported matrices (vectors are always f32, as llama.cpp writes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    F32,
    F16,
}

/// llama.cpp's `general.file_type` values.
const FILE_TYPE_F32: u32 = 0;
const FILE_TYPE_F16: u32 = 1;
/// candle's writer pads tensor data to 32 bytes.
const ALIGNMENT: u32 = 32;
const TOKEN_NORMAL: i32 = 1;
const TOKEN_CONTROL: i32 = 3;
const TOKEN_USER_DEFINED: i32 = 4;

/// Writes `path` atomically (temporary file, fsync, rename).
pub fn write(source: &ExportSource, path: &Path, tensor_type: TensorType) -> Result<PathBuf> {
    let config = source.trainable.model.config();
    let metadata = metadata(source, config, tensor_type)?;
    let mut tensors = Vec::new();
    for (hf, t) in source.merged_tensors()? {
        let t = to_gguf_layout(config, hf, t.clone())?;
        let dtype = match (tensor_type, t.rank()) {
            (TensorType::F16, 2) => GgmlDType::F16,
            _ => GgmlDType::F32,
        };
        tensors.push((gguf_name(hf)?, QTensor::quantize(&t, dtype)?));
    }
    let tmp = path.with_extension("gguf.tmp");
    {
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
        );
        let meta_refs: Vec<(&str, &Value)> =
            metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let tensor_refs: Vec<(&str, &QTensor)> =
            tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        candle_core::quantized::gguf_file::write(&mut file, &meta_refs, &tensor_refs)
            .with_context(|| format!("writing {}", tmp.display()))?;
        let file = file
            .into_inner()
            .map_err(|e| anyhow::anyhow!("flushing {}: {e}", tmp.display()))?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(path.to_path_buf())
}

/// Hugging Face tensor name → llama.cpp's (the loader's own mapping, so export and load agree).
pub fn gguf_name(hf: &str) -> Result<String> {
    ilf_lm::load::gguf_name(hf).with_context(|| format!("no GGUF name for tensor {hf}"))
}

/// Llama's q/k rows (and biases) go from Hugging Face's half-split RoPE layout to llama.cpp's
/// interleaved one: the inverse of `ilf_lm::models::llama::unpermute_qk`.
fn to_gguf_layout(config: &Config, hf: &str, t: Tensor) -> Result<Tensor> {
    if config.architecture != Architecture::Llama {
        return Ok(t);
    }
    let heads = if hf.contains("self_attn.q_proj") {
        config.num_attention_heads
    } else if hf.contains("self_attn.k_proj") {
        config.num_key_value_heads
    } else {
        return Ok(t);
    };
    let rows = t.dim(0)?;
    let cols = t.elem_count() / rows;
    let shape = t.shape().clone();
    let head_dim = rows / heads;
    Ok(t.reshape((heads, 2, head_dim / 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(shape)?)
}

fn metadata(
    source: &ExportSource,
    config: &Config,
    tensor_type: TensorType,
) -> Result<BTreeMap<String, Value>> {
    let arch = config.architecture.name();
    let mut m: BTreeMap<String, Value> = BTreeMap::new();
    match source.gguf_metadata {
        Some(base) => {
            for (k, v) in base {
                m.insert(k.clone(), v.clone());
            }
            // The base was quantized; this file is not.
            m.remove("general.quantization_version");
        }
        None => m.extend(tokenizer_metadata(
            source.tokenizer,
            config,
            source.end_of_text,
        )?),
    }
    let u = |x: usize| Value::U32(x as u32);
    m.insert("general.architecture".into(), Value::String(arch.into()));
    m.entry("general.name".into())
        .or_insert(Value::String("ilf fine-tune".into()));
    let file_type = match tensor_type {
        TensorType::F32 => FILE_TYPE_F32,
        TensorType::F16 => FILE_TYPE_F16,
    };
    m.insert("general.file_type".into(), Value::U32(file_type));
    m.insert("general.alignment".into(), Value::U32(ALIGNMENT));
    for (key, value) in [
        ("block_count", u(config.num_hidden_layers)),
        ("context_length", u(config.max_position_embeddings)),
        ("embedding_length", u(config.hidden_size)),
        ("feed_forward_length", u(config.intermediate_size)),
        ("attention.head_count", u(config.num_attention_heads)),
        ("attention.head_count_kv", u(config.num_key_value_heads)),
        ("attention.key_length", u(config.head_dim)),
        ("attention.value_length", u(config.head_dim)),
        ("rope.dimension_count", u(config.head_dim)),
        ("rope.freq_base", Value::F32(config.rope_theta as f32)),
        (
            "attention.layer_norm_rms_epsilon",
            Value::F32(config.rms_norm_eps as f32),
        ),
        ("vocab_size", u(config.vocab_size)),
    ] {
        m.insert(format!("{arch}.{key}"), value);
    }
    Ok(m)
}

/// llama.cpp's byte-level BPE tokenizer metadata from a `tokenizers` BPE tokenizer.
fn tokenizer_metadata(
    tokenizer: &Tokenizer,
    config: &Config,
    end_of_text: u32,
) -> Result<HashMap<String, Value>> {
    let spec: serde_json::Value = serde_json::from_str(
        &tokenizer
            .to_string(false)
            .map_err(|e| anyhow::anyhow!("serialising the tokenizer: {e}"))?,
    )?;
    let model = &spec["model"];
    if model["type"] != "BPE" {
        bail!(
            "GGUF export supports byte-level BPE tokenizers; this one is {}",
            model["type"]
        );
    }
    let vocab = model["vocab"]
        .as_object()
        .context("tokenizer has no BPE vocabulary")?;
    let size = tokenizer.get_vocab_size(true).max(config.vocab_size);
    let mut tokens: Vec<Option<String>> = vec![None; size];
    let mut types = vec![TOKEN_NORMAL; size];
    for (token, id) in vocab {
        let id = id.as_u64().context("vocabulary id is not a number")? as usize;
        if id < size {
            tokens[id] = Some(token.clone());
        }
    }
    for added in spec["added_tokens"].as_array().into_iter().flatten() {
        let id = added["id"].as_u64().context("added token without id")? as usize;
        if id < size {
            tokens[id] = added["content"].as_str().map(String::from);
            types[id] = if added["special"].as_bool() == Some(true) {
                TOKEN_CONTROL
            } else {
                TOKEN_USER_DEFINED
            };
        }
    }
    // Ids the tokenizer does not use (a model vocabulary padded past the tokenizer's) still need
    // distinct names in GGUF.
    let tokens: Vec<Value> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| Value::String(t.unwrap_or_else(|| format!("[PAD{i}]"))))
        .collect();
    let merges: Vec<Value> = model["merges"]
        .as_array()
        .context("tokenizer has no merges")?
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => Ok(Value::String(s.clone())),
            serde_json::Value::Array(pair) if pair.len() == 2 => Ok(Value::String(format!(
                "{} {}",
                pair[0].as_str().unwrap_or_default(),
                pair[1].as_str().unwrap_or_default()
            ))),
            other => bail!("unexpected merge entry {other}"),
        })
        .collect::<Result<_>>()?;
    let mut m = HashMap::new();
    m.insert("tokenizer.ggml.model".into(), Value::String("gpt2".into()));
    m.insert(
        "tokenizer.ggml.pre".into(),
        Value::String(pre_tokenizer_name(&spec["pre_tokenizer"])?.into()),
    );
    m.insert("tokenizer.ggml.tokens".into(), Value::Array(tokens));
    m.insert(
        "tokenizer.ggml.token_type".into(),
        Value::Array(types.into_iter().map(Value::I32).collect()),
    );
    m.insert("tokenizer.ggml.merges".into(), Value::Array(merges));
    m.insert(
        "tokenizer.ggml.eos_token_id".into(),
        Value::U32(end_of_text),
    );
    m.insert(
        "tokenizer.ggml.padding_token_id".into(),
        Value::U32(end_of_text),
    );
    if let Some(bos) = config.bos_token_id {
        m.insert("tokenizer.ggml.bos_token_id".into(), Value::U32(bos));
    }
    m.insert("tokenizer.ggml.add_bos_token".into(), Value::Bool(false));
    Ok(m)
}

/// llama.cpp's name for the pre-tokenizer, recognised from its split regex.
fn pre_tokenizer_name(pre: &serde_json::Value) -> Result<&'static str> {
    let text = pre.to_string();
    if text.contains(r"\\p{N}{1,3}") {
        Ok("llama-bpe")
    } else if text.contains(r"\\p{N}|") && text.contains("Split") {
        Ok("qwen2")
    } else if text.contains("ByteLevel")
        && text.contains(r#""use_regex":true"#)
        && !text.contains("Split")
    {
        Ok("gpt-2")
    } else {
        bail!("cannot name this tokenizer's pre-tokenizer for GGUF (known: qwen2, llama-bpe, gpt-2): {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_llama_cpp() {
        assert_eq!(
            gguf_name("model.layers.3.self_attn.k_proj.bias").unwrap(),
            "blk.3.attn_k.bias"
        );
        assert_eq!(
            gguf_name("model.layers.0.mlp.down_proj.weight").unwrap(),
            "blk.0.ffn_down.weight"
        );
        assert_eq!(gguf_name("lm_head.weight").unwrap(), "output.weight");
        assert!(gguf_name("model.rotary.inv_freq").is_err());
    }

    #[test]
    fn llama_permutation_inverts_the_loaders() {
        let cfg = Config::tiny(Architecture::Llama, 32);
        let rows = cfg.num_attention_heads * cfg.head_dim;
        let w = Tensor::arange(0f32, (rows * 3) as f32, &candle_core::Device::Cpu)
            .unwrap()
            .reshape((rows, 3))
            .unwrap();
        let g = to_gguf_layout(&cfg, "model.layers.0.self_attn.q_proj.weight", w.clone()).unwrap();
        assert_ne!(g.to_vec2::<f32>().unwrap(), w.to_vec2::<f32>().unwrap());
        let back = ilf_lm::models::llama::unpermute_qk(&g, cfg.num_attention_heads).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), w.to_vec2::<f32>().unwrap());
    }
}
