//! `ilf eval` end to end: the real binary, the real sandbox, real MBPP, real files.

use serde_json::{json, Value};
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn mbpp() -> PathBuf {
    std::env::var_os("ILF_MBPP")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mbpp.jsonl")
        })
}

fn ilf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ilf"))
        .args(args)
        .arg("--mbpp")
        .arg(mbpp())
        .env("ILF_QUIET", "1")
        .output()
        .expect("the ilf binary runs")
}

fn read_rows(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn write_samples(path: &Path, rows: &[Value]) {
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// Task 11's gold body, as a completion after the paper prompt.
const TASK11_BODY: &str = "    for i in range(len(s)):\n        if (s[i] == ch):\n            s = s[0 : i] + s[i + 1:]\n            break\n    for i in range(len(s) - 1,-1,-1):\n        if (s[i] == ch):\n            s = s[0 : i] + s[i + 1:]\n            break\n    return s\n";

fn mixed_samples() -> Vec<Value> {
    vec![
        json!({"task_id": 11, "completion": TASK11_BODY, "id": "right"}),
        json!({"task_id": 11, "completion": "    return s[1:-1]\n", "id": "wrong"}),
        json!({"task_id": 11, "completion": "    return (\n", "id": "syntax"}),
        json!({"task_id": 12, "program": "def sort_matrix(M):\n    return sorted(M, key=sum)\n", "id": "whole"}),
        json!({"task_id": 12, "program": "import sys\nsys.exit(0)\n", "id": "exit"}),
    ]
}

#[test]
fn gold_programs_pass_and_summary_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gold");
    let done = ilf(&[
        "eval",
        "--gold",
        "--tasks",
        "11-15,56",
        "--timeout",
        "10",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let rows = read_rows(&out.join("results.jsonl"));
    assert_eq!(rows.len(), 6);
    // Task 56's entry point is named `check`, which the authors' harness could never pass.
    assert!(rows.iter().all(|r| r["passed"] == true), "{rows:#?}");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["pass_at_k"][0]["k"], 1);
    assert_eq!(summary["pass_at_k"][0]["value"], 1.0);
    assert!(summary["isolation_summary"]
        .as_str()
        .unwrap()
        .contains("isolation"));
}

#[test]
fn samples_get_per_test_verdicts_and_keep_their_fields() {
    let dir = tempfile::tempdir().unwrap();
    let samples = dir.path().join("samples.jsonl");
    write_samples(&samples, &mixed_samples());
    let out = dir.path().join("eval");
    let done = ilf(&[
        "eval",
        samples.to_str().unwrap(),
        "--k",
        "1,2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let rows = read_rows(&out.join("results.jsonl"));
    let by_id = |id: &str| rows.iter().find(|r| r["id"] == id).unwrap().clone();
    assert_eq!(by_id("right")["status"], "passed");
    let wrong = by_id("wrong");
    assert_eq!(wrong["status"], "failed");
    assert_eq!(wrong["tests"][0]["status"], "failed");
    assert_eq!(wrong["tests"][0]["expected"], "'heo'");
    assert_eq!(wrong["tests"][0]["got"], "'ell'");
    assert_eq!(by_id("syntax")["status"], "syntax_error");
    assert_eq!(by_id("whole")["status"], "passed");
    // An early exit is never a pass.
    assert_eq!(by_id("exit")["passed"], false);
    assert_eq!(by_id("right")["completion"], TASK11_BODY);
    // Results come back in input order, each with its position.
    let order: Vec<u64> = rows
        .iter()
        .map(|r| r["input_index"].as_u64().unwrap())
        .collect();
    assert_eq!(order, vec![0, 1, 2, 3, 4]);
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    // Task 11: 1 of 3 passes; task 12: 1 of 2. pass@1 = (1/3 + 1/2) / 2.
    let p1 = summary["pass_at_k"][0]["value"].as_f64().unwrap();
    assert!((p1 - (1.0 / 3.0 + 0.5) / 2.0).abs() < 1e-12, "{p1}");
    assert_eq!(summary["status_counts"]["passed"], 2);
}

#[test]
fn an_interrupted_evaluation_resumes_without_redoing_or_losing_results() {
    let dir = tempfile::tempdir().unwrap();
    let samples = dir.path().join("samples.jsonl");
    write_samples(&samples, &mixed_samples());
    let out = dir.path().join("eval");
    assert!(ilf(&[
        "eval",
        samples.to_str().unwrap(),
        "--out",
        out.to_str().unwrap()
    ])
    .status
    .success());
    let full = read_rows(&out.join("results.jsonl"));

    // What a killed run leaves: two complete results (out of order) and half a line.
    let text = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let partial = format!(
        "{}\n{}\n{}",
        lines[3],
        lines[1],
        &lines[0][..lines[0].len() / 2]
    );
    std::fs::write(out.join("results.jsonl"), partial).unwrap();
    std::fs::remove_file(out.join("summary.json")).unwrap();

    let done = Command::new(env!("CARGO_BIN_EXE_ilf"))
        .args([
            "eval",
            samples.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--mbpp",
        ])
        .arg(mbpp())
        .output()
        .unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(String::from_utf8_lossy(&done.stderr).contains("resuming: 2 results"));
    let resumed = read_rows(&out.join("results.jsonl"));
    assert_eq!(resumed.len(), full.len());
    for (a, b) in resumed.iter().zip(&full) {
        assert_eq!(a["input_index"], b["input_index"]);
        assert_eq!(a["status"], b["status"]);
    }
    // The kept results were not run again: their durations are the ones written first.
    assert_eq!(resumed[3]["duration_s"], full[3]["duration_s"]);
}

#[test]
fn bad_input_is_named_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"task_id\": 11, \"completion\": \"x\"}\n{\"task_id\": 12, \"compl\n",
    )
    .unwrap();
    let done = ilf(&[
        "eval",
        bad.to_str().unwrap(),
        "--out",
        dir.path().join("o1").to_str().unwrap(),
    ]);
    assert!(!done.status.success());
    let err = String::from_utf8_lossy(&done.stderr);
    assert!(err.contains("bad.jsonl") && err.contains('2'), "{err}");
    assert!(!dir.path().join("o1/results.jsonl").exists());

    let unknown = dir.path().join("unknown.jsonl");
    std::fs::write(&unknown, "{\"task_id\": 5000, \"completion\": \"x\"}\n").unwrap();
    let done = ilf(&[
        "eval",
        unknown.to_str().unwrap(),
        "--out",
        dir.path().join("o2").to_str().unwrap(),
    ]);
    assert!(!done.status.success());
    assert!(String::from_utf8_lossy(&done.stderr).contains("unknown task id 5000"));

    let latin1 = dir.path().join("latin1.jsonl");
    std::fs::write(&latin1, b"{\"task_id\": 11, \"completion\": \"caf\xe9\"}\n").unwrap();
    let done = ilf(&[
        "eval",
        latin1.to_str().unwrap(),
        "--out",
        dir.path().join("o3").to_str().unwrap(),
    ]);
    assert!(!done.status.success());
    assert!(String::from_utf8_lossy(&done.stderr).contains("UTF-8"));
}

#[test]
fn oversized_programs_are_refused_and_other_results_kept() {
    let dir = tempfile::tempdir().unwrap();
    let samples = dir.path().join("big.jsonl");
    let huge = format!("x = '{}'\n", "a".repeat(100_000));
    write_samples(
        &samples,
        &[
            json!({"task_id": 11, "program": huge}),
            json!({"task_id": 11, "completion": TASK11_BODY}),
        ],
    );
    let out = dir.path().join("eval");
    assert!(ilf(&[
        "eval",
        samples.to_str().unwrap(),
        "--k",
        "1",
        "--out",
        out.to_str().unwrap()
    ])
    .status
    .success());
    let rows = read_rows(&out.join("results.jsonl"));
    assert_eq!(rows[0]["status"], "error");
    assert_eq!(rows[0]["error"]["type"], "ProgramTooLarge");
    assert_eq!(rows[1]["status"], "passed");
}

#[test]
fn a_results_directory_refuses_a_different_input() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    write_samples(&a, &[json!({"task_id": 11, "completion": TASK11_BODY})]);
    write_samples(
        &b,
        &[json!({"task_id": 11, "completion": "    return s\n"})],
    );
    let out = dir.path().join("eval");
    assert!(ilf(&[
        "eval",
        a.to_str().unwrap(),
        "--k",
        "1",
        "--out",
        out.to_str().unwrap()
    ])
    .status
    .success());
    let done = ilf(&[
        "eval",
        b.to_str().unwrap(),
        "--k",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!done.status.success());
    assert!(String::from_utf8_lossy(&done.stderr).contains("different evaluation"));
}
