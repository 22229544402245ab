//! `ilf serve`: serve a model over the OpenAI API so other tools (lm-evaluation-harness,
//! evalplus, editors, `ilf sample --backend openai`) can use it.

use crate::output::Output;
use anyhow::Result;
use ilf_lm::registry;
use ilf_lm::serve::{bind, Engine, ServeConfig};
use std::net::SocketAddr;
use std::path::Path;

/// Serve a model over the OpenAI API (`/v1/models`, `/v1/completions`, `/v1/chat/completions`),
/// batching concurrent requests together.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// A registry name (see `ilf models list`; fetched if missing), a .gguf file or a Hugging Face
    /// directory.
    #[arg(long, env = "ILF_MODEL", default_value = registry::DEFAULT)]
    pub model: String,
    /// The name clients send as `model` (default: the registry name, or the file name without
    /// extension).
    #[arg(long, env = "ILF_SERVE_NAME")]
    pub served_name: Option<String>,
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, env = "ILF_SERVE_BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,
    /// Allow a non-loopback --bind: the server has no authentication.
    #[arg(long)]
    pub public: bool,
    /// Sequences decoded together at most.
    #[arg(long, env = "ILF_SERVE_MAX_BATCH", default_value_t = 32)]
    pub max_batch: usize,
    /// Admission waves decoded side by side at most: more admits new requests sooner, fewer
    /// batches them better.
    #[arg(long, default_value_t = 2)]
    pub max_cohorts: usize,
    /// Requests in flight at most (queued or decoding); more are answered 429.
    #[arg(long, env = "ILF_SERVE_MAX_CONCURRENCY", default_value_t = 64)]
    pub max_concurrency: usize,
    /// Largest `max_tokens` accepted (and chat's default): bounds the K/V memory of a batch.
    #[arg(long, default_value_t = 4096)]
    pub max_tokens: usize,
    /// Larger request bodies are answered 413.
    #[arg(long, default_value_t = 4 << 20)]
    pub max_body_bytes: usize,
    /// cpu, cuda or cuda:N (cuda needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu", env = "ILF_DEVICE")]
    pub device: String,
    /// Keep the weights quantized (about a quarter of the memory, slower when batching on CPU).
    #[arg(long)]
    pub quantized: bool,
}

pub fn run(args: ServeArgs, out: Output) -> Result<()> {
    let name = args.served_name.clone().unwrap_or_else(|| {
        if registry::find(&args.model).is_some() {
            args.model.clone()
        } else {
            Path::new(&args.model)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| args.model.clone())
        }
    });
    let loaded = super::load_local_model(&args.model, &args.device, args.quantized, &out)?;
    let config = ServeConfig {
        bind: args.bind,
        public: args.public,
        max_batch: args.max_batch.max(1),
        max_cohorts: args.max_cohorts.max(1),
        max_concurrency: args.max_concurrency.max(1),
        max_body_bytes: args.max_body_bytes,
        max_tokens: args.max_tokens.max(1),
        ..ServeConfig::default()
    };
    let server = bind(Engine::from_loaded(loaded, name.clone()), &config)?;
    if out.json {
        println!(
            "{}",
            serde_json::json!({"base_url": server.base_url(), "model": name})
        );
    } else {
        out.say(format!(
            "Serving {name} at {} (OpenAI API; Ctrl-C stops)",
            server.base_url()
        ));
    }
    server.wait()
}
