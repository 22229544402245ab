//! Execution feedback: the failing program's verdict, said in words.
//!
//! The cheapest feedback source needs neither people nor a model: the sandbox already knows which
//! assert failed, what it expected and what the program returned, or which exception it raised
//! and where. [`describe_failure`] turns a [`ProgramOutcome`] into a few plain sentences, for
//! example:
//!
//! ```text
//! The test `assert remove_Occ("hello","l") == "heo"` failed: expected 'heo', got 'helo'.
//! The test `assert remove_Occ("abcda","a") == "bcd"` raised IndexError: string index out of range.
//!   File "<program>", line 7, in remove_Occ
//! 1 of 3 tests passed.
//! ```
//!
//! `ilf feedback --from execution` writes one [`AnnotationRecord`] per failing program (the
//! schema of [`crate::annotations`], the same the web app exports) with `Feedback` set to this
//! text, `worker_id` null, no refinement (`completion`, `passed`, `unedited_annotator_completion`
//! and `refinement_edit_distance` are null) and `ilf.source = "execution"` with the verdict.

use crate::annotations::{AnnotationRecord, FeedbackSource, Provenance};
use crate::failures::Failures;
use ilf_data::verdict::{ErrorInfo, ProgramOutcome, Status, TestOutcome};
use std::fmt::Write;

/// Why a whole program failed before or outside its tests, in words.
fn program_failure(status: Status) -> Option<&'static str> {
    match status {
        Status::SyntaxError => Some("The program does not parse"),
        Status::Timeout => Some("The program did not finish within the time limit and was stopped"),
        Status::OutOfMemory => Some("The program used more memory than allowed and was stopped"),
        Status::Crashed => Some("The Python interpreter crashed while running the program"),
        _ => None,
    }
}

fn write_error(out: &mut String, error: &ErrorInfo) {
    if error.message.is_empty() {
        let _ = write!(out, "{}", error.kind);
    } else {
        let _ = write!(out, "{}: {}", error.kind, error.message);
    }
}

fn write_traceback(out: &mut String, error: &ErrorInfo) {
    for line in &error.traceback {
        let _ = write!(out, "\n  {}", line.trim_end());
    }
}

fn write_test(out: &mut String, test: &TestOutcome) {
    let source = test.test.trim();
    match test.status {
        Status::Failed => {
            let _ = write!(out, "The test `{source}` failed");
            match (&test.expected, &test.got) {
                (Some(expected), Some(got)) => {
                    let _ = write!(out, ": expected {expected}, got {got}.");
                }
                (None, Some(got)) => {
                    let _ = write!(out, ": the program returned {got}.");
                }
                _ => out.push_str(": the assertion is false."),
            }
        }
        Status::Error => {
            let _ = write!(out, "The test `{source}` raised ");
            match &test.error {
                Some(error) => {
                    write_error(out, error);
                    out.push('.');
                    write_traceback(out, error);
                }
                None => out.push_str("an exception."),
            }
        }
        Status::Timeout => {
            let _ = write!(
                out,
                "The test `{source}` did not finish within the time limit."
            );
        }
        Status::OutOfMemory => {
            let _ = write!(out, "The test `{source}` used more memory than allowed.");
        }
        Status::Crashed => {
            let _ = write!(out, "The interpreter crashed during the test `{source}`.");
        }
        Status::SyntaxError => {
            let _ = write!(out, "The test `{source}` does not parse.");
        }
        Status::Passed | Status::NotRun => {}
    }
}

/// The verdict of a failing program as feedback text: the program-level failure (syntax error,
/// timeout, crash, an exception while defining it), then each failing test with its expected and
/// actual values or its exception and traceback, then how many tests passed or never ran.
pub fn describe_failure(outcome: &ProgramOutcome) -> String {
    let mut lines: Vec<String> = Vec::new();
    if let Some(what) = program_failure(outcome.status) {
        let mut line = what.to_string();
        if let Some(error) = &outcome.error {
            line.push_str(": ");
            write_error(&mut line, error);
        }
        line.push('.');
        if let Some(error) = &outcome.error {
            write_traceback(&mut line, error);
        }
        lines.push(line);
    } else if let Some(error) = &outcome.error {
        let mut line = "Running the program raised ".to_string();
        write_error(&mut line, error);
        line.push('.');
        write_traceback(&mut line, error);
        lines.push(line);
    }
    for test in &outcome.tests {
        let mut line = String::new();
        write_test(&mut line, test);
        if !line.is_empty() {
            lines.push(line);
        }
    }
    // The sandbox's detail often repeats the error message; say it once.
    let repeated = |detail: &str| {
        outcome
            .error
            .as_ref()
            .is_some_and(|e| detail.contains(&e.message))
    };
    if let Some(detail) = outcome.detail.as_deref().filter(|d| !repeated(d)) {
        lines.push(format!(
            "The sandbox reported: {}.",
            detail.trim_end_matches('.')
        ));
    }
    let total = outcome.tests.len();
    if total > 0 {
        let passed = outcome
            .tests
            .iter()
            .filter(|t| t.status == Status::Passed)
            .count();
        let not_run = outcome
            .tests
            .iter()
            .filter(|t| t.status == Status::NotRun)
            .count();
        let mut line = format!("{passed} of {total} tests passed.");
        if not_run > 0 {
            let _ = write!(
                line,
                " {not_run} did not run because an earlier failure ended the program."
            );
        }
        lines.push(line);
    }
    if lines.is_empty() {
        lines.push(format!(
            "The program did not pass its tests (status: {}).",
            outcome.status
        ));
    }
    lines.join("\n")
}

/// One execution-feedback record per failing program.
pub fn execution_feedback(failures: &Failures) -> Vec<AnnotationRecord> {
    failures
        .programs
        .iter()
        .filter_map(|program| {
            let verdict = program.verdict.as_ref()?;
            Some(AnnotationRecord {
                task_id: program.task_id,
                prompt: program.prompt.clone(),
                test: program.test.clone(),
                feedback: describe_failure(verdict),
                completion: None,
                result: None,
                passed: None,
                unedited_annotator_completion: None,
                original_model_completion: program.program.clone(),
                refinement_edit_distance: None,
                worker_id: None,
                ilf: Some(Provenance {
                    source: FeedbackSource::Execution,
                    model: None,
                    time_spent_s: None,
                    edit_distance_max: None,
                    review: None,
                    verdict: Some(verdict.clone()),
                    sample: program.sample,
                    created: None,
                }),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test(index: usize, status: Status) -> TestOutcome {
        TestOutcome {
            index,
            test: format!("assert f({index}) == {index}"),
            status,
            expected: None,
            got: None,
            error: None,
        }
    }

    #[test]
    fn failed_assert_states_expected_and_got() {
        let mut failing = test(1, Status::Failed);
        failing.expected = Some("1".into());
        failing.got = Some("None".into());
        let outcome = ProgramOutcome {
            status: Status::Failed,
            tests: vec![test(0, Status::Passed), failing, test(2, Status::Passed)],
            error: None,
            detail: None,
            duration_s: 0.1,
        };
        assert_eq!(
            describe_failure(&outcome),
            "The test `assert f(1) == 1` failed: expected 1, got None.\n2 of 3 tests passed."
        );
    }

    #[test]
    fn exception_names_type_message_and_traceback() {
        let mut erroring = test(0, Status::Error);
        erroring.error = Some(ErrorInfo {
            kind: "ZeroDivisionError".into(),
            message: "division by zero".into(),
            traceback: vec![
                "File \"<program>\", line 3, in f".into(),
                "    return 1 / x".into(),
            ],
        });
        let outcome = ProgramOutcome {
            status: Status::Error,
            tests: vec![erroring, test(1, Status::NotRun)],
            error: None,
            detail: None,
            duration_s: 0.1,
        };
        assert_eq!(
            describe_failure(&outcome),
            "The test `assert f(0) == 0` raised ZeroDivisionError: division by zero.\n  \
             File \"<program>\", line 3, in f\n      return 1 / x\n0 of 2 tests passed. 1 did \
             not run because an earlier failure ended the program."
        );
    }

    #[test]
    fn timeouts_and_crashes_are_stated_plainly() {
        let outcome = ProgramOutcome {
            status: Status::Timeout,
            tests: vec![test(0, Status::Timeout)],
            error: None,
            detail: Some("wall-clock limit of 10 s reached".into()),
            duration_s: 10.0,
        };
        let text = describe_failure(&outcome);
        assert!(
            text.starts_with("The program did not finish within the time limit and was stopped."),
            "{text}"
        );
        assert!(
            text.contains("The test `assert f(0) == 0` did not finish within the time limit."),
            "{text}"
        );
        assert!(
            text.contains("The sandbox reported: wall-clock limit of 10 s reached."),
            "{text}"
        );

        let crashed = ProgramOutcome {
            status: Status::Crashed,
            tests: vec![],
            error: None,
            detail: Some("killed by SIGSEGV".into()),
            duration_s: 0.2,
        };
        assert_eq!(
            describe_failure(&crashed),
            "The Python interpreter crashed while running the program.\nThe sandbox reported: killed by SIGSEGV."
        );
    }

    #[test]
    fn syntax_error_carries_the_message() {
        let outcome = ProgramOutcome {
            status: Status::SyntaxError,
            tests: vec![test(0, Status::NotRun)],
            error: Some(ErrorInfo {
                kind: "SyntaxError".into(),
                message: "invalid syntax (line 4)".into(),
                traceback: vec![],
            }),
            detail: None,
            duration_s: 0.0,
        };
        assert!(describe_failure(&outcome)
            .starts_with("The program does not parse: SyntaxError: invalid syntax (line 4)."));
    }
}
