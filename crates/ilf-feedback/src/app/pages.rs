//! The HTML pages. maud escapes every `(expression)` it interpolates, so program text, feedback
//! and task text can never open a tag; nothing here uses `PreEscaped` on user data.

use super::diff::diff_html;
use crate::store::{
    Annotator, FeedbackView, ProgramInfo, Progress, Role, TaskInfo, TaskState, TaskSummary,
};
use axum::http::StatusCode;
use maud::{html, Markup, DOCTYPE};

/// What every logged-in page shows in its header.
pub struct Page {
    pub title: String,
    pub annotator: Annotator,
    pub csrf: String,
}

/// The annotation form's state (fresh, or sent back with warnings or an error).
pub struct AnnotateForm {
    pub idem: String,
    pub feedback: String,
    pub code: String,
    /// Seconds already spent before this page was rendered (a re-rendered form keeps counting).
    pub time_base_s: f64,
    pub warnings: Vec<String>,
    pub error: Option<String>,
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · ilf annotate" }
            link rel="stylesheet" href="/static/app.css";
            script src="/static/app.js" defer {}
        }
    }
}

fn layout(page: &Page, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(&page.title))
            body {
                header {
                    a.brand href="/" { "ilf annotate" }
                    nav {
                        a href="/" { "Tasks" }
                        @if page.annotator.role == Role::Reviewer {
                            a href="/review" { "Review" }
                            a href="/export.jsonl" { "Export" }
                        }
                        span.who { (page.annotator.name) " (" (page.annotator.role.as_str()) ")" }
                        form.inline method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(page.csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub fn error_page(status: StatusCode, message: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Error"))
            body {
                main {
                    h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("Error")) }
                    pre.message { (message) }
                    p { a href="/" { "Back to the tasks" } }
                }
            }
        }
    }
}

pub fn login(csrf: &str, error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Log in"))
            body {
                main.narrow {
                    h1 { "ilf annotate" }
                    p { "Log in with the token you were given (" code { "ilf annotate add-annotator" } " prints it once)." }
                    @if let Some(error) = error { p.error { (error) } }
                    form method="post" action="/login" {
                        input type="hidden" name="csrf" value=(csrf);
                        label for="token" { "Token" }
                        input #token type="password" name="token" autocomplete="off" required;
                        button #login type="submit" { "Log in" }
                    }
                }
            }
        }
    }
}

fn state_label(state: TaskState) -> &'static str {
    match state {
        TaskState::Open => "open",
        TaskState::Annotated => "annotated",
        TaskState::Skipped => "skipped",
    }
}

fn first_line(text: Option<&str>) -> &str {
    text.and_then(|t| t.lines().next())
        .unwrap_or("(no task text: imported from an annotation file)")
}

pub fn index(page: &Page, tasks: &[TaskSummary], progress: &Progress) -> Markup {
    let next = tasks.iter().find(|t| t.state == TaskState::Open);
    layout(
        page,
        html! {
            h1 { "Tasks" }
            p #progress {
                "You annotated " strong { (progress.annotated) } " and skipped " strong { (progress.skipped) }
                " of " strong { (progress.tasks) } " tasks, in "
                (format!("{:.0}", progress.time_spent_s / 60.0)) " minutes."
            }
            @if let Some(next) = next {
                p { a #next-task href=(format!("/task/{}", next.task_id)) { "Next open task: " (next.task_id) } }
            }
            table.tasks {
                thead { tr { th { "Task" } th { "Description" } th { "Failing programs" } th { "Annotations" } th { "You" } } }
                tbody {
                    @for task in tasks {
                        tr class=(state_label(task.state)) {
                            td { a href=(format!("/task/{}", task.task_id)) { (task.task_id) } }
                            td { (first_line(task.text.as_deref())) }
                            td { (task.programs) }
                            td { (task.annotations) }
                            td { (state_label(task.state)) }
                        }
                    }
                }
            }
        },
    )
}

fn task_header(task: &TaskInfo) -> Markup {
    html! {
        section.task {
            h2 { "Task " (task.task_id) }
            p.text { (task.text.as_deref().unwrap_or("(no task text)")) }
            h3 { "Tests" }
            ul.tests {
                @for test in &task.test_list { li { code.python { (test) } } }
            }
            @if !task.test_setup_code.is_empty() {
                h3 { "Test setup" }
                pre.code.python { (task.test_setup_code) }
            }
        }
    }
}

pub fn task(
    page: &Page,
    task: &TaskInfo,
    programs: &[ProgramInfo],
    failures: &[String],
    idem: &str,
) -> Markup {
    layout(
        page,
        html! {
            (task_header(task))
            section.instructions {
                p {
                    "Pick the failing program that seems easiest to correct. Then write 1 to 4 sentences saying what is wrong and how \
                     to fix it (no whole lines of code), and repair it with as small an edit as you can."
                }
            }
            h3 { (programs.len()) " failing programs" }
            @for (index, (program, failure)) in programs.iter().zip(failures).enumerate() {
                section.program id=(format!("program-{}", program.id)) {
                    h4 {
                        "Program " (index + 1)
                        @if let Some(sample) = program.sample { " (sample " (sample) ")" }
                    }
                    pre.failure { (failure) }
                    pre.code.python { (program.program) }
                    a.button.annotate href=(format!("/annotate/{}", program.id)) { "Annotate this program" }
                }
            }
            section.skip {
                h3 { "Skip this task" }
                form method="post" action=(format!("/task/{}/skip", task.task_id)) {
                    input type="hidden" name="csrf" value=(page.csrf);
                    input type="hidden" name="idem" value=(idem);
                    label for="reason" { "Why? (e.g. every program is far from correct, the tests are wrong)" }
                    textarea #reason name="reason" rows="2" required {}
                    button type="submit" { "Skip" }
                }
            }
        },
    )
}

pub fn annotate(
    page: &Page,
    task: &TaskInfo,
    program: &ProgramInfo,
    failure: &str,
    form: &AnnotateForm,
) -> Markup {
    layout(
        page,
        html! {
            (task_header(task))
            section.program {
                h3 { "The failing program" }
                pre.failure { (failure) }
                pre.code.python #original { (program.program) }
            }
            @if let Some(error) = &form.error { pre.error #form-error { (error) } }
            @if !form.warnings.is_empty() {
                ul.warnings #server-warnings {
                    @for warning in &form.warnings { li { (warning) } }
                }
            }
            form #annotate method="post" action=(format!("/annotate/{}", program.id))
                data-program-id=(program.id) data-time-base=(form.time_base_s) {
                input type="hidden" name="csrf" value=(page.csrf);
                input type="hidden" name="idem" value=(form.idem);
                input #time-spent type="hidden" name="time_spent_s" value="";
                h3 { label for="feedback" { "1. Feedback" } }
                p.hint { "1 to 4 sentences: what is wrong, and how to fix it. Describe the fix in words; do not paste whole lines of code." }
                textarea #feedback name="feedback" rows="5" required { (form.feedback) }
                ul.warnings #feedback-warnings {}
                h3 { label for="code" { "2. Refinement" } }
                p.hint { "Edit the program as little as possible until every test passes." }
                textarea #code.code name="code" rows="18" spellcheck="false" { (form.code) }
                p.distance { "Edit distance: " span #distance { "0%" } " of the longer text (keep it under 50%)." }
                pre.code.python #preview {}
                div.actions {
                    button #run type="button" { "Run tests" }
                    span #run-status {}
                }
                pre #run-summary {}
                div #run-diff {}
                @if !form.warnings.is_empty() {
                    p {
                        label { input #confirm type="checkbox" name="confirm" value="1"; " I read the warnings; submit anyway." }
                    }
                }
                button #submit type="submit" disabled { "Submit" }
                p.hint { "Submit unlocks when the tests pass for the code in the editor." }
            }
        },
    )
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_string(), |v| format!("{:.1}%", v * 100.0))
}

pub fn review_list(page: &Page, all: &[FeedbackView]) -> Markup {
    layout(
        page,
        html! {
            h1 { "Review" }
            p { (all.len()) " annotations. " a href="/export.jsonl" { "Export all (paper schema, JSONL)" } }
            table.review {
                thead { tr {
                    th { "#" } th { "Task" } th { "Author" } th { "Source" } th { "Passed" }
                    th { "Edit distance (paper)" } th { "Edit distance (max)" } th { "Review" }
                } }
                tbody {
                    @for view in all {
                        @let refinement = view.refinement.as_ref();
                        tr {
                            td { a href=(format!("/review/{}", view.id)) { (view.id) } }
                            td { (view.program.task_id) }
                            td { (view.author.as_deref().unwrap_or("–")) }
                            td { (view.source.as_str()) }
                            td { (refinement.and_then(|r| r.passed).map_or("–", |p| if p { "yes" } else { "no" })) }
                            td { (percent(refinement.and_then(|r| r.edit_distance))) }
                            td { (percent(refinement.and_then(|r| r.edit_distance_max))) }
                            td { (view.review.as_ref().map_or("pending", |r| r.decision.as_str())) }
                        }
                    }
                }
            }
        },
    )
}

pub fn review(page: &Page, task: Option<&TaskInfo>, view: &FeedbackView, idem: &str) -> Markup {
    layout(
        page,
        html! {
            @if let Some(task) = task { (task_header(task)) }
            section.feedback {
                h3 { "Feedback by " (view.author.as_deref().unwrap_or("unknown")) " (" (view.source.as_str()) ")" }
                pre.feedback-text #feedback-text { (view.text) }
                p {
                    "Time spent: " (view.time_spent_s.map_or_else(|| "–".to_string(), |s| format!("{s:.0} s")))
                    " · created " (view.created)
                }
            }
            @if let Some(refinement) = &view.refinement {
                section.refinement {
                    h3 { "Refinement against the program" }
                    p {
                        "Edit distance: " (percent(refinement.edit_distance)) " of the original body (paper), "
                        (percent(refinement.edit_distance_max)) " of the longer text."
                    }
                    (diff_html(&view.program.program, &refinement.code))
                }
            } @else {
                section.program { h3 { "Program" } pre.code.python { (view.program.program) } }
            }
            @if let Some(review) = &view.review {
                p.review-state { "Current decision: " strong { (review.decision) } " by " (review.reviewer) ": " (review.note) }
            }
            form #review method="post" action=(format!("/review/{}", view.id)) {
                input type="hidden" name="csrf" value=(page.csrf);
                input type="hidden" name="idem" value=(idem);
                label for="note" { "Note" }
                textarea #note name="note" rows="2" {}
                button #accept type="submit" name="decision" value="accept" { "Accept" }
                button #reject type="submit" name="decision" value="reject" { "Reject" }
            }
        },
    )
}
