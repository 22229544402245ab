//! The annotation store: one SQLite file holding tasks, failing programs with their verdicts,
//! feedback, refinements, annotators, sessions, skips and reviews.
//!
//! Durability: the database runs in WAL mode with `synchronous = FULL`, and every write is one
//! transaction, so a process killed mid-write loses at most the transaction in flight and never
//! leaves half a submission. Every submission carries an idempotency key (unique in the schema),
//! so a retried request returns the first submission instead of adding a second.
//!
//! The schema evolves through numbered migrations recorded in the `migrations` table; [`Store::open`]
//! applies the missing ones in order, each in its own transaction.

use crate::annotations::{
    body_after_signature, max_normalised_edit_distance, paper_edit_distance, AnnotationRecord,
    FeedbackSource, Provenance,
};
use anyhow::{bail, Context, Result};
use ilf_data::verdict::ProgramOutcome;
use rand::RngCore;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Numbered schema migrations, applied in order; never edit one that has shipped, add the next.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "initial schema",
    r#"
    CREATE TABLE tasks (
        task_id         INTEGER PRIMARY KEY,
        text            TEXT,
        entry_point     TEXT,
        test_list       TEXT NOT NULL DEFAULT '[]',
        test_setup_code TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE programs (
        id       INTEGER PRIMARY KEY,
        task_id  INTEGER NOT NULL REFERENCES tasks(task_id),
        program  TEXT NOT NULL,
        prompt   TEXT NOT NULL,
        test     TEXT NOT NULL,
        verdict  TEXT,
        sample   INTEGER,
        origin   TEXT NOT NULL,
        created  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
        UNIQUE (task_id, program)
    );
    CREATE TABLE annotators (
        id         INTEGER PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE,
        role       TEXT NOT NULL CHECK (role IN ('annotator', 'reviewer')),
        token_hash TEXT NOT NULL UNIQUE,
        created    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
    );
    CREATE TABLE sessions (
        token_hash   TEXT PRIMARY KEY,
        annotator_id INTEGER NOT NULL REFERENCES annotators(id) ON DELETE CASCADE,
        csrf         TEXT NOT NULL,
        expires_unix INTEGER NOT NULL
    );
    CREATE TABLE feedback (
        id              INTEGER PRIMARY KEY,
        program_id      INTEGER NOT NULL REFERENCES programs(id),
        text            TEXT NOT NULL,
        source          TEXT NOT NULL CHECK (source IN ('human', 'model', 'execution')),
        model           TEXT,
        author          TEXT,
        annotator_id    INTEGER REFERENCES annotators(id),
        time_spent_s    REAL,
        paper_record    INTEGER NOT NULL DEFAULT 0,
        idempotency_key TEXT NOT NULL UNIQUE,
        created         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
    );
    CREATE UNIQUE INDEX feedback_one_per_annotator ON feedback (program_id, annotator_id)
        WHERE annotator_id IS NOT NULL;
    CREATE TABLE refinements (
        id                INTEGER PRIMARY KEY,
        feedback_id       INTEGER NOT NULL UNIQUE REFERENCES feedback(id),
        code              TEXT NOT NULL,
        completion        TEXT NOT NULL,
        passed            INTEGER,
        result            TEXT,
        verdict           TEXT,
        edit_distance     REAL,
        edit_distance_max REAL
    );
    CREATE TABLE skips (
        id              INTEGER PRIMARY KEY,
        task_id         INTEGER NOT NULL REFERENCES tasks(task_id),
        annotator_id    INTEGER NOT NULL REFERENCES annotators(id),
        reason          TEXT NOT NULL,
        idempotency_key TEXT NOT NULL UNIQUE,
        created         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
        UNIQUE (task_id, annotator_id)
    );
    CREATE TABLE reviews (
        id              INTEGER PRIMARY KEY,
        feedback_id     INTEGER NOT NULL REFERENCES feedback(id),
        reviewer_id     INTEGER NOT NULL REFERENCES annotators(id),
        decision        TEXT NOT NULL CHECK (decision IN ('accepted', 'rejected')),
        note            TEXT NOT NULL DEFAULT '',
        idempotency_key TEXT NOT NULL UNIQUE,
        created         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
    );
    CREATE TABLE runs (
        task_id     INTEGER NOT NULL,
        code_sha256 TEXT NOT NULL,
        verdict     TEXT NOT NULL,
        PRIMARY KEY (task_id, code_sha256)
    );
    "#,
)];

/// How long a login lasts.
const SESSION_SECONDS: i64 = 7 * 24 * 3600;

/// A task as the annotator sees it. Tasks imported only from an annotation file have no text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub task_id: u32,
    pub text: Option<String>,
    pub entry_point: Option<String>,
    pub test_list: Vec<String>,
    pub test_setup_code: String,
}

/// A failing program to import.
#[derive(Debug, Clone, PartialEq)]
pub struct NewProgram {
    pub task_id: u32,
    /// The full program, prompt included.
    pub program: String,
    /// The prompt the program was sampled from (a prefix of `program` when sampled by ilf).
    pub prompt: String,
    /// The paper's harness test source for the task ([`crate::annotations::paper_test_source`]).
    pub test: String,
    pub verdict: Option<ProgramOutcome>,
    pub sample: Option<u64>,
    /// Where it came from, e.g. `runs/x/02-eval/results.jsonl:17`.
    pub origin: String,
}

/// A stored failing program.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramInfo {
    pub id: i64,
    pub task_id: u32,
    pub program: String,
    pub prompt: String,
    pub test: String,
    pub verdict: Option<ProgramOutcome>,
    pub sample: Option<u64>,
}

/// Who may do what: annotators annotate; reviewers also review and export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Annotator,
    Reviewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Annotator => "annotator",
            Role::Reviewer => "reviewer",
        }
    }

    fn parse(text: &str) -> Result<Role> {
        match text {
            "annotator" => Ok(Role::Annotator),
            "reviewer" => Ok(Role::Reviewer),
            other => bail!("unknown role {other:?} in the annotators table"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotator {
    pub id: i64,
    pub name: String,
    pub role: Role,
}

/// A logged-in annotator and the session's CSRF token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub annotator: Annotator,
    pub csrf: String,
}

/// Where an annotator stands on a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Open,
    Annotated,
    Skipped,
}

/// One row of the task list.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSummary {
    pub task_id: u32,
    pub text: Option<String>,
    pub programs: usize,
    pub annotations: usize,
    pub state: TaskState,
}

/// An annotator's progress over all tasks with failing programs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    pub tasks: usize,
    pub annotated: usize,
    pub skipped: usize,
    pub time_spent_s: f64,
}

/// A human annotation to store: feedback on one program and a refinement that passed the tests.
#[derive(Debug, Clone)]
pub struct Submission {
    pub idempotency_key: String,
    pub program_id: i64,
    pub annotator_id: i64,
    pub feedback: String,
    /// The full refined program.
    pub refinement: String,
    /// The refinement's verdict, from the server's own run.
    pub verdict: ProgramOutcome,
    /// Seconds from opening the page to submitting, as the page measured it (capped).
    pub time_spent_s: Option<f64>,
}

/// The result of a write carrying an idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub id: i64,
    /// True when the key had been seen: nothing was written, `id` is the first write's.
    pub replayed: bool,
}

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("program {0} does not exist")]
    NoSuchProgram(i64),
    #[error("you already annotated program {0}; each annotator annotates a program once")]
    AlreadyAnnotated(i64),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// A stored annotation with everything a reviewer needs.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackView {
    pub id: i64,
    pub program: ProgramInfo,
    pub text: String,
    pub source: FeedbackSource,
    pub model: Option<String>,
    pub author: Option<String>,
    pub time_spent_s: Option<f64>,
    pub created: String,
    pub refinement: Option<RefinementView>,
    pub review: Option<ReviewView>,
    paper_record: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RefinementView {
    pub code: String,
    pub completion: String,
    pub passed: Option<bool>,
    pub result: Option<String>,
    pub verdict: Option<ProgramOutcome>,
    pub edit_distance: Option<f64>,
    pub edit_distance_max: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewView {
    pub decision: String,
    pub reviewer: String,
    pub note: String,
}

/// Row counts, for integrity checks and the CLI summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub tasks: usize,
    pub programs: usize,
    pub feedback: usize,
    pub refinements: usize,
    pub annotators: usize,
    pub skips: usize,
    pub reviews: usize,
}

/// What an import added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    pub tasks_added: usize,
    pub programs_added: usize,
    pub programs_known: usize,
    pub feedback_added: usize,
    pub feedback_known: usize,
}

/// The store. Cheap to share behind an `Arc`; calls block, so async code runs them on
/// `spawn_blocking`.
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

/// `sha256(text)` as lowercase hex.
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// 32 random bytes from the operating-system-seeded CSPRNG, as hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn verdict_json(verdict: Option<&ProgramOutcome>) -> Result<Option<String>> {
    verdict
        .map(|v| serde_json::to_string(v).context("cannot encode a verdict"))
        .transpose()
}

fn parse_verdict(text: Option<String>, what: &str) -> Result<Option<ProgramOutcome>> {
    text.map(|t| {
        serde_json::from_str(&t).with_context(|| format!("corrupt verdict JSON in {what}"))
    })
    .transpose()
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open the annotation database {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            bail!(
                "{}: SQLite refused WAL mode (got {mode}); put the database on a local disk",
                path.display()
            );
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
        let store = Store {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        };
        store.migrate()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-written transaction behind (SQLite
        // rolls back an unfinished one), so a poisoned lock is safe to keep using.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()
            .with_context(|| format!("cannot commit to {}", self.path.display()))?;
        Ok(value)
    }

    fn migrate(&self) -> Result<()> {
        let mut conn = self.lock();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS migrations (
                version    INTEGER PRIMARY KEY,
                name       TEXT NOT NULL,
                applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
            )",
        )?;
        for (version, name, sql) in MIGRATIONS {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let applied: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM migrations WHERE version = ?1)",
                [version],
                |r| r.get(0),
            )?;
            if !applied {
                tx.execute_batch(sql).with_context(|| {
                    format!(
                        "{}: migration {version} ({name}) failed",
                        self.path.display()
                    )
                })?;
                tx.execute(
                    "INSERT INTO migrations (version, name) VALUES (?1, ?2)",
                    params![version, name],
                )?;
            }
            tx.commit()?;
        }
        Ok(())
    }

    /// The applied migration versions, in order.
    pub fn migrations(&self) -> Result<Vec<i64>> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT version FROM migrations ORDER BY version")?;
        let versions = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(versions)
    }

    /// `PRAGMA integrity_check` and `foreign_key_check`: `Ok(())` when both are clean.
    pub fn check_integrity(&self) -> Result<()> {
        let conn = self.lock();
        let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        if integrity != "ok" {
            bail!(
                "{}: integrity check failed: {integrity}",
                self.path.display()
            );
        }
        let violations: i64 =
            conn.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })?;
        if violations != 0 {
            bail!(
                "{}: {violations} foreign-key violations",
                self.path.display()
            );
        }
        Ok(())
    }

    pub fn counts(&self) -> Result<Counts> {
        let conn = self.lock();
        let count = |table: &str| -> Result<usize> {
            Ok(
                conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| {
                    r.get::<_, i64>(0)
                })? as usize,
            )
        };
        Ok(Counts {
            tasks: count("tasks")?,
            programs: count("programs")?,
            feedback: count("feedback")?,
            refinements: count("refinements")?,
            annotators: count("annotators")?,
            skips: count("skips")?,
            reviews: count("reviews")?,
        })
    }

    /// Adds or completes a task. An existing task keeps its values; missing ones are filled in.
    fn upsert_task(tx: &Transaction<'_>, task: &TaskInfo) -> Result<()> {
        tx.execute(
            "INSERT INTO tasks (task_id, text, entry_point, test_list, test_setup_code) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (task_id) DO UPDATE SET
                text = coalesce(tasks.text, excluded.text),
                entry_point = coalesce(tasks.entry_point, excluded.entry_point),
                test_list = CASE WHEN tasks.test_list = '[]' THEN excluded.test_list ELSE tasks.test_list END,
                test_setup_code = CASE WHEN tasks.test_setup_code = '' THEN excluded.test_setup_code
                                  ELSE tasks.test_setup_code END",
            params![
                task.task_id,
                task.text,
                task.entry_point,
                serde_json::to_string(&task.test_list)?,
                task.test_setup_code
            ],
        )?;
        Ok(())
    }

    /// Inserts a program unless the task already has the same text; returns its id and whether
    /// it was new.
    fn insert_program(tx: &Transaction<'_>, program: &NewProgram) -> Result<(i64, bool)> {
        let inserted = tx.execute(
            "INSERT INTO programs (task_id, program, prompt, test, verdict, sample, origin)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (task_id, program) DO NOTHING",
            params![
                program.task_id,
                program.program,
                program.prompt,
                program.test,
                verdict_json(program.verdict.as_ref())?,
                program.sample.map(|s| s as i64),
                program.origin
            ],
        )?;
        let id = tx.query_row(
            "SELECT id FROM programs WHERE task_id = ?1 AND program = ?2",
            params![program.task_id, program.program],
            |r| r.get(0),
        )?;
        Ok((id, inserted == 1))
    }

    /// Imports tasks and failing programs (e.g. from `ilf eval`'s results); importing the same
    /// programs again adds nothing.
    pub fn import_programs(
        &self,
        tasks: &[TaskInfo],
        programs: &[NewProgram],
    ) -> Result<ImportSummary> {
        self.write(|tx| {
            let mut summary = ImportSummary::default();
            for task in tasks {
                let existed: bool = tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM tasks WHERE task_id = ?1)",
                    [task.task_id],
                    |r| r.get(0),
                )?;
                Self::upsert_task(tx, task)?;
                summary.tasks_added += usize::from(!existed);
            }
            for program in programs {
                let (_, new) = Self::insert_program(tx, program)?;
                if new {
                    summary.programs_added += 1;
                } else {
                    summary.programs_known += 1;
                }
            }
            Ok(summary)
        })
    }

    /// Imports annotation records (the paper's file, or an ilf export). A record already
    /// imported (same task, program and feedback text) is not added again.
    pub fn import_annotations(&self, records: &[AnnotationRecord]) -> Result<ImportSummary> {
        self.write(|tx| {
            let mut summary = ImportSummary::default();
            for record in records {
                let existed: bool = tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM tasks WHERE task_id = ?1)",
                    [record.task_id],
                    |r| r.get(0),
                )?;
                if !existed {
                    tx.execute("INSERT INTO tasks (task_id) VALUES (?1)", [record.task_id])?;
                    summary.tasks_added += 1;
                }
                let provenance = record.ilf.as_ref();
                let (program_id, new) = Self::insert_program(
                    tx,
                    &NewProgram {
                        task_id: record.task_id,
                        program: record.original_model_completion.clone(),
                        prompt: record.prompt.clone(),
                        test: record.test.clone(),
                        verdict: provenance.and_then(|p| p.verdict.clone()),
                        sample: provenance.and_then(|p| p.sample),
                        origin: "annotation import".to_string(),
                    },
                )?;
                if new {
                    summary.programs_added += 1;
                } else {
                    summary.programs_known += 1;
                }
                let key = format!(
                    "import:{}",
                    sha256_hex(&format!("{}\u{0}{}\u{0}{}", record.task_id, program_id, record.feedback))
                );
                let source = provenance.map_or(FeedbackSource::Human, |p| p.source);
                let inserted = tx.execute(
                    "INSERT INTO feedback (program_id, text, source, model, author, time_spent_s, paper_record,
                                           idempotency_key, created)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,
                             coalesce(?9, strftime('%Y-%m-%dT%H:%M:%SZ', 'now')))
                     ON CONFLICT (idempotency_key) DO NOTHING",
                    params![
                        program_id,
                        record.feedback,
                        source.as_str(),
                        provenance.and_then(|p| p.model.clone()),
                        record.worker_id,
                        provenance.and_then(|p| p.time_spent_s),
                        provenance.is_none(),
                        key,
                        provenance.and_then(|p| p.created.clone()),
                    ],
                )?;
                if inserted == 0 {
                    summary.feedback_known += 1;
                    continue;
                }
                summary.feedback_added += 1;
                let feedback_id = tx.last_insert_rowid();
                if let Some(code) = &record.unedited_annotator_completion {
                    tx.execute(
                        "INSERT INTO refinements (feedback_id, code, completion, passed, result, verdict,
                                                  edit_distance, edit_distance_max)
                         VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, ?7)",
                        params![
                            feedback_id,
                            code,
                            record.completion.clone().unwrap_or_else(|| body_after_signature(code).to_string()),
                            record.passed,
                            record.result,
                            record.refinement_edit_distance,
                            provenance.and_then(|p| p.edit_distance_max),
                        ],
                    )?;
                }
            }
            Ok(summary)
        })
    }

    /// Creates an annotator and returns the plain login token, which is shown once: only its
    /// SHA-256 is stored.
    pub fn add_annotator(&self, name: &str, role: Role) -> Result<String> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 {
            bail!("an annotator name must have 1 to 64 characters, got {name:?}");
        }
        let token = random_token();
        self.write(|tx| {
            let taken: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM annotators WHERE name = ?1)",
                [name],
                |r| r.get(0),
            )?;
            if taken {
                bail!(
                    "an annotator named {name:?} already exists in {}; pick another name",
                    self.path.display()
                );
            }
            tx.execute(
                "INSERT INTO annotators (name, role, token_hash) VALUES (?1, ?2, ?3)",
                params![name, role.as_str(), sha256_hex(&token)],
            )?;
            Ok(())
        })?;
        Ok(token)
    }

    pub fn annotators(&self) -> Result<Vec<Annotator>> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT id, name, role FROM annotators ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?)))?;
        rows.map(|row| {
            let (id, name, role) = row?;
            Ok(Annotator {
                id,
                name,
                role: Role::parse(&role)?,
            })
        })
        .collect()
    }

    /// Logs in with a plain token: a new session (its plain cookie value) and its CSRF token.
    pub fn login(&self, token: &str) -> Result<Option<(String, Session)>> {
        let hash = sha256_hex(token.trim());
        self.write(|tx| {
            let row: Option<(i64, String, String)> = tx
                .query_row("SELECT id, name, role FROM annotators WHERE token_hash = ?1", [&hash], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            let Some((id, name, role)) = row else { return Ok(None) };
            let session_token = random_token();
            let csrf = random_token();
            tx.execute("DELETE FROM sessions WHERE expires_unix < ?1", [now_unix()])?;
            tx.execute(
                "INSERT INTO sessions (token_hash, annotator_id, csrf, expires_unix) VALUES (?1, ?2, ?3, ?4)",
                params![sha256_hex(&session_token), id, csrf, now_unix() + SESSION_SECONDS],
            )?;
            Ok(Some((session_token, Session { annotator: Annotator { id, name, role: Role::parse(&role)? }, csrf })))
        })
    }

    /// The session behind a cookie value, unless unknown or expired.
    pub fn session(&self, session_token: &str) -> Result<Option<Session>> {
        let conn = self.lock();
        let row: Option<(i64, String, String, String)> = conn
            .query_row(
                "SELECT a.id, a.name, a.role, s.csrf FROM sessions s JOIN annotators a ON a.id = s.annotator_id
                 WHERE s.token_hash = ?1 AND s.expires_unix >= ?2",
                params![sha256_hex(session_token), now_unix()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        row.map(|(id, name, role, csrf)| {
            Ok(Session {
                annotator: Annotator {
                    id,
                    name,
                    role: Role::parse(&role)?,
                },
                csrf,
            })
        })
        .transpose()
    }

    pub fn logout(&self, session_token: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM sessions WHERE token_hash = ?1",
                [sha256_hex(session_token)],
            )?;
            Ok(())
        })
    }

    pub fn task(&self, task_id: u32) -> Result<Option<TaskInfo>> {
        let conn = self.lock();
        let row: Option<(Option<String>, Option<String>, String, String)> = conn
            .query_row(
                "SELECT text, entry_point, test_list, test_setup_code FROM tasks WHERE task_id = ?1",
                [task_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        row.map(|(text, entry_point, test_list, test_setup_code)| {
            Ok(TaskInfo {
                task_id,
                text,
                entry_point,
                test_list: serde_json::from_str(&test_list)
                    .with_context(|| format!("corrupt test list of task {task_id}"))?,
                test_setup_code,
            })
        })
        .transpose()
    }

    fn program_from_row(
        row: &rusqlite::Row<'_>,
    ) -> rusqlite::Result<(ProgramInfo, Option<String>)> {
        Ok((
            ProgramInfo {
                id: row.get(0)?,
                task_id: row.get(1)?,
                program: row.get(2)?,
                prompt: row.get(3)?,
                test: row.get(4)?,
                verdict: None,
                sample: row.get::<_, Option<i64>>(6)?.map(|s| s as u64),
            },
            row.get(5)?,
        ))
    }

    fn finish_program(
        (mut program, verdict): (ProgramInfo, Option<String>),
    ) -> Result<ProgramInfo> {
        program.verdict = parse_verdict(verdict, &format!("program {}", program.id))?;
        Ok(program)
    }

    const PROGRAM_COLUMNS: &'static str = "id, task_id, program, prompt, test, verdict, sample";

    /// Up to `limit` failing programs of a task, in import order.
    pub fn programs(&self, task_id: u32, limit: usize) -> Result<Vec<ProgramInfo>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {} FROM programs WHERE task_id = ?1 ORDER BY id LIMIT ?2",
            Self::PROGRAM_COLUMNS
        ))?;
        let rows = stmt.query_map(params![task_id, limit as i64], Self::program_from_row)?;
        rows.map(|row| Self::finish_program(row?)).collect()
    }

    pub fn program(&self, id: i64) -> Result<Option<ProgramInfo>> {
        let conn = self.lock();
        let row = conn
            .query_row(
                &format!(
                    "SELECT {} FROM programs WHERE id = ?1",
                    Self::PROGRAM_COLUMNS
                ),
                [id],
                Self::program_from_row,
            )
            .optional()?;
        row.map(Self::finish_program).transpose()
    }

    /// Every task with failing programs, and where `annotator_id` stands on each.
    pub fn task_summaries(&self, annotator_id: i64) -> Result<Vec<TaskSummary>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT t.task_id, t.text,
                    (SELECT count(*) FROM programs p WHERE p.task_id = t.task_id),
                    (SELECT count(*) FROM feedback f JOIN programs p ON p.id = f.program_id
                      WHERE p.task_id = t.task_id AND f.source = 'human'),
                    EXISTS (SELECT 1 FROM feedback f JOIN programs p ON p.id = f.program_id
                             WHERE p.task_id = t.task_id AND f.annotator_id = ?1),
                    EXISTS (SELECT 1 FROM skips s WHERE s.task_id = t.task_id AND s.annotator_id = ?1)
             FROM tasks t
             WHERE EXISTS (SELECT 1 FROM programs p WHERE p.task_id = t.task_id)
             ORDER BY t.task_id",
        )?;
        let rows = stmt.query_map([annotator_id], |r| {
            let annotated: bool = r.get(4)?;
            let skipped: bool = r.get(5)?;
            Ok(TaskSummary {
                task_id: r.get(0)?,
                text: r.get(1)?,
                programs: r.get::<_, i64>(2)? as usize,
                annotations: r.get::<_, i64>(3)? as usize,
                state: if annotated {
                    TaskState::Annotated
                } else if skipped {
                    TaskState::Skipped
                } else {
                    TaskState::Open
                },
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn progress(&self, annotator_id: i64) -> Result<Progress> {
        let summaries = self.task_summaries(annotator_id)?;
        let time_spent_s: f64 = self.lock().query_row(
            "SELECT coalesce(sum(time_spent_s), 0) FROM feedback WHERE annotator_id = ?1",
            [annotator_id],
            |r| r.get(0),
        )?;
        Ok(Progress {
            tasks: summaries.len(),
            annotated: summaries
                .iter()
                .filter(|s| s.state == TaskState::Annotated)
                .count(),
            skipped: summaries
                .iter()
                .filter(|s| s.state == TaskState::Skipped)
                .count(),
            time_spent_s,
        })
    }

    /// A verdict the server computed earlier for exactly this code on this task.
    pub fn cached_run(&self, task_id: u32, code: &str) -> Result<Option<ProgramOutcome>> {
        let conn = self.lock();
        let text: Option<String> = conn
            .query_row(
                "SELECT verdict FROM runs WHERE task_id = ?1 AND code_sha256 = ?2",
                params![task_id, sha256_hex(code)],
                |r| r.get(0),
            )
            .optional()?;
        parse_verdict(text, &format!("the run cache of task {task_id}"))
    }

    pub fn record_run(&self, task_id: u32, code: &str, verdict: &ProgramOutcome) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO runs (task_id, code_sha256, verdict) VALUES (?1, ?2, ?3)
                 ON CONFLICT (task_id, code_sha256) DO UPDATE SET verdict = excluded.verdict",
                params![task_id, sha256_hex(code), serde_json::to_string(verdict)?],
            )?;
            Ok(())
        })
    }

    /// Stores a human annotation (feedback and refinement) in one transaction. A replayed
    /// idempotency key returns the first submission's id and writes nothing.
    pub fn submit(&self, submission: &Submission) -> Result<Stored, SubmitError> {
        let program = self
            .program(submission.program_id)?
            .ok_or(SubmitError::NoSuchProgram(submission.program_id))?;
        let completion = body_after_signature(&submission.refinement).to_string();
        let edit_distance = paper_edit_distance(&program.program, &program.prompt, &completion);
        let edit_distance_max =
            max_normalised_edit_distance(&program.program, &submission.refinement);
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(anyhow::Error::from)?;
        let known: Option<i64> = tx
            .query_row(
                "SELECT id FROM feedback WHERE idempotency_key = ?1",
                [&submission.idempotency_key],
                |r| r.get(0),
            )
            .optional()
            .map_err(anyhow::Error::from)?;
        if let Some(id) = known {
            return Ok(Stored { id, replayed: true });
        }
        let duplicate: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM feedback WHERE program_id = ?1 AND annotator_id = ?2)",
                params![submission.program_id, submission.annotator_id],
                |r| r.get(0),
            )
            .map_err(anyhow::Error::from)?;
        if duplicate {
            return Err(SubmitError::AlreadyAnnotated(submission.program_id));
        }
        let author: String = tx
            .query_row(
                "SELECT name FROM annotators WHERE id = ?1",
                [submission.annotator_id],
                |r| r.get(0),
            )
            .map_err(anyhow::Error::from)?;
        let insert = || -> Result<i64> {
            tx.execute(
                "INSERT INTO feedback (program_id, text, source, author, annotator_id, time_spent_s, idempotency_key)
                 VALUES (?1, ?2, 'human', ?3, ?4, ?5, ?6)",
                params![
                    submission.program_id,
                    submission.feedback,
                    author,
                    submission.annotator_id,
                    submission.time_spent_s,
                    submission.idempotency_key
                ],
            )?;
            let feedback_id = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO refinements (feedback_id, code, completion, passed, result, verdict, edit_distance,
                                          edit_distance_max)
                 VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?6, ?7)",
                params![
                    feedback_id,
                    submission.refinement,
                    completion,
                    submission.verdict.passed(),
                    serde_json::to_string(&submission.verdict)?,
                    edit_distance,
                    edit_distance_max
                ],
            )?;
            Ok(feedback_id)
        };
        let id = insert()?;
        tx.commit().map_err(anyhow::Error::from)?;
        Ok(Stored {
            id,
            replayed: false,
        })
    }

    /// Records that an annotator skipped a task, with a reason.
    pub fn skip(&self, key: &str, task_id: u32, annotator_id: i64, reason: &str) -> Result<Stored> {
        self.write(|tx| {
            if let Some(id) =
                tx.query_row("SELECT id FROM skips WHERE idempotency_key = ?1", [key], |r| r.get(0)).optional()?
            {
                return Ok(Stored { id, replayed: true });
            }
            tx.execute(
                "INSERT INTO skips (task_id, annotator_id, reason, idempotency_key) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (task_id, annotator_id) DO UPDATE SET reason = excluded.reason",
                params![task_id, annotator_id, reason, key],
            )?;
            let id = tx.query_row(
                "SELECT id FROM skips WHERE task_id = ?1 AND annotator_id = ?2",
                params![task_id, annotator_id],
                |r| r.get(0),
            )?;
            Ok(Stored { id, replayed: false })
        })
    }

    /// Records a reviewer's decision (`accepted` or `rejected`); the latest decision counts.
    pub fn review(
        &self,
        key: &str,
        feedback_id: i64,
        reviewer_id: i64,
        accept: bool,
        note: &str,
    ) -> Result<Stored> {
        self.write(|tx| {
            if let Some(id) = tx
                .query_row(
                    "SELECT id FROM reviews WHERE idempotency_key = ?1",
                    [key],
                    |r| r.get(0),
                )
                .optional()?
            {
                return Ok(Stored { id, replayed: true });
            }
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM feedback WHERE id = ?1)",
                [feedback_id],
                |r| r.get(0),
            )?;
            if !exists {
                bail!("feedback {feedback_id} does not exist");
            }
            tx.execute(
                "INSERT INTO reviews (feedback_id, reviewer_id, decision, note, idempotency_key)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    feedback_id,
                    reviewer_id,
                    if accept { "accepted" } else { "rejected" },
                    note,
                    key
                ],
            )?;
            Ok(Stored {
                id: tx.last_insert_rowid(),
                replayed: false,
            })
        })
    }

    /// Stored feedback, oldest first; `id` selects one.
    fn feedback_views(&self, id: Option<i64>) -> Result<Vec<FeedbackView>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT f.id, f.text, f.source, f.model, f.author, f.time_spent_s, f.created, f.paper_record,
                    p.id, p.task_id, p.program, p.prompt, p.test, p.verdict, p.sample,
                    r.code, r.completion, r.passed, r.result, r.verdict, r.edit_distance, r.edit_distance_max,
                    (SELECT v.decision FROM reviews v WHERE v.feedback_id = f.id ORDER BY v.id DESC LIMIT 1),
                    (SELECT a.name FROM reviews v JOIN annotators a ON a.id = v.reviewer_id
                      WHERE v.feedback_id = f.id ORDER BY v.id DESC LIMIT 1),
                    (SELECT v.note FROM reviews v WHERE v.feedback_id = f.id ORDER BY v.id DESC LIMIT 1)
             FROM feedback f JOIN programs p ON p.id = f.program_id
             LEFT JOIN refinements r ON r.feedback_id = f.id
             WHERE ?1 IS NULL OR f.id = ?1
             ORDER BY f.id",
        )?;
        let mut rows = stmt.query([id])?;
        let mut views = Vec::new();
        while let Some(r) = rows.next()? {
            let feedback_id: i64 = r.get(0)?;
            let source: String = r.get(2)?;
            let program = ProgramInfo {
                id: r.get(8)?,
                task_id: r.get(9)?,
                program: r.get(10)?,
                prompt: r.get(11)?,
                test: r.get(12)?,
                verdict: parse_verdict(r.get(13)?, &format!("program of feedback {feedback_id}"))?,
                sample: r.get::<_, Option<i64>>(14)?.map(|s| s as u64),
            };
            let refinement = match r.get::<_, Option<String>>(15)? {
                Some(code) => Some(RefinementView {
                    code,
                    completion: r.get(16)?,
                    passed: r.get(17)?,
                    result: r.get(18)?,
                    verdict: parse_verdict(
                        r.get(19)?,
                        &format!("refinement of feedback {feedback_id}"),
                    )?,
                    edit_distance: r.get(20)?,
                    edit_distance_max: r.get(21)?,
                }),
                None => None,
            };
            let review = match r.get::<_, Option<String>>(22)? {
                Some(decision) => Some(ReviewView {
                    decision,
                    reviewer: r.get(23)?,
                    note: r.get(24)?,
                }),
                None => None,
            };
            views.push(FeedbackView {
                id: feedback_id,
                text: r.get(1)?,
                source: FeedbackSource::parse(&source).with_context(|| {
                    format!("feedback {feedback_id} has unknown source {source:?}")
                })?,
                model: r.get(3)?,
                author: r.get(4)?,
                time_spent_s: r.get(5)?,
                created: r.get(6)?,
                paper_record: r.get(7)?,
                program,
                refinement,
                review,
            });
        }
        Ok(views)
    }

    pub fn all_feedback(&self) -> Result<Vec<FeedbackView>> {
        self.feedback_views(None)
    }

    pub fn feedback(&self, id: i64) -> Result<Option<FeedbackView>> {
        Ok(self.feedback_views(Some(id))?.pop())
    }

    /// Every stored annotation in the paper's schema, oldest first (rejected ones included;
    /// their `ilf.review` says so).
    pub fn export(&self) -> Result<Vec<AnnotationRecord>> {
        Ok(self
            .all_feedback()?
            .iter()
            .map(FeedbackView::to_record)
            .collect())
    }
}

impl FeedbackView {
    /// The annotation in the paper's schema (see [`crate::annotations`]).
    pub fn to_record(&self) -> AnnotationRecord {
        let refinement = self.refinement.as_ref();
        AnnotationRecord {
            task_id: self.program.task_id,
            prompt: self.program.prompt.clone(),
            test: self.program.test.clone(),
            feedback: self.text.clone(),
            completion: refinement.map(|r| r.completion.clone()),
            result: refinement.and_then(|r| r.result.clone()),
            passed: refinement.and_then(|r| r.passed),
            unedited_annotator_completion: refinement.map(|r| r.code.clone()),
            original_model_completion: self.program.program.clone(),
            refinement_edit_distance: refinement.and_then(|r| r.edit_distance),
            worker_id: self.author.clone(),
            ilf: (!self.paper_record).then(|| Provenance {
                source: self.source,
                model: self.model.clone(),
                time_spent_s: self.time_spent_s,
                edit_distance_max: refinement.and_then(|r| r.edit_distance_max),
                review: self.review.as_ref().map(|r| r.decision.clone()),
                verdict: self.program.verdict.clone(),
                sample: self.program.sample,
                created: Some(self.created.clone()),
            }),
        }
    }
}
