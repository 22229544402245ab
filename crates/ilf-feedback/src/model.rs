//! Model-written feedback: the paper's InstructGPT ablation (p.7 Table 4) with a local model.
//!
//! The paper does not publish its InstructGPT prompt (ilf-method.md §3.2), so this one is ours,
//! kept short for small instruct models. It is a ChatML conversation (Qwen2.5's chat format):
//!
//! 1. **system**: [`SYSTEM`], the annotators' instructions (p.16 Fig. 6) in one paragraph.
//! 2. **few-shot examples**, `shots` of them (default 2), each a user turn ([`user_message`]: the
//!    failing program and the task's asserts) answered by the human annotator's feedback.
//!    Examples come from human annotations (the paper's `surge_annotations.jsonl` or an
//!    `ilf annotate export`) **outside the evaluation split** (MBPP_Test, tasks 11–110, is never
//!    used) and never from the task being described. They are the eligible annotations with the
//!    shortest program plus feedback, so the choice is deterministic and the prompt stays small.
//! 3. **the failing program** as a last user turn; the model's answer, trimmed, is the feedback.
//!
//! Sampling is greedy by default (temperature 0), with a seed per task for other temperatures.
//! The output records are [`AnnotationRecord`]s like every source's, with `ilf.source = "model"`
//! and `ilf.model` naming the model.

use crate::annotations::{AnnotationRecord, FeedbackSource, Provenance};
use crate::failures::Failures;
use anyhow::{anyhow, Result};
use ilf_data::mbpp::Mbpp;
use ilf_data::split::Split;
use ilf_lm::sampling::{GenRequest, Generator, NoStop, SamplingParams};
use ilf_lm::serve::chat::ChatTemplate;
use ilf_lm::serve::protocol::{ChatContent, ChatMessage};

/// The instructions the model gets, condensed from the annotators' (p.16 Fig. 6).
pub const SYSTEM: &str =
    "You review Python programs that fail their unit tests. Reply with 1 to 4 \
sentences of feedback: say what is wrong with the program and how to fix it. Describe the fix in \
words; do not write code or repeat whole lines of the program.";

/// How to ask the model.
#[derive(Debug, Clone)]
pub struct ModelFeedbackConfig {
    /// Recorded as `ilf.model`.
    pub model: String,
    /// Few-shot examples per prompt.
    pub shots: usize,
    pub params: SamplingParams,
    pub seed: u64,
}

/// A user turn: the failing program and the tests it must pass.
pub fn user_message(program: &str, tests: &[String]) -> String {
    format!(
        "This program fails its tests.\n\n```python\n{}\n```\n\nTests:\n{}\n\nWhat is wrong, and how should it be fixed?",
        program.replace("\r\n", "\n").trim_end(),
        tests.join("\n")
    )
}

/// Annotations usable as examples: human, outside MBPP_Test, with feedback; shortest first.
pub fn eligible_examples(annotations: &[AnnotationRecord]) -> Vec<&AnnotationRecord> {
    let test_split = Split::Test.ids();
    let mut eligible: Vec<&AnnotationRecord> = annotations
        .iter()
        .filter(|a| !test_split.contains(&a.task_id))
        .filter(|a| {
            a.ilf
                .as_ref()
                .is_none_or(|p| p.source == FeedbackSource::Human)
        })
        .filter(|a| !a.feedback.trim().is_empty())
        .collect();
    eligible.sort_by_key(|a| {
        (
            a.original_model_completion.len() + a.feedback.len(),
            a.task_id,
        )
    });
    eligible
}

/// The prompt for one failing program: system, `examples` (user, feedback) pairs, the program.
pub fn feedback_prompt(
    template: &ChatTemplate,
    examples: &[(String, String)],
    target: &str,
) -> Result<String> {
    let message = |role: &str, text: &str| ChatMessage {
        role: role.to_string(),
        content: ChatContent::Text(text.to_string()),
    };
    let mut messages = vec![message("system", SYSTEM)];
    for (user, feedback) in examples {
        messages.push(message("user", user));
        messages.push(message("assistant", &feedback.replace("\r\n", "\n")));
    }
    messages.push(message("user", target));
    template
        .render(&messages)
        .map_err(|e| anyhow!("cannot build the feedback prompt: {}", e.message))
}

/// Writes feedback for every failing program with `generator`. Examples are taken from
/// `annotations` as the module documentation says; their tests come from `mbpp`.
pub fn model_feedback(
    generator: &dyn Generator,
    template: &ChatTemplate,
    failures: &Failures,
    annotations: &[AnnotationRecord],
    mbpp: &Mbpp,
    config: &ModelFeedbackConfig,
) -> Result<Vec<AnnotationRecord>> {
    let eligible = eligible_examples(annotations);
    if config.shots > 0 && eligible.len() <= config.shots {
        return Err(anyhow!(
            "only {} human annotations outside MBPP_Test (tasks 11-110) to draw {} examples from; pass \
             more annotations or fewer --shots",
            eligible.len(),
            config.shots
        ));
    }
    let mut requests = Vec::with_capacity(failures.programs.len());
    for program in &failures.programs {
        let examples: Vec<(String, String)> = eligible
            .iter()
            .filter(|a| a.task_id != program.task_id)
            .take(config.shots)
            .map(|a| {
                let tests = mbpp
                    .get(a.task_id)
                    .map(|t| t.test_list.clone())
                    .ok_or_else(|| {
                        anyhow!(
                            "few-shot example task {} is not in {}",
                            a.task_id,
                            mbpp.path().display()
                        )
                    })?;
                Ok((
                    user_message(&a.original_model_completion, &tests),
                    a.feedback.clone(),
                ))
            })
            .collect::<Result<_>>()?;
        let tests = mbpp
            .get(program.task_id)
            .map(|t| t.test_list.clone())
            .ok_or_else(|| {
                anyhow!(
                    "task {} is not in {}",
                    program.task_id,
                    mbpp.path().display()
                )
            })?;
        let prompt = feedback_prompt(template, &examples, &user_message(&program.program, &tests))?;
        requests.push(GenRequest::new(
            prompt,
            1,
            config.seed ^ u64::from(program.task_id),
            config.params,
        ));
    }
    let generations = generator.generate_all(&requests, &NoStop)?;
    Ok(failures
        .programs
        .iter()
        .zip(generations)
        .map(|(program, generated)| AnnotationRecord {
            task_id: program.task_id,
            prompt: program.prompt.clone(),
            test: program.test.clone(),
            feedback: generated
                .first()
                .map(|g| g.completion.trim().to_string())
                .unwrap_or_default(),
            completion: None,
            result: None,
            passed: None,
            unedited_annotator_completion: None,
            original_model_completion: program.program.clone(),
            refinement_edit_distance: None,
            worker_id: None,
            ilf: Some(Provenance {
                source: FeedbackSource::Model,
                model: Some(config.model.clone()),
                time_spent_s: None,
                edit_distance_max: None,
                review: None,
                verdict: program.verdict.clone(),
                sample: program.sample,
                created: None,
            }),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(task_id: u32, program: &str, feedback: &str) -> AnnotationRecord {
        AnnotationRecord {
            task_id,
            prompt: String::new(),
            test: String::new(),
            feedback: feedback.into(),
            completion: None,
            result: None,
            passed: None,
            unedited_annotator_completion: None,
            original_model_completion: program.into(),
            refinement_edit_distance: None,
            worker_id: None,
            ilf: None,
        }
    }

    #[test]
    fn examples_exclude_the_test_split_and_machine_feedback() {
        let mut execution = record(400, "x", "y");
        execution.ilf = Some(Provenance {
            source: FeedbackSource::Execution,
            model: None,
            time_spent_s: None,
            edit_distance_max: None,
            review: None,
            verdict: None,
            sample: None,
            created: None,
        });
        let all = vec![
            record(11, "a", "short"),
            record(110, "a", "short"),
            record(300, "a much longer program", "feedback"),
            record(111, "ab", "fb"),
            execution,
            record(500, "p", ""),
        ];
        let ids: Vec<u32> = eligible_examples(&all).iter().map(|a| a.task_id).collect();
        assert_eq!(ids, vec![111, 300]);
    }

    #[test]
    fn prompt_is_chatml_with_examples_before_the_program() {
        let template = ChatTemplate::from_jinja(None).unwrap();
        let examples = vec![(
            "EXAMPLE PROGRAM".to_string(),
            "It loops once too often.\r\nStop earlier.".to_string(),
        )];
        let prompt = feedback_prompt(&template, &examples, "TARGET").unwrap();
        assert_eq!(
            prompt,
            format!(
                "<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\nEXAMPLE PROGRAM<|im_end|>\n\
                 <|im_start|>assistant\nIt loops once too often.\nStop earlier.<|im_end|>\n\
                 <|im_start|>user\nTARGET<|im_end|>\n<|im_start|>assistant\n"
            )
        );
        let message = user_message(
            "def f():\r\n    return 1\n\n",
            &["assert f() == 2".to_string()],
        );
        assert_eq!(
            message,
            "This program fails its tests.\n\n```python\ndef f():\n    return 1\n```\n\nTests:\nassert f() == 2\n\n\
             What is wrong, and how should it be fixed?"
        );
    }
}
