//! The app against hostile input and misuse: escaping, CSRF, sessions, roles, body size, rate
//! limits. A real server on 127.0.0.1 with the real sandbox.

mod common;

use common::{failing_program, gold, input_value, login, start, submit};
use ilf_feedback::app::{AppConfig, RateLimit};
use ilf_feedback::store::Role;
use std::time::Duration;

const HOSTILE: &str = "</textarea><script>alert(1)</script><img src=x onerror=alert(2)>\"'&";

/// The page has exactly our one script tag and no live hostile markup.
fn assert_inert(html: &str, page: &str) {
    assert_eq!(
        html.matches("<script").count(),
        1,
        "{page}: only app.js may be a script:\n{html}"
    );
    assert!(
        html.contains("<script src=\"/static/app.js\" defer>"),
        "{page}"
    );
    assert!(!html.contains("<script>alert"), "{page} has a live script");
    assert!(!html.contains("<img src=x"), "{page} has a live image tag");
    assert!(
        !html.contains("</textarea><script"),
        "{page} lets text close the textarea"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_program_and_feedback_text_is_escaped_everywhere() {
    let mbpp = common::mbpp();
    let task = mbpp.get(11).unwrap();
    let program = format!(
        "{}    # {HOSTILE}\n    return None\n",
        ilf_data::prompt::paper_prompt(task)
    );
    let server = start(&[(11, program.clone())], AppConfig::default()).await;
    let (client, csrf) = login(&server, "<b>eve</b>", Role::Reviewer).await;
    let program_id = server.store.programs(11, 10).unwrap()[0].id;

    let get = |path: String| {
        let client = client.clone();
        let url = server.url(&path);
        async move {
            let response = client.get(url).send().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
            response.text().await.unwrap()
        }
    };
    let annotate = get(format!("/annotate/{program_id}")).await;
    assert_inert(&annotate, "annotate page");
    assert!(
        annotate.contains("&lt;/textarea&gt;&lt;script&gt;alert(1)&lt;/script&gt;"),
        "escaped text is shown"
    );
    assert!(
        annotate.contains("&lt;b&gt;eve&lt;/b&gt;"),
        "the annotator's name is escaped"
    );
    assert_inert(&get("/task/11".into()).await, "task page");

    // Hostile feedback, and a refinement that keeps the hostile comment.
    let refinement = format!("{}    # {HOSTILE}\n", gold(task));
    let feedback = format!("It returns None. {HOSTILE}");
    let idem = input_value(&annotate, "idem");
    let (status, location) = submit(
        &client,
        &server,
        program_id,
        &csrf,
        &idem,
        &feedback,
        &refinement,
    )
    .await;
    assert_eq!(status, 303, "submission refused");
    let feedback_id: i64 = location
        .unwrap()
        .rsplit('=')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    for path in [
        "/".to_string(),
        "/review".into(),
        format!("/review/{feedback_id}"),
    ] {
        assert_inert(&get(path.clone()).await, &path);
    }
    let export = get("/export.jsonl".into()).await;
    let record: serde_json::Value = serde_json::from_str(export.lines().next().unwrap()).unwrap();
    assert_eq!(
        record["Feedback"], feedback,
        "the export keeps the text exactly"
    );
    assert_eq!(record["original_model_completion"], program);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_need_the_session_csrf_token_and_a_session() {
    let mbpp = common::mbpp();
    let task = mbpp.get(11).unwrap();
    let server = start(&[(11, failing_program(task))], AppConfig::default()).await;
    let program_id = server.store.programs(11, 10).unwrap()[0].id;
    let (client, csrf) = login(&server, "ada", Role::Annotator).await;
    let (other, other_csrf) = login(&server, "bob", Role::Annotator).await;
    assert_ne!(csrf, other_csrf);

    for token in ["", "0000", other_csrf.as_str()] {
        let (status, _) = submit(
            &client,
            &server,
            program_id,
            token,
            "k1",
            "Fix it.",
            &gold(task),
        )
        .await;
        assert_eq!(status, 403, "csrf {token:?} must be refused");
    }
    let skip = client
        .post(server.url("/task/11/skip"))
        .form(&[("csrf", "wrong"), ("idem", "s"), ("reason", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(skip.status(), 403);
    let run = client
        .post(server.url("/api/run"))
        .json(&serde_json::json!({"program_id": program_id, "code": "x = 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), 403, "run without the X-CSRF-Token header");
    assert_eq!(server.store.counts().unwrap().feedback, 0);

    // Without a session: pages redirect to the login, the API answers 401.
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let home = anonymous.get(server.url("/")).send().await.unwrap();
    assert_eq!(
        (
            home.status().as_u16(),
            home.headers()["location"].to_str().unwrap()
        ),
        (303, "/login")
    );
    let api = anonymous
        .post(server.url("/api/run"))
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({"program_id": program_id, "code": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);
    // A login POST without the login page's cookie is refused (login CSRF).
    let forged = anonymous
        .post(server.url("/login"))
        .form(&[("token", "t"), ("csrf", "c")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    // Annotators may not review or export.
    assert_eq!(
        client
            .get(server.url("/export.jsonl"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        client
            .get(server.url("/review"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let _ = other;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_and_runs_are_rate_limited() {
    let mbpp = common::mbpp();
    let task = mbpp.get(11).unwrap();
    let config = AppConfig {
        body_limit: 64 * 1024,
        // Two runs, then one per hour: the third run in this test is always refused.
        run_limit: RateLimit {
            burst: 2,
            refill: Duration::from_secs(3600),
        },
        ..AppConfig::default()
    };
    let server = start(&[(11, failing_program(task))], config).await;
    let program_id = server.store.programs(11, 10).unwrap()[0].id;
    let (client, csrf) = login(&server, "ada", Role::Annotator).await;

    let huge = "#".repeat(100 * 1024);
    let (status, _) = submit(
        &client, &server, program_id, &csrf, "big", "Too big.", &huge,
    )
    .await;
    assert_eq!(status, 413);

    let run = |code: String| {
        let client = client.clone();
        let url = server.url("/api/run");
        let csrf = csrf.clone();
        async move {
            let response = client
                .post(url)
                .header("x-csrf-token", csrf)
                .json(&serde_json::json!({"program_id": program_id, "code": code}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, failing) = run(failing_program(task)).await;
    assert_eq!(status, 200);
    assert_eq!(failing["passed"], false);
    assert!(
        failing["summary"]
            .as_str()
            .unwrap()
            .contains("failed: expected"),
        "{failing}"
    );
    let (status, passing) = run(gold(task)).await;
    assert_eq!(status, 200);
    assert_eq!(passing["passed"], true, "{passing}");
    assert!(passing["diff"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["tag"] == "insert"));
    // The same code again is answered from the server's run cache, without a token.
    assert_eq!(run(gold(task)).await.0, 200);
    let (status, limited) = run(format!("{}\n", gold(task))).await;
    assert_eq!(status, 429, "{limited}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_refinement_cannot_be_submitted() {
    let mbpp = common::mbpp();
    let task = mbpp.get(11).unwrap();
    let server = start(&[(11, failing_program(task))], AppConfig::default()).await;
    let program_id = server.store.programs(11, 10).unwrap()[0].id;
    let (client, csrf) = login(&server, "ada", Role::Annotator).await;
    let (status, _) = submit(
        &client,
        &server,
        program_id,
        &csrf,
        "k",
        "It returns None; build the string instead.",
        &failing_program(task),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(server.store.counts().unwrap().feedback, 0);
    server.stop().await;
}
