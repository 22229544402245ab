//! Sampling on a tiny random model with a tokenizer trained in the test (no download).

use candle_core::{Device, Tensor};
use ilf_lm::models::{Architecture, Config, Model};
use ilf_lm::sampling::{
    FinishReason, GenRequest, Generator, LocalGenerator, NoStop, SamplingParams,
};
use ilf_lm::{tiny_random, tokenizer, Tokenizer};
use std::sync::OnceLock;

fn tok() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let files = tokenizer::stdlib_corpus(300_000).unwrap();
        tokenizer::train_byte_level_bpe(&files, 400).unwrap()
    })
}

fn model() -> Model {
    let cfg = Config::tiny(Architecture::Qwen2, tok().get_vocab_size(true));
    tiny_random(&cfg, 7, &Device::Cpu).unwrap()
}

fn generator(model: &Model, batch_size: usize) -> LocalGenerator<'_> {
    LocalGenerator {
        model,
        tokenizer: tok(),
        eos_token_ids: vec![0],
        batch_size,
    }
}

const PROMPT_A: &str = "def add(a, b):\n    return";
const PROMPT_B: &str = "import os\n\nclass Config:\n    def __init__(self):\n";

fn params(temperature: f64) -> SamplingParams {
    SamplingParams {
        temperature,
        top_p: 1.0,
        top_k: 0,
        max_tokens: 12,
    }
}

#[test]
fn trained_tokenizer_round_trips_python() {
    let text = "def remove_Occ(s,ch):\n    return s.replace(ch, \"\")\n";
    let ids = tokenizer::encode(tok(), text).unwrap();
    assert!(
        ids.len() < text.len(),
        "BPE merges should shorten {} bytes, got {} ids",
        text.len(),
        ids.len()
    );
    assert_eq!(tokenizer::decode(tok(), &ids).unwrap(), text);
    assert_eq!(tok().token_to_id("<|endoftext|>"), Some(0));
}

#[test]
fn same_seed_same_text_whatever_the_batch() {
    let m = model();
    let alone = generator(&m, 1)
        .generate_all(&[GenRequest::new(PROMPT_A, 3, 11, params(1.0))], &NoStop)
        .unwrap();
    let mixed = generator(&m, 8)
        .generate_all(
            &[
                GenRequest::new(PROMPT_B, 4, 5, params(1.0)),
                GenRequest::new(PROMPT_A, 3, 11, params(1.0)),
            ],
            &NoStop,
        )
        .unwrap();
    assert_eq!(
        alone[0],
        mixed[1]
            .iter()
            .map(|g| ilf_lm::sampling::Generation {
                request: 0,
                ..g.clone()
            })
            .collect::<Vec<_>>()
    );
    // Different samples of one prompt differ (random weights at T = 1 over a 400-token vocab).
    assert_ne!(alone[0][0].completion, alone[0][1].completion);
    // Resuming: generating only sample 2 reproduces it.
    let mut only2 = GenRequest::new(PROMPT_A, 0, 11, params(1.0));
    only2.samples = vec![2];
    let resumed = generator(&m, 4).generate_all(&[only2], &NoStop).unwrap();
    assert_eq!(resumed[0][0].completion, alone[0][2].completion);
    assert_eq!(resumed[0][0].sample, 2);
    // Another seed gives other text.
    let other = generator(&m, 4)
        .generate_all(&[GenRequest::new(PROMPT_A, 3, 12, params(1.0))], &NoStop)
        .unwrap();
    assert_ne!(other[0], alone[0]);
}

#[test]
fn greedy_follows_the_argmax_of_the_training_forward() {
    let m = model();
    let gens = generator(&m, 2)
        .generate_all(&[GenRequest::new(PROMPT_A, 2, 0, params(0.0))], &NoStop)
        .unwrap();
    assert_eq!(
        gens[0][0].completion, gens[0][1].completion,
        "greedy ignores the seed"
    );
    let mut ids = tokenizer::encode(tok(), PROMPT_A).unwrap();
    let mut out = Vec::new();
    for _ in 0..gens[0][0].tokens {
        let input = Tensor::new(ids.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let logits = m.forward(&input).unwrap().squeeze(0).unwrap();
        let next = logits
            .get(ids.len() - 1)
            .unwrap()
            .argmax(0)
            .unwrap()
            .to_scalar::<u32>()
            .unwrap();
        ids.push(next);
        if next == 0 {
            break;
        }
        out.push(next);
    }
    assert_eq!(
        gens[0][0].completion,
        tokenizer::decode(tok(), &out).unwrap()
    );
}

#[test]
fn token_limit_and_stop_rule() {
    let m = model();
    let gens = generator(&m, 4)
        .generate_all(&[GenRequest::new(PROMPT_B, 4, 3, params(1.0))], &NoStop)
        .unwrap();
    for g in &gens[0] {
        match g.finish_reason {
            FinishReason::Length => assert_eq!(g.tokens, 12),
            FinishReason::Eos => assert!(g.tokens <= 12),
            FinishReason::Stop => panic!("no stop rule was given"),
        }
    }
    // A rule that stops at the third character: every completion is cut there.
    let stop =
        |text: &str| (text.chars().count() >= 3).then(|| text.char_indices().nth(2).unwrap().0);
    let cut = generator(&m, 4)
        .generate_all(&[GenRequest::new(PROMPT_B, 4, 3, params(1.0))], &stop)
        .unwrap();
    for (g, full) in cut[0].iter().zip(&gens[0]) {
        if g.finish_reason == FinishReason::Stop {
            assert_eq!(g.completion.chars().count(), 2);
            assert!(full.completion.starts_with(&g.completion));
            assert!(g.tokens <= full.tokens);
        }
    }
    assert!(cut[0].iter().any(|g| g.finish_reason == FinishReason::Stop));
}

#[test]
fn top_k_one_is_greedy_and_long_prompts_are_errors() {
    let m = model();
    let greedy = generator(&m, 2)
        .generate_all(&[GenRequest::new(PROMPT_A, 1, 0, params(0.0))], &NoStop)
        .unwrap();
    let top1 = SamplingParams {
        top_k: 1,
        ..params(0.9)
    };
    let k1 = generator(&m, 2)
        .generate_all(&[GenRequest::new(PROMPT_A, 2, 9, top1)], &NoStop)
        .unwrap();
    assert_eq!(k1[0][0].completion, greedy[0][0].completion);
    let nucleus = SamplingParams {
        top_p: 1e-6,
        ..params(0.9)
    };
    let p0 = generator(&m, 2)
        .generate_all(&[GenRequest::new(PROMPT_A, 1, 9, nucleus)], &NoStop)
        .unwrap();
    assert_eq!(p0[0][0].completion, greedy[0][0].completion);
    let long = "x = 1\n".repeat(400);
    let err = generator(&m, 2)
        .generate_all(&[GenRequest::new(long, 1, 0, params(0.8))], &NoStop)
        .unwrap_err();
    assert!(err.to_string().contains("context is 512"), "{err}");
}
