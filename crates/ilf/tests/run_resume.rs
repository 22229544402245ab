//! `kill -9` of `ilf run` during training, during sampling and during evaluation, then a rerun:
//! the final report and every stage output equal those of an uninterrupted run with the same seed.

mod run_common;

use run_common::{numbers, outputs, run_to_end, spawn};
use std::path::Path;
use std::process::Child;
use std::time::Duration;

fn lines(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// Polls until `phase` holds, then SIGKILLs the run. Panics if the run ends first.
fn kill_when(child: &mut Child, what: &str, phase: impl Fn() -> bool) {
    loop {
        if phase() {
            child.kill().expect("SIGKILL the run");
            child.wait().unwrap();
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before it was {what}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn killed_during_training_sampling_and_evaluation_ends_with_the_same_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let reference_root = dir.path().join("uninterrupted");
    let reference = run_to_end(&reference_root);

    let root = dir.path().join("killed");

    // Training: π_Refine checkpoints every 20 steps; kill after the first checkpoint.
    let metrics = root.join("04-refiner/train/metrics.jsonl");
    let mut child = spawn(&root);
    kill_when(&mut child, "training π_Refine", || lines(&metrics) >= 22);
    assert!(!root.join("04-refiner/manifest.json").exists());
    assert!(root.join("04-refiner/train/checkpoint-00000020").is_dir());

    // Sampling: the zero-shot arm's test samples are streaming and evaluation has not begun.
    let samples = root.join("08-test/zero-shot/samples.jsonl");
    let eval_dir = root.join("08-test/zero-shot/eval");
    let mut child = spawn(&root);
    kill_when(&mut child, "sampling the test set", || {
        lines(&samples) >= 1 && !eval_dir.exists()
    });
    assert!(root.join("04-refiner/manifest.json").exists());
    // Resumed from the checkpoint: the log holds each step once, in order.
    let steps: Vec<u64> = std::fs::read_to_string(&metrics)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, (1..=steps.len() as u64).collect::<Vec<_>>());
    assert_eq!(steps.len(), 90);
    assert!(!root.join("08-test/zero-shot/manifest.json").exists());
    let samples_at_kill = lines(&samples);
    assert!(
        samples_at_kill < 32,
        "all 32 samples were drawn before the kill"
    );

    // Evaluation: the gold arm's test programs are being run.
    let results = root.join("08-test/mbpp-gold/eval/results.jsonl");
    let mut child = spawn(&root);
    kill_when(&mut child, "evaluating the gold arm", || {
        lines(&results) >= 1
    });
    assert!(!root.join("08-test/mbpp-gold/manifest.json").exists());
    assert_eq!(
        lines(&samples),
        32,
        "the rerun finished the zero-shot samples"
    );

    let resumed = run_to_end(&root);
    assert_eq!(numbers(&resumed), numbers(&reference));
    let (a, b) = (outputs(&reference_root), outputs(&root));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y, "stage output differs after the kills");
    }
}
