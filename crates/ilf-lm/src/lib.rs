//! Language models: loading (GGUF, Hugging Face), tokenizers, architectures, batched sampling.
