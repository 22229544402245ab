//! The paper's 195 annotations (`surge_annotations.jsonl`) against our schema, store and
//! distance definitions (ilf-method.md §8).

mod common;

use ilf_feedback::annotations::{
    body_after_signature, max_normalised_edit_distance, paper_edit_distance, paper_test_source,
    read_annotations, write_annotations,
};
use ilf_feedback::store::Store;
use serde_json::Value;

fn raw_rows() -> Vec<Value> {
    let text = std::fs::read_to_string(common::surge_path()).expect("read surge_annotations.jsonl");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_195_rows_round_trip_through_the_store_field_for_field() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("ilf.db")).unwrap();
    let records = read_annotations(&common::surge_path()).unwrap();
    assert_eq!(records.len(), 195);
    let summary = store.import_annotations(&records).unwrap();
    assert_eq!(
        (
            summary.tasks_added,
            summary.programs_added,
            summary.feedback_added
        ),
        (195, 195, 195)
    );

    // Importing again adds nothing.
    let again = store.import_annotations(&records).unwrap();
    assert_eq!(
        (
            again.programs_added,
            again.feedback_added,
            again.feedback_known
        ),
        (0, 0, 195)
    );
    assert_eq!(store.counts().unwrap().feedback, 195);
    assert_eq!(store.counts().unwrap().refinements, 195);

    let out = dir.path().join("export.jsonl");
    write_annotations(&out, &store.export().unwrap()).unwrap();
    let exported: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let original = raw_rows();
    assert_eq!(exported.len(), original.len());
    let mut nulls = 0;
    for (row, (want, got)) in original.iter().zip(&exported).enumerate() {
        assert_eq!(
            want,
            got,
            "row {} (task {}) differs after the round trip",
            row + 1,
            want["task_id"]
        );
        nulls += want
            .as_object()
            .unwrap()
            .values()
            .filter(|v| v.is_null())
            .count();
    }
    // The file's nulls (`result` in 141 rows, `worker_id` in 54) survived too.
    assert_eq!(nulls, 141 + 54);
    store.check_integrity().unwrap();
}

#[test]
fn stored_edit_distance_is_levenshtein_over_the_original_body() {
    let records = read_annotations(&common::surge_path()).unwrap();
    for record in &records {
        let stored = record.refinement_edit_distance.unwrap();
        let ours = paper_edit_distance(
            &record.original_model_completion,
            &record.prompt,
            record.completion.as_deref().unwrap(),
        );
        assert!(
            (stored - ours).abs() < 1e-4,
            "task {}: stored {stored}, computed {ours}",
            record.task_id
        );
    }
    // The paper's < 50% filter does not hold under either definition (§8): 51 rows at >= 0.5 as
    // stored, 5 with the full texts normalised by the longer one.
    let stored_high = records
        .iter()
        .filter(|r| r.refinement_edit_distance.unwrap() >= 0.5)
        .count();
    let max_high = records
        .iter()
        .filter(|r| {
            max_normalised_edit_distance(
                &r.original_model_completion,
                r.unedited_annotator_completion.as_deref().unwrap(),
            ) >= 0.5
        })
        .count();
    assert_eq!((stored_high, max_high), (51, 5));
}

#[test]
fn completion_is_the_text_after_the_last_signature() {
    let records = read_annotations(&common::surge_path()).unwrap();
    let differing: Vec<u32> = records
        .iter()
        .filter(|r| {
            body_after_signature(r.unedited_annotator_completion.as_deref().unwrap())
                != r.completion.as_deref().unwrap()
        })
        .map(|r| r.task_id)
        .collect();
    // §8 counts 190 exact matches with a looser signature pattern; with "the last line that
    // starts with `def ` and ends with `:`" these six differ (their `completion` starts inside
    // a helper function or the annotator moved the signature).
    assert_eq!(differing, vec![671, 129, 702, 905, 926, 949]);
}

#[test]
fn generated_test_source_matches_the_paper_file() {
    let mbpp = common::mbpp();
    let records = read_annotations(&common::surge_path()).unwrap();
    let mismatched: Vec<u32> = records
        .iter()
        .filter(|r| {
            let task = mbpp.get(r.task_id).unwrap();
            paper_test_source(&task.test_list, &task.entry_point()) != r.test
        })
        .map(|r| r.task_id)
        .collect();
    // The paper's file was edited by hand for three tasks: 326 and 679 lack the assert messages,
    // 301 indents with eight spaces instead of a tab. Every other row is reproduced exactly.
    assert_eq!(
        mismatched,
        vec![326, 679, 301],
        "the `test` field differs for these tasks"
    );
}
