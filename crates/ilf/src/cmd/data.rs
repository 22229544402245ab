//! `ilf data`: get MBPP onto the machine and look at the prompts the pipeline will use.

use crate::output::Output;
use anyhow::{bail, Context, Result};
use ilf_data::{
    fetch::{self, Fetched, Source},
    mbpp::{self, Mbpp},
    prompt,
    split::{parse_task_ids, Split},
};
use std::{io::Write, path::PathBuf};

/// MBPP: download it, or show tasks and their prompts.
#[derive(clap::Args)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(clap::Subcommand)]
enum DataCommand {
    /// Install MBPP as $ILF_CACHE/mbpp.jsonl (default ~/.cache/ilf), checked against its pinned
    /// SHA-256; does nothing if it is already there.
    Fetch(FetchArgs),
    /// Print the paper's prompt for some tasks (with --json: one JSON row per task).
    Show(ShowArgs),
}

#[derive(clap::Args)]
struct FetchArgs {
    /// Copy this local mbpp.jsonl instead of downloading (for machines without internet).
    #[arg(long, value_name = "PATH", env = "ILF_FETCH_FROM")]
    from: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ShowArgs {
    /// Task ids, e.g. `11-20,42`.
    #[arg(
        long,
        value_name = "IDS",
        conflicts_with = "split",
        required_unless_present = "split"
    )]
    tasks: Option<String>,
    /// A split: prompt, test, refine, train, all, mbpp-prompt, mbpp-test, mbpp-validation,
    /// mbpp-train.
    #[arg(long, value_name = "NAME")]
    split: Option<Split>,
    /// The MBPP file (default: $ILF_MBPP, else $ILF_CACHE/mbpp.jsonl).
    #[arg(long, value_name = "PATH")]
    mbpp: Option<PathBuf>,
}

pub fn run(args: DataArgs, out: Output) -> Result<()> {
    match args.command {
        DataCommand::Fetch(args) => run_fetch(args, out),
        DataCommand::Show(args) => run_show(args, out),
    }
}

fn run_fetch(args: FetchArgs, out: Output) -> Result<()> {
    let dest = mbpp::default_path();
    let source = match &args.from {
        Some(path) => Source::File(path),
        None => Source::Url(fetch::MBPP_URL),
    };
    if matches!(source, Source::Url(_)) {
        out.say(format!("Downloading {} ...", fetch::MBPP_URL));
    }
    let fetched = fetch::fetch_mbpp(source, &dest)?;
    let (status, source) = match &fetched {
        Fetched::AlreadyCached { .. } => ("already_cached", None),
        Fetched::Installed { source, .. } => ("installed", Some(source.as_str())),
    };
    if out.json {
        let row = serde_json::json!({
            "status": status,
            "path": dest,
            "source": source,
            "sha256": fetch::MBPP_SHA256,
        });
        println!("{row}");
    } else {
        match source {
            None => out.say(format!("MBPP is already at {} (sha256 ok)", dest.display())),
            Some(source) => out.say(format!(
                "Installed MBPP (974 tasks, sha256 ok) from {source} at {}",
                dest.display()
            )),
        }
    }
    Ok(())
}

fn run_show(args: ShowArgs, out: Output) -> Result<()> {
    let ids: Vec<u32> = match (&args.tasks, args.split) {
        (Some(spec), _) => parse_task_ids(spec)?,
        (None, Some(split)) => split.ids().collect(),
        (None, None) => bail!("pass --tasks IDS or --split NAME"),
    };
    let mbpp = Mbpp::resolve(args.mbpp.as_deref())?;
    let tasks = ids
        .iter()
        .map(|&id| {
            mbpp.get(id)
                .with_context(|| format!("task {id} is not in MBPP (ids 1..={})", mbpp::TASK_COUNT))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut stdout = std::io::stdout().lock();
    for task in tasks {
        let text = prompt::paper_prompt(task);
        if out.json {
            let row = serde_json::json!({
                "task_id": task.task_id,
                "entry_point": prompt::entry_point(task),
                "prompt": text,
                "test_list": task.test_list,
                "test_setup_code": task.test_setup_code,
            });
            writeln!(stdout, "{row}")?;
        } else {
            writeln!(
                stdout,
                "# task {} (entry point {})",
                task.task_id,
                prompt::entry_point(task)
            )?;
            writeln!(stdout, "{text}")?;
        }
    }
    Ok(())
}
