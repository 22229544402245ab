//! `ilf feedback`: feedback on failing programs without annotators.

use crate::output::Output;
use anyhow::Result;
use ilf_data::mbpp::Mbpp;
use ilf_feedback::annotations::write_annotations;
use ilf_feedback::execution::execution_feedback;
use ilf_feedback::failures::read_failures;
use std::path::PathBuf;

/// Write feedback for the failing programs of `ilf eval` results, in the paper's annotation
/// schema (the records `ilf annotate export` writes).
#[derive(clap::Args)]
pub struct FeedbackArgs {
    /// Where the feedback comes from: `execution` states the verdict (failing assert, expected
    /// and actual values, exception and traceback).
    #[arg(long, value_enum)]
    from: Source,
    /// `ilf eval`'s results.jsonl.
    #[arg(long, value_name = "PATH")]
    results: PathBuf,
    /// The JSONL file to write (replaced atomically).
    #[arg(long, value_name = "PATH")]
    out: PathBuf,
    /// The MBPP file the results were made from (default: $ILF_MBPP, else $ILF_CACHE/mbpp.jsonl).
    #[arg(long, value_name = "PATH")]
    mbpp: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Source {
    Execution,
}

pub fn run(args: FeedbackArgs, out: Output) -> Result<()> {
    let mbpp = Mbpp::resolve(args.mbpp.as_deref())?;
    let failures = read_failures(&args.results, &mbpp)?;
    let records = match args.from {
        Source::Execution => execution_feedback(&failures),
    };
    write_annotations(&args.out, &records)?;
    if out.json {
        println!(
            "{}",
            serde_json::json!({"rows": failures.rows, "failing_programs": records.len(), "out": args.out})
        );
    } else {
        out.say(format!(
            "Wrote execution feedback for {} failing programs ({} rows read) to {}.",
            records.len(),
            failures.rows,
            args.out.display()
        ));
    }
    Ok(())
}
