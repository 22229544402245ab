//! Finds the real Python interpreter once per process (the `python3` on PATH may be a slow
//! pyenv shim): `$ILF_PYTHON`, else what `python3` reports as `sys.executable`.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::OnceLock;

static INTERPRETER: OnceLock<PathBuf> = OnceLock::new();

pub fn interpreter() -> Result<PathBuf> {
    if let Some(p) = INTERPRETER.get() {
        return Ok(p.clone());
    }
    let path = match std::env::var_os("ILF_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => {
            let out = std::process::Command::new("python3")
                .args(["-c", "import sys;print(sys.executable)"])
                .output()
                .context("running python3 (install Python 3 or set ILF_PYTHON)")?;
            anyhow::ensure!(
                out.status.success(),
                "python3 failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
    };
    Ok(INTERPRETER.get_or_init(|| path).clone())
}
