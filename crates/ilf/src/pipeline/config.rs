//! The run configuration: presets (TOML files embedded in the binary), a user's TOML file that
//! overrides any field, and the command-line flags on top; resolved once and written first as
//! `config.toml` in the run directory.
//!
//! Resolution is a deep merge of TOML tables (preset, then `--config`, then flags), followed by a
//! strict parse: an unknown or misspelt key is an error naming it, so an override never silently
//! does nothing.

use anyhow::{bail, Context, Result};
use ilf_data::split::{parse_task_ids, Split};
use ilf_lm::sampling::SamplingParams;
use ilf_train::lora::{LoraOptions, DEFAULT_TARGETS};
use ilf_train::trainable::Method;
use ilf_train::trainer::BaseDtype;
use ilf_train::trainer::TrainOptions;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The presets, by name, as shipped.
pub const PRESETS: [(&str, &str); 3] = [
    ("quick", include_str!("../../presets/quick.toml")),
    ("paper", include_str!("../../presets/paper.toml")),
    ("tiny", include_str!("../../presets/tiny.toml")),
];

/// The model spec that makes the pipeline build a tiny random model and tokenizer in the run
/// directory (tests and CI: no download, seconds per stage).
pub const TINY_MODEL: &str = "tiny-random";

/// Everything that decides what a run computes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The preset this configuration started from.
    pub preset: String,
    /// Registry name, `.gguf` file, Hugging Face directory, or `tiny-random`.
    pub model: String,
    pub seed: u64,
    /// The arms to train and test, run in the order of [`Arm::ALL`].
    pub arms: Vec<Arm>,
    pub tasks: TaskConfig,
    /// Zero-shot policy samples on the MBPP_Train pool (stage 01): their failures receive
    /// execution feedback.
    pub policy_sample: SampleConfig,
    /// Refinements per feedback (stage 05).
    pub refine_sample: SampleConfig,
    /// Samples per MBPP_Test task for every arm (stage 08).
    pub test_sample: SampleConfig,
    pub refiner: RefinerConfig,
    /// The model that writes feedback for the ILF (model) arm.
    pub feedback_model: FeedbackModelConfig,
    /// Fine-tuning of the policy for every trained arm (stage 07), always from the base model.
    pub policy_train: TrainConfig,
    pub eval: EvalConfig,
}

/// Which tasks the run uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// MBPP_Test ids, e.g. `11-110`.
    pub test: String,
    /// How many annotated MBPP_Train tasks form the training pool, drawn with the run's seed;
    /// 0 takes all of them (128 with the paper's annotations).
    pub train_limit: usize,
    /// MBPP_Train ids (311-974) whose zero-shot samples are drawn and whose failures the
    /// execution and model arms refine, e.g. `311-390`. Those arms need no human annotation, so
    /// their pool need not be annotated and can be larger than the annotated one. Empty: the
    /// annotated pool (every ILF arm then draws from the same tasks, as in the paper).
    #[serde(default)]
    pub own_failure_pool: String,
}

impl TaskConfig {
    /// The tasks of [`TaskConfig::own_failure_pool`]; `annotated` when it is empty.
    pub fn own_failure_ids(&self, annotated: &[u32]) -> Result<Vec<u32>> {
        if self.own_failure_pool.trim().is_empty() {
            return Ok(annotated.to_vec());
        }
        let mut ids = parse_task_ids(&self.own_failure_pool)
            .with_context(|| format!("tasks.own_failure_pool = {:?}", self.own_failure_pool))?;
        let train = Split::Train.ids();
        if let Some(id) = ids.iter().find(|id| !train.contains(id)) {
            bail!(
                "tasks.own_failure_pool = {:?}: task {id} is not an MBPP_Train task (311-974); the \
                 policy's own failures must come from tasks outside MBPP_Test and MBPP_Refine",
                self.own_failure_pool
            );
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }
}

/// How one sampling stage draws.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    /// Samples per prompt.
    pub n: usize,
    pub temperature: f64,
    pub top_p: f64,
    pub top_k: usize,
    pub max_tokens: usize,
    /// Sequences decoded together.
    pub batch_size: usize,
}

impl SampleConfig {
    pub fn params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            max_tokens: self.max_tokens,
        }
    }
}

/// Model-written feedback (the paper's InstructGPT ablation, with a local instruct model):
/// `ilf-feedback`'s few-shot prompt from human annotations outside MBPP_Test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackModelConfig {
    /// Registry name, `.gguf` file or Hugging Face directory with a ChatML template; empty uses
    /// the policy itself (self-feedback).
    pub model: String,
    /// Human examples in the prompt.
    pub shots: usize,
    pub temperature: f64,
    pub max_tokens: usize,
    pub batch_size: usize,
}

/// The refinement model π_Refine (ilf-method.md section 3.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefinerConfig {
    /// Which annotated split trains π_Refine: `refine` (MBPP_Refine, ids 111-310, the paper) or
    /// `train` (the run's own MBPP_Train pool). `train` leaks the refinements of the very tasks
    /// the refiner then refines; only the `tiny` preset uses it, so that a random model can
    /// memorise passing refinements and every later stage has data to work on.
    pub train_split: RefinerSplit,
    /// How many of the split's human triples train π_Refine, drawn with the run's seed; 0 takes
    /// all of them (44 in MBPP_Refine with the paper's annotations).
    pub train_limit: usize,
    /// The old program is cut to this many tokens in the refiner's prompt (the paper: 512).
    pub old_code_max_tokens: usize,
    /// The whole refiner prompt at most (the paper: 1024); the feedback is cut to fit.
    pub max_prompt_tokens: usize,
    pub train: TrainConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefinerSplit {
    Refine,
    Train,
}

/// Fine-tuning settings (ilf-method.md section 4), mapped onto `ilf-train`'s options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub method: TrainMethod,
    #[serde(default = "default_rank")]
    pub lora_rank: usize,
    #[serde(default = "default_alpha")]
    pub lora_alpha: f64,
    #[serde(default)]
    pub lora_dropout: f32,
    pub lr: f64,
    pub epochs: usize,
    /// Effective batch (examples per optimizer step).
    pub batch: usize,
    pub micro_batch: usize,
    pub warmup_steps: usize,
    /// Whole-sequence token limit.
    pub max_len: usize,
    /// Checkpoint every this many optimizer steps (and after the last).
    pub save_every: usize,
    /// LoRA only: the frozen base as f32 or bf16 (`ilf train --base-dtype`); left out when f32,
    /// like an unset key.
    #[serde(default, skip_serializing_if = "BaseDtype::is_f32")]
    pub base_dtype: BaseDtype,
}

fn default_rank() -> usize {
    16
}

fn default_alpha() -> f64 {
    32.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrainMethod {
    Full,
    Lora,
}

impl TrainConfig {
    /// `ilf-train`'s options, seeded with `seed`. With fewer examples than the batch, the batch
    /// shrinks to the examples (rounded down to whole micro-batches) so one step still happens.
    pub fn options(&self, seed: u64, examples: usize) -> TrainOptions {
        let method = match self.method {
            TrainMethod::Full => Method::Full,
            TrainMethod::Lora => Method::Lora(LoraOptions {
                rank: self.lora_rank,
                alpha: self.lora_alpha,
                dropout: self.lora_dropout,
                targets: DEFAULT_TARGETS.iter().map(|s| s.to_string()).collect(),
            }),
        };
        let micro = self.micro_batch.max(1).min(examples.max(1));
        let batch = self.batch.min((examples.max(1) / micro) * micro).max(micro);
        TrainOptions {
            method,
            lr: self.lr,
            epochs: self.epochs,
            batch: batch - batch % micro,
            micro_batch: micro,
            warmup_steps: self.warmup_steps,
            max_len: self.max_len,
            seed,
            base_dtype: match self.method {
                TrainMethod::Lora => self.base_dtype,
                TrainMethod::Full => BaseDtype::F32,
            },
            ..TrainOptions::default()
        }
    }
}

/// How programs are run and scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// CPU seconds per program (the paper's 3 s).
    pub timeout_s: f64,
    pub workers: usize,
    /// pass@k values; a k above the samples per task is dropped for that stage.
    pub ks: Vec<usize>,
    pub bootstrap_resamples: usize,
}

/// One row of the paper's Table 4 (ilf-method.md section 5), plus the arms the paper did not
/// run: ILF with execution feedback and with model-written feedback on the policy's own failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arm {
    ZeroShot,
    MbppGold,
    HumanRefinements,
    IlfHuman,
    IlfExecution,
    IlfModel,
}

impl Arm {
    pub const ALL: [Arm; 6] = [
        Arm::ZeroShot,
        Arm::MbppGold,
        Arm::HumanRefinements,
        Arm::IlfHuman,
        Arm::IlfExecution,
        Arm::IlfModel,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Arm::ZeroShot => "zero-shot",
            Arm::MbppGold => "mbpp-gold",
            Arm::HumanRefinements => "human-refinements",
            Arm::IlfHuman => "ilf-human",
            Arm::IlfExecution => "ilf-execution",
            Arm::IlfModel => "ilf-model",
        }
    }

    /// What the policy is fine-tuned on, for the report.
    pub fn description(self) -> &'static str {
        match self {
            Arm::ZeroShot => "base model, no fine-tuning",
            Arm::MbppGold => "MBPP gold programs, on ILF's task ids",
            Arm::HumanRefinements => "human refinements, on ILF's task ids",
            Arm::IlfHuman => "π_Refine refinements from human feedback, test-filtered",
            Arm::IlfExecution => "π_Refine refinements from execution feedback on own failures",
            Arm::IlfModel => "π_Refine refinements from model-written feedback on own failures",
        }
    }
}

impl RunConfig {
    /// Resolves `preset`, then the TOML file `overrides`, then `flags` (a TOML table of the
    /// command-line values), and checks the result.
    pub fn resolve(
        preset: &str,
        overrides: Option<&Path>,
        flags: toml::Table,
    ) -> Result<RunConfig> {
        let Some((_, text)) = PRESETS.iter().find(|(name, _)| *name == preset) else {
            bail!(
                "unknown preset `{preset}`; the presets are {}",
                PRESETS.map(|(n, _)| n).join(", ")
            );
        };
        let mut table: toml::Table = toml::from_str(text)
            .with_context(|| format!("the built-in preset `{preset}` does not parse"))?;
        table.insert("preset".into(), toml::Value::String(preset.into()));
        if let Some(path) = overrides {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!("cannot read the configuration file {}", path.display())
            })?;
            let user: toml::Table = toml::from_str(&text)
                .with_context(|| format!("{} is not valid TOML", path.display()))?;
            merge(&mut table, user);
        }
        merge(&mut table, flags);
        let config: RunConfig = toml::Value::Table(table).try_into().with_context(|| {
            format!(
                "the configuration (preset `{preset}`{}) has a bad or unknown field",
                overrides.map_or(String::new(), |p| format!(" with {}", p.display()))
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that would otherwise fail late, after hours of compute.
    pub fn validate(&self) -> Result<()> {
        parse_task_ids(&self.tasks.test)
            .with_context(|| format!("tasks.test = {:?}", self.tasks.test))?;
        self.tasks.own_failure_ids(&[])?;
        for (name, s) in [
            ("policy_sample", &self.policy_sample),
            ("refine_sample", &self.refine_sample),
            ("test_sample", &self.test_sample),
        ] {
            if s.n == 0 || s.max_tokens == 0 || s.batch_size == 0 {
                bail!("{name}: n, max_tokens and batch_size must be at least 1");
            }
            if !(s.temperature >= 0.0 && s.top_p > 0.0 && s.top_p <= 1.0) {
                bail!("{name}: temperature must be >= 0 and top_p in (0, 1]");
            }
        }
        for (name, t) in [
            ("refiner.train", &self.refiner.train),
            ("policy_train", &self.policy_train),
        ] {
            t.options(0, t.batch)
                .validate()
                .with_context(|| name.to_string())?;
            if t.save_every == 0 {
                bail!("{name}.save_every must be at least 1");
            }
        }
        if self.eval.ks.is_empty() || self.eval.ks.contains(&0) {
            bail!("eval.ks needs positive values, e.g. [1, 10]");
        }
        if self.eval.timeout_s.is_nan() || self.eval.timeout_s <= 0.0 || self.eval.workers == 0 {
            bail!("eval.timeout_s and eval.workers must be positive");
        }
        if self.feedback_model.max_tokens == 0 || self.feedback_model.batch_size == 0 {
            bail!("feedback_model: max_tokens and batch_size must be at least 1");
        }
        if self.arms.is_empty() {
            bail!("arms is empty; name at least one of {}", arm_names());
        }
        Ok(())
    }

    /// The arms to run, in the fixed order.
    pub fn arms_in_order(&self) -> Vec<Arm> {
        Arm::ALL
            .into_iter()
            .filter(|a| self.arms.contains(a))
            .collect()
    }

    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }
}

fn arm_names() -> String {
    Arm::ALL.map(Arm::name).join(", ")
}

/// Merges `over` into `base`: tables merge key by key, anything else is replaced.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_resolves_and_round_trips() {
        for (name, _) in PRESETS {
            let config = RunConfig::resolve(name, None, toml::Table::new()).unwrap();
            assert_eq!(config.preset, name);
            let text = config.to_toml().unwrap();
            let back: RunConfig = toml::from_str(&text).unwrap();
            assert_eq!(back, config);
        }
    }

    #[test]
    fn paper_preset_is_the_papers_protocol() {
        let c = RunConfig::resolve("paper", None, toml::Table::new()).unwrap();
        for s in [c.policy_sample, c.refine_sample, c.test_sample] {
            assert_eq!((s.n, s.temperature, s.max_tokens), (30, 0.8, 1024));
        }
        for t in [&c.refiner.train, &c.policy_train] {
            assert_eq!(t.method, TrainMethod::Full);
            assert_eq!((t.lr, t.epochs, t.batch, t.max_len), (5e-6, 2, 32, 1024));
        }
        assert_eq!(c.tasks.test, "11-110");
        assert_eq!(c.tasks.train_limit, 0);
        assert_eq!(c.refiner.train_split, RefinerSplit::Refine);
        assert_eq!(c.eval.ks, vec![1, 10]);
    }

    #[test]
    fn a_file_overrides_nested_fields_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("over.toml");
        std::fs::write(&path, "seed = 5\n[test_sample]\nn = 7\n").unwrap();
        let mut flags = toml::Table::new();
        flags.insert("seed".into(), toml::Value::Integer(9));
        let c = RunConfig::resolve("quick", Some(&path), flags).unwrap();
        assert_eq!(c.seed, 9);
        assert_eq!(c.test_sample.n, 7);
        let quick = RunConfig::resolve("quick", None, toml::Table::new()).unwrap();
        assert_eq!(c.test_sample.temperature, quick.test_sample.temperature);
    }

    #[test]
    fn unknown_keys_and_presets_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("over.toml");
        std::fs::write(&path, "[test_sample]\nsamples = 7\n").unwrap();
        let err = format!(
            "{:#}",
            RunConfig::resolve("quick", Some(&path), toml::Table::new()).unwrap_err()
        );
        assert!(err.contains("samples"), "{err}");
        let err = RunConfig::resolve("fast", None, toml::Table::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("quick, paper, tiny"), "{err}");
    }

    #[test]
    fn the_own_failure_pool_is_train_ids_or_else_the_annotated_pool() {
        let mut c = RunConfig::resolve("paper", None, toml::Table::new()).unwrap();
        assert_eq!(
            c.tasks.own_failure_ids(&[320, 400]).unwrap(),
            vec![320, 400]
        );
        c.tasks.own_failure_pool = "330,311-313,312".into();
        assert_eq!(
            c.tasks.own_failure_ids(&[320, 400]).unwrap(),
            vec![311, 312, 313, 330]
        );
        c.validate().unwrap();
        // MBPP_Refine and MBPP_Test tasks are refused: their programs train π_Refine or are
        // the test set.
        for bad in ["305-315", "11", "975"] {
            c.tasks.own_failure_pool = bad.into();
            let err = format!("{:#}", c.validate().unwrap_err());
            assert!(err.contains("own_failure_pool"), "{bad}: {err}");
        }
        c.tasks.own_failure_pool = "311-".into();
        assert!(c.validate().is_err());
    }

    #[test]
    fn quick_refines_own_failures_on_more_tasks_than_it_has_annotated() {
        let c = RunConfig::resolve("quick", None, toml::Table::new()).unwrap();
        let own = c.tasks.own_failure_ids(&[]).unwrap();
        assert!(own.len() > c.tasks.train_limit, "{own:?}");
        assert!(own.iter().all(|id| Split::Train.ids().contains(id)));
    }

    #[test]
    fn small_training_sets_shrink_the_batch_to_whole_micro_batches() {
        let c = RunConfig::resolve("paper", None, toml::Table::new()).unwrap();
        let o = c.policy_train.options(1, 5);
        assert_eq!((o.batch, o.micro_batch), (5, 1));
        let o = c.policy_train.options(1, 78);
        assert_eq!((o.batch, o.micro_batch), (32, 1));
        o.validate().unwrap();
    }
}
