//! The annotation protocol in a real Chromium over WebDriver: log in, open a task, annotate
//! (type feedback, edit the program), run the tests, submit, skip a task, review, export.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`apt-get install -y chromium
//! chromium-driver`); `$ILF_CHROMIUM` and `$ILF_CHROMEDRIVER` override the paths. With
//! `ILF_SCREENSHOTS=1` the annotation page's screenshots are written to `docs/screenshots/`.

mod common;

use common::{failing_program, start};
use fantoccini::{Client, ClientBuilder, Locator};
use ilf_feedback::annotations::max_normalised_edit_distance;
use ilf_feedback::app::AppConfig;
use ilf_feedback::store::Role;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn tool(env: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.exists(),
        "{} not found: the browser tests need Chromium and its WebDriver. Install them with \
         `apt-get install -y chromium chromium-driver` (or set ${env})",
        path.display()
    );
    path
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn browser(profile: &Path) -> (Driver, Client) {
    let chromium = tool("ILF_CHROMIUM", "/usr/bin/chromium");
    let chromedriver = tool("ILF_CHROMEDRIVER", "/usr/bin/chromedriver");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Driver(
        Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display())),
    );
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1200,1000", format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    // chromedriver needs a moment to listen; retry the session until it answers (bounded).
    let mut last_error = None;
    for _ in 0..200 {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&url)
            .await
        {
            Ok(client) => return (driver, client),
            Err(error) => last_error = Some(error),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver at {url} never accepted a session: {last_error:?}");
}

async fn text(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// Waits until the element's text satisfies `ready` (the page's scripts run asynchronously).
async fn wait_text(client: &Client, css: &str, ready: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    for _ in 0..600 {
        if let Ok(element) = client.find(Locator::Css(css)).await {
            last = element.text().await.unwrap_or_default();
            if ready(&last) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{css} never reached the expected text; last seen {last:?}");
}

async fn log_in(client: &Client, server: &common::Server, token: &str) {
    client.goto(&server.url("/login")).await.unwrap();
    client
        .find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    client
        .find(Locator::Id("login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(client, "#progress", |t| t.starts_with("You annotated")).await;
}

fn screenshot(name: &str, png: &[u8], scratch: &Path) {
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    assert!(
        png.len() < 300 * 1024,
        "{name} is {} KB; keep screenshots under 300 KB",
        png.len() / 1024
    );
    let dir = if std::env::var_os("ILF_SCREENSHOTS").is_some() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots")
    } else {
        scratch.to_path_buf()
    };
    std::fs::write(dir.join(name), png).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotate_run_submit_skip_review_and_export_in_chromium() {
    let mbpp = common::mbpp();
    let task = mbpp.get(11).unwrap();
    // Removes only the first occurrence; the fix appends a second removal on the reversed string.
    let buggy = format!(
        "{}    return s.replace(ch, '', 1)\n",
        ilf_data::prompt::paper_prompt(task)
    );
    let other = failing_program(task);
    let skipped_task = mbpp.get(12).unwrap();
    let server = start(
        &[
            (11, buggy.clone()),
            (11, other),
            (12, failing_program(skipped_task)),
        ],
        AppConfig::default(),
    )
    .await;
    let annotator_token = server.store.add_annotator("ada", Role::Annotator).unwrap();
    let reviewer_token = server.store.add_annotator("rita", Role::Reviewer).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let (_driver, client) = browser(profile.path()).await;

    // Log in and open the first open task.
    log_in(&client, &server, &annotator_token).await;
    assert!(text(&client, "#progress")
        .await
        .contains("annotated 0 and skipped 0 of 2 tasks"));
    client
        .find(Locator::Id("next-task"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&client, "h2", |t| t == "Task 11").await;
    assert_eq!(
        client
            .find_all(Locator::Css("section.program"))
            .await
            .unwrap()
            .len(),
        2
    );
    // The failing assert is shown next to each program, and programs are highlighted.
    let failure = text(&client, "section.program pre.failure").await;
    assert!(
        failure.contains("failed: expected 'heo', got 'helo'"),
        "{failure}"
    );
    assert!(!client
        .find_all(Locator::Css("section.program pre.code span.tok-kw"))
        .await
        .unwrap()
        .is_empty());
    client
        .find(Locator::Css("a.annotate"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&client, "#distance", |t| t == "0.0%").await;

    // Feedback, typed.
    let feedback =
        "It removes only the first occurrence of the character. Also remove the last occurrence, \
                    for example by doing the same removal on the reversed string.";
    client
        .find(Locator::Id("feedback"))
        .await
        .unwrap()
        .send_keys(feedback)
        .await
        .unwrap();
    // A minimal edit: put the caret at the end, delete the final newline, extend the return.
    let editor = client.find(Locator::Id("code")).await.unwrap();
    editor.click().await.unwrap();
    client
        .execute("const e = document.getElementById('code'); e.setSelectionRange(e.value.length, e.value.length);", vec![])
        .await
        .unwrap();
    editor
        .send_keys("\u{e003}[::-1].replace(ch, '', 1)[::-1]\n")
        .await
        .unwrap();
    let refinement = format!(
        "{}    return s.replace(ch, '', 1)[::-1].replace(ch, '', 1)[::-1]\n",
        ilf_data::prompt::paper_prompt(task)
    );
    let value = client
        .execute("return document.getElementById('code').value;", vec![])
        .await
        .unwrap();
    assert_eq!(value.as_str().unwrap(), refinement);

    // The live edit distance is the server's formula.
    let expected = format!(
        "{:.1}%",
        max_normalised_edit_distance(&buggy, &refinement) * 100.0
    );
    wait_text(&client, "#distance", |t| t == expected).await;
    assert!(
        !client
            .find(Locator::Id("submit"))
            .await
            .unwrap()
            .is_enabled()
            .await
            .unwrap(),
        "submit waits for a passing run"
    );

    // Run the tests in the sandbox.
    client
        .find(Locator::Id("run"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(
        wait_text(&client, "#run-status", |t| t.starts_with("tests")).await,
        "tests pass"
    );
    assert_eq!(text(&client, "#run-summary").await, "All tests passed.");
    let inserted = text(&client, "#run-diff .diff-insert").await;
    assert!(
        inserted.contains("[::-1].replace(ch, '', 1)[::-1]"),
        "{inserted}"
    );
    assert!(client
        .find(Locator::Id("submit"))
        .await
        .unwrap()
        .is_enabled()
        .await
        .unwrap());
    client
        .execute("window.scrollTo(0, 0);", vec![])
        .await
        .unwrap();
    screenshot(
        "annotate.png",
        &client.screenshot().await.unwrap(),
        profile.path(),
    );
    client
        .execute(
            "document.getElementById('run-diff').scrollIntoView({block: 'end'});",
            vec![],
        )
        .await
        .unwrap();
    screenshot(
        "annotate-run.png",
        &client.screenshot().await.unwrap(),
        profile.path(),
    );

    // Submit.
    client
        .find(Locator::Id("submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&client, "#progress", |t| {
        t.contains("annotated 1 and skipped 0 of 2 tasks")
    })
    .await;

    // Skip the other task with a reason.
    client
        .find(Locator::Id("next-task"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&client, "h2", |t| t == "Task 12").await;
    client
        .find(Locator::Id("reason"))
        .await
        .unwrap()
        .send_keys("The only program is empty.")
        .await
        .unwrap();
    client
        .find(Locator::Css("section.skip button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&client, "#progress", |t| {
        t.contains("annotated 1 and skipped 1 of 2 tasks")
    })
    .await;

    // Log out; the reviewer accepts the annotation.
    client
        .find(Locator::Css("header form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&client, "h1", |t| t == "ilf annotate").await;
    log_in(&client, &server, &reviewer_token).await;
    client.goto(&server.url("/review")).await.unwrap();
    client
        .find(Locator::Css("table.review tbody a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text(&client, "#feedback-text").await, feedback);
    assert!(text(&client, "pre.diff .diff-delete")
        .await
        .contains("return s.replace(ch, '', 1)"));
    screenshot(
        "annotate-review.png",
        &client.screenshot().await.unwrap(),
        profile.path(),
    );
    client
        .find(Locator::Id("note"))
        .await
        .unwrap()
        .send_keys("Clear and minimal.")
        .await
        .unwrap();
    client
        .find(Locator::Id("accept"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&client, "table.review tbody tr td:last-child", |t| {
        t == "accepted"
    })
    .await;

    // Export through the browser's session.
    let export = client
        .execute_async(
            "const done = arguments[arguments.length - 1]; fetch('/export.jsonl').then(r => r.text()).then(done);",
            vec![],
        )
        .await
        .unwrap();
    let lines: Vec<serde_json::Value> = export
        .as_str()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    let record = &lines[0];
    assert_eq!(record["task_id"], 11);
    assert_eq!(record["Feedback"], feedback);
    assert_eq!(record["original_model_completion"], buggy.as_str());
    assert_eq!(record["unedited_annotator_completion"], refinement.as_str());
    assert_eq!(record["passed"], true);
    assert_eq!(record["worker_id"], "ada");
    assert_eq!(record["ilf"]["review"], "accepted");
    assert!(record["ilf"]["time_spent_s"].as_f64().unwrap() > 0.0);

    client.close().await.unwrap();
    server.stop().await;
}
