//! MBPP tasks, splits, the paper prompt, completion truncation, JSONL records and pass@k.
//!
//! This crate is the bottom of the crate graph: it knows nothing about models, tensors or the
//! sandbox, so every stage can read and write the same records.

pub mod error;
pub mod fetch;
mod lexer;
pub mod mbpp;
pub mod metrics;
pub mod prompt;
pub mod records;
pub mod split;
pub mod truncate;
pub mod verdict;

pub use error::DataError;

use std::path::PathBuf;

/// Where ilf keeps downloaded data: `$ILF_CACHE` if set (and not empty), else `~/.cache/ilf`
/// (`$HOME/.cache/ilf`; `.cache/ilf` relative to the working directory if `HOME` is unset).
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("ILF_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => match std::env::var_os("HOME") {
            Some(home) if !home.is_empty() => PathBuf::from(home).join(".cache").join("ilf"),
            _ => PathBuf::from(".cache").join("ilf"),
        },
    }
}
