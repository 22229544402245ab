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

/// Loads `--model` for a subcommand that runs it here (`ilf sample`, `ilf serve`): says so when a
/// registry model is fetched on first use, then loads it on `device`, quantized if asked.
pub(crate) fn load_local_model(
    model: &str,
    device: &str,
    quantized: bool,
    out: &crate::output::Output,
) -> anyhow::Result<ilf_lm::Loaded> {
    use anyhow::Context;
    if let Some(entry) = ilf_lm::registry::find(model) {
        if !ilf_lm::fetch::model_path(entry).is_file() {
            out.say(format!("Fetching {} (first use) ...", entry.name));
        }
    }
    let device = ilf_lm::device::parse(device)?;
    let mode = if quantized {
        ilf_lm::LoadMode::Quantized
    } else {
        ilf_lm::LoadMode::Inference
    };
    ilf_lm::load(model, &device, mode).with_context(|| format!("loading model {model}"))
}
