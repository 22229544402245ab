//! One module per subcommand: arguments (clap `Args`) and a `run` function.

pub mod data;
