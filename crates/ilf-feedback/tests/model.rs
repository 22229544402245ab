//! Model-written feedback with the real default model (`ilf models fetch`; set
//! `ILF_SKIP_REAL_MODEL=1` to skip), few-shot from the paper's annotations.

mod common;

use ilf_feedback::annotations::{read_annotations, FeedbackSource};
use ilf_feedback::failures::{task_info, Failures};
use ilf_feedback::model::{model_feedback, ModelFeedbackConfig};
use ilf_feedback::store::NewProgram;
use ilf_lm::sampling::{LocalGenerator, SamplingParams};
use ilf_lm::serve::chat::ChatTemplate;
use ilf_lm::{registry, LoadMode};

#[test]
fn a_real_model_writes_feedback_records_for_failing_programs() {
    if std::env::var("ILF_SKIP_REAL_MODEL").is_ok_and(|v| v == "1") {
        return;
    }
    let entry = registry::find(registry::DEFAULT).unwrap();
    let path = ilf_lm::fetch::model_path(entry);
    assert!(
        path.is_file(),
        "real-model test: {} is missing; run `ilf models fetch` (or set ILF_SKIP_REAL_MODEL=1 to skip these tests)",
        path.display()
    );
    let mbpp = common::mbpp();
    let task = mbpp.get(11).unwrap();
    let program = format!(
        "{}    return s.replace(ch, '', 1)\n",
        ilf_data::prompt::paper_prompt(task)
    );
    let pool = ilf_sandbox::Pool::start(ilf_sandbox::PoolConfig::default()).unwrap();
    let verdict = pool.run(&ilf_sandbox::Job {
        program: program.clone(),
        setup: String::new(),
        tests: task.test_list.clone(),
        timeout: None,
    });
    assert!(!verdict.passed());
    let failures = Failures {
        tasks: vec![task_info(task)],
        programs: vec![NewProgram {
            task_id: 11,
            program: program.clone(),
            prompt: ilf_data::prompt::paper_prompt(task),
            test: String::new(),
            verdict: Some(verdict.clone()),
            sample: Some(4),
            origin: "test".into(),
        }],
        rows: 1,
    };
    let annotations = read_annotations(&common::surge_path()).unwrap();

    let loaded = ilf_lm::load(
        path.to_str().unwrap(),
        &ilf_lm::device::parse("cpu").unwrap(),
        LoadMode::Inference,
    )
    .unwrap();
    let template =
        ChatTemplate::from_jinja(loaded.info.chat_template.as_deref()).expect("a ChatML model");
    let generator = LocalGenerator {
        model: &loaded.model,
        tokenizer: &loaded.tokenizer,
        eos_token_ids: loaded.info.eos_token_ids.clone(),
        batch_size: 1,
    };
    let config = ModelFeedbackConfig {
        model: entry.name.to_string(),
        shots: 2,
        params: SamplingParams {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            max_tokens: 48,
        },
        seed: 0,
    };
    let records = model_feedback(
        &generator,
        &template,
        &failures,
        &annotations,
        &mbpp,
        &config,
    )
    .unwrap();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert!(
        record.feedback.split_whitespace().count() >= 3,
        "feedback too short: {:?}",
        record.feedback
    );
    assert!(
        !record.feedback.contains("<|im_"),
        "chat markup leaked: {:?}",
        record.feedback
    );
    assert_eq!(record.original_model_completion, program);
    let ilf = record.ilf.as_ref().unwrap();
    assert_eq!(
        (ilf.source, ilf.model.as_deref(), ilf.sample),
        (FeedbackSource::Model, Some(entry.name), Some(4))
    );
    assert_eq!(ilf.verdict.as_ref(), Some(&verdict));
    eprintln!("model feedback for task 11: {}", record.feedback);
}
