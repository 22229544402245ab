//! `ilf annotate` as a process: a server killed with SIGKILL in the middle of a submission storm
//! loses at most the requests in flight. Every acknowledged submission is there after a restart,
//! the database passes its integrity checks, and retried submissions are not duplicated.

use ilf_feedback::store::{Role, Store};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const ANNOTATORS: usize = 8;
const TASKS: u32 = 40;
/// Acknowledged submissions after which the server is killed.
const KILL_AFTER: usize = 120;

fn mbpp_path() -> PathBuf {
    std::env::var_os("ILF_MBPP")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mbpp.jsonl")
        })
}

/// A results file with one failing program per task: the prompt and a body that returns None.
fn write_results(path: &Path) -> Vec<ilf_data::mbpp::Task> {
    let mbpp = ilf_data::mbpp::Mbpp::load(&mbpp_path()).expect("load MBPP (set ILF_MBPP)");
    let tasks: Vec<_> = (11..11 + TASKS)
        .map(|id| mbpp.get(id).unwrap().clone())
        .collect();
    let mut text = String::new();
    for task in &tasks {
        let row = serde_json::json!({
            "task_id": task.task_id,
            "program": format!("{}    return None\n", ilf_data::prompt::paper_prompt(task)),
            "passed": false,
            "status": "failed",
            "tests": [],
            "duration_s": 0.01,
        });
        text.push_str(&row.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
    tasks
}

struct ServerProcess {
    child: Child,
    url: String,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(db: &Path, results: &Path) -> ServerProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ilf"))
        .args(["annotate", "--db"])
        .arg(db)
        .arg("--results")
        .arg(results)
        .arg("--mbpp")
        .arg(mbpp_path())
        .args([
            "--bind",
            "127.0.0.1:0",
            "--run-burst",
            "100000",
            "--run-refill",
            "0.001",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start `ilf annotate`");
    let stderr = child.stderr.take().unwrap();
    let mut server = ServerProcess {
        child,
        url: String::new(),
    };
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(url) = line.strip_prefix("listening on ") {
            server.url = url.trim_end_matches('/').to_string();
            // Keep draining stderr so the server never blocks or fails writing to it.
            std::thread::spawn(move || lines.for_each(drop));
            return server;
        }
        seen.push(line);
    }
    panic!(
        "`ilf annotate` exited without listening:\n{}",
        seen.join("\n")
    );
}

fn input_value(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no input {name} in:\n{html}"))
        + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_string()
}

async fn login(url: &str, token: &str) -> (reqwest::Client, String) {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = client
        .get(format!("{url}/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let login_csrf = input_value(&page, "csrf");
    let response = client
        .post(format!("{url}/login"))
        .form(&[("token", token), ("csrf", login_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let home = client
        .get(format!("{url}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = input_value(&home, "csrf");
    (client, csrf)
}

/// Posts one annotation; `Some(feedback id)` when the server acknowledged it.
async fn submit(
    client: &reqwest::Client,
    url: &str,
    csrf: &str,
    program_id: i64,
    idem: &str,
    code: &str,
) -> Option<i64> {
    let response = client
        .post(format!("{url}/annotate/{program_id}"))
        .form(&[
            ("csrf", csrf),
            ("idem", idem),
            (
                "feedback",
                &format!("It returns None ({idem}); compute the value the task asks for."),
            ),
            ("code", code),
            ("time_spent_s", "12"),
            ("confirm", "1"),
        ])
        .send()
        .await
        .ok()?;
    if response.status() != 303 {
        return None;
    }
    let location = response
        .headers()
        .get("location")?
        .to_str()
        .ok()?
        .to_string();
    location.rsplit('=').next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_killed_mid_storm_keeps_every_acknowledged_submission() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ilf.db");
    let results = dir.path().join("results.jsonl");
    let tasks = write_results(&results);
    let tokens: Vec<String> = {
        let store = Store::open(&db).unwrap();
        (0..ANNOTATORS)
            .map(|a| {
                store
                    .add_annotator(&format!("annotator-{a}"), Role::Annotator)
                    .unwrap()
            })
            .collect()
    };

    let server = start_server(&db, &results);
    let programs: Vec<(i64, String)> = {
        let store = Store::open(&db).unwrap();
        tasks
            .iter()
            .map(|t| {
                (
                    store.programs(t.task_id, 1).unwrap()[0].id,
                    t.code.replace("\r\n", "\n"),
                )
            })
            .collect()
    };
    assert_eq!(programs.len(), TASKS as usize);

    let acknowledged = Arc::new(Mutex::new(Vec::<(String, i64)>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let mut storm = Vec::new();
    for (a, token) in tokens.iter().enumerate() {
        let (client, csrf) = login(&server.url, token).await;
        let (url, programs) = (server.url.clone(), programs.clone());
        let (acknowledged, count) = (Arc::clone(&acknowledged), Arc::clone(&count));
        storm.push(tokio::spawn(async move {
            for (program_id, code) in &programs {
                let idem = format!("a{a}-p{program_id}");
                match submit(&client, &url, &csrf, *program_id, &idem, code).await {
                    Some(id) => {
                        acknowledged.lock().unwrap().push((idem, id));
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    // The server is gone: this request was in flight, or came after the kill.
                    None => return,
                }
            }
        }));
    }
    while count.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(
            !storm.iter().all(|client| client.is_finished()),
            "the storm stopped after {} acknowledged submissions, before the kill: a submission was refused",
            count.load(Ordering::SeqCst)
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    // SIGKILL: no shutdown handler runs.
    let mut server = server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    for client in storm {
        client.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= KILL_AFTER);
    assert!(
        acknowledged.len() < ANNOTATORS * TASKS as usize,
        "the kill came before the storm ended"
    );

    // Restart on the same database (importing the same results again adds nothing).
    let server = start_server(&db, &results);
    let store = Store::open(&db).unwrap();
    store.check_integrity().unwrap();
    let counts = store.counts().unwrap();
    assert_eq!(counts.programs, TASKS as usize);
    assert_eq!(
        counts.feedback, counts.refinements,
        "no feedback without its refinement"
    );
    // At most one request per annotator was in flight at the kill.
    assert!(
        counts.feedback >= acknowledged.len() && counts.feedback <= acknowledged.len() + ANNOTATORS
    );
    for (idem, id) in &acknowledged {
        let view = store
            .feedback(*id)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged submission {idem} (id {id}) is lost"));
        assert!(
            view.text.contains(&format!("({idem})")),
            "id {id} holds another submission"
        );
        assert_eq!(view.refinement.as_ref().unwrap().passed, Some(true));
    }

    // Retrying every acknowledged submission after the restart returns the same ids.
    let (client, csrf) = login(&server.url, &tokens[0]).await;
    for (idem, id) in acknowledged
        .iter()
        .filter(|(idem, _)| idem.starts_with("a0-"))
    {
        let program_id: i64 = idem.rsplit("-p").next().unwrap().parse().unwrap();
        let code = &programs.iter().find(|(p, _)| *p == program_id).unwrap().1;
        assert_eq!(
            submit(&client, &server.url, &csrf, program_id, idem, code).await,
            Some(*id)
        );
    }
    assert_eq!(
        store.counts().unwrap().feedback,
        counts.feedback,
        "retries added nothing"
    );
    eprintln!(
        "killed after {} acknowledged submissions; {} rows after restart, all acknowledged ones present",
        acknowledged.len(),
        counts.feedback
    );
}

fn ilf(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let output = Command::new(env!("CARGO_BIN_EXE_ilf"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ilf {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn import_and_export_round_trip_the_paper_file_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ilf.db");
    let out = dir.path().join("export.jsonl");
    let surge = std::env::var_os("ILF_SURGE_ANNOTATIONS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/data/surge_annotations.jsonl")
        });
    let os = |s: &str| std::ffi::OsString::from(s);
    ilf(&[
        &os("annotate"),
        &os("--db"),
        db.as_os_str(),
        &os("import"),
        surge.as_os_str(),
    ]);
    // Importing twice adds nothing.
    ilf(&[
        &os("annotate"),
        &os("--db"),
        db.as_os_str(),
        &os("import"),
        surge.as_os_str(),
    ]);
    ilf(&[
        &os("annotate"),
        &os("--db"),
        db.as_os_str(),
        &os("export"),
        &os("--out"),
        out.as_os_str(),
    ]);
    let parse = |path: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (original, exported) = (parse(&surge), parse(&out));
    assert_eq!(original.len(), 195);
    assert_eq!(original, exported);

    let added = ilf(&[
        &os("--json"),
        &os("annotate"),
        &os("--db"),
        db.as_os_str(),
        &os("add-annotator"),
        &os("ada"),
    ]);
    let printed: serde_json::Value = serde_json::from_slice(&added.stdout).unwrap();
    let token = printed["token"].as_str().unwrap();
    assert_eq!(token.len(), 64);
    let store = Store::open(&db).unwrap();
    assert_eq!(store.login(token).unwrap().unwrap().1.annotator.name, "ada");
}
