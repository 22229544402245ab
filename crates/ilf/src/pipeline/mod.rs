//! `ilf run`: the whole ILF pipeline (ilf-method.md section 1.2) with the paper's baselines
//! (Table 4), resumable stage by stage, ending in a report.
//!
//! ```text
//! runs/<name>/
//!   config.toml                 the resolved configuration, written first
//!   00-model/                   (tiny-random only) the generated base model
//!   01-sample/                  policy samples on the own-failure MBPP_Train pool
//!   02-eval/                    their verdicts
//!   03-feedback/                human triples for π_Refine; human and execution feedback
//!   04-refiner/                 π_Refine trained from the base on the human triples
//!   05-refine/<source>/         refinements sampled with each source's feedback
//!   06-select/<source>/         their verdicts (Table 3) and one passing refinement per task
//!   07-train/<arm>/             the policy fine-tuned from the base for each arm
//!   08-test/<arm>/              samples and verdicts on MBPP_Test
//!   report.md  report.html  pass_at_1.svg  report.json
//! ```
//!
//! Every stage writes a manifest last; a finished stage is skipped on a rerun and an unfinished
//! one resumes from its records and checkpoints. Every draw is seeded from the run's seed, so a
//! run killed at any moment and rerun ends with the numbers of an uninterrupted run.

pub mod arms;
pub mod config;
pub mod feedback;
pub mod manifest;
pub mod model;
pub mod plot;
pub mod refiner;
pub mod report;
pub mod sampling;
pub mod scoring;
pub mod training;

use crate::output::Output;
use anyhow::{Context, Result};
use config::{Arm, RunConfig};
use feedback::{FeedbackDetails, HumanSource};
use ilf_data::mbpp::Mbpp;
use ilf_data::prompt::paper_prompt;
use ilf_data::split::parse_task_ids;
use ilf_feedback::annotations::{read_annotations, FeedbackSource};
use manifest::RunDir;
use refiner::Selection;
use report::{ArmResult, Report};
use sampling::{Prompt, SampleStats};
use scoring::Scored;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use training::TrainDetails;

/// What `ilf run` needs besides the configuration.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config: RunConfig,
    /// The run directory.
    pub out: PathBuf,
    pub mbpp: Option<PathBuf>,
    /// The paper's annotation file (see [`feedback::default_annotations`]).
    pub annotations: Option<PathBuf>,
    /// The annotation app's store, used instead of the annotation file.
    pub db: Option<PathBuf>,
}

/// A sampling stage followed by its evaluation, as 08-test records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestDetails {
    pub sampling: SampleStats,
    pub scored: Scored,
}

/// What 07-train records for an arm: the training, or why there was none.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArmTraining {
    pub tasks: Vec<u32>,
    pub train: Option<TrainDetails>,
    pub skipped: Option<String>,
    pub left_out: Vec<String>,
}

/// Runs (or resumes) the pipeline and writes the report; returns the report's data.
pub fn run(opts: &RunOptions, out: &Output) -> Result<Report> {
    let config = &opts.config;
    let run = RunDir::open(&opts.out, config, *out)?;
    let mbpp = Mbpp::resolve(opts.mbpp.as_deref())?;
    let mbpp_path = mbpp.path().to_path_buf();
    let human_source = match &opts.db {
        Some(db) => HumanSource::Store(db.clone()),
        None => HumanSource::File(feedback::default_annotations(opts.annotations.as_deref())?),
    };
    let human = human_source.read()?;
    let test_ids = parse_task_ids(&config.tasks.test)?;
    let pool = feedback::train_pool(&human, config.tasks.train_limit, run.seed("pool"));
    if pool.is_empty() {
        anyhow::bail!(
            "none of the human annotations in {} is on an MBPP_Train task (311-974); the ILF arms \
             need feedback there",
            human_source.path().display()
        );
    }
    let own_pool = config.tasks.own_failure_ids(&pool)?;
    let base = model::base_spec(&run)?;
    let tokenizer = model::tokenizer(&base)?;
    let arms = config.arms_in_order();
    out.say(format!(
        "ilf run: {} ({} preset), {} test tasks, training pool of {} annotated MBPP_Train tasks \
         and {} for the policy's own failures, arms: {}",
        run.root.display(),
        config.preset,
        test_ids.len(),
        pool.len(),
        own_pool.len(),
        arms.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
    ));

    // 01-sample, 02-eval: the policy's own programs on the own-failure pool.
    let policy_prompts = task_prompts(&mbpp, &own_pool)?;
    let samples01 = run.stage_dir("01-sample").join("samples.jsonl");
    let s01: SampleStats = run.stage(
        "01-sample",
        std::slice::from_ref(&mbpp_path),
        |dir, seed| {
            let stats = sampling::sample_prompts(
                &base,
                &policy_prompts,
                &config.policy_sample,
                seed,
                &dir.join("samples.jsonl"),
                out,
                "01-sample",
            )?;
            Ok((vec![dir.join("samples.jsonl")], stats))
        },
    )?;
    let results02 = run.stage_dir("02-eval").join("results.jsonl");
    let s02: Scored = run.stage("02-eval", std::slice::from_ref(&samples01), |dir, _| {
        scoring::score(
            config,
            Some(&mbpp_path),
            &samples01,
            config.policy_sample.n,
            dir,
            out,
        )
    })?;

    // 03-feedback.
    let feedback_dir = run.stage_dir("03-feedback");
    let s03: FeedbackDetails = run.stage(
        "03-feedback",
        &[human_source.path().to_path_buf(), results02.clone()],
        |dir, seed| {
            feedback::build(
                config, &base, out, &human, &pool, &own_pool, &results02, &mbpp, dir, seed,
            )
        },
    )?;

    // 04-refiner.
    let refiner_dir = run.stage_dir("04-refiner");
    let s04: TrainDetails = run.stage(
        "04-refiner",
        &[feedback_dir.join(feedback::REFINER_TRAIN)],
        |dir, seed| {
            let triples = read_annotations(&feedback_dir.join(feedback::REFINER_TRAIN))?;
            let data = dir.join(training::DATA);
            let n = refiner::write_refiner_data(&tokenizer, &config.refiner, &triples, &data)?;
            let (model, details) = training::train(
                &base,
                dir,
                n,
                &config.refiner.train,
                seed,
                out,
                "04-refiner",
            )?;
            Ok((vec![data, model], details))
        },
    )?;
    let refiner_model = training::model_dir(&refiner_dir);

    // 05-refine and 06-select, per feedback source the arms need.
    let mut selections: Vec<(FeedbackSource, Selection, SampleStats)> = Vec::new();
    for source in sources_needed(&arms) {
        let name = source.as_str();
        let records_path = feedback::source_file(&feedback_dir, source);
        let refine_stage = format!("05-refine/{name}");
        let samples = run.stage_dir(&refine_stage).join("samples.jsonl");
        let sampled: SampleStats = run.stage(
            &refine_stage,
            &[records_path.clone(), refiner_model.clone()],
            |dir, seed| {
                let records = read_annotations(&records_path)?;
                let prompts =
                    refiner::refine_prompts(&tokenizer, &config.refiner, &records, &mbpp, 0)?;
                let path = dir.join("samples.jsonl");
                let stats = sampling::sample_prompts(
                    &refiner_model.display().to_string(),
                    &prompts,
                    &config.refine_sample,
                    seed,
                    &path,
                    out,
                    &refine_stage,
                )?;
                Ok((vec![path], stats))
            },
        )?;
        let select_stage = format!("06-select/{name}");
        let selection: Selection = run.stage(
            &select_stage,
            std::slice::from_ref(&samples),
            |dir, seed| {
                let (mut outputs, scored) = scoring::score(
                    config,
                    Some(&mbpp_path),
                    &samples,
                    config.refine_sample.n,
                    &dir.join("eval"),
                    out,
                )?;
                let data = dir.join(training::DATA);
                let selected = refiner::select(&outputs[0], &mbpp, seed, &data)?;
                outputs.push(data);
                Ok((
                    outputs,
                    Selection {
                        source: name.to_string(),
                        tasks: scored.metrics.tasks,
                        metrics: scored.metrics,
                        selected,
                    },
                ))
            },
        )?;
        selections.push((source, selection, sampled));
    }
    let selection_of = |source: FeedbackSource| {
        selections
            .iter()
            .find(|(s, _, _)| *s == source)
            .map(|(_, sel, _)| sel)
    };

    // 07-train and 08-test, arm by arm in the fixed order.
    let test_prompts = task_prompts(&mbpp, &test_ids)?;
    let mut results = Vec::new();
    for arm in arms {
        let training = match arm {
            Arm::ZeroShot => None,
            _ => {
                let stage = format!("07-train/{}", arm.name());
                let source = match arm {
                    Arm::IlfExecution => FeedbackSource::Execution,
                    Arm::IlfModel => FeedbackSource::Model,
                    _ => FeedbackSource::Human,
                };
                let source_data = run
                    .stage_dir(&format!("06-select/{}", source.as_str()))
                    .join(training::DATA);
                let tasks: Vec<u32> = selection_of(source)
                    .map(|s| s.selected.clone())
                    .unwrap_or_default();
                let details: ArmTraining =
                    run.stage(&stage, std::slice::from_ref(&source_data), |dir, seed| {
                        let data = dir.join(training::DATA);
                        let (n, left_out) = match arm {
                            Arm::MbppGold | Arm::HumanRefinements => {
                                arms::write_baseline_data(arm, &tasks, &human, &mbpp, &data)?
                            }
                            _ => {
                                std::fs::copy(&source_data, &data).with_context(|| {
                                    format!("cannot copy {}", source_data.display())
                                })?;
                                (tasks.len(), Vec::new())
                            }
                        };
                        if n == 0 {
                            return Ok((
                                vec![data],
                                ArmTraining {
                                    tasks: tasks.clone(),
                                    train: None,
                                    skipped: Some(skip_reason(arm, tasks.is_empty())),
                                    left_out,
                                },
                            ));
                        }
                        let (model, details) = training::train(
                            &base,
                            dir,
                            n,
                            &config.policy_train,
                            seed,
                            out,
                            &stage,
                        )?;
                        Ok((
                            vec![data, model],
                            ArmTraining {
                                tasks: tasks.clone(),
                                train: Some(details),
                                skipped: None,
                                left_out,
                            },
                        ))
                    })?;
                Some(details)
            }
        };
        let skipped = training.as_ref().and_then(|t| t.skipped.clone());
        let tested: Option<TestDetails> = match skipped {
            Some(_) => None,
            None => {
                let model = match arm {
                    Arm::ZeroShot => base.clone(),
                    _ => training::model_dir(&run.stage_dir(&format!("07-train/{}", arm.name())))
                        .display()
                        .to_string(),
                };
                let stage = format!("08-test/{}", arm.name());
                let inputs = if arm == Arm::ZeroShot {
                    vec![mbpp_path.clone()]
                } else {
                    vec![mbpp_path.clone(), PathBuf::from(&model)]
                };
                Some(run.stage(&stage, &inputs, |dir, _| {
                    let path = dir.join("samples.jsonl");
                    // Every arm draws with the same seed, so differences come from the models.
                    let sampling = sampling::sample_prompts(
                        &model,
                        &test_prompts,
                        &config.test_sample,
                        run.seed("08-test"),
                        &path,
                        out,
                        &stage,
                    )?;
                    let (mut outputs, scored) = scoring::score(
                        config,
                        Some(&mbpp_path),
                        &path,
                        config.test_sample.n,
                        &dir.join("eval"),
                        out,
                    )?;
                    outputs.insert(0, path);
                    Ok((outputs, TestDetails { sampling, scored }))
                })?)
            }
        };
        results.push(ArmResult::new(arm, training, tested, skipped));
    }

    let report = Report::build(
        &run,
        &pool,
        &own_pool,
        &test_ids,
        &s01,
        &s02,
        &s03,
        &s04,
        &selections,
        results,
    )?;
    report.write(&run.root)?;
    Ok(report)
}

/// Why an arm has no training examples.
fn skip_reason(arm: Arm, no_tasks: bool) -> String {
    match arm {
        Arm::MbppGold | Arm::HumanRefinements if no_tasks => {
            "no training examples: it trains on ILF (human)'s task ids, and no human-feedback \
             refinement passed its tests"
                .into()
        }
        Arm::MbppGold | Arm::HumanRefinements => {
            "no training examples: no program body found for ILF (human)'s task ids".into()
        }
        _ => "no training examples: no refinement passed its tests".into(),
    }
}

/// The feedback sources whose refinements the arms need (gold and human refinements use the
/// human arm's task ids).
fn sources_needed(arms: &[Arm]) -> Vec<FeedbackSource> {
    let mut sources = Vec::new();
    if arms
        .iter()
        .any(|a| matches!(a, Arm::MbppGold | Arm::HumanRefinements | Arm::IlfHuman))
    {
        sources.push(FeedbackSource::Human);
    }
    if arms.contains(&Arm::IlfExecution) {
        sources.push(FeedbackSource::Execution);
    }
    if arms.contains(&Arm::IlfModel) {
        sources.push(FeedbackSource::Model);
    }
    sources
}

/// The paper prompt of each task.
fn task_prompts(mbpp: &Mbpp, ids: &[u32]) -> Result<Vec<Prompt>> {
    ids.iter()
        .map(|&id| {
            Ok(Prompt {
                task_id: id,
                prompt: paper_prompt(refiner::task(mbpp, id)?),
                extra: serde_json::Map::new(),
            })
        })
        .collect()
}
