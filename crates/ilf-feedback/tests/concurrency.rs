//! 20 annotators submit 50 annotations each at the same time over real HTTP, every fifth one
//! sent twice (a retried request): nothing is lost and nothing is duplicated.

mod common;

use common::{failing_program, gold, login, start, submit};
use ilf_feedback::app::{AppConfig, RateLimit};
use ilf_feedback::store::Role;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const ANNOTATORS: usize = 20;
const TASKS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_annotators_times_fifty_submissions_lose_and_duplicate_nothing() {
    let mbpp = common::mbpp();
    // MBPP_Test tasks whose gold program passes its own tests (the refinement each annotator
    // submits), checked with the sandbox itself.
    let checker = ilf_sandbox::Pool::start(ilf_sandbox::PoolConfig::default()).unwrap();
    let mut tasks = Vec::new();
    for task in mbpp.tasks().iter().filter(|t| t.task_id >= 11) {
        let job = ilf_sandbox::Job {
            program: gold(task),
            setup: task.test_setup_code.clone(),
            tests: task.test_list.clone(),
            timeout: None,
        };
        if checker.run(&job).passed() {
            tasks.push(task.clone());
        }
        if tasks.len() == TASKS {
            break;
        }
    }
    drop(checker);
    let programs: Vec<(u32, String)> = tasks
        .iter()
        .map(|t| (t.task_id, failing_program(t)))
        .collect();
    let config = AppConfig {
        run_limit: RateLimit {
            burst: 10_000,
            refill: Duration::from_millis(1),
        },
        ..AppConfig::default()
    };
    let server = start(&programs, config).await;
    let program_ids: Vec<(i64, String)> = tasks
        .iter()
        .map(|t| (server.store.programs(t.task_id, 1).unwrap()[0].id, gold(t)))
        .collect();

    let started = Instant::now();
    let mut clients = Vec::new();
    for a in 0..ANNOTATORS {
        let (client, csrf) = login(&server, &format!("annotator-{a:02}"), Role::Annotator).await;
        let program_ids = program_ids.clone();
        let server = &server;
        clients.push(async move {
            let mut acknowledged = Vec::new();
            for (i, (program_id, code)) in program_ids.iter().enumerate() {
                let idem = format!("a{a}-p{program_id}");
                let feedback = format!(
                    "Annotator {a} on program {program_id}: it returns None; compute the answer."
                );
                let tries = if i % 5 == 0 { 2 } else { 1 };
                let mut ids = HashSet::new();
                for _ in 0..tries {
                    let (status, location) =
                        submit(&client, server, *program_id, &csrf, &idem, &feedback, code).await;
                    assert_eq!(status, 303, "annotator {a}, program {program_id}");
                    ids.insert(location.unwrap());
                }
                assert_eq!(
                    ids.len(),
                    1,
                    "a retried submission must return the first one's id"
                );
                acknowledged.push(ids.into_iter().next().unwrap());
            }
            acknowledged
        });
    }
    let results = futures_join_all(clients).await;
    let elapsed = started.elapsed();

    let acknowledged: HashSet<String> = results.into_iter().flatten().collect();
    assert_eq!(
        acknowledged.len(),
        ANNOTATORS * TASKS,
        "every submission got its own id"
    );
    let counts = server.store.counts().unwrap();
    assert_eq!(counts.feedback, ANNOTATORS * TASKS);
    assert_eq!(counts.refinements, ANNOTATORS * TASKS);
    let exported = server.store.export().unwrap();
    assert_eq!(exported.len(), ANNOTATORS * TASKS);
    let distinct: HashSet<(u32, String)> = exported
        .iter()
        .map(|r| (r.task_id, r.feedback.clone()))
        .collect();
    assert_eq!(distinct.len(), ANNOTATORS * TASKS, "no annotation twice");
    assert!(exported.iter().all(|r| r.passed == Some(true)));
    server.store.check_integrity().unwrap();
    eprintln!(
        "{} submissions (+{} retries) from {ANNOTATORS} concurrent annotators in {:.1} s ({:.0} requests/s)",
        ANNOTATORS * TASKS,
        ANNOTATORS * TASKS / 5,
        elapsed.as_secs_f64(),
        (ANNOTATORS * TASKS * 6 / 5) as f64 / elapsed.as_secs_f64()
    );
    server.stop().await;
}

/// Polls every future to completion concurrently (tokio's `JoinSet` needs 'static futures).
async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.unwrap()).collect()
}
