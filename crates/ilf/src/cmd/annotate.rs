//! `ilf annotate`: the annotation web app and its database (annotators, import, export).

use crate::output::Output;
use anyhow::{bail, Result};
use ilf_feedback::annotations::{read_annotations, write_annotations};
use ilf_feedback::app::{run_server, AppConfig, RateLimit, ServeOptions};
use ilf_feedback::store::{Role, Store};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Collect human feedback: serve the annotation app (import failing programs from `ilf eval`
/// results first), or manage its database.
///
/// `ilf annotate --db ilf.db --results runs/x/02-eval/results.jsonl` imports and serves;
/// `ilf annotate --db ilf.db add-annotator NAME` prints a login token once.
#[derive(clap::Args)]
pub struct AnnotateArgs {
    /// The annotation database (SQLite; created if missing).
    #[arg(
        long,
        value_name = "PATH",
        env = "ILF_ANNOTATE_DB",
        default_value = "ilf.db"
    )]
    db: PathBuf,
    #[command(subcommand)]
    action: Option<Action>,
    /// `ilf eval`'s results.jsonl: its failing programs are imported before serving (again is
    /// harmless: known programs are skipped).
    #[arg(long, value_name = "PATH")]
    results: Option<PathBuf>,
    /// The MBPP file the results were made from (default: $ILF_MBPP, else $ILF_CACHE/mbpp.jsonl).
    #[arg(long, value_name = "PATH")]
    mbpp: Option<PathBuf>,
    /// Address to listen on. Only loopback addresses unless --public.
    #[arg(
        long,
        value_name = "ADDR",
        env = "ILF_ANNOTATE_BIND",
        default_value = "127.0.0.1:8080"
    )]
    bind: SocketAddr,
    /// Allow a non-loopback --bind (put a TLS-terminating proxy in front: tokens travel in clear).
    #[arg(long)]
    public: bool,
    /// Test runs an annotator may start at once before the rate limit applies.
    #[arg(long, value_name = "N", env = "ILF_ANNOTATE_RUN_BURST", default_value_t = RateLimit::default().burst)]
    run_burst: u32,
    /// Seconds after which an annotator gets one more test run.
    #[arg(long, value_name = "SECONDS", env = "ILF_ANNOTATE_RUN_REFILL",
          default_value_t = RateLimit::default().refill.as_secs_f64())]
    run_refill: f64,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Create an annotator (or, with --reviewer, a reviewer) and print the login token once.
    AddAnnotator {
        name: String,
        /// Reviewers also accept or reject annotations and export them.
        #[arg(long)]
        reviewer: bool,
    },
    /// Import annotations in the paper's schema (e.g. surge_annotations.jsonl, or an export).
    Import {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Write every annotation in the paper's schema (JSON Lines).
    Export {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

pub fn run(args: AnnotateArgs, out: Output) -> Result<()> {
    let Some(action) = args.action else {
        return serve(args, out);
    };
    if args.results.is_some() {
        bail!("--results imports programs for serving; drop it, or run `ilf annotate --results FILE` without a subcommand");
    }
    let store = Store::open(&args.db)?;
    match action {
        Action::AddAnnotator { name, reviewer } => {
            let role = if reviewer {
                Role::Reviewer
            } else {
                Role::Annotator
            };
            let token = store.add_annotator(&name, role)?;
            if out.json {
                println!(
                    "{}",
                    serde_json::json!({"name": name.trim(), "role": role.as_str(), "token": token})
                );
            } else {
                out.say(format!(
                    "Created {} {:?}. Their login token (shown only now):",
                    role.as_str(),
                    name.trim()
                ));
                println!("{token}");
            }
        }
        Action::Import { file } => {
            let records = read_annotations(&file)?;
            let summary = store.import_annotations(&records)?;
            if out.json {
                println!("{}", serde_json::to_string(&summary)?);
            } else {
                out.say(format!(
                    "Imported {} annotations from {} ({} already there).",
                    summary.feedback_added,
                    file.display(),
                    summary.feedback_known
                ));
            }
        }
        Action::Export { out: path } => {
            let records = store.export()?;
            write_annotations(&path, &records)?;
            if out.json {
                println!(
                    "{}",
                    serde_json::json!({"records": records.len(), "out": path})
                );
            } else {
                out.say(format!(
                    "Wrote {} annotations to {}.",
                    records.len(),
                    path.display()
                ));
            }
        }
    }
    Ok(())
}

fn serve(args: AnnotateArgs, out: Output) -> Result<()> {
    if !(args.run_refill.is_finite() && args.run_refill > 0.0) || args.run_burst == 0 {
        bail!("--run-burst must be at least 1 and --run-refill a positive number of seconds");
    }
    let options = ServeOptions {
        db: args.db,
        results: args.results,
        mbpp: args.mbpp,
        bind: args.bind,
        public: args.public,
        config: AppConfig {
            run_limit: RateLimit {
                burst: args.run_burst,
                refill: Duration::from_secs_f64(args.run_refill),
            },
            ..AppConfig::default()
        },
    };
    run_server(options, |started| {
        if out.json {
            println!("{}", serde_json::to_string(started).unwrap_or_default());
        } else {
            if let Some(imported) = &started.imported {
                out.say(format!(
                    "Imported {} failing programs ({} already there) of {} tasks.",
                    imported.programs_added, imported.programs_known, started.counts.tasks
                ));
            }
            out.say(format!(
                "{} programs, {} annotations, {} annotators in the database.",
                started.counts.programs, started.counts.feedback, started.counts.annotators
            ));
            if started.counts.annotators == 0 {
                out.say(
                    "No annotators yet: create one with `ilf annotate --db DB add-annotator NAME`.",
                );
            }
            // Always printed (even with --quiet): a caller started on port 0 needs the address.
            eprintln!("listening on {}", started.url);
        }
    })
}
