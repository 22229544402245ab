//! Llama (Touvron et al. 2023; checkpoints such as `HuggingFaceTB/SmolLM2-135M-Instruct`):
//! pre-norm decoder, RMSNorm, SwiGLU, rotary embeddings, grouped-query attention.
//!
//! This file holds what is specific to the architecture: its `config.json` and its GGUF layout
//! (llama.cpp stores q/k rows permuted for interleaved RoPE; [`unpermute_qk`] undoes that).

use super::{Architecture, Config as ModelConfig};
use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// `eos_token_id` is a number or a list in `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    pub fn into_vec(self) -> Vec<u32> {
        match self {
            Self::One(t) => vec![t],
            Self::Many(v) => v,
        }
    }

    pub fn from_vec(ids: &[u32]) -> Option<Self> {
        match ids {
            [] => None,
            [one] => Some(Self::One(*one)),
            many => Some(Self::Many(many.to_vec())),
        }
    }
}

/// Mirrors a Llama `config.json` field for field.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    #[serde(default = "model_type")]
    pub model_type: String,
    #[serde(default = "architectures")]
    pub architectures: Vec<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    #[serde(default = "rope_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    #[serde(default = "hidden_act")]
    pub hidden_act: String,
    #[serde(default = "torch_dtype")]
    pub torch_dtype: String,
}

fn model_type() -> String {
    "llama".into()
}
fn architectures() -> Vec<String> {
    vec!["LlamaForCausalLM".into()]
}
fn rope_theta() -> f64 {
    10_000.0
}
fn hidden_act() -> String {
    "silu".into()
}
fn torch_dtype() -> String {
    "float32".into()
}

impl From<Config> for ModelConfig {
    fn from(c: Config) -> Self {
        ModelConfig {
            architecture: Architecture::Llama,
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            intermediate_size: c.intermediate_size,
            num_hidden_layers: c.num_hidden_layers,
            num_attention_heads: c.num_attention_heads,
            num_key_value_heads: c.num_key_value_heads.unwrap_or(c.num_attention_heads),
            head_dim: c.head_dim.unwrap_or(c.hidden_size / c.num_attention_heads),
            max_position_embeddings: c.max_position_embeddings,
            rms_norm_eps: c.rms_norm_eps,
            rope_theta: c.rope_theta,
            tie_word_embeddings: c.tie_word_embeddings,
            attention_bias: c.attention_bias,
            bos_token_id: c.bos_token_id,
            eos_token_ids: c.eos_token_id.map(TokenIds::into_vec).unwrap_or_default(),
        }
    }
}

impl From<&ModelConfig> for Config {
    fn from(c: &ModelConfig) -> Self {
        Config {
            model_type: model_type(),
            architectures: architectures(),
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            intermediate_size: c.intermediate_size,
            num_hidden_layers: c.num_hidden_layers,
            num_attention_heads: c.num_attention_heads,
            num_key_value_heads: Some(c.num_key_value_heads),
            head_dim: Some(c.head_dim),
            max_position_embeddings: c.max_position_embeddings,
            rms_norm_eps: c.rms_norm_eps,
            rope_theta: c.rope_theta,
            tie_word_embeddings: c.tie_word_embeddings,
            attention_bias: c.attention_bias,
            bos_token_id: c.bos_token_id,
            eos_token_id: TokenIds::from_vec(&c.eos_token_ids),
            hidden_act: hidden_act(),
            torch_dtype: torch_dtype(),
        }
    }
}

/// Undoes llama.cpp's permutation of the q/k projection rows (`convert_hf_to_gguf.py`'s
/// `permute`), which it applies so that its interleaved RoPE matches Hugging Face's half-split
/// RoPE. `w` is `[n_head * head_dim, in]`.
pub fn unpermute_qk(w: &Tensor, n_head: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    let head_dim = rows / n_head;
    w.reshape((n_head, head_dim / 2, 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))
}
