//! Tokenizers: rebuilt from a GGUF file's metadata, read from `tokenizer.json`, or trained on the
//! fly for tests.
//!
//! A GGUF file carries a byte-level BPE vocabulary (`tokenizer.ggml.tokens`), its merges, token
//! types and the name of llama.cpp's pre-tokenizer (`tokenizer.ggml.pre`). We rebuild the same
//! pipeline as the model's `tokenizer.json` (NFC → regex split → byte-level → BPE) as JSON and
//! hand it to the `tokenizers` crate, so encoding matches the reference exactly.

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use serde_json::{json, Map};
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// GGUF token types (llama.cpp `llama_token_type`).
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Qwen2's pre-tokenizer split (from its `tokenizer.json`; llama.cpp calls it `qwen2`).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Llama 3's split (`llama-bpe`): like Qwen2's but digits in groups of up to three.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Tokenizer facts the sampler needs besides the vocabulary.
#[derive(Debug, Clone, Default)]
pub struct TokenizerInfo {
    pub bos_token_id: Option<u32>,
    /// Tokens that end a generation (`eos`, `eot`, and `<|endoftext|>` where present).
    pub eos_token_ids: Vec<u32>,
    /// The Jinja chat template, when the file has one.
    pub chat_template: Option<String>,
}

fn meta<'a>(ct: &'a Content, key: &str) -> Option<&'a Value> {
    ct.metadata.get(key)
}

fn strings(v: &Value, key: &str) -> Result<Vec<String>> {
    v.to_vec()
        .with_context(|| format!("GGUF metadata {key} is not an array"))?
        .iter()
        .map(|s| {
            s.to_string()
                .cloned()
                .with_context(|| format!("GGUF metadata {key} holds a non-string"))
        })
        .collect()
}

/// Rebuilds the tokenizer stored in a GGUF file's metadata.
pub fn from_gguf(ct: &Content) -> Result<(Tokenizer, TokenizerInfo)> {
    let model = meta(ct, "tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .context("GGUF has no tokenizer.ggml.model: it carries no tokenizer")?;
    if model != "gpt2" {
        bail!("unsupported GGUF tokenizer model {model:?} (supported: gpt2, i.e. byte-level BPE)");
    }
    let tokens = strings(
        meta(ct, "tokenizer.ggml.tokens").context("GGUF has no tokenizer.ggml.tokens")?,
        "tokenizer.ggml.tokens",
    )?;
    let merges = strings(
        meta(ct, "tokenizer.ggml.merges").context("GGUF has no tokenizer.ggml.merges")?,
        "tokenizer.ggml.merges",
    )?;
    let types: Vec<i32> = match meta(ct, "tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()
            .context("tokenizer.ggml.token_type is not an array")?
            .iter()
            .map(|t| {
                t.to_i32()
                    .context("tokenizer.ggml.token_type holds a non-integer")
            })
            .collect::<Result<_>>()?,
        None => vec![1; tokens.len()],
    };
    let pre = meta(ct, "tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
        .unwrap_or("default");
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": use_regex});
    let split = |pattern: &str| json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false});
    let (normalizer, pre_tokenizer) = match pre {
        "qwen2" => (
            json!({"type": "NFC"}),
            json!({"type": "Sequence", "pretokenizers": [split(QWEN2_SPLIT), byte_level(false)]}),
        ),
        "llama-bpe" | "llama3" => (
            json!(null),
            json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_SPLIT), byte_level(false)]}),
        ),
        "smollm" => (
            json!(null),
            json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        ),
        "default" | "gpt-2" | "gpt2" => (json!(null), byte_level(true)),
        other => bail!(
            "unsupported GGUF pre-tokenizer {other:?} (supported: qwen2, llama-bpe, smollm, gpt-2)"
        ),
    };
    let mut vocab = Map::with_capacity(tokens.len());
    let mut added = Vec::new();
    for (id, tok) in tokens.iter().enumerate() {
        vocab.insert(tok.clone(), json!(id));
        let ty = types.get(id).copied().unwrap_or(1);
        if ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_USER_DEFINED {
            added.push(
                json!({"id": id, "content": tok, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true}),
            );
        }
    }
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": byte_level(false),
        "decoder": byte_level(false),
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges},
    });
    let tokenizer = Tokenizer::from_bytes(serde_json::to_vec(&spec)?)
        .map_err(|e| anyhow::anyhow!("building the tokenizer from GGUF metadata: {e}"))?;
    let id = |key: &str| meta(ct, key).and_then(|v| v.to_u32().ok());
    let mut eos = Vec::new();
    for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
        if let Some(t) = id(key) {
            eos.push(t);
        }
    }
    if let Some(t) = tokenizer.token_to_id("<|endoftext|>") {
        eos.push(t);
    }
    eos.sort_unstable();
    eos.dedup();
    let info = TokenizerInfo {
        bos_token_id: id("tokenizer.ggml.bos_token_id"),
        eos_token_ids: eos,
        chat_template: meta(ct, "tokenizer.chat_template")
            .and_then(|v| v.to_string().ok())
            .cloned(),
    };
    Ok((tokenizer, info))
}

/// Reads a Hugging Face `tokenizer.json`.
pub fn from_file(path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_file(path)
        .map_err(|e| anyhow::anyhow!("reading tokenizer {}: {e}", path.display()))
}

/// Encodes text exactly as given (no BOS or other added special tokens).
pub fn encode(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    Ok(tokenizer
        .encode(text, false)
        .map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?
        .get_ids()
        .to_vec())
}

/// Decodes ids to text, dropping special tokens.
pub fn decode(tokenizer: &Tokenizer, ids: &[u32]) -> Result<String> {
    tokenizer
        .decode(ids, true)
        .map_err(|e| anyhow::anyhow!("decoding: {e}"))
}

/// Trains a small byte-level BPE tokenizer (Qwen2's pre-tokenizer, `<|endoftext|>` = id 0) on
/// `files`, for tests that need a real tokenizer without a download (about a second on a few
/// hundred KB).
pub fn train_byte_level_bpe(files: &[PathBuf], vocab_size: usize) -> Result<Tokenizer> {
    use tokenizers::models::bpe::BpeTrainer;
    use tokenizers::models::TrainerWrapper;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::AddedToken;
    let spec = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": {}, "merges": []},
    });
    let mut tokenizer = Tokenizer::from_bytes(serde_json::to_vec(&spec)?)
        .map_err(|e| anyhow::anyhow!("building an empty tokenizer: {e}"))?;
    let mut trainer: TrainerWrapper = BpeTrainer::builder()
        .vocab_size(vocab_size)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .special_tokens(vec![AddedToken::from("<|endoftext|>", true)])
        .build()
        .into();
    let files = files.iter().map(|p| p.display().to_string()).collect();
    tokenizer
        .train_from_files(&mut trainer, files)
        .map_err(|e| anyhow::anyhow!("training the test tokenizer: {e}"))?;
    Ok(tokenizer)
}

/// Python files from the interpreter's standard library, in a fixed order, up to `max_bytes`:
/// a deterministic corpus for [`train_byte_level_bpe`].
pub fn stdlib_corpus(max_bytes: u64) -> Result<Vec<PathBuf>> {
    let python = crate::python::interpreter()?;
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "import sysconfig;print(sysconfig.get_paths()['stdlib'])",
        ])
        .output()
        .with_context(|| format!("running {} to find its standard library", python.display()))?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "py"))
        .collect();
    files.sort();
    let mut total = 0;
    let mut chosen = Vec::new();
    for f in files {
        let len = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
        if total + len > max_bytes {
            continue;
        }
        total += len;
        chosen.push(f);
    }
    if chosen.is_empty() {
        bail!(
            "no Python files under {} to train a test tokenizer on",
            dir.display()
        );
    }
    Ok(chosen)
}
