//! The run directory and its stage manifests.
//!
//! A stage writes into its own directory and finishes by writing `manifest.json` last: the
//! sha256 of its inputs and outputs, its seed, versions and wall time, plus a small JSON summary
//! the later stages and the report read. A stage whose manifest exists is done and is skipped on
//! a rerun; a stage without one is run again and resumes from whatever complete records it left
//! (sampling and evaluation append one record at a time, training resumes from its checkpoint).

use super::config::RunConfig;
use crate::output::Output;
use anyhow::{bail, Context, Result};
use ilf_data::records::write_atomically;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub const MANIFEST: &str = "manifest.json";

/// What a finished stage records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub stage: String,
    pub seed: u64,
    /// Input path → sha256 (a directory hashes its files' paths and hashes).
    pub inputs: BTreeMap<String, String>,
    pub outputs: BTreeMap<String, String>,
    pub versions: BTreeMap<String, String>,
    /// Wall time of the invocation that finished the stage (a resumed stage counts only the
    /// part after the last interruption).
    pub wall_s: f64,
    /// Seconds since the Unix epoch when the manifest was written.
    pub finished_unix_s: u64,
    /// The stage's summary, read back by later stages and the report.
    pub details: serde_json::Value,
}

/// A run directory: `config.toml` first, then one directory per stage.
pub struct RunDir {
    pub root: PathBuf,
    pub config: RunConfig,
    /// Where stage progress lines go.
    pub out: Output,
}

impl RunDir {
    /// Opens `root` for `config`: writes `config.toml` into a new directory, or checks that an
    /// existing one holds the same configuration (a rerun continues the same run; a different
    /// configuration needs another directory, or stale stages would be mixed in).
    pub fn open(root: &Path, config: &RunConfig, out: Output) -> Result<RunDir> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create the run directory {}", root.display()))?;
        let path = root.join("config.toml");
        let text = config.to_toml()?;
        if path.exists() {
            let old = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let previous: RunConfig = toml::from_str(&old)
                .with_context(|| format!("{} is not an ilf run configuration", path.display()))?;
            if &previous != config {
                bail!(
                    "{} holds a run with a different configuration ({}); rerun with the same \
                     preset, --config and flags to continue it, or choose another --out",
                    root.display(),
                    first_difference(&old, &text)
                );
            }
        } else {
            write_atomically(&path, text.as_bytes())?;
        }
        Ok(RunDir {
            root: root.to_path_buf(),
            config: config.clone(),
            out,
        })
    }

    pub fn stage_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The manifest of `name`, if that stage is finished.
    pub fn manifest(&self, name: &str) -> Result<Option<Manifest>> {
        let path = self.stage_dir(name).join(MANIFEST);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let manifest = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a stage manifest; delete it to rerun the stage",
                path.display()
            )
        })?;
        Ok(Some(manifest))
    }

    /// The seed of stage `name`: the run's seed mixed with the stage's name, so stages draw
    /// independent streams and adding a stage changes no other stage's draws.
    pub fn seed(&self, name: &str) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        splitmix(self.config.seed ^ splitmix(h))
    }

    /// Runs stage `name` unless its manifest exists, in which case its recorded details are
    /// returned without running anything. `body` gets the stage directory and returns the
    /// output paths to hash and the details to record.
    pub fn stage<T, F>(&self, name: &str, inputs: &[PathBuf], body: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(&Path, u64) -> Result<(Vec<PathBuf>, T)>,
    {
        if let Some(manifest) = self.manifest(name)? {
            self.out.say(format!("{name}: done earlier, skipped"));
            return serde_json::from_value(manifest.details).with_context(|| {
                format!(
                    "{}: the manifest's details do not match this version of ilf; delete the \
                     stage directory to rerun it",
                    self.stage_dir(name).display()
                )
            });
        }
        let dir = self.stage_dir(name);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let seed = self.seed(name);
        let started = Instant::now();
        let (outputs, details) =
            body(&dir, seed).with_context(|| format!("stage {name} failed"))?;
        self.out.say(format!(
            "{name}: finished in {:.1}s",
            started.elapsed().as_secs_f64()
        ));
        let manifest = Manifest {
            stage: name.to_string(),
            seed,
            inputs: self.hashes(inputs)?,
            outputs: self.hashes(&outputs)?,
            versions: BTreeMap::from([
                ("ilf".to_string(), env!("CARGO_PKG_VERSION").to_string()),
                ("model".to_string(), self.config.model.clone()),
            ]),
            wall_s: started.elapsed().as_secs_f64(),
            finished_unix_s: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            details: serde_json::to_value(&details)?,
        };
        write_atomically(
            &dir.join(MANIFEST),
            serde_json::to_string_pretty(&manifest)?.as_bytes(),
        )?;
        Ok(details)
    }

    fn hashes(&self, paths: &[PathBuf]) -> Result<BTreeMap<String, String>> {
        paths
            .iter()
            .map(|p| {
                let name = p
                    .strip_prefix(&self.root)
                    .unwrap_or(p)
                    .display()
                    .to_string();
                Ok((name, sha256_path(p)?))
            })
            .collect()
    }
}

/// sha256 of a file, or of a directory as the sorted list of its files' relative paths and
/// hashes.
pub fn sha256_path(path: &Path) -> Result<String> {
    if path.is_dir() {
        let mut files = Vec::new();
        collect_files(path, path, &mut files)?;
        files.sort();
        let mut h = Sha256::new();
        for rel in files {
            h.update(rel.to_string_lossy().as_bytes());
            h.update([0]);
            h.update(sha256_path(&path.join(&rel))?.as_bytes());
            h.update([b'\n']);
        }
        return Ok(format!("{:x}", h.finalize()));
    }
    ilf_data::fetch::sha256_file(path).with_context(|| format!("cannot hash {}", path.display()))
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(root, &path, out)?;
        } else {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
        }
    }
    Ok(())
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The first line where two configuration texts differ, for the error message.
fn first_difference(old: &str, new: &str) -> String {
    let mut old_lines = old.lines();
    let mut new_lines = new.lines();
    loop {
        match (old_lines.next(), new_lines.next()) {
            (Some(a), Some(b)) if a == b => continue,
            (a, b) => {
                return format!(
                    "was `{}`, now `{}`",
                    a.unwrap_or("(end)"),
                    b.unwrap_or("(end)")
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RunConfig {
        RunConfig::resolve("tiny", None, toml::Table::new()).unwrap()
    }

    #[test]
    fn a_finished_stage_is_skipped_and_returns_its_details() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::open(dir.path(), &config(), Output::default()).unwrap();
        let mut calls = 0;
        for _ in 0..2 {
            let got: u32 = run
                .stage("01-x", &[], |d, _| {
                    calls += 1;
                    let out = d.join("out.txt");
                    std::fs::write(&out, "hi").unwrap();
                    Ok((vec![out], 42))
                })
                .unwrap();
            assert_eq!(got, 42);
        }
        assert_eq!(calls, 1);
        let m = run.manifest("01-x").unwrap().unwrap();
        assert_eq!(
            m.outputs["01-x/out.txt"],
            "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4"
        );
    }

    #[test]
    fn a_failed_stage_writes_no_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::open(dir.path(), &config(), Output::default()).unwrap();
        let err = run
            .stage::<u32, _>("02-y", &[], |_, _| anyhow::bail!("boom"))
            .unwrap_err();
        assert!(format!("{err:#}").contains("stage 02-y failed: boom"));
        assert!(run.manifest("02-y").unwrap().is_none());
    }

    #[test]
    fn another_configuration_in_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        RunDir::open(dir.path(), &config(), Output::default()).unwrap();
        RunDir::open(dir.path(), &config(), Output::default()).unwrap();
        let mut other = config();
        other.seed = 3;
        let err = RunDir::open(dir.path(), &other, Output::default())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("seed = 0") && err.contains("seed = 3"),
            "{err}"
        );
    }

    #[test]
    fn stage_seeds_differ_by_name_and_run_seed() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::open(dir.path(), &config(), Output::default()).unwrap();
        assert_ne!(run.seed("01-sample"), run.seed("05-refine"));
        let mut c = config();
        c.seed = 1;
        let other = RunDir {
            root: dir.path().into(),
            config: c,
            out: Output::default(),
        };
        assert_ne!(run.seed("01-sample"), other.seed("01-sample"));
    }
}
