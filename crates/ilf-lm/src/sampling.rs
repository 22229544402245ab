//! Batched sampling: many sequences decoded together, each prompt prefilled once and its K/V
//! shared by its samples (the paper draws 30 samples per prompt at T = 0.8).
//!
//! Reproducibility: sample `j` of a request with seed `s` draws from its own ChaCha8 stream seeded
//! by `(s, j)`, so its text does not depend on what else shares the batch, on the batch size, or
//! on whether other samples were generated in an earlier (resumed) run.

use crate::models::{KvCache, Model};
use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

/// How to pick each next token.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// 0 means greedy (argmax).
    pub temperature: f64,
    /// Nucleus sampling: keep the most likely tokens whose probability adds up to `top_p`; 1 keeps
    /// all.
    pub top_p: f64,
    /// Keep only the `top_k` most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// New tokens at most.
    pub max_tokens: usize,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_p: 1.0,
            top_k: 0,
            max_tokens: 384,
        }
    }
}

/// One prompt and which of its samples to draw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenRequest {
    pub prompt: String,
    /// Sample indices to generate (each has its own random stream); `0..n` for a fresh run, the
    /// missing ones when resuming.
    pub samples: Vec<usize>,
    pub seed: u64,
    pub params: SamplingParams,
}

impl GenRequest {
    /// Samples `0..n` of `prompt`.
    pub fn new(prompt: impl Into<String>, n: usize, seed: u64, params: SamplingParams) -> Self {
        Self {
            prompt: prompt.into(),
            samples: (0..n).collect(),
            seed,
            params,
        }
    }
}

/// Why a sample ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// The caller's stop rule matched; the completion is cut there.
    Stop,
    /// The model produced an end-of-sequence token.
    Eos,
    /// The token limit (or the model's context) was reached.
    Length,
}

/// One finished sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Index of the request in the slice given to [`Generator::generate`].
    pub request: usize,
    pub sample: usize,
    /// The text after the prompt, cut by the stop rule.
    pub completion: String,
    /// Tokens generated (including any past the stop point and the end-of-sequence token).
    pub tokens: usize,
    pub finish_reason: FinishReason,
}

/// Where a completion ends, given the text generated so far (the caller knows the task; this
/// crate does not).
pub trait StopRule: Sync {
    /// Byte index at which to cut `completion`, or `None` to keep going.
    fn stop_index(&self, completion: &str) -> Option<usize>;
}

impl<F: Fn(&str) -> Option<usize> + Sync> StopRule for F {
    fn stop_index(&self, completion: &str) -> Option<usize> {
        self(completion)
    }
}

/// No stop rule: run to EOS or the token limit.
pub struct NoStop;

impl StopRule for NoStop {
    fn stop_index(&self, _: &str) -> Option<usize> {
        None
    }
}

/// The seam between sampling and its backend (our model here; an OpenAI-compatible server
/// elsewhere).
pub trait Generator {
    /// Generates every sample of every request, calling `on_done` as each finishes (in
    /// completion order, not request order).
    fn generate(
        &self,
        requests: &[GenRequest],
        stop: &dyn StopRule,
        on_done: &mut dyn FnMut(Generation) -> Result<()>,
    ) -> Result<()>;

    /// Collects [`Generator::generate`]'s output per request, samples in the order requested.
    fn generate_all(
        &self,
        requests: &[GenRequest],
        stop: &dyn StopRule,
    ) -> Result<Vec<Vec<Generation>>> {
        let mut out: Vec<Vec<Generation>> = requests.iter().map(|_| Vec::new()).collect();
        self.generate(requests, stop, &mut |g| {
            out[g.request].push(g);
            Ok(())
        })?;
        for (req, gens) in requests.iter().zip(out.iter_mut()) {
            gens.sort_by_key(|g| req.samples.iter().position(|&s| s == g.sample));
        }
        Ok(out)
    }
}

/// Samples from a [`Model`] on its device.
pub struct LocalGenerator<'a> {
    pub model: &'a Model,
    pub tokenizer: &'a Tokenizer,
    pub eos_token_ids: Vec<u32>,
    /// Sequences decoded together at most.
    pub batch_size: usize,
}

/// The random stream of sample `sample` under `seed`.
pub fn sample_rng(seed: u64, sample: usize) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(sample as u64).to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

/// Picks a token from `logits` (one row) under `params`.
pub fn sample_token(logits: &[f32], params: &SamplingParams, rng: &mut ChaCha8Rng) -> u32 {
    if params.temperature <= 0.0 {
        return argmax(logits);
    }
    let inv_t = 1.0 / params.temperature;
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let weight = |i: usize| ((logits[i] as f64 - max) * inv_t).exp();
    let by_logit_desc = |a: &usize, b: &usize| logits[*b].total_cmp(&logits[*a]).then(a.cmp(b));
    let full = params.top_k == 0 || params.top_k >= logits.len();
    if full && params.top_p >= 1.0 {
        // The common case (plain temperature over the whole vocabulary): one `exp` per token,
        // kept for the draw, instead of one for the total and another while walking to the
        // target. `exp` over a 150k vocabulary is most of the sampling time, and the stored
        // weights are the same numbers in the same order, so the draws are unchanged.
        return WEIGHTS.with(|cell| {
            let mut weights = cell.borrow_mut();
            weights.clear();
            weights.extend((0..logits.len()).map(weight));
            let total: f64 = weights.iter().sum();
            let mut target = rng.random::<f64>() * total;
            for (i, w) in weights.iter().enumerate() {
                target -= w;
                if target <= 0.0 {
                    return i as u32;
                }
            }
            argmax(logits)
        });
    }
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    if !full {
        idx.select_nth_unstable_by(params.top_k - 1, by_logit_desc);
        idx.truncate(params.top_k);
    }
    let total: f64 = idx.iter().map(|&i| weight(i)).sum();
    idx.sort_unstable_by(by_logit_desc);
    if params.top_p < 1.0 {
        let mut mass = 0.0;
        let mut keep = idx.len();
        for (n, &i) in idx.iter().enumerate() {
            mass += weight(i) / total;
            if mass >= params.top_p {
                keep = n + 1;
                break;
            }
        }
        idx.truncate(keep.max(1));
    }
    let kept: f64 = idx.iter().map(|&i| weight(i)).sum();
    let mut target = rng.random::<f64>() * kept;
    for &i in &idx {
        target -= weight(i);
        if target <= 0.0 {
            return i as u32;
        }
    }
    idx[0] as u32
}

thread_local! {
    /// Per-thread scratch for [`sample_token`]'s weights (one vocabulary row of f64), reused
    /// across calls so sampling allocates nothing per token.
    static WEIGHTS: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// One sequence being decoded.
struct Row {
    request: usize,
    sample: usize,
    rng: ChaCha8Rng,
    tokens: Vec<u32>,
    limit: usize,
}

impl LocalGenerator<'_> {
    fn encode_prompts(&self, requests: &[GenRequest]) -> Result<Vec<Vec<u32>>> {
        let ctx = self.model.config().max_position_embeddings;
        requests
            .iter()
            .enumerate()
            .map(|(r, req)| {
                let ids = crate::tokenizer::encode(self.tokenizer, &req.prompt)?;
                if ids.is_empty() {
                    bail!("request {r}: the prompt is empty");
                }
                if ids.len() >= ctx {
                    let head: String = req.prompt.lines().find(|l| !l.trim().is_empty()).unwrap_or("").chars().take(60).collect();
                    bail!("request {r} ({head:?}…): the prompt has {} tokens but the model's context is {ctx}; shorten the prompt", ids.len());
                }
                Ok(ids)
            })
            .collect()
    }

    /// Prefills each admitted request's prompt once and draws the first token of each of its
    /// samples: per request, its single-row cache and its new rows.
    fn admit(
        &self,
        requests: &[GenRequest],
        prompts: &[Vec<u32>],
        admitted: &[(usize, Vec<usize>)],
    ) -> Result<Vec<(KvCache, Vec<Row>)>> {
        let cfg = self.model.config();
        let device = self.model.device();
        let ctx = cfg.max_position_embeddings;
        let mut out = Vec::with_capacity(admitted.len());
        for (r, samples) in admitted {
            let ids = &prompts[*r];
            let mut cache = KvCache::new(cfg, 1, ids.len(), device)?;
            let input = Tensor::new(ids.as_slice(), device)?.unsqueeze(0)?;
            let logits = self
                .model
                .forward_with_cache(&input, &mut cache)
                .with_context(|| format!("prefilling request {r}"))?
                .squeeze(0)?
                .to_vec1::<f32>()?;
            let req = &requests[*r];
            let limit = req.params.max_tokens.min(ctx - ids.len());
            let rows = samples
                .iter()
                .map(|&s| {
                    let mut rng = sample_rng(req.seed, s);
                    let first = sample_token(&logits, &req.params, &mut rng);
                    Row {
                        request: *r,
                        sample: s,
                        rng,
                        tokens: vec![first],
                        limit,
                    }
                })
                .collect();
            out.push((cache, rows));
        }
        Ok(out)
    }

    /// Continuous batching: up to `batch_size` rows decode together; as rows finish, queued
    /// samples take their places (their prompts prefilled, then merged into the running cache
    /// with [`KvCache::gather`]), so a few long samples no longer hold a mostly empty batch.
    fn run(
        &self,
        requests: &[GenRequest],
        prompts: &[Vec<u32>],
        stop: &dyn StopRule,
        on_done: &mut dyn FnMut(Generation) -> Result<()>,
    ) -> Result<()> {
        let device = self.model.device();
        let cap = self.batch_size.max(1);
        // Merging copies the whole cache, so wait until a quarter of the batch is free.
        let refill_at = (cap / 4).max(1);
        let mut queue: std::collections::VecDeque<(usize, Vec<usize>)> = requests
            .iter()
            .enumerate()
            .filter(|(_, req)| !req.samples.is_empty())
            .map(|(r, req)| (r, req.samples.clone()))
            .collect();
        let mut rows: Vec<Row> = Vec::new();
        let mut cache: Option<KvCache> = None;
        loop {
            // Retire finished rows.
            let mut keep = Vec::with_capacity(rows.len());
            let mut finished = Vec::new();
            for (i, row) in rows.iter().enumerate() {
                match self.check(row, stop)? {
                    Some(g) => finished.push(g),
                    None => keep.push(i),
                }
            }
            for g in finished {
                on_done(g)?;
            }
            if keep.len() != rows.len() {
                if let Some(c) = cache.as_mut() {
                    if !keep.is_empty() {
                        c.select_rows(&keep)?;
                    }
                }
                let mut old: Vec<Option<Row>> = rows.into_iter().map(Some).collect();
                rows = keep
                    .iter()
                    .map(|&i| old[i].take().expect("each kept row once"))
                    .collect();
            }
            // Admit queued samples into the free places, a request's samples together where
            // they fit (they share one prefill).
            let free = cap - rows.len();
            if !queue.is_empty() && (rows.is_empty() || free >= refill_at) {
                let mut admitted: Vec<(usize, Vec<usize>)> = Vec::new();
                let mut taken = 0;
                while taken < free {
                    let Some((r, samples)) = queue.pop_front() else {
                        break;
                    };
                    let n = samples.len().min(free - taken);
                    if n < samples.len() {
                        queue.push_front((r, samples[n..].to_vec()));
                    }
                    admitted.push((r, samples[..n].to_vec()));
                    taken += n;
                }
                let fresh = self.admit(requests, prompts, &admitted)?;
                let mut sources: Vec<(&KvCache, usize)> = Vec::with_capacity(cap);
                if let Some(c) = cache.as_ref().filter(|_| !rows.is_empty()) {
                    sources.extend((0..rows.len()).map(|i| (c, i)));
                }
                for (prefill, new_rows) in &fresh {
                    sources.extend(std::iter::repeat_n((prefill, 0), new_rows.len()));
                }
                let to_go = rows
                    .iter()
                    .chain(fresh.iter().flat_map(|(_, r)| r))
                    .map(|row| row.limit.saturating_sub(row.tokens.len()))
                    .max()
                    .unwrap_or(0);
                let merged = KvCache::gather(&sources, to_go)?;
                drop(sources);
                cache = Some(merged);
                rows.extend(fresh.into_iter().flat_map(|(_, r)| r));
                // The first tokens drawn from the prefill may already end some rows.
                continue;
            }
            if rows.is_empty() {
                return Ok(());
            }
            let cache = cache.as_mut().expect("running rows have a cache");
            let last: Vec<u32> = rows
                .iter()
                .map(|r| *r.tokens.last().expect("rows start with a token"))
                .collect();
            let input = Tensor::from_vec(last, (rows.len(), 1), device)?;
            let logits = self
                .model
                .forward_with_cache(&input, cache)?
                .to_vec2::<f32>()?;
            rows.par_iter_mut()
                .zip(logits.par_iter())
                .for_each(|(row, l)| {
                    let t = sample_token(l, &requests[row.request].params, &mut row.rng);
                    row.tokens.push(t);
                });
        }
    }

    /// `Some` when `row` is finished.
    fn check(&self, row: &Row, stop: &dyn StopRule) -> Result<Option<Generation>> {
        let last = *row.tokens.last().expect("rows start with a token");
        let done = |completion: String, reason| Generation {
            request: row.request,
            sample: row.sample,
            completion,
            tokens: row.tokens.len(),
            finish_reason: reason,
        };
        let eos = self.eos_token_ids.contains(&last);
        let body = if eos {
            &row.tokens[..row.tokens.len() - 1]
        } else {
            &row.tokens[..]
        };
        let text = crate::tokenizer::decode(self.tokenizer, body)?;
        if let Some(i) = stop.stop_index(&text) {
            let mut cut = i.min(text.len());
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            return Ok(Some(done(text[..cut].to_string(), FinishReason::Stop)));
        }
        if eos {
            return Ok(Some(done(text, FinishReason::Eos)));
        }
        if row.tokens.len() >= row.limit {
            return Ok(Some(done(text, FinishReason::Length)));
        }
        Ok(None)
    }
}

impl Generator for LocalGenerator<'_> {
    fn generate(
        &self,
        requests: &[GenRequest],
        stop: &dyn StopRule,
        on_done: &mut dyn FnMut(Generation) -> Result<()>,
    ) -> Result<()> {
        let prompts = self.encode_prompts(requests)?;
        self.run(requests, &prompts, stop, on_done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two-pass draw `sample_token` used before it kept its weights: one `exp` per token for
    /// the total, another per token while walking to the target.
    fn two_pass(logits: &[f32], temperature: f64, rng: &mut ChaCha8Rng) -> u32 {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let weight = |i: usize| ((logits[i] as f64 - max) / temperature).exp();
        let total: f64 = (0..logits.len()).map(weight).sum();
        let mut target = rng.random::<f64>() * total;
        for i in 0..logits.len() {
            target -= weight(i);
            if target <= 0.0 {
                return i as u32;
            }
        }
        argmax(logits)
    }

    #[test]
    fn one_pass_draw_equals_the_two_pass_draw() {
        let mut gen = sample_rng(99, 0);
        let params = SamplingParams {
            temperature: 0.8,
            top_p: 1.0,
            top_k: 0,
            max_tokens: 1,
        };
        let mut distinct = std::collections::HashSet::new();
        for vocab in [1, 7, 5000] {
            let logits: Vec<f32> = (0..vocab)
                .map(|_| gen.random::<f32>() * 12.0 - 6.0)
                .collect();
            for s in 0..200 {
                let mut a = sample_rng(3, s);
                let mut b = a.clone();
                let fast = sample_token(&logits, &params, &mut a);
                let reference = two_pass(&logits, params.temperature, &mut b);
                assert_eq!(fast, reference, "vocab {vocab}, sample {s}");
                distinct.insert((vocab, fast));
            }
        }
        // The draws must actually vary, or equality above would prove little.
        assert!(
            distinct.len() > 50,
            "only {} distinct draws",
            distinct.len()
        );
    }

    /// Sample `j` of a request must not depend on which rows share its batch, how many there
    /// are, or when they retire: the same requests at batch sizes 1, 3 and 8, with a stop rule
    /// and an end-of-sequence token that end rows at different steps, give the same
    /// generations.
    #[test]
    fn same_seed_same_text_at_batch_sizes_1_3_8_while_rows_retire() {
        use crate::models::{Architecture, Config};
        let files = crate::tokenizer::stdlib_corpus(300_000).unwrap();
        let tok = crate::tokenizer::train_byte_level_bpe(&files, 400).unwrap();
        let cfg = Config::tiny(Architecture::Qwen2, tok.get_vocab_size(true));
        let model = crate::tiny_random(&cfg, 7, &candle_core::Device::Cpu).unwrap();
        let params = SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            max_tokens: 16,
        };
        let requests = [
            GenRequest::new("def add(a, b):\n    return", 4, 11, params),
            GenRequest::new("import os\n\nclass Config:\n", 3, 5, params),
            GenRequest::new("x = [", 2, 9, params),
        ];
        let stop = |c: &str| c.find('q');
        let run = |batch_size| {
            LocalGenerator {
                model: &model,
                tokenizer: &tok,
                eos_token_ids: vec![0],
                batch_size,
            }
            .generate_all(&requests, &stop)
            .unwrap()
        };
        let alone = run(1);
        for batch in [3, 8] {
            assert_eq!(run(batch), alone, "batch size {batch}");
        }
        // Rows must really retire at different steps, or the shrinking batch went untested.
        let gens: Vec<&Generation> = alone.iter().flatten().collect();
        assert_eq!(gens.len(), 9);
        let lengths: std::collections::BTreeSet<usize> = gens.iter().map(|g| g.tokens).collect();
        assert!(lengths.len() >= 3, "token counts {lengths:?}");
        for reason in [FinishReason::Stop, FinishReason::Length] {
            assert!(
                gens.iter().any(|g| g.finish_reason == reason),
                "no sample finished by {reason:?}: {:?}",
                gens.iter()
                    .map(|g| (g.tokens, g.finish_reason))
                    .collect::<Vec<_>>()
            );
        }
    }
}
