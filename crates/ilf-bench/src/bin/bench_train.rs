//! Fine-tuning throughput: ilf-train against PyTorch + transformers (+ PEFT), side by side.
//!
//! The setting of issue 4: Qwen2.5-Coder-0.5B, the paper's optimizer settings (AdamW, lr 5e-6,
//! linear decay, clipping at 1.0) at micro-batch 1, MBPP training tasks as prompt/completion
//! pairs truncated to 512 tokens, full fine-tuning and LoRA (r 16, alpha 32, dropout 0.05, all
//! seven projections). Both engines train on the same examples for the same number of optimizer
//! steps; tokens/s counts real tokens over the training time only (model loading excluded), and
//! peak memory is the process's high-water mark (VmHWM / ru_maxrss), loading included. Each
//! engine and mode runs in its own process: this binary re-invokes itself with `--worker`, and
//! runs `peers/train_torch.py` from the venv under `$ILF_CACHE/bench-venv-train`.
//!
//! ```text
//! cargo run --release -p ilf-bench --bin bench_train -- --model /tmp/models/q05.gguf \
//!     --mbpp /path/to/mbpp.jsonl --examples 8 --batch 4
//! ```

use anyhow::{bail, Context, Result};
use clap::Parser;
use ilf_train::lora::LoraOptions;
use ilf_train::trainable::Method;
use ilf_train::trainer::{BaseDtype, TrainOptions, Trainer};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[derive(Parser, Debug, Clone)]
struct Args {
    /// Registry name, .gguf path or Hugging Face directory (the PyTorch peer needs a .gguf).
    #[arg(long, default_value = ilf_train::base::DEFAULT_BASE)]
    model: String,
    /// MBPP file (default: where `ilf data fetch` puts it).
    #[arg(long)]
    mbpp: Option<PathBuf>,
    /// Training examples: MBPP tasks from id 601 (the paper's MBPP_Train) on.
    #[arg(long, default_value_t = 8)]
    examples: usize,
    /// Examples per optimizer step; the run is one epoch, so examples / batch steps.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    #[arg(long, default_value_t = 1)]
    micro_batch: usize,
    #[arg(long, default_value_t = 512)]
    max_len: usize,
    /// Modes, comma-separated: full, lora, lora-bf16 (LoRA over a bf16 base: ilf's
    /// `--base-dtype bf16`, PyTorch's model loaded in bfloat16 with PEFT's f32 adapters).
    #[arg(long, default_value = "full,lora,lora-bf16")]
    modes: String,
    /// Engines, comma-separated: ours, torch.
    #[arg(long, default_value = "ours,torch")]
    engines: String,
    /// Internal: `ours:<mode>:<data file>` runs one measurement in this process.
    #[arg(long, hide = true)]
    worker: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Measure {
    engine: String,
    mode: String,
    steps: usize,
    tokens: usize,
    seconds: f64,
    tokens_per_s: f64,
    peak_rss_mb: f64,
    final_loss: f64,
}

const LR: f64 = 5e-6;

fn lora() -> LoraOptions {
    LoraOptions {
        rank: 16,
        alpha: 32.0,
        dropout: 0.05,
        ..Default::default()
    }
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Writes the training JSONL: the paper prompt and the gold code after the signature.
fn write_data(args: &Args, path: &Path) -> Result<()> {
    let mbpp = ilf_data::mbpp::Mbpp::resolve(args.mbpp.as_deref())
        .context("loading MBPP (run `ilf data fetch` or pass --mbpp)")?;
    let mut text = String::new();
    for task in mbpp
        .tasks()
        .iter()
        .filter(|t| t.task_id >= 601)
        .take(args.examples)
    {
        let prefix = ilf_data::prompt::code_prefix(task)?;
        let record = serde_json::json!({
            "task_id": task.task_id,
            "prompt": ilf_data::prompt::paper_prompt(task),
            "completion": &task.code[prefix.len()..],
        });
        text.push_str(&record.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn run_ours(args: &Args, mode: &str, data: &Path) -> Result<Measure> {
    let base = ilf_train::base::load_base(&args.model)?;
    let examples = ilf_train::data::load_examples(data)?;
    let method = match mode {
        "full" => Method::Full,
        "lora" | "lora-bf16" => Method::Lora(lora()),
        other => bail!("unknown mode {other} (full, lora, lora-bf16)"),
    };
    let base_dtype = if mode == "lora-bf16" {
        BaseDtype::Bf16
    } else {
        BaseDtype::F32
    };
    let options = TrainOptions {
        method,
        base_dtype,
        lr: LR,
        epochs: 1,
        batch: args.batch,
        micro_batch: args.micro_batch,
        max_len: args.max_len,
        ..Default::default()
    };
    let mut trainer = Trainer::new(
        &base.config,
        base.weights,
        &base.tokenizer,
        &examples,
        options,
    )?;
    let started = Instant::now();
    let (mut tokens, mut loss) = (0, f64::NAN);
    while !trainer.is_done() {
        let m = trainer.step(&mut |_| {})?;
        tokens += m.tokens;
        loss = m.loss;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Measure {
        engine: "ilf".into(),
        mode: mode.into(),
        steps: trainer.steps_done(),
        tokens,
        seconds,
        tokens_per_s: tokens as f64 / seconds,
        peak_rss_mb: peak_rss_mb(),
        final_loss: loss,
    })
}

fn gguf_path(spec: &str) -> Result<PathBuf> {
    match ilf_lm::load::resolve(spec)? {
        ilf_lm::load::ModelSource::Gguf(p) => Ok(p),
        ilf_lm::load::ModelSource::HfDir(d) => bail!(
            "the PyTorch peer loads a .gguf; {} is a directory",
            d.display()
        ),
    }
}

fn run_torch(args: &Args, mode: &str, data: &Path) -> Result<Measure> {
    let python = ilf_bench::torch_venv()?;
    let script = ilf_bench::peers_dir().join("train_torch.py");
    let targets = lora().targets.join(",");
    let (mode, dtype) = match mode {
        "lora-bf16" => ("lora", "bf16"),
        m => (m, "f32"),
    };
    let out = Command::new(&python)
        .arg(&script)
        .arg("--gguf")
        .arg(gguf_path(&args.model)?)
        .arg("--data")
        .arg(data)
        .args([
            "--mode",
            mode,
            "--lr",
            &LR.to_string(),
            "--targets",
            &targets,
        ])
        .args([
            "--batch",
            &args.batch.to_string(),
            "--micro-batch",
            &args.micro_batch.to_string(),
        ])
        .args(["--max-len", &args.max_len.to_string()])
        .args([
            "--rank",
            &lora().rank.to_string(),
            "--alpha",
            &lora().alpha.to_string(),
        ])
        .args(["--dropout", &lora().dropout.to_string()])
        .args(["--base-dtype", dtype])
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    parse_result("torch", &out)
}

fn run_worker(args: &Args, mode: &str, data: &Path) -> Result<Measure> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args(["--model", &args.model, "--batch", &args.batch.to_string()])
        .args([
            "--micro-batch",
            &args.micro_batch.to_string(),
            "--max-len",
            &args.max_len.to_string(),
        ])
        .arg("--worker")
        .arg(format!("ours:{mode}:{}", data.display()))
        .output()
        .context("running the ilf worker")?;
    parse_result("ilf", &out)
}

/// The last stdout line of a worker is its JSON result.
fn parse_result(engine: &str, out: &std::process::Output) -> Result<Measure> {
    if !out.status.success() {
        bail!(
            "the {engine} worker failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .with_context(|| format!("reading the {engine} worker's result {last:?}"))
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(worker) = &args.worker {
        let mut parts = worker.splitn(3, ':');
        let (Some("ours"), Some(mode), Some(data)) = (parts.next(), parts.next(), parts.next())
        else {
            bail!("bad --worker {worker}");
        };
        let m = run_ours(&args, mode, Path::new(data))?;
        println!("{}", serde_json::to_string(&m)?);
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("train.jsonl");
    write_data(&args, &data)?;
    println!(
        "{} MBPP examples (tasks 601+), batch {} = {} micro-batches of {}, max {} tokens, lr {LR}",
        args.examples,
        args.batch,
        args.batch / args.micro_batch.max(1),
        args.micro_batch,
        args.max_len
    );
    println!(
        "{:<9} {:<6} {:>6} {:>8} {:>9} {:>10} {:>12} {:>10}",
        "mode", "engine", "steps", "tokens", "seconds", "tokens/s", "peak MB", "loss"
    );
    for mode in args.modes.split(',') {
        let mut results = Vec::new();
        for engine in args.engines.split(',') {
            let m = match engine {
                "ours" => run_worker(&args, mode, &data)?,
                "torch" => run_torch(&args, mode, &data)?,
                other => bail!("unknown engine {other} (ours, torch)"),
            };
            println!(
                "{:<9} {:<6} {:>6} {:>8} {:>9.1} {:>10.2} {:>12.0} {:>10.4}",
                m.mode,
                m.engine,
                m.steps,
                m.tokens,
                m.seconds,
                m.tokens_per_s,
                m.peak_rss_mb,
                m.final_loss
            );
            results.push(m);
        }
        if let [ours, peer] = &results[..] {
            println!(
                "{mode}: ilf/torch tokens/s {:.2}x, peak memory {:.2}x",
                ours.tokens_per_s / peer.tokens_per_s,
                ours.peak_rss_mb / peer.peak_rss_mb
            );
        }
    }
    Ok(())
}
