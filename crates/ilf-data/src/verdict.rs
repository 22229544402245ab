//! The verdict records the sandbox produces and every later stage reads (eval results,
//! execution feedback, the annotation app). They live here, at the bottom of the crate graph,
//! so that `ilf-sandbox` produces exactly the type that `results.jsonl` stores.

use serde::{Deserialize, Serialize};

/// What happened to a whole program, or to one of its tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every check computed the expected value.
    Passed,
    /// The program ran but a check got a different value (or the assert was false).
    Failed,
    /// The program raised an exception, or left before its tests finished (early exit).
    Error,
    /// The wall or CPU-time limit was reached; the job was killed.
    Timeout,
    /// The memory cap was reached.
    OutOfMemory,
    /// The interpreter died from a signal (segfault, abort, ...).
    Crashed,
    /// The program does not parse.
    SyntaxError,
    /// Never reached: an earlier failure ended the job first.
    NotRun,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Error => "error",
            Status::Timeout => "timeout",
            Status::OutOfMemory => "out_of_memory",
            Status::Crashed => "crashed",
            Status::SyntaxError => "syntax_error",
            Status::NotRun => "not_run",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An exception as the program saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// The exception's type name, e.g. `ZeroDivisionError`.
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    /// Traceback lines that point inside the program (harness frames removed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traceback: Vec<String>,
}

/// The outcome of one test (one assert) of a program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestOutcome {
    /// Position of the test in the task's test list, from 0.
    pub index: usize,
    /// The test's source, e.g. `assert remove_Occ("hello","l") == "heo"`.
    pub test: String,
    pub status: Status,
    /// The expected value, as Python's `repr` would show it (when known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// What the program computed, as `repr` (possibly cut) when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub got: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

/// The outcome of running one program against its tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgramOutcome {
    /// `Passed` iff every test passed; otherwise the first non-passing test's status,
    /// or the program-level status (syntax error, timeout, crash...).
    pub status: Status,
    pub tests: Vec<TestOutcome>,
    /// Program-level error: a syntax error, an exception while defining the program.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// A human sentence for what the trusted side saw, e.g. "killed by SIGSEGV",
    /// "exited with code 0 before the tests finished", "output cap reached".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Wall time of the job, seconds.
    pub duration_s: f64,
}

impl ProgramOutcome {
    pub fn passed(&self) -> bool {
        self.status == Status::Passed
    }
}
