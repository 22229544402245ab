//! `ilf run`: the whole ILF pipeline with the paper's baselines, resumable, ending in a report.

use crate::output::Output;
use crate::pipeline::{self, config::RunConfig, RunOptions};
use anyhow::Result;
use std::path::PathBuf;

/// Run the ILF pipeline (sample, evaluate, feedback, train the refiner, refine, select, train
/// and test every arm) into a run directory, and write report.md and report.html there. A rerun
/// with the same settings continues where an interrupted run stopped.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Built-in settings: `quick` (about an hour on 2 CPU cores), `paper` (the paper's
    /// protocol) or `tiny` (a tiny random model, for tests).
    #[arg(long, default_value = "quick", env = "ILF_PRESET")]
    preset: String,
    /// A TOML file whose fields override the preset's (any field, e.g. `[test_sample] n = 10`).
    #[arg(long, value_name = "FILE.toml")]
    config: Option<PathBuf>,
    /// The policy: a registry name, a .gguf file or a Hugging Face directory.
    #[arg(long, env = "ILF_MODEL")]
    model: Option<String>,
    /// The run directory (default: runs/<preset>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The run's seed; every random choice derives from it.
    #[arg(long)]
    seed: Option<u64>,
    /// The MBPP file (default: $ILF_MBPP, else $ILF_CACHE/mbpp.jsonl).
    #[arg(long, value_name = "PATH")]
    mbpp: Option<PathBuf>,
    /// The paper's human annotations (default: $ILF_ANNOTATIONS, else
    /// ../shared/data/surge_annotations.jsonl).
    #[arg(long, value_name = "PATH")]
    annotations: Option<PathBuf>,
    /// Take human feedback from the annotation app's store instead of the annotation file.
    #[arg(long, value_name = "PATH", conflicts_with = "annotations")]
    db: Option<PathBuf>,
}

pub fn run(args: RunArgs, out: Output) -> Result<()> {
    let mut flags = toml::Table::new();
    if let Some(model) = &args.model {
        flags.insert("model".into(), toml::Value::String(model.clone()));
    }
    if let Some(seed) = args.seed {
        let seed = i64::try_from(seed)
            .map_err(|_| anyhow::anyhow!("--seed {seed} is too large (at most {})", i64::MAX))?;
        flags.insert("seed".into(), toml::Value::Integer(seed));
    }
    let config = RunConfig::resolve(&args.preset, args.config.as_deref(), flags)?;
    let run_dir = args
        .out
        .unwrap_or_else(|| PathBuf::from("runs").join(&args.preset));
    let report = pipeline::run(
        &RunOptions {
            config,
            out: run_dir.clone(),
            mbpp: args.mbpp,
            annotations: args.annotations,
            db: args.db,
        },
        &out,
    )?;
    if out.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !out.quiet {
        println!("{}", report.terminal_table());
        println!(
            "report: {} and {}",
            run_dir.join("report.md").display(),
            run_dir.join("report.html").display()
        );
    }
    Ok(())
}
