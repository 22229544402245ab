//! The tiny model and tokenizer every integration test trains: a 2-layer random decoder and a
//! byte-level BPE trained on the Python standard library (about a second, no download).

#![allow(dead_code)]

use candle_core::{Device, Tensor};
use ilf_lm::models::{Architecture, Config};
use ilf_train::data::{Example, Origin};
use std::collections::HashMap;
use std::sync::OnceLock;
use tokenizers::Tokenizer;

pub fn tokenizer() -> Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER
        .get_or_init(|| {
            let corpus = ilf_lm::tokenizer::stdlib_corpus(300_000).expect("stdlib corpus");
            ilf_lm::tokenizer::train_byte_level_bpe(&corpus, 400).expect("train tokenizer")
        })
        .clone()
}

pub fn config(architecture: Architecture) -> Config {
    let vocab = tokenizer().get_vocab_size(true);
    let mut cfg = Config::tiny(architecture, vocab);
    cfg.eos_token_ids = vec![tokenizer().token_to_id("<|endoftext|>").expect("eot")];
    cfg
}

pub fn weights(cfg: &Config, seed: u64) -> HashMap<String, Tensor> {
    ilf_lm::load::tiny_random_weights(cfg, seed, &Device::Cpu).expect("tiny weights")
}

pub fn example(prompt: &str, completion: &str, line: usize) -> Example {
    Example {
        prompt: prompt.into(),
        completion: completion.into(),
        origin: Origin {
            file: "train.jsonl".into(),
            line,
            task_id: None,
        },
    }
}

/// Five MBPP-like examples.
pub fn examples() -> Vec<Example> {
    let tasks = [
        (
            "def add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n",
            "    return a + b\n",
        ),
        ("def square(x):\n", "    return x * x\n"),
        (
            "def first(xs):\n    \"\"\"First item.\"\"\"\n",
            "    return xs[0]\n",
        ),
        ("def is_even(n):\n", "    return n % 2 == 0\n"),
        ("def join(words):\n", "    return ' '.join(words)\n"),
    ];
    tasks
        .iter()
        .enumerate()
        .map(|(i, (p, c))| example(p, c, i + 1))
        .collect()
}

/// Largest absolute difference between two same-shape tensors.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}
