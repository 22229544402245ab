//! The run's report: the Table-4-style comparison of the arms on MBPP_Test, π_Refine's
//! Table-3-style figures, feedback statistics, time per stage, and what the preset changes
//! against the paper's protocol. One set of sections renders as Markdown (`report.md`), HTML with
//! inline SVG (`report.html`), a terminal table, and JSON (`report.json`, `ilf run --json`).

use super::config::{Arm, RunConfig, PRESETS};
use super::feedback::{FeedbackDetails, FeedbackStats};
use super::manifest::RunDir;
use super::plot::{bar_chart, escape, Bar};
use super::refiner::Selection;
use super::sampling::SampleStats;
use super::scoring::Scored;
use super::training::TrainDetails;
use super::{ArmTraining, TestDetails};
use anyhow::Result;
use ilf_data::metrics::{Interval, PassAtK, Summary};
use ilf_data::records::write_atomically;
use ilf_feedback::annotations::FeedbackSource;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One arm's result on MBPP_Test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArmResult {
    pub arm: Arm,
    pub description: String,
    /// Training examples (none for zero-shot or a skipped arm).
    pub train_examples: Option<usize>,
    pub train_tasks: Vec<u32>,
    pub train_steps: Option<usize>,
    pub final_loss: Option<f64>,
    pub pass_at_k: Vec<PassAtK>,
    pub one_plus_correct: Option<f64>,
    /// pass@1 minus zero-shot's pass@1 (absolute).
    pub delta_pass_at_1: Option<f64>,
    pub samples_per_task: Option<usize>,
    pub tasks: Option<usize>,
    pub skipped: Option<String>,
}

impl ArmResult {
    pub fn new(
        arm: Arm,
        training: Option<ArmTraining>,
        tested: Option<TestDetails>,
        skipped: Option<String>,
    ) -> ArmResult {
        let train = training.as_ref().and_then(|t| t.train.as_ref());
        let metrics = tested.as_ref().map(|t| &t.scored.metrics);
        ArmResult {
            arm,
            description: arm.description().to_string(),
            train_examples: train.map(|t| t.examples),
            train_tasks: training
                .as_ref()
                .map(|t| t.tasks.clone())
                .unwrap_or_default(),
            train_steps: train.map(|t| t.steps),
            final_loss: train.and_then(|t| t.final_loss),
            pass_at_k: metrics.map(|m| m.pass_at_k.clone()).unwrap_or_default(),
            one_plus_correct: metrics.and_then(|m| m.one_plus_correct),
            delta_pass_at_1: None,
            samples_per_task: metrics.filter(|m| m.tasks > 0).map(|m| m.samples / m.tasks),
            tasks: metrics.map(|m| m.tasks),
            skipped,
        }
    }

    pub fn pass_at(&self, k: usize) -> Option<&PassAtK> {
        self.pass_at_k.iter().find(|p| p.k == k)
    }
}

/// π_Refine's refinements for one feedback source (the paper's Table 3).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefinerRow {
    pub source: String,
    pub tasks: usize,
    pub refinements: usize,
    pub pass_at_k: Vec<PassAtK>,
    pub one_plus_correct: Option<f64>,
    /// Tasks with a passing refinement: the arm's training examples.
    pub selected: usize,
    pub tokens_per_s: Option<f64>,
}

/// The wall time of one finished stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageTime {
    pub stage: String,
    pub wall_s: f64,
    /// Sampling stages: generated tokens per second of the invocation that finished them.
    pub tokens_per_s: Option<f64>,
}

/// Everything the report shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub run: String,
    pub preset: String,
    pub model: String,
    pub seed: u64,
    pub test_tasks: usize,
    pub pool_tasks: Vec<u32>,
    /// The MBPP_Train tasks whose zero-shot failures the execution and model arms refine.
    #[serde(default)]
    pub own_pool_tasks: Vec<u32>,
    pub arms: Vec<ArmResult>,
    pub policy_on_pool: Summary,
    pub refiner_train_examples: usize,
    pub refiner_steps: usize,
    pub refiner_final_loss: Option<f64>,
    pub refiner: Vec<RefinerRow>,
    pub own_failure_tasks: Vec<u32>,
    pub feedback: Vec<FeedbackStats>,
    pub stages: Vec<StageTime>,
    /// Settings where this run differs from the paper's protocol (`field: paper → run`).
    pub differences_from_paper: Vec<String>,
    /// How the arms' data differ, and where the pipeline departs from the paper by design.
    pub notes: Vec<String>,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        run: &RunDir,
        pool: &[u32],
        own_pool: &[u32],
        test_ids: &[u32],
        _policy_samples: &SampleStats,
        policy_scored: &Scored,
        feedback: &FeedbackDetails,
        refiner: &TrainDetails,
        selections: &[(FeedbackSource, Selection, SampleStats)],
        mut arms: Vec<ArmResult>,
    ) -> Result<Report> {
        let zero = arms
            .iter()
            .find(|a| a.arm == Arm::ZeroShot)
            .and_then(|a| a.pass_at(1))
            .and_then(|p| p.value);
        for arm in &mut arms {
            if arm.arm != Arm::ZeroShot {
                arm.delta_pass_at_1 = zero
                    .zip(arm.pass_at(1).and_then(|p| p.value))
                    .map(|(z, v)| v - z);
            }
        }
        let refiner_rows = selections
            .iter()
            .map(|(_, sel, sampled)| RefinerRow {
                source: sel.source.clone(),
                tasks: sel.tasks,
                refinements: sel.metrics.samples,
                pass_at_k: sel.metrics.pass_at_k.clone(),
                one_plus_correct: sel.metrics.one_plus_correct,
                selected: sel.selected.len(),
                tokens_per_s: sampled.tokens_per_s,
            })
            .collect();
        Ok(Report {
            run: run.root.display().to_string(),
            preset: run.config.preset.clone(),
            model: run.config.model.clone(),
            seed: run.config.seed,
            test_tasks: test_ids.len(),
            pool_tasks: pool.to_vec(),
            own_pool_tasks: own_pool.to_vec(),
            arms,
            policy_on_pool: policy_scored.metrics.clone(),
            refiner_train_examples: refiner.examples,
            refiner_steps: refiner.steps,
            refiner_final_loss: refiner.final_loss,
            refiner: refiner_rows,
            own_failure_tasks: feedback.own_failure_tasks.clone(),
            feedback: feedback.stats.clone(),
            stages: stage_times(run)?,
            differences_from_paper: differences_from_paper(&run.config)?,
            notes: notes(&run.config, feedback),
        })
    }

    /// Writes `report.md`, `report.html`, `pass_at_1.svg` and `report.json` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let svg = self.chart();
        write_atomically(&dir.join("pass_at_1.svg"), svg.as_bytes())?;
        write_atomically(&dir.join("report.md"), self.markdown().as_bytes())?;
        write_atomically(&dir.join("report.html"), self.html(&svg).as_bytes())?;
        write_atomically(
            &dir.join("report.json"),
            serde_json::to_string_pretty(self)?.as_bytes(),
        )?;
        Ok(())
    }

    fn chart(&self) -> String {
        let bars: Vec<Bar> = self
            .arms
            .iter()
            .map(|a| {
                let p = a.pass_at(1);
                Bar {
                    label: a.arm.name().to_string(),
                    value: p.and_then(|p| p.value),
                    ci: p.and_then(|p| p.ci).map(|c| (c.low, c.high)),
                }
            })
            .collect();
        bar_chart(
            &format!(
                "pass@1 on MBPP_Test ({} tasks) with 95% bootstrap CIs",
                self.test_tasks
            ),
            "pass@1",
            &bars,
        )
    }

    fn ks(&self) -> Vec<usize> {
        let mut ks: Vec<usize> = self
            .arms
            .iter()
            .flat_map(|a| a.pass_at_k.iter().map(|p| p.k))
            .collect();
        ks.sort_unstable();
        ks.dedup();
        ks
    }

    /// The sections every rendering shares.
    fn sections(&self) -> Vec<Section> {
        let ks = self.ks();
        let mut arm_header = vec!["Arm".to_string(), "Fine-tuned on".into(), "Examples".into()];
        arm_header.extend(ks.iter().map(|k| format!("pass@{k} [95% CI]")));
        arm_header.extend(["1+ correct".into(), "Δ pass@1 vs zero-shot".into()]);
        let arm_rows = self
            .arms
            .iter()
            .map(|a| {
                let mut row = vec![
                    a.arm.name().to_string(),
                    a.description.clone(),
                    a.train_examples.map_or("–".into(), |n| n.to_string()),
                ];
                for k in &ks {
                    row.push(match (&a.skipped, a.pass_at(*k)) {
                        (Some(why), _) => format!("not run: {why}"),
                        (None, Some(p)) => pct_ci(p.value, p.ci),
                        (None, None) => "n/a".into(),
                    });
                }
                row.push(pct(a.one_plus_correct));
                row.push(match (a.arm, a.delta_pass_at_1) {
                    (Arm::ZeroShot, _) => "–".into(),
                    (_, Some(d)) => format!("{:+.1} pts", 100.0 * d),
                    (_, None) => "n/a".into(),
                });
                row
            })
            .collect();
        let samples = self.arms.iter().find_map(|a| a.samples_per_task);
        let mut sections = vec![Section {
            title: "Final models on MBPP_Test (Table 4)".into(),
            text: vec![format!(
                "{} tasks, {} samples per task at the run's test temperature; pass@k is the \
                 unbiased estimator of Chen et al. (2021), CIs are percentile bootstrap over tasks \
                 (same resamples for every arm). Gold and human refinements use the task ids of \
                 ILF (human)'s training set.",
                self.test_tasks,
                samples.map_or("?".into(), |s| s.to_string())
            )],
            table: Some((arm_header, arm_rows)),
            chart: true,
        }];

        let refiner_ks: Vec<usize> = {
            let mut ks: Vec<usize> = self
                .refiner
                .iter()
                .flat_map(|r| r.pass_at_k.iter().map(|p| p.k))
                .collect();
            ks.sort_unstable();
            ks.dedup();
            ks
        };
        let mut header = vec!["Feedback".to_string(), "Tasks".into(), "Refinements".into()];
        header.extend(refiner_ks.iter().map(|k| format!("pass@{k}")));
        header.extend(["1+ correct".into(), "Training examples".into()]);
        let rows = self
            .refiner
            .iter()
            .map(|r| {
                let mut row = vec![
                    r.source.clone(),
                    r.tasks.to_string(),
                    r.refinements.to_string(),
                ];
                for k in &refiner_ks {
                    row.push(
                        r.pass_at_k
                            .iter()
                            .find(|p| p.k == *k)
                            .map_or("n/a".into(), |p| pct_ci(p.value, p.ci)),
                    );
                }
                row.push(pct(r.one_plus_correct));
                row.push(r.selected.to_string());
                row
            })
            .collect();
        sections.push(Section {
            title: "π_Refine's refinements on the MBPP_Train pool (Table 3)".into(),
            text: vec![format!(
                "π_Refine was fine-tuned from the base model on {} human triples ({} optimizer \
                 steps, final loss {}). Human feedback refines the paper's annotated programs on \
                 the {} annotated pool tasks; execution and model feedback refine the policy's \
                 own failing samples on the {} tasks of its {}-task own-failure pool where none \
                 of its samples passed.",
                self.refiner_train_examples,
                self.refiner_steps,
                self.refiner_final_loss
                    .map_or("n/a".into(), |l| format!("{l:.3}")),
                self.pool_tasks.len(),
                self.own_failure_tasks.len(),
                self.own_pool_tasks.len()
            )],
            table: Some((header, rows)),
            chart: false,
        });

        let p = &self.policy_on_pool;
        sections.push(Section {
            title: "Zero-shot policy on the own-failure MBPP_Train pool".into(),
            text: vec![format!(
                "{} samples over {} tasks: pass@1 {}, 1+ correct {}.",
                p.samples,
                p.tasks,
                p.pass_at(1).map_or("n/a".into(), |x| pct_ci(x.value, x.ci)),
                pct(p.one_plus_correct)
            )],
            table: None,
            chart: false,
        });

        sections.push(Section {
            title: "Feedback (Table 6)".into(),
            text: vec!["Words per feedback are whitespace-separated words.".into()],
            table: Some((
                vec![
                    "Source".into(),
                    "Used for".into(),
                    "Count".into(),
                    "Words per feedback (mean ± sd)".into(),
                ],
                self.feedback
                    .iter()
                    .map(|f| {
                        vec![
                            f.source.clone(),
                            f.role.clone(),
                            f.count.to_string(),
                            match (f.words_mean, f.words_sd) {
                                (Some(m), Some(sd)) => format!("{m:.1} ± {sd:.1}"),
                                (Some(m), None) => format!("{m:.1}"),
                                _ => "n/a".into(),
                            },
                        ]
                    })
                    .collect(),
            )),
            chart: false,
        });

        let total: f64 = self.stages.iter().map(|s| s.wall_s).sum();
        let mut rows: Vec<Vec<String>> = self
            .stages
            .iter()
            .map(|s| {
                vec![
                    s.stage.clone(),
                    duration(s.wall_s),
                    s.tokens_per_s.map_or(String::new(), |t| format!("{t:.0}")),
                ]
            })
            .collect();
        rows.push(vec!["total".into(), duration(total), String::new()]);
        sections.push(Section {
            title: "Time per stage".into(),
            text: vec![
                "Wall time of the invocation that finished each stage (a resumed stage counts \
                 only its last part)."
                    .into(),
            ],
            table: Some((
                vec!["Stage".into(), "Wall time".into(), "Tokens/s".into()],
                rows,
            )),
            chart: false,
        });

        sections.push(Section {
            title: "How the arms differ".into(),
            text: self.notes.iter().map(|n| format!("- {n}")).collect(),
            table: None,
            chart: false,
        });
        sections.push(Section {
            title: format!("Settings: the `{}` preset against the paper", self.preset),
            text: if self.differences_from_paper.is_empty() {
                vec!["Every setting is the paper's protocol.".into()]
            } else {
                self.differences_from_paper
                    .iter()
                    .map(|d| format!("- {d}"))
                    .collect()
            },
            table: None,
            chart: false,
        });
        sections
    }

    fn heading(&self) -> String {
        format!(
            "ILF run report: {} (model {}, preset {}, seed {})",
            self.run, self.model, self.preset, self.seed
        )
    }

    pub fn markdown(&self) -> String {
        let mut s = format!("# {}\n\n", self.heading());
        for section in self.sections() {
            s += &format!("## {}\n\n", section.title);
            for line in &section.text {
                s += line;
                s += "\n";
            }
            s += "\n";
            if let Some((header, rows)) = &section.table {
                s += &format!("| {} |\n", header.join(" | "));
                s += &format!("|{}\n", "---|".repeat(header.len()));
                for row in rows {
                    let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
                    s += &format!("| {} |\n", cells.join(" | "));
                }
                s += "\n";
            }
            if section.chart {
                s += "![pass@1 per arm with 95% CIs](pass_at_1.svg)\n\n";
            }
        }
        s
    }

    pub fn html(&self, svg: &str) -> String {
        let mut s = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n\
             <style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}}\
             table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;\
             padding:4px 8px;text-align:left}}th{{background:#f3f3f3}}</style></head><body>\n\
             <h1>{}</h1>\n",
            escape(&self.heading()),
            escape(&self.heading())
        );
        for section in self.sections() {
            s += &format!("<h2>{}</h2>\n", escape(&section.title));
            let bullets: Vec<&String> = section
                .text
                .iter()
                .filter(|l| l.starts_with("- "))
                .collect();
            if bullets.is_empty() {
                for line in &section.text {
                    s += &format!("<p>{}</p>\n", escape(line));
                }
            } else {
                s += "<ul>\n";
                for line in bullets {
                    s += &format!("<li>{}</li>\n", escape(&line[2..]));
                }
                s += "</ul>\n";
            }
            if let Some((header, rows)) = &section.table {
                s += "<table><tr>";
                for h in header {
                    s += &format!("<th>{}</th>", escape(h));
                }
                s += "</tr>\n";
                for row in rows {
                    s += "<tr>";
                    for c in row {
                        s += &format!("<td>{}</td>", escape(c));
                    }
                    s += "</tr>\n";
                }
                s += "</table>\n";
            }
            if section.chart {
                s += svg;
            }
        }
        s += "</body></html>\n";
        s
    }

    /// The comparison of the arms as a plain-text table, for the end of `ilf run`.
    pub fn terminal_table(&self) -> String {
        let sections = self.sections();
        let Some((header, rows)) = &sections[0].table else {
            return String::new();
        };
        // The description column is long; the terminal shows the rest.
        let keep: Vec<usize> = (0..header.len()).filter(|&i| i != 1).collect();
        let widths: Vec<usize> = keep
            .iter()
            .map(|&i| {
                rows.iter()
                    .map(|r| r[i].chars().count())
                    .chain([header[i].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &Vec<String>| {
            keep.iter()
                .zip(&widths)
                .map(|(&i, w)| format!("{:<w$}", cells[i], w = *w))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        };
        let mut s = format!("{}\n", line(header));
        for row in rows {
            s += &line(row);
            s += "\n";
        }
        s
    }
}

struct Section {
    title: String,
    text: Vec<String>,
    table: Option<(Vec<String>, Vec<Vec<String>>)>,
    chart: bool,
}

fn pct(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{:.1}%", 100.0 * v))
}

fn pct_ci(v: Option<f64>, ci: Option<Interval>) -> String {
    match (v, ci) {
        (Some(v), Some(ci)) => format!(
            "{:.1}% [{:.1}, {:.1}]",
            100.0 * v,
            100.0 * ci.low,
            100.0 * ci.high
        ),
        (v, _) => pct(v),
    }
}

fn duration(seconds: f64) -> String {
    if seconds >= 60.0 {
        format!(
            "{}m{:02}s",
            (seconds / 60.0) as u64,
            (seconds % 60.0) as u64
        )
    } else {
        format!("{seconds:.1}s")
    }
}

/// The finished stages in run order, with their times.
fn stage_times(run: &RunDir) -> Result<Vec<StageTime>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&run.root)? {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if path.join(super::manifest::MANIFEST).exists() {
            names.push(name.clone());
        }
        for sub in std::fs::read_dir(&path)? {
            let sub = sub?.path();
            if sub.join(super::manifest::MANIFEST).exists() {
                names.push(format!(
                    "{name}/{}",
                    sub.file_name().unwrap_or_default().to_string_lossy()
                ));
            }
        }
    }
    names.sort_by_key(|n| stage_order(n));
    names
        .into_iter()
        .filter_map(|name| run.manifest(&name).transpose())
        .map(|m| {
            let m = m?;
            let tokens_per_s = m
                .details
                .get("tokens_per_s")
                .or_else(|| m.details.pointer("/sampling/tokens_per_s"))
                .and_then(serde_json::Value::as_f64);
            Ok(StageTime {
                stage: m.stage,
                wall_s: m.wall_s,
                tokens_per_s,
            })
        })
        .collect()
}

/// Stages sort by number; arms inside a stage by the fixed arm order, then by name.
fn stage_order(name: &str) -> (String, usize, String) {
    let (stage, sub) = name.split_once('/').unwrap_or((name, ""));
    let arm = Arm::ALL
        .iter()
        .position(|a| a.name() == sub)
        .unwrap_or(usize::MAX);
    (stage.to_string(), arm, sub.to_string())
}

/// What a reader must know to compare the arms.
fn notes(config: &RunConfig, feedback: &FeedbackDetails) -> Vec<String> {
    let ids = |v: &[u32]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
        }
    };
    vec![
        format!(
            "ILF (human) refines, for each of the {} annotated pool tasks ({}), the \
             paper's annotated failing program (written by CodeGen-Mono 6.1B, not by this policy) \
             with its human feedback.",
            feedback.human_tasks.len(),
            ids(&feedback.human_tasks)
        ),
        format!(
            "ILF (execution) refines this policy's own failures: for each task of the \
             own-failure pool ({}) where none of its {} zero-shot samples passed, one failing \
             sample drawn with the run's seed, with its verdict in words as feedback ({} tasks: \
             {}). Its task set therefore depends on the policy, and differs from the human \
             arm's.",
            own_pool_text(config, feedback),
            config.policy_sample.n,
            feedback.own_failure_tasks.len(),
            ids(&feedback.own_failure_tasks)
        ),
        format!(
            "Both ILF arms use the same π_Refine, trained only on human triples ({} tasks: {}); \
             every arm fine-tunes the base model, not π_Refine.",
            feedback.refiner_tasks.len(),
            ids(&feedback.refiner_tasks)
        ),
        "Every sample, refinements included, stops where the function ends (ilf-data's \
         truncation rule, which keeps helper functions); the paper ran π_Refine's output \
         unstopped. Training completions are the programs' bodies as executed."
            .into(),
        "MBPP gold bodies and human refinements have `\\r\\n` made `\\n` (the paper trained on \
         gold with `\\r\\n`)."
            .into(),
        if config.arms.contains(&Arm::IlfModel) {
            format!(
                "ILF (model) refines the same failing samples as ILF (execution), with feedback \
                 written by {} from a {}-shot prompt of human annotations outside MBPP_Test \
                 (ilf-feedback's model-written feedback; the paper used InstructGPT).",
                if config.feedback_model.model.is_empty() {
                    format!("the policy itself ({})", config.model)
                } else {
                    config.feedback_model.model.clone()
                },
                config.feedback_model.shots
            )
        } else {
            "ILF with model-written feedback is not among this run's arms.".into()
        },
    ]
}

/// What the own-failure pool is, in words.
fn own_pool_text(config: &RunConfig, feedback: &FeedbackDetails) -> String {
    if config.tasks.own_failure_pool.trim().is_empty() {
        "the annotated pool".into()
    } else {
        format!(
            "MBPP_Train tasks {}, {} tasks, annotated or not: execution and model feedback need \
             no human",
            config.tasks.own_failure_pool,
            feedback.own_pool.len()
        )
    }
}

/// Settings where `config` differs from the `paper` preset, as `field: paper → run` lines.
pub fn differences_from_paper(config: &RunConfig) -> Result<Vec<String>> {
    let paper: toml::Table = toml::from_str(
        PRESETS
            .iter()
            .find(|(n, _)| *n == "paper")
            .map(|(_, t)| *t)
            .unwrap_or_default(),
    )?;
    let run: toml::Table = toml::from_str(&config.to_toml()?)?;
    let mut out = Vec::new();
    diff("", &paper, &run, &mut out);
    Ok(out)
}

fn diff(prefix: &str, paper: &toml::Table, run: &toml::Table, out: &mut Vec<String>) {
    for (key, value) in run {
        if prefix.is_empty() && (key == "preset" || key == "seed") {
            continue;
        }
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (paper.get(key), value) {
            (Some(toml::Value::Table(p)), toml::Value::Table(r)) => diff(&name, p, r, out),
            (Some(p), r) if p == r => {}
            (p, r) => out.push(format!(
                "{name}: {} → {}",
                p.map_or("(unset)".into(), |p| p.to_string()),
                r
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_lists_what_it_changes_and_paper_nothing() {
        let paper = RunConfig::resolve("paper", None, toml::Table::new()).unwrap();
        assert!(differences_from_paper(&paper).unwrap().is_empty());
        let quick = RunConfig::resolve("quick", None, toml::Table::new()).unwrap();
        let d = differences_from_paper(&quick).unwrap();
        assert!(
            d.iter().any(|l| l.starts_with("test_sample.n: 30 → 3")),
            "{d:?}"
        );
        assert!(
            d.iter().any(|l| l.starts_with("policy_train.method")),
            "{d:?}"
        );
        assert!(!d.iter().any(|l| l.starts_with("tasks.test")), "{d:?}");
    }
}
