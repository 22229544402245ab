//! `ilf serve`: an OpenAI-compatible HTTP server (`/v1/models`, `/v1/completions`,
//! `/v1/chat/completions`) over one model, with continuous batching across clients.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use ilf_lm::serve::{bind, Engine, ServeConfig};
//! let engine = Engine::tiny(7)?;
//! let server = bind(engine, &ServeConfig { bind: "127.0.0.1:0".parse()?, ..Default::default() })?;
//! println!("listening on http://{}/v1", server.addr());
//! server.wait()
//! # }
//! ```
//!
//! Layout: [`scheduler`] owns the model on its own thread; [`routes`] validates requests,
//! tokenizes, hands jobs to the scheduler and turns its token events into responses or
//! server-sent events; [`protocol`] is the wire format; [`chat`] renders conversations.

pub mod chat;
pub mod protocol;
pub mod routes;
pub mod scheduler;

use crate::models::Model;
use crate::Loaded;
use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::sync::OnceLock;
use tokenizers::Tokenizer;

/// What a server serves: a model, its tokenizer and the name clients address it by.
pub struct Engine {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub eos_token_ids: Vec<u32>,
    /// The model's Jinja chat template, when its file has one.
    pub chat_template: Option<String>,
    /// The `model` clients send and `/v1/models` lists.
    pub name: String,
}

impl Engine {
    /// A loaded model, addressed as `name`.
    pub fn from_loaded(loaded: Loaded, name: impl Into<String>) -> Self {
        let mut eos = loaded.info.eos_token_ids.clone();
        for id in &loaded.config.eos_token_ids {
            if !eos.contains(id) {
                eos.push(*id);
            }
        }
        Self {
            model: loaded.model,
            tokenizer: loaded.tokenizer,
            eos_token_ids: eos,
            chat_template: loaded.info.chat_template,
            name: name.into(),
        }
    }

    /// A tiny random Qwen2 model (seeded) with a byte-level BPE tokenizer trained on the Python
    /// standard library, named `tiny`: for tests and benchmarks that must not download anything.
    pub fn tiny(seed: u64) -> Result<Self> {
        use crate::models::{Architecture, Config};
        static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
        let tokenizer = match TOKENIZER.get() {
            Some(t) => t.clone(),
            None => {
                let files = crate::tokenizer::stdlib_corpus(300_000)?;
                let t = crate::tokenizer::train_byte_level_bpe(&files, 400)?;
                TOKENIZER.get_or_init(|| t).clone()
            }
        };
        let cfg = Config::tiny(Architecture::Qwen2, tokenizer.get_vocab_size(true));
        let model = crate::tiny_random(&cfg, seed, &candle_core::Device::Cpu)?;
        Ok(Self {
            model,
            tokenizer,
            eos_token_ids: cfg.eos_token_ids.clone(),
            chat_template: None,
            name: "tiny".into(),
        })
    }
}

/// Server settings (the flags of `ilf serve`).
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Port 0 picks a free port; [`Server::addr`] tells which.
    pub bind: SocketAddr,
    /// Allow a non-loopback address (the server has no authentication).
    pub public: bool,
    /// Sequences decoded together at most.
    pub max_batch: usize,
    /// Admission waves decoded side by side at most (see [`scheduler`]).
    pub max_cohorts: usize,
    /// Requests in flight at most (queued or decoding); more are answered 429.
    pub max_concurrency: usize,
    /// Request bodies larger than this are answered 413.
    pub max_body_bytes: usize,
    /// `n` larger than this is answered 400.
    pub max_n: usize,
    /// `max_tokens` larger than this is answered 400; also chat's default. It bounds the K/V
    /// memory a request can claim (the cache is preallocated per batch: about 25 KB per token
    /// and row for the 0.5B model).
    pub max_tokens: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8000)),
            public: false,
            max_batch: 32,
            max_cohorts: 2,
            max_concurrency: 64,
            max_body_bytes: 4 << 20,
            max_n: 128,
            max_tokens: 4096,
        }
    }
}

/// A running server. Dropping it (or [`Server::shutdown`]) stops it at once: open connections
/// are cut, as a crashed replica's would be.
pub struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Server {
    /// The bound address (the real port when the config asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL clients use: `http://ADDR/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Blocks until the server stops (it stops on its own only on an I/O error).
    pub fn wait(mut self) -> Result<()> {
        self.wait_inner()
    }

    /// Stops serving now, cutting open connections.
    pub fn shutdown(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.wait_inner()
    }

    fn wait_inner(&mut self) -> Result<()> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow::anyhow!("the server thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.wait_inner();
    }
}

/// Binds `config.bind`, starts the scheduler thread and serves in the background.
pub fn bind(engine: Engine, config: &ServeConfig) -> Result<Server> {
    if !config.bind.ip().is_loopback() && !config.public {
        bail!(
            "refusing to listen on {}: it is not a loopback address and the server has no \
             authentication; pass --public to expose it anyway",
            config.bind
        );
    }
    let listener = std::net::TcpListener::bind(config.bind)
        .with_context(|| format!("binding {} (is the port in use?)", config.bind))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let (jobs_tx, jobs_rx) = std::sync::mpsc::channel();
    let sched_cfg = scheduler::SchedulerConfig {
        max_batch: config.max_batch,
        max_cohorts: config.max_cohorts,
    };
    let Engine {
        model,
        tokenizer,
        eos_token_ids,
        chat_template,
        name,
    } = engine;
    let state = routes::AppState::new(
        name,
        tokenizer,
        model.config().max_position_embeddings,
        chat_template.as_deref(),
        jobs_tx,
        config,
    );
    let scheduler = std::thread::Builder::new()
        .name("ilf-serve-scheduler".into())
        .spawn(move || scheduler::run(model, eos_token_ids, sched_cfg, jobs_rx))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("ilf-serve-http".into())
        .spawn(move || -> Result<()> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the HTTP runtime")?;
            let served = rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                let app = routes::router(state);
                tokio::select! {
                    r = axum::serve(listener, app) => r.context("serving HTTP"),
                    _ = stop_rx => Ok(()),
                }
            });
            // Dropping the runtime cancels every connection task; the job channels close with
            // them, so the scheduler retires their rows and exits.
            drop(rt);
            let _ = scheduler.join();
            served
        })?;
    Ok(Server {
        addr,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}
