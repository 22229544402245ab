//! One training job end to end, as `ilf train` runs it: read and check the data, load the base,
//! train (resuming if asked), export.

use crate::base::load_base;
use crate::data::load_examples;
use crate::export::{export, ExportFormat, ExportSource};
use crate::trainer::{run, Observer, TrainOptions, Trainer};
use anyhow::Result;
use std::path::PathBuf;

/// What to train and where.
#[derive(Debug, Clone)]
pub struct TrainJob {
    /// Registry name, `.gguf` file or Hugging Face directory.
    pub base: String,
    /// Prompt/completion JSONL.
    pub data: PathBuf,
    /// Run directory: checkpoints, `metrics.jsonl`, `loss.svg`, exports.
    pub out: PathBuf,
    pub options: TrainOptions,
    pub resume: bool,
    /// Checkpoint every this many optimizer steps (and always after the last).
    pub save_every: usize,
    pub exports: Vec<ExportFormat>,
}

/// What a finished job reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainReport {
    pub out: PathBuf,
    pub steps: usize,
    pub final_loss: Option<f64>,
    pub examples: usize,
    pub trainable_parameters: usize,
    pub exports: Vec<PathBuf>,
}

/// Runs `job`. The data and settings are checked before the base model is loaded, and every
/// example is tokenized and checked before the first step.
pub fn train(job: &TrainJob, observer: &mut dyn Observer) -> Result<TrainReport> {
    job.options.validate()?;
    let examples = load_examples(&job.data)?;
    let base = load_base(&job.base)?;
    let mut trainer = Trainer::new(
        &base.config,
        base.weights,
        &base.tokenizer,
        &examples,
        job.options.clone(),
    )?;
    run(&mut trainer, &job.out, job.resume, job.save_every, observer)?;
    let source = ExportSource::new(
        &trainer.trainable,
        &base.tokenizer,
        trainer.end_of_text(),
        &job.base,
        base.gguf_metadata.as_ref(),
    );
    let exports = job
        .exports
        .iter()
        .map(|f| export(&source, *f, &job.out))
        .collect::<Result<Vec<_>>>()?;
    let history = crate::metrics::read_metrics(&job.out.join("metrics.jsonl"))?;
    Ok(TrainReport {
        out: job.out.clone(),
        steps: trainer.steps_done(),
        final_loss: history.last().map(|r| r.loss),
        examples: examples.len(),
        trainable_parameters: trainer.trainable.trainable_count(),
        exports,
    })
}
