//! The one error type of the crate: every variant names the file, line or task it is about.

use std::path::PathBuf;

/// What went wrong while reading, validating or writing data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: invalid JSON record: {source}", path.display())]
    Json {
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}:{line}: not valid UTF-8 (byte {byte} of the line); JSONL files must be UTF-8", path.display())]
    NonUtf8 {
        path: PathBuf,
        line: usize,
        byte: usize,
    },
    #[error("{}: could not encode a record as JSON: {source}", path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("task {task_id}: {message}")]
    Task { task_id: u32, message: String },
    #[error("no MBPP file ({looked}); run `ilf data fetch` or pass --mbpp PATH")]
    MbppNotFound { looked: String },
    #[error("bad task ids {spec:?}: {message} (expected e.g. `11-20,42`)")]
    TaskIds { spec: String, message: String },
    #[error("unknown split {name:?}; expected one of: {expected}")]
    UnknownSplit { name: String, expected: String },
    #[error("checksum mismatch for {}: expected sha256 {expected}, got {actual}", path.display())]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("download of {url} failed: {message}; on an offline machine copy the file over and run `ilf data fetch --from PATH`, or pass --mbpp PATH")]
    Download { url: String, message: String },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}
