//! Sampling throughput: ilf-lm against PyTorch/transformers and llama.cpp, side by side.
//!
//! The setting of issue 3: Qwen2.5-Coder-0.5B, n samples per prompt sharing one prefill, T = 0.8,
//! a fixed number of new tokens (EOS is ignored so every engine does the same work). Each engine
//! runs in its own process so its peak memory (VmHWM / ru_maxrss) is its own; this binary
//! re-invokes itself with `--worker ours|llama` and runs `peers/sample_torch.py` in the venv
//! under `$ILF_CACHE/bench-venv` (created on first use).
//!
//! ```text
//! cargo run --release -p ilf-bench --bin bench_sample -- --tasks 11,12 --n 10 --max-tokens 128
//! ```

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[derive(Parser, Debug, Clone)]
struct Args {
    /// Registry name or .gguf path.
    #[arg(long, default_value = ilf_lm::registry::DEFAULT)]
    model: String,
    /// MBPP task ids whose paper prompts are sampled.
    #[arg(long, default_value = "11,12")]
    tasks: String,
    #[arg(long, default_value_t = 10)]
    n: usize,
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    #[arg(long, default_value_t = 0.8)]
    temperature: f64,
    /// Rows decoded together by ilf (0: all samples of all prompts at once).
    #[arg(long, default_value_t = 0)]
    batch: usize,
    /// How ilf holds the weights: inference (f32) or quantized.
    #[arg(long, default_value = "inference")]
    mode: String,
    /// Engines to run, comma-separated: ours, torch, llama.
    #[arg(long, default_value = "ours,torch,llama")]
    engines: String,
    /// Internal: run one engine in this process and print its JSON result.
    #[arg(long, hide = true)]
    worker: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Measure {
    engine: String,
    tokens: usize,
    seconds: f64,
    tokens_per_s: f64,
    peak_rss_mb: f64,
    note: String,
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn prompts(args: &Args) -> Result<Vec<String>> {
    let mbpp =
        ilf_data::mbpp::Mbpp::resolve(None).context("loading MBPP (run `ilf data fetch`)")?;
    ilf_data::split::parse_task_ids(&args.tasks)?
        .into_iter()
        .map(|id| {
            let task = mbpp.get(id).with_context(|| format!("no MBPP task {id}"))?;
            Ok(ilf_data::prompt::paper_prompt(task))
        })
        .collect()
}

fn model_path(spec: &str) -> Result<PathBuf> {
    match ilf_lm::load::resolve(spec)? {
        ilf_lm::load::ModelSource::Gguf(p) => Ok(p),
        ilf_lm::load::ModelSource::HfDir(_) => {
            bail!("the benchmark compares engines on a .gguf file")
        }
    }
}

fn run_ours(args: &Args) -> Result<Measure> {
    use ilf_lm::sampling::{GenRequest, Generator, LocalGenerator, NoStop, SamplingParams};
    let mode = match args.mode.as_str() {
        "inference" => ilf_lm::LoadMode::Inference,
        "quantized" => ilf_lm::LoadMode::Quantized,
        other => bail!("unknown --mode {other}"),
    };
    let loaded = ilf_lm::load(&args.model, &candle_core::Device::Cpu, mode)?;
    let prompts = prompts(args)?;
    let params = SamplingParams {
        temperature: args.temperature,
        top_p: 1.0,
        top_k: 0,
        max_tokens: args.max_tokens,
    };
    let requests: Vec<GenRequest> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| GenRequest::new(p.clone(), args.n, i as u64, params))
        .collect();
    let batch = if args.batch == 0 {
        args.n * prompts.len()
    } else {
        args.batch
    };
    // No EOS: every sample decodes exactly max_tokens, the same work as the peers.
    let generator = LocalGenerator {
        model: &loaded.model,
        tokenizer: &loaded.tokenizer,
        eos_token_ids: vec![],
        batch_size: batch,
    };
    let start = Instant::now();
    let mut tokens = 0;
    generator.generate(&requests, &NoStop, &mut |g| {
        tokens += g.tokens;
        Ok(())
    })?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(Measure {
        engine: "ilf".into(),
        tokens,
        seconds,
        tokens_per_s: tokens as f64 / seconds,
        peak_rss_mb: peak_rss_mb(),
        note: format!("candle, {} weights, batch {batch}", args.mode),
    })
}

#[cfg(feature = "llama")]
fn run_llama(args: &Args) -> Result<Measure> {
    llama_peer::run(args, &model_path(&args.model)?, &prompts(args)?)
}

#[cfg(not(feature = "llama"))]
fn run_llama(_args: &Args) -> Result<Measure> {
    bail!("built without the `llama` feature (cargo run --release -p ilf-bench --features llama --bin bench_sample)")
}

#[cfg(feature = "llama")]
mod llama_peer {
    use super::{peak_rss_mb, Args, Measure};
    use anyhow::{Context, Result};
    use llama_cpp_2::context::params::LlamaContextParams;
    use llama_cpp_2::llama_backend::LlamaBackend;
    use llama_cpp_2::llama_batch::LlamaBatch;
    use llama_cpp_2::model::params::LlamaModelParams;
    use llama_cpp_2::model::LlamaModel;
    use llama_cpp_2::sampling::LlamaSampler;
    use std::num::NonZeroU32;
    use std::path::Path;
    use std::time::Instant;

    /// llama.cpp's batched decode: the prompt is decoded once into sequence 0, its KV copied to
    /// the other n−1 sequences, then all n decode together (llama.cpp's `batched` example).
    pub fn run(args: &Args, path: &Path, prompts: &[String]) -> Result<Measure> {
        let backend = LlamaBackend::init()?;
        let model = LlamaModel::load_from_file(&backend, path, &LlamaModelParams::default())?;
        let n = args.n;
        let mut tokens = 0;
        let mut seconds = 0.0;
        for (pi, prompt) in prompts.iter().enumerate() {
            let ids = model.vocab().tokenize(prompt.as_bytes(), false, false);
            let ctx_len = (ids.len() + args.max_tokens) * n + 64;
            let cparams = LlamaContextParams::default()
                .with_n_ctx(NonZeroU32::new(ctx_len as u32))
                .with_n_batch(ctx_len as u32)
                .with_n_seq_max(n as u32)
                .with_n_threads(2)
                .with_n_threads_batch(2);
            let mut ctx = model
                .new_context(&backend, cparams)
                .context("llama.cpp context")?;
            let start = Instant::now();
            let mut batch = LlamaBatch::new(ctx_len, n as i32);
            let last = ids.len() - 1;
            for (i, &t) in ids.iter().enumerate() {
                batch.add(t, i as i32, &[0], i == last)?;
            }
            ctx.decode(&mut batch)?;
            for s in 1..n {
                ctx.copy_kv_cache_seq(0, s as i32, None, None)?;
            }
            let mut samplers: Vec<LlamaSampler> = (0..n)
                .map(|s| {
                    LlamaSampler::chain_simple([
                        LlamaSampler::temp(args.temperature as f32),
                        LlamaSampler::dist((pi * n + s) as u32),
                    ])
                })
                .collect();
            let mut logits_index: Vec<i32> = vec![batch.n_tokens() - 1; n];
            let mut pos = ids.len() as i32;
            for _ in 0..args.max_tokens {
                let next: Vec<_> = (0..n)
                    .map(|s| samplers[s].sample(&ctx, logits_index[s]))
                    .collect();
                batch.clear();
                for (s, t) in next.into_iter().enumerate() {
                    batch.add(t, pos, &[s as i32], true)?;
                    logits_index[s] = s as i32;
                }
                pos += 1;
                ctx.decode(&mut batch)?;
                tokens += n;
            }
            seconds += start.elapsed().as_secs_f64();
        }
        Ok(Measure {
            engine: "llama.cpp".into(),
            tokens,
            seconds,
            tokens_per_s: tokens as f64 / seconds,
            peak_rss_mb: peak_rss_mb(),
            note: "llama-cpp-2, batched decode, shared prompt, 2 threads".into(),
        })
    }
}

/// The PyTorch venv `$ILF_CACHE/bench-venv`, created on first use (a large download).
fn venv_python() -> Result<PathBuf> {
    ilf_bench::venv(
        "bench-venv",
        &["torch", "transformers", "gguf", "accelerate"],
    )
}

fn run_torch(args: &Args) -> Result<Measure> {
    let python = venv_python()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peers")
        .join("sample_torch.py");
    let prompts_file = tempfile::NamedTempFile::new()?;
    std::fs::write(prompts_file.path(), serde_json::to_string(&prompts(args)?)?)?;
    let out = Command::new(&python)
        .arg(&script)
        .arg("--gguf")
        .arg(model_path(&args.model)?)
        .arg("--prompts")
        .arg(prompts_file.path())
        .args([
            "--n",
            &args.n.to_string(),
            "--max-tokens",
            &args.max_tokens.to_string(),
        ])
        .args(["--temperature", &args.temperature.to_string()])
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed:\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_string();
    serde_json::from_str(&last).with_context(|| format!("reading the torch peer's result {last:?}"))
}

fn run_worker(engine: &str) -> Result<Measure> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args(std::env::args().skip(1))
        .args(["--worker", engine])
        .output()
        .with_context(|| format!("running the {engine} worker"))?;
    if !out.status.success() {
        bail!(
            "the {engine} worker failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_string();
    serde_json::from_str(&last)
        .with_context(|| format!("reading the {engine} worker's result {last:?}"))
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(engine) = &args.worker {
        let m = match engine.as_str() {
            "ours" => run_ours(&args)?,
            "llama" => run_llama(&args)?,
            other => bail!("unknown worker {other}"),
        };
        println!("{}", serde_json::to_string(&m)?);
        return Ok(());
    }
    let task_count = ilf_data::split::parse_task_ids(&args.tasks)?.len();
    println!(
        "sampling benchmark: {} , {task_count} prompts × n = {}, T = {}, {} new tokens each, {} threads",
        args.model,
        args.n,
        args.temperature,
        args.max_tokens,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    // Rows print as each engine finishes, so a slow peer cut short still leaves the others.
    println!(
        "{:<12} {:>8} {:>9} {:>10} {:>12}  note",
        "engine", "tokens", "seconds", "tokens/s", "peak RSS MB"
    );
    let mut results = Vec::new();
    for engine in args
        .engines
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let r = match engine {
            "ours" | "llama" => run_worker(engine),
            "torch" => run_torch(&args),
            other => Err(anyhow::anyhow!(
                "unknown engine {other} (ours, torch, llama)"
            )),
        };
        match r {
            Ok(m) => {
                println!(
                    "{:<12} {:>8} {:>9.1} {:>10.1} {:>12.0}  {}",
                    m.engine, m.tokens, m.seconds, m.tokens_per_s, m.peak_rss_mb, m.note
                );
                results.push(m);
            }
            Err(e) => println!("{engine}: not measured: {e:#}"),
        }
    }
    if let Some(ours) = results.iter().find(|m| m.engine == "ilf") {
        for peer in results.iter().filter(|m| m.engine != "ilf") {
            println!(
                "ilf / {}: {:.2}× tokens/s",
                peer.engine,
                ours.tokens_per_s / peer.tokens_per_s
            );
        }
    }
    Ok(())
}
