//! `ilf serve` under concurrent clients against offline batched sampling (issue 7's target:
//! with 16 concurrent clients, aggregate tokens/s at least 0.8× the offline sampler's).
//!
//! The same requests both ways (one sample each, T = 0.8, a fixed number of new tokens: EOS is
//! ignored so both do the same work). Offline: one `LocalGenerator` call with a batch as large
//! as the number of clients. Served: the model moves into an in-process `ilf serve`, and each
//! client thread sends its requests one after another (closed loop) through the OpenAI client
//! backend, streaming.
//!
//! ```text
//! cargo run --release -p ilf-bench --bin bench_serve -- --model /tmp/models/q05.gguf
//! ```

use anyhow::{Context, Result};
use clap::Parser;
use ilf_lm::openai::{FanOut, OpenAiConfig, OpenAiGenerator};
use ilf_lm::sampling::{GenRequest, Generator, LocalGenerator, NoStop, SamplingParams};
use ilf_lm::serve::{bind, Engine, ServeConfig};
use std::time::Instant;

#[derive(Parser, Debug)]
struct Args {
    /// Registry name or .gguf path; `tiny` for a random tiny model (no download).
    #[arg(long, default_value = ilf_lm::registry::DEFAULT)]
    model: String,
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Requests each client sends, one after another.
    #[arg(long, default_value_t = 2)]
    requests: usize,
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// Cohorts the server decodes side by side at most.
    #[arg(long, default_value_t = 2)]
    max_cohorts: usize,
    /// Offline-then-served rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

const TASKS: [&str; 8] = [
    "Write a function to find the shared elements from the given two lists.",
    "Write a python function to identify non-prime numbers.",
    "Write a function to find the n largest integers from a given list of numbers, returned in descending order.",
    "Write a python function to check whether the two numbers differ at one bit position only or not.",
    "Write a function to find all words which are at least 4 characters long in a string.",
    "Write a function to find squares of individual elements in a list.",
    "Write a python function to find the minimum number of rotations required to get the same string.",
    "Write a function to get the n smallest items from a dataset.",
];

fn requests(args: &Args) -> Vec<GenRequest> {
    let params = SamplingParams {
        temperature: 0.8,
        top_p: 1.0,
        top_k: 0,
        max_tokens: args.max_tokens,
    };
    (0..args.clients * args.requests)
        .map(|i| {
            let prompt = format!("\"\"\"\n{}\n\"\"\"\n", TASKS[i % TASKS.len()]);
            GenRequest::new(prompt, 1, i as u64, params)
        })
        .collect()
}

fn engine(model: &str) -> Result<Engine> {
    let mut engine = if model == "tiny" {
        Engine::tiny(7)?
    } else {
        let loaded = ilf_lm::load(
            model,
            &candle_core::Device::Cpu,
            ilf_lm::LoadMode::Inference,
        )
        .with_context(|| format!("loading {model}"))?;
        Engine::from_loaded(loaded, "bench")
    };
    engine.name = "bench".into();
    // Every sample runs to the token limit, so both sides do the same work.
    engine.eos_token_ids.clear();
    Ok(engine)
}

/// Tokens, wall and CPU seconds of one run, and each request's text.
struct Run {
    tokens: usize,
    seconds: f64,
    cpu_seconds: f64,
    texts: Vec<String>,
}

impl Run {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "tokens": self.tokens, "seconds": self.seconds, "cpu_seconds": self.cpu_seconds,
            "tokens_per_s": self.tokens as f64 / self.seconds,
            "tokens_per_cpu_s": self.tokens as f64 / self.cpu_seconds,
        })
    }
}

/// CPU time of this process so far (user + system, from /proc/self/stat in clock ticks of
/// 1/100 s). On a machine shared with other jobs, wall-clock throughput depends on how many
/// runnable threads each side has; tokens per CPU-second does not.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn offline(engine: &Engine, reqs: &[GenRequest], batch: usize) -> Result<Run> {
    let local = LocalGenerator {
        model: &engine.model,
        tokenizer: &engine.tokenizer,
        eos_token_ids: engine.eos_token_ids.clone(),
        batch_size: batch,
    };
    let (start, cpu) = (Instant::now(), cpu_seconds());
    let gens = local.generate_all(reqs, &NoStop)?;
    Ok(Run {
        seconds: start.elapsed().as_secs_f64(),
        cpu_seconds: cpu_seconds() - cpu,
        tokens: gens.iter().flatten().map(|g| g.tokens).sum(),
        texts: gens.into_iter().map(|g| g[0].completion.clone()).collect(),
    })
}

fn served(engine: &Engine, reqs: &[GenRequest], args: &Args) -> Result<Run> {
    // Cloning a model shares its weight storage.
    let copy = Engine {
        model: engine.model.clone(),
        tokenizer: engine.tokenizer.clone(),
        eos_token_ids: engine.eos_token_ids.clone(),
        chat_template: None,
        name: engine.name.clone(),
    };
    let config = ServeConfig {
        bind: "127.0.0.1:0".parse()?,
        max_batch: args.clients,
        max_cohorts: args.max_cohorts,
        ..Default::default()
    };
    let server = bind(copy, &config)?;
    let url = server.base_url();
    let (start, cpu) = (Instant::now(), cpu_seconds());
    let per_client: Vec<Vec<(usize, String, usize)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..args.clients)
            .map(|c| {
                let url = url.clone();
                scope.spawn(move || -> Result<Vec<(usize, String, usize)>> {
                    let client = OpenAiGenerator::new(OpenAiConfig {
                        base_urls: vec![url],
                        model: engine.name.clone(),
                        concurrency: 1,
                        retries: 0,
                        fan_out: FanOut::Auto,
                        api_key: None,
                    })?;
                    let mut out = Vec::new();
                    for r in (c..reqs.len()).step_by(args.clients) {
                        let g = client.generate_all(&reqs[r..r + 1], &NoStop)?;
                        out.push((r, g[0][0].completion.clone(), g[0][0].tokens));
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect::<Result<Vec<_>>>()
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu_seconds = cpu_seconds() - cpu;
    server.shutdown()?;
    let mut texts = vec![String::new(); reqs.len()];
    let mut tokens = 0;
    for (r, text, t) in per_client.into_iter().flatten() {
        texts[r] = text;
        tokens += t;
    }
    Ok(Run {
        tokens,
        seconds,
        cpu_seconds,
        texts,
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    let reqs = requests(&args);
    let engine = engine(&args.model)?;
    // Alternating rounds, so load from other processes on the machine hits both sides alike.
    let (mut ratios, mut cpu_ratios) = (Vec::new(), Vec::new());
    for round in 0..args.rounds.max(1) {
        let off = offline(&engine, &reqs, args.clients)?;
        let srv = served(&engine, &reqs, &args)?;
        let same = off
            .texts
            .iter()
            .zip(&srv.texts)
            .filter(|(a, b)| a == b)
            .count();
        let ratio = (srv.tokens as f64 / srv.seconds) / (off.tokens as f64 / off.seconds);
        let cpu_ratio =
            (srv.tokens as f64 / srv.cpu_seconds) / (off.tokens as f64 / off.cpu_seconds);
        ratios.push(ratio);
        cpu_ratios.push(cpu_ratio);
        println!(
            "{}",
            serde_json::json!({
                "round": round, "model": args.model, "clients": args.clients,
                "requests": reqs.len(), "max_tokens": args.max_tokens,
                "max_cohorts": args.max_cohorts,
                "offline": off.json(), "served": srv.json(),
                "ratio": ratio, "cpu_ratio": cpu_ratio,
                "same_text": format!("{same}/{}", reqs.len()),
            })
        );
    }
    ratios.sort_by(f64::total_cmp);
    cpu_ratios.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "median_ratio": ratios[ratios.len() / 2], "ratios": ratios,
            "median_cpu_ratio": cpu_ratios[cpu_ratios.len() / 2], "cpu_ratios": cpu_ratios,
        })
    );
    Ok(())
}
