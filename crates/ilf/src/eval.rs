//! `ilf eval`: score sampled programs (or MBPP's gold programs) against MBPP's tests in the
//! sandbox, append one result per program as it finishes, and summarise pass@k with CIs.
//!
//! Resuming: `DIR/eval-input.json` pins what is being evaluated (the input's sha256, the task
//! selection and the time limit). A rerun with the same input skips every program whose result
//! is already in `DIR/results.jsonl` (keyed by `input_index`, the program's position in the
//! input), so a killed run loses at most the programs in flight. At the end the results are
//! rewritten in input order, so the file does not depend on how the run was split.

use crate::output::Output;
use anyhow::{bail, Context, Result};
use ilf_data::{
    mbpp::Mbpp,
    metrics::{Bootstrap, Summary},
    records::{self, JsonlAppender, ResultRow, SampleRow},
    verdict::{ErrorInfo, ProgramOutcome, Status},
};
use ilf_sandbox::{Job, Pool, PoolConfig};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

/// Programs longer than this are not run: MBPP solutions are under 2 KB and a 1024-token
/// completion is under 8 KB, so anything this large is a runaway generation.
pub const MAX_PROGRAM_BYTES: usize = 64 * 1024;

/// The key under which each result records its position in the input.
const INDEX_KEY: &str = "input_index";

/// What to evaluate and how.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// A samples JSONL file; `None` evaluates MBPP's reference solutions.
    pub samples: Option<PathBuf>,
    /// Task ids for `--gold` (all 974 when `None`).
    pub gold_tasks: Option<Vec<u32>>,
    pub out: PathBuf,
    pub timeout: Duration,
    pub workers: usize,
    pub ks: Vec<usize>,
    pub mbpp: Option<PathBuf>,
    pub bootstrap: Bootstrap,
}

/// `DIR/eval-input.json`: what a results directory belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct EvalInput {
    input: String,
    sha256: String,
    tasks: Option<Vec<u32>>,
    timeout_s: f64,
}

/// `DIR/summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalSummary {
    pub input: String,
    #[serde(flatten)]
    pub metrics: Summary,
    pub timeout_s: f64,
    pub workers: usize,
    /// Programs run by this invocation (a resumed run counts only what it ran).
    pub ran_now: usize,
    /// Throughput of this invocation, programs per second of wall time.
    pub programs_per_s: Option<f64>,
    /// One line: which isolation was in force.
    pub isolation_summary: String,
    /// Mechanism by mechanism.
    pub isolation: Value,
}

/// One program to run.
struct Pending {
    /// Position in the input (sample record index, or index in the gold selection).
    index: usize,
    task_id: u32,
    job: Job,
    extra: Map<String, Value>,
}

/// Runs the evaluation and writes `results.jsonl` and `summary.json` under `opts.out`.
pub fn evaluate(opts: &EvalOptions, out: &Output) -> Result<EvalSummary> {
    if opts.ks.is_empty() || opts.ks.contains(&0) {
        bail!("--k needs positive values, e.g. --k 1,10");
    }
    let mbpp = Mbpp::resolve(opts.mbpp.as_deref())?;
    let (input, pending) = match &opts.samples {
        Some(path) => (
            EvalInput {
                input: path.display().to_string(),
                sha256: sha256_file(path)?,
                tasks: None,
                timeout_s: opts.timeout.as_secs_f64(),
            },
            programs_from_samples(path, &mbpp)?,
        ),
        None => (
            EvalInput {
                input: "gold".into(),
                sha256: sha256_file(mbpp.path())?,
                tasks: opts.gold_tasks.clone(),
                timeout_s: opts.timeout.as_secs_f64(),
            },
            gold_programs(&mbpp, opts.gold_tasks.as_deref())?,
        ),
    };
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create the output directory {}", opts.out.display()))?;
    pin_input(&opts.out, &input)?;

    let results_path = opts.out.join("results.jsonl");
    let done: HashSet<usize> = if results_path.exists() {
        let rows = records::read_jsonl_resumable::<ResultRow>(&results_path)?;
        rows.iter()
            .map(|row| result_index(row, &results_path))
            .collect::<Result<_>>()?
    } else {
        HashSet::new()
    };
    let todo: Vec<Pending> = pending
        .into_iter()
        .filter(|p| !done.contains(&p.index))
        .collect();
    if !done.is_empty() {
        out.say(format!(
            "resuming: {} results already in {}, {} to run",
            done.len(),
            results_path.display(),
            todo.len()
        ));
    }

    let workers = opts.workers.max(1);
    let pool = Pool::start(PoolConfig {
        workers,
        timeout: opts.timeout,
        ..PoolConfig::default()
    })?;
    let isolation_summary = pool.isolation().summary();
    out.say(format!("sandbox: {isolation_summary}"));

    let started = Instant::now();
    let ran_now = todo.len();
    run_all(&pool, todo, &results_path, workers, out)?;
    let elapsed = started.elapsed().as_secs_f64();

    let mut rows = records::read_jsonl_resumable::<ResultRow>(&results_path)?;
    let mut keyed = rows
        .drain(..)
        .map(|row| Ok((result_index(&row, &results_path)?, row)))
        .collect::<Result<Vec<_>>>()?;
    keyed.sort_by_key(|(index, _)| *index);
    keyed.dedup_by_key(|(index, _)| *index);
    let rows: Vec<ResultRow> = keyed.into_iter().map(|(_, row)| row).collect();
    records::write_jsonl(&results_path, &rows)?;

    let summary = EvalSummary {
        input: input.input,
        metrics: Summary::from_results(&rows, &opts.ks, &opts.bootstrap),
        timeout_s: opts.timeout.as_secs_f64(),
        workers,
        ran_now,
        programs_per_s: (ran_now > 0 && elapsed > 0.0).then(|| ran_now as f64 / elapsed),
        isolation_summary,
        isolation: serde_json::to_value(pool.isolation())?,
    };
    records::write_atomically(
        &opts.out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    Ok(summary)
}

/// The programs of a samples file, checked before anything runs: an unknown task id is an
/// error naming the line.
fn programs_from_samples(path: &Path, mbpp: &Mbpp) -> Result<Vec<Pending>> {
    let samples: Vec<SampleRow> = records::read_jsonl(path)?;
    if samples.is_empty() {
        bail!("{}: no samples in the file", path.display());
    }
    samples
        .into_iter()
        .enumerate()
        .map(|(index, sample)| {
            let Some(task) = mbpp.get(sample.task_id) else {
                bail!(
                    "{}: record {}: unknown task id {} (MBPP has tasks 1-974)",
                    path.display(),
                    index + 1,
                    sample.task_id
                );
            };
            let job = Job {
                program: sample.program_for(task),
                setup: task.test_setup_code.clone(),
                tests: task.test_list.clone(),
                timeout: None,
            };
            let mut extra = sample.extra;
            if let Some(completion) = sample.completion {
                extra.insert("completion".into(), Value::String(completion));
            }
            Ok(Pending {
                index,
                task_id: sample.task_id,
                job,
                extra,
            })
        })
        .collect()
}

/// MBPP's reference solutions, for the selected tasks or all of them.
fn gold_programs(mbpp: &Mbpp, tasks: Option<&[u32]>) -> Result<Vec<Pending>> {
    let ids: Vec<u32> = match tasks {
        Some(ids) => ids.to_vec(),
        None => mbpp.tasks().iter().map(|t| t.task_id).collect(),
    };
    ids.into_iter()
        .enumerate()
        .map(|(index, id)| {
            let task = mbpp
                .get(id)
                .with_context(|| format!("unknown task id {id} (MBPP has tasks 1-974)"))?;
            let mut extra = Map::new();
            extra.insert("source".into(), Value::from("gold"));
            Ok(Pending {
                index,
                task_id: id,
                job: Job {
                    program: task.code.clone(),
                    setup: task.test_setup_code.clone(),
                    tests: task.test_list.clone(),
                    timeout: None,
                },
                extra,
            })
        })
        .collect()
}

/// Writes `eval-input.json`, or checks that an existing one describes the same evaluation.
fn pin_input(dir: &Path, input: &EvalInput) -> Result<()> {
    let path = dir.join("eval-input.json");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let pinned: EvalInput = serde_json::from_str(&text)
            .with_context(|| format!("{} is not an eval-input record", path.display()))?;
        if &pinned != input {
            bail!(
                "{} holds results of a different evaluation ({} sha256 {}…, timeout {} s); \
                 use another --out directory or delete it",
                dir.display(),
                pinned.input,
                &pinned.sha256[..12.min(pinned.sha256.len())],
                pinned.timeout_s
            );
        }
        return Ok(());
    }
    records::write_atomically(&path, serde_json::to_string_pretty(input)?.as_bytes())?;
    Ok(())
}

fn result_index(row: &ResultRow, path: &Path) -> Result<usize> {
    row.extra
        .get(INDEX_KEY)
        .and_then(Value::as_u64)
        .map(|i| i as usize)
        .with_context(|| {
            format!(
                "{}: a result of task {} has no `{INDEX_KEY}`; it was not written by ilf eval",
                path.display(),
                row.task_id
            )
        })
}

/// Runs the pending programs on `workers` threads, appending each result as it completes.
fn run_all(
    pool: &Pool,
    todo: Vec<Pending>,
    results_path: &Path,
    workers: usize,
    out: &Output,
) -> Result<()> {
    let appender = Mutex::new(JsonlAppender::open(results_path)?);
    let bar = out.progress(todo.len() as u64, "eval");
    let next = AtomicUsize::new(0);
    let passed = AtomicUsize::new(0);
    let failure: Mutex<Option<ilf_data::DataError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                if failure.lock().expect("lock not poisoned").is_some() {
                    break;
                }
                let Some(item) = todo.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                let outcome = run_one(pool, item);
                if outcome.passed() {
                    passed.fetch_add(1, Ordering::Relaxed);
                }
                let mut extra = item.extra.clone();
                extra.insert(INDEX_KEY.into(), Value::from(item.index));
                let row = ResultRow::new(item.task_id, extra, item.job.program.clone(), outcome);
                if let Err(err) = appender.lock().expect("lock not poisoned").append(&row) {
                    *failure.lock().expect("lock not poisoned") = Some(err);
                    break;
                }
                bar.inc(1);
                bar.set_message(format!("{} pass", passed.load(Ordering::Relaxed)));
            });
        }
    });
    bar.finish_and_clear();
    if let Some(err) = failure.into_inner().expect("lock not poisoned") {
        return Err(
            anyhow::Error::new(err).context(format!("cannot append to {}", results_path.display()))
        );
    }
    appender.lock().expect("lock not poisoned").sync()?;
    Ok(())
}

/// Runs one program, or refuses it without running when it is over the size cap.
fn run_one(pool: &Pool, item: &Pending) -> ProgramOutcome {
    let size = item.job.program.len();
    if size > MAX_PROGRAM_BYTES {
        return ProgramOutcome {
            status: Status::Error,
            tests: Vec::new(),
            error: Some(ErrorInfo {
                kind: "ProgramTooLarge".into(),
                message: format!(
                    "the program is {size} bytes, over the {MAX_PROGRAM_BYTES}-byte cap"
                ),
                traceback: Vec::new(),
            }),
            detail: Some("not run: program over the size cap".into()),
            duration_s: 0.0,
        };
    }
    pool.run(&item.job)
}

fn sha256_file(path: &Path) -> Result<String> {
    ilf_data::fetch::sha256_file(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The human table printed at the end of `ilf eval`.
pub fn render_table(summary: &EvalSummary) -> String {
    let m = &summary.metrics;
    let pct = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{:.1}%", 100.0 * v));
    let ci = |i: &Option<ilf_data::metrics::Interval>| {
        i.as_ref().map_or(String::new(), |i| {
            format!("[{:.1}, {:.1}]", 100.0 * i.low, 100.0 * i.high)
        })
    };
    let mut s = format!(
        "{} programs over {} tasks ({})\n\n{:<12} {:>8}  {}\n",
        m.samples, m.tasks, summary.input, "metric", "value", "95% CI"
    );
    for p in &m.pass_at_k {
        s += &format!(
            "{:<12} {:>8}  {}\n",
            format!("pass@{}", p.k),
            pct(p.value),
            ci(&p.ci)
        );
    }
    s += &format!(
        "{:<12} {:>8}  {}\n\n",
        "1+ correct",
        pct(m.one_plus_correct),
        ci(&m.one_plus_correct_ci)
    );
    for (status, count) in &m.status_counts {
        s += &format!("{:<14} {count}\n", status.as_str());
    }
    for w in &m.warnings {
        s += &format!("warning: {w}\n");
    }
    if let Some(rate) = summary.programs_per_s {
        s += &format!(
            "\n{} programs run now at {rate:.0} programs/s, {} workers, {} s limit\n",
            summary.ran_now, summary.workers, summary.timeout_s
        );
    }
    s += &format!("sandbox: {}\n", summary.isolation_summary);
    s
}
