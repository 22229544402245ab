//! Fine-tuning inside a stage: `ilf-train`'s job with resume always on, so a killed run continues
//! from its last checkpoint, and a Hugging Face export that the sampling stages load.

use super::config::TrainConfig;
use crate::output::Output;
use anyhow::Result;
use ilf_train::export::ExportFormat;
use ilf_train::metrics::StepMetrics;
use ilf_train::trainer::{MicroProgress, Observer, Start};
use ilf_train::TrainJob;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Training data (prompt/completion JSONL) of a stage.
pub const DATA: &str = "train.jsonl";

/// What a training stage records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainDetails {
    pub examples: usize,
    pub steps: usize,
    pub batch: usize,
    pub final_loss: Option<f64>,
    pub trainable_parameters: usize,
}

/// The exported model of a training stage directory.
pub fn model_dir(stage_dir: &Path) -> PathBuf {
    stage_dir.join("train").join("hf")
}

/// Trains `base` on `stage_dir/train.jsonl` (`examples` records) into `stage_dir/train/`.
pub fn train(
    base: &str,
    stage_dir: &Path,
    examples: usize,
    config: &TrainConfig,
    seed: u64,
    out: &Output,
    label: &str,
) -> Result<(PathBuf, TrainDetails)> {
    let options = config.options(seed, examples);
    let batch = options.batch;
    let job = TrainJob {
        base: base.to_string(),
        data: stage_dir.join(DATA),
        out: stage_dir.join("train"),
        options,
        resume: true,
        save_every: config.save_every,
        exports: vec![ExportFormat::Hf],
    };
    let mut observer = Progress {
        bar: None,
        out: *out,
        label: label.to_string(),
    };
    let report = ilf_train::train(&job, &mut observer)?;
    if let Some(bar) = observer.bar {
        bar.finish_and_clear();
    }
    Ok((
        model_dir(stage_dir),
        TrainDetails {
            examples: report.examples,
            steps: report.steps,
            batch,
            final_loss: report.final_loss,
            trainable_parameters: report.trainable_parameters,
        },
    ))
}

/// A progress bar over optimizer steps.
struct Progress {
    bar: Option<ProgressBar>,
    out: Output,
    label: String,
}

impl Observer for Progress {
    fn start(&mut self, start: &Start) {
        if start.steps_done > 0 {
            self.out.say(format!(
                "{}: resuming at step {} of {}",
                self.label, start.steps_done, start.total_steps
            ));
        }
        let bar = self.out.progress(start.total_steps as u64, &self.label);
        bar.set_position(start.steps_done as u64);
        self.bar = Some(bar);
    }

    fn micro_batch(&mut self, _progress: MicroProgress) {}

    fn step(&mut self, metrics: &StepMetrics, _total_steps: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(format!("loss {:.3}", metrics.loss));
        }
    }
}
