//! Request handlers: login, the task list, a task, the annotation form, running tests,
//! submitting, skipping, reviewing and exporting.

use super::diff::{diff_lines, DiffLine};
use super::pages::{self, AnnotateForm, Page};
use super::{AppError, AppState};
use crate::annotations::max_normalised_edit_distance;
use crate::execution::describe_failure;
use crate::store::{random_token, ProgramInfo, Role, Session, Submission, SubmitError, TaskInfo};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use ilf_data::verdict::{ProgramOutcome, Status};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tower_http::limit::RequestBodyLimitLayer;

const SESSION_COOKIE: &str = "ilf_session";
const LOGIN_COOKIE: &str = "ilf_login";
/// Longest feedback accepted, in characters (the paper's longest is 295 words).
const MAX_FEEDBACK_CHARS: usize = 4000;
/// Time spent is measured by the page; a value beyond this (a tab left open overnight) is capped.
const MAX_TIME_SPENT_S: f64 = 4.0 * 3600.0;
/// The paper's edit-distance filter: Levenshtein < 50% of the longer text.
const EDIT_DISTANCE_WARNING: f64 = 0.5;

static APP_JS: &str = include_str!("assets/app.js");
static APP_CSS: &str = include_str!("assets/app.css");

pub fn router(state: AppState) -> Router {
    let body_limit = state.config.body_limit;
    Router::new()
        .route("/", get(index))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/task/{task_id}", get(task_page))
        .route("/task/{task_id}/skip", post(skip))
        .route("/annotate/{program_id}", get(annotate_page).post(submit))
        .route("/api/run", post(run_tests))
        .route("/review", get(review_list))
        .route("/review/{feedback_id}", get(review_page).post(review))
        .route("/export.jsonl", get(export))
        .route(
            "/static/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/static/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .layer(axum::middleware::map_response(security_headers))
        .layer(RequestBodyLimitLayer::new(body_limit))
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Headers on every response: no inline or foreign script or style, no framing, no sniffing.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; \
             base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn set_cookie(name: &str, value: &str, max_age_s: i64) -> (header::HeaderName, String) {
    (
        header::SET_COOKIE,
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}"),
    )
}

/// Compares secrets in time independent of where they first differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A logged-in annotator. Pages without a session redirect to the login page; the JSON API
/// answers 401.
pub struct Auth(pub Session);

pub enum AuthRejection {
    Login,
    Unauthorized,
    Error(AppError),
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        match self {
            AuthRejection::Login => Redirect::to("/login").into_response(),
            AuthRejection::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                Json(serde_json::json!({"error": "log in first"})),
            )
                .into_response(),
            AuthRejection::Error(error) => error.into_response(),
        }
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let missing = || {
            if parts.uri.path().starts_with("/api/") {
                AuthRejection::Unauthorized
            } else {
                AuthRejection::Login
            }
        };
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE).map(str::to_string) else {
            return Err(missing());
        };
        let store = state.store.clone();
        let session = tokio::task::spawn_blocking(move || store.session(&token))
            .await
            .map_err(|e| AuthRejection::Error(e.into()))?
            .map_err(|e| AuthRejection::Error(e.into()))?;
        session.map(Auth).ok_or_else(missing)
    }
}

impl Auth {
    fn check_csrf(&self, token: &str) -> Result<(), AppError> {
        if same_secret(token, &self.0.csrf) {
            Ok(())
        } else {
            Err(AppError::new(
                StatusCode::FORBIDDEN,
                "the form's CSRF token does not match your session; reload the page and try again",
            ))
        }
    }

    fn require_reviewer(&self) -> Result<(), AppError> {
        if self.0.annotator.role == Role::Reviewer {
            Ok(())
        } else {
            Err(AppError::new(
                StatusCode::FORBIDDEN,
                "only reviewers may do this; ask for a reviewer token",
            ))
        }
    }
}

/// Runs a blocking store call off the async workers.
async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&crate::store::Store) -> anyhow::Result<T> + Send + 'static,
) -> Result<T, AppError> {
    let store = state.store.clone();
    Ok(tokio::task::spawn_blocking(move || f(&store)).await??)
}

fn not_found(what: String) -> AppError {
    AppError::new(StatusCode::NOT_FOUND, what)
}

async fn login_page(headers: HeaderMap) -> Response {
    let token = match cookie(&headers, LOGIN_COOKIE) {
        Some(existing) if existing.len() == 64 => existing.to_string(),
        _ => random_token(),
    };
    (
        [set_cookie(LOGIN_COOKIE, &token, 3600)],
        pages::login(&token, None),
    )
        .into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    csrf: String,
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, AppError> {
    // Login CSRF: the form must echo the random value the login page set as a cookie.
    let expected = cookie(&headers, LOGIN_COOKIE)
        .unwrap_or_default()
        .to_string();
    if expected.is_empty() || !same_secret(&form.csrf, &expected) {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "the login form expired; reload the login page",
        ));
    }
    let token = form.token;
    match blocking(&state, move |store| store.login(&token)).await? {
        Some((session_token, _)) => Ok((
            // Two Set-Cookie headers: a plain header array would keep only the last one.
            AppendHeaders([
                set_cookie(SESSION_COOKIE, &session_token, 7 * 24 * 3600),
                set_cookie(LOGIN_COOKIE, "", 0),
            ]),
            Redirect::to("/"),
        )
            .into_response()),
        None => Ok((
            StatusCode::UNAUTHORIZED,
            pages::login(&expected, Some("Unknown token.")),
        )
            .into_response()),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, AppError> {
    auth.check_csrf(&form.csrf)?;
    if let Some(token) = cookie(&headers, SESSION_COOKIE).map(str::to_string) {
        blocking(&state, move |store| store.logout(&token)).await?;
    }
    Ok(([set_cookie(SESSION_COOKIE, "", 0)], Redirect::to("/login")).into_response())
}

fn page(session: &Session, title: &str) -> Page {
    Page {
        title: title.to_string(),
        annotator: session.annotator.clone(),
        csrf: session.csrf.clone(),
    }
}

async fn index(State(state): State<AppState>, Auth(session): Auth) -> Result<Response, AppError> {
    let id = session.annotator.id;
    let (tasks, progress) = blocking(&state, move |store| {
        Ok((store.task_summaries(id)?, store.progress(id)?))
    })
    .await?;
    Ok(pages::index(&page(&session, "Tasks"), &tasks, &progress).into_response())
}

async fn load_task(
    state: &AppState,
    task_id: u32,
) -> Result<(TaskInfo, Vec<ProgramInfo>), AppError> {
    let limit = state.config.programs_per_task;
    let (task, programs) = blocking(state, move |store| {
        Ok((store.task(task_id)?, store.programs(task_id, limit)?))
    })
    .await?;
    let task =
        task.ok_or_else(|| not_found(format!("task {task_id} is not in the annotation database")))?;
    Ok((task, programs))
}

async fn task_page(
    State(state): State<AppState>,
    Auth(session): Auth,
    Path(task_id): Path<u32>,
) -> Result<Response, AppError> {
    let (task, programs) = load_task(&state, task_id).await?;
    let failures: Vec<String> = programs
        .iter()
        .map(|p| p.verdict.as_ref().map(describe_failure).unwrap_or_default())
        .collect();
    Ok(pages::task(
        &page(&session, &format!("Task {task_id}")),
        &task,
        &programs,
        &failures,
        &random_token(),
    )
    .into_response())
}

#[derive(Deserialize)]
struct SkipForm {
    csrf: String,
    idem: String,
    reason: String,
}

async fn skip(
    State(state): State<AppState>,
    auth: Auth,
    Path(task_id): Path<u32>,
    Form(form): Form<SkipForm>,
) -> Result<Response, AppError> {
    auth.check_csrf(&form.csrf)?;
    let reason = form.reason.trim().to_string();
    if reason.is_empty() {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "say why you skip this task",
        ));
    }
    load_task(&state, task_id).await?;
    let annotator = auth.0.annotator.id;
    blocking(&state, move |store| {
        store.skip(&form.idem, task_id, annotator, &reason)
    })
    .await?;
    Ok(Redirect::to("/").into_response())
}

async fn load_program(
    state: &AppState,
    program_id: i64,
) -> Result<(ProgramInfo, TaskInfo), AppError> {
    let (program, task) = blocking(state, move |store| {
        let program = store.program(program_id)?;
        let task = match &program {
            Some(p) => store.task(p.task_id)?,
            None => None,
        };
        Ok((program, task))
    })
    .await?;
    let program =
        program.ok_or_else(|| not_found(format!("program {program_id} is not in the database")))?;
    let task =
        task.ok_or_else(|| not_found(format!("the task of program {program_id} is missing")))?;
    Ok((program, task))
}

async fn annotate_page(
    State(state): State<AppState>,
    Auth(session): Auth,
    Path(program_id): Path<i64>,
) -> Result<Response, AppError> {
    let (program, task) = load_program(&state, program_id).await?;
    let form = AnnotateForm {
        idem: random_token(),
        feedback: String::new(),
        code: program.program.clone(),
        time_base_s: 0.0,
        warnings: Vec::new(),
        error: None,
    };
    let failure = program
        .verdict
        .as_ref()
        .map(describe_failure)
        .unwrap_or_default();
    Ok(pages::annotate(
        &page(&session, &format!("Task {}", task.task_id)),
        &task,
        &program,
        &failure,
        &form,
    )
    .into_response())
}

/// Runs `code` against the task's tests, reusing the server's earlier verdict for the same code.
/// `Err` with 429 when the annotator's run budget is spent.
async fn verdict_for(
    state: &AppState,
    annotator: i64,
    task: &TaskInfo,
    code: &str,
) -> Result<ProgramOutcome, AppError> {
    if task.test_list.is_empty() {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            format!(
                "task {} has no tests in the database (it came from an annotation file); import eval \
                 results with --mbpp to run it",
                task.task_id
            ),
        ));
    }
    let (task_id, key) = (task.task_id, code.to_string());
    if let Some(verdict) = blocking(state, move |store| store.cached_run(task_id, &key)).await? {
        return Ok(verdict);
    }
    if let Err(wait) = state.limiter.take(annotator) {
        return Err(AppError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many test runs; try again in {:.0} s",
                wait.as_secs_f64().ceil()
            ),
        ));
    }
    let runner = Arc::clone(&state.runner);
    let (program, setup, tests) = (
        code.to_string(),
        task.test_setup_code.clone(),
        task.test_list.clone(),
    );
    let verdict =
        tokio::task::spawn_blocking(move || runner.run_tests(&program, &setup, &tests)).await?;
    // Limits and crashes can depend on the machine's load; only verdicts the code alone decides
    // are reused.
    let deterministic = !matches!(
        verdict.status,
        Status::Timeout | Status::OutOfMemory | Status::Crashed
    );
    if deterministic {
        let (code, stored) = (code.to_string(), verdict.clone());
        blocking(state, move |store| {
            store.record_run(task_id, &code, &stored)
        })
        .await?;
    }
    Ok(verdict)
}

#[derive(Deserialize)]
struct RunRequest {
    program_id: i64,
    code: String,
}

#[derive(Serialize)]
struct RunResponse {
    status: Status,
    passed: bool,
    /// The verdict in words (execution feedback).
    summary: String,
    tests: Vec<TestLine>,
    edit_distance: f64,
    diff: Vec<DiffLine>,
}

#[derive(Serialize)]
struct TestLine {
    test: String,
    status: Status,
}

async fn run_tests(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    Json(request): Json<RunRequest>,
) -> Response {
    let csrf = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let result = async {
        auth.check_csrf(csrf)?;
        let (program, task) = load_program(&state, request.program_id).await?;
        let verdict = verdict_for(&state, auth.0.annotator.id, &task, &request.code).await?;
        Ok::<_, AppError>(RunResponse {
            status: verdict.status,
            passed: verdict.passed(),
            summary: if verdict.passed() {
                "All tests passed.".to_string()
            } else {
                describe_failure(&verdict)
            },
            tests: verdict
                .tests
                .iter()
                .map(|t| TestLine {
                    test: t.test.clone(),
                    status: t.status,
                })
                .collect(),
            edit_distance: max_normalised_edit_distance(&program.program, &request.code),
            diff: diff_lines(&program.program, &request.code),
        })
    }
    .await;
    match result {
        Ok(response) => Json(response).into_response(),
        Err(error) => (
            error.status,
            Json(serde_json::json!({"error": error.message})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct SubmitForm {
    csrf: String,
    idem: String,
    feedback: String,
    code: String,
    #[serde(default)]
    time_spent_s: String,
    #[serde(default)]
    confirm: Option<String>,
}

/// Warnings the annotator must confirm before a submission is stored.
fn warnings(feedback: &str, program: &str, refinement: &str) -> Vec<String> {
    let mut warnings = Vec::new();
    let code_lines: std::collections::HashSet<&str> = program
        .lines()
        .chain(refinement.lines())
        .map(str::trim)
        .filter(|l| l.len() >= 4)
        .collect();
    for line in feedback.lines().map(str::trim) {
        if code_lines.contains(line) {
            warnings.push(format!(
                "Your feedback contains a whole line of code ({line:?}); describe the fix in words instead."
            ));
        }
    }
    let sentences = feedback
        .split(['.', '!', '?'])
        .filter(|s| s.split_whitespace().count() >= 2)
        .count();
    if sentences > 4 {
        warnings.push(format!(
            "Your feedback has about {sentences} sentences; the protocol asks for 1 to 4."
        ));
    }
    let distance = max_normalised_edit_distance(program, refinement);
    if distance > EDIT_DISTANCE_WARNING {
        warnings.push(format!(
            "The refinement changes {:.0}% of the program (edit distance over the longer text); the paper keeps \
             refinements under 50%. Make a smaller edit if you can.",
            distance * 100.0
        ));
    }
    warnings
}

/// Parses the page's time measurement; nonsense is dropped, a long absence capped.
fn time_spent(text: &str) -> Option<f64> {
    let seconds: f64 = text.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| seconds.min(MAX_TIME_SPENT_S))
}

async fn submit(
    State(state): State<AppState>,
    auth: Auth,
    Path(program_id): Path<i64>,
    Form(form): Form<SubmitForm>,
) -> Result<Response, AppError> {
    auth.check_csrf(&form.csrf)?;
    let (program, task) = load_program(&state, program_id).await?;
    let feedback = form.feedback.trim().to_string();
    let code = form.code.replace("\r\n", "\n");
    let time = time_spent(&form.time_spent_s);
    let rerender = |status: StatusCode, warnings: Vec<String>, error: Option<String>| {
        let form = AnnotateForm {
            idem: form.idem.clone(),
            feedback: form.feedback.clone(),
            code: code.clone(),
            time_base_s: time.unwrap_or(0.0),
            warnings,
            error,
        };
        let failure = program
            .verdict
            .as_ref()
            .map(describe_failure)
            .unwrap_or_default();
        (
            status,
            pages::annotate(
                &page(&auth.0, &format!("Task {}", task.task_id)),
                &task,
                &program,
                &failure,
                &form,
            ),
        )
            .into_response()
    };
    if feedback.is_empty() {
        return Ok(rerender(
            StatusCode::UNPROCESSABLE_ENTITY,
            vec![],
            Some("Write the feedback first.".into()),
        ));
    }
    if feedback.chars().count() > MAX_FEEDBACK_CHARS {
        return Ok(rerender(
            StatusCode::UNPROCESSABLE_ENTITY,
            vec![],
            Some(format!("The feedback is longer than {MAX_FEEDBACK_CHARS} characters; say it in 1 to 4 sentences.")),
        ));
    }
    let found = warnings(&feedback, &program.program, &code);
    if !found.is_empty() && form.confirm.is_none() {
        return Ok(rerender(StatusCode::OK, found, None));
    }
    let verdict = match verdict_for(&state, auth.0.annotator.id, &task, &code).await {
        Ok(verdict) => verdict,
        Err(error) if error.status == StatusCode::TOO_MANY_REQUESTS => {
            return Ok(rerender(error.status, found, Some(error.message)))
        }
        Err(error) => return Err(error),
    };
    if !verdict.passed() {
        return Ok(rerender(
            StatusCode::UNPROCESSABLE_ENTITY,
            found,
            Some(format!(
                "The refinement does not pass the tests yet:\n{}",
                describe_failure(&verdict)
            )),
        ));
    }
    let submission = Submission {
        idempotency_key: form.idem.clone(),
        program_id,
        annotator_id: auth.0.annotator.id,
        feedback,
        refinement: code.clone(),
        verdict,
        time_spent_s: time,
    };
    let stored = tokio::task::spawn_blocking({
        let store = state.store.clone();
        move || store.submit(&submission)
    })
    .await?;
    match stored {
        Ok(stored) => Ok(Redirect::to(&format!("/?submitted={}", stored.id)).into_response()),
        Err(SubmitError::AlreadyAnnotated(id)) => Err(AppError::new(
            StatusCode::CONFLICT,
            format!("you already annotated program {id}; pick another program of the task"),
        )),
        Err(SubmitError::NoSuchProgram(id)) => {
            Err(not_found(format!("program {id} is not in the database")))
        }
        Err(SubmitError::Store(error)) => Err(error.into()),
    }
}

async fn review_list(State(state): State<AppState>, auth: Auth) -> Result<Response, AppError> {
    auth.require_reviewer()?;
    let all = blocking(&state, |store| store.all_feedback()).await?;
    Ok(pages::review_list(&page(&auth.0, "Review"), &all).into_response())
}

async fn review_page(
    State(state): State<AppState>,
    auth: Auth,
    Path(feedback_id): Path<i64>,
) -> Result<Response, AppError> {
    auth.require_reviewer()?;
    let view = blocking(&state, move |store| store.feedback(feedback_id))
        .await?
        .ok_or_else(|| not_found(format!("feedback {feedback_id} is not in the database")))?;
    let task_id = view.program.task_id;
    let task = blocking(&state, move |store| store.task(task_id)).await?;
    Ok(pages::review(
        &page(&auth.0, &format!("Review {feedback_id}")),
        task.as_ref(),
        &view,
        &random_token(),
    )
    .into_response())
}

#[derive(Deserialize)]
struct ReviewForm {
    csrf: String,
    idem: String,
    decision: String,
    #[serde(default)]
    note: String,
}

async fn review(
    State(state): State<AppState>,
    auth: Auth,
    Path(feedback_id): Path<i64>,
    Form(form): Form<ReviewForm>,
) -> Result<Response, AppError> {
    auth.check_csrf(&form.csrf)?;
    auth.require_reviewer()?;
    let accept = match form.decision.as_str() {
        "accept" => true,
        "reject" => false,
        other => {
            return Err(AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("unknown decision {other:?}"),
            ))
        }
    };
    let reviewer = auth.0.annotator.id;
    blocking(&state, move |store| {
        store.review(&form.idem, feedback_id, reviewer, accept, form.note.trim())
    })
    .await?;
    Ok(Redirect::to("/review").into_response())
}

async fn export(State(state): State<AppState>, auth: Auth) -> Result<Response, AppError> {
    auth.require_reviewer()?;
    let records = blocking(&state, |store| store.export()).await?;
    let mut body = String::new();
    for record in &records {
        body.push_str(&serde_json::to_string(record).map_err(anyhow::Error::from)?);
        body.push('\n');
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"annotations.jsonl\"",
            ),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_on_code_lines_long_feedback_and_large_edits() {
        let program = "def f(x):\n    return x + 1\n";
        assert!(warnings("Return x plus two instead of plus one.", program, program).is_empty());
        let found = warnings("Change it to\nreturn x + 1", program, program);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("whole line of code"));
        let long = "One two. Three four. Five six. Seven eight. Nine ten.";
        assert!(warnings(long, program, program)[0].contains("5 sentences"));
        assert!(
            warnings("Rewrite it.", program, "print('something else entirely')\n")[0]
                .contains("edit distance")
        );
    }

    #[test]
    fn time_spent_is_sanity_capped() {
        assert_eq!(time_spent("12.5"), Some(12.5));
        assert_eq!(time_spent("-3"), None);
        assert_eq!(time_spent("NaN"), None);
        assert_eq!(time_spent(""), None);
        assert_eq!(time_spent("1e9"), Some(MAX_TIME_SPENT_S));
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; ilf_session=abc; b=2"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
