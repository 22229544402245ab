//! Ordinary programs: the detail each verdict carries, and the assert forms beyond `CALL == LITERAL`.

use std::sync::OnceLock;
use std::time::Duration;

use ilf_sandbox::{Job, Pool, PoolConfig, ProgramOutcome, Status};

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        Pool::start(PoolConfig {
            workers: 2,
            timeout: Duration::from_secs(2),
            ..PoolConfig::default()
        })
        .expect("the sandbox pool starts")
    })
}

fn run(program: &str, setup: &str, tests: &[&str]) -> ProgramOutcome {
    pool().run(&Job {
        program: program.into(),
        setup: setup.into(),
        tests: tests.iter().map(|t| t.to_string()).collect(),
        timeout: None,
    })
}

#[test]
fn passing_program() {
    let o = run(
        "import re\ndef remove_Occ(s, ch):\n    return s.replace(ch, '')\n",
        "",
        &[
            r#"assert remove_Occ("hello","l") == "heo""#,
            r#"assert remove_Occ("abcda","a") == "bcd""#,
        ],
    );
    assert_eq!(o.status, Status::Passed, "{o:#?}");
    assert!(o
        .tests
        .iter()
        .all(|t| t.status == Status::Passed && t.got.is_none()));
    assert!(o.duration_s > 0.0);
}

#[test]
fn failed_test_shows_expected_and_got() {
    let o = run(
        "def f(x):\n    return [x, (x, 'a')]\n",
        "",
        &[
            "assert f(1) == [1, (1, 'a')]",
            "assert f(2) == [2, (3, 'a')]",
        ],
    );
    assert_eq!(o.status, Status::Failed);
    assert_eq!(o.tests[0].status, Status::Passed);
    let t = &o.tests[1];
    assert_eq!(t.status, Status::Failed);
    assert_eq!(t.expected.as_deref(), Some("[2, (3, 'a')]"));
    assert_eq!(t.got.as_deref(), Some("[2, (2, 'a')]"));
}

#[test]
fn exception_carries_type_message_and_program_traceback() {
    let o = run(
        "def g(x):\n    return 1 / x\n\ndef f(x):\n    return g(x) + 1\n",
        "",
        &["assert f(1) == 2.0", "assert f(0) == 1"],
    );
    assert_eq!(o.status, Status::Error);
    assert_eq!(o.tests[0].status, Status::Passed);
    let e = o.tests[1].error.as_ref().expect("an error");
    assert_eq!(e.kind, "ZeroDivisionError");
    assert_eq!(e.message, "division by zero");
    assert_eq!(
        e.traceback,
        vec![
            "line 5, in f: return g(x) + 1".to_string(),
            "line 2, in g: return 1 / x".to_string()
        ]
    );
}

#[test]
fn numbers_compare_like_python() {
    let o = run(
        "def f():\n    return 2\ndef h():\n    return {1: [1.0, True]}\ndef s():\n    return {3, 1, 2}\n",
        "",
        &["assert f() == 2.0", "assert h() == {1.0: [1, 1]}", "assert s() == {1, 2, 3}"],
    );
    assert_eq!(o.status, Status::Passed, "{o:#?}");
}

#[test]
fn entry_point_named_check_is_fine() {
    // MBPP task 56's function is called `check`, which broke the paper's harness.
    let o = run(
        "def check(n):\n    return n > 1\n",
        "",
        &["assert check(70) == True", "assert check(1) == False"],
    );
    assert_eq!(o.status, Status::Passed, "{o:#?}");
}

#[test]
fn setup_code_runs_after_the_program() {
    let program = "class Node:\n    def __init__(self, v):\n        self.v = v\n        self.left = None\n\ndef depth(n):\n    return 0 if n is None else 1 + depth(n.left)\n";
    let o = run(
        program,
        "root = Node(1)\nroot.left = Node(2)\n",
        &["assert depth(root) == 2"],
    );
    assert_eq!(o.status, Status::Passed, "{o:#?}");
    let o = run(program, "root = Nod(1)\n", &["assert depth(root) == 2"]);
    assert_eq!(o.status, Status::Error);
    assert_eq!(o.error.unwrap().kind, "NameError");
}

#[test]
fn non_literal_expected_is_computed_without_the_program() {
    let tests = ["assert tuple_size((1, 'a')) == sys.getsizeof((1, 'a'))"];
    let honest = "import sys\ndef tuple_size(t):\n    return sys.getsizeof(t)\n";
    assert_eq!(run(honest, "", &tests).status, Status::Passed);
    // Patching what the expected side calls does not help: the trusted side computed it.
    let cheat = "import sys\nsys.getsizeof = lambda t: 7\ndef tuple_size(t):\n    return 7\n";
    let o = run(cheat, "", &tests);
    assert_eq!(o.status, Status::Failed, "{o:#?}");
    assert_ne!(o.tests[0].expected.as_deref(), Some("7"));
}

#[test]
fn truth_asserts() {
    let program = "def even(n):\n    return n % 2 == 0\n";
    assert_eq!(
        run(program, "", &["assert even(4)", "assert not even(3)"]).status,
        Status::Passed
    );
    let o = run(program, "", &["assert even(3)"]);
    assert_eq!(o.status, Status::Failed);
    assert_eq!(o.tests[0].expected.as_deref(), Some("a truthy value"));
    assert_eq!(o.tests[0].got.as_deref(), Some("False"));
}

#[test]
fn not_an_assert_is_an_error_for_that_test_only() {
    let o = run(
        "def f():\n    return 1\n",
        "",
        &["print(f())", "assert f() == 1"],
    );
    assert_eq!(o.tests[0].status, Status::Error);
    assert_eq!(o.tests[0].error.as_ref().unwrap().kind, "InvalidTest");
    assert_eq!(o.tests[1].status, Status::Passed);
    assert_eq!(o.status, Status::Error);
}

#[test]
fn job_timeout_overrides_the_pool() {
    // About 0.3-1 s of CPU: a 1 s limit may or may not hold it, a 5 s limit does.
    let program = "def work():\n    return sum(i * i for i in range(3 * 10**6)) > 0\n";
    let job = |secs| Job {
        program: program.into(),
        setup: String::new(),
        tests: vec!["assert work() == True".into()],
        timeout: Some(Duration::from_secs(secs)),
    };
    assert_eq!(pool().run(&job(5)).status, Status::Passed);
    let spin = Job {
        program: "def work():\n    while True:\n        pass\n".into(),
        setup: String::new(),
        tests: vec!["assert work() == True".into()],
        timeout: Some(Duration::from_secs(1)),
    };
    let o = pool().run(&spin);
    assert_eq!(o.status, Status::Timeout);
    assert!(o.detail.unwrap().contains("1 s"));
}

#[test]
fn syntax_error_in_setup() {
    let o = run("def f():\n    return 1\n", "x = (", &["assert f() == 1"]);
    assert_eq!(o.status, Status::SyntaxError);
}

#[test]
fn isolation_report_is_complete_as_root() {
    let report = pool().isolation();
    let text = report.to_string();
    assert!(text.contains("landlock"), "{text}");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert!(report.complete(), "{text}");
    }
}

#[test]
fn oversized_job_is_refused_with_a_reason() {
    let program = format!("x = '{}'\n", "a".repeat(5 << 20));
    let o = run(&program, "", &["assert x == 'a'"]);
    assert_eq!(o.status, Status::Error);
    assert!(o.detail.unwrap().contains("at most"));
    assert_eq!(o.tests[0].status, Status::NotRun);
}

#[test]
fn pool_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Pool>();
    let outcomes: Vec<Status> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                s.spawn(move || {
                    run(
                        "def f(x):\n    return x * 2\n",
                        "",
                        &[&format!("assert f({i}) == {}", i * 2)],
                    )
                    .status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        outcomes.iter().all(|s| *s == Status::Passed),
        "{outcomes:?}"
    );
}
