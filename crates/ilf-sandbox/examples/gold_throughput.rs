//! Runs MBPP's 974 gold programs through the sandbox and prints programs/s and the pass count.
//!
//! `cargo run --release -p ilf-sandbox --example gold_throughput -- [MBPP.jsonl] [--timeout S] [--workers N]`
//! (default file: `$ILF_MBPP`, else /work/shared/data/mbpp.jsonl).

use std::io::BufRead;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ilf_sandbox::{Job, Pool, PoolConfig, Status};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut path =
        std::env::var("ILF_MBPP").unwrap_or_else(|_| "/work/shared/data/mbpp.jsonl".into());
    let mut cfg = PoolConfig::default();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--timeout" => {
                cfg.timeout =
                    Duration::from_secs_f64(args.next().ok_or("--timeout needs seconds")?.parse()?)
            }
            "--workers" => cfg.workers = args.next().ok_or("--workers needs a count")?.parse()?,
            other => path = other.to_string(),
        }
    }
    let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    let mut tasks: Vec<(u64, Job)> = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let row: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| format!("{path}:{}: {e}", n + 1))?;
        let text = |k: &str| {
            row[k]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{path}:{}: no string `{k}`", n + 1))
        };
        let tests = row["test_list"]
            .as_array()
            .ok_or_else(|| format!("{path}:{}: no test_list", n + 1))?;
        tasks.push((
            row["task_id"].as_u64().unwrap_or(0),
            Job {
                program: text("code")?,
                setup: text("test_setup_code")?,
                tests: tests
                    .iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect(),
                timeout: None,
            },
        ));
    }
    let (self_before, children_before) = cpu_seconds();
    let started = Instant::now();
    let pool = Pool::start(cfg.clone())?;
    let start_s = started.elapsed().as_secs_f64();
    eprintln!("{}", pool.isolation());
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let durations = Mutex::new(Vec::new());
    let passed = AtomicUsize::new(0);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..cfg.workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((id, job)) = tasks.get(i) else { break };
                let out = pool.run(job);
                durations.lock().unwrap().push((out.duration_s, *id));
                if out.status == Status::Passed {
                    passed.fetch_add(1, Ordering::Relaxed);
                } else {
                    failures.lock().unwrap().push((*id, out));
                }
            });
        }
    });
    let secs = t0.elapsed().as_secs_f64();
    // Dropping the pool ends the zygotes cleanly, so their CPU time (and their jobs') is ours.
    drop(pool);
    let (self_after, children_after) = cpu_seconds();
    let (rust_cpu, python_cpu) = (self_after - self_before, children_after - children_before);
    let cpu = rust_cpu + python_cpu;
    let mut durations = durations.into_inner()?;
    durations.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut failures = failures.into_inner()?;
    failures.sort_by_key(|(id, _)| *id);
    for (id, out) in &failures {
        println!(
            "task {id}: {} — {}",
            out.status,
            serde_json::to_string(out)?
        );
    }
    let slowest: Vec<String> = durations
        .iter()
        .take(3)
        .map(|(d, id)| format!("task {id} {d:.2} s"))
        .collect();
    println!(
        "{} programs, {} passed, {:.1} s, {:.0} programs/s with {} workers at {} s (pool start {:.2} s)",
        tasks.len(),
        passed.load(Ordering::Relaxed),
        secs,
        tasks.len() as f64 / secs,
        cfg.workers,
        cfg.timeout.as_secs_f64(),
        start_s
    );
    println!(
        "CPU: {cpu:.2} s in all ({rust_cpu:.2} s here, {python_cpu:.2} s zygotes and jobs) = {:.0} programs per CPU-second; slowest: {}",
        tasks.len() as f64 / cpu,
        slowest.join(", ")
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average during the run: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(())
}

/// User + system CPU time of this process, and of its reaped descendants.
fn cpu_seconds() -> (f64, f64) {
    let of = |who| {
        // SAFETY: getrusage fills the struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut u) };
        [u.ru_utime, u.ru_stime]
            .iter()
            .map(|t| t.tv_sec as f64 + t.tv_usec as f64 / 1e6)
            .sum::<f64>()
    };
    (of(libc::RUSAGE_SELF), of(libc::RUSAGE_CHILDREN))
}
