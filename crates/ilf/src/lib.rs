//! The `ilf` command line: each subcommand parses its arguments and calls one library function.

pub mod cmd;
pub mod eval;
pub mod output;
pub mod pipeline;
