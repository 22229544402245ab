//! Execution feedback from real verdicts: programs run in the sandbox, results written as
//! `ilf eval` writes them, then read back and described.

mod common;

use ilf_data::records::{write_jsonl, ResultRow};
use ilf_feedback::annotations::FeedbackSource;
use ilf_feedback::execution::{describe_failure, execution_feedback};
use ilf_feedback::failures::read_failures;
use ilf_sandbox::{Job, Pool, PoolConfig};
use std::time::Duration;

#[test]
fn real_verdicts_become_plain_feedback_records() {
    let mbpp = common::mbpp();
    let task = mbpp.get(11).unwrap();
    let prompt = ilf_data::prompt::paper_prompt(task);
    let pool = Pool::start(PoolConfig::default()).unwrap();
    let bodies = [
        ("wrong value", "    return s.replace(ch, '', 1)\n"),
        ("exception", "    return s[len(s) + 10] + 1 / 0\n"),
        ("syntax error", "    return s.replace(ch, '',\n"),
        ("endless loop", "    while True:\n        pass\n"),
        (
            "correct",
            "    return s.replace(ch, '', 1)[::-1].replace(ch, '', 1)[::-1]\n",
        ),
    ];
    let mut rows = Vec::new();
    for (index, (_, body)) in bodies.iter().enumerate() {
        let program = format!("{prompt}{body}");
        let outcome = pool.run(&Job {
            program: program.clone(),
            setup: String::new(),
            tests: task.test_list.clone(),
            timeout: Some(Duration::from_secs(1)),
        });
        let mut extra = serde_json::Map::new();
        extra.insert("sample_index".into(), index.into());
        rows.push(ResultRow::new(11, extra, program, outcome));
    }
    // The same failing program sampled twice is described once.
    rows.push(rows[0].clone());
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results.jsonl");
    write_jsonl(&results, &rows).unwrap();

    let failures = read_failures(&results, &mbpp).unwrap();
    assert_eq!(failures.rows, 6);
    let records = execution_feedback(&failures);
    assert_eq!(records.len(), 4, "four distinct failing programs");
    let text = |i: usize| records[i].feedback.as_str();

    assert!(
        text(0).contains("The test `assert remove_Occ(\"hello\",\"l\") == \"heo\"` failed: expected 'heo', got 'helo'."),
        "{}",
        text(0)
    );
    assert!(text(0).ends_with("0 of 3 tests passed."), "{}", text(0));
    assert!(
        text(1).contains("raised IndexError: string index out of range."),
        "{}",
        text(1)
    );
    assert!(
        text(1).contains("line 8, in remove_Occ: return s[len(s) + 10] + 1 / 0"),
        "the traceback points into the program: {}",
        text(1)
    );
    assert!(
        text(2).starts_with("The program does not parse: SyntaxError"),
        "{}",
        text(2)
    );
    assert!(
        text(3).starts_with("The program did not finish within the time limit and was stopped."),
        "{}",
        text(3)
    );

    for (index, record) in records.iter().enumerate() {
        assert_eq!(record.prompt, prompt);
        assert!(record.original_model_completion.starts_with(&prompt));
        assert!(record.test.starts_with("def check(candidate):"));
        assert_eq!(
            (
                record.completion.as_ref(),
                record.passed,
                record.worker_id.as_ref()
            ),
            (None, None, None)
        );
        let ilf = record.ilf.as_ref().unwrap();
        assert_eq!(ilf.source, FeedbackSource::Execution);
        assert_eq!(ilf.sample, Some(index as u64));
        assert_eq!(
            record.feedback,
            describe_failure(ilf.verdict.as_ref().unwrap())
        );
    }
}
