//! One module per subcommand: arguments (clap `Args`) and a `run` function.

pub mod annotate;
pub mod data;
pub mod eval;
pub mod feedback;
pub mod models;
pub mod run;
pub mod sample;
pub mod sandbox;
pub mod serve;
pub mod train;
