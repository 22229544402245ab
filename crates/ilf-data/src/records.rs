//! The JSON Lines records stages exchange, and reading/appending JSONL safely.
//!
//! - [`SampleRow`]: a sampled program for a task (`samples.jsonl`), given either as the raw
//!   `completion` after the prompt or as a whole `program` (evalplus-style).
//! - [`ResultRow`]: a sample after the sandbox ran it (`results.jsonl`):
//!   `{task_id, ...extra, program, passed, status, tests, error?, detail?, duration_s}`.
//!
//! Writers append one line per record with [`JsonlAppender`], which flushes each line, so a killed
//! run leaves at most one incomplete last line; [`read_jsonl_resumable`] drops it and truncates
//! the file back to the last complete record, so a resumed run loses only the record in flight.

use crate::{error::DataError, mbpp::Task, verdict::ProgramOutcome};
use serde::{de::DeserializeOwned, ser::SerializeMap, Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

/// One sampled program for a task. Exactly one of `completion` (text after the paper prompt) and
/// `program` (the whole program) is present; other fields (e.g. `sample_index`, `model`, `seed`)
/// are kept in `extra` and written back as they were.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SampleRowFields")]
pub struct SampleRow {
    pub task_id: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The wire form of [`SampleRow`], checked by `TryFrom`.
#[derive(Deserialize)]
struct SampleRowFields {
    task_id: u32,
    #[serde(default)]
    completion: Option<String>,
    #[serde(default)]
    program: Option<String>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

impl TryFrom<SampleRowFields> for SampleRow {
    type Error = String;

    fn try_from(f: SampleRowFields) -> Result<Self, Self::Error> {
        match (&f.completion, &f.program) {
            (Some(_), None) | (None, Some(_)) => Ok(SampleRow {
                task_id: f.task_id,
                completion: f.completion,
                program: f.program,
                extra: f.extra,
            }),
            (found_completion, _) => Err(format!(
                "task {}: a sample needs exactly one of `completion` and `program`, found {}",
                f.task_id,
                if found_completion.is_some() {
                    "both"
                } else {
                    "neither"
                }
            )),
        }
    }
}

impl SampleRow {
    /// The program to execute: `program` as given, or [`Task::program`] of the completion.
    pub fn program_for(&self, task: &Task) -> String {
        match (&self.program, &self.completion) {
            (Some(program), _) => program.clone(),
            (None, Some(completion)) => task.program(completion),
            (None, None) => unreachable!("SampleRow is built with exactly one of them"),
        }
    }
}

/// A program after the sandbox ran it. Serialises flat:
/// `{task_id, ...extra, program, passed, status, tests, error?, detail?, duration_s}`.
///
/// `extra` holds the sample's other fields (`completion`, `sample_index`, ...). serde's
/// `flatten` cannot split the keys between two flattened parts on its own (a flattened map would
/// also swallow the outcome's keys), so the (de)serialisation is written out. A key of `extra`
/// that names one of the row's own fields is not written: the field's value wins, so the line
/// never holds a duplicate key.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    pub task_id: u32,
    pub extra: Map<String, Value>,
    pub program: String,
    pub passed: bool,
    pub outcome: ProgramOutcome,
}

impl ResultRow {
    /// A result with `passed` taken from the outcome.
    pub fn new(
        task_id: u32,
        extra: Map<String, Value>,
        program: String,
        outcome: ProgramOutcome,
    ) -> Self {
        ResultRow {
            task_id,
            extra,
            program,
            passed: outcome.passed(),
            outcome,
        }
    }
}

/// Field order on the wire: the outcome is flattened before `extra`, so it takes its own keys
/// first and `extra` gets only the rest.
#[derive(Deserialize)]
struct ResultRowFields {
    task_id: u32,
    program: String,
    passed: bool,
    #[serde(flatten)]
    outcome: ProgramOutcome,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

impl<'de> Deserialize<'de> for ResultRow {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let f = ResultRowFields::deserialize(deserializer)?;
        Ok(ResultRow {
            task_id: f.task_id,
            extra: f.extra,
            program: f.program,
            passed: f.passed,
            outcome: f.outcome,
        })
    }
}

impl Serialize for ResultRow {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let outcome =
            match serde_json::to_value(&self.outcome).map_err(serde::ser::Error::custom)? {
                Value::Object(map) => map,
                other => {
                    return Err(serde::ser::Error::custom(format!(
                        "outcome is not an object: {other}"
                    )))
                }
            };
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("task_id", &self.task_id)?;
        let own = |key: &str| {
            matches!(key, "task_id" | "program" | "passed") || outcome.contains_key(key)
        };
        for (key, value) in self.extra.iter().filter(|(key, _)| !own(key)) {
            map.serialize_entry(key, value)?;
        }
        map.serialize_entry("program", &self.program)?;
        map.serialize_entry("passed", &self.passed)?;
        for (key, value) in &outcome {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// Reads every record of a JSONL file. Blank lines are skipped; an error names the file and the
/// 1-based line (bad JSON, a record of the wrong shape, or bytes that are not UTF-8).
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_lines(path, &bytes)
}

pub(crate) fn parse_lines<T: DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<T>, DataError> {
    let mut records = Vec::new();
    for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_number = index + 1;
        let text = std::str::from_utf8(line).map_err(|e| DataError::NonUtf8 {
            path: path.to_path_buf(),
            line: line_number,
            byte: e.valid_up_to() + 1,
        })?;
        if text.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(text).map_err(|source| DataError::Json {
            path: path.to_path_buf(),
            line: line_number,
            source,
        })?;
        records.push(record);
    }
    Ok(records)
}

/// Reads the records of a JSONL file that a killed writer may have left with an incomplete last
/// line (one without its `\n`): that line is dropped and the file truncated to the last complete
/// record, so appending can continue. A missing file reads as no records. Errors in complete
/// lines are reported as by [`read_jsonl`]: they are not what an interrupted append leaves.
pub fn read_jsonl_resumable<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, DataError> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(DataError::io(path, e)),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| DataError::io(path, e))?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if complete < bytes.len() {
        file.set_len(complete as u64)
            .map_err(|e| DataError::io(path, e))?;
        file.sync_all().map_err(|e| DataError::io(path, e))?;
    }
    parse_lines(path, &bytes[..complete])
}

/// Appends records to a JSONL file, one line per record, flushed as it is written.
#[derive(Debug)]
pub struct JsonlAppender {
    file: File,
    path: PathBuf,
}

impl JsonlAppender {
    /// Opens (creating it and its directory if needed) `path` for appending. Refuses a file whose
    /// last line is incomplete: read it with [`read_jsonl_resumable`] first, which repairs it.
    pub fn open(path: &Path) -> Result<Self, DataError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| DataError::io(path, e))?;
        let len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
        if len > 0 {
            let mut last = [0u8];
            file.seek(SeekFrom::End(-1))
                .and_then(|_| file.read_exact(&mut last))
                .map_err(|e| DataError::io(path, e))?;
            if last[0] != b'\n' {
                return Err(DataError::Invalid {
                    path: path.to_path_buf(),
                    message:
                        "the last line is incomplete (an interrupted write?); read the file with \
                              read_jsonl_resumable first, which truncates it"
                            .to_string(),
                });
            }
        }
        Ok(JsonlAppender {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Writes `record` as one line and flushes it to the operating system.
    pub fn append<T: Serialize>(&mut self, record: &T) -> Result<(), DataError> {
        let mut line = serde_json::to_vec(record).map_err(|source| DataError::Encode {
            path: self.path.clone(),
            source,
        })?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|_| self.file.flush())
            .map_err(|e| DataError::io(&self.path, e))
    }

    /// Forces the written records to disk (e.g. before writing a stage manifest).
    pub fn sync(&self) -> Result<(), DataError> {
        self.file
            .sync_all()
            .map_err(|e| DataError::io(&self.path, e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Writes all `records` to `path` atomically (a temporary file in the same directory, then a
/// rename), so readers see either the old file or the whole new one.
pub fn write_jsonl<T: Serialize>(path: &Path, records: &[T]) -> Result<(), DataError> {
    let mut bytes = Vec::new();
    for record in records {
        serde_json::to_writer(&mut bytes, record).map_err(|source| DataError::Encode {
            path: path.to_path_buf(),
            source,
        })?;
        bytes.push(b'\n');
    }
    write_atomically(path, &bytes)
}

/// Replaces `path` with `bytes` via a temporary sibling file and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        DataError::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{ErrorInfo, Status, TestOutcome};
    use serde_json::json;

    fn outcome() -> ProgramOutcome {
        ProgramOutcome {
            status: Status::Failed,
            tests: vec![TestOutcome {
                index: 0,
                test: "assert f(1) == 2".into(),
                status: Status::Failed,
                expected: Some("2".into()),
                got: Some("1".into()),
                error: None,
            }],
            error: Some(ErrorInfo {
                kind: "AssertionError".into(),
                message: String::new(),
                traceback: vec![],
            }),
            detail: None,
            duration_s: 0.25,
        }
    }

    #[test]
    fn result_row_round_trips_flat() {
        let mut extra = Map::new();
        extra.insert("sample_index".into(), json!(3));
        extra.insert("completion".into(), json!("    return x"));
        let row = ResultRow::new(11, extra, "def f(x):\n    return x\n".into(), outcome());
        assert!(!row.passed);
        let text = serde_json::to_string(&row).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = vec![
            "task_id",
            "sample_index",
            "completion",
            "program",
            "passed",
            "status",
            "tests",
            "error",
            "duration_s",
        ];
        expected.sort_unstable();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, expected);
        assert!(text.starts_with("{\"task_id\":11,"), "{text}");
        assert_eq!(value["status"], "failed");
        assert_eq!(value["error"]["type"], "AssertionError");
        let back: ResultRow = serde_json::from_str(&text).unwrap();
        assert_eq!(back, row);
        assert_eq!(
            back.extra.len(),
            2,
            "extra must not swallow the outcome's keys"
        );
    }

    #[test]
    fn sample_row_needs_exactly_one_program_form() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("samples.jsonl");
        std::fs::write(
            &path,
            "{\"task_id\":11,\"completion\":\"    return 1\",\"seed\":7}\n{\"task_id\":12}\n",
        )
        .unwrap();
        let err = read_jsonl::<SampleRow>(&path).unwrap_err().to_string();
        assert!(
            err.contains("samples.jsonl:2:") && err.contains("neither"),
            "{err}"
        );
        std::fs::write(
            &path,
            "{\"task_id\":12,\"completion\":\"a\",\"program\":\"b\"}\n",
        )
        .unwrap();
        let err = read_jsonl::<SampleRow>(&path).unwrap_err().to_string();
        assert!(err.contains(":1:") && err.contains("both"), "{err}");
        std::fs::write(
            &path,
            "{\"task_id\":11,\"completion\":\"    return 1\",\"seed\":7}\n\n",
        )
        .unwrap();
        let rows = read_jsonl::<SampleRow>(&path).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].extra["seed"], 7);
        assert_eq!(
            serde_json::to_string(&rows[0]).unwrap(),
            "{\"task_id\":11,\"completion\":\"    return 1\",\"seed\":7}"
        );
    }

    #[test]
    fn read_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        std::fs::write(&path, b"{\"a\":1}\n{\"a\":\n").unwrap();
        let err = read_jsonl::<Value>(&path).unwrap_err().to_string();
        assert!(err.contains("x.jsonl:2: invalid JSON"), "{err}");
        std::fs::write(&path, b"{\"a\":1}\n{\"a\":\"\xff\"}\n").unwrap();
        let err = read_jsonl::<Value>(&path).unwrap_err().to_string();
        assert!(err.contains("x.jsonl:2: not valid UTF-8 (byte 7"), "{err}");
    }

    #[test]
    fn resumable_read_drops_the_record_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs").join("results.jsonl");
        assert!(read_jsonl_resumable::<Value>(&path).unwrap().is_empty());
        let mut appender = JsonlAppender::open(&path).unwrap();
        appender.append(&json!({"i": 0})).unwrap();
        appender.append(&json!({"i": 1})).unwrap();
        drop(appender);
        // A killed writer left half a line.
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"i\": 2, \"pro")
            .unwrap();
        let err = JsonlAppender::open(&path).unwrap_err().to_string();
        assert!(err.contains("incomplete"), "{err}");
        let records: Vec<Value> = read_jsonl_resumable(&path).unwrap();
        assert_eq!(records, vec![json!({"i": 0}), json!({"i": 1})]);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"i\":0}\n{\"i\":1}\n"
        );
        let mut appender = JsonlAppender::open(&path).unwrap();
        appender.append(&json!({"i": 2})).unwrap();
        assert_eq!(read_jsonl::<Value>(&path).unwrap().len(), 3);
    }

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        write_jsonl(&path, &[json!({"a": 1})]).unwrap();
        write_jsonl(&path, &[json!({"a": 2}), json!({"a": 3})]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":2}\n{\"a\":3}\n"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }
}
