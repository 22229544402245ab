//! Training examples from prompt/completion JSON Lines.
//!
//! One JSON object per line, in TRL's format (`{"prompt": …, "completion": …}`) or the paper's
//! (`{"finetuning_prompt": …, "finetuning_completion": …}`, `ilf-method.md` section 3.3). Other
//! fields (`task_id`, …) are kept out of the way but remembered for error messages.

use crate::error::TrainError;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One supervised example: the model reads `prompt` and learns to write `completion`.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub prompt: String,
    pub completion: String,
    /// Where the example came from, for error messages: the file and its 1-based line.
    pub origin: Origin,
}

/// A file and 1-based line, plus the record's `task_id` when it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
    pub task_id: Option<String>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)?;
        if let Some(id) = &self.task_id {
            write!(f, " (task {id})")?;
        }
        Ok(())
    }
}

/// Field names accepted for the prompt and the completion, in order of preference.
const PROMPT_KEYS: [&str; 2] = ["prompt", "finetuning_prompt"];
const COMPLETION_KEYS: [&str; 2] = ["completion", "finetuning_completion"];

/// Reads every example of a JSONL file; blank lines are skipped. Fails on the first bad line,
/// naming the file and line, and on a file with no example at all.
pub fn load_examples(path: &Path) -> Result<Vec<Example>, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_examples(path, &text)
}

/// [`load_examples`] on text already read; `path` only names the source in errors.
pub fn parse_examples(path: &Path, text: &str) -> Result<Vec<Example>, TrainError> {
    let mut examples = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let origin = |task_id| Origin {
            file: path.to_path_buf(),
            line: index + 1,
            task_id,
        };
        let bad = |task_id, reason: String| TrainError::BadRecord {
            origin: origin(task_id),
            reason,
        };
        let value: Value =
            serde_json::from_str(line).map_err(|e| bad(None, format!("not valid JSON ({e})")))?;
        let Value::Object(record) = value else {
            return Err(bad(None, "not a JSON object".into()));
        };
        let task_id = record.get("task_id").map(|id| match id {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let field = |keys: &[&str]| -> Result<String, TrainError> {
            let Some((key, value)) = keys.iter().find_map(|k| record.get(*k).map(|v| (*k, v)))
            else {
                return Err(bad(
                    task_id.clone(),
                    format!("has none of the fields {keys:?}"),
                ));
            };
            match value {
                Value::String(s) => Ok(s.clone()),
                other => Err(bad(
                    task_id.clone(),
                    format!("field `{key}` is not a string but {other}"),
                )),
            }
        };
        let prompt = field(&PROMPT_KEYS)?;
        let completion = field(&COMPLETION_KEYS)?;
        if completion.is_empty() {
            return Err(bad(
                task_id,
                "the completion is empty, so there is nothing to learn".into(),
            ));
        }
        examples.push(Example {
            prompt,
            completion,
            origin: origin(task_id),
        });
    }
    if examples.is_empty() {
        return Err(TrainError::NoExamples {
            path: path.to_path_buf(),
        });
    }
    Ok(examples)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Example>, TrainError> {
        parse_examples(Path::new("train.jsonl"), text)
    }

    #[test]
    fn reads_both_field_conventions_and_skips_blank_lines() {
        let examples = parse(concat!(
            "{\"prompt\": \"a\", \"completion\": \"b\"}\n",
            "\n",
            "{\"finetuning_prompt\": \"c\", \"finetuning_completion\": \"d\", \"task_id\": 7}\n",
        ))
        .unwrap();
        assert_eq!(examples.len(), 2);
        assert_eq!(
            (examples[0].prompt.as_str(), examples[0].completion.as_str()),
            ("a", "b")
        );
        assert_eq!(
            (examples[1].prompt.as_str(), examples[1].completion.as_str()),
            ("c", "d")
        );
        assert_eq!(examples[1].origin.line, 3);
        assert_eq!(examples[1].origin.task_id.as_deref(), Some("7"));
    }

    #[test]
    fn malformed_line_names_file_and_line() {
        let err = parse("{\"prompt\": \"a\", \"completion\": \"b\"}\n{oops\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("train.jsonl:2"), "{text}");
        assert!(text.contains("not valid JSON"), "{text}");
    }

    #[test]
    fn missing_or_non_string_fields_are_errors() {
        let err = parse("{\"prompt\": \"a\"}\n").unwrap_err().to_string();
        assert!(
            err.contains("train.jsonl:1") && err.contains("completion"),
            "{err}"
        );
        let err = parse("{\"prompt\": 3, \"completion\": \"b\", \"task_id\": \"t9\"}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`prompt` is not a string") && err.contains("task t9"),
            "{err}"
        );
        let err = parse("[1, 2]\n").unwrap_err().to_string();
        assert!(err.contains("not a JSON object"), "{err}");
    }

    #[test]
    fn empty_file_and_empty_completion_are_errors() {
        assert!(matches!(
            parse("\n  \n"),
            Err(TrainError::NoExamples { .. })
        ));
        let err = parse("{\"prompt\": \"a\", \"completion\": \"\"}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("completion is empty"), "{err}");
    }
}
