//! Programs that try to escape, hang, crash or fool the sandbox.
//!
//! Every case checks: the verdict (never a false pass), a canary directory still intact, nothing
//! received by a loopback listener, no process left running (each program names its process with
//! a per-case marker through `prctl(PR_SET_NAME)`, which forks inherit; `/proc/*/comm` must not
//! show it afterwards), and that the pool still passes a correct job afterwards.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use ilf_sandbox::{Job, Pool, PoolConfig, ProgramOutcome, Status};

const SECRET_VAR: &str = "ILF_ADVERSARIAL_SECRET";
const SECRET: &str = "hunter2-do-not-leak";

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        // A secret in our own environment: no job may see it.
        std::env::set_var(SECRET_VAR, SECRET);
        Pool::start(PoolConfig {
            workers: 2,
            timeout: Duration::from_secs(1),
            // Generous, so that CPU-bound cases meet their CPU limit even on a loaded machine.
            wall_factor: 4.0,
            memory_bytes: 512 << 20,
            ..PoolConfig::default()
        })
        .expect("the sandbox pool starts")
    })
}

struct Case {
    name: &'static str,
    marker: String,
    canary: PathBuf,
    listener: TcpListener,
}

impl Case {
    fn new(name: &'static str) -> Case {
        let mut h = DefaultHasher::new();
        name.hash(&mut h);
        let marker = format!("ilfadv{:08x}", h.finish() as u32);
        let canary = std::env::temp_dir().join(format!("ilf-adv-{}-{name}", std::process::id()));
        std::fs::create_dir_all(canary.join("inner")).unwrap();
        std::fs::write(canary.join("inner").join("keep.txt"), "canary").unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Case {
            name,
            marker,
            canary,
            listener,
        }
    }

    /// The program, with `{CANARY}`, `{PORT}` and `{SECRET_VAR}` filled in, after a line that
    /// names the process with the marker.
    fn program(&self, body: &str) -> String {
        let port = self.listener.local_addr().unwrap().port();
        let body = body
            .replace("{CANARY}", &self.canary.display().to_string())
            .replace("{PORT}", &port.to_string())
            .replace("{SECRET_VAR}", SECRET_VAR);
        format!(
            "import ctypes as _ctypes_marker\n_ctypes_marker.CDLL(None).prctl(15, b'{}', 0, 0, 0)\n{body}",
            self.marker
        )
    }

    fn run(&self, body: &str, tests: &[&str]) -> ProgramOutcome {
        let job = Job {
            program: self.program(body),
            setup: String::new(),
            tests: tests.iter().map(|t| t.to_string()).collect(),
            timeout: None,
        };
        let outcome = pool().run(&job);
        self.check_aftermath(&outcome);
        outcome
    }

    fn check_aftermath(&self, outcome: &ProgramOutcome) {
        let name = self.name;
        assert_eq!(
            std::fs::read_to_string(self.canary.join("inner").join("keep.txt"))
                .ok()
                .as_deref(),
            Some("canary"),
            "{name}: the canary was touched; outcome {outcome:?}"
        );
        let mut received = Vec::new();
        match self.listener.accept() {
            Ok((mut stream, _)) => {
                stream
                    .set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let _ = stream.read_to_end(&mut received);
                panic!(
                    "{name}: the listener got a connection ({} bytes)",
                    received.len()
                );
            }
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{name}: {e}"),
        }
        let left: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            })
            .filter(|e| {
                std::fs::read_to_string(e.path().join("comm"))
                    .map(|c| c.trim() == self.marker)
                    .unwrap_or(false)
            })
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(left.is_empty(), "{name}: processes left running: {left:?}");
        let healthy = pool().run(&Job {
            program: "def add(a, b):\n    return a + b\n".into(),
            setup: String::new(),
            tests: vec!["assert add(2, 3) == 5".into()],
            timeout: None,
        });
        assert_eq!(
            healthy.status,
            Status::Passed,
            "{name}: the pool is unwell afterwards: {healthy:?}"
        );
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.canary);
    }
}

/// Runs `body` against `tests` and asserts the program-level status.
fn expect(name: &'static str, body: &str, tests: &[&str], want: &[Status]) -> ProgramOutcome {
    let case = Case::new(name);
    let outcome = case.run(body, tests);
    assert!(
        want.contains(&outcome.status),
        "{name}: expected one of {want:?}, got {outcome:#?}"
    );
    assert_ne!(
        outcome.status,
        Status::Passed,
        "{name}: false pass: {outcome:#?}"
    );
    outcome
}

/// Runs a correct program with a side show and asserts it passes.
fn expect_pass(name: &'static str, body: &str, tests: &[&str]) -> ProgramOutcome {
    let case = Case::new(name);
    let outcome = case.run(body, tests);
    assert_eq!(outcome.status, Status::Passed, "{name}: {outcome:#?}");
    outcome
}

const FACT_TESTS: &[&str] = &[
    "assert fact(5) == 120",
    "assert fact(7) == 5040",
    "assert fact(0) == 1",
];

#[test]
fn infinite_loop_in_python() {
    let o = expect(
        "loop_py",
        "while True:\n    pass\n",
        FACT_TESTS,
        &[Status::Timeout],
    );
    assert!(o.detail.unwrap().contains("CPU time"));
}

#[test]
fn infinite_loop_in_c() {
    let o = expect(
        "loop_c",
        "def fact(n):\n    return sum(range(10**11))\n",
        FACT_TESTS,
        &[Status::Timeout],
    );
    assert_eq!(o.tests[0].status, Status::Timeout);
    assert_eq!(o.tests[1].status, Status::NotRun);
}

#[test]
fn sleep_hits_the_wall_deadline() {
    let o = expect(
        "sleep",
        "import time\ntime.sleep(1000)\n",
        FACT_TESTS,
        &[Status::Timeout],
    );
    assert!(o.detail.unwrap().contains("wall deadline"));
}

#[test]
fn deep_recursion() {
    let body = "import sys\nsys.setrecursionlimit(10**7)\ndef fact(n):\n    return fact(n + 1)\n";
    // Python 3.11 keeps Python frames off the C stack: this runs out of memory, crashes, or
    // spends its CPU time first, depending on the machine; it never passes.
    expect(
        "recursion",
        body,
        FACT_TESTS,
        &[
            Status::Crashed,
            Status::Error,
            Status::OutOfMemory,
            Status::Timeout,
        ],
    );
}

#[test]
fn one_huge_allocation() {
    let o = expect(
        "mem_huge",
        "x = bytearray(10**11)\n",
        FACT_TESTS,
        &[Status::OutOfMemory],
    );
    assert_eq!(o.error.unwrap().kind, "MemoryError");
}

#[test]
fn incremental_allocation() {
    let body =
        "def fact(n):\n    chunks = []\n    while True:\n        chunks.append(' ' * 10**6)\n";
    let o = expect("mem_incr", body, FACT_TESTS, &[Status::OutOfMemory]);
    assert_eq!(o.tests[0].status, Status::OutOfMemory);
}

#[test]
fn fork_bomb_through_os_fork() {
    let body =
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n";
    expect(
        "forkbomb_os",
        body,
        FACT_TESTS,
        &[
            Status::Timeout,
            Status::Crashed,
            Status::OutOfMemory,
            Status::Error,
        ],
    );
}

#[test]
fn fork_bomb_through_posix() {
    let body = "while True:\n    try:\n        __import__('posix').fork()\n    except OSError:\n        pass\n";
    expect(
        "forkbomb_posix",
        body,
        FACT_TESTS,
        &[
            Status::Timeout,
            Status::Crashed,
            Status::OutOfMemory,
            Status::Error,
        ],
    );
}

#[test]
fn setsid_daemon_dies_with_the_job() {
    let body = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        while True:\n            time.sleep(0.01)\n    os._exit(0)\n\
                def fact(n):\n    return 1 if n == 0 else n * fact(n - 1)\n";
    expect_pass("daemon", body, FACT_TESTS);
}

#[test]
fn output_flood_through_print() {
    expect(
        "flood_print",
        "while True:\n    print('x' * 10000)\n",
        FACT_TESTS,
        &[Status::Timeout],
    );
}

#[test]
fn output_flood_through_os_write() {
    let body =
        "import os\nwhile True:\n    os.write(1, b'x' * 65536)\n    os.write(2, b'y' * 65536)\n";
    expect("flood_write", body, FACT_TESTS, &[Status::Timeout]);
}

#[test]
fn rm_rf_through_os_system() {
    let body = "import os\nassert os.system('rm -rf {CANARY}') == 0\ndef fact(n):\n    return 1 if n == 0 else n * fact(n - 1)\n";
    expect("rm_system", body, FACT_TESTS, &[Status::Error]);
}

#[test]
fn rm_rf_through_posix_spawn() {
    let body = "import os\npid = os.posix_spawn('/bin/rm', ['rm', '-rf', '{CANARY}'], {})\nos.waitpid(pid, 0)\n\
                def fact(n):\n    return 1 if n == 0 else n * fact(n - 1)\n";
    let o = expect("rm_spawn", body, FACT_TESTS, &[Status::Error]);
    assert_eq!(o.error.unwrap().kind, "PermissionError");
}

#[test]
fn rmtree_from_python() {
    let body = "import shutil\nshutil.rmtree('{CANARY}')\n";
    expect("rm_python", body, FACT_TESTS, &[Status::Error]);
}

#[test]
fn read_etc_passwd_with_open() {
    let body = "def fact(n):\n    return len(open('/etc/passwd').read())\n";
    let o = expect("passwd_open", body, FACT_TESTS, &[Status::Error]);
    assert_eq!(o.tests[0].error.as_ref().unwrap().kind, "PermissionError");
}

#[test]
fn read_etc_passwd_with_io_open() {
    let body = "import io\ndef fact(n):\n    return len(io.open('/etc/passwd', 'rb').read())\n";
    let o = expect("passwd_io", body, FACT_TESTS, &[Status::Error]);
    assert_eq!(o.tests[0].error.as_ref().unwrap().kind, "PermissionError");
}

#[test]
fn secret_to_loopback_listener() {
    let body = "import os, socket\nsecret = os.environ.get('{SECRET_VAR}', 'no secret')\n\
                s = socket.create_connection(('127.0.0.1', {PORT}), timeout=0.5)\ns.sendall(secret.encode())\n";
    let o = expect("exfiltrate", body, FACT_TESTS, &[Status::Error]);
    assert!(o.error.is_some());
}

#[test]
fn environment_is_cleared() {
    let body = "import os\ndef leak():\n    return os.environ.get('{SECRET_VAR}')\n";
    let tests = [format!("assert leak() == '{SECRET}'")];
    let o = expect("env", body, &[tests[0].as_str()], &[Status::Failed]);
    assert_eq!(o.tests[0].got.as_deref(), Some("None"));
}

#[test]
fn early_exit_sys_exit() {
    let o = expect(
        "exit_sys",
        "import sys\nsys.exit(0)\n",
        FACT_TESTS,
        &[Status::Error],
    );
    assert!(o.detail.unwrap().contains("exit"));
}

#[test]
fn early_exit_raise_system_exit() {
    expect(
        "exit_raise",
        "raise SystemExit\n",
        FACT_TESTS,
        &[Status::Error],
    );
}

#[test]
fn early_exit_builtin_exit() {
    expect(
        "exit_builtin",
        "def fact(n):\n    exit()\n",
        FACT_TESTS,
        &[Status::Error],
    );
}

#[test]
fn early_exit_os_exit() {
    let o = expect(
        "exit_os",
        "import os\nos._exit(0)\n",
        FACT_TESTS,
        &[Status::Error],
    );
    assert!(o.detail.unwrap().contains("before the tests finished"));
}

#[test]
fn early_exit_with_atexit() {
    let body = "import atexit, os, sys\n\
                atexit.register(lambda: [os.write(fd, b'V 0 120\\nV 1 5040\\nV 2 1\\nD\\n') for fd in (1, 3)])\n\
                def fact(n):\n    sys.exit(0)\n";
    expect("exit_atexit", body, FACT_TESTS, &[Status::Error]);
}

#[test]
fn frame_tampering() {
    // Walks every frame above it, overwriting whatever looks like bookkeeping, and reports a lie.
    let body = "import sys\n\
                def fact(n):\n    f = sys._getframe(1)\n    while f is not None:\n        for k in list(f.f_locals):\n            if k not in ('f',):\n                try:\n                    f.f_locals[k] = True\n                except Exception:\n                    pass\n        f = f.f_back\n    return True\n";
    expect("frames", body, FACT_TESTS, &[Status::Failed, Status::Error]);
}

#[test]
fn always_equal_object() {
    let body = "class Eq:\n    def __eq__(self, other):\n        return True\n    def __ne__(self, other):\n        return False\n\
                def fact(n):\n    return Eq()\n";
    let o = expect("alwayseq", body, FACT_TESTS, &[Status::Failed]);
    assert!(o.tests[0].got.as_ref().unwrap().contains("not comparable"));
}

#[test]
fn always_equal_int_subclass() {
    let body = "class Eq(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n\
                def fact(n):\n    return Eq(0)\n";
    let o = expect("alwayseq_int", body, FACT_TESTS, &[Status::Failed]);
    assert_eq!(o.tests[0].got.as_deref(), Some("0"));
}

#[test]
fn kill_the_parent_with_os_kill() {
    let body = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n\
                def fact(n):\n    return 1 if n == 0 else n * fact(n - 1)\n";
    expect_pass("kill_os", body, FACT_TESTS);
}

#[test]
fn kill_the_parent_with_posix_kill() {
    let body = "import posix, os\nposix.kill(os.getppid(), 9)\nposix.kill(1, 9)\n\
                def fact(n):\n    return 1 if n == 0 else n * fact(n - 1)\n";
    expect_pass("kill_posix", body, FACT_TESTS);
}

#[test]
fn kill_everything_it_can_see() {
    // kill(-1) reaches neither the caller nor the namespace's init, and nothing outside.
    let body = "import os\ntry:\n    os.kill(-1, 9)\nexcept OSError:\n    pass\n\
                def fact(n):\n    return 1 if n == 0 else n * fact(n - 1)\n";
    expect_pass("kill_all", body, FACT_TESTS);
}

#[test]
fn ignore_sigterm() {
    let body = "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass\n";
    expect("ignore_term", body, FACT_TESTS, &[Status::Timeout]);
}

#[test]
fn ignore_sigalrm() {
    let body = "import signal, time\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nsignal.alarm(1)\ntime.sleep(1000)\n";
    expect("ignore_alrm", body, FACT_TESTS, &[Status::Timeout]);
}

#[test]
fn correct_program_leaving_a_thread_running() {
    let body =
        "import threading, time\nthreading.Thread(target=lambda: time.sleep(1000)).start()\n\
                def fact(n):\n    return 1 if n == 0 else n * fact(n - 1)\n";
    expect_pass("thread", body, FACT_TESTS);
}

#[test]
fn read_stdin_with_input() {
    let o = expect("stdin_input", "x = input()\n", FACT_TESTS, &[Status::Error]);
    assert_eq!(o.error.unwrap().kind, "EOFError");
}

#[test]
fn read_stdin_with_os_read() {
    let body = "import os\ndef fact(n):\n    return os.read(0, 100)\n";
    let o = expect("stdin_read", body, FACT_TESTS, &[Status::Failed]);
    assert_eq!(o.tests[0].got.as_deref(), Some("b''"));
}

#[test]
fn ctypes_segfault() {
    let o = expect(
        "segfault",
        "import ctypes\nctypes.string_at(0)\n",
        FACT_TESTS,
        &[Status::Crashed],
    );
    assert!(o.detail.unwrap().contains("SIGSEGV"));
}

#[test]
fn patched_builtins() {
    let body = "import builtins, sys\n\
                builtins.repr = lambda x: '120'\nbuiltins.isinstance = lambda *a: True\nbuiltins.type = lambda *a: int\n\
                builtins.str = lambda *a: '120'\nsys.modules['json'] = None\nsys.modules['numbers'] = None\n\
                def fact(n):\n    return 'wrong'\n";
    let o = expect("builtins", body, FACT_TESTS, &[Status::Failed]);
    assert_eq!(o.tests[0].got.as_deref(), Some("'wrong'"));
}

#[test]
fn fake_records_on_every_fd() {
    let body = "import os\n\
                for fd in range(21):\n    try:\n        os.write(fd, b'V 0 True\\nV 1 True\\nV 2 True\\nD\\n')\n    except OSError:\n        pass\n\
                def fact(n):\n    return 0\n";
    expect(
        "fake_records",
        body,
        FACT_TESTS,
        &[Status::Error, Status::Failed],
    );
}

#[test]
fn fake_records_then_vanish() {
    let body = "import os\n\
                for fd in range(21):\n    try:\n        os.write(fd, b'V 0 0\\nV 1 0\\nV 2 0\\nD\\n')\n    except OSError:\n        pass\nos._exit(0)\n";
    expect(
        "fake_exit",
        body,
        FACT_TESTS,
        &[Status::Failed, Status::Error],
    );
}

#[test]
fn hostile_return_values() {
    let body = "import sys\nsys.set_int_max_str_digits(0)\n\
                class Bad:\n    def __repr__(self):\n        raise RuntimeError('no repr')\n\
                def rec():\n    l = []\n    l.append(l)\n    return l\n\
                def deep():\n    l = []\n    for _ in range(100000):\n        l = [l]\n    return l\n\
                def value(k):\n    return [rec, deep, lambda: 10**200000, Bad, lambda: b'x' * 10**8, lambda: {1: Bad()}][k]()\n";
    let tests = [
        "assert value(0) == [[]]",
        "assert value(1) == []",
        "assert value(2) == 1",
        "assert value(3) == 1",
        "assert value(4) == b'x'",
        "assert value(5) == {1: 1}",
    ];
    let o = expect("hostile_values", body, &tests, &[Status::Failed]);
    for t in &o.tests {
        assert_eq!(t.status, Status::Failed, "{t:?}");
    }
}

#[test]
fn syntax_error_is_reported() {
    let o = expect(
        "syntax",
        "def fact(n)\n    return 1\n",
        FACT_TESTS,
        &[Status::SyntaxError],
    );
    assert_eq!(o.error.unwrap().kind, "SyntaxError");
    assert!(o.tests.iter().all(|t| t.status == Status::NotRun));
}

#[test]
fn write_outside_the_private_directory() {
    let body = "def fact(n):\n    open('{CANARY}/inner/keep.txt', 'w').write('gone')\n";
    expect("write_canary", body, FACT_TESTS, &[Status::Error]);
}

#[test]
fn private_directory_is_writable_and_fresh() {
    // A job may use its own temporary directory; the next job does not see what it left.
    let body = "import os, tempfile\n\
                def fact(n):\n    seen = os.listdir('.')\n    with open('left.txt', 'w') as f:\n        f.write('x')\n    tempfile.mkstemp()\n    return len(seen)\n";
    let case = Case::new("tmpdir");
    for _ in 0..3 {
        let o = case.run(body, &["assert fact(1) == 0"]);
        assert_eq!(o.status, Status::Passed, "{o:#?}");
    }
}

#[test]
fn new_namespaces_and_mounts_are_denied() {
    // A user namespace would hand the job fresh capabilities; a mount could hide the canary.
    let body = "import ctypes\nlibc = ctypes.CDLL(None)\n\
                def ns(flag):\n    return libc.unshare(flag)\n\
                def mount():\n    return libc.mount(b'tmpfs', b'{CANARY}', b'tmpfs', 0, None)\n";
    let tests = [
        "assert ns(0x10000000) == 0",
        "assert ns(0x20000000) == 0",
        "assert mount() == 0",
    ];
    let o = expect("namespaces", body, &tests, &[Status::Failed]);
    assert!(
        o.tests
            .iter()
            .all(|t| t.status == Status::Failed && t.got.as_deref() == Some("-1")),
        "{o:#?}"
    );
}
