//! The training loop: micro-batches, gradient accumulation, clipping, AdamW, the schedule, and
//! checkpoints at step boundaries.

use crate::adamw::{clip_factor, global_norm, AdamW, AdamWConfig, AddScaled};
use crate::checkpoint::{self, CheckpointState};
use crate::data::Example;
use crate::encode::{encode, resolve_end_of_text, MicroBatch, Sequence};
use crate::error::TrainError;
use crate::loss::rows_loss;
use crate::metrics::{read_metrics, MetricsLog, StepMetrics};
use crate::schedule::{linear_lr, StepPlan};
use crate::trainable::{Method, Trainable};
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use ilf_lm::models::Config;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;
use tokenizers::Tokenizer;

/// Everything that decides a run's trajectory (so a resume must match it exactly).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    pub method: Method,
    /// Peak learning rate.
    pub lr: f64,
    pub epochs: usize,
    /// Examples per optimizer step (the effective batch).
    pub batch: usize,
    /// Examples per forward pass; `batch / micro_batch` micro-batches are accumulated.
    pub micro_batch: usize,
    pub warmup_steps: usize,
    pub adamw: AdamWConfig,
    /// Global gradient-norm clipping threshold.
    pub max_grad_norm: f64,
    /// Whole-sequence token limit (prompt + completion + end-of-text).
    pub max_len: usize,
    pub seed: u64,
    /// End-of-text token appended to every completion; `None` picks the tokenizer's.
    pub eos_token: Option<String>,
    /// How LoRA's frozen base weights are held. Left out of the options' JSON when f32, so
    /// runs checkpointed before the option existed still resume.
    #[serde(default, skip_serializing_if = "BaseDtype::is_f32")]
    pub base_dtype: BaseDtype,
}

/// The precision of the frozen base under LoRA.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BaseDtype {
    /// f32, the checkpoint's values (candle's GEMM).
    #[default]
    F32,
    /// bf16 in both orientations, forward and input gradient on ilf's bf16 kernel (on a CPU
    /// with AVX2 or AVX512-BF16; elsewhere the base stays f32, with a warning): the same memory
    /// as f32 and the precision the model was trained in; on AVX512-BF16, bench_train measured
    /// 1.77× the f32 base's tokens/s. Adapters and optimizer stay f32.
    Bf16,
}

impl BaseDtype {
    pub fn is_f32(&self) -> bool {
        *self == BaseDtype::F32
    }
}

impl std::str::FromStr for BaseDtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(BaseDtype::F32),
            "bf16" => Ok(BaseDtype::Bf16),
            other => Err(format!("unknown base dtype {other:?} (f32 or bf16)")),
        }
    }
}

impl Default for TrainOptions {
    /// The paper's settings (`ilf-method.md` section 4): lr 5e-6, 2 epochs, batch 32 as 32
    /// micro-batches of 1, no warm-up, no weight decay, clipping at 1.0, 1024 tokens, seed 42.
    fn default() -> Self {
        Self {
            method: Method::Full,
            lr: 5e-6,
            epochs: 2,
            batch: 32,
            micro_batch: 1,
            warmup_steps: 0,
            adamw: AdamWConfig::default(),
            max_grad_norm: 1.0,
            max_len: 1024,
            seed: 42,
            eos_token: None,
            base_dtype: BaseDtype::F32,
        }
    }
}

impl TrainOptions {
    /// Checks the numbers that do not depend on the model.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |s: String| Err(TrainError::InvalidSetting(s));
        if self.micro_batch == 0 || self.batch == 0 || !self.batch.is_multiple_of(self.micro_batch)
        {
            return bad(format!(
                "--batch {} must be a positive multiple of --micro-batch {}",
                self.batch, self.micro_batch
            ));
        }
        if self.epochs == 0 {
            return bad("--epochs must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("--lr {} must be a positive number", self.lr));
        }
        if self.max_len < 2 {
            return bad(format!(
                "--max-len {} leaves no room for a prompt and a target",
                self.max_len
            ));
        }
        if self.base_dtype == BaseDtype::Bf16 && !matches!(self.method, Method::Lora(_)) {
            return bad(
                "--base-dtype bf16 needs --lora: full fine-tuning trains every weight in f32"
                    .into(),
            );
        }
        if self.max_grad_norm.is_nan() || self.max_grad_norm <= 0.0 {
            return bad(format!(
                "--max-grad-norm {} must be positive",
                self.max_grad_norm
            ));
        }
        Ok(())
    }
}

/// What a step reports per micro-batch, for progress bars.
#[derive(Debug, Clone, Copy)]
pub struct MicroProgress {
    pub loss: f64,
    pub tokens: usize,
}

/// A training run in memory: model, optimizer, data and position.
pub struct Trainer {
    pub trainable: Trainable,
    optimizer: AdamW,
    sequences: Vec<Sequence>,
    plan: StepPlan,
    options: TrainOptions,
    end_of_text: u32,
    steps_done: usize,
    tokens_seen: u64,
    fingerprint: String,
}

impl Trainer {
    /// Validates settings and tokenizes every example (all input errors surface here, before
    /// any compute), then builds the model over `weights`.
    pub fn new(
        config: &Config,
        weights: HashMap<String, Tensor>,
        tokenizer: &Tokenizer,
        examples: &[Example],
        options: TrainOptions,
    ) -> Result<Self> {
        let (sequences, end_of_text) = prepare(config, tokenizer, examples, &options)?;
        let fingerprint = fingerprint(config, &sequences, &options)?;
        let mut trainable = Trainable::new(config, weights, options.method.clone(), options.seed)?;
        if options.base_dtype == BaseDtype::Bf16 {
            if ilf_lm::bf16_matmul::Kernel::best() == ilf_lm::bf16_matmul::Kernel::Scalar {
                // Only the portable kernel here (no AVX2): slower than f32, so keep f32.
                tracing::warn!(
                    "--base-dtype bf16: this CPU has no bf16 kernel; the base stays f32"
                );
            } else {
                trainable.freeze_base_to_bf16()?;
            }
        }
        let optimizer = AdamW::new(trainable.params.clone(), options.adamw)?;
        let plan = StepPlan::new(
            sequences.len(),
            options.batch,
            options.micro_batch,
            options.epochs,
        );
        Ok(Self {
            trainable,
            optimizer,
            sequences,
            plan,
            options,
            end_of_text,
            steps_done: 0,
            tokens_seen: 0,
            fingerprint,
        })
    }

    pub fn options(&self) -> &TrainOptions {
        &self.options
    }

    pub fn plan(&self) -> StepPlan {
        self.plan
    }

    pub fn total_steps(&self) -> usize {
        self.plan.total_steps()
    }

    pub fn steps_done(&self) -> usize {
        self.steps_done
    }

    pub fn is_done(&self) -> bool {
        self.steps_done >= self.total_steps()
    }

    /// The token appended to every target.
    pub fn end_of_text(&self) -> u32 {
        self.end_of_text
    }

    /// Micro-batches still to run, for progress bars.
    pub fn micro_batches_left(&self) -> usize {
        let spe = self.plan.steps_per_epoch();
        (self.steps_done..self.total_steps())
            .map(|k| self.plan.micro_batches_of(k % spe).len())
            .sum()
    }

    /// Example indices of epoch `epoch`, shuffled by a generator seeded from `(seed, epoch)`.
    fn epoch_order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.sequences.len()).collect();
        let seed = self.options.seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        order
    }

    /// Runs one optimizer step: forward and backward over its micro-batches, accumulating the
    /// mean gradient, then clipping and AdamW at the scheduled learning rate.
    pub fn step(&mut self, on_micro_batch: &mut dyn FnMut(MicroProgress)) -> Result<StepMetrics> {
        let k = self.steps_done;
        anyhow::ensure!(
            k < self.total_steps(),
            "training already finished ({k} steps)"
        );
        let started = Instant::now();
        let spe = self.plan.steps_per_epoch();
        let epoch = k / spe;
        let order = self.epoch_order(epoch);
        let micro_batches = self.plan.micro_batches_of(k % spe);
        let count = micro_batches.len();
        let mut sums: Vec<Tensor> = Vec::new();
        let (mut loss_sum, mut tokens) = (0.0, 0);
        for mb in micro_batches {
            let m = self.options.micro_batch;
            let members = &order[mb * m..((mb + 1) * m).min(order.len())];
            let rows: Vec<_> = members.iter().map(|&i| self.sequences[i].row()).collect();
            let batch = MicroBatch::new(&rows, self.end_of_text, &Device::Cpu)?;
            // Dropout masks as a function of (seed, step, micro-batch): resume draws the same.
            self.trainable.dropout_seed.set(
                self.options.seed
                    ^ (k as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407)
                    ^ (mb as u64 + 1).wrapping_mul(0x9FB2_1C65_1E98_DF25),
            );
            let logits =
                self.trainable
                    .model
                    .forward_rows_t(&batch.input_ids, &batch.positions, true)?;
            let loss = rows_loss(&logits, &batch)?;
            drop(logits);
            let value = loss.to_scalar::<f32>()? as f64;
            let mut grads = loss.backward()?;
            drop(loss);
            for (i, (name, var)) in self.trainable.params.iter().enumerate() {
                let g = grads.remove(var.as_tensor()).with_context(|| {
                    format!("parameter {name} received no gradient: the graph does not reach it")
                })?;
                match sums.get(i) {
                    // Candle's gradients are fresh tensors owned by this store, so the first
                    // micro-batch's become the running sums and later ones add in place.
                    None => sums.push(g.contiguous()?),
                    Some(sum) => sum.inplace_op2(&g.contiguous()?, &AddScaled(1.0))?,
                }
            }
            drop(grads);
            loss_sum += value;
            tokens += batch.tokens;
            on_micro_batch(MicroProgress {
                loss: value,
                tokens: batch.tokens,
            });
        }
        // The step's gradient is the mean over its micro-batches; the 1/count is folded into
        // the norm and into AdamW's gradient scale instead of a pass over the sums.
        let mean = 1.0 / count as f64;
        let grad_norm = global_norm(&sums)? * mean;
        let lr = linear_lr(
            self.options.lr,
            k,
            self.options.warmup_steps,
            self.total_steps(),
        );
        let scale = clip_factor(grad_norm, self.options.max_grad_norm) * mean;
        self.optimizer.step(&sums, lr, scale)?;
        self.steps_done += 1;
        self.tokens_seen += tokens as u64;
        let seconds = started.elapsed().as_secs_f64();
        Ok(StepMetrics {
            step: self.steps_done,
            epoch: self.steps_done as f64 / spe as f64,
            loss: loss_sum * mean,
            lr,
            grad_norm,
            tokens,
            tokens_per_s: tokens as f64 / seconds.max(1e-9),
        })
    }

    /// Writes a checkpoint of the current step into `out_dir`.
    pub fn save_checkpoint(&self, out_dir: &Path) -> Result<std::path::PathBuf> {
        let state = CheckpointState {
            step: self.steps_done,
            tokens_seen: self.tokens_seen,
            fingerprint: self.fingerprint.clone(),
        };
        checkpoint::save(out_dir, &state, &self.trainable.params, &self.optimizer)
    }

    /// Continues from the newest checkpoint in `out_dir`, if any; returns its step. Refuses a
    /// checkpoint of a different run (settings, data or base model).
    pub fn resume(&mut self, out_dir: &Path) -> Result<Option<usize>> {
        let Some(dir) = checkpoint::latest(out_dir)? else {
            return Ok(None);
        };
        let state = checkpoint::read_state(&dir)?;
        if state.fingerprint != self.fingerprint {
            anyhow::bail!(
                "{} was written by a run with other settings, data or base model; resume with the \
                 same arguments, or train into a new --out",
                dir.display()
            );
        }
        checkpoint::restore(&dir, &self.trainable.params, &mut self.optimizer, &state)?;
        self.steps_done = state.step;
        self.tokens_seen = state.tokens_seen;
        Ok(Some(state.step))
    }
}

/// Tokenizes and checks every example; the settings are checked against the model first.
fn prepare(
    config: &Config,
    tokenizer: &Tokenizer,
    examples: &[Example],
    options: &TrainOptions,
) -> Result<(Vec<Sequence>, u32), TrainError> {
    options.validate()?;
    if options.max_len > config.max_position_embeddings {
        return Err(TrainError::InvalidSetting(format!(
            "--max-len {} exceeds the model's {} positions",
            options.max_len, config.max_position_embeddings
        )));
    }
    let end_of_text = resolve_end_of_text(
        tokenizer,
        options.eos_token.as_deref(),
        config.eos_token_ids.first().copied(),
    )?;
    let sequences = examples
        .iter()
        .map(|e| encode(tokenizer, e, end_of_text, options.max_len))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some((i, id)) = sequences.iter().enumerate().find_map(|(i, s)| {
        s.ids
            .iter()
            .find(|&&id| id as usize >= config.vocab_size)
            .map(|id| (i, id))
    }) {
        return Err(TrainError::BadRecord {
            origin: examples[i].origin.clone(),
            reason: format!(
                "token id {id} is outside the model's vocabulary of {}",
                config.vocab_size
            ),
        });
    }
    Ok((sequences, end_of_text))
}

/// A digest of what determines the trajectory: model config, token sequences, options.
fn fingerprint(config: &Config, sequences: &[Sequence], options: &TrainOptions) -> Result<String> {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(config)?);
    h.update(serde_json::to_vec(options)?);
    for s in sequences {
        h.update((s.prompt_len as u64).to_le_bytes());
        h.update((s.ids.len() as u64).to_le_bytes());
        for id in &s.ids {
            h.update(id.to_le_bytes());
        }
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Where a run starts, once any checkpoint is restored.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    pub steps_done: usize,
    pub total_steps: usize,
    pub micro_batches_left: usize,
    pub examples: usize,
    pub trainable_parameters: usize,
}

/// Observes a run: it started (or resumed), a micro-batch finished, a step finished.
pub trait Observer {
    fn start(&mut self, _start: &Start) {}
    fn micro_batch(&mut self, _progress: MicroProgress) {}
    fn step(&mut self, _metrics: &StepMetrics, _total_steps: usize) {}
}

/// Plays a run to the end in `out_dir`: resumes from its newest checkpoint when `resume` is set
/// (a directory with a checkpoint and no `resume` is refused), appends `metrics.jsonl`, redraws
/// `loss.svg` and checkpoints every `save_every` steps and at the end.
pub fn run(
    trainer: &mut Trainer,
    out_dir: &Path,
    resume: bool,
    save_every: usize,
    observer: &mut dyn Observer,
) -> Result<()> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    if resume {
        trainer.resume(out_dir)?;
    } else if let Some(existing) = checkpoint::latest(out_dir)? {
        anyhow::bail!(
            "{} already holds {}; pass --resume to continue that run, or train into a new --out",
            out_dir.display(),
            existing.display()
        );
    }
    let metrics_path = out_dir.join("metrics.jsonl");
    let mut log = MetricsLog::open(&metrics_path, trainer.steps_done())?;
    let mut history = read_metrics(&metrics_path)?;
    observer.start(&Start {
        steps_done: trainer.steps_done(),
        total_steps: trainer.total_steps(),
        micro_batches_left: trainer.micro_batches_left(),
        examples: trainer.sequences.len(),
        trainable_parameters: trainer.trainable.trainable_count(),
    });
    while !trainer.is_done() {
        let metrics = trainer.step(&mut |p| observer.micro_batch(p))?;
        log.append(&metrics)?;
        history.push(metrics.clone());
        write_loss_curve(out_dir, &history)?;
        if trainer.steps_done().is_multiple_of(save_every.max(1)) || trainer.is_done() {
            trainer.save_checkpoint(out_dir)?;
        }
        observer.step(&metrics, trainer.total_steps());
    }
    write_loss_curve(out_dir, &history)
}

fn write_loss_curve(out_dir: &Path, history: &[StepMetrics]) -> Result<()> {
    let path = out_dir.join("loss.svg");
    std::fs::write(&path, crate::loss_curve::loss_svg(history, "training loss"))
        .with_context(|| format!("writing {}", path.display()))
}
