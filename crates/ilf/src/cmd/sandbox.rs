//! `ilf sandbox check`: which isolation the sandbox can put in force on this machine.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

use crate::output::Output;

#[derive(Args, Debug)]
pub struct SandboxArgs {
    #[command(subcommand)]
    command: SandboxCommand,
}

#[derive(Subcommand, Debug)]
enum SandboxCommand {
    /// Probe each isolation mechanism and print which are in force.
    Check {
        /// Exit non-zero when any mechanism is missing.
        #[arg(long, env = "ILF_SANDBOX_STRICT")]
        strict: bool,
        /// The Python interpreter jobs run in (default: `$ILF_PYTHON`, then `python3`).
        #[arg(long, env = "ILF_PYTHON")]
        python: Option<PathBuf>,
    },
}

pub fn run(args: SandboxArgs, out: Output) -> Result<()> {
    match args.command {
        SandboxCommand::Check { strict, python } => {
            let cfg = ilf_sandbox::PoolConfig {
                python,
                ..Default::default()
            };
            let report = ilf_sandbox::check(&cfg);
            if out.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else if !out.quiet {
                println!("{report}");
            }
            if strict && !report.complete() {
                let missing: Vec<&str> = report.missing().map(|m| m.name.as_str()).collect();
                bail!(
                    "sandbox isolation incomplete: {} missing (run as root on Linux 5.13+ with \
                     cgroup v1 memory and pids controllers, or drop --strict)",
                    missing.join(", ")
                );
            }
            Ok(())
        }
    }
}
