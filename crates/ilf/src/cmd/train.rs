//! `ilf train`: supervised fine-tuning (full or LoRA) on prompt/completion JSONL.

use crate::output::Output;
use anyhow::Result;
use clap::Args;
use ilf_train::adamw::AdamWConfig;
use ilf_train::export::ExportFormat;
use ilf_train::lora::{LoraOptions, DEFAULT_TARGETS};
use ilf_train::metrics::StepMetrics;
use ilf_train::trainable::Method;
use ilf_train::trainer::{BaseDtype, MicroProgress, Observer, Start, TrainOptions};
use ilf_train::{TrainJob, TrainReport};
use indicatif::ProgressBar;
use std::path::PathBuf;
use std::time::Instant;

/// Fine-tune a model on prompt/completion JSONL with loss on the completion only.
///
/// Defaults are the paper's: AdamW, lr 5e-6, linear decay without warm-up, 2 epochs, batch 32
/// as 32 micro-batches of 1, gradient norm clipped at 1.0, sequences truncated to 1024 tokens.
/// DIR receives checkpoints (resume with --resume, also after kill -9), metrics.jsonl,
/// loss.svg and the exports.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Base model: a registry name, a .gguf file or a Hugging Face directory.
    #[arg(long, env = "ILF_TRAIN_BASE", default_value = ilf_train::base::DEFAULT_BASE)]
    pub base: String,
    /// Training data: JSONL with prompt/completion (or finetuning_prompt/finetuning_completion).
    #[arg(long, env = "ILF_TRAIN_DATA")]
    pub data: PathBuf,
    /// Run directory for checkpoints, metrics.jsonl, loss.svg and exports.
    #[arg(long, env = "ILF_TRAIN_OUT")]
    pub out: PathBuf,
    /// Train LoRA adapters instead of every weight.
    #[arg(long, env = "ILF_TRAIN_LORA", value_parser = clap::builder::FalseyValueParser::new())]
    pub lora: bool,
    /// LoRA only: hold the frozen base as bf16 (f32 or bf16). Forward and backward through it
    /// run on ilf's bf16 kernel, at the memory of the f32 base; adapters and optimizer stay f32.
    #[arg(long, env = "ILF_TRAIN_BASE_DTYPE", default_value = "f32")]
    pub base_dtype: BaseDtype,
    /// LoRA rank.
    #[arg(long, env = "ILF_TRAIN_RANK", default_value_t = 16)]
    pub rank: usize,
    /// LoRA alpha (the adapter is scaled by alpha / rank).
    #[arg(long, env = "ILF_TRAIN_ALPHA", default_value_t = 32.0)]
    pub alpha: f64,
    /// Dropout on the LoRA input during training.
    #[arg(long, env = "ILF_TRAIN_LORA_DROPOUT", default_value_t = 0.05)]
    pub lora_dropout: f32,
    /// Linear layers that get adapters, by their last name segment.
    #[arg(long, env = "ILF_TRAIN_TARGETS", value_delimiter = ',', default_values_t = DEFAULT_TARGETS.map(String::from))]
    pub targets: Vec<String>,
    /// Peak learning rate.
    #[arg(long, env = "ILF_TRAIN_LR", default_value_t = 5e-6)]
    pub lr: f64,
    #[arg(long, env = "ILF_TRAIN_EPOCHS", default_value_t = 2)]
    pub epochs: usize,
    /// Examples per optimizer step (effective batch).
    #[arg(long, env = "ILF_TRAIN_BATCH", default_value_t = 32)]
    pub batch: usize,
    /// Examples per forward pass; gradients of batch / micro-batch passes are accumulated.
    #[arg(long, env = "ILF_TRAIN_MICRO_BATCH", default_value_t = 1)]
    pub micro_batch: usize,
    #[arg(long, env = "ILF_TRAIN_WARMUP_STEPS", default_value_t = 0)]
    pub warmup_steps: usize,
    #[arg(long, env = "ILF_TRAIN_WEIGHT_DECAY", default_value_t = 0.0)]
    pub weight_decay: f64,
    #[arg(long, env = "ILF_TRAIN_BETA1", default_value_t = 0.9)]
    pub beta1: f64,
    #[arg(long, env = "ILF_TRAIN_BETA2", default_value_t = 0.999)]
    pub beta2: f64,
    #[arg(long, env = "ILF_TRAIN_EPS", default_value_t = 1e-8)]
    pub eps: f64,
    /// Clip the global gradient norm to this.
    #[arg(long, env = "ILF_TRAIN_MAX_GRAD_NORM", default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Truncate each sequence (prompt + completion + end-of-text) to this many tokens.
    #[arg(long, env = "ILF_TRAIN_MAX_LEN", default_value_t = 1024)]
    pub max_len: usize,
    /// Seeds the data order and the LoRA initialisation.
    #[arg(long, env = "ILF_TRAIN_SEED", default_value_t = 42)]
    pub seed: u64,
    /// Token appended to every completion (default: <|endoftext|> or the tokenizer's equivalent).
    #[arg(long, env = "ILF_TRAIN_EOS_TOKEN")]
    pub eos_token: Option<String>,
    /// Continue from the newest checkpoint in --out (same arguments required).
    #[arg(long, env = "ILF_TRAIN_RESUME", value_parser = clap::builder::FalseyValueParser::new())]
    pub resume: bool,
    /// Checkpoint every this many optimizer steps (and after the last).
    #[arg(long, env = "ILF_TRAIN_SAVE_EVERY", default_value_t = 1)]
    pub save_every: usize,
    /// Exports to write: hf, peft, gguf, gguf-f16 (default: hf; peft for --lora).
    #[arg(long, env = "ILF_TRAIN_EXPORT", value_delimiter = ',')]
    pub export: Vec<ExportFormat>,
}

impl TrainArgs {
    fn job(self) -> TrainJob {
        let method = if self.lora {
            Method::Lora(LoraOptions {
                rank: self.rank,
                alpha: self.alpha,
                dropout: self.lora_dropout,
                targets: self.targets,
            })
        } else {
            Method::Full
        };
        let exports = if !self.export.is_empty() {
            self.export
        } else if self.lora {
            vec![ExportFormat::Peft]
        } else {
            vec![ExportFormat::Hf]
        };
        TrainJob {
            base: self.base,
            data: self.data,
            out: self.out,
            options: TrainOptions {
                method,
                lr: self.lr,
                epochs: self.epochs,
                batch: self.batch,
                micro_batch: self.micro_batch,
                warmup_steps: self.warmup_steps,
                adamw: AdamWConfig {
                    beta1: self.beta1,
                    beta2: self.beta2,
                    eps: self.eps,
                    weight_decay: self.weight_decay,
                },
                max_grad_norm: self.max_grad_norm,
                max_len: self.max_len,
                seed: self.seed,
                eos_token: self.eos_token,
                base_dtype: self.base_dtype,
            },
            resume: self.resume,
            save_every: self.save_every,
            exports,
        }
    }
}

/// A progress bar over micro-batches, its message the last loss and the token rate.
struct Progress {
    out: Output,
    bar: Option<ProgressBar>,
    started: Instant,
    tokens: usize,
}

impl Observer for Progress {
    fn start(&mut self, s: &Start) {
        if s.steps_done > 0 {
            self.out.say(format!(
                "resuming at step {} of {}",
                s.steps_done, s.total_steps
            ));
        }
        self.out.say(format!(
            "{} examples, {} optimizer steps, {} trainable parameters",
            s.examples, s.total_steps, s.trainable_parameters
        ));
        self.bar = Some(self.out.progress(s.micro_batches_left as u64, "train"));
        self.started = Instant::now();
    }

    fn micro_batch(&mut self, p: MicroProgress) {
        self.tokens += p.tokens;
        if let Some(bar) = &self.bar {
            let rate = self.tokens as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("loss {:.4} {:.0} tok/s", p.loss, rate));
            bar.inc(1);
        }
    }

    fn step(&mut self, m: &StepMetrics, total: usize) {
        if let Some(bar) = &self.bar {
            bar.println(format!(
                "step {}/{total} epoch {:.2} loss {:.4} lr {:.3e} grad-norm {:.3} {:.0} tok/s",
                m.step, m.epoch, m.loss, m.lr, m.grad_norm, m.tokens_per_s
            ));
        }
    }
}

pub fn run(args: TrainArgs, out: Output) -> Result<()> {
    let job = args.job();
    let mut progress = Progress {
        out,
        bar: None,
        started: Instant::now(),
        tokens: 0,
    };
    let report: TrainReport = ilf_train::train(&job, &mut progress)?;
    if let Some(bar) = &progress.bar {
        bar.finish_and_clear();
    }
    if out.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        out.say(format!(
            "trained {} steps on {} examples, final loss {}; metrics in {}",
            report.steps,
            report.examples,
            report.final_loss.map_or("-".into(), |l| format!("{l:.4}")),
            report.out.join("metrics.jsonl").display()
        ));
        for path in &report.exports {
            out.say(format!("wrote {}", path.display()));
        }
    }
    Ok(())
}
