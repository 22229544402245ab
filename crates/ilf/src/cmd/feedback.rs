//! `ilf feedback`: feedback on failing programs without annotators.

use crate::output::Output;
use anyhow::{bail, Context, Result};
use ilf_data::mbpp::Mbpp;
use ilf_feedback::annotations::{read_annotations, write_annotations, AnnotationRecord};
use ilf_feedback::execution::execution_feedback;
use ilf_feedback::failures::{read_failures, Failures};
use ilf_feedback::model::{model_feedback, ModelFeedbackConfig};
use ilf_lm::sampling::{LocalGenerator, SamplingParams};
use ilf_lm::serve::chat::ChatTemplate;
use ilf_lm::{fetch, registry, LoadMode};
use std::path::PathBuf;

/// Write feedback for the failing programs of `ilf eval` results, in the paper's annotation
/// schema (the records `ilf annotate export` writes).
#[derive(clap::Args)]
pub struct FeedbackArgs {
    /// Where the feedback comes from: `execution` states the verdict (failing assert, expected
    /// and actual values, exception and traceback); `model` asks a language model with a few-shot
    /// prompt of human feedback (see `ilf_feedback::model`).
    #[arg(long, value_enum)]
    from: Source,
    /// `ilf eval`'s results.jsonl.
    #[arg(long, value_name = "PATH")]
    results: PathBuf,
    /// The JSONL file to write (replaced atomically).
    #[arg(long, value_name = "PATH")]
    out: PathBuf,
    /// The MBPP file the results were made from (default: $ILF_MBPP, else $ILF_CACHE/mbpp.jsonl).
    #[arg(long, value_name = "PATH")]
    mbpp: Option<PathBuf>,
    /// With `--from model`: a registry name (see `ilf models list`; fetched if missing), a .gguf
    /// file or a Hugging Face directory. An instruct model with a ChatML template.
    #[arg(
        long,
        env = "ILF_FEEDBACK_MODEL",
        default_value = "qwen2.5-coder-1.5b-instruct"
    )]
    model: String,
    /// With `--from model`: human annotations for the few-shot examples (the paper's
    /// surge_annotations.jsonl or an `ilf annotate export`); MBPP_Test tasks are never used.
    #[arg(
        long,
        value_name = "PATH",
        env = "ILF_ANNOTATIONS",
        required_if_eq("from", "model")
    )]
    annotations: Option<PathBuf>,
    /// With `--from model`: few-shot examples per prompt.
    #[arg(long, default_value_t = 2)]
    shots: usize,
    /// With `--from model`: 0 decodes greedily.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// With `--from model`: new tokens per feedback at most.
    #[arg(long, default_value_t = 160)]
    max_tokens: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// With `--from model`: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", env = "ILF_DEVICE")]
    device: String,
    /// With `--from model`: prompts decoded together.
    #[arg(long, default_value_t = 8)]
    batch: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Source {
    Execution,
    Model,
}

fn from_model(
    args: &FeedbackArgs,
    failures: &Failures,
    mbpp: &Mbpp,
    out: Output,
) -> Result<Vec<AnnotationRecord>> {
    if args.temperature < 0.0 {
        bail!("--temperature must be >= 0, got {}", args.temperature);
    }
    let path = args
        .annotations
        .as_ref()
        .context("--from model needs --annotations FILE")?;
    let annotations = read_annotations(path)?;
    if let Some(entry) = registry::find(&args.model) {
        if !fetch::model_path(entry).is_file() {
            out.say(format!("Fetching {} (first use) ...", entry.name));
        }
    }
    let device = ilf_lm::device::parse(&args.device)?;
    let loaded = ilf_lm::load(&args.model, &device, LoadMode::Inference)
        .with_context(|| format!("loading model {}", args.model))?;
    let template = ChatTemplate::from_jinja(loaded.info.chat_template.as_deref()).with_context(|| {
        format!("{}: its chat template is not ChatML; use an instruct model such as qwen2.5-coder-1.5b-instruct", args.model)
    })?;
    let generator = LocalGenerator {
        model: &loaded.model,
        tokenizer: &loaded.tokenizer,
        eos_token_ids: loaded.info.eos_token_ids.clone(),
        batch_size: args.batch.max(1),
    };
    let config = ModelFeedbackConfig {
        model: args.model.clone(),
        shots: args.shots,
        params: SamplingParams {
            temperature: args.temperature,
            top_p: 1.0,
            top_k: 0,
            max_tokens: args.max_tokens,
        },
        seed: args.seed,
    };
    out.say(format!(
        "Writing feedback for {} failing programs with {} ...",
        failures.programs.len(),
        args.model
    ));
    model_feedback(&generator, &template, failures, &annotations, mbpp, &config)
}

pub fn run(args: FeedbackArgs, out: Output) -> Result<()> {
    let mbpp = Mbpp::resolve(args.mbpp.as_deref())?;
    let failures = read_failures(&args.results, &mbpp)?;
    let records = match args.from {
        Source::Execution => execution_feedback(&failures),
        Source::Model => from_model(&args, &failures, &mbpp, out)?,
    };
    write_annotations(&args.out, &records)?;
    if out.json {
        println!(
            "{}",
            serde_json::json!({"rows": failures.rows, "failing_programs": records.len(), "out": args.out})
        );
    } else {
        out.say(format!(
            "Wrote {} feedback for {} failing programs ({} rows read) to {}.",
            if args.from == Source::Model {
                "model"
            } else {
                "execution"
            },
            records.len(),
            failures.rows,
            args.out.display()
        ));
    }
    Ok(())
}
