//! The MBPP dataset ("Mostly Basic Python Problems", Austin et al. 2021): loading, validation and
//! finding the file.
//!
//! The file is the original `mbpp.jsonl` release: 974 tasks with ids 1..=974, each with exactly
//! three `assert` tests. [`Mbpp::load`] checks all of that, so later stages can index by id.

use crate::{error::DataError, prompt, records, truncate};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The number of tasks in MBPP.
pub const TASK_COUNT: u32 = 974;
/// The number of `assert` tests every MBPP task has.
pub const TESTS_PER_TASK: usize = 3;

/// One MBPP task, field for field as in `mbpp.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub task_id: u32,
    /// The natural-language problem statement.
    pub text: String,
    /// The gold solution (with MBPP's `\r\n` line endings).
    pub code: String,
    /// Code the tests need defined first (two tasks use it, e.g. tree nodes).
    pub test_setup_code: String,
    /// Three `assert` statements.
    pub test_list: Vec<String>,
    /// Extra, harder asserts (11 tasks); the paper ignores them.
    pub challenge_test_list: Vec<String>,
}

impl Task {
    /// The program the sandbox executes for a sampled `completion` (the text generated after the
    /// prompt): [`prompt::paper_prompt`] + [`truncate::truncate_completion`] + `"\n"`.
    /// Run it against `test_list`, after `test_setup_code`.
    pub fn program(&self, completion: &str) -> String {
        let mut program = prompt::paper_prompt(self);
        program.push_str(truncate::truncate_completion(completion));
        program.push('\n');
        program
    }

    /// The function the tests call (see [`prompt::entry_point`]).
    pub fn entry_point(&self) -> String {
        prompt::entry_point(self)
    }
}

/// All 974 MBPP tasks, sorted by id (so `tasks()[i].task_id == i + 1`).
#[derive(Debug, Clone)]
pub struct Mbpp {
    tasks: Vec<Task>,
    path: PathBuf,
}

impl Mbpp {
    /// Reads and validates an `mbpp.jsonl` file: 974 tasks, ids 1..=974 each exactly once, three
    /// asserts per task, and a locatable signature of the entry point in every gold program (so
    /// every task has a prompt).
    pub fn load(path: &Path) -> Result<Mbpp, DataError> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        Self::from_bytes(&bytes, path)
    }

    /// Parses and validates MBPP from the bytes of a file; `path` names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Mbpp, DataError> {
        let tasks: Vec<Task> = records::parse_lines(path, bytes)?;
        Self::from_tasks(tasks, path)
    }

    /// The same tasks, recorded as read from `path` (after a copy).
    pub(crate) fn with_path(self, path: &Path) -> Mbpp {
        Mbpp {
            path: path.to_path_buf(),
            ..self
        }
    }

    fn from_tasks(mut tasks: Vec<Task>, path: &Path) -> Result<Mbpp, DataError> {
        let invalid = |message: String| DataError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        if tasks.len() != TASK_COUNT as usize {
            return Err(invalid(format!(
                "expected {TASK_COUNT} MBPP tasks, found {}; is this the original mbpp.jsonl? \
                 (`ilf data fetch` downloads it)",
                tasks.len()
            )));
        }
        tasks.sort_by_key(|t| t.task_id);
        for (i, task) in tasks.iter().enumerate() {
            let expected = i as u32 + 1;
            if task.task_id != expected {
                let problem = if i > 0 && tasks[i - 1].task_id == task.task_id {
                    format!("task id {} appears more than once", task.task_id)
                } else {
                    format!("task id {expected} is missing (ids must be 1..={TASK_COUNT})")
                };
                return Err(invalid(problem));
            }
            if task.test_list.len() != TESTS_PER_TASK {
                return Err(invalid(format!(
                    "task {}: expected {TESTS_PER_TASK} tests, found {}",
                    task.task_id,
                    task.test_list.len()
                )));
            }
            if let Some(test) = task
                .test_list
                .iter()
                .find(|t| !t.trim_start().starts_with("assert"))
            {
                return Err(invalid(format!(
                    "task {}: test is not an assert: {test:?}",
                    task.task_id
                )));
            }
            prompt::code_prefix(task).map_err(|e| invalid(e.to_string()))?;
        }
        Ok(Mbpp {
            tasks,
            path: path.to_path_buf(),
        })
    }

    /// Finds and loads MBPP: `explicit` (`--mbpp PATH`) if given, else `$ILF_MBPP`, else
    /// `$ILF_CACHE/mbpp.jsonl` (see [`crate::cache_dir`]); otherwise an error that says to run
    /// `ilf data fetch` or pass `--mbpp`.
    pub fn resolve(explicit: Option<&Path>) -> Result<Mbpp, DataError> {
        if let Some(path) = explicit {
            return Self::load(path);
        }
        if let Some(path) = std::env::var_os("ILF_MBPP").filter(|p| !p.is_empty()) {
            return Self::load(Path::new(&path));
        }
        let cached = default_path();
        if cached.exists() {
            return Self::load(&cached);
        }
        Err(DataError::MbppNotFound {
            looked: format!(
                "--mbpp not given, $ILF_MBPP not set, {} does not exist",
                cached.display()
            ),
        })
    }

    /// The task with this id, if it is in 1..=974.
    pub fn get(&self, id: u32) -> Option<&Task> {
        id.checked_sub(1).and_then(|i| self.tasks.get(i as usize))
    }

    /// All tasks, sorted by id.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// The file the tasks were read from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Where `ilf data fetch` puts MBPP: `$ILF_CACHE/mbpp.jsonl`.
pub fn default_path() -> PathBuf {
    crate::cache_dir().join("mbpp.jsonl")
}
