//! The isolation layers, what this machine allows of them, and the report that says which are
//! in force.
//!
//! Applied once per worker, in the zygote before it execs Python (`pre_exec`):
//! - namespaces: network (no interface but a down loopback: no network at all), mount (a private
//!   tmpfs over the worker's temporary directory, size- and inode-capped), IPC, UTS;
//! - Landlock: reads and execution only beneath the interpreter's prefixes and the system library
//!   directories, read/write only in the private temporary directory and `/dev/null`; no TCP bind or
//!   connect (ABI 4+); no signals or abstract unix sockets outside the sandbox's domain (ABI 6+);
//! - seccomp: a deny list (sockets, ptrace, cross-process memory access, mounts, namespaces other
//!   of any kind, kernel keyrings, modules, bpf, perf, io_uring, handle-based opens,
//!   `pidfd_getfd`, clock setting...) and `clone3` answered with ENOSYS so that clone flags stay
//!   inspectable.
//!
//! Also per worker, a pid namespace whose pid 1 is the zygote's trusted monitor: a job sees
//! nothing outside it to signal, cannot signal its init, and after each job the monitor SIGKILLs
//! every other process in it (`kill(-1)` from init), so nothing a job spawned outlives it.
//!
//! Applied per job, in the forked job process (see `zygote.py`): rlimits (address space, CPU
//! time, file size, open files, no core dumps), all capabilities dropped (so rlimits cannot be
//! raised again), stdin/stdout/stderr on `/dev/null`; the environment is a fixed handful of
//! variables.
//!
//! Per worker, from outside: a cgroup v1 memory cap for the whole job tree, one core at most, and a
//! pids cap (fork
//! bombs; `RLIMIT_NPROC` does not bind root).

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cgroup;
use crate::python::Interpreter;
use crate::PoolConfig;

/// Which isolation is in force, mechanism by mechanism.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IsolationReport {
    pub python: String,
    pub mechanisms: Vec<Mechanism>,
}

/// One isolation mechanism and whether it is in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mechanism {
    pub name: String,
    /// What it protects against.
    pub guards: String,
    pub in_force: bool,
    /// How it is configured, or why it is missing.
    pub detail: String,
}

impl IsolationReport {
    /// True when every mechanism is in force.
    pub fn complete(&self) -> bool {
        self.mechanisms.iter().all(|m| m.in_force)
    }

    pub fn missing(&self) -> impl Iterator<Item = &Mechanism> {
        self.mechanisms.iter().filter(|m| !m.in_force)
    }

    /// One line for summaries: "full isolation (...)" or what is missing.
    pub fn summary(&self) -> String {
        let on: Vec<&str> = self
            .mechanisms
            .iter()
            .filter(|m| m.in_force)
            .map(|m| m.name.as_str())
            .collect();
        let off: Vec<&str> = self.missing().map(|m| m.name.as_str()).collect();
        if off.is_empty() {
            format!("full isolation: {}", on.join(", "))
        } else {
            format!(
                "PARTIAL isolation: missing {}; in force: {}",
                off.join(", "),
                on.join(", ")
            )
        }
    }

    fn push(&mut self, name: &str, guards: &str, in_force: bool, detail: impl Into<String>) {
        self.mechanisms.push(Mechanism {
            name: name.into(),
            guards: guards.into(),
            in_force,
            detail: detail.into(),
        });
    }
}

impl fmt::Display for IsolationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "python: {}", self.python)?;
        let width = self
            .mechanisms
            .iter()
            .map(|m| m.name.len())
            .max()
            .unwrap_or(0);
        let gwidth = self
            .mechanisms
            .iter()
            .map(|m| m.guards.len())
            .max()
            .unwrap_or(0);
        for m in &self.mechanisms {
            let state = if m.in_force { "on " } else { "OFF" };
            writeln!(
                f,
                "  {state}  {:width$}  {:gwidth$}  {}",
                m.name, m.guards, m.detail
            )?;
        }
        write!(f, "{}", self.summary())
    }
}

/// What this machine allows, found by trying each mechanism in a throw-away child process.
#[derive(Debug, Clone)]
pub(crate) struct Capabilities {
    pub netns: bool,
    pub mountns: bool,
    pub ipcns: bool,
    pub utsns: bool,
    pub pidns: bool,
    pub landlock_abi: Option<u32>,
    pub seccomp: bool,
    pub root: bool,
    pub cgroup_memory: Option<PathBuf>,
    pub cgroup_pids: Option<PathBuf>,
    pub cgroup_cpu: Option<PathBuf>,
    pub report: IsolationReport,
}

const TMPFS_OPTIONS: &str = "size=64m,nr_inodes=4096,mode=0700";

/// Tries each mechanism and describes what is in force.
pub(crate) fn probe(cfg: &PoolConfig, python: &Interpreter) -> Capabilities {
    let mut report = IsolationReport {
        python: format!("{} ({})", python.executable.display(), python.version),
        mechanisms: Vec::new(),
    };
    let ns = |flag: libc::c_int| {
        try_in_child(|| {
            if unsafe { libc::unshare(flag) } == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        })
    };
    let describe = |r: &Result<(), String>, ok: &str| match r {
        Ok(()) => ok.to_string(),
        Err(e) => format!("unshare failed: {e}"),
    };
    let net = ns(libc::CLONE_NEWNET);
    report.push(
        "net namespace",
        "network",
        net.is_ok(),
        describe(&net, "no interfaces but a down loopback"),
    );
    let probe_dir = std::env::temp_dir().join(format!("ilf-sandbox-probe-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&probe_dir);
    let mount = match CString::new(probe_dir.as_os_str().as_bytes()) {
        Ok(dir) => try_in_child(|| unsafe { enter_mount_namespace(&dir) }),
        Err(e) => Err(e.to_string()),
    };
    let _ = std::fs::remove_dir(&probe_dir);
    report.push(
        "mount namespace",
        "private temporary directory",
        mount.is_ok(),
        match &mount {
            Ok(()) => format!("tmpfs ({TMPFS_OPTIONS}) per worker"),
            Err(e) => {
                format!("{e}; the temporary directory is a plain directory cleaned between jobs")
            }
        },
    );
    let ipc = ns(libc::CLONE_NEWIPC);
    report.push(
        "ipc namespace",
        "shared memory, message queues",
        ipc.is_ok(),
        describe(&ipc, "private"),
    );
    let uts = ns(libc::CLONE_NEWUTS);
    report.push(
        "uts namespace",
        "hostname",
        uts.is_ok(),
        describe(&uts, "private"),
    );
    let pid = ns(libc::CLONE_NEWPID);
    report.push(
        "pid namespace",
        "leftover processes, signals outside the job",
        pid.is_ok(),
        match &pid {
            Ok(()) => "per worker; its pid 1 is the trusted monitor, which SIGKILLs every other \
                       process in it after each job, so nothing a job spawned outlives it"
                .to_string(),
            Err(e) => format!("unshare failed: {e}; falling back to killing the job's session"),
        },
    );
    let abi = landlock_abi();
    report.push(
        "landlock",
        "file reads and writes, TCP, signals",
        abi.is_ok(),
        match &abi {
            Ok(v) => format!(
                "ABI {v}: read+exec under the interpreter's prefixes and system libraries, write only in the private temporary directory{}{}",
                if *v >= 4 { "; TCP bind/connect denied" } else { "" },
                if *v >= 6 { "; signals and abstract sockets scoped" } else { "" }
            ),
            Err(e) => format!("unavailable: {e}"),
        },
    );
    let filters = seccomp_filters();
    let seccomp = match &filters {
        Ok(f) => try_in_child(|| {
            for p in f {
                seccompiler::apply_filter(p).map_err(|e| io::Error::other(e.to_string()))?;
            }
            Ok(())
        }),
        Err(e) => Err(e.clone()),
    };
    report.push(
        "seccomp",
        "sockets, ptrace, mounts, namespaces, kernel interfaces",
        seccomp.is_ok(),
        match &seccomp {
            Ok(()) => format!("deny list of {} system calls", DENIED.len() + 2),
            Err(e) => format!("unavailable: {e}"),
        },
    );
    let root = unsafe { libc::geteuid() } == 0;
    report.push(
        "rlimits",
        "memory, CPU time, file size, open files",
        true,
        format!(
            "address space {} MiB, CPU {} s (default), file size {} MiB, 64 open files, no core dumps",
            cfg.memory_bytes >> 20,
            cfg.timeout.as_secs_f64().ceil(),
            cfg.file_bytes >> 20
        ),
    );
    report.push(
        "capabilities dropped",
        "raising rlimits, root powers",
        root,
        if root {
            "all capabilities and the bounding set dropped (the worker keeps only file-cleanup ones; jobs none)"
        } else {
            "not root: the job runs with the caller's (unprivileged) rights"
        },
    );
    let memory = cgroup::probe("memory");
    report.push(
        "cgroup v1 memory",
        "memory of the whole job tree",
        memory.is_ok(),
        match &memory {
            Ok(_) => format!("{} MiB per worker", cgroup_memory_limit(cfg) >> 20),
            Err(e) => e.clone(),
        },
    );
    let pids = cgroup::probe("pids");
    report.push(
        "cgroup v1 pids",
        "fork bombs",
        pids.is_ok(),
        match &pids {
            Ok(_) => format!("{} tasks per worker", cfg.max_tasks),
            Err(e) => e.clone(),
        },
    );
    let cpu = cgroup::probe("cpu");
    report.push(
        "cgroup v1 cpu",
        "one job starving the others",
        cpu.is_ok(),
        match &cpu {
            Ok(_) => "at most one core per worker".to_string(),
            Err(e) => e.clone(),
        },
    );
    report.push(
        "wall deadline",
        "sleeps, blocking",
        true,
        format!(
            "{}x the CPU limit + 1 s, measured from the job's start; SIGKILL from outside the job",
            cfg.wall_factor
        ),
    );
    report.push(
        "output",
        "floods",
        true,
        format!(
            "stdout/stderr discarded; result channel capped at {} KiB",
            cfg.output_bytes >> 10
        ),
    );
    report.push(
        "environment",
        "secrets in variables, stdin",
        true,
        "cleared: PYTHONHASHSEED=0, PYTHONDONTWRITEBYTECODE, PYTHONIOENCODING, LC_ALL, PATH, TMPDIR=HOME=the private directory; stdin is /dev/null",
    );
    Capabilities {
        netns: net.is_ok(),
        mountns: mount.is_ok(),
        ipcns: ipc.is_ok(),
        utsns: uts.is_ok(),
        pidns: pid.is_ok(),
        landlock_abi: abi.ok(),
        seccomp: seccomp.is_ok(),
        root,
        cgroup_memory: memory.ok(),
        cgroup_pids: pids.ok(),
        cgroup_cpu: cpu.ok(),
        report,
    }
}

pub(crate) fn cgroup_memory_limit(cfg: &PoolConfig) -> u64 {
    // Every process of the job may use `memory_bytes` of address space; together they share this.
    cfg.memory_bytes.saturating_mul(2)
}

/// Runs `f` in a forked child and reports whether it succeeded there.
fn try_in_child(f: impl FnOnce() -> io::Result<()>) -> Result<(), String> {
    let mut fds = [0; 2];
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", io::Error::last_os_error()));
    }
    // The child only makes system calls and exits; it allocates nothing.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", io::Error::last_os_error()));
    }
    if pid == 0 {
        let code: i32 = match f() {
            Ok(()) => 0,
            Err(e) => e.raw_os_error().unwrap_or(libc::EIO),
        };
        unsafe {
            libc::write(fds[1], &code as *const i32 as *const libc::c_void, 4);
            libc::_exit(0);
        }
    }
    unsafe { libc::close(fds[1]) };
    let mut code: i32 = -1;
    let n = unsafe { libc::read(fds[0], &mut code as *mut i32 as *mut libc::c_void, 4) };
    unsafe {
        libc::close(fds[0]);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    match (n, code) {
        (4, 0) => Ok(()),
        (4, errno) => Err(io::Error::from_raw_os_error(errno).to_string()),
        _ => Err("the probe process died".into()),
    }
}

/// Enters a new mount namespace and mounts the private tmpfs over `dir`.
///
/// # Safety
/// Only system calls: fit for `pre_exec`.
unsafe fn enter_mount_namespace(dir: &CString) -> io::Result<()> {
    if libc::unshare(libc::CLONE_NEWNS) != 0 {
        return Err(io::Error::last_os_error());
    }
    if libc::mount(
        std::ptr::null(),
        c"/".as_ptr(),
        std::ptr::null(),
        libc::MS_REC | libc::MS_PRIVATE,
        std::ptr::null(),
    ) != 0
    {
        return Err(io::Error::last_os_error());
    }
    let opts = c"size=64m,nr_inodes=4096,mode=0700";
    if libc::mount(
        c"tmpfs".as_ptr(),
        dir.as_ptr(),
        c"tmpfs".as_ptr(),
        libc::MS_NOSUID | libc::MS_NODEV,
        opts.as_ptr() as *const libc::c_void,
    ) != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
const LANDLOCK_RULE_PATH_BENEATH: libc::c_int = 1;

fn landlock_abi() -> Result<u32, String> {
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if v < 0 {
        Err(format!(
            "landlock_create_ruleset: {}",
            io::Error::last_os_error()
        ))
    } else {
        Ok(v as u32)
    }
}

// Landlock filesystem rights (uapi/linux/landlock.h).
const FS_EXECUTE: u64 = 1 << 0;
const FS_WRITE_FILE: u64 = 1 << 1;
const FS_READ_FILE: u64 = 1 << 2;
const FS_READ_DIR: u64 = 1 << 3;
const FS_MAKE_CHAR: u64 = 1 << 6;
const FS_MAKE_BLOCK: u64 = 1 << 11;
const FS_TRUNCATE: u64 = 1 << 14;
const FS_IOCTL_DEV: u64 = 1 << 15;

fn landlock_fs_rights(abi: u32) -> u64 {
    match abi {
        0 => 0,
        1 => (1 << 13) - 1,
        2 => (1 << 14) - 1,
        3 | 4 => (1 << 15) - 1,
        _ => (1 << 16) - 1,
    }
}

#[repr(C, packed)]
struct PathBeneath {
    allowed_access: u64,
    parent_fd: i32,
}

/// One Landlock rule, prepared before the fork.
#[derive(Debug, Clone)]
pub(crate) struct LandlockRule {
    path: CString,
    access: u64,
}

/// Builds the rules: what the interpreter needs to read, and the private directory.
pub(crate) fn landlock_rules(abi: u32, python: &Interpreter, tmp: &Path) -> Vec<LandlockRule> {
    let all = landlock_fs_rights(abi);
    let file_rights =
        (FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV) & all;
    let read = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR;
    let mut rules: Vec<(PathBuf, u64)> =
        python.prefixes.iter().map(|p| (p.clone(), read)).collect();
    if let Some(dir) = python.executable.parent() {
        rules.push((dir.to_path_buf(), read));
    }
    for p in [
        "/usr/lib",
        "/usr/lib64",
        "/usr/local/lib",
        "/lib",
        "/lib64",
        "/etc/ld.so.cache",
    ] {
        rules.push((PathBuf::from(p), read));
    }
    rules.push(("/dev/null".into(), FS_READ_FILE | FS_WRITE_FILE));
    rules.push(("/dev/urandom".into(), FS_READ_FILE));
    rules.push((tmp.to_path_buf(), all & !(FS_MAKE_CHAR | FS_MAKE_BLOCK)));
    rules
        .into_iter()
        .filter_map(|(p, access)| {
            let meta = std::fs::metadata(&p).ok()?;
            let access = if meta.is_dir() {
                access & all
            } else {
                access & file_rights
            };
            Some(LandlockRule {
                path: CString::new(p.as_os_str().as_bytes()).ok()?,
                access,
            })
        })
        .collect()
}

/// Restricts the calling process with Landlock.
///
/// # Safety
/// Only system calls: fit for `pre_exec`.
pub(crate) unsafe fn landlock_restrict(abi: u32, rules: &[LandlockRule]) -> io::Result<()> {
    let attr: [u64; 3] = [
        landlock_fs_rights(abi),
        if abi >= 4 { 0b11 } else { 0 },
        if abi >= 6 { 0b11 } else { 0 },
    ];
    let size = match abi {
        0..=3 => 8usize,
        4 | 5 => 16,
        _ => 24,
    };
    let ruleset =
        libc::syscall(libc::SYS_landlock_create_ruleset, attr.as_ptr(), size, 0u32) as libc::c_int;
    if ruleset < 0 {
        return Err(io::Error::last_os_error());
    }
    for rule in rules {
        let fd = libc::open(rule.path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
        if fd < 0 {
            continue;
        }
        let beneath = PathBeneath {
            allowed_access: rule.access,
            parent_fd: fd,
        };
        let r = libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset,
            LANDLOCK_RULE_PATH_BENEATH,
            &beneath as *const PathBeneath,
            0u32,
        );
        libc::close(fd);
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
        return Err(io::Error::last_os_error());
    }
    let r = libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0u32);
    libc::close(ruleset);
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// System calls a job never needs; answered with EPERM.
const DENIED: &[libc::c_long] = &[
    libc::SYS_socket,
    libc::SYS_socketpair,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_getfd,
    libc::SYS_kcmp,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_setns,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_sethostname,
    libc::SYS_setdomainname,
    libc::SYS_iopl,
    libc::SYS_ioperm,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_userfaultfd,
    libc::SYS_mknod,
    libc::SYS_mknodat,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_syslog,
    libc::SYS_fanotify_init,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_vhangup,
    libc::SYS_personality,
];

/// The namespace flags a job must never pass to `unshare` or `clone`.
const NAMESPACE_FLAGS: [u64; 7] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWTIME as u64,
];

/// The two seccomp programs: the EPERM deny list, and ENOSYS for `clone3` (whose flags live in
/// memory a filter cannot read; glibc then falls back to `clone`, whose flags it can).
pub(crate) fn seccomp_filters() -> Result<Vec<seccompiler::BpfProgram>, String> {
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };
    use std::collections::BTreeMap;
    let arch: TargetArch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| format!("seccomp: {e:?}"))?;
    let err = |e: seccompiler::BackendError| format!("seccomp: {e}");
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|&s| (s, Vec::new())).collect();
    // Every namespace is entered before exec; a job may create none.
    rules.insert(libc::SYS_unshare, Vec::new());
    let clone_rules = NAMESPACE_FLAGS
        .iter()
        .map(|&flag| {
            SeccompRule::new(vec![SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )
            .map_err(err)?])
            .map_err(err)
        })
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_clone, clone_rules);
    let deny = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(err)?;
    let clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(err)?;
    Ok(vec![
        deny.try_into().map_err(err)?,
        clone3.try_into().map_err(err)?,
    ])
}

/// Everything the zygote's `pre_exec` applies, prepared before the fork.
pub(crate) struct ZygoteSetup {
    /// `cgroup.procs` files to join ("0" means the writer).
    pub cgroup_procs: Vec<CString>,
    pub unshare_flags: libc::c_int,
    pub tmpfs_over: Option<CString>,
    pub landlock: Option<(u32, Vec<LandlockRule>)>,
    pub seccomp: Vec<seccompiler::BpfProgram>,
}

impl ZygoteSetup {
    pub(crate) fn new(
        caps: &Capabilities,
        python: &Interpreter,
        tmp: &Path,
        cgroup_procs: &[PathBuf],
    ) -> Result<ZygoteSetup, String> {
        let mut flags = 0;
        for (on, flag) in [
            (caps.netns, libc::CLONE_NEWNET),
            (caps.ipcns, libc::CLONE_NEWIPC),
            (caps.utsns, libc::CLONE_NEWUTS),
            // The zygote stays where it is; its first child becomes pid 1 of the new namespace.
            (caps.pidns, libc::CLONE_NEWPID),
        ] {
            if on {
                flags |= flag;
            }
        }
        Ok(ZygoteSetup {
            cgroup_procs: cgroup_procs
                .iter()
                .map(|p| CString::new(p.as_os_str().as_bytes()).map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()?,
            unshare_flags: flags,
            tmpfs_over: if caps.mountns {
                Some(CString::new(tmp.as_os_str().as_bytes()).map_err(|e| e.to_string())?)
            } else {
                None
            },
            landlock: caps
                .landlock_abi
                .map(|abi| (abi, landlock_rules(abi, python, tmp))),
            seccomp: if caps.seccomp {
                seccomp_filters()?
            } else {
                Vec::new()
            },
        })
    }

    /// Applies everything, in the child between fork and exec.
    ///
    /// # Safety
    /// Only system calls: fit for `pre_exec`.
    pub(crate) unsafe fn apply(&self) -> io::Result<()> {
        for procs in &self.cgroup_procs {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let written = libc::write(fd, b"0".as_ptr() as *const libc::c_void, 1);
            let error = io::Error::last_os_error();
            libc::close(fd);
            if written != 1 {
                return Err(error);
            }
        }
        if self.unshare_flags != 0 && libc::unshare(self.unshare_flags) != 0 {
            return Err(io::Error::last_os_error());
        }
        if let Some(dir) = &self.tmpfs_over {
            enter_mount_namespace(dir)?;
        }
        if let Some((abi, rules)) = &self.landlock {
            landlock_restrict(*abi, rules)?;
        }
        for p in &self.seccomp {
            seccompiler::apply_filter(p).map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(())
    }
}
