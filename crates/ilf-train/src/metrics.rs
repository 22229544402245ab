//! The training log: one JSON line per optimizer step in `DIR/metrics.jsonl`.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What one optimizer step reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// 1-based optimizer step.
    pub step: usize,
    /// Fractional epoch at the end of the step (1.0 = one full pass), as Transformers logs it.
    pub epoch: f64,
    /// Mean masked loss over the step's micro-batches.
    pub loss: f64,
    /// Learning rate used by this step.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Real tokens (prompt and completion, no padding) processed by this step.
    pub tokens: usize,
    /// `tokens` over the step's wall time.
    pub tokens_per_s: f64,
}

/// Appends rows to the metrics file, one flush per row so a crash loses at most one.
pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsLog {
    /// Opens `path` for appending, first dropping rows past `keep_through_step` (rows a killed
    /// run wrote after its last checkpoint, which the resumed run will write again).
    pub fn open(path: &Path, keep_through_step: usize) -> Result<Self> {
        let kept: Vec<StepMetrics> = read_metrics(path)?
            .into_iter()
            .filter(|r| r.step <= keep_through_step)
            .collect();
        let mut text = String::new();
        for row in &kept {
            text.push_str(&serde_json::to_string(row)?);
            text.push('\n');
        }
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn append(&mut self, row: &StepMetrics) -> Result<()> {
        let line = serde_json::to_string(row)? + "\n";
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .with_context(|| format!("appending to {}", self.path.display()))
    }
}

/// Every row of a metrics file; a missing file has none. A torn last line (a kill mid-write) is
/// dropped; any other bad line is an error naming it.
pub fn read_metrics(path: &Path) -> Result<Vec<StepMetrics>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut rows = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(row) => rows.push(row),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => anyhow::bail!("{}:{}: not a metrics row ({e})", path.display(), i + 1),
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(step: usize) -> StepMetrics {
        StepMetrics {
            step,
            epoch: step as f64 / 2.0,
            loss: 1.0 / step as f64,
            lr: 1e-5,
            grad_norm: 0.5,
            tokens: 100,
            tokens_per_s: 10.0,
        }
    }

    #[test]
    fn reopening_drops_rows_after_the_checkpoint_and_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::open(&path, 0).unwrap();
        for s in 1..=3 {
            log.append(&row(s)).unwrap();
        }
        drop(log);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"step\": 4, \"epo");
        std::fs::write(&path, text).unwrap();
        assert_eq!(read_metrics(&path).unwrap().len(), 3);
        let mut log = MetricsLog::open(&path, 2).unwrap();
        log.append(&row(3)).unwrap();
        let steps: Vec<usize> = read_metrics(&path)
            .unwrap()
            .iter()
            .map(|r| r.step)
            .collect();
        assert_eq!(steps, vec![1, 2, 3]);
    }
}
