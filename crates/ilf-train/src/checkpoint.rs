//! Checkpoints that survive `kill -9`.
//!
//! A checkpoint is a directory `DIR/checkpoint-<step>/` holding the trainable parameters
//! (`trainable.safetensors`), the AdamW moments (`optimizer.safetensors`) and `state.json` (step,
//! tokens seen, the run's fingerprint). It is written under a temporary name, every file and the
//! directory fsynced, then renamed into place, so a checkpoint directory either exists whole or
//! not at all; the previous one is deleted only after. The data order needs no saved RNG state:
//! epoch `e`'s order is a fixed function of `(seed, e)`, and a checkpoint falls on a step boundary.

use crate::adamw::AdamW;
use crate::tensor_file::{fsync, write_tensors};
use anyhow::{bail, Context, Result};
use candle_core::Var;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const PREFIX: &str = "checkpoint-";
const TEMP_PREFIX: &str = ".tmp-checkpoint-";
pub const PARAMS_FILE: &str = "trainable.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "state.json";

/// Where a run stands at a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Optimizer steps completed.
    pub step: usize,
    /// Real tokens processed so far.
    pub tokens_seen: u64,
    /// Identifies the run (settings, data, base): resuming a different run is refused.
    pub fingerprint: String,
}

/// Writes a checkpoint for `state.step` atomically and deletes older ones. Returns its path.
pub fn save(
    out_dir: &Path,
    state: &CheckpointState,
    params: &[(String, Var)],
    optimizer: &AdamW,
) -> Result<PathBuf> {
    let name = format!("{PREFIX}{:08}", state.step);
    let temp = out_dir.join(format!("{TEMP_PREFIX}{:08}", state.step));
    if temp.exists() {
        std::fs::remove_dir_all(&temp).with_context(|| format!("removing {}", temp.display()))?;
    }
    std::fs::create_dir_all(&temp).with_context(|| format!("creating {}", temp.display()))?;
    let tensors: Vec<(String, candle_core::Tensor)> = params
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    write_tensors(&temp.join(PARAMS_FILE), &tensors, None)?;
    optimizer.save_state(&temp.join(OPTIMIZER_FILE))?;
    std::fs::write(temp.join(STATE_FILE), serde_json::to_string_pretty(state)?)
        .with_context(|| format!("writing {}", temp.join(STATE_FILE).display()))?;
    for file in [PARAMS_FILE, OPTIMIZER_FILE, STATE_FILE] {
        fsync(&temp.join(file))?;
    }
    fsync(&temp)?;
    let final_path = out_dir.join(&name);
    if final_path.exists() {
        std::fs::remove_dir_all(&final_path)
            .with_context(|| format!("removing {}", final_path.display()))?;
    }
    std::fs::rename(&temp, &final_path)
        .with_context(|| format!("renaming {} to {}", temp.display(), final_path.display()))?;
    fsync(out_dir)?;
    for old in list(out_dir)? {
        if old.0 < state.step {
            std::fs::remove_dir_all(&old.1)
                .with_context(|| format!("removing {}", old.1.display()))?;
        }
    }
    Ok(final_path)
}

/// Complete checkpoints in `out_dir` as (step, path), oldest first.
fn list(out_dir: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(out_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e).with_context(|| format!("listing {}", out_dir.display())),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(step) = name.strip_prefix(PREFIX).and_then(|s| s.parse().ok()) {
            found.push((step, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// The newest complete checkpoint, after deleting half-written temporary ones.
pub fn latest(out_dir: &Path) -> Result<Option<PathBuf>> {
    if let Ok(entries) = std::fs::read_dir(out_dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                std::fs::remove_dir_all(entry.path())
                    .with_context(|| format!("removing {}", entry.path().display()))?;
            }
        }
    }
    Ok(list(out_dir)?.pop().map(|(_, p)| p))
}

pub fn read_state(checkpoint: &Path) -> Result<CheckpointState> {
    let path = checkpoint.join(STATE_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Restores parameters and optimizer from a checkpoint directory.
pub fn restore(
    checkpoint: &Path,
    params: &[(String, Var)],
    optimizer: &mut AdamW,
    state: &CheckpointState,
) -> Result<()> {
    let path = checkpoint.join(PARAMS_FILE);
    let saved = crate::tensor_file::read_tensors(&path)?;
    for (name, var) in params {
        let t = saved
            .get(name)
            .with_context(|| format!("{} lacks parameter {name}", path.display()))?;
        if t.dims() != var.dims() {
            bail!(
                "{}: {name} has shape {:?}, the model {:?}",
                path.display(),
                t.dims(),
                var.dims()
            );
        }
        var.set(t)?;
    }
    optimizer.load_state(&checkpoint.join(OPTIMIZER_FILE), state.step as u64)
}
