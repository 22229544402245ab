//! Errors about the user's input, raised before any compute is spent. Everything later (tensor
//! failures, disk full) travels as `anyhow::Error` with context.

use crate::data::Origin;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {reason}; fix or remove this line")]
    BadRecord { origin: Origin, reason: String },
    #[error("{path} holds no training example: write one JSON object per line with `prompt` and `completion`")]
    NoExamples { path: PathBuf },
    #[error(
        "{origin}: the prompt alone is {prompt_tokens} tokens, so truncating the sequence to \
         --max-len {max_len} leaves no completion token to learn; shorten the prompt or raise --max-len"
    )]
    CompletionTruncatedAway {
        origin: Origin,
        prompt_tokens: usize,
        max_len: usize,
    },
    #[error(
        "the base model's architecture `{architecture}` cannot be trained; trainable: {supported}"
    )]
    UnsupportedArchitecture {
        architecture: String,
        supported: String,
    },
    #[error("the tokenizer has no end-of-text token (tried {tried}); pass one with --eos-token")]
    NoEndOfText { tried: String },
    #[error("invalid setting: {0}")]
    InvalidSetting(String),
}
