//! `ilf eval`: run samples (or MBPP's gold programs) against MBPP's tests in the sandbox.

use crate::{
    eval::{evaluate, render_table, EvalOptions},
    output::Output,
};
use anyhow::{bail, Result};
use ilf_data::{
    metrics::Bootstrap,
    split::{parse_task_ids, Split},
};
use std::{path::PathBuf, time::Duration};

/// Score programs against MBPP's tests, safely: writes DIR/results.jsonl and DIR/summary.json.
#[derive(clap::Args)]
pub struct EvalArgs {
    /// Samples JSONL: rows `{"task_id": 11, "completion": "..."}` (text after the paper prompt)
    /// or `{"task_id": 11, "program": "..."}`; other fields are copied to the results.
    #[arg(value_name = "SAMPLES.jsonl", required_unless_present = "gold")]
    samples: Option<PathBuf>,
    /// Evaluate MBPP's reference solutions instead of samples.
    #[arg(long, conflicts_with = "samples")]
    gold: bool,
    /// With --gold: these task ids only, e.g. `11-110,123`.
    #[arg(long, value_name = "IDS", requires = "gold", conflicts_with = "split")]
    tasks: Option<String>,
    /// With --gold: one split (test, refine, train, all, mbpp-test, ...).
    #[arg(long, value_name = "NAME", requires = "gold")]
    split: Option<Split>,
    /// Output directory; an interrupted evaluation resumes there.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// CPU-time limit per program, seconds (the paper's 3 s).
    #[arg(long, default_value_t = 3.0, env = "ILF_TIMEOUT")]
    timeout: f64,
    /// Programs run at once.
    #[arg(long, default_value_t = default_workers(), env = "ILF_WORKERS")]
    workers: usize,
    /// k values for pass@k (each needs at least k samples per task).
    #[arg(long, value_delimiter = ',', default_value = "1,10")]
    k: Vec<usize>,
    /// The MBPP file (default: $ILF_MBPP, else $ILF_CACHE/mbpp.jsonl).
    #[arg(long, value_name = "PATH")]
    mbpp: Option<PathBuf>,
    /// Seed of the bootstrap confidence intervals.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

pub fn run(args: EvalArgs, out: Output) -> Result<()> {
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        bail!("--timeout must be a positive number of seconds");
    }
    let gold_tasks = match (&args.tasks, &args.split) {
        (Some(spec), _) => Some(parse_task_ids(spec)?),
        (None, Some(split)) => Some(split.ids().collect()),
        (None, None) => None,
    };
    // Without --gold, k defaults must not demand more samples than a greedy file has: the
    // summary names the tasks left out of a pass@k rather than failing.
    let opts = EvalOptions {
        samples: args.samples,
        gold_tasks,
        out: args.out,
        timeout: Duration::from_secs_f64(args.timeout),
        workers: args.workers,
        ks: if args.gold { vec![1] } else { args.k },
        mbpp: args.mbpp,
        bootstrap: Bootstrap {
            seed: args.seed,
            ..Bootstrap::default()
        },
    };
    let summary = evaluate(&opts, &out)?;
    if out.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else if !out.quiet {
        print!("{}", render_table(&summary));
    }
    Ok(())
}
