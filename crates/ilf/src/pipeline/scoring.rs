//! Running a stage's samples through `ilf eval` (sandboxed, resumable) and keeping the numbers.

use super::config::RunConfig;
use crate::eval::{evaluate, EvalOptions};
use crate::output::Output;
use anyhow::Result;
use ilf_data::metrics::{Bootstrap, Summary};
use ilf_data::records::ResultRow;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What an evaluation stage records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scored {
    pub metrics: Summary,
    pub programs_per_s: Option<f64>,
}

/// The pass@k values an evaluation with `n` samples per task can estimate.
pub fn ks(config: &RunConfig, n: usize) -> Vec<usize> {
    let ks: Vec<usize> = config.eval.ks.iter().copied().filter(|&k| k <= n).collect();
    if ks.is_empty() {
        vec![1]
    } else {
        ks
    }
}

/// The bootstrap every interval of a run uses: the same seed for every arm, so intervals are
/// drawn over the same task resamples.
pub fn bootstrap(config: &RunConfig) -> Bootstrap {
    Bootstrap {
        resamples: config.eval.bootstrap_resamples,
        seed: config.seed,
        confidence: 0.95,
    }
}

/// Evaluates `samples` into `dir` (`results.jsonl`, `summary.json`); an empty samples file
/// scores as no tasks without starting the sandbox.
pub fn score(
    config: &RunConfig,
    mbpp: Option<&Path>,
    samples: &Path,
    n: usize,
    dir: &Path,
    out: &Output,
) -> Result<(Vec<PathBuf>, Scored)> {
    let ks = ks(config, n);
    let empty = std::fs::metadata(samples).map_or(true, |m| m.len() == 0);
    if empty {
        std::fs::create_dir_all(dir)?;
        let results = dir.join("results.jsonl");
        ilf_data::records::write_jsonl::<ResultRow>(&results, &[])?;
        let metrics = Summary::from_results(&[], &ks, &bootstrap(config));
        return Ok((
            vec![results],
            Scored {
                metrics,
                programs_per_s: None,
            },
        ));
    }
    let summary = evaluate(
        &EvalOptions {
            samples: Some(samples.to_path_buf()),
            gold_tasks: None,
            out: dir.to_path_buf(),
            timeout: Duration::from_secs_f64(config.eval.timeout_s),
            workers: config.eval.workers,
            ks,
            mbpp: mbpp.map(Path::to_path_buf),
            bootstrap: bootstrap(config),
        },
        out,
    )?;
    Ok((
        vec![dir.join("results.jsonl"), dir.join("summary.json")],
        Scored {
            metrics: summary.metrics,
            programs_per_s: summary.programs_per_s,
        },
    ))
}
