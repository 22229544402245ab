//! Supervised fine-tuning of `ilf-lm` decoders (Qwen2, Llama): masked loss, AdamW, LoRA,
//! checkpoints, exports. `ilf train` is a thin shell over [`train`].
//!
//! # The run, in order
//! 1. **Data** ([`data`]): prompt/completion JSON Lines, TRL's `prompt`/`completion` or the
//!    paper's `finetuning_prompt`/`finetuning_completion`. A bad line fails with file and line.
//! 2. **Base** ([`base`]): a registry name, `.gguf` file or Hugging Face directory; the
//!    architecture is checked from the header before the weights are read, then every weight is
//!    loaded as f32.
//! 3. **Sequences** ([`encode`]): `prompt + completion + <|endoftext|>`, truncated from the right
//!    to `max_len` (1024, as the paper); loss only on the completion and the end-of-text token
//!    (`ilf-method.md` sections 3.2–3.3). An example whose completion truncation would empty is
//!    an error, raised with all other input errors before the first step.
//! 4. **Steps** ([`trainer`], [`schedule`], [`adamw`]): micro-batches (right-padded, no attention
//!    mask needed under causal attention) accumulate into one optimizer step of `batch`
//!    examples; the gradient is the mean over micro-batches, clipped to global norm 1.0, then
//!    PyTorch's AdamW at the linear schedule's rate (warm-up, then decay to zero). Steps are
//!    counted like the Transformers (≥ 4.46) training loop: `ceil(micro-batches / accumulation)` per epoch, the last
//!    possibly partial. Data order is shuffled per epoch by a generator seeded from
//!    `(seed, epoch)`.
//! 5. **Method** ([`trainable`], [`lora`]): every weight a `Var`, or LoRA adapters (A
//!    Kaiming-uniform as PEFT, B zero, scale alpha/r) on the target projections.
//! 6. **Checkpoints** ([`checkpoint`]): after every `save_every` steps, atomically (temporary
//!    directory, fsync, rename), keeping the last. `--resume` after `kill -9` continues to the
//!    same weights as an uninterrupted run: the data order is a function of the seed and the
//!    epoch, LoRA dropout masks are a function of `(seed, step, micro-batch, module)`, and the
//!    optimizer moments are saved.
//! 7. **Logs** ([`metrics`], [`loss_curve`]): `metrics.jsonl` (one row per step) and `loss.svg`.
//! 8. **Exports** ([`export`]): a Hugging Face directory, a PEFT adapter, a GGUF file.

pub mod adamw;
pub mod base;
pub mod checkpoint;
pub mod data;
pub mod encode;
pub mod error;
pub mod export;
pub mod job;
pub mod lora;
pub mod loss;
pub mod loss_curve;
pub mod metrics;
pub mod schedule;
pub mod tensor_file;
pub mod trainable;
pub mod trainer;

pub use error::TrainError;
pub use job::{train, TrainJob, TrainReport};
