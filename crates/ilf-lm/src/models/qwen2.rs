//! Qwen2 (Qwen Team 2024, "Qwen2 Technical Report"; checkpoints such as
//! `Qwen/Qwen2.5-Coder-0.5B-Instruct`): Llama's decoder with biases on q/k/v, RoPE base 1e6.
//!
//! This file holds what is specific to the architecture: its `config.json` and its GGUF keys.

use super::{Architecture, Config as ModelConfig};
use serde::{Deserialize, Serialize};

/// Mirrors a Qwen2 `config.json` field for field.
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
    pub num_key_value_heads: usize,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<super::llama::TokenIds>,
    #[serde(default = "hidden_act")]
    pub hidden_act: String,
    #[serde(default = "torch_dtype")]
    pub torch_dtype: String,
}

fn model_type() -> String {
    "qwen2".into()
}
fn architectures() -> Vec<String> {
    vec!["Qwen2ForCausalLM".into()]
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
            architecture: Architecture::Qwen2,
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            intermediate_size: c.intermediate_size,
            num_hidden_layers: c.num_hidden_layers,
            num_attention_heads: c.num_attention_heads,
            num_key_value_heads: c.num_key_value_heads,
            head_dim: c.hidden_size / c.num_attention_heads,
            max_position_embeddings: c.max_position_embeddings,
            rms_norm_eps: c.rms_norm_eps,
            rope_theta: c.rope_theta,
            tie_word_embeddings: c.tie_word_embeddings,
            attention_bias: true,
            bos_token_id: c.bos_token_id,
            eos_token_ids: c.eos_token_id.map(|t| t.into_vec()).unwrap_or_default(),
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
            num_key_value_heads: c.num_key_value_heads,
            max_position_embeddings: c.max_position_embeddings,
            rms_norm_eps: c.rms_norm_eps,
            rope_theta: c.rope_theta,
            tie_word_embeddings: c.tie_word_embeddings,
            bos_token_id: c.bos_token_id,
            eos_token_id: super::llama::TokenIds::from_vec(&c.eos_token_ids),
            hidden_act: hidden_act(),
            torch_dtype: torch_dtype(),
        }
    }
}
