//! The worker pool: warm zygotes, one job at a time each, restarted when anything goes wrong.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::assertion::{self, Check, Expected};
use crate::cgroup::WorkerGroups;
use crate::isolation::{self, Capabilities, IsolationReport, ZygoteSetup};
use crate::literal::Value;
use crate::outcome::{self, Header, RawRun, RhsPlan, TestPlan};
use crate::python::{self, Interpreter};
use crate::{ErrorInfo, Job, PoolConfig, ProgramOutcome, SandboxError, Status};

const ZYGOTE: &str = include_str!("zygote.py");

/// What the trusted evaluator imports before evaluating an expected value that is not a literal.
const TRUSTED_PRELUDE: &str = "import sys, math, re, string, collections, itertools, functools, operator, heapq, bisect, cmath\n";

/// Largest program + setup + tests accepted, in bytes.
const MAX_JOB_BYTES: usize = 4 << 20;

/// How long a zygote may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Extra time the worker gets beyond the job's wall deadline before it is declared hung: the
/// zygote enforces the deadline itself, so this only fires when the machine is starved for
/// long enough that the zygote cannot run at all.
const WORKER_GRACE: Duration = Duration::from_secs(30);

static POOLS: AtomicUsize = AtomicUsize::new(0);

/// A pool of sandbox workers; `run` may be called from many threads at once.
pub struct Pool {
    cfg: PoolConfig,
    python: Interpreter,
    caps: Capabilities,
    id: String,
    idle: Mutex<Vec<Slot>>,
    freed: Condvar,
    trusted: Mutex<HashMap<(String, String), Option<Value>>>,
}

struct Slot {
    index: usize,
    generation: u64,
    worker: Option<Worker>,
}

impl Pool {
    /// Resolves the interpreter, probes isolation and starts `cfg.workers` zygotes.
    pub fn start(cfg: PoolConfig) -> Result<Pool, SandboxError> {
        let python = python::resolve(cfg.python.as_deref())?;
        let caps = isolation::probe(&cfg, &python);
        if cfg.require_full_isolation && !caps.report.complete() {
            return Err(SandboxError::Isolation {
                report: Box::new(caps.report.clone()),
            });
        }
        reap_stale(&caps);
        let id = format!(
            "{}-{}",
            std::process::id(),
            POOLS.fetch_add(1, Ordering::Relaxed)
        );
        let workers = cfg.workers.max(1);
        let pool = Pool {
            cfg,
            python,
            caps,
            id,
            idle: Mutex::new(Vec::new()),
            freed: Condvar::new(),
            trusted: Mutex::new(HashMap::new()),
        };
        let mut slots = Vec::with_capacity(workers);
        for index in 0..workers {
            let worker = Worker::spawn(&pool, index, 0)?;
            slots.push(Slot {
                index,
                generation: 0,
                worker: Some(worker),
            });
        }
        *pool.idle.lock().unwrap_or_else(|e| e.into_inner()) = slots;
        Ok(pool)
    }

    /// Which isolation is in force.
    pub fn isolation(&self) -> &IsolationReport {
        &self.caps.report
    }

    /// The pool's configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.cfg
    }

    /// Runs one job to its verdict. Blocks while all workers are busy.
    pub fn run(&self, job: &Job) -> ProgramOutcome {
        let started = Instant::now();
        let size =
            job.program.len() + job.setup.len() + job.tests.iter().map(String::len).sum::<usize>();
        if size > MAX_JOB_BYTES {
            return outcome::refused(
                job,
                format!("the job is {size} bytes; the sandbox accepts at most {MAX_JOB_BYTES}"),
            );
        }
        let cpu_s = cpu_limit(job.timeout.unwrap_or(self.cfg.timeout));
        let mut exprs: Vec<String> = Vec::new();
        let mut plans: Vec<TestPlan> = Vec::with_capacity(job.tests.len());
        for test in &job.tests {
            let plan = match assertion::plan(test) {
                Err(e) => TestPlan::Invalid(e.to_string()),
                Ok(Check::Truth { expr, negate }) => {
                    exprs.push(expr);
                    TestPlan::Truth {
                        index: exprs.len() - 1,
                        negate,
                    }
                }
                Ok(Check::Equals { lhs, rhs }) => {
                    exprs.push(lhs);
                    let lhs = exprs.len() - 1;
                    let rhs = match rhs {
                        Expected::Literal(v) => RhsPlan::Trusted(v),
                        Expected::Expression(e) => {
                            match self.trusted_value(&job.setup, &e, cpu_s) {
                                Some(v) => RhsPlan::Trusted(v),
                                None => {
                                    exprs.push(e);
                                    RhsPlan::InJob(exprs.len() - 1)
                                }
                            }
                        }
                    };
                    TestPlan::Equals { lhs, rhs }
                }
            };
            plans.push(plan);
        }
        match self.execute(&job.program, &job.setup, &exprs, cpu_s) {
            Ok(raw) => outcome::assemble(job, &plans, &raw, cpu_s, &self.cfg),
            Err(detail) => outcome::worker_failure(job, detail, started.elapsed().as_secs_f64()),
        }
    }

    /// Evaluates a non-literal expected value without the program; `None` when it cannot.
    fn trusted_value(&self, setup: &str, expr: &str, cpu_s: u64) -> Option<Value> {
        let key = (setup.to_string(), expr.to_string());
        if let Some(v) = self
            .trusted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return v.clone();
        }
        let exprs = [expr.to_string()];
        let mut value = self
            .execute(TRUSTED_PRELUDE, setup, &exprs, cpu_s)
            .ok()
            .and_then(|raw| outcome::single_value(&raw));
        if value.is_none() && !setup.is_empty() {
            // Setup code often builds objects from the program's classes; without it, try bare.
            value = self
                .execute(TRUSTED_PRELUDE, "", &exprs, cpu_s)
                .ok()
                .and_then(|raw| outcome::single_value(&raw));
        }
        self.trusted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, value.clone());
        value
    }

    /// Sends one request to a free worker; restarts the worker if it misbehaves.
    fn execute(
        &self,
        program: &str,
        setup: &str,
        exprs: &[String],
        cpu_s: u64,
    ) -> Result<RawRun, String> {
        let mut slot = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(slot) = idle.pop() {
                    break slot;
                }
                idle = self.freed.wait(idle).unwrap_or_else(|e| e.into_inner());
            }
        };
        let wall_s = cpu_s as f64 * self.cfg.wall_factor + 1.0;
        let request = json!({
            "program": program,
            "setup": setup,
            "exprs": exprs,
            "cpu_s": cpu_s,
            "wall_s": wall_s,
            "memory_bytes": self.cfg.memory_bytes,
            "file_bytes": self.cfg.file_bytes,
            "output_bytes": self.cfg.output_bytes,
            "pid_namespace": self.caps.pidns,
            "drop_caps": self.caps.root,
        });
        let deadline = Instant::now() + Duration::from_secs_f64(wall_s) + WORKER_GRACE;
        let mut result = Err(String::new());
        for attempt in 0..2 {
            if slot.worker.is_none() {
                slot.generation += 1;
                match Worker::spawn(self, slot.index, slot.generation) {
                    Ok(w) => slot.worker = Some(w),
                    Err(e) => {
                        result = Err(format!("could not restart the worker: {e}"));
                        break;
                    }
                }
            }
            let worker = slot.worker.as_mut().expect("worker was just started");
            match worker.request(&request, deadline) {
                Ok(raw) => {
                    result = Ok(raw);
                    break;
                }
                Err(RequestError::Hung(e)) => {
                    // The job's time is spent; do not run it again.
                    result = Err(format!(
                        "the worker stopped answering ({e}); it was restarted"
                    ));
                    slot.worker = None;
                    break;
                }
                Err(RequestError::Stale(e)) if attempt == 0 => {
                    // The zygote died while idle: nothing of this job ran, so a fresh one may run it.
                    result = Err(e);
                    slot.worker = None;
                }
                Err(RequestError::Stale(e)) | Err(RequestError::Broken(e)) => {
                    let stderr = worker.stderr_tail();
                    result = Err(format!(
                        "the worker broke ({e}){}; it was restarted",
                        if stderr.is_empty() {
                            String::new()
                        } else {
                            format!(": {stderr}")
                        }
                    ));
                    slot.worker = None;
                    break;
                }
            }
        }
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(slot);
        self.freed.notify_one();
        result
    }
}

/// Removes the temporary directories and cgroups of pools whose process has exited.
fn reap_stale(caps: &Capabilities) {
    let groups: Vec<&std::path::Path> = [&caps.cgroup_memory, &caps.cgroup_pids, &caps.cgroup_cpu]
        .into_iter()
        .flatten()
        .map(|p| p.as_path())
        .collect();
    crate::cgroup::reap_stale(&groups);
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix("ilf-sandbox-") {
            if crate::cgroup::owner_is_gone(rest) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn cpu_limit(timeout: Duration) -> u64 {
    (timeout.as_secs_f64().ceil() as u64).max(1)
}

enum RequestError {
    /// The request could not be written: the zygote was already gone.
    Stale(String),
    Hung(String),
    Broken(String),
}

struct Worker {
    child: Child,
    /// `None` once closed, which tells the zygote to exit.
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    buffer: Vec<u8>,
    stderr: Arc<Mutex<Vec<u8>>>,
    groups: Option<WorkerGroups>,
    tmp: PathBuf,
}

impl Worker {
    fn spawn(pool: &Pool, index: usize, generation: u64) -> Result<Worker, SandboxError> {
        let fail = |message: String| SandboxError::Worker {
            worker: index,
            message,
        };
        let tmp =
            std::env::temp_dir().join(format!("ilf-sandbox-{}-w{index}-{generation}", pool.id));
        std::fs::create_dir_all(&tmp)
            .map_err(|e| fail(format!("cannot create {}: {e}", tmp.display())))?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700));
        }
        let caps = &pool.caps;
        let groups = if caps.cgroup_memory.is_some()
            || caps.cgroup_pids.is_some()
            || caps.cgroup_cpu.is_some()
        {
            Some(
                WorkerGroups::create(
                    pool.caps.cgroup_memory.as_deref(),
                    pool.caps.cgroup_pids.as_deref(),
                    pool.caps.cgroup_cpu.as_deref(),
                    &format!("{}-w{index}-{generation}", pool.id),
                    isolation::cgroup_memory_limit(&pool.cfg),
                    pool.cfg.max_tasks,
                )
                .map_err(fail)?,
            )
        } else {
            None
        };
        let procs = groups
            .as_ref()
            .map(WorkerGroups::procs_files)
            .unwrap_or_default();
        let setup = ZygoteSetup::new(&pool.caps, &pool.python, &tmp, &procs).map_err(fail)?;
        let cfg = json!({
            "tmp": tmp,
            "pid_namespace": pool.caps.pidns,
            "drop_caps": pool.caps.root,
            "max_items": pool.cfg.max_items,
            "output_bytes": pool.cfg.output_bytes,
        });
        let mut cmd = Command::new(&pool.python.executable);
        cmd.args(["-S", "-s", "-B", "-c", ZYGOTE, &cfg.to_string()])
            .env_clear()
            // The whole environment a job sees: no secret of ours reaches it.
            .envs([
                ("PYTHONHASHSEED", "0"),
                ("PYTHONDONTWRITEBYTECODE", "1"),
                ("PYTHONIOENCODING", "utf-8"),
                ("LC_ALL", "C.UTF-8"),
                ("PATH", "/usr/bin:/bin"),
            ])
            .env("TMPDIR", &tmp)
            .env("HOME", &tmp)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: `apply` only makes system calls on data prepared before the fork.
        unsafe {
            cmd.pre_exec(move || setup.apply());
        }
        let mut child = cmd.spawn().map_err(|e| {
            fail(format!(
                "cannot start {} with its isolation: {e}",
                pool.python.executable.display()
            ))
        })?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut tail = sink.lock().unwrap_or_else(|e| e.into_inner());
                tail.extend_from_slice(&chunk[..n]);
                let excess = tail.len().saturating_sub(4096);
                tail.drain(..excess);
            }
        });
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut worker = Worker {
            child,
            stdin,
            stdout,
            buffer: Vec::new(),
            stderr,
            groups,
            tmp,
        };
        match worker.read_line(Instant::now() + START_TIMEOUT) {
            Ok(line) if line == b"ready" => Ok(worker),
            Ok(line) => Err(fail(format!(
                "the zygote said {:?} instead of ready",
                String::from_utf8_lossy(&line)
            ))),
            Err(e) => {
                // Give the stderr thread a moment to collect the zygote's last words.
                std::thread::sleep(Duration::from_millis(50));
                Err(fail(format!(
                    "the zygote did not start ({e}): {}",
                    worker.stderr_tail()
                )))
            }
        }
    }

    fn stderr_tail(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|e| e.into_inner()))
            .trim()
            .to_string()
    }

    fn request(
        &mut self,
        request: &serde_json::Value,
        deadline: Instant,
    ) -> Result<RawRun, RequestError> {
        let body = request.to_string();
        let oom_before = self
            .groups
            .as_ref()
            .map(|g| (g.oom_kills(), g.memory_failures()));
        let mut message = format!("{}\n", body.len()).into_bytes();
        message.extend_from_slice(body.as_bytes());
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| RequestError::Stale("stdin is closed".into()))?;
        stdin
            .write_all(&message)
            .and_then(|_| stdin.flush())
            .map_err(|e| RequestError::Stale(format!("writing the request failed: {e}")))?;
        let line = self.read_line(deadline).map_err(|e| match e.kind() {
            io::ErrorKind::TimedOut => RequestError::Hung(e.to_string()),
            _ => RequestError::Broken(e.to_string()),
        })?;
        let header: Header = serde_json::from_slice(&line)
            .map_err(|e| RequestError::Broken(format!("unreadable reply header: {e}")))?;
        let records = self
            .read_exact(header.records_len, deadline)
            .map_err(|e| RequestError::Broken(e.to_string()))?;
        let oom = match (oom_before, &self.groups) {
            (Some((kills, fails)), Some(g)) => g.oom_kills() > kills || g.memory_failures() > fails,
            _ => false,
        };
        Ok(RawRun {
            header,
            records,
            oom,
        })
    }

    /// Waits for readable data on the zygote's stdout until `deadline`.
    fn fill(&mut self, deadline: Instant) -> io::Result<()> {
        let now = Instant::now();
        if now >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no answer before the deadline",
            ));
        }
        let ms = (deadline - now).as_millis().min(i32::MAX as u128) as i32;
        let mut pfd = libc::pollfd {
            fd: self.stdout.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let r = unsafe { libc::poll(&mut pfd, 1, ms.max(1)) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        if r == 0 {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no answer before the deadline",
            ));
        }
        let mut chunk = [0u8; 65536];
        let n = self.stdout.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the zygote exited",
            ));
        }
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn read_line(&mut self, deadline: Instant) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buffer.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buffer.drain(..=i).collect();
                line.pop();
                return Ok(line);
            }
            self.fill(deadline)?;
        }
    }

    fn read_exact(&mut self, n: usize, deadline: Instant) -> io::Result<Vec<u8>> {
        while self.buffer.len() < n {
            self.fill(deadline)?;
        }
        Ok(self.buffer.drain(..n).collect())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing stdin ends an idle zygote cleanly (its CPU time then shows in our rusage);
        // one that does not exit promptly is killed.
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(2);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(g) = &self.groups {
            g.kill_all();
        }
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// What the pool answers when it cannot run a job at all.
pub(crate) fn error_info(kind: &str, message: String) -> ErrorInfo {
    ErrorInfo {
        kind: kind.into(),
        message,
        traceback: Vec::new(),
    }
}

pub(crate) fn not_run(job: &Job) -> Vec<crate::TestOutcome> {
    job.tests
        .iter()
        .enumerate()
        .map(|(index, test)| crate::TestOutcome {
            index,
            test: test.clone(),
            status: Status::NotRun,
            expected: None,
            got: None,
            error: None,
        })
        .collect()
}
