//! Shared by the `ilf run` tests: the real binary on the `tiny` preset, real MBPP, the paper's
//! annotations, the real sandbox.

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

fn shared(file: &str, var: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data")
            .join(file)
    })
}

pub fn mbpp() -> PathBuf {
    shared("mbpp.jsonl", "ILF_MBPP")
}

pub fn command(out: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ilf"));
    cmd.args(["run", "--preset", "tiny", "--out"])
        .arg(out)
        .arg("--mbpp")
        .arg(mbpp())
        .arg("--annotations")
        .arg(shared("surge_annotations.jsonl", "ILF_ANNOTATIONS"))
        .env_remove("ILF_QUIET")
        .env_remove("ILF_JSON");
    cmd
}

/// Runs `ilf run --json` to the end and returns its report JSON.
pub fn run_to_end(out: &Path) -> Value {
    let done: Output = command(out).arg("--json").output().expect("ilf runs");
    assert!(
        done.status.success(),
        "ilf run failed: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    serde_json::from_slice(&done.stdout).expect("--json prints the report as JSON")
}

/// Starts `ilf run` in the background.
pub fn spawn(out: &Path) -> Child {
    command(out)
        .arg("--quiet")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ilf starts")
}

/// The report without what legitimately differs between two runs (wall times, throughputs,
/// the run directory's name).
pub fn numbers(report: &Value) -> Value {
    let mut r = report.clone();
    let obj = r.as_object_mut().expect("the report is an object");
    obj.remove("stages");
    obj.remove("run");
    if let Some(rows) = obj.get_mut("refiner").and_then(Value::as_array_mut) {
        for row in rows {
            row.as_object_mut().expect("object").remove("tokens_per_s");
        }
    }
    r
}

/// The sha256 of every stage output that must not depend on interruptions (samples, training
/// data, trained models; not verdict files, which record each program's run time), by path
/// inside the run directory, from the manifests.
pub fn outputs(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for manifest in manifests(root) {
        let m: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
        for (path, sha) in m["outputs"].as_object().unwrap() {
            if ["samples.jsonl", "train.jsonl", "/hf"]
                .iter()
                .any(|end| path.ends_with(end))
            {
                out.push((path.clone(), sha.as_str().unwrap().to_string()));
            }
        }
    }
    out.sort();
    out
}

/// Every manifest under `root`.
pub fn manifests(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.file_name().is_some_and(|n| n == "manifest.json") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}
