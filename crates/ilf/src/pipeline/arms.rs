//! The training sets of the arms (Table 4 of the paper, ilf-method.md sections 2.2 and 5).
//!
//! MBPP gold and human refinements use exactly the task ids of the human ILF arm's training set
//! (the tasks with a selected passing refinement), so the three differ only in what the policy
//! imitates. Every arm fine-tunes the base model, never π_Refine. Prompts are the paper prompt;
//! completions are function bodies (what follows the prompt), `\r\n` normalised to `\n`.

use super::config::Arm;
use super::refiner::{body_of, task};
use ilf_data::mbpp::Mbpp;
use ilf_data::prompt::paper_prompt;
use ilf_data::records::write_jsonl;
use ilf_feedback::annotations::AnnotationRecord;
use serde_json::{json, Value};
use std::path::Path;

/// Writes the training pairs of `arm` to `path` and returns how many, and the task ids that had
/// to be left out (with why) for the report.
pub fn write_baseline_data(
    arm: Arm,
    tasks: &[u32],
    human: &[AnnotationRecord],
    mbpp: &Mbpp,
    path: &Path,
) -> anyhow::Result<(usize, Vec<String>)> {
    let mut rows: Vec<Value> = Vec::new();
    let mut left_out = Vec::new();
    for &id in tasks {
        let task = task(mbpp, id)?;
        let body = match arm {
            Arm::MbppGold => body_of(task, &task.code),
            Arm::HumanRefinements => human
                .iter()
                .find(|r| r.task_id == id)
                .and_then(|r| r.unedited_annotator_completion.as_deref())
                .and_then(|refinement| body_of(task, refinement)),
            other => anyhow::bail!("{} has no baseline data", other.name()),
        };
        match body.filter(|b| !b.trim().is_empty()) {
            Some(body) => rows.push(json!({
                "task_id": id,
                "prompt": paper_prompt(task),
                "completion": body,
            })),
            None => left_out.push(format!(
                "task {id}: no body after `def {}(...):` in the {} program",
                task.entry_point(),
                arm.name()
            )),
        }
    }
    write_jsonl(path, &rows)?;
    Ok((rows.len(), left_out))
}
