use anyhow::Result;
use clap::{Parser, Subcommand};
use ilf::output::Output;

/// Imitation learning from language feedback for code models.
#[derive(Parser)]
#[command(name = "ilf", version, about)]
struct Cli {
    /// Print nothing but errors.
    #[arg(long, short, global = true, env = "ILF_QUIET", value_parser = clap::builder::FalseyValueParser::new())]
    quiet: bool,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true, env = "ILF_JSON", value_parser = clap::builder::FalseyValueParser::new())]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Data(ilf::cmd::data::DataArgs),
    Eval(ilf::cmd::eval::EvalArgs),
    Annotate(ilf::cmd::annotate::AnnotateArgs),
    Feedback(ilf::cmd::feedback::FeedbackArgs),
    Run(ilf::cmd::run::RunArgs),
    Models(ilf::cmd::models::ModelsArgs),
    Sample(ilf::cmd::sample::SampleArgs),
    /// Check which sandbox isolation is in force on this machine.
    Sandbox(ilf::cmd::sandbox::SandboxArgs),
    Train(ilf::cmd::train::TrainArgs),
    Serve(ilf::cmd::serve::ServeArgs),
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("ILF_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let out = Output {
        quiet: cli.quiet,
        json: cli.json,
    };
    match cli.command {
        Command::Data(args) => ilf::cmd::data::run(args, out),
        Command::Eval(args) => ilf::cmd::eval::run(args, out),
        Command::Annotate(args) => ilf::cmd::annotate::run(args, out),
        Command::Feedback(args) => ilf::cmd::feedback::run(args, out),
        Command::Run(args) => ilf::cmd::run::run(args, out),
        Command::Models(args) => ilf::cmd::models::run(args, out),
        Command::Sample(args) => ilf::cmd::sample::run(args, out),
        Command::Sandbox(args) => ilf::cmd::sandbox::run(args, out),
        Command::Train(args) => ilf::cmd::train::run(args, out),
        Command::Serve(args) => ilf::cmd::serve::run(args, out),
    }
}
