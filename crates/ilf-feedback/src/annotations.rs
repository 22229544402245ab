//! The paper's annotation format, as `surge_annotations.jsonl` stores it (ilf-method.md §8), and
//! the two edit distances that describe a refinement.
//!
//! Every feedback source in this crate (the web app's export, execution feedback, model-written
//! feedback) writes [`AnnotationRecord`]s, one JSON object per line, so that the refiner stage
//! reads the paper's file and ours the same way. The eleven paper fields come first and keep
//! their names (`Feedback` is capitalised, as in the paper's spreadsheet):
//!
//! | field | meaning |
//! | --- | --- |
//! | `task_id` | MBPP task ID |
//! | `prompt` | the code-generation prompt the failing program was sampled from (§3.1) |
//! | `test` | the harness test source: `def check(candidate):` and one tab-indented assert per test |
//! | `Feedback` | the natural-language feedback |
//! | `completion` | the refinement's body: the text after the last `def …:` line; `null` without a refinement |
//! | `result` | the old harness's result string (`"passed"` or `null`) |
//! | `passed` | whether the refinement passes every test; `null` without a refinement |
//! | `unedited_annotator_completion` | the full refinement, prompt included; `null` without one |
//! | `original_model_completion` | the full failing program, prompt included |
//! | `refinement_edit_distance` | [`paper_edit_distance`]; `null` without a refinement |
//! | `worker_id` | who wrote the feedback: the annotator's name, or `null` |
//!
//! Records written by ilf carry one more key, `ilf` ([`Provenance`]): where the feedback came
//! from (human, execution, a model), time spent, the review decision, the max-normalised edit
//! distance and the failing program's verdict. Records imported from the paper's file have no
//! `ilf` key and are exported without one, so the 195 paper rows round-trip field for field.

use anyhow::{Context, Result};
use ilf_data::records::{read_jsonl, write_jsonl};
use ilf_data::verdict::ProgramOutcome;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One annotation: a failing program, feedback on it, and (for human feedback) the refinement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnotationRecord {
    pub task_id: u32,
    pub prompt: String,
    pub test: String,
    #[serde(rename = "Feedback")]
    pub feedback: String,
    pub completion: Option<String>,
    pub result: Option<String>,
    pub passed: Option<bool>,
    pub unedited_annotator_completion: Option<String>,
    pub original_model_completion: String,
    pub refinement_edit_distance: Option<f64>,
    pub worker_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ilf: Option<Provenance>,
}

/// Where a piece of feedback came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackSource {
    /// Written by a person (the web app, or an imported annotation file).
    Human,
    /// Written by a language model (`Provenance::model` names it).
    Model,
    /// Derived from the failing program's verdict.
    Execution,
}

impl FeedbackSource {
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackSource::Human => "human",
            FeedbackSource::Model => "model",
            FeedbackSource::Execution => "execution",
        }
    }

    pub fn parse(text: &str) -> Option<FeedbackSource> {
        match text {
            "human" => Some(FeedbackSource::Human),
            "model" => Some(FeedbackSource::Model),
            "execution" => Some(FeedbackSource::Execution),
            _ => None,
        }
    }
}

/// ilf's additions to a paper record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub source: FeedbackSource,
    /// The model that wrote the feedback (source `model`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Seconds the annotator spent, from opening the page to submitting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_spent_s: Option<f64>,
    /// [`max_normalised_edit_distance`] between the full program and the full refinement: the
    /// quantity the paper's < 50% filter describes (p.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit_distance_max: Option<f64>,
    /// `accepted` or `rejected` once a reviewer decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<String>,
    /// The failing program's verdict, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<ProgramOutcome>,
    /// The sample index of the failing program in the results file, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<u64>,
    /// When the feedback was created (UTC, RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

/// Reads an annotation file; an error names the file and line.
pub fn read_annotations(path: &Path) -> Result<Vec<AnnotationRecord>> {
    read_jsonl(path).with_context(|| {
        format!(
            "cannot read annotations from {} (expected the paper's schema: task_id, prompt, test, \
             Feedback, completion, result, passed, unedited_annotator_completion, \
             original_model_completion, refinement_edit_distance, worker_id)",
            path.display()
        )
    })
}

/// Writes records as JSON Lines, atomically (a reader never sees half a file).
pub fn write_annotations(path: &Path, records: &[AnnotationRecord]) -> Result<()> {
    write_jsonl(path, records)
        .with_context(|| format!("cannot write annotations to {}", path.display()))
}

/// Levenshtein distance over Unicode scalar values, as Python's `Levenshtein.distance` on `str`.
pub fn levenshtein(a: &str, b: &str) -> usize {
    strsim::levenshtein(a, b)
}

/// The distance the paper's file stores as `refinement_edit_distance`:
/// `Levenshtein(original body, completion) / len(original body)`, where the original body is
/// `original_model_completion[len(prompt):]` (Python slicing, by characters). This matches all 195
/// paper rows to 1e-4 (ilf-method.md §8). An empty body gives 0 for an empty completion and 1
/// otherwise, where Python would divide by zero.
pub fn paper_edit_distance(original_program: &str, prompt: &str, completion: &str) -> f64 {
    let body: String = original_program
        .chars()
        .skip(prompt.chars().count())
        .collect();
    let len = body.chars().count();
    if len == 0 {
        return if completion.is_empty() { 0.0 } else { 1.0 };
    }
    levenshtein(&body, completion) as f64 / len as f64
}

/// `Levenshtein(a, b) / max(len(a), len(b))`: the normalisation the paper's filter states ("< 50%
/// of the maximum length", p.5). Two empty texts are at distance 0.
pub fn max_normalised_edit_distance(a: &str, b: &str) -> f64 {
    let len = a.chars().count().max(b.chars().count());
    if len == 0 {
        return 0.0;
    }
    levenshtein(a, b) as f64 / len as f64
}

/// The refinement's body as the paper's `completion` field holds it: everything after the colon
/// that ends the last `def …:` line (so it starts with that line's newline). A program without a
/// one-line function signature is its own body.
pub fn body_after_signature(program: &str) -> &str {
    let mut body_start = None;
    let mut offset = 0;
    for line in program.split_inclusive('\n') {
        let content = line.trim_end();
        if content.trim_start().starts_with("def ") && content.ends_with(':') {
            body_start = Some(offset + content.len());
        }
        offset += line.len();
    }
    match body_start {
        Some(start) => &program[start..],
        None => program,
    }
}

/// The harness test source of the paper's `test` field, from MBPP asserts: the entry point's
/// calls become `candidate(...)`, each assert is tab-indented under `def check(candidate):` and
/// carries its own text as the message; when the first assert's expected value is a number the
/// comparisons use `pytest.approx`, as the paper's harness did.
pub fn paper_test_source(test_list: &[String], entry_point: &str) -> String {
    let expected_of = |assert: &str| -> Option<String> {
        let body = assert.trim().strip_prefix("assert ")?;
        let (_, rhs) = body.split_once("==")?;
        Some(rhs.to_string())
    };
    let numeric = test_list
        .first()
        .and_then(|first| expected_of(first))
        .is_some_and(|rhs| rhs.trim().parse::<f64>().is_ok());
    let call = format!("{entry_point}(");
    let mut out = String::new();
    if numeric {
        out.push_str("from pytest import approx\n\n");
    }
    out.push_str("def check(candidate):");
    for assert in test_list {
        let body = assert.trim_start();
        let body = body.strip_prefix("assert ").unwrap_or(body);
        let mut body = body.replacen(&call, "candidate(", 1);
        if numeric {
            if let Some((lhs, rhs)) = body.split_once("==") {
                body = format!("{lhs}==approx({rhs})");
            }
        }
        // The paper's harness escapes only double quotes in the message.
        let message = body.replace('"', "\\\"");
        out.push_str(&format!("\n\tassert {body}, \"{message}\""));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levenshtein_counts_characters_not_bytes() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("–", "-"), 1);
        assert_eq!(levenshtein("", "abc"), 3);
    }

    #[test]
    fn paper_distance_divides_by_the_original_body() {
        // body "    return a" (12 chars) -> "    return b": one substitution.
        let d = paper_edit_distance("P\n    return a", "P\n", "    return b");
        assert!((d - 1.0 / 12.0).abs() < 1e-12);
        assert_eq!(paper_edit_distance("P\n", "P\n", ""), 0.0);
        assert_eq!(paper_edit_distance("P\n", "P\n", "x"), 1.0);
    }

    #[test]
    fn max_normalised_distance_uses_the_longer_text() {
        assert_eq!(max_normalised_edit_distance("abcd", "ab"), 0.5);
        assert_eq!(max_normalised_edit_distance("", ""), 0.0);
    }

    #[test]
    fn body_starts_after_the_last_signature() {
        let program = "\"\"\"doc\"\"\"\ndef helper(x):\n    return x\ndef f(a):\n    return a\n";
        assert_eq!(body_after_signature(program), "\n    return a\n");
        assert_eq!(body_after_signature("x = 1\n"), "x = 1\n");
    }

    #[test]
    fn test_source_uses_approx_for_numbers() {
        let tests = vec![
            "assert f(2) == 4".to_string(),
            "assert f(3) == 9".to_string(),
        ];
        assert_eq!(
            paper_test_source(&tests, "f"),
            "from pytest import approx\n\ndef check(candidate):\n\tassert candidate(2) ==approx( \
             4), \"candidate(2) ==approx( 4)\"\n\tassert candidate(3) ==approx( 9), \
             \"candidate(3) ==approx( 9)\""
        );
        let tests = vec!["assert f(\"a\")==['a']".to_string()];
        assert_eq!(
            paper_test_source(&tests, "f"),
            "def check(candidate):\n\tassert candidate(\"a\")==['a'], \"candidate(\\\"a\\\")==['a']\""
        );
    }
}
