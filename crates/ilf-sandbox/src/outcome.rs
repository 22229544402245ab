//! Turning what a job reported (its records and how its process ended) into a verdict.
//!
//! Everything here reads untrusted bytes: malformed records, records out of order or repeated,
//! values too deep or too large all end in a verdict, never in a panic.

use serde::Deserialize;

use crate::literal::{self, Value};
use crate::pool::{error_info, not_run};
use crate::{ErrorInfo, Job, PoolConfig, ProgramOutcome, Status};

/// Longest `expected`/`got` representation kept.
const REPR_LIMIT: usize = 2000;

/// The monitor's report on how the job ended (written by trusted code in the zygote).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Header {
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub signal: Option<i32>,
    #[serde(default)]
    pub cpu_s: f64,
    #[serde(default)]
    pub wall_s: f64,
    #[serde(default)]
    pub killed: Option<String>,
    #[serde(default)]
    pub overflow: bool,
    #[serde(default)]
    pub records_len: usize,
}

/// One job's raw answer.
pub(crate) struct RawRun {
    pub header: Header,
    pub records: Vec<u8>,
    /// The worker's memory cgroup refused memory or OOM-killed during the job.
    pub oom: bool,
}

/// A test's status, expected and got representations, and exception.
type TestVerdict = (Status, Option<String>, Option<String>, Option<ErrorInfo>);

/// How the trusted side decides one test.
pub(crate) enum TestPlan {
    Invalid(String),
    Truth { index: usize, negate: bool },
    Equals { lhs: usize, rhs: RhsPlan },
}

pub(crate) enum RhsPlan {
    Trusted(Value),
    /// Computed by the job as expression `usize` (the residual-risk path, see `assertion`).
    InJob(usize),
}

/// What the job reported for one expression.
#[derive(Debug, Clone)]
enum Reported {
    Value(Value),
    Raised(ErrorInfo),
    Unserializable(String),
}

#[derive(Debug, Default)]
struct Records {
    syntax: Option<ErrorInfo>,
    setup_syntax: Option<ErrorInfo>,
    program_error: Option<ErrorInfo>,
    setup_error: Option<ErrorInfo>,
    values: Vec<Reported>,
    done: bool,
    tampered: Option<String>,
}

fn parse_records(bytes: &[u8], expected_exprs: usize) -> Records {
    let mut r = Records::default();
    let text = String::from_utf8_lossy(bytes);
    for (n, line) in text.split_terminator('\n').enumerate() {
        if r.done {
            r.tampered = Some(format!("record {} came after the end-of-run record", n + 1));
            break;
        }
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        let program_level = r.syntax.is_some()
            || r.setup_syntax.is_some()
            || r.program_error.is_some()
            || r.setup_error.is_some();
        let err = |what: &str| Some(format!("record {} is {what}", n + 1));
        match tag {
            "S" | "P" | "U" | "T" if n == 0 => match serde_json::from_str::<ErrorInfo>(rest) {
                Ok(info) => match tag {
                    "S" => r.syntax = Some(info),
                    "P" => r.program_error = Some(info),
                    "T" => r.setup_syntax = Some(info),
                    _ => r.setup_error = Some(info),
                },
                Err(_) => r.tampered = err("a malformed error record"),
            },
            "V" | "X" | "N" if !program_level => {
                let (index, payload) = rest.split_once(' ').unwrap_or((rest, ""));
                if index.parse::<usize>().ok() != Some(r.values.len())
                    || r.values.len() >= expected_exprs
                {
                    r.tampered = err("out of order");
                } else {
                    let reported = match tag {
                        "V" => literal::parse(payload).map(Reported::Value).map_err(|_| ()),
                        "X" => serde_json::from_str::<ErrorInfo>(payload)
                            .map(Reported::Raised)
                            .map_err(|_| ()),
                        _ => serde_json::from_str::<serde_json::Value>(payload)
                            .ok()
                            .and_then(|v| {
                                v.get("reason").and_then(|r| r.as_str()).map(str::to_string)
                            })
                            .map(Reported::Unserializable)
                            .ok_or(()),
                    };
                    match reported {
                        Ok(v) => r.values.push(v),
                        Err(()) => r.tampered = err("malformed"),
                    }
                }
            }
            "D" if rest.is_empty() && !program_level && r.values.len() == expected_exprs => {
                r.done = true
            }
            _ => r.tampered = err("unexpected"),
        }
        if r.tampered.is_some() {
            break;
        }
    }
    r
}

/// The single value of a one-expression run (the trusted evaluator's answer).
pub(crate) fn single_value(raw: &RawRun) -> Option<Value> {
    let r = parse_records(&raw.records, 1);
    match (r.done, r.tampered, r.values.into_iter().next()) {
        (true, None, Some(Reported::Value(v))) => Some(v),
        _ => None,
    }
}

/// How the job's process ended, when that (and not a test) decides the verdict.
struct Ending {
    status: Status,
    detail: String,
}

fn ending(raw: &RawRun, records: &Records, cpu_s: u64, cfg: &PoolConfig) -> Option<Ending> {
    let h = &raw.header;
    let e = |status, detail: String| Some(Ending { status, detail });
    if h.overflow {
        return e(
            Status::Error,
            format!(
                "the job wrote more than {} bytes to its result channel",
                cfg.output_bytes
            ),
        );
    }
    if h.killed.as_deref() == Some("wall") {
        return e(
            Status::Timeout,
            format!(
                "wall deadline of {:.1} s reached ({:.2} s of CPU time used)",
                h.wall_s, h.cpu_s
            ),
        );
    }
    match h.signal {
        Some(libc::SIGXCPU) => {
            return e(
                Status::Timeout,
                format!("CPU time limit of {cpu_s} s reached"),
            )
        }
        Some(libc::SIGKILL) if raw.oom => {
            return e(
                Status::OutOfMemory,
                format!(
                    "killed at the memory cap of {} MiB",
                    crate::isolation::cgroup_memory_limit(cfg) >> 20
                ),
            )
        }
        // A job that ignores SIGXCPU gets SIGKILL from RLIMIT_CPU's hard limit a second later. The
        // CPU time that wait4 reports for it is tick-sampled and was seen 23% low under load, so
        // the test is loose; the only other SIGKILLs (OOM, handled above, or the job killing its
        // own process) are not passes either.
        Some(libc::SIGKILL) if h.cpu_s >= 0.5 * cpu_s as f64 => {
            return e(
                Status::Timeout,
                format!("CPU time limit of {cpu_s} s reached"),
            )
        }
        Some(sig) => {
            return e(
                Status::Crashed,
                format!(
                    "killed by {} after {:.2} s of CPU time",
                    signal_name(sig),
                    h.cpu_s
                ),
            )
        }
        None => {}
    }
    if let Some(why) = &records.tampered {
        return e(
            Status::Error,
            format!("the result channel was tampered with ({why})"),
        );
    }
    if !records.done {
        let program_level = records.syntax.is_some()
            || records.setup_syntax.is_some()
            || records.program_error.is_some()
            || records.setup_error.is_some();
        if !program_level {
            return e(
                Status::Error,
                format!(
                    "exited with code {} before the tests finished",
                    h.exit_code.unwrap_or(-1)
                ),
            );
        }
    }
    None
}

fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGSYS => "SIGSYS",
        libc::SIGXFSZ => "SIGXFSZ (file size limit)",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

/// The status an exception stands for.
fn exception_status(info: &ErrorInfo) -> Status {
    if info.kind == "MemoryError" {
        Status::OutOfMemory
    } else {
        Status::Error
    }
}

fn early_exit_detail(info: &ErrorInfo, place: &str) -> Option<String> {
    (info.kind == "SystemExit").then(|| {
        format!(
            "the program tried to exit early (SystemExit {}) {place}",
            if info.message.is_empty() {
                "None"
            } else {
                &info.message
            }
        )
    })
}

/// Builds the program's outcome from its raw run.
pub(crate) fn assemble(
    job: &Job,
    plans: &[TestPlan],
    raw: &RawRun,
    cpu_s: u64,
    cfg: &PoolConfig,
) -> ProgramOutcome {
    let exprs = plans
        .iter()
        .map(|p| match p {
            TestPlan::Invalid(_) => 0,
            TestPlan::Truth { .. } => 1,
            TestPlan::Equals {
                rhs: RhsPlan::InJob(_),
                ..
            } => 2,
            TestPlan::Equals { .. } => 1,
        })
        .sum();
    let records = parse_records(&raw.records, exprs);
    let end = ending(raw, &records, cpu_s, cfg);
    let duration_s = raw.header.wall_s;
    let mut outcome = ProgramOutcome {
        status: Status::Passed,
        tests: not_run(job),
        error: None,
        detail: None,
        duration_s,
    };

    // Program-level failures: nothing was tested.
    let program_level = [
        (
            &records.syntax,
            Status::SyntaxError,
            "while compiling the program",
        ),
        (
            &records.setup_syntax,
            Status::SyntaxError,
            "while compiling the setup code",
        ),
        (
            &records.program_error,
            Status::Error,
            "while defining the program",
        ),
        (
            &records.setup_error,
            Status::Error,
            "while running the setup code",
        ),
    ];
    for (info, status, place) in program_level {
        if let Some(info) = info {
            outcome.status = if status == Status::Error {
                exception_status(info)
            } else {
                status
            };
            outcome.detail = Some(
                early_exit_detail(info, place)
                    .unwrap_or_else(|| format!("{}: {} {place}", info.kind, info.message)),
            );
            outcome.error = Some(info.clone());
            if let Some(end) = end {
                outcome.status = end.status;
                outcome.detail = Some(end.detail);
            }
            return outcome;
        }
    }

    let mut first_failure: Option<Status> = None;
    let mut cut_short = false;
    for (i, plan) in plans.iter().enumerate() {
        let test = &mut outcome.tests[i];
        let got = |k: usize| records.values.get(k);
        let verdict: Option<TestVerdict> = match plan {
            TestPlan::Invalid(message) => Some((
                Status::Error,
                None,
                None,
                Some(error_info("InvalidTest", message.clone())),
            )),
            TestPlan::Truth { index, negate } => got(*index).map(|r| match r {
                Reported::Value(v) => {
                    let want = if *negate {
                        "a falsy value"
                    } else {
                        "a truthy value"
                    };
                    let status = if v.truthy() != *negate {
                        Status::Passed
                    } else {
                        Status::Failed
                    };
                    (
                        status,
                        Some(want.to_string()),
                        (status != Status::Passed).then(|| v.repr(REPR_LIMIT)),
                        None,
                    )
                }
                other => reported_failure(other),
            }),
            TestPlan::Equals { lhs, rhs } => {
                let expected = match rhs {
                    RhsPlan::Trusted(v) => Some(Reported::Value(v.clone())),
                    RhsPlan::InJob(k) => got(*k).cloned(),
                };
                match (got(*lhs), expected) {
                    (Some(Reported::Value(v)), Some(Reported::Value(want))) => {
                        let status = if *v == want {
                            Status::Passed
                        } else {
                            Status::Failed
                        };
                        Some((
                            status,
                            Some(want.repr(REPR_LIMIT)),
                            (status != Status::Passed).then(|| v.repr(REPR_LIMIT)),
                            None,
                        ))
                    }
                    (Some(Reported::Value(_)), Some(other)) => Some(reported_failure(&other)),
                    (Some(other), _) => {
                        let (status, _, g, err) = reported_failure(other);
                        let want = match rhs {
                            RhsPlan::Trusted(v) => Some(v.repr(REPR_LIMIT)),
                            RhsPlan::InJob(_) => None,
                        };
                        Some((status, want, g, err))
                    }
                    (None, _) => None,
                }
            }
        };
        match verdict {
            Some((status, expected, got, error)) => {
                test.status = status;
                test.expected = expected;
                test.got = got;
                test.error = error;
            }
            None => {
                // The first test without a result is the one the job died in.
                if !cut_short {
                    cut_short = true;
                    if let Some(end) = &end {
                        test.status = end.status;
                    }
                }
            }
        }
        if test.status != Status::Passed && test.status != Status::NotRun && first_failure.is_none()
        {
            first_failure = Some(test.status);
        }
    }
    let raised_exit = outcome.tests.iter().find_map(|t| {
        t.error
            .as_ref()
            .and_then(|e| early_exit_detail(e, &format!("in test {}", t.index)))
    });
    outcome.status = match (&end, first_failure) {
        (Some(end), _) if records.tampered.is_some() || raw.header.overflow => end.status,
        (_, Some(status)) => status,
        (Some(end), None) => end.status,
        (None, None) => Status::Passed,
    };
    outcome.detail = end.map(|e| e.detail).or(raised_exit);
    outcome
}

fn reported_failure(r: &Reported) -> TestVerdict {
    match r {
        Reported::Raised(info) => (exception_status(info), None, None, Some(info.clone())),
        Reported::Unserializable(reason) => (
            Status::Failed,
            None,
            Some(format!("<not comparable: {reason}>")),
            None,
        ),
        Reported::Value(v) => (Status::Failed, None, Some(v.repr(REPR_LIMIT)), None),
    }
}

/// The outcome for a job the sandbox would not run.
pub(crate) fn refused(job: &Job, message: String) -> ProgramOutcome {
    ProgramOutcome {
        status: Status::Error,
        tests: not_run(job),
        error: Some(error_info("SandboxRefused", message.clone())),
        detail: Some(message),
        duration_s: 0.0,
    }
}

/// The outcome when the worker itself failed (it has been restarted).
pub(crate) fn worker_failure(job: &Job, detail: String, duration_s: f64) -> ProgramOutcome {
    let status = if detail.contains("stopped answering") {
        Status::Timeout
    } else {
        Status::Error
    };
    ProgramOutcome {
        status,
        tests: not_run(job),
        error: None,
        detail: Some(detail),
        duration_s,
    }
}
