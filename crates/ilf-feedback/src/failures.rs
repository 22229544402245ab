//! The failing programs of an `ilf eval` results file, joined with their MBPP tasks: what the
//! annotation app imports and what execution and model feedback describe.

use crate::annotations::paper_test_source;
use crate::store::{NewProgram, TaskInfo};
use anyhow::{Context, Result};
use ilf_data::mbpp::{Mbpp, Task};
use ilf_data::prompt::paper_prompt;
use ilf_data::records::{read_jsonl, ResultRow};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// Failing programs, each once per task, and the tasks they belong to.
#[derive(Debug, Clone, Default)]
pub struct Failures {
    pub tasks: Vec<TaskInfo>,
    pub programs: Vec<NewProgram>,
    /// Rows read from the file, passing ones included.
    pub rows: usize,
}

/// The task as the store keeps it.
pub fn task_info(task: &Task) -> TaskInfo {
    TaskInfo {
        task_id: task.task_id,
        text: Some(task.text.clone()),
        entry_point: Some(task.entry_point()),
        test_list: task.test_list.clone(),
        test_setup_code: task.test_setup_code.clone(),
    }
}

/// Reads `results` and keeps the rows that did not pass, dropping repeats of the same program
/// text for a task. Every task must be in `mbpp`; the error names the file, record and task id.
pub fn read_failures(results: &Path, mbpp: &Mbpp) -> Result<Failures> {
    let rows: Vec<ResultRow> = read_jsonl(results)
        .with_context(|| format!("cannot read the eval results {}", results.display()))?;
    let mut tasks = BTreeMap::new();
    let mut seen = HashSet::new();
    let mut programs = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        if row.passed {
            continue;
        }
        let task = mbpp.get(row.task_id).with_context(|| {
            format!(
                "{} record {}: task {} is not in {}; pass the MBPP file the results were made from (--mbpp)",
                results.display(),
                index + 1,
                row.task_id,
                mbpp.path().display()
            )
        })?;
        if !seen.insert((row.task_id, row.program.clone())) {
            continue;
        }
        let info = tasks.entry(row.task_id).or_insert_with(|| task_info(task));
        let paper = paper_prompt(task);
        let prompt = if row.program.starts_with(&paper) {
            paper
        } else {
            row.extra
                .get("prompt")
                .and_then(|p| p.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let sample = ["sample_index", "sample"]
            .iter()
            .find_map(|key| row.extra.get(*key)?.as_u64());
        programs.push(NewProgram {
            task_id: row.task_id,
            program: row.program.clone(),
            prompt,
            test: paper_test_source(
                &info.test_list,
                info.entry_point.as_deref().unwrap_or_default(),
            ),
            verdict: Some(row.outcome.clone()),
            sample,
            origin: format!("{}:{}", results.display(), index + 1),
        });
    }
    Ok(Failures {
        tasks: tasks.into_values().collect(),
        programs,
        rows: rows.len(),
    })
}
