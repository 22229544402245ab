//! π_Refine (ilf-method.md section 3.2): its prompt, its training data (stage 04), the prompts of
//! the refinements it samples (stage 05), and the choice of one passing refinement per task
//! (stage 06).
//!
//! Training pairs are `OLD CODE:\n{program}\n\nFEEDBACK:\n{feedback}\n\nREFINEMENT:\n` →
//! `{refinement}` (plus the end-of-text token the trainer appends), with the full old program and
//! the full human refinement, docstring prompt included. At inference the task's paper prompt is
//! force-prefixed after `REFINEMENT:\n`, so the refiner writes only the function body. The old
//! program is cut to a token budget and the feedback cut so the prompt fits; line endings are
//! normalised to `\n` (44 of the paper's refinements carry `\r\n` from the annotation tool, and
//! the prompts the refiner continues have `\n`).

use super::config::RefinerConfig;
use super::model::{count_tokens, head_tokens};
use super::sampling::Prompt;
use anyhow::Result;
use ilf_data::mbpp::{Mbpp, Task};
use ilf_data::metrics::Summary;
use ilf_data::prompt::{find_signature, paper_prompt};
use ilf_data::records::{read_jsonl, write_jsonl, ResultRow};
use ilf_data::truncate::truncate_completion;
use ilf_feedback::annotations::AnnotationRecord;
use ilf_lm::Tokenizer;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The refiner's prompt for `old` and `feedback`, followed by `forced` (the task's paper prompt at
/// inference, nothing in training). The prompt is kept within `max_prompt_tokens - reserve`
/// tokens: the old program first, cut to at most `old_code_max_tokens`, then the feedback, cut to
/// what is left.
pub fn refiner_prompt(
    tokenizer: &Tokenizer,
    config: &RefinerConfig,
    old: &str,
    feedback: &str,
    forced: &str,
    reserve: usize,
) -> Result<String> {
    let old = old.replace("\r\n", "\n");
    let feedback = feedback.replace("\r\n", "\n");
    let frame =
        |o: &str, f: &str| format!("OLD CODE:\n{o}\n\nFEEDBACK:\n{f}\n\nREFINEMENT:\n{forced}");
    let budget = config.max_prompt_tokens.saturating_sub(reserve);
    let fixed = count_tokens(tokenizer, &frame("", ""))?;
    let old = head_tokens(
        tokenizer,
        &old,
        config.old_code_max_tokens.min(budget.saturating_sub(fixed)),
    )?;
    let left = budget.saturating_sub(fixed + count_tokens(tokenizer, &old)?);
    let feedback = head_tokens(tokenizer, &feedback, left)?;
    Ok(frame(&old, &feedback))
}

/// Text with `\r\n` (and a stray `\r`, as at the end of MBPP task 104's gold) made `\n`.
fn unix(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// Writes π_Refine's training pairs from human triples to `path`; returns how many. The old
/// program (then the feedback) is cut so that prompt and refinement fit the sequence limit.
pub fn write_refiner_data(
    tokenizer: &Tokenizer,
    config: &RefinerConfig,
    triples: &[AnnotationRecord],
    path: &Path,
) -> Result<usize> {
    let rows = triples
        .iter()
        .filter_map(|r| {
            r.unedited_annotator_completion
                .as_deref()
                .map(|refinement| (r, unix(refinement)))
        })
        .map(|(r, refinement)| {
            // The paper cuts only the old program so that the whole sequence fits.
            let reserve = count_tokens(tokenizer, &refinement)? + 1;
            let room = RefinerConfig {
                max_prompt_tokens: config.train.max_len,
                old_code_max_tokens: config.train.max_len,
                ..config.clone()
            };
            let prompt = refiner_prompt(
                tokenizer,
                &room,
                &r.original_model_completion,
                &r.feedback,
                "",
                reserve,
            )?;
            Ok(json!({"task_id": r.task_id, "prompt": prompt, "completion": refinement}))
        })
        .collect::<Result<Vec<Value>>>()?;
    write_jsonl(path, &rows)?;
    Ok(rows.len())
}

/// The refinement prompts of one feedback set: one per record, the task's paper prompt forced.
pub fn refine_prompts(
    tokenizer: &Tokenizer,
    config: &RefinerConfig,
    records: &[AnnotationRecord],
    mbpp: &Mbpp,
    reserve: usize,
) -> Result<Vec<Prompt>> {
    records
        .iter()
        .map(|r| {
            let task = task(mbpp, r.task_id)?;
            let prompt = refiner_prompt(
                tokenizer,
                config,
                &r.original_model_completion,
                &r.feedback,
                &paper_prompt(task),
                reserve,
            )?;
            let mut extra = serde_json::Map::new();
            extra.insert("feedback".into(), Value::from(r.feedback.clone()));
            Ok(Prompt {
                task_id: r.task_id,
                prompt,
                extra,
            })
        })
        .collect()
}

pub fn task(mbpp: &Mbpp, id: u32) -> Result<&Task> {
    mbpp.get(id)
        .ok_or_else(|| anyhow::anyhow!("task {id} is not in {}", mbpp.path().display()))
}

/// What stage 06 found for one feedback source (the paper's Table 3, and ILF's training set).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Selection {
    pub source: String,
    /// Pass@k, 1+ correct over the refined tasks.
    pub metrics: Summary,
    pub tasks: usize,
    /// Tasks with a selected (passing) refinement, in id order.
    pub selected: Vec<u32>,
}

/// One passing refinement per task, drawn with `seed` among the distinct passing completions,
/// written as training pairs (paper prompt → the completion as executed) to `path`.
pub fn select(results: &Path, mbpp: &Mbpp, seed: u64, path: &Path) -> Result<Vec<u32>> {
    let rows: Vec<ResultRow> = read_jsonl(results)?;
    let mut passing: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.passed) {
        let completion = row
            .extra
            .get("completion")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: a result of task {} has no completion",
                    results.display(),
                    row.task_id
                )
            })?;
        passing
            .entry(row.task_id)
            .or_default()
            .insert(truncate_completion(completion).to_string());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for (task_id, completions) in &passing {
        let completions: Vec<&String> = completions.iter().collect();
        let pick = completions[rng.random_range(0..completions.len())];
        out.push(json!({
            "task_id": task_id,
            "prompt": paper_prompt(task(mbpp, *task_id)?),
            "completion": format!("{pick}\n"),
        }));
    }
    write_jsonl(path, &out)?;
    Ok(passing.into_keys().collect())
}

/// The body after `task`'s signature in a whole program (`\r\n` made `\n`), without the rest of
/// the signature line; `None` when the program does not define the entry point.
pub fn body_of(task: &Task, program: &str) -> Option<String> {
    let program = unix(program);
    let prompt = paper_prompt(task);
    if let Some(rest) = program.strip_prefix(&prompt) {
        return Some(rest.to_string());
    }
    let end = find_signature(&program, &task.entry_point())?;
    let rest = &program[end..];
    let rest = rest.trim_start_matches([' ', '\t']);
    Some(match rest.strip_prefix('\n') {
        Some(body) => body.to_string(),
        // `def f(x): return x`: the one-line body moves under the signature.
        None if !rest.is_empty() => format!("    {rest}"),
        None => String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mbpp() -> Mbpp {
        let path = std::env::var_os("ILF_MBPP").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mbpp.jsonl"),
            Into::into,
        );
        Mbpp::load(&path).unwrap()
    }

    #[test]
    fn gold_bodies_follow_the_paper_prompt() {
        let mbpp = mbpp();
        for id in 11..=110 {
            let task = mbpp.get(id).unwrap();
            let body = body_of(task, &task.code).unwrap();
            assert!(!body.contains('\r'), "task {id}");
            assert!(!body.trim().is_empty(), "task {id}");
            assert!(!body.starts_with('\n'), "task {id}: {body:?}");
        }
        let task = mbpp.get(11).unwrap();
        let refinement = format!("{}    return s\n", paper_prompt(task));
        assert_eq!(body_of(task, &refinement).unwrap(), "    return s\n");
    }
}
