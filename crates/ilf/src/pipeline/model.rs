//! The base model of a run: a spec `ilf-lm` and `ilf-train` understand, the tokenizer alone (for
//! fitting prompts into token budgets without loading weights), and the tiny random model the
//! tests use, built into the run directory.

use super::config::TINY_MODEL;
use super::manifest::RunDir;
use anyhow::{Context, Result};
use candle_core::Device;
use ilf_lm::load::{resolve, ModelSource};
use ilf_lm::models::{Architecture, Config};
use ilf_lm::Tokenizer;
use ilf_train::export::{export, ExportFormat, ExportSource};
use ilf_train::trainable::{Method, Trainable};
use std::path::PathBuf;

/// Vocabulary of the tiny model's tokenizer (trained on the Python standard library).
const TINY_VOCAB: usize = 2000;
/// The tiny model's context: room for a refiner prompt (old code, feedback, task prompt) of a
/// 400-token vocabulary, plus its refinement.
const TINY_CONTEXT: usize = 4096;

/// The base model's spec: the configured one, or for `tiny-random` the Hugging Face directory
/// stage `00-model` builds (a 2-layer random Qwen2 decoder and a BPE tokenizer trained on the
/// fly; built once per run, so every later stage and every resumed invocation sees the same one).
pub fn base_spec(run: &RunDir) -> Result<String> {
    if run.config.model != TINY_MODEL {
        return Ok(run.config.model.clone());
    }
    run.stage("00-model", &[], |dir, seed| {
        let corpus = ilf_lm::tokenizer::stdlib_corpus(300_000)?;
        let tokenizer = ilf_lm::tokenizer::train_byte_level_bpe(&corpus, TINY_VOCAB)?;
        let end_of_text = tokenizer
            .token_to_id("<|endoftext|>")
            .context("the trained tokenizer has no <|endoftext|>")?;
        let mut config = Config::tiny(Architecture::Qwen2, tokenizer.get_vocab_size(true));
        config.max_position_embeddings = TINY_CONTEXT;
        config.eos_token_ids = vec![end_of_text];
        let weights = ilf_lm::load::tiny_random_weights(&config, seed, &Device::Cpu)?;
        let trainable = Trainable::new(&config, weights, Method::Full, seed)?;
        let source = ExportSource::new(&trainable, &tokenizer, end_of_text, TINY_MODEL, None);
        let hf = export(&source, ExportFormat::Hf, dir)?;
        Ok((vec![hf], ()))
    })?;
    Ok(tiny_dir(run).display().to_string())
}

fn tiny_dir(run: &RunDir) -> PathBuf {
    run.stage_dir("00-model").join("hf")
}

/// The tokenizer of `spec`, without its weights.
pub fn tokenizer(spec: &str) -> Result<Tokenizer> {
    match resolve(spec)? {
        ModelSource::Gguf(path) => {
            let content = ilf_train::base::read_gguf_header(&path)?;
            Ok(ilf_lm::tokenizer::from_gguf(&content)?.0)
        }
        ModelSource::HfDir(dir) => ilf_lm::tokenizer::from_file(&dir.join("tokenizer.json")),
    }
}

/// `text` cut to its first `max_tokens` tokens (whole tokens, decoded back to text).
pub fn head_tokens(tokenizer: &Tokenizer, text: &str, max_tokens: usize) -> Result<String> {
    let ids = ilf_lm::tokenizer::encode(tokenizer, text)?;
    if ids.len() <= max_tokens {
        return Ok(text.to_string());
    }
    ilf_lm::tokenizer::decode(tokenizer, &ids[..max_tokens])
}

pub fn count_tokens(tokenizer: &Tokenizer, text: &str) -> Result<usize> {
    Ok(ilf_lm::tokenizer::encode(tokenizer, text)?.len())
}
