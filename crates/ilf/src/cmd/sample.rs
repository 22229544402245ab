//! `ilf sample`: draw completions for MBPP paper prompts (or any prompts) into a JSONL file that
//! `ilf eval` reads. Rows stream out as samples finish; a stopped run resumes where it left off.

use crate::output::Output;
use crate::pipeline::sampling::{done_pairs, prompt_seed};
use anyhow::{bail, Context, Result};
use ilf_data::mbpp::{self, Mbpp};
use ilf_data::records::{JsonlAppender, SampleRow};
use ilf_data::split::{parse_task_ids, Split};
use ilf_lm::registry;
use ilf_lm::sampling::{GenRequest, Generator, LocalGenerator, NoStop, SamplingParams, StopRule};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

/// Sample completions from a model: one row per (task, sample) with
/// `{task_id, sample, prompt, completion, tokens, finish_reason}`.
#[derive(clap::Args, Debug, Clone)]
pub struct SampleArgs {
    /// A registry name (see `ilf models list`; fetched if missing), a .gguf file or a Hugging Face
    /// directory.
    #[arg(long, env = "ILF_MODEL", default_value = registry::DEFAULT)]
    pub model: String,
    /// MBPP split whose tasks are sampled (default: test), e.g. test, refine, train.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["tasks", "prompts"])]
    pub split: Option<Split>,
    /// MBPP task ids, e.g. `11-20,42`.
    #[arg(long, value_name = "IDS", conflicts_with = "prompts")]
    pub tasks: Option<String>,
    /// Arbitrary prompts instead of MBPP: JSONL rows `{"task_id": N, "prompt": "..."}`
    /// (`task_id` optional: the line number then).
    #[arg(long, value_name = "FILE.jsonl")]
    pub prompts: Option<PathBuf>,
    /// Samples per prompt.
    #[arg(long, default_value_t = 10)]
    pub n: usize,
    /// 0 samples greedily.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f64,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// 0 keeps every token.
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// New tokens per sample at most.
    #[arg(long, default_value_t = 384)]
    pub max_tokens: usize,
    /// Sample j of task t draws from a stream seeded by (seed, t, j): reruns and resumed runs
    /// give the same text.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output JSONL; rows already there are kept and their (task, sample) pairs skipped.
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Sequences decoded together (more is faster on CPU until memory runs out).
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// cpu, cuda or cuda:N (cuda needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu", env = "ILF_DEVICE")]
    pub device: String,
    /// Keep the weights quantized (about a quarter of the memory, slower when batching on CPU).
    #[arg(long)]
    pub quantized: bool,
    /// Where a completion ends: `mbpp` (the function is over: section 3.4's rule) or `none`
    /// (end-of-sequence or the token limit).
    #[arg(long, default_value = "mbpp", value_parser = ["mbpp", "none"])]
    pub stop: String,
    /// The MBPP file (default: $ILF_MBPP, else $ILF_CACHE/mbpp.jsonl).
    #[arg(long, value_name = "PATH")]
    pub mbpp: Option<PathBuf>,
    /// `local` (this machine) or `openai` (OpenAI-compatible servers: vLLM, `ilf serve`; then
    /// --model is the served model name).
    #[arg(long, env = "ILF_BACKEND", default_value = "local", value_parser = ["local", "openai"])]
    pub backend: String,
    /// With --backend openai: a server's base URL, e.g. http://host:8000/v1; repeat (or
    /// comma-separate) for replicas, used round-robin.
    #[arg(
        long = "base-url",
        value_name = "URL",
        env = "ILF_BASE_URL",
        value_delimiter = ','
    )]
    pub base_url: Vec<String>,
    /// With --backend openai: HTTP requests in flight, over all replicas.
    #[arg(long, env = "ILF_CONCURRENCY", default_value_t = 32)]
    pub concurrency: usize,
    /// With --backend openai: retries per request (connection errors, 429, 5xx).
    #[arg(long, default_value_t = 5)]
    pub retries: usize,
}

/// What a sampling run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SampleSummary {
    pub out: PathBuf,
    pub written: usize,
    pub already_present: usize,
    pub tokens: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
}

struct Prompt {
    task_id: u32,
    text: String,
}

#[derive(Deserialize)]
struct PromptRow {
    task_id: Option<u32>,
    prompt: String,
}

fn prompts(args: &SampleArgs) -> Result<Vec<Prompt>> {
    if let Some(path) = &args.prompts {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut out = Vec::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let row: PromptRow = serde_json::from_str(line).with_context(|| {
                format!(
                    "{}:{}: expected {{\"task_id\": N, \"prompt\": \"...\"}}",
                    path.display(),
                    i + 1
                )
            })?;
            out.push(Prompt {
                task_id: row.task_id.unwrap_or(i as u32 + 1),
                text: row.prompt,
            });
        }
        let mut seen = HashSet::new();
        if let Some(dup) = out.iter().find(|p| !seen.insert(p.task_id)) {
            bail!("{}: task_id {} appears twice", path.display(), dup.task_id);
        }
        return Ok(out);
    }
    let ids: Vec<u32> = match (&args.tasks, args.split) {
        (Some(spec), _) => parse_task_ids(spec)?,
        (None, Some(split)) => split.ids().collect(),
        (None, None) => Split::Test.ids().collect(),
    };
    let data = Mbpp::resolve(args.mbpp.as_deref())?;
    ids.iter()
        .map(|&id| {
            let task = data.get(id).with_context(|| {
                format!("task {id} is not in MBPP (ids 1..={})", mbpp::TASK_COUNT)
            })?;
            Ok(Prompt {
                task_id: id,
                text: ilf_data::prompt::paper_prompt(task),
            })
        })
        .collect()
}

/// The MBPP completion rule (ilf-data's truncation, streamed).
struct MbppStop;

impl StopRule for MbppStop {
    fn stop_index(&self, completion: &str) -> Option<usize> {
        ilf_data::truncate::stop_index(completion)
    }
}

pub fn run(args: SampleArgs, out: Output) -> Result<()> {
    let summary = sample(&args, out)?;
    if out.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        out.say(format!(
            "Wrote {} samples to {} ({} already there); {} tokens in {:.1} s, {:.1} tokens/s",
            summary.written,
            summary.out.display(),
            summary.already_present,
            summary.tokens,
            summary.seconds,
            summary.tokens_per_s
        ));
    }
    Ok(())
}

/// Samples as `args` says, appending to `args.out`; the library entry point of `ilf sample`.
pub fn sample(args: &SampleArgs, out: Output) -> Result<SampleSummary> {
    if !(0.0..=1.0).contains(&args.top_p) || args.top_p == 0.0 {
        bail!("--top-p must be in (0, 1], got {}", args.top_p);
    }
    if args.temperature < 0.0 {
        bail!("--temperature must be >= 0, got {}", args.temperature);
    }
    let prompts = prompts(args)?;
    let done = done_pairs(&args.out)?;
    let params = SamplingParams {
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        max_tokens: args.max_tokens,
    };
    let requests: Vec<GenRequest> = prompts
        .iter()
        .map(|p| GenRequest {
            prompt: p.text.clone(),
            samples: (0..args.n)
                .filter(|s| !done.contains(&(p.task_id, *s)))
                .collect(),
            seed: prompt_seed(args.seed, p.task_id),
            params,
        })
        .collect();
    let todo: usize = requests.iter().map(|r| r.samples.len()).sum();
    let already_present = prompts.len() * args.n - todo;
    let summary = |written, tokens, seconds: f64| SampleSummary {
        out: args.out.clone(),
        written,
        already_present,
        tokens,
        seconds,
        tokens_per_s: if seconds > 0.0 {
            tokens as f64 / seconds
        } else {
            0.0
        },
    };
    if todo == 0 {
        return Ok(summary(0, 0, 0.0));
    }
    let loaded;
    let generator: Box<dyn Generator + '_> = if args.backend == "openai" {
        ilf_lm::openai::generator(&args.base_url, &args.model, args.concurrency, args.retries)?
    } else {
        loaded = super::load_local_model(&args.model, &args.device, args.quantized, &out)?;
        let ctx = loaded.config.max_position_embeddings;
        for (p, r) in prompts.iter().zip(&requests) {
            if r.samples.is_empty() {
                continue;
            }
            let len = ilf_lm::tokenizer::encode(&loaded.tokenizer, &p.text)?.len();
            if len >= ctx {
                bail!("task {}: the prompt has {len} tokens but the model's context is {ctx}; shorten the prompt", p.task_id);
            }
        }
        Box::new(LocalGenerator {
            model: &loaded.model,
            tokenizer: &loaded.tokenizer,
            eos_token_ids: loaded.info.eos_token_ids.clone(),
            batch_size: args.batch.max(1),
        })
    };
    let stop: &dyn StopRule = if args.stop == "mbpp" {
        &MbppStop
    } else {
        &NoStop
    };
    let mut appender = JsonlAppender::open(&args.out)?;
    let bar = out.progress(todo as u64, "sampling");
    let start = Instant::now();
    let (mut written, mut tokens) = (0usize, 0usize);
    generator.generate(&requests, stop, &mut |g| {
        let p = &prompts[g.request];
        let mut extra = serde_json::Map::new();
        extra.insert("sample".into(), g.sample.into());
        extra.insert("prompt".into(), p.text.clone().into());
        extra.insert("tokens".into(), g.tokens.into());
        extra.insert(
            "finish_reason".into(),
            serde_json::to_value(g.finish_reason)?,
        );
        let row = SampleRow {
            task_id: p.task_id,
            completion: Some(g.completion),
            program: None,
            extra,
        };
        appender.append(&row)?;
        written += 1;
        tokens += g.tokens;
        bar.inc(1);
        bar.set_message(format!(
            "{:.1} tok/s",
            tokens as f64 / start.elapsed().as_secs_f64()
        ));
        Ok(())
    })?;
    bar.finish_and_clear();
    appender.sync()?;
    Ok(summary(written, tokens, start.elapsed().as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use ilf_lm::models::{Architecture, Config};
    use std::collections::HashMap;
    use std::path::Path;

    /// A tiny random model as a Hugging Face directory, with a tokenizer trained on the spot.
    fn tiny_model_dir(dir: &Path) -> PathBuf {
        let tok = ilf_lm::tokenizer::train_byte_level_bpe(
            &ilf_lm::tokenizer::stdlib_corpus(200_000).unwrap(),
            300,
        )
        .unwrap();
        let cfg = Config::tiny(Architecture::Qwen2, tok.get_vocab_size(true));
        let weights = ilf_lm::tiny_random_weights(&cfg, 5, &Device::Cpu).unwrap();
        let model = dir.join("tiny");
        std::fs::create_dir_all(&model).unwrap();
        std::fs::write(model.join("config.json"), cfg.to_hf_json().to_string()).unwrap();
        tok.save(model.join("tokenizer.json"), false).unwrap();
        candle_core::safetensors::save(&weights, model.join("model.safetensors")).unwrap();
        model
    }

    fn args(model: &Path, prompts: &Path, out: &Path, n: usize) -> SampleArgs {
        SampleArgs {
            model: model.display().to_string(),
            split: None,
            tasks: None,
            prompts: Some(prompts.to_path_buf()),
            n,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            max_tokens: 6,
            seed: 3,
            out: out.to_path_buf(),
            batch: 3,
            device: "cpu".into(),
            quantized: false,
            stop: "none".into(),
            mbpp: None,
            backend: "local".into(),
            base_url: Vec::new(),
            concurrency: 4,
            retries: 2,
        }
    }

    fn rows(path: &Path) -> HashMap<(u32, u64), serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    (
                        v["task_id"].as_u64().unwrap() as u32,
                        v["sample"].as_u64().unwrap(),
                    ),
                    v,
                )
            })
            .collect()
    }

    #[test]
    fn writes_rows_and_resumes_after_an_interruption() {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model_dir(dir.path());
        let prompts = dir.path().join("prompts.jsonl");
        std::fs::write(
            &prompts,
            "{\"task_id\": 7, \"prompt\": \"def f(x):\\n\"}\n{\"prompt\": \"import os\\n\"}\n",
        )
        .unwrap();
        let quiet = Output {
            quiet: true,
            json: false,
        };

        let out = dir.path().join("samples.jsonl");
        let first = sample(&args(&model, &prompts, &out, 2), quiet).unwrap();
        assert_eq!((first.written, first.already_present), (4, 0));
        let before = rows(&out);
        assert_eq!(before.len(), 4);
        let row = &before[&(7, 1)];
        assert_eq!(row["prompt"], "def f(x):\n");
        for key in ["completion", "tokens", "finish_reason"] {
            assert!(row.get(key).is_some(), "row lacks {key}: {row}");
        }
        assert!(
            before.contains_key(&(2, 0)),
            "a prompt without task_id takes its line number"
        );

        // A killed run leaves a partial line; the next run drops it and adds only what is missing.
        let mut text = std::fs::read_to_string(&out).unwrap();
        text.push_str("{\"task_id\": 7, \"sam");
        std::fs::write(&out, text).unwrap();
        let second = sample(&args(&model, &prompts, &out, 3), quiet).unwrap();
        assert_eq!((second.written, second.already_present), (2, 4));
        let after = rows(&out);
        assert_eq!(after.len(), 6);
        for (key, row) in &before {
            assert_eq!(&after[key], row);
        }
        assert_eq!(
            sample(&args(&model, &prompts, &out, 3), quiet)
                .unwrap()
                .written,
            0
        );

        // The resumed file equals a run that did all three samples at once.
        let fresh = dir.path().join("fresh.jsonl");
        sample(&args(&model, &prompts, &fresh, 3), quiet).unwrap();
        assert_eq!(rows(&fresh), after);
    }

    #[test]
    fn the_openai_backend_against_ilf_serve_gives_the_local_samples() {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model_dir(dir.path());
        let prompts = dir.path().join("prompts.jsonl");
        std::fs::write(
            &prompts,
            "{\"task_id\": 7, \"prompt\": \"def f(x):\\n\"}\n{\"task_id\": 9, \"prompt\": \"import os\\n\"}\n",
        )
        .unwrap();
        let quiet = Output {
            quiet: true,
            json: false,
        };
        let local = dir.path().join("local.jsonl");
        sample(&args(&model, &prompts, &local, 3), quiet).unwrap();

        let loaded = ilf_lm::load(
            model.to_str().unwrap(),
            &Device::Cpu,
            ilf_lm::LoadMode::Inference,
        )
        .unwrap();
        let server = ilf_lm::serve::bind(
            ilf_lm::serve::Engine::from_loaded(loaded, "tiny"),
            &ilf_lm::serve::ServeConfig {
                bind: "127.0.0.1:0".parse().unwrap(),
                ..Default::default()
            },
        )
        .unwrap();
        let remote = dir.path().join("remote.jsonl");
        let mut remote_args = args(&model, &prompts, &remote, 3);
        remote_args.backend = "openai".into();
        remote_args.model = "tiny".into();
        remote_args.base_url = vec![server.base_url()];
        sample(&remote_args, quiet).unwrap();
        server.shutdown().unwrap();

        let (local, remote) = (rows(&local), rows(&remote));
        assert_eq!(local.len(), 6);
        assert_eq!(remote.len(), 6);
        for (key, row) in &local {
            assert_eq!(
                row["completion"], remote[key]["completion"],
                "sample {key:?}"
            );
        }
    }

    #[test]
    fn prompt_seeds_differ_per_task_and_run_seed() {
        assert_ne!(prompt_seed(0, 11), prompt_seed(0, 12));
        assert_ne!(prompt_seed(0, 11), prompt_seed(1, 11));
        assert_eq!(prompt_seed(5, 11), prompt_seed(5, 11));
    }
}
