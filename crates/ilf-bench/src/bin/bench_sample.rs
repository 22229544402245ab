//! Sampling throughput: ilf-lm against PyTorch/transformers and llama.cpp, side by side.
//!
//! The setting of issue 3: Qwen2.5-Coder-0.5B, n samples per prompt sharing one prefill, T = 0.8,
//! a fixed number of new tokens (EOS is ignored so every engine does the same work). Each engine
//! runs in its own process so its peak memory (VmHWM / ru_maxrss) is its own; this binary
//! re-invokes itself with `--worker ours|ours1|oursf32|llama|llama1` and runs `peers/sample_torch.py` in
//! the PyTorch venv shared with `bench_train` (`$ILF_CACHE/bench-venv-train`, created on first
//! use).
//!
//! Engines: `ours` (ilf, all samples of all prompts decoded together unless `--batch`), `oursf32`
//! (the same with f32 weights and candle's GEMM, ilf's sampling path before its bf16 kernel), `llama`
//! (llama.cpp's batched multi-sequence decode with as many sequences per step: each prompt
//! decoded once and its cells shared with its n sequences through the unified KV cache, then one
//! `llama_decode` per step holding one token per sequence), `llama1` and `ours1` (one stream:
//! n = 1, one prompt at a time, the single-stream reference), `torch` (transformers `generate`
//! with `num_return_sequences = n`, prompts left-padded into batches of the same width).
//!
//! llama-cpp-sys-2 configures llama.cpp with `GGML_NATIVE=OFF` unless rustc itself targets
//! `-C target-cpu=native`, so ggml gets its portable x86 set (AVX2, FMA, F16C) rather than the
//! AVX-512/VNNI kernels a user's own llama.cpp build (`GGML_NATIVE`) uses on such a CPU. Its
//! build script hands `GGML_*` variables to CMake, but only when it first configures the build
//! directory (it never reconfigures one), so build the peer for the CPU at hand from a fresh
//! build directory:
//!
//! ```text
//! GGML_AVX=ON GGML_AVX2=ON GGML_FMA=ON GGML_F16C=ON GGML_BMI2=ON GGML_AVX512=ON \
//!   GGML_AVX512_VNNI=ON GGML_AVX512_VBMI=ON GGML_AVX512_BF16=ON GGML_AVX_VNNI=ON \
//!   cargo build --release -p ilf-bench --features llama --bin bench_sample
//! ILF_MBPP=/path/to/mbpp.jsonl target/release/bench_sample --tasks 11,12 --n 10 --max-tokens 128
//! ```
//!
//! The llama.cpp rows name the SIMD features the linked ggml reports
//! (`llama_print_system_info`). ggml's CPU threads spin while they wait for each other, so
//! llama.cpp (and PyTorch's OpenMP pool) slow down far more than candle's rayon pool when other
//! processes compete for the cores: compare figures only from a quiet machine (the load average
//! is printed). On a shared machine, `chrt -f 10 target/release/bench_sample …` (root) runs every
//! engine, and the workers it starts, ahead of the other processes; measured so, one llama.cpp
//! stream gave 48 tokens/s, the figure llama.cpp reaches on an idle machine, against 0.9 tokens/s
//! at load average 4 without it.

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
    /// How ilf holds the weights: inference (bf16 linear weights on a CPU with AVX2 or
    /// AVX512-BF16), f32 or quantized. The `oursf32` engine always uses f32.
    #[arg(long, default_value = "inference")]
    mode: String,
    /// Engines to run, comma-separated: ours, ours1, oursf32, llama, llama1, torch (see the
    /// module docs).
    #[arg(long, default_value = "ours,oursf32,llama,llama1,torch")]
    engines: String,
    /// Threads every engine may use (candle's rayon pool, llama.cpp, torch).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// llama.cpp: one KV buffer shared by all sequences, so the prompt's cells are stored once
    /// and `seq_cp` only tags them (llama-batched's `--kv-unified`); `false` gives each sequence
    /// its own stream and copies the prompt into each.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    llama_kv_unified: bool,
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

/// ilf with `n` samples per prompt (`args.n` batched, 1 for the single-stream row).
fn run_ours(args: &Args, n: usize, engine: &str, mode_name: &str) -> Result<Measure> {
    use ilf_lm::sampling::{GenRequest, Generator, LocalGenerator, NoStop, SamplingParams};
    let mode = match mode_name {
        "inference" => ilf_lm::LoadMode::Inference,
        "f32" => ilf_lm::LoadMode::F32,
        "quantized" => ilf_lm::LoadMode::Quantized,
        other => bail!("unknown --mode {other} (inference, f32 or quantized)"),
    };
    let weights = if mode == ilf_lm::LoadMode::Inference {
        format!(
            "inference ({:?} kernel)",
            ilf_lm::bf16_matmul::Kernel::best()
        )
    } else {
        mode_name.to_string()
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
        .map(|(i, p)| GenRequest::new(p.clone(), n, i as u64, params))
        .collect();
    // The single-stream row decodes one sequence at a time, like `llama1`.
    let batch = match (n, args.batch) {
        (1, _) => 1,
        (_, 0) => n * prompts.len(),
        (_, b) => b,
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
        engine: engine.into(),
        tokens,
        seconds,
        tokens_per_s: tokens as f64 / seconds,
        peak_rss_mb: peak_rss_mb(),
        note: format!(
            "{weights} weights, batch {batch}, {} threads",
            rayon_threads()
        ),
    })
}

/// The size of the rayon pool candle computes on (set through `RAYON_NUM_THREADS` by
/// [`run_worker`]).
fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

#[cfg(feature = "llama")]
fn run_llama(args: &Args, n: usize, engine: &str) -> Result<Measure> {
    llama_peer::run(args, n, engine, &model_path(&args.model)?, &prompts(args)?)
}

#[cfg(not(feature = "llama"))]
fn run_llama(_args: &Args, _n: usize, _engine: &str) -> Result<Measure> {
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

    extern "C" {
        /// From the llama.cpp library linked through llama-cpp-sys-2 (llama.h), which
        /// llama-cpp-2 does not wrap.
        fn llama_print_system_info() -> *const std::ffi::c_char;
    }

    /// The SIMD features the linked ggml CPU backend was compiled with (`AVX2 = 1 | …`).
    fn simd_features() -> String {
        // SAFETY: llama_print_system_info returns a pointer to a NUL-terminated static buffer
        // that stays valid until the next call; it is copied out at once.
        let info = unsafe { std::ffi::CStr::from_ptr(llama_print_system_info()) }
            .to_string_lossy()
            .into_owned();
        let on: Vec<&str> = info
            .split('|')
            .filter_map(|f| f.split_once('='))
            .filter(|(_, v)| v.trim() == "1")
            .map(|(k, _)| k.trim().trim_start_matches("CPU :").trim())
            .filter(|k| k.starts_with("AVX") || k.starts_with("FMA"))
            .collect();
        if on.is_empty() {
            "no AVX".into()
        } else {
            on.join("+")
        }
    }

    /// llama.cpp's batched decode (its `batched` example), as wide as ilf's batch: the prompts
    /// of a group are decoded once, prompt `g` into sequence `g·n`, whose cells `seq_cp` shares
    /// with sequences `g·n+1 … g·n+n−1`; then every step is one `llama_decode` holding one
    /// token per sequence. With `n = 1` this is plain single-stream decoding, one prompt at a
    /// time.
    pub fn run(
        args: &Args,
        n: usize,
        engine: &str,
        path: &Path,
        prompts: &[String],
    ) -> Result<Measure> {
        // llama.cpp logs to stderr, which the parent shows only when the worker fails.
        let backend = LlamaBackend::init()?;
        let model = LlamaModel::load_from_file(&backend, path, &LlamaModelParams::default())
            .with_context(|| format!("llama.cpp loading {}", path.display()))?;
        let threads = args.threads as i32;
        // The same rows per decode step as ilf's `--batch` (0: every sample of every prompt).
        let per_group = match (n, args.batch) {
            (1, _) => 1,
            (_, 0) => prompts.len(),
            (_, b) => (b / n).max(1),
        };
        let mut tokens = 0;
        let mut seconds = 0.0;
        let mut ctx_note = String::new();
        for (gi, group) in prompts.chunks(per_group).enumerate() {
            let ids: Vec<_> = group
                .iter()
                .map(|p| model.vocab().tokenize(p.as_bytes(), false, false))
                .collect();
            let seqs = group.len() * n;
            let prompt_tokens: usize = ids.iter().map(Vec::len).sum();
            let longest = ids.iter().map(Vec::len).max().unwrap_or(0);
            // Unified cache: each prompt once plus n continuations of it; split streams: each
            // sequence gets n_ctx / n_seq_max cells and needs its prompt plus continuation.
            let needed = if args.llama_kv_unified {
                prompt_tokens + seqs * args.max_tokens
            } else {
                (longest + args.max_tokens) * seqs
            };
            let n_ctx = (needed + 64) as u32;
            // n_batch covers all prompts in one decode call and n_ubatch (the compute graph's
            // width) likewise, so neither the prefill nor a step is split.
            let n_batch = (prompt_tokens.max(seqs) as u32).max(512);
            let cparams = LlamaContextParams::default()
                .with_n_ctx(NonZeroU32::new(n_ctx))
                .with_n_batch(n_batch)
                .with_n_ubatch(n_batch)
                .with_n_seq_max(seqs as u32)
                .with_kv_unified(args.llama_kv_unified)
                .with_n_threads(threads)
                .with_n_threads_batch(threads);
            let mut ctx = model
                .new_context(&backend, cparams)
                .context("llama.cpp context")?;
            ctx_note = format!(
                "{seqs} sequences per decode, n_ctx {}, n_batch {}, kv_unified {}",
                ctx.n_ctx(),
                ctx.n_batch(),
                args.llama_kv_unified
            );
            let start = Instant::now();
            let mut batch = LlamaBatch::new(n_batch as usize, seqs as i32);
            // Row of the batch holding the logits each sequence samples from next.
            let mut logits_index = vec![0i32; seqs];
            for (g, prompt) in ids.iter().enumerate() {
                let seq = (g * n) as i32;
                for (i, &t) in prompt.iter().enumerate() {
                    batch.add(t, i as i32, &[seq], i + 1 == prompt.len())?;
                }
                let last = batch.n_tokens() - 1;
                logits_index[g * n..(g + 1) * n].fill(last);
            }
            ctx.decode(&mut batch).context("llama.cpp prefill")?;
            for g in 0..group.len() {
                for s in 1..n {
                    ctx.copy_kv_cache_seq((g * n) as i32, (g * n + s) as i32, None, None)?;
                }
            }
            let first_prompt = gi * per_group;
            let mut samplers: Vec<LlamaSampler> = (0..seqs)
                .map(|q| {
                    LlamaSampler::chain_simple([
                        LlamaSampler::temp(args.temperature as f32),
                        LlamaSampler::dist((first_prompt * n + q) as u32),
                    ])
                })
                .collect();
            for step in 0..args.max_tokens {
                let next: Vec<_> = (0..seqs)
                    .map(|q| samplers[q].sample(&ctx, logits_index[q]))
                    .collect();
                tokens += seqs;
                if step + 1 == args.max_tokens {
                    // The last sampled tokens need no forward pass (as in ilf and transformers).
                    break;
                }
                batch.clear();
                for (q, t) in next.into_iter().enumerate() {
                    // The token sampled at `step` sits at position prompt + step of its sequence.
                    let pos = (ids[q / n].len() + step) as i32;
                    batch.add(t, pos, &[q as i32], true)?;
                    logits_index[q] = q as i32;
                }
                ctx.decode(&mut batch)
                    .with_context(|| format!("llama.cpp decode step {step}"))?;
            }
            seconds += start.elapsed().as_secs_f64();
        }
        Ok(Measure {
            engine: engine.into(),
            tokens,
            seconds,
            tokens_per_s: tokens as f64 / seconds,
            peak_rss_mb: peak_rss_mb(),
            note: format!(
                "llama-cpp-2, {n} sample{} per prompt, shared prompt, {threads} threads, {ctx_note}, {}",
                if n == 1 { "" } else { "s" },
                simd_features()
            ),
        })
    }
}

fn run_torch(args: &Args) -> Result<Measure> {
    let python = ilf_bench::torch_venv()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peers")
        .join("sample_torch.py");
    let prompts_file = tempfile::NamedTempFile::new()?;
    let prompt_list = prompts(args)?;
    let prompt_count = prompt_list.len();
    std::fs::write(prompts_file.path(), serde_json::to_string(&prompt_list)?)?;
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
            "--threads",
            &args.threads.to_string(),
            // As many rows per step as ilf's batch (see `llama_peer::run`).
            "--prompts-per-batch",
            &match args.batch {
                0 => prompt_count.max(1),
                b => (b / args.n.max(1)).max(1),
            }
            .to_string(),
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

fn run_worker(args: &Args, engine: &str) -> Result<Measure> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args(std::env::args().skip(1))
        .args(["--worker", engine])
        .env("RAYON_NUM_THREADS", args.threads.to_string())
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
            "ours" => run_ours(&args, args.n, "ilf", &args.mode)?,
            "ours1" => run_ours(&args, 1, "ilf 1 stream", &args.mode)?,
            "oursf32" => run_ours(&args, args.n, "ilf f32", "f32")?,
            "llama" => run_llama(&args, args.n, "llama.cpp")?,
            "llama1" => run_llama(&args, 1, "llama.cpp 1 stream")?,
            other => bail!("unknown worker {other}"),
        };
        println!("{}", serde_json::to_string(&m)?);
        return Ok(());
    }
    let task_count = ilf_data::split::parse_task_ids(&args.tasks)?.len();
    println!(
        "sampling benchmark: {}, {task_count} prompts × n = {}, T = {}, {} new tokens each, {} threads, load average {}",
        args.model,
        args.n,
        args.temperature,
        args.max_tokens,
        args.threads,
        load_average()
    );
    // Rows print as each engine finishes, so a slow peer cut short still leaves the others.
    println!(
        "{:<20} {:>8} {:>9} {:>10} {:>12}  note",
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
            "ours" | "ours1" | "oursf32" | "llama" | "llama1" => run_worker(&args, engine),
            "torch" => run_torch(&args),
            other => Err(anyhow::anyhow!(
                "unknown engine {other} (ours, ours1, oursf32, llama, llama1, torch)"
            )),
        };
        match r {
            Ok(m) => {
                println!(
                    "{:<20} {:>8} {:>9.1} {:>10.1} {:>12.0}  {}",
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
                "ilf / {}: {:.2}× tokens/s, {:.2}× peak RSS",
                peer.engine,
                ours.tokens_per_s / peer.tokens_per_s,
                ours.peak_rss_mb / peer.peak_rss_mb
            );
        }
    }
    println!("load average at the end: {}", load_average());
    Ok(())
}

/// `/proc/loadavg`'s 1, 5 and 15 minute figures: other work on the machine skews every row.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
