//! Shared by the integration tests: the real data files, a store in a temporary directory.
#![allow(dead_code)]

use ilf_data::mbpp::Mbpp;
use std::path::{Path, PathBuf};

fn shared_data(name: &str, env: &str) -> PathBuf {
    std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data")
            .join(name)
    })
}

/// `$ILF_SURGE_ANNOTATIONS`, else `<root>/shared/data/surge_annotations.jsonl`.
pub fn surge_path() -> PathBuf {
    shared_data("surge_annotations.jsonl", "ILF_SURGE_ANNOTATIONS")
}

/// `$ILF_MBPP`, else `<root>/shared/data/mbpp.jsonl`.
pub fn mbpp() -> Mbpp {
    let path = shared_data("mbpp.jsonl", "ILF_MBPP");
    Mbpp::load(&path).unwrap_or_else(|e| panic!("{e} (set ILF_MBPP to the original mbpp.jsonl)"))
}

use ilf_feedback::app::{serve, AppConfig, AppState};
use ilf_feedback::failures::task_info;
use ilf_feedback::store::{NewProgram, Role, Store};
use std::net::SocketAddr;
use std::sync::Arc;

/// A real server on 127.0.0.1 with a real sandbox pool and a store in a temporary directory.
pub struct Server {
    pub addr: SocketAddr,
    pub store: Arc<Store>,
    pub dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// The failing program used for a task: the prompt with a body that returns None.
pub fn failing_program(task: &ilf_data::mbpp::Task) -> String {
    format!("{}    return None\n", ilf_data::prompt::paper_prompt(task))
}

/// The refinement used for a task: its gold program.
pub fn gold(task: &ilf_data::mbpp::Task) -> String {
    task.code.replace("\r\n", "\n")
}

/// Starts a server whose store holds `programs` (task id, program text) for MBPP tasks.
pub async fn start(programs: &[(u32, String)], config: AppConfig) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("ilf.db")).unwrap());
    let mbpp = mbpp();
    let pool = ilf_sandbox::Pool::start(ilf_sandbox::PoolConfig::default())
        .expect("start the sandbox pool");
    let mut tasks = Vec::new();
    let mut new = Vec::new();
    for (task_id, program) in programs {
        let task = mbpp.get(*task_id).unwrap();
        tasks.push(task_info(task));
        // The verdict `ilf eval` would have recorded.
        let verdict = pool.run(&ilf_sandbox::Job {
            program: program.clone(),
            setup: task.test_setup_code.clone(),
            tests: task.test_list.clone(),
            timeout: None,
        });
        new.push(NewProgram {
            task_id: *task_id,
            program: program.clone(),
            prompt: ilf_data::prompt::paper_prompt(task),
            test: ilf_feedback::annotations::paper_test_source(
                &task.test_list,
                &task.entry_point(),
            ),
            verdict: Some(verdict),
            sample: Some(0),
            origin: "test fixture".into(),
        });
    }
    store.import_programs(&tasks, &new).unwrap();
    let state = AppState::new(Arc::clone(&store), Arc::new(pool), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, state, async move {
        let _ = rx.await;
    }));
    Server {
        addr,
        store,
        dir,
        shutdown: Some(tx),
        task: Some(task),
    }
}

/// The value of the first `<input ... name="NAME" value="...">` in a page.
pub fn input_value(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no input {name} in page:\n{html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_string()
}

/// A logged-in HTTP client (cookies kept, redirects not followed) and its CSRF token.
pub async fn login(server: &Server, name: &str, role: Role) -> (reqwest::Client, String) {
    let token = server.store.add_annotator(name, role).unwrap();
    login_with(server, &token).await
}

pub async fn login_with(server: &Server, token: &str) -> (reqwest::Client, String) {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client.get(server.url("/login")).send().await.unwrap();
    let page = response.text().await.unwrap();
    let login_csrf = input_value(&page, "csrf");
    let response = client
        .post(server.url("/login"))
        .form(&[("token", token), ("csrf", login_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "login failed");
    let home = client
        .get(server.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = input_value(&home, "csrf");
    (client, csrf)
}

/// Submits an annotation form; returns the status and the `Location` header.
pub async fn submit(
    client: &reqwest::Client,
    server: &Server,
    program_id: i64,
    csrf: &str,
    idem: &str,
    feedback: &str,
    code: &str,
) -> (u16, Option<String>) {
    let response = client
        .post(server.url(&format!("/annotate/{program_id}")))
        .form(&[
            ("csrf", csrf),
            ("idem", idem),
            ("feedback", feedback),
            ("code", code),
            ("time_spent_s", "30"),
            ("confirm", "1"),
        ])
        .send()
        .await
        .unwrap();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string());
    (response.status().as_u16(), location)
}
