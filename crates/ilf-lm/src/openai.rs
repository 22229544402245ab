//! The OpenAI-compatible client backend: [`Generator`] over one or more `/v1` servers (vLLM
//! replicas with tensor parallelism, `ilf serve`, any OpenAI-compatible endpoint).
//!
//! - Every sampling knob is sent explicitly (`temperature`, `top_p`, `top_k`, `max_tokens`,
//!   `seed`, and the neutral `repetition_penalty`, `presence_penalty`, `frequency_penalty`,
//!   `min_p`): vLLM otherwise fills missing ones from the model's `generation_config.json`
//!   (Qwen2.5 ships `repetition_penalty: 1.05`, `top_k: 20`), silently changing the samples.
//! - Completions are streamed and the caller's [`StopRule`] runs on the text as it arrives, so
//!   a sample is cut exactly where the offline sampler cuts it, and the connection is closed as
//!   soon as every choice has stopped (the server then stops decoding them).
//! - Samples `0..n` of a request go as one request with `n`; if the server returns fewer choices
//!   (some ignore `n`), the rest are fanned out one request per sample, and so is every later
//!   request. A fanned-out sample `j` carries a distinct `seed` for any server, plus ilf's
//!   extension `"ilf": {"seed", "samples": [j]}`, with which `ilf serve` draws exactly the
//!   offline sampler's stream for sample `j` (vLLM ignores unknown fields).
//! - Requests go round-robin over the replicas, at most `concurrency` at a time. Connection
//!   errors, 429 and 5xx (also mid-stream) are retried with exponential backoff on the next
//!   live replica; a replica that failed is skipped until its backoff expires.
//!
//! `generate` blocks on its own single-threaded runtime: call it from a plain thread, not from
//! inside another async runtime.

use crate::sampling::{FinishReason, GenRequest, Generation, Generator, StopRule};
use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When to fan `n` out into one request per sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FanOut {
    /// Send `n`; fan out only if the server returns fewer choices.
    #[default]
    Auto,
    /// Always one request per sample (servers known to ignore `n`).
    Always,
}

/// Client settings (the `--backend openai` flags).
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// Base URLs ending in `/v1`, e.g. `http://host:8000/v1`; one per replica.
    pub base_urls: Vec<String>,
    /// The `model` to send (what the server's `/v1/models` lists).
    pub model: String,
    /// HTTP requests in flight at most, over all replicas.
    pub concurrency: usize,
    /// Retries per request after the first attempt.
    pub retries: usize,
    pub fan_out: FanOut,
    /// Sent as `Authorization: Bearer …` (vLLM's `--api-key`).
    pub api_key: Option<String>,
}

/// Builds the backend for `ilf sample --backend openai`; the API key comes from
/// `$OPENAI_API_KEY` when set.
pub fn generator(
    base_urls: &[String],
    model: &str,
    concurrency: usize,
    retries: usize,
) -> Result<Box<dyn Generator>> {
    Ok(Box::new(OpenAiGenerator::new(OpenAiConfig {
        base_urls: base_urls.to_vec(),
        model: model.to_string(),
        concurrency,
        retries,
        fan_out: FanOut::Auto,
        api_key: std::env::var("OPENAI_API_KEY")
            .ok()
            .filter(|k| !k.is_empty()),
    })?))
}

struct Replica {
    url: String,
    health: Mutex<Health>,
}

#[derive(Default)]
struct Health {
    failures: u32,
    down_until: Option<Instant>,
}

/// A [`Generator`] over OpenAI-compatible servers (see the module doc).
pub struct OpenAiGenerator {
    cfg: OpenAiConfig,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    replicas: Vec<Replica>,
    next: AtomicUsize,
    /// Set once a server answered `n > 1` with fewer choices.
    ignores_n: AtomicBool,
    retried: AtomicUsize,
}

/// How one attempt failed.
enum Failure {
    /// Worth retrying, on another replica if one is up.
    Retry(String),
    /// The request itself is wrong; retrying cannot help.
    Fatal(String),
}

/// One HTTP request: some samples of one [`GenRequest`].
struct Call {
    request: usize,
    samples: Vec<usize>,
    /// `samples` is `0..n`, sent as `n` with the request's seed.
    batched: bool,
}

impl OpenAiGenerator {
    pub fn new(cfg: OpenAiConfig) -> Result<Self> {
        if cfg.base_urls.is_empty() {
            bail!(
                "the openai backend needs at least one --base-url (e.g. http://localhost:8000/v1)"
            );
        }
        for url in &cfg.base_urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("--base-url {url:?} is not an http:// or https:// URL");
            }
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Long enough for a busy server's prefill before the first token; a replica that
            // hangs longer is treated as dead.
            .read_timeout(Duration::from_secs(600))
            .build()
            .context("building the HTTP client")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the HTTP client runtime")?;
        let replicas = cfg
            .base_urls
            .iter()
            .map(|u| Replica {
                url: u.trim_end_matches('/').to_string(),
                health: Mutex::new(Health::default()),
            })
            .collect();
        Ok(Self {
            cfg,
            client,
            runtime,
            replicas,
            next: AtomicUsize::new(0),
            ignores_n: AtomicBool::new(false),
            retried: AtomicUsize::new(0),
        })
    }

    /// Attempts retried so far (connection errors, 429, 5xx, cut streams), for run reports.
    pub fn retried(&self) -> usize {
        self.retried.load(Ordering::Relaxed)
    }

    /// The next live replica in round-robin order; when all are backing off, the one that
    /// recovers first.
    fn pick(&self) -> usize {
        let n = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut soonest = (start % n, None::<Instant>);
        for off in 0..n {
            let i = (start + off) % n;
            let h = self.replicas[i]
                .health
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match h.down_until {
                Some(t) if t > now => {
                    if soonest.1.is_none_or(|s| t < s) {
                        soonest = (i, Some(t));
                    }
                }
                _ => return i,
            }
        }
        soonest.0
    }

    fn mark(&self, replica: usize, ok: bool) {
        let mut h = self.replicas[replica]
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if ok {
            *h = Health::default();
        } else {
            h.failures += 1;
            let backoff = Duration::from_millis(500) * 2u32.pow(h.failures.min(6) - 1);
            h.down_until = Some(Instant::now() + backoff);
        }
    }

    /// Whether every replica is backing off.
    fn all_down(&self) -> bool {
        let now = Instant::now();
        self.replicas.iter().all(|r| {
            let h = r.health.lock().unwrap_or_else(|p| p.into_inner());
            h.down_until.is_some_and(|t| t > now)
        })
    }

    fn plan(&self, requests: &[GenRequest]) -> Vec<Call> {
        let fan_out = self.cfg.fan_out == FanOut::Always || self.ignores_n.load(Ordering::Relaxed);
        let mut calls = Vec::new();
        for (r, req) in requests.iter().enumerate() {
            let contiguous = req.samples.iter().enumerate().all(|(i, &s)| i == s);
            if req.samples.is_empty() {
                continue;
            }
            if contiguous && (!fan_out || req.samples.len() == 1) {
                calls.push(Call {
                    request: r,
                    samples: req.samples.clone(),
                    batched: true,
                });
            } else {
                calls.extend(req.samples.iter().map(|&s| Call {
                    request: r,
                    samples: vec![s],
                    batched: false,
                }));
            }
        }
        calls
    }

    /// One call, then one call per sample the server left out.
    async fn run_call(
        &self,
        requests: &[GenRequest],
        call: Call,
        stop: &dyn StopRule,
    ) -> Result<Vec<Generation>> {
        let mut gens = self.call(requests, &call, stop).await?;
        if gens.len() < call.samples.len() {
            self.ignores_n.store(true, Ordering::Relaxed);
            let missing: Vec<Call> = call
                .samples
                .iter()
                .filter(|s| !gens.iter().any(|g| g.sample == **s))
                .map(|&s| Call {
                    request: call.request,
                    samples: vec![s],
                    batched: false,
                })
                .collect();
            let rest = futures_util::future::join_all(
                missing.iter().map(|c| self.call(requests, c, stop)),
            )
            .await;
            for r in rest {
                let more = r?;
                if more.is_empty() {
                    bail!(
                        "request {}: the server returned no choice for a single-sample request",
                        call.request
                    );
                }
                gens.extend(more);
            }
        }
        Ok(gens)
    }

    /// One call with retries; returns the choices the server produced (possibly fewer than
    /// asked for, when it ignores `n`).
    async fn call(
        &self,
        requests: &[GenRequest],
        call: &Call,
        stop: &dyn StopRule,
    ) -> Result<Vec<Generation>> {
        let req = &requests[call.request];
        let mut attempt = 0;
        loop {
            let replica = self.pick();
            match self.attempt(replica, req, call, stop).await {
                Ok(gens) => {
                    self.mark(replica, true);
                    return Ok(gens);
                }
                Err(Failure::Fatal(msg)) => bail!(
                    "request {} ({}): {} answered: {msg}",
                    call.request,
                    prompt_head(&req.prompt),
                    self.replicas[replica].url
                ),
                Err(Failure::Retry(msg)) => {
                    self.mark(replica, false);
                    if attempt >= self.cfg.retries {
                        bail!(
                            "request {} ({}): giving up after {} attempts; last error from {}: {msg}",
                            call.request,
                            prompt_head(&req.prompt),
                            attempt + 1,
                            self.replicas[replica].url
                        );
                    }
                    tracing::warn!(
                        "request {} on {}: {msg}; retrying",
                        call.request,
                        self.replicas[replica].url
                    );
                    if self.all_down() {
                        let backoff = Duration::from_millis(250) * 2u32.pow(attempt.min(5) as u32);
                        tokio::time::sleep(backoff).await;
                    }
                    attempt += 1;
                    self.retried.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn body(&self, req: &GenRequest, call: &Call) -> Value {
        let p = &req.params;
        let (n, seed) = if call.batched {
            (call.samples.len(), req.seed)
        } else {
            (1, sample_seed(req.seed, call.samples[0]))
        };
        let mut body = json!({
            "model": self.cfg.model,
            "prompt": req.prompt,
            "n": n,
            "seed": seed,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "top_k": if p.top_k == 0 { -1 } else { p.top_k as i64 },
            "max_tokens": p.max_tokens,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
            "repetition_penalty": 1.0,
            "min_p": 0.0,
            "stream": true,
        });
        if !call.batched {
            body["ilf"] = json!({"seed": req.seed, "samples": call.samples});
        }
        body
    }

    async fn attempt(
        &self,
        replica: usize,
        req: &GenRequest,
        call: &Call,
        stop: &dyn StopRule,
    ) -> std::result::Result<Vec<Generation>, Failure> {
        let url = format!("{}/completions", self.replicas[replica].url);
        let mut http = self.client.post(&url).json(&self.body(req, call));
        if let Some(key) = &self.cfg.api_key {
            http = http.bearer_auth(key);
        }
        let mut resp = http
            .send()
            .await
            .map_err(|e| Failure::Retry(format!("sending the request: {e}")))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            let msg = format!("HTTP {status}: {}", error_message(&text));
            return Err(if status.as_u16() == 429 || status.is_server_error() {
                Failure::Retry(msg)
            } else {
                Failure::Fatal(msg)
            });
        }
        let mut choices: Vec<Choice> = call.samples.iter().map(|_| Choice::default()).collect();
        let mut buf: Vec<u8> = Vec::new();
        let mut finished_stream = false;
        'read: loop {
            let chunk = resp
                .chunk()
                .await
                .map_err(|e| Failure::Retry(format!("reading the stream: {e}")))?;
            let Some(chunk) = chunk else { break };
            buf.extend(chunk.iter().filter(|&&b| b != b'\r'));
            while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = buf.drain(..end + 2).collect();
                let event = String::from_utf8_lossy(&event);
                for line in event.lines() {
                    let Some(data) = line.strip_prefix("data:") else {
                        continue;
                    };
                    let data = data.trim_start();
                    if data == "[DONE]" {
                        finished_stream = true;
                        break 'read;
                    }
                    let v: Value = serde_json::from_str(data).map_err(|e| {
                        Failure::Retry(format!("a stream event is not JSON ({e}): {data:.200}"))
                    })?;
                    if let Some(err) = v.get("error") {
                        return Err(Failure::Retry(format!("error in the stream: {err}")));
                    }
                    for c in v["choices"].as_array().into_iter().flatten() {
                        let Some(i) = c["index"].as_u64().map(|i| i as usize) else {
                            continue;
                        };
                        if let Some(choice) = choices.get_mut(i) {
                            choice.take(c, stop);
                        }
                    }
                    if choices.iter().all(|c| c.finish.is_some()) {
                        // Dropping the response closes the connection; the server stops
                        // decoding choices that the stop rule already ended.
                        finished_stream = true;
                        break 'read;
                    }
                }
            }
        }
        if !finished_stream {
            return Err(Failure::Retry(
                "the stream ended before [DONE] (did the server die?)".into(),
            ));
        }
        let mut gens = Vec::new();
        for (i, c) in choices.into_iter().enumerate() {
            match c.finish {
                Some(reason) => gens.push(Generation {
                    request: 0,
                    sample: call.samples[i],
                    completion: c.text,
                    tokens: c.chunks,
                    finish_reason: reason,
                }),
                None if c.chunks > 0 => {
                    return Err(Failure::Retry(format!(
                        "the server ended choice {i} without a finish_reason"
                    )))
                }
                None => {}
            }
        }
        for g in &mut gens {
            g.request = call.request;
        }
        Ok(gens)
    }
}

/// One choice as its chunks arrive.
#[derive(Default)]
struct Choice {
    text: String,
    /// Chunks received: one per token from `ilf serve` (and from vLLM in practice).
    chunks: usize,
    finish: Option<FinishReason>,
}

impl Choice {
    fn take(&mut self, c: &Value, stop: &dyn StopRule) {
        if self.finish.is_some() {
            return;
        }
        self.chunks += 1;
        if let Some(t) = c["text"].as_str() {
            self.text.push_str(t);
        }
        if let Some(i) = stop.stop_index(&self.text) {
            let mut cut = i.min(self.text.len());
            while !self.text.is_char_boundary(cut) {
                cut -= 1;
            }
            self.text.truncate(cut);
            self.finish = Some(FinishReason::Stop);
            return;
        }
        self.finish = match c["finish_reason"].as_str() {
            Some("length") => Some(FinishReason::Length),
            // No stop strings are sent, so a server's "stop" is its end-of-sequence token.
            Some(_) => Some(FinishReason::Eos),
            None => None,
        };
    }
}

/// A distinct seed for sample `sample` of a request seeded `seed` (SplitMix64 of the pair), kept
/// below 2^63 because servers parse seeds as signed 64-bit integers.
fn sample_seed(seed: u64, sample: usize) -> u64 {
    let mut z = seed ^ (sample as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) >> 1
}

fn prompt_head(prompt: &str) -> String {
    let head: String = prompt
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .chars()
        .take(60)
        .collect();
    format!("{head:?}…")
}

/// The `error.message` of an OpenAI error body, else the body itself (shortened).
fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(300).collect())
}

impl Generator for OpenAiGenerator {
    fn generate(
        &self,
        requests: &[GenRequest],
        stop: &dyn StopRule,
        on_done: &mut dyn FnMut(Generation) -> Result<()>,
    ) -> Result<()> {
        let calls = self.plan(requests);
        self.runtime.block_on(async {
            let mut results = futures_util::stream::iter(calls)
                .map(|c| self.run_call(requests, c, stop))
                .buffer_unordered(self.cfg.concurrency.max(1));
            while let Some(r) = results.next().await {
                for g in r? {
                    on_done(g)?;
                }
            }
            Ok::<_, anyhow::Error>(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_seeds_are_distinct_and_fit_i64() {
        let seeds: std::collections::HashSet<u64> = (0..1000).map(|j| sample_seed(42, j)).collect();
        assert_eq!(seeds.len(), 1000);
        assert!(seeds.iter().all(|&s| s <= i64::MAX as u64));
        assert_ne!(sample_seed(1, 0), sample_seed(2, 0));
    }

    #[test]
    fn error_messages_come_from_the_openai_schema() {
        assert_eq!(
            error_message(
                r#"{"error": {"message": "bad n", "type": "x", "param": "n", "code": null}}"#
            ),
            "bad n"
        );
        assert_eq!(error_message("plain"), "plain");
    }

    #[test]
    fn bad_base_urls_are_refused() {
        let e = generator(&["localhost:8000".into()], "m", 1, 0)
            .err()
            .unwrap();
        assert!(e.to_string().contains("not an http"), "{e}");
        assert!(generator(&[], "m", 1, 0).is_err());
    }
}
