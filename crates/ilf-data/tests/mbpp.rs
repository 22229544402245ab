//! Checks against the real data: MBPP (`$ILF_MBPP`, else `<root>/shared/data/mbpp.jsonl` beside
//! the clone) and the paper's annotation file next to it.

use ilf_data::{mbpp::Mbpp, prompt, records, split::Split};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn shared_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data")
}

fn mbpp() -> Mbpp {
    let path = std::env::var_os("ILF_MBPP")
        .map(PathBuf::from)
        .unwrap_or_else(|| shared_data().join("mbpp.jsonl"));
    Mbpp::load(&path).unwrap_or_else(|e| panic!("{e} (set ILF_MBPP to the original mbpp.jsonl)"))
}

#[test]
fn loads_all_tasks_by_id() {
    let mbpp = mbpp();
    assert_eq!(mbpp.tasks().len(), 974);
    assert_eq!(mbpp.get(11).unwrap().task_id, 11);
    assert!(mbpp.get(0).is_none() && mbpp.get(975).is_none());
    assert_eq!(
        mbpp.tasks()
            .iter()
            .filter(|t| !t.test_setup_code.is_empty())
            .count(),
        2
    );
    assert_eq!(
        mbpp.tasks()
            .iter()
            .filter(|t| !t.challenge_test_list.is_empty())
            .count(),
        11
    );
}

#[test]
fn task_11_prompt_is_the_paper_example() {
    let mbpp = mbpp();
    assert_eq!(
        prompt::paper_prompt(mbpp.get(11).unwrap()),
        "\"\"\"\nWrite a python function to remove first and last occurrence of a given character from the \
         string.\n\n>>> Example: remove_Occ(\"hello\",\"l\") = \"heo\"\n\"\"\"\n\ndef remove_Occ(s,ch):\n"
    );
}

#[test]
fn prompts_match_the_annotation_file() {
    let mbpp = mbpp();
    let rows: Vec<Value> =
        records::read_jsonl(&shared_data().join("surge_annotations.jsonl")).unwrap();
    assert_eq!(rows.len(), 195);
    let mut equal = 0;
    let mut different = Vec::new();
    for row in &rows {
        let id = row["task_id"].as_u64().unwrap() as u32;
        if prompt::paper_prompt(mbpp.get(id).unwrap()) == row["prompt"].as_str().unwrap() {
            equal += 1;
        } else {
            different.push(id);
        }
    }
    assert_eq!(
        different,
        vec![260, 679],
        "only the two mojibake rows may differ"
    );
    assert_eq!(equal, 193);
}

#[test]
fn skipped_test_tasks_get_their_real_signature() {
    let mbpp = mbpp();
    let expected = [
        (14, "def find_Volume(l,b,h) :"),
        (32, "def max_Prime_Factors (n):"),
        (36, "def find_Nth_Digit(p,q,N) :"),
        (57, "def find_Max_Num(arr,n) :"),
        (77, "def is_Diff(n):"),
        (107, "def count_Hexadecimal(L,R) :"),
    ];
    for (id, signature) in expected {
        let prompt = prompt::paper_prompt(mbpp.get(id).unwrap());
        assert!(
            prompt.ends_with(&format!("\n{signature}\n")),
            "task {id}: {prompt}"
        );
    }
    // Tests whose first call is not the entry point.
    assert_eq!(prompt::entry_point(mbpp.get(769).unwrap()), "Diff");
    assert_eq!(prompt::entry_point(mbpp.get(912).unwrap()), "lobb_num");
    assert_eq!(prompt::entry_point(mbpp.get(927).unwrap()), "max_height");
}

#[test]
fn every_prompt_ends_with_a_signature_line() {
    let mbpp = mbpp();
    for task in mbpp.tasks() {
        let prompt = prompt::paper_prompt(task);
        let last = prompt.trim_end_matches('\n').rsplit('\n').next().unwrap();
        assert!(
            !prompt.contains('\r'),
            "task {}: \\r left in the prompt",
            task.task_id
        );
        assert!(prompt.ends_with(":\n"), "task {}: {last:?}", task.task_id);
        assert!(
            prompt.contains(&format!("def {}", prompt::entry_point(task))),
            "task {}",
            task.task_id
        );
    }
}

/// The gold program, cut after the signature, is a completion: the program the sandbox would run
/// for it must be the gold program itself (modulo line endings and trailing spaces).
#[test]
fn gold_body_as_completion_rebuilds_the_gold_program() {
    let mbpp = mbpp();
    let mut changed = Vec::new();
    for task in mbpp.tasks() {
        let prefix = prompt::code_prefix(task).unwrap();
        let body = task.code[prefix.len()..].replace("\r\n", "\n");
        let body = body.split_once('\n').map_or("", |(_, rest)| rest);
        let program = trim_lines(&task.program(body));
        if !program.ends_with(&trim_lines(&task.code)) {
            changed.push(task.task_id);
        }
    }
    // Task 966 has a comment after its signature, which the prompt (ending at the `:`) drops.
    assert_eq!(changed, vec![966], "gold programs changed by truncation");
}

fn trim_lines(text: &str) -> String {
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_string()
}

/// All 974 prompts, one snapshot per paper split, so a template change shows in review.
#[test]
fn prompt_snapshots() {
    let mbpp = mbpp();
    for split in [Split::Prompt, Split::Test, Split::Refine, Split::Train] {
        let mut text = String::new();
        for id in split.ids() {
            text.push_str(&format!(
                "===== task {id} =====\n{}",
                prompt::paper_prompt(mbpp.get(id).unwrap())
            ));
        }
        insta::assert_snapshot!(format!("prompts_{split}"), text);
    }
}

/// Loads `lines` (the real file's lines, edited) from a temporary `mbpp.jsonl`.
fn load_edited(edit: impl FnOnce(&mut Vec<Vec<u8>>)) -> String {
    let path = std::env::var_os("ILF_MBPP")
        .map(PathBuf::from)
        .unwrap_or_else(|| shared_data().join("mbpp.jsonl"));
    let bytes = std::fs::read(path).unwrap();
    let mut lines: Vec<Vec<u8>> = bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    edit(&mut lines);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mbpp.jsonl");
    std::fs::write(&file, lines.join(&b'\n')).unwrap();
    Mbpp::load(&file).unwrap_err().to_string()
}

#[test]
fn load_rejects_damaged_files_and_says_where() {
    let err = load_edited(|lines| {
        lines.pop();
    });
    assert!(err.contains("expected 974 MBPP tasks, found 973"), "{err}");
    let err = load_edited(|lines| lines[4] = b"{\"task_id\": 5,".to_vec());
    assert!(err.contains("mbpp.jsonl:5: invalid JSON"), "{err}");
    let err = load_edited(|lines| lines[6].insert(10, 0xff));
    assert!(err.contains("mbpp.jsonl:7: not valid UTF-8"), "{err}");
    let err = load_edited(|lines| {
        let mut task: Value = serde_json::from_slice(&lines[1]).unwrap();
        task["task_id"] = 1.into();
        lines[1] = serde_json::to_vec(&task).unwrap();
    });
    assert!(err.contains("task id 1 appears more than once"), "{err}");
    let err = load_edited(|lines| {
        let mut task: Value = serde_json::from_slice(&lines[20]).unwrap();
        task["test_list"].as_array_mut().unwrap().pop();
        lines[20] = serde_json::to_vec(&task).unwrap();
    });
    assert!(err.contains("task 21: expected 3 tests, found 2"), "{err}");
    let err = load_edited(|lines| {
        let mut task: Value = serde_json::from_slice(&lines[10]).unwrap();
        task["code"] = "def other(s, ch):\r\n    return s".into();
        lines[10] = serde_json::to_vec(&task).unwrap();
    });
    assert!(
        err.contains("task 11") && err.contains("def remove_Occ("),
        "{err}"
    );
}
