//! The annotation web app: the paper's protocol (ilf-method.md §1.2, step 2) in a browser.
//!
//! An annotator logs in with a token, opens a task (its text, its tests and up to ten failing
//! programs with the failing assert or traceback), picks one program, writes one to four
//! sentences of feedback (what is wrong and how to fix it, no whole lines of code), edits the
//! program into a minimal refinement, runs the tests in the sandbox and submits once they pass.
//! Reviewers also accept or reject annotations and export them in the paper's schema.
//!
//! HTML is rendered on the server with maud, which escapes every interpolated string; the pages
//! load one small script and one stylesheet from `/static/` (no CDN, no inline script, and a
//! Content-Security-Policy that forbids both). Every POST carries the session's CSRF token; the
//! request body is capped; runs are rate-limited per annotator; the server binds to loopback
//! unless told `public`.
//!
//! ```text
//! ilf annotate --db ilf.db add-annotator ada              # prints ada's login token, once
//! ilf annotate --db ilf.db add-annotator rita --reviewer
//! ilf annotate --db ilf.db --results runs/x/02-eval/results.jsonl   # import, serve on 127.0.0.1:8080
//! ilf annotate --db ilf.db export --out annotations.jsonl           # the paper's schema
//! ```
//!
//! Routes: `GET /login`, `POST /login`, `POST /logout`, `GET /` (tasks and progress),
//! `GET /task/{id}` (task, tests, up to ten failing programs), `POST /task/{id}/skip`,
//! `GET|POST /annotate/{program}` (the form; POST submits), `POST /api/run` (JSON; runs the
//! editor's code against the task's tests and returns the verdict, the edit distance and the
//! line diff), `GET /review`, `GET|POST /review/{feedback}`, `GET /export.jsonl` (reviewers).

mod diff;
mod pages;
mod rate_limit;
mod routes;

pub use diff::{diff_html, diff_lines, DiffLine};
pub use rate_limit::{RateLimit, RateLimiter};

use crate::failures::read_failures;
use crate::store::{Counts, ImportSummary, Store};
use anyhow::{bail, Context, Result};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ilf_data::mbpp::Mbpp;
use ilf_data::verdict::ProgramOutcome;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Runs a program against its tests. The app holds one for its run-tests action; the sandbox
/// pool is the implementation the CLI uses.
pub trait TestRunner: Send + Sync + 'static {
    /// Runs `program` after `setup` against the asserts in `tests`.
    fn run_tests(&self, program: &str, setup: &str, tests: &[String]) -> ProgramOutcome;
}

impl TestRunner for ilf_sandbox::Pool {
    fn run_tests(&self, program: &str, setup: &str, tests: &[String]) -> ProgramOutcome {
        self.run(&ilf_sandbox::Job {
            program: program.to_string(),
            setup: setup.to_string(),
            tests: tests.to_vec(),
            timeout: None,
        })
    }
}

/// Settings of a running app.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The largest request body accepted, in bytes.
    pub body_limit: usize,
    pub run_limit: RateLimit,
    /// How many failing programs a task page shows (the paper: up to 10).
    pub programs_per_task: usize,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            body_limit: 256 * 1024,
            run_limit: RateLimit::default(),
            programs_per_task: 10,
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    store: Arc<Store>,
    runner: Arc<dyn TestRunner>,
    limiter: Arc<RateLimiter>,
    config: Arc<AppConfig>,
}

impl AppState {
    pub fn new(store: Arc<Store>, runner: Arc<dyn TestRunner>, config: AppConfig) -> AppState {
        AppState {
            store,
            runner,
            limiter: Arc::new(RateLimiter::new(config.run_limit)),
            config: Arc::new(config),
        }
    }
}

/// The app's routes with its security layers (body limit, response headers).
pub fn router(state: AppState) -> axum::Router {
    routes::router(state)
}

/// Refuses to listen beyond this machine unless `public` is set: the app runs untrusted code on
/// request, and tokens travel in clear over plain HTTP.
pub fn check_bind(addr: SocketAddr, public: bool) -> Result<()> {
    if !addr.ip().is_loopback() && !public {
        bail!(
            "refusing to listen on {addr}: it is reachable from other machines, and the app runs code \
             and sends tokens over plain HTTP; bind to 127.0.0.1 (the default), or pass --public behind \
             a TLS-terminating proxy"
        );
    }
    Ok(())
}

/// Serves on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "annotation app listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .with_context(|| format!("the annotation server on {addr} stopped with an error"))
}

/// Everything `ilf annotate` needs to import failing programs and serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub db: PathBuf,
    /// `ilf eval`'s results: failing programs to import before serving (idempotent).
    pub results: Option<PathBuf>,
    /// The MBPP file the results were made from (`Mbpp::resolve` rules when `None`).
    pub mbpp: Option<PathBuf>,
    pub bind: SocketAddr,
    pub public: bool,
    pub config: AppConfig,
}

/// What `ilf annotate` did before serving.
#[derive(Debug, Clone, Serialize)]
pub struct Started {
    pub url: String,
    pub imported: Option<ImportSummary>,
    pub counts: Counts,
}

/// Opens the store, imports `results`, starts the sandbox pool and serves until Ctrl-C (or
/// SIGTERM). `on_start` is told the address once the socket listens.
pub fn run_server(options: ServeOptions, on_start: impl FnOnce(&Started)) -> Result<()> {
    check_bind(options.bind, options.public)?;
    let store = Arc::new(Store::open(&options.db)?);
    let imported = match &options.results {
        Some(results) => {
            let mbpp = Mbpp::resolve(options.mbpp.as_deref())?;
            let failures = read_failures(results, &mbpp)?;
            Some(store.import_programs(&failures.tasks, &failures.programs)?)
        }
        None => None,
    };
    let pool = ilf_sandbox::Pool::start(ilf_sandbox::PoolConfig::default())
        .context("cannot start the sandbox pool for the run-tests action")?;
    let state = AppState::new(Arc::clone(&store), Arc::new(pool), options.config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.bind)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {}; is another server using the port?",
                    options.bind
                )
            })?;
        let addr = listener.local_addr()?;
        on_start(&Started {
            url: format!("http://{addr}/"),
            imported,
            counts: store.counts()?,
        });
        serve(listener, state, shutdown_signal()).await
    })
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::warn!("cannot listen for SIGTERM: {error}");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// An error shown to the user as a page (HTML-escaped) with a status code.
#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub message: String,
}

impl AppError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> AppError {
        AppError {
            status,
            message: message.into(),
        }
    }
}

impl From<anyhow::Error> for AppError {
    fn from(error: anyhow::Error) -> AppError {
        tracing::error!("{error:#}");
        AppError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{error:#}"))
    }
}

impl From<tokio::task::JoinError> for AppError {
    fn from(error: tokio::task::JoinError) -> AppError {
        AppError::from(anyhow::Error::from(error).context("a background task failed"))
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, pages::error_page(self.status, &self.message)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_binds_without_public() {
        assert!(check_bind("127.0.0.1:8080".parse().unwrap(), false).is_ok());
        assert!(check_bind("[::1]:8080".parse().unwrap(), false).is_ok());
        let refused = check_bind("0.0.0.0:8080".parse().unwrap(), false).unwrap_err();
        assert!(refused.to_string().contains("--public"), "{refused}");
        assert!(check_bind("0.0.0.0:8080".parse().unwrap(), true).is_ok());
    }
}
