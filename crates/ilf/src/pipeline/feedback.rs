//! Stage 03: the feedback each arm learns from, in the paper's annotation schema.
//!
//! - `refiner-train.jsonl`: human triples (old program, feedback, refinement) that train π_Refine
//!   (MBPP_Refine, ids 111-310, in the paper).
//! - `human.jsonl`: human feedback on the MBPP_Train pool, the programs π_Refine refines for the
//!   ILF arm. These are the paper's programs (CodeGen-Mono 6.1B's failures), not ours.
//! - `execution.jsonl`: execution feedback on the policy's *own* failures: for every pool task on
//!   which none of the policy's stage-01 samples passed, one failing sample drawn with the stage's
//!   seed, and its verdict said in words.
//!
//! - `model.jsonl`: model-written feedback on the same own failures (when the ILF (model) arm
//!   runs), from `ilf-feedback`'s few-shot prompt.
//!
//! Human feedback is the paper's 195 annotations, or, with `--db`, the annotation app's store.

use super::config::{Arm, RefinerSplit, RunConfig};
use anyhow::{Context, Result};
use ilf_data::mbpp::Mbpp;
use ilf_data::metrics::task_counts;
use ilf_data::records::{read_jsonl, ResultRow};
use ilf_data::split::Split;
use ilf_feedback::annotations::{read_annotations, AnnotationRecord, FeedbackSource};
use ilf_feedback::execution::execution_feedback;
use ilf_feedback::failures::{read_failures, Failures};
use ilf_feedback::model::{model_feedback, ModelFeedbackConfig};
use ilf_lm::sampling::{LocalGenerator, SamplingParams};
use ilf_lm::serve::chat::ChatTemplate;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where human feedback comes from.
#[derive(Debug, Clone)]
pub enum HumanSource {
    /// A file in the paper's schema (`surge_annotations.jsonl`).
    File(PathBuf),
    /// The annotation app's SQLite store; rejected annotations are left out.
    Store(PathBuf),
}

impl HumanSource {
    pub fn path(&self) -> &Path {
        match self {
            HumanSource::File(p) | HumanSource::Store(p) => p,
        }
    }

    /// The human annotations, each task once (the first record of a task wins).
    pub fn read(&self) -> Result<Vec<AnnotationRecord>> {
        let records = match self {
            HumanSource::File(path) => read_annotations(path)?,
            HumanSource::Store(path) => ilf_feedback::store::Store::open(path)
                .with_context(|| format!("cannot open the annotation store {}", path.display()))?
                .export()?
                .into_iter()
                .filter(|r| {
                    r.ilf.as_ref().is_none_or(|p| {
                        p.source == FeedbackSource::Human && p.review.as_deref() != Some("rejected")
                    })
                })
                .collect(),
        };
        let mut seen = BTreeSet::new();
        Ok(records
            .into_iter()
            .filter(|r| !r.feedback.trim().is_empty() && seen.insert(r.task_id))
            .collect())
    }
}

/// The paper's annotations: `--annotations`, else `$ILF_ANNOTATIONS`, else
/// `../shared/data/surge_annotations.jsonl` from the current directory.
pub fn default_annotations(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("ILF_ANNOTATIONS").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let fallback = PathBuf::from("../shared/data/surge_annotations.jsonl");
    if fallback.is_file() {
        return Ok(fallback);
    }
    anyhow::bail!(
        "no human annotations: --annotations not given, $ILF_ANNOTATIONS not set, and {} does \
         not exist; pass the paper's surge_annotations.jsonl or --db with the annotation app's store",
        fallback.display()
    )
}

/// A human annotation that can train π_Refine: it has a refinement that passed its tests.
pub fn is_triple(r: &AnnotationRecord) -> bool {
    r.unedited_annotator_completion
        .as_deref()
        .is_some_and(|c| !c.trim().is_empty())
        && r.passed != Some(false)
}

/// The MBPP_Train pool: annotated MBPP_Train tasks, all of them or `limit` drawn with `seed`,
/// in id order.
pub fn train_pool(human: &[AnnotationRecord], limit: usize, seed: u64) -> Vec<u32> {
    let train = Split::Train.ids();
    let mut ids: Vec<u32> = human
        .iter()
        .map(|r| r.task_id)
        .filter(|id| train.contains(id))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if limit > 0 && limit < ids.len() {
        ids.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        ids.truncate(limit);
        ids.sort_unstable();
    }
    ids
}

/// Counts and length of one feedback set (the paper's Table 6 reports words per feedback).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeedbackStats {
    /// `human`, `execution`.
    pub source: String,
    /// What the set is used for.
    pub role: String,
    pub count: usize,
    pub words_mean: Option<f64>,
    pub words_sd: Option<f64>,
}

impl FeedbackStats {
    pub fn of(source: &str, role: &str, records: &[AnnotationRecord]) -> FeedbackStats {
        let words: Vec<f64> = records
            .iter()
            .map(|r| r.feedback.split_whitespace().count() as f64)
            .collect();
        let n = words.len() as f64;
        let mean = (!words.is_empty()).then(|| words.iter().sum::<f64>() / n);
        let sd = mean
            .filter(|_| words.len() > 1)
            .map(|m| (words.iter().map(|w| (w - m) * (w - m)).sum::<f64>() / (n - 1.0)).sqrt());
        FeedbackStats {
            source: source.into(),
            role: role.into(),
            count: records.len(),
            words_mean: mean,
            words_sd: sd,
        }
    }
}

/// What stage 03 hands on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeedbackDetails {
    /// The annotated pool: human feedback on these tasks trains the human ILF arm.
    pub pool: Vec<u32>,
    /// The tasks whose zero-shot failures get execution and model feedback.
    #[serde(default)]
    pub own_pool: Vec<u32>,
    pub refiner_tasks: Vec<u32>,
    pub human_tasks: Vec<u32>,
    /// Own-failure pool tasks with no passing policy sample, which get execution feedback.
    pub own_failure_tasks: Vec<u32>,
    pub stats: Vec<FeedbackStats>,
}

pub const REFINER_TRAIN: &str = "refiner-train.jsonl";

/// The file of one feedback source in the stage directory.
pub fn source_file(dir: &Path, source: FeedbackSource) -> PathBuf {
    dir.join(format!("{}.jsonl", source.as_str()))
}

/// Writes the stage's files into `dir`; `policy` is the base model's spec (the feedback model
/// when none is configured). Human feedback is taken on the annotated `pool`, execution and
/// model feedback on the failures among `own_pool`'s tasks in `policy_results`.
#[allow(clippy::too_many_arguments)]
pub fn build(
    config: &RunConfig,
    policy: &str,
    out: &crate::output::Output,
    human: &[AnnotationRecord],
    pool: &[u32],
    own_pool: &[u32],
    policy_results: &Path,
    mbpp: &Mbpp,
    dir: &Path,
    seed: u64,
) -> Result<(Vec<PathBuf>, FeedbackDetails)> {
    let pool_set: BTreeSet<u32> = pool.iter().copied().collect();
    let mut refiner: Vec<AnnotationRecord> = human
        .iter()
        .filter(|r| is_triple(r))
        .filter(|r| match config.refiner.train_split {
            RefinerSplit::Refine => Split::Refine.ids().contains(&r.task_id),
            RefinerSplit::Train => pool_set.contains(&r.task_id),
        })
        .cloned()
        .collect();
    if refiner.is_empty() {
        anyhow::bail!(
            "no human triple (feedback with a passing refinement) in the {} split to train the \
             refiner on",
            match config.refiner.train_split {
                RefinerSplit::Refine => "MBPP_Refine (111-310)",
                RefinerSplit::Train => "training pool",
            }
        );
    }
    let limit = config.refiner.train_limit;
    if limit > 0 && limit < refiner.len() {
        refiner.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x5EED));
        refiner.truncate(limit);
        refiner.sort_by_key(|r| r.task_id);
    }
    let on_pool: Vec<AnnotationRecord> = human
        .iter()
        .filter(|r| pool_set.contains(&r.task_id))
        .cloned()
        .collect();
    let own_set: BTreeSet<u32> = own_pool.iter().copied().collect();
    let execution = own_failures(policy_results, mbpp, &own_set, seed)?;
    let execution_records = execution_feedback(&execution);
    let model_records = if config.arms.contains(&Arm::IlfModel) {
        Some(model_feedback_records(
            config, policy, &execution, human, mbpp, seed, out,
        )?)
    } else {
        None
    };

    let refiner_path = dir.join(REFINER_TRAIN);
    let human_path = source_file(dir, FeedbackSource::Human);
    let execution_path = source_file(dir, FeedbackSource::Execution);
    ilf_feedback::annotations::write_annotations(&refiner_path, &refiner)?;
    ilf_feedback::annotations::write_annotations(&human_path, &on_pool)?;
    ilf_feedback::annotations::write_annotations(&execution_path, &execution_records)?;
    let mut outputs = vec![refiner_path, human_path, execution_path];
    let mut stats = vec![
        FeedbackStats::of("human", "trains π_Refine", &refiner),
        FeedbackStats::of("human", "refined for ILF (pool)", &on_pool),
        FeedbackStats::of(
            "execution",
            "refined for ILF-execution (own failures)",
            &execution_records,
        ),
    ];
    if let Some(records) = &model_records {
        let path = source_file(dir, FeedbackSource::Model);
        ilf_feedback::annotations::write_annotations(&path, records)?;
        outputs.push(path);
        stats.push(FeedbackStats::of(
            "model",
            "refined for ILF-model (own failures)",
            records,
        ));
    }
    let details = FeedbackDetails {
        pool: pool.to_vec(),
        own_pool: own_pool.to_vec(),
        refiner_tasks: refiner.iter().map(|r| r.task_id).collect(),
        human_tasks: on_pool.iter().map(|r| r.task_id).collect(),
        own_failure_tasks: execution_records.iter().map(|r| r.task_id).collect(),
        stats,
    };
    Ok((outputs, details))
}

/// Feedback on `failures` written by the configured model (or the policy), few-shot from the
/// human annotations outside MBPP_Test.
fn model_feedback_records(
    config: &RunConfig,
    policy: &str,
    failures: &Failures,
    human: &[AnnotationRecord],
    mbpp: &Mbpp,
    seed: u64,
    out: &crate::output::Output,
) -> Result<Vec<AnnotationRecord>> {
    if failures.programs.is_empty() {
        return Ok(Vec::new());
    }
    let fm = &config.feedback_model;
    let spec = if fm.model.is_empty() {
        policy
    } else {
        &fm.model
    };
    out.say(format!(
        "03-feedback: {} writes feedback on {} failing programs",
        spec,
        failures.programs.len()
    ));
    let loaded = ilf_lm::load(spec, &candle_core::Device::Cpu, ilf_lm::LoadMode::Inference)
        .with_context(|| format!("cannot load the feedback model {spec}"))?;
    let template =
        ChatTemplate::from_jinja(loaded.info.chat_template.as_deref()).with_context(|| {
            format!(
                "the feedback model {spec} has a chat template that is not ChatML; set \
                 feedback_model.model to an instruct model such as qwen2.5-coder-1.5b-instruct"
            )
        })?;
    let generator = LocalGenerator {
        model: &loaded.model,
        tokenizer: &loaded.tokenizer,
        eos_token_ids: loaded.info.eos_token_ids.clone(),
        batch_size: fm.batch_size,
    };
    let name = if fm.model.is_empty() {
        format!("{} (the policy)", config.model)
    } else {
        fm.model.clone()
    };
    model_feedback(
        &generator,
        &template,
        failures,
        human,
        mbpp,
        &ModelFeedbackConfig {
            model: name,
            shots: fm.shots,
            params: SamplingParams {
                temperature: fm.temperature,
                top_p: 1.0,
                top_k: 0,
                max_tokens: fm.max_tokens,
            },
            seed,
        },
    )
}

/// One failing policy sample per `pool` task on which no sample passed, drawn with `seed`.
fn own_failures(results: &Path, mbpp: &Mbpp, pool: &BTreeSet<u32>, seed: u64) -> Result<Failures> {
    let rows: Vec<ResultRow> = read_jsonl(results)
        .with_context(|| format!("cannot read the policy's results {}", results.display()))?;
    let unsolved: BTreeSet<u32> = task_counts(&rows)
        .into_iter()
        .filter(|t| t.c == 0 && pool.contains(&t.task_id))
        .map(|t| t.task_id)
        .collect();
    let mut failures = read_failures(results, mbpp)?;
    let mut by_task: BTreeMap<u32, Vec<_>> = BTreeMap::new();
    for program in failures.programs.drain(..) {
        if unsolved.contains(&program.task_id) {
            by_task.entry(program.task_id).or_default().push(program);
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    failures.programs = by_task
        .into_values()
        .map(|mut programs| {
            let i = rng.random_range(0..programs.len());
            programs.swap_remove(i)
        })
        .collect();
    failures.tasks.retain(|t| unsolved.contains(&t.task_id));
    Ok(failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(task_id: u32, feedback: &str, refinement: Option<&str>) -> AnnotationRecord {
        AnnotationRecord {
            task_id,
            prompt: String::new(),
            test: String::new(),
            feedback: feedback.into(),
            completion: None,
            result: None,
            passed: refinement.map(|_| true),
            unedited_annotator_completion: refinement.map(String::from),
            original_model_completion: "def f():\n    pass\n".into(),
            refinement_edit_distance: None,
            worker_id: None,
            ilf: None,
        }
    }

    #[test]
    fn pool_is_annotated_train_tasks_and_a_seeded_subset() {
        let human: Vec<_> = [5, 120, 311, 400, 500, 963]
            .iter()
            .map(|&id| record(id, "fix it", Some("x")))
            .collect();
        assert_eq!(train_pool(&human, 0, 1), vec![311, 400, 500, 963]);
        let a = train_pool(&human, 2, 1);
        assert_eq!(a.len(), 2);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(a, train_pool(&human, 2, 1));
        let draws: BTreeSet<Vec<u32>> = (0..20).map(|s| train_pool(&human, 2, s)).collect();
        assert!(draws.len() > 1, "the seed changes the draw");
    }

    #[test]
    fn the_app_store_gives_the_same_human_feedback_as_the_paper_file() {
        let file = std::env::var_os("ILF_ANNOTATIONS").map_or_else(
            || {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../../shared/data/surge_annotations.jsonl")
            },
            PathBuf::from,
        );
        let from_file = HumanSource::File(file.clone()).read().unwrap();
        assert_eq!(from_file.len(), 195);
        // ilf-method.md section 5 (Table 6 check): 68.7 ± 48.1 words over the 195 feedbacks.
        let words = FeedbackStats::of("human", "all", &from_file);
        assert_eq!(format!("{:.1}", words.words_mean.unwrap()), "68.7");
        assert_eq!(format!("{:.1}", words.words_sd.unwrap()), "48.1");
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ilf.db");
        let store = ilf_feedback::store::Store::open(&db).unwrap();
        store
            .import_annotations(&read_annotations(&file).unwrap())
            .unwrap();
        drop(store);
        let from_store = HumanSource::Store(db).read().unwrap();
        let key = |r: &AnnotationRecord| (r.task_id, r.feedback.clone());
        let mut a: Vec<_> = from_file.iter().map(key).collect();
        let mut b: Vec<_> = from_store.iter().map(key).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
        assert_eq!(train_pool(&from_store, 0, 0).len(), 128);
        assert_eq!(from_store.iter().filter(|r| is_triple(r)).count(), 195);
    }

    #[test]
    fn word_statistics_match_a_hand_count() {
        let records = vec![
            record(1, "one two three", None),
            record(2, "one two three four five", None),
        ];
        let s = FeedbackStats::of("human", "x", &records);
        assert_eq!(s.count, 2);
        assert_eq!(s.words_mean, Some(4.0));
        assert!((s.words_sd.unwrap() - 2f64.sqrt()).abs() < 1e-12);
        assert!(!is_triple(&records[0]));
        assert!(is_triple(&record(3, "f", Some("def f(): return 1"))));
    }
}
