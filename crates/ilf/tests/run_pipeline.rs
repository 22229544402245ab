//! `ilf run` end to end on the tiny preset: every stage, every arm, the report in every format,
//! and a rerun that finds everything done.

mod run_common;

use run_common::{command, manifests, numbers, run_to_end};
use serde_json::Value;

const ARMS: [&str; 6] = [
    "zero-shot",
    "mbpp-gold",
    "human-refinements",
    "ilf-human",
    "ilf-execution",
    "ilf-model",
];

#[test]
fn tiny_pipeline_reports_every_arm_and_a_rerun_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("run");
    let report = run_to_end(&root);

    // The resolved configuration comes first, and every stage ends with a manifest.
    let config = std::fs::read_to_string(root.join("config.toml")).unwrap();
    assert!(config.contains("preset = \"tiny\""), "{config}");
    let stages: Vec<String> = manifests(&root)
        .iter()
        .map(|m| {
            m.parent()
                .unwrap()
                .strip_prefix(&root)
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    for stage in [
        "00-model",
        "01-sample",
        "02-eval",
        "03-feedback",
        "04-refiner",
        "05-refine/human",
        "05-refine/execution",
        "06-select/human",
        "06-select/execution",
        "05-refine/model",
        "06-select/model",
        "07-train/ilf-human",
        "08-test/zero-shot",
        "08-test/ilf-human",
    ] {
        assert!(
            stages.iter().any(|s| s == stage),
            "{stage} missing: {stages:?}"
        );
    }

    // Every arm is in the report, in the fixed order, with numbers or a reason.
    let arms = report["arms"].as_array().unwrap();
    let names: Vec<&str> = arms.iter().map(|a| a["arm"].as_str().unwrap()).collect();
    assert_eq!(names, ARMS);
    for arm in arms {
        let tested = !arm["pass_at_k"].as_array().unwrap().is_empty();
        assert!(
            tested || arm["skipped"].is_string(),
            "{}: neither numbers nor a reason",
            arm["arm"]
        );
        if tested {
            let p1 = &arm["pass_at_k"][0];
            assert_eq!(p1["k"], 1);
            assert_eq!(p1["tasks"], 8, "all 8 test tasks are scored");
            assert_eq!(arm["samples_per_task"], 4);
        }
    }
    // The tiny refiner memorises the pool's human refinements, so the human ILF arm trains, and
    // its gold and human-refinement baselines train on the same task ids.
    let ilf = &arms[3];
    let n = ilf["train_examples"].as_u64().expect("ilf-human trained");
    assert!(n >= 1);
    for baseline in &arms[1..3] {
        assert_eq!(baseline["train_tasks"], ilf["train_tasks"]);
        assert_eq!(baseline["train_examples"].as_u64(), Some(n));
    }
    let refiner = report["refiner"].as_array().unwrap();
    assert_eq!(refiner[0]["source"], "human");
    assert_eq!(refiner[0]["selected"].as_u64(), Some(n));
    assert_eq!(refiner[0]["tasks"], 3);
    // The own-failure arms draw from their own pool (tiny's `tasks.own_failure_pool`), not the
    // annotated one: the policy samples exactly those tasks, and only their failures get
    // execution feedback.
    let ids = |v: &Value| -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect()
    };
    assert_eq!(ids(&report["pool_tasks"]), [311, 328, 794]);
    assert_eq!(ids(&report["own_pool_tasks"]), [311, 312, 313, 314, 328]);
    assert_eq!(report["policy_on_pool"]["tasks"], 5);
    let own_failures = ids(&report["own_failure_tasks"]);
    assert!(!own_failures.is_empty());
    assert!(
        own_failures
            .iter()
            .all(|t| [311, 312, 313, 314, 328].contains(t)),
        "{own_failures:?}"
    );
    assert!(
        own_failures.iter().any(|t| ![311, 328, 794].contains(t)),
        "no own failure outside the annotated pool: {own_failures:?}"
    );
    let sampled: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("01-sample/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(sampled["details"]["prompts"], 5);
    assert_eq!(sampled["details"]["samples"], 10);
    let feedback = report["feedback"].as_array().unwrap();
    assert!(feedback.iter().any(|f| f["source"] == "execution"));
    // Model-written feedback covers the same failing samples as execution feedback.
    let count = |source: &str| {
        feedback
            .iter()
            .find(|f| f["source"] == source)
            .map(|f| f["count"].clone())
    };
    assert_eq!(count("model"), count("execution"));
    assert!(report["differences_from_paper"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d.as_str().unwrap().starts_with("model: ")));

    // The report's files.
    let md = std::fs::read_to_string(root.join("report.md")).unwrap();
    let html = std::fs::read_to_string(root.join("report.html")).unwrap();
    let svg = std::fs::read_to_string(root.join("pass_at_1.svg")).unwrap();
    for name in ARMS {
        assert!(
            md.contains(&format!("| {name} |")),
            "{name} not in report.md"
        );
        assert!(
            html.contains(&format!("<td>{name}</td>")),
            "{name} not in report.html"
        );
    }
    for section in ["Table 4", "Table 3", "Table 6", "Time per stage"] {
        assert!(md.contains(section), "{section} not in report.md");
    }
    assert!(svg.starts_with("<svg") && html.contains("<svg"));
    assert!(!html.contains("<script") && !html.contains("<link"));
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("report.json")).unwrap()).unwrap();
    assert_eq!(numbers(&on_disk), numbers(&report));

    // A rerun finds every stage finished, changes no manifest, and prints the same numbers.
    let before: Vec<(std::path::PathBuf, String)> = manifests(&root)
        .into_iter()
        .map(|m| {
            let text = std::fs::read_to_string(&m).unwrap();
            (m, text)
        })
        .collect();
    let again = run_to_end(&root);
    assert_eq!(numbers(&again), numbers(&report));
    for (path, text) in before {
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "{}",
            path.display()
        );
    }

    // The same directory with other settings is refused, naming the difference.
    let refused = command(&root).args(["--seed", "7"]).output().unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("seed = 7"), "{err}");
}

#[test]
fn bad_presets_configs_and_annotations_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("run");
    let fail = |cmd: &mut std::process::Command| {
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ilf"));
    cmd.args(["run", "--preset", "fast", "--out"]).arg(&root);
    let err = fail(&mut cmd);
    assert!(err.contains("quick, paper, tiny"), "{err}");

    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[test_sample]\nsampels = 3\n").unwrap();
    let err = fail(command(&root).arg("--config").arg(&typo));
    assert!(err.contains("sampels"), "{err}");

    let err = fail(
        std::process::Command::new(env!("CARGO_BIN_EXE_ilf"))
            .args(["run", "--preset", "tiny", "--out"])
            .arg(&root)
            .arg("--mbpp")
            .arg(run_common::mbpp())
            .arg("--annotations")
            .arg(dir.path().join("missing.jsonl")),
    );
    assert!(err.contains("missing.jsonl"), "{err}");
    assert!(
        !root.join("00-model").exists(),
        "nothing is built before the inputs are checked"
    );
}
