//! cgroup v1 groups, one per worker: a memory cap for the whole job tree, a pids cap against fork
//! bombs, and the OOM-kill counter that tells an out-of-memory kill from other kills.

use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";
const PARENT: &str = "ilf-sandbox";

/// Checks that the `controller` hierarchy exists and accepts a new group; returns its path.
pub(crate) fn probe(controller: &str) -> Result<PathBuf, String> {
    let base = Path::new(ROOT).join(controller);
    if !base.join("cgroup.procs").exists() {
        return Err(format!(
            "no cgroup v1 `{controller}` hierarchy at {}",
            base.display()
        ));
    }
    let parent = base.join(PARENT);
    fs::create_dir_all(&parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let probe = parent.join(format!("probe-{}", std::process::id()));
    fs::create_dir_all(&probe).map_err(|e| format!("cannot create {}: {e}", probe.display()))?;
    let _ = fs::remove_dir(&probe);
    Ok(base)
}

/// Removes groups left by processes that have exited without dropping their pool (a pool in a
/// `static` is never dropped). Group names start with the owning process id.
pub(crate) fn reap_stale(controllers: &[&Path]) {
    for base in controllers {
        let Ok(entries) = fs::read_dir(base.join(PARENT)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if owner_is_gone(&name) {
                // Fails harmlessly while a process is still inside.
                let _ = fs::remove_dir(entry.path());
            }
        }
    }
}

/// Whether the process whose id starts `name` (`<pid>-...`) no longer exists.
pub(crate) fn owner_is_gone(name: &str) -> bool {
    match name.split('-').next().and_then(|p| p.parse::<u32>().ok()) {
        Some(pid) => {
            pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists()
        }
        None => false,
    }
}

/// One worker's groups; removed on drop (after the zygote has exited).
#[derive(Debug)]
pub(crate) struct WorkerGroups {
    memory: Option<PathBuf>,
    pids: Option<PathBuf>,
    cpu: Option<PathBuf>,
}

impl WorkerGroups {
    /// Creates the groups under the hierarchies that `probe` accepted.
    pub(crate) fn create(
        memory: Option<&Path>,
        pids: Option<&Path>,
        cpu: Option<&Path>,
        name: &str,
        memory_bytes: u64,
        max_tasks: u64,
    ) -> Result<WorkerGroups, String> {
        let make = |base: &Path, settings: &[(&str, String)]| -> Result<PathBuf, String> {
            let dir = base.join(PARENT).join(name);
            fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create cgroup {}: {e}", dir.display()))?;
            for (file, value) in settings {
                fs::write(dir.join(file), value).map_err(|e| {
                    format!("cannot write {value} to {}: {e}", dir.join(file).display())
                })?;
            }
            Ok(dir)
        };
        let memory = memory
            .map(|b| {
                make(
                    b,
                    &[
                        ("memory.limit_in_bytes", memory_bytes.to_string()),
                        ("memory.swappiness", "0".into()),
                    ],
                )
            })
            .transpose()?;
        let pids = pids
            .map(|b| make(b, &[("pids.max", max_tasks.to_string())]))
            .transpose()?;
        // One core per worker: a fork bomb cannot starve the other workers' jobs of CPU, so
        // their CPU-time verdicts stay the same under it.
        let cpu = cpu
            .map(|b| {
                make(
                    b,
                    &[
                        ("cpu.cfs_period_us", "100000".into()),
                        ("cpu.cfs_quota_us", "100000".into()),
                    ],
                )
            })
            .transpose()?;
        Ok(WorkerGroups { memory, pids, cpu })
    }

    /// The `cgroup.procs` files the zygote writes itself into before it execs (so that nothing
    /// it forks can start outside the groups); its descendants follow.
    pub(crate) fn procs_files(&self) -> Vec<PathBuf> {
        self.memory
            .iter()
            .chain(self.pids.iter())
            .chain(self.cpu.iter())
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    /// Kills every process left in the groups (a job whose zygote died mid-run).
    pub(crate) fn kill_all(&self) {
        for dir in self
            .memory
            .iter()
            .chain(self.pids.iter())
            .chain(self.cpu.iter())
        {
            for _ in 0..20 {
                let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                let pids: Vec<i32> = procs
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect();
                if pids.is_empty() {
                    break;
                }
                for pid in pids {
                    // SAFETY: plain kill(2); these pids belong to this worker's group.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }

    /// How many times the kernel's OOM killer has acted in the memory group.
    pub(crate) fn oom_kills(&self) -> u64 {
        let Some(dir) = &self.memory else { return 0 };
        let text = fs::read_to_string(dir.join("memory.oom_control")).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The memory group's failure counter (allocations refused at the cap).
    pub(crate) fn memory_failures(&self) -> u64 {
        let Some(dir) = &self.memory else { return 0 };
        fs::read_to_string(dir.join("memory.failcnt"))
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for WorkerGroups {
    fn drop(&mut self) {
        for dir in self
            .memory
            .iter()
            .chain(self.pids.iter())
            .chain(self.cpu.iter())
        {
            // A group can only be removed once empty; the zygote was killed and reaped just before.
            for _ in 0..50 {
                if fs::remove_dir(dir).is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}
