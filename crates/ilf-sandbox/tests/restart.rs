//! The pool replaces a worker whose zygote died outside any job (its own binary: it kills
//! processes of this test process).

use std::time::Duration;

use ilf_sandbox::{Job, Pool, PoolConfig, Status};

/// Both tests count this process's sandbox processes, so they take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Zygotes are this process's children running Python with `-S -s -B -c`.
fn zygotes() -> Vec<i32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().nth(1))
                .unwrap_or("");
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            ppid == me && cmdline.windows(6).any(|w| w == b"-S\0-s\0")
        })
        .collect()
}

#[test]
fn a_dead_zygote_is_replaced() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let pool = Pool::start(PoolConfig {
        workers: 1,
        ..PoolConfig::default()
    })
    .unwrap();
    let job = Job {
        program: "def f():\n    return 1\n".into(),
        setup: String::new(),
        tests: vec!["assert f() == 1".into()],
        timeout: None,
    };
    assert_eq!(pool.run(&job).status, Status::Passed);
    let before = zygotes();
    assert_eq!(before.len(), 1, "{before:?}");
    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(before[0], libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(100));
    // The worker's namespace init dies with the zygote; the next job finds the worker gone and
    // runs on a fresh one (or, if the death is noticed mid-request, that one job is an error).
    let first = pool.run(&job);
    assert!(
        matches!(first.status, Status::Passed | Status::Error),
        "{first:#?}"
    );
    let o = pool.run(&job);
    assert_eq!(o.status, Status::Passed, "{o:#?}");
    let after = zygotes();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, before);
}

#[test]
fn every_process_of_a_job_is_inside_the_worker_cgroups() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let pool = Pool::start(PoolConfig {
        workers: 1,
        ..PoolConfig::default()
    })
    .unwrap();
    if pool
        .isolation()
        .missing()
        .any(|m| m.name.starts_with("cgroup"))
    {
        return;
    }
    let job = Job {
        program: "import os, time\nif os.fork() == 0:\n    time.sleep(30)\ntime.sleep(30)\n".into(),
        setup: String::new(),
        tests: vec!["assert True".into()],
        timeout: Some(Duration::from_secs(1)),
    };
    std::thread::scope(|s| {
        let running = s.spawn(|| pool.run(&job));
        std::thread::sleep(Duration::from_millis(700));
        let prefix = format!("{}-", std::process::id());
        for controller in ["memory", "pids", "cpu"] {
            let base = std::path::Path::new("/sys/fs/cgroup")
                .join(controller)
                .join("ilf-sandbox");
            let procs: usize = std::fs::read_dir(&base)
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| {
                    std::fs::read_to_string(e.path().join("cgroup.procs"))
                        .unwrap()
                        .lines()
                        .count()
                })
                .sum();
            // The zygote, its namespace init, the job and the job's child.
            assert_eq!(procs, 4, "{controller}");
        }
        assert_eq!(running.join().unwrap().status, Status::Timeout);
    });
}
