//! Decoder-only transformer architectures.
//!
//! Qwen2 and Llama share one decoder ([`Model`]): Qwen2 is Llama with biases on the q/k/v
//! projections, so a single implementation with [`Config::attention_bias`] serves both rather
//! than two copies with small variations. What differs per architecture — the `config.json`
//! fields and the GGUF metadata keys and tensor layout — lives in [`qwen2`] and [`llama`].

pub mod decoder;
pub mod llama;
pub mod qwen2;

pub use decoder::{KvCache, Model};

use serde::{Deserialize, Serialize};

/// The architectures this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    Qwen2,
    Llama,
}

impl Architecture {
    /// From a GGUF `general.architecture` or a `config.json` `model_type`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "qwen2" => Some(Self::Qwen2),
            "llama" => Some(Self::Llama),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Qwen2 => "qwen2",
            Self::Llama => "llama",
        }
    }
}

/// The hyper-parameters of a decoder, whichever file they came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub tie_word_embeddings: bool,
    /// Biases on q/k/v (Qwen2: yes, Llama: usually no).
    pub attention_bias: bool,
    pub bos_token_id: Option<u32>,
    /// Every token that ends a generation.
    pub eos_token_ids: Vec<u32>,
}

impl Config {
    /// Parses a Hugging Face `config.json`, dispatching on `model_type`.
    pub fn from_hf_json(text: &str) -> anyhow::Result<Self> {
        #[derive(Deserialize)]
        struct ModelType {
            model_type: Option<String>,
        }
        let mt: ModelType = serde_json::from_str(text)?;
        let name = mt.model_type.unwrap_or_default();
        match Architecture::from_name(&name) {
            Some(Architecture::Qwen2) => Ok(serde_json::from_str::<qwen2::Config>(text)?.into()),
            Some(Architecture::Llama) => Ok(serde_json::from_str::<llama::Config>(text)?.into()),
            None => anyhow::bail!(
                "unsupported architecture {name:?} in config.json (supported: qwen2, llama)"
            ),
        }
    }

    /// The `config.json` a Hugging Face loader expects for this model (for exports).
    pub fn to_hf_json(&self) -> serde_json::Value {
        match self.architecture {
            Architecture::Qwen2 => serde_json::to_value(qwen2::Config::from(self)),
            Architecture::Llama => serde_json::to_value(llama::Config::from(self)),
        }
        .expect("a config of numbers and strings always serialises")
    }

    /// A tiny configuration of the given architecture for tests: 2 layers, hidden 64.
    pub fn tiny(architecture: Architecture, vocab_size: usize) -> Self {
        Self {
            architecture,
            vocab_size,
            hidden_size: 64,
            intermediate_size: 128,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 16,
            max_position_embeddings: 512,
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
            tie_word_embeddings: architecture == Architecture::Llama,
            attention_bias: architecture == Architecture::Qwen2,
            bos_token_id: None,
            eos_token_ids: vec![0],
        }
    }
}
