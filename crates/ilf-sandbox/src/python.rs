//! Finding the real Python interpreter once (the `python3` on PATH may be a slow pyenv shim).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::SandboxError;

/// The interpreter and the directories its own files live in (readable by jobs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    pub executable: PathBuf,
    /// `sys.prefix`, `sys.base_prefix`, `sys.exec_prefix`, without duplicates.
    pub prefixes: Vec<PathBuf>,
    pub version: String,
}

/// Interpreters already resolved, by what was asked for.
type Resolved = Mutex<Vec<(Option<PathBuf>, Interpreter)>>;

static CACHE: OnceLock<Resolved> = OnceLock::new();

/// Resolves `explicit`, else `$ILF_PYTHON`, else `python3` on PATH, asking it once for
/// `sys.executable` and its prefixes; later calls reuse the answer.
pub fn resolve(explicit: Option<&Path>) -> Result<Interpreter, SandboxError> {
    let requested = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("ILF_PYTHON").map(PathBuf::from));
    let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
    if let Some((_, found)) = cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|(k, _)| *k == requested)
    {
        return Ok(found.clone());
    }
    let program = requested
        .clone()
        .unwrap_or_else(|| PathBuf::from("python3"));
    let script = "import sys\nprint(sys.executable)\nprint(sys.prefix)\nprint(sys.base_prefix)\nprint(sys.exec_prefix)\nprint('%d.%d.%d' % sys.version_info[:3])";
    let out = Command::new(&program)
        .args(["-c", script])
        .output()
        .map_err(|e| SandboxError::Python {
            message: format!(
                "could not run `{}`: {e}; set ILF_PYTHON to a Python 3.9+ interpreter",
                program.display()
            ),
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    if !out.status.success() || lines.len() < 5 || lines[0].is_empty() {
        return Err(SandboxError::Python {
            message: format!(
                "`{}` did not report its sys.executable ({}): {}; set ILF_PYTHON to a Python 3.9+ interpreter",
                program.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    let mut prefixes: Vec<PathBuf> = Vec::new();
    for p in &lines[1..4] {
        let p = PathBuf::from(p);
        if !prefixes.contains(&p) {
            prefixes.push(p);
        }
    }
    let found = Interpreter {
        executable: PathBuf::from(lines[0]),
        prefixes,
        version: lines[4].to_string(),
    };
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((requested, found.clone()));
    Ok(found)
}
