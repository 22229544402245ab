//! HTTP handlers: validate, tokenize, submit to the scheduler, and turn token events into
//! OpenAI responses or server-sent events.

use super::chat::ChatTemplate;
use super::protocol::{
    finish_reason_name, ApiError, ChatRequest, CompletionRequest, Prompt, Sampling,
};
use super::scheduler::{Event, Job};
use super::ServeConfig;
use crate::sampling::{FinishReason, SamplingParams};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokenizers::Tokenizer;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

pub struct AppState {
    name: String,
    tokenizer: Tokenizer,
    ctx: usize,
    chat: Option<ChatTemplate>,
    jobs: Mutex<std::sync::mpsc::Sender<Job>>,
    permits: Arc<Semaphore>,
    max_concurrency: usize,
    max_n: usize,
    max_tokens: usize,
    max_body_bytes: usize,
    created: u64,
    next_id: AtomicU64,
}

impl AppState {
    pub fn new(
        name: String,
        tokenizer: Tokenizer,
        ctx: usize,
        chat_template: Option<&str>,
        jobs: std::sync::mpsc::Sender<Job>,
        config: &ServeConfig,
    ) -> Arc<Self> {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Arc::new(Self {
            name,
            tokenizer,
            ctx,
            chat: ChatTemplate::from_jinja(chat_template),
            jobs: Mutex::new(jobs),
            permits: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
            max_concurrency: config.max_concurrency.max(1),
            max_n: config.max_n.max(1),
            max_tokens: config.max_tokens.max(1),
            max_body_bytes: config.max_body_bytes,
            created,
            next_id: AtomicU64::new(created << 20),
        })
    }
}

type Shared = Arc<AppState>;

pub fn router(state: Shared) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/health", get(|| async { "ok" }))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "not_found",
                "no such route; this server implements /v1/models, /v1/completions and /v1/chat/completions",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn models(State(st): State<Shared>) -> Json<Value> {
    Json(json!({"object": "list", "data": [{
        "id": st.name, "object": "model", "created": st.created, "owned_by": "ilf",
        "max_model_len": st.ctx,
    }]}))
}

/// Which endpoint a request came to: the response shapes differ.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Completion,
    Chat,
}

async fn completions(State(st): State<Shared>, body: Result<Bytes, BytesRejection>) -> Response {
    let req: CompletionRequest = match parse(&st, body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let prompts = match req.prompt {
        Prompt::One(p) => vec![p],
        Prompt::Many(ps) => ps,
    };
    if prompts.is_empty() {
        return ApiError::bad_param("prompt", "prompt is an empty list").into_response();
    }
    run(st, Kind::Completion, prompts, req.sampling)
        .await
        .unwrap_or_else(|e| e.into_response())
}

async fn chat_completions(
    State(st): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req: ChatRequest = match parse(&st, body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let Some(template) = &st.chat else {
        return ApiError::bad_request(
            "this model's chat template is not ChatML and this server renders only ChatML; \
             use /v1/completions with a formatted prompt",
        )
        .into_response();
    };
    let prompt = match template.render(&req.messages) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    run(st, Kind::Chat, vec![prompt], req.sampling)
        .await
        .unwrap_or_else(|e| e.into_response())
}

fn parse<T: serde::de::DeserializeOwned>(
    st: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "request_too_large",
                format!(
                    "the request body exceeds this server's limit of {} bytes",
                    st.max_body_bytes
                ),
            )
        } else {
            ApiError::bad_request(format!("reading the request body: {e}"))
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the request body is not valid JSON for this endpoint: {e}"
        ))
    })
}

/// A validated request: what to sample and how to answer.
struct Plan {
    params: SamplingParams,
    n: usize,
    seed: u64,
    samples: Vec<usize>,
    stops: Vec<String>,
    stream: bool,
    include_usage: bool,
}

fn plan(st: &AppState, kind: Kind, s: &Sampling) -> Result<Plan, ApiError> {
    if let Some(m) = &s.model {
        if m != &st.name {
            return Err(ApiError {
                status: StatusCode::NOT_FOUND,
                message: format!(
                    "the model {m:?} does not exist; this server serves {:?}",
                    st.name
                ),
                kind: "invalid_request_error",
                param: Some("model"),
                code: Some("model_not_found"),
            });
        }
    }
    let neutral = |param: &'static str, v: Option<f64>, neutral: f64| match v {
        Some(x) if x != neutral => Err(ApiError::bad_param(
            param,
            format!("{param} = {x} is not supported by this server (only {neutral})"),
        )),
        _ => Ok(()),
    };
    neutral("presence_penalty", s.presence_penalty, 0.0)?;
    neutral("frequency_penalty", s.frequency_penalty, 0.0)?;
    neutral("repetition_penalty", s.repetition_penalty, 1.0)?;
    neutral("min_p", s.min_p, 0.0)?;
    match &s.logprobs {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(_) => {
            return Err(ApiError::bad_param(
                "logprobs",
                "logprobs are not supported by this server",
            ))
        }
    }
    if s.echo == Some(true) {
        return Err(ApiError::bad_param(
            "echo",
            "echo is not supported by this server",
        ));
    }
    let temperature = s.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::bad_param(
            "temperature",
            format!("temperature = {temperature} is outside [0, 2]"),
        ));
    }
    let top_p = s.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::bad_param(
            "top_p",
            format!("top_p = {top_p} is outside (0, 1]"),
        ));
    }
    let top_k = match s.top_k {
        None | Some(-1) | Some(0) => 0,
        Some(k) if k > 0 => k as usize,
        Some(k) => {
            return Err(ApiError::bad_param(
                "top_k",
                format!("top_k = {k}: use a positive number, or -1 or 0 for all tokens"),
            ))
        }
    };
    let (seed, samples) = match &s.ilf {
        Some(ext) => {
            if ext.samples.is_empty() || s.n.is_some_and(|n| n != ext.samples.len()) {
                return Err(ApiError::bad_param(
                    "ilf",
                    "ilf.samples must be non-empty and as long as n",
                ));
            }
            (ext.seed, ext.samples.clone())
        }
        None => {
            let n = s.n.unwrap_or(1);
            (s.seed.unwrap_or_else(rand::random), (0..n).collect())
        }
    };
    let n = samples.len();
    if n == 0 || n > st.max_n {
        return Err(ApiError::bad_param(
            "n",
            format!("n = {n} is outside [1, {}]", st.max_n),
        ));
    }
    if s.best_of.is_some_and(|b| b != n && b != 1) {
        return Err(ApiError::bad_param(
            "best_of",
            "best_of other than n is not supported",
        ));
    }
    let max_tokens = s.max_tokens.or(s.max_completion_tokens);
    if let Some(m) = max_tokens.filter(|&m| m == 0 || m > st.max_tokens) {
        return Err(ApiError::bad_param(
            "max_tokens",
            format!(
                "max_tokens = {m} is outside [1, {}] (this server's --max-tokens)",
                st.max_tokens
            ),
        ));
    }
    let stops = s.stop.clone().map(|s| s.into_vec()).unwrap_or_default();
    if stops.iter().any(|s| s.is_empty()) {
        return Err(ApiError::bad_param(
            "stop",
            "stop strings must not be empty",
        ));
    }
    Ok(Plan {
        params: SamplingParams {
            temperature,
            top_p,
            top_k,
            // OpenAI's defaults: 16 tokens for completions, the rest of the context for chat
            // (here capped by --max-tokens).
            max_tokens: max_tokens.unwrap_or(match kind {
                Kind::Completion => 16,
                Kind::Chat => st.max_tokens,
            }),
        },
        n,
        seed,
        samples,
        stops,
        stream: s.stream,
        include_usage: s.stream_options.as_ref().is_some_and(|o| o.include_usage),
    })
}

/// The text of one choice as its tokens arrive.
struct Choice {
    tokens: Vec<u32>,
    generated: usize,
    /// Bytes of the text already sent.
    sent: usize,
    text: String,
    finish: Option<&'static str>,
}

impl Choice {
    fn new() -> Self {
        Self {
            tokens: Vec::new(),
            generated: 0,
            sent: 0,
            text: String::new(),
            finish: None,
        }
    }

    /// Takes one token and returns the text that is now safe to send: held back are an
    /// incomplete UTF-8 sequence and any tail that could be the start of a stop string.
    fn push(
        &mut self,
        tok: &Tokenizer,
        token: u32,
        finish: Option<FinishReason>,
        stops: &[String],
    ) -> Result<String, ApiError> {
        self.generated += 1;
        if finish != Some(FinishReason::Eos) {
            self.tokens.push(token);
        }
        let text = crate::tokenizer::decode(tok, &self.tokens).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "decode_failed",
                format!("{e:#}"),
            )
        })?;
        let hit = stops.iter().filter_map(|s| text.find(s.as_str())).min();
        let end = if let Some(i) = hit {
            self.finish = Some("stop");
            i
        } else if let Some(reason) = finish {
            self.finish = Some(finish_reason_name(reason));
            text.len()
        } else if text.ends_with('\u{FFFD}') {
            self.sent
        } else {
            let held = stops
                .iter()
                .flat_map(|s| {
                    (1..s.len())
                        .filter(|&k| s.is_char_boundary(k) && text.ends_with(&s[..k]))
                        .max()
                })
                .max()
                .unwrap_or(0);
            text.len() - held
        };
        let delta =
            if end >= self.sent && text.is_char_boundary(self.sent) && text.is_char_boundary(end) {
                text[self.sent..end].to_string()
            } else {
                String::new()
            };
        self.sent = self.sent.max(end);
        self.text = text[..end].to_string();
        Ok(delta)
    }
}

/// One request in flight: its choices, the scheduler's events, and its concurrency permit.
struct Flight {
    st: Shared,
    kind: Kind,
    id: String,
    stops: Vec<String>,
    choices: Vec<Choice>,
    cancel: Arc<Vec<AtomicBool>>,
    events: mpsc::UnboundedReceiver<Event>,
    prompt_tokens: usize,
    _permit: OwnedSemaphorePermit,
}

/// One piece of output: a choice's new text, and its finish reason on its last token.
struct Delta {
    choice: usize,
    text: String,
    finish: Option<&'static str>,
}

impl Flight {
    fn done(&self) -> bool {
        self.choices.iter().all(|c| c.finish.is_some())
    }

    /// The next delta; `Ok(None)` when every choice has finished.
    async fn next(&mut self) -> Result<Option<Delta>, ApiError> {
        loop {
            if self.done() {
                return Ok(None);
            }
            let event = self.events.recv().await.ok_or_else(|| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "scheduler_stopped",
                    "the model thread stopped before this request finished",
                )
            })?;
            match event {
                Event::Failed(msg) => {
                    return Err(ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "server_error",
                        "generation_failed",
                        msg,
                    ))
                }
                Event::Token {
                    choice,
                    token,
                    finish,
                } => {
                    let c = &mut self.choices[choice];
                    if c.finish.is_some() {
                        continue;
                    }
                    let text = c.push(&self.st.tokenizer, token, finish, &self.stops)?;
                    let finish = c.finish;
                    if finish.is_some() {
                        self.cancel[choice].store(true, Ordering::Relaxed);
                    }
                    return Ok(Some(Delta {
                        choice,
                        text,
                        finish,
                    }));
                }
            }
        }
    }

    fn usage(&self) -> Value {
        let completion: usize = self.choices.iter().map(|c| c.generated).sum();
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        })
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Completion, _) => "text_completion",
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
        }
    }

    fn chunk(&self, d: &Delta) -> Value {
        let choice = match self.kind {
            Kind::Completion => json!({
                "index": d.choice, "text": d.text, "logprobs": null, "finish_reason": d.finish,
            }),
            Kind::Chat => {
                // The first chunk of a choice carries the role, as OpenAI's do.
                let delta = if self.choices[d.choice].generated == 1 {
                    json!({"role": "assistant", "content": d.text})
                } else {
                    json!({"content": d.text})
                };
                json!({"index": d.choice, "delta": delta, "logprobs": null, "finish_reason": d.finish})
            }
        };
        json!({
            "id": self.id, "object": self.object(true), "created": self.st.created,
            "model": self.st.name, "choices": [choice],
        })
    }

    fn response(&self) -> Value {
        let choices: Vec<Value> = self
            .choices
            .iter()
            .enumerate()
            .map(|(i, c)| match self.kind {
                Kind::Completion => json!({
                    "index": i, "text": c.text, "logprobs": null, "finish_reason": c.finish,
                }),
                Kind::Chat => json!({
                    "index": i, "message": {"role": "assistant", "content": c.text},
                    "logprobs": null, "finish_reason": c.finish,
                }),
            })
            .collect();
        json!({
            "id": self.id, "object": self.object(false), "created": self.st.created,
            "model": self.st.name, "choices": choices, "usage": self.usage(),
        })
    }
}

async fn run(
    st: Shared,
    kind: Kind,
    prompts: Vec<String>,
    sampling: Sampling,
) -> Result<Response, ApiError> {
    let plan = plan(&st, kind, &sampling)?;
    let mut encoded = Vec::with_capacity(prompts.len());
    for (i, p) in prompts.iter().enumerate() {
        let ids = crate::tokenizer::encode(&st.tokenizer, p)
            .map_err(|e| ApiError::bad_param("prompt", format!("prompt {i}: {e:#}")))?;
        if ids.is_empty() {
            return Err(ApiError::bad_param(
                "prompt",
                format!("prompt {i} is empty"),
            ));
        }
        if ids.len() >= st.ctx {
            return Err(ApiError {
                status: StatusCode::BAD_REQUEST,
                message: format!(
                    "prompt {i} has {} tokens but the model's context is {}; shorten it",
                    ids.len(),
                    st.ctx
                ),
                kind: "invalid_request_error",
                param: Some("prompt"),
                code: Some("context_length_exceeded"),
            });
        }
        encoded.push(ids);
    }
    let permit = st.permits.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "too_many_requests",
            format!(
                "this server is already handling {} requests; retry with backoff",
                st.max_concurrency
            ),
        )
    })?;
    let total = plan.n * encoded.len();
    let cancel: Arc<Vec<AtomicBool>> =
        Arc::new((0..total).map(|_| AtomicBool::new(false)).collect());
    let (tx, rx) = mpsc::unbounded_channel();
    let prompt_tokens = encoded.iter().map(|e| e.len()).sum();
    {
        let jobs = st.jobs.lock().unwrap_or_else(|p| p.into_inner());
        for (p, ids) in encoded.into_iter().enumerate() {
            let job = Job {
                prompt: ids,
                params: plan.params,
                seed: plan.seed,
                samples: plan.samples.clone(),
                choice_base: p * plan.n,
                events: tx.clone(),
                cancel: cancel.clone(),
            };
            jobs.send(job).map_err(|_| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "scheduler_stopped",
                    "the model thread has stopped; restart the server",
                )
            })?;
        }
    }
    drop(tx);
    let prefix = match kind {
        Kind::Completion => "cmpl",
        Kind::Chat => "chatcmpl",
    };
    let mut flight = Flight {
        id: format!("{prefix}-{:x}", st.next_id.fetch_add(1, Ordering::Relaxed)),
        st,
        kind,
        stops: plan.stops,
        choices: (0..total).map(|_| Choice::new()).collect(),
        cancel,
        events: rx,
        prompt_tokens,
        _permit: permit,
    };
    if !plan.stream {
        while flight.next().await?.is_some() {}
        return Ok(Json(flight.response()).into_response());
    }
    let include_usage = plan.include_usage;
    // A task drives the request and feeds the response body, so a client that hangs up drops
    // the body, the task's sends fail, and the dropped job channel tells the scheduler to stop.
    let (out_tx, out_rx) = mpsc::channel::<SseEvent>(64);
    tokio::spawn(async move {
        loop {
            let event = match flight.next().await {
                Ok(Some(d)) => SseEvent::default().data(flight.chunk(&d).to_string()),
                Ok(None) => break,
                Err(e) => {
                    let _ = out_tx
                        .send(SseEvent::default().data(e.body().to_string()))
                        .await;
                    return;
                }
            };
            if out_tx.send(event).await.is_err() {
                return;
            }
        }
        if include_usage {
            let usage = json!({
                "id": flight.id, "object": flight.object(true), "created": flight.st.created,
                "model": flight.st.name, "choices": [], "usage": flight.usage(),
            });
            if out_tx
                .send(SseEvent::default().data(usage.to_string()))
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = out_tx.send(SseEvent::default().data("[DONE]")).await;
    });
    let stream = futures_util::stream::unfold(out_rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Ok(Sse::new(stream).into_response())
}
