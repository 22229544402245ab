//! Truncation on real model output: the 195 incorrect CodeGen-Mono 6.1B samples of the paper's
//! annotation file (`original_model_completion`, prompt included).

use ilf_data::{
    records,
    truncate::{stop_index, truncate_completion},
};
use serde_json::Value;
use std::path::Path;

/// (task id, completion after the prompt) for every annotation row.
fn completions() -> Vec<(u64, String)> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/surge_annotations.jsonl");
    let rows: Vec<Value> = records::read_jsonl(&path).unwrap();
    rows.iter()
        .map(|row| {
            let prompt = row["prompt"].as_str().unwrap();
            let full = row["original_model_completion"].as_str().unwrap();
            let body = full
                .strip_prefix(prompt)
                .expect("the sample starts with its prompt");
            (row["task_id"].as_u64().unwrap(), body.to_string())
        })
        .collect()
}

#[test]
fn streaming_agrees_with_truncation_on_real_samples() {
    for (id, body) in completions() {
        let kept = truncate_completion(&body);
        assert!(body.starts_with(kept), "task {id}");
        let full = stop_index(&body);
        // Every line end, and every 5th character: a stop, once seen, never moves.
        let ends = body
            .char_indices()
            .filter(|&(i, c)| c == '\n' || i % 5 == 0);
        for (i, _) in ends {
            if let Some(stop) = stop_index(&body[..i]) {
                assert_eq!(Some(stop), full, "task {id}: prefix of {i} bytes");
            }
        }
        if let Some(stop) = full {
            assert!(kept.len() <= stop, "task {id}");
        }
    }
}

/// These samples were stored after the authors' truncation, so ours must drop nothing from them
/// but blank lines, except where theirs kept junk: a stray `'''` after task 634's function.
#[test]
fn drops_only_what_the_authors_left_as_junk() {
    let mut dropped_code = Vec::new();
    for (id, body) in completions() {
        let dropped = &body[truncate_completion(&body).len()..];
        if !dropped.trim().is_empty() {
            dropped_code.push((id, dropped.trim().to_string()));
        }
    }
    assert_eq!(dropped_code, vec![(634, "'''".to_string())]);
}

/// Hand-written completions in the shapes models produce (`tests/fixtures/completions.txt`,
/// cases headed `##### name`): what is kept and what is dropped, so a rule change shows in review.
#[test]
fn truncation_of_fixture_completions() {
    let fixture = include_str!("fixtures/completions.txt");
    let mut text = String::new();
    for case in fixture.split("##### ").filter(|case| !case.is_empty()) {
        let (name, completion) = case.split_once('\n').unwrap();
        let completion = if name.starts_with("CRLF") {
            completion.replace('\n', "\r\n")
        } else {
            completion.to_string()
        };
        let kept = truncate_completion(&completion);
        let dropped = &completion[kept.len()..];
        text.push_str(&format!(
            "===== {name} =====\n{}\n----- dropped -----\n{}",
            kept.escape_debug(),
            dropped.escape_debug()
        ));
        text.push('\n');
    }
    insta::assert_snapshot!("truncation_of_fixture_completions", text);
}
