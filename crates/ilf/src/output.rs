//! Global output settings shared by every subcommand: quiet, JSON, progress bars.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// How a command reports: human text with progress bars, nothing, or JSON for machines.
#[derive(Debug, Clone, Copy, Default)]
pub struct Output {
    pub quiet: bool,
    pub json: bool,
}

impl Output {
    /// A progress bar that draws only for a human on a terminal.
    pub fn progress(&self, len: u64, what: &str) -> ProgressBar {
        let bar = ProgressBar::new(len);
        if self.quiet || self.json || !std::io::stderr().is_terminal() {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, ETA {eta})",
            )
            .expect("static template"),
        );
        bar.set_message(what.to_string());
        bar
    }

    /// Prints a human line unless quiet or JSON.
    pub fn say(&self, text: impl AsRef<str>) {
        if !self.quiet && !self.json {
            eprintln!("{}", text.as_ref());
        }
    }
}
