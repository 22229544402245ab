//! Runs untrusted Python against tests in an isolated warm worker pool.
//!
//! A [`Job`] is a program, optional setup code and a list of `assert` statements. [`Pool::run`]
//! returns a [`ProgramOutcome`] with a verdict per test. The sandbox knows nothing about MBPP.
//!
//! # Design
//! Each worker is one Python interpreter (the *zygote*, `src/zygote.py`) started once, already
//! inside its namespaces, Landlock domain and seccomp filter ([`isolation`]); per job its monitor
//! (pid 1 of the worker's pid namespace) forks once, the child drops capabilities, sets rlimits and
//! runs the program, and afterwards the monitor kills whatever the job left. No interpreter starts
//! per job, which is what makes the pool fast.
//!
//! # Verdict integrity
//! The job never sees an expected value ([`assertion`]): it evaluates only the program-dependent
//! side of each test and reports a type-restricted literal, which the trusted side parses and
//! compares itself ([`literal`]). Early exits leave missing records and become `error`; forged
//! records cannot carry a right value the program did not compute; records out of order or twice
//! mark the run as tampered (`error`).
//!
//! # Time limits
//! [`PoolConfig::timeout`] (default 3 s, like the paper) is a limit on **CPU time** of the job
//! process, enforced by `RLIMIT_CPU` (whole seconds, rounded up), so a loaded machine does not turn a
//! passing program into a timeout: CPU time does not grow when the job waits for a core. Programs
//! that do not use CPU (sleeps, blocking reads, busy children) are stopped by a **wall deadline** of
//! `wall_factor × limit + 1 s` (default 10× → 31 s at 3 s), measured from the job's own fork (not from
//! queueing) and enforced from outside the job with SIGKILL of everything it spawned. The factor is
//! generous on purpose: a CPU-bound program just under its CPU limit keeps its verdict until the
//! machine runs about ten runnable processes per core (task 123, 1.75 s of CPU here, took 7.4 s of
//! wall time at a load average of 10 on 2 cores). Both limits yield `timeout`, with a detail saying
//! which was hit. The reported `duration_s` is the job's wall time.
//!
//! # Output
//! The program's stdout and stderr go to `/dev/null` (they never decide a verdict); the channel that
//! carries results is capped at [`PoolConfig::output_bytes`]. Stdin is `/dev/null`.

pub mod assertion;
mod cgroup;
pub mod isolation;
pub mod literal;
mod outcome;
mod pool;
pub mod python;

use std::path::PathBuf;
use std::time::Duration;

pub use ilf_data::verdict::{ErrorInfo, ProgramOutcome, Status, TestOutcome};
pub use isolation::{IsolationReport, Mechanism};
pub use pool::Pool;

/// One program to run against its tests.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Job {
    pub program: String,
    /// Code run after the program and before the tests (MBPP's `test_setup_code`).
    #[serde(default)]
    pub setup: String,
    /// Python `assert` statements.
    pub tests: Vec<String>,
    /// CPU-time limit for this job; `None` uses the pool's.
    #[serde(default)]
    pub timeout: Option<Duration>,
}

/// How the pool runs jobs.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Jobs that may run at once (one zygote each).
    pub workers: usize,
    /// CPU-time limit per program (see the crate documentation for the semantics).
    pub timeout: Duration,
    /// The wall deadline is `wall_factor × ceil(timeout) + 1 s`.
    pub wall_factor: f64,
    /// Address-space limit per process of the job; the worker's cgroup allows twice this in all.
    pub memory_bytes: u64,
    /// Cap on the result channel (what the job reports back).
    pub output_bytes: usize,
    /// Largest file the job may write.
    pub file_bytes: u64,
    /// Tasks (processes and threads) per worker, zygote included.
    pub max_tasks: u64,
    /// Most values (container elements, plus string length / 16) one result may hold.
    pub max_items: usize,
    /// The interpreter; `None` resolves `$ILF_PYTHON`, then `python3` (once).
    pub python: Option<PathBuf>,
    /// Refuse to start unless every isolation mechanism is in force.
    pub require_full_isolation: bool,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            workers: 2,
            timeout: Duration::from_secs(3),
            wall_factor: 10.0,
            memory_bytes: 1 << 30,
            output_bytes: 1 << 20,
            file_bytes: 16 << 20,
            max_tasks: 64,
            max_items: 1_000_000,
            python: None,
            require_full_isolation: false,
        }
    }
}

/// Why the pool could not start or keep a worker.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("python interpreter: {message}")]
    Python { message: String },
    #[error("sandbox worker {worker}: {message}")]
    Worker { worker: usize, message: String },
    #[error("isolation incomplete and full isolation was required:\n{report}")]
    Isolation { report: Box<IsolationReport> },
}

/// Probes each isolation mechanism (for `ilf sandbox check`).
///
/// When no interpreter can be found, the report says so and marks everything off.
pub fn check(cfg: &PoolConfig) -> IsolationReport {
    match python::resolve(cfg.python.as_deref()) {
        Ok(python) => isolation::probe(cfg, &python).report,
        Err(e) => IsolationReport {
            python: e.to_string(),
            mechanisms: vec![Mechanism {
                name: "python interpreter".into(),
                guards: "everything: no job can run".into(),
                in_force: false,
                detail: e.to_string(),
            }],
        },
    }
}
