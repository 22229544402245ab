//! Getting MBPP onto a machine: download the original release (or copy a local file), check it
//! against the pinned SHA-256, validate it, and install it atomically as
//! `$ILF_CACHE/mbpp.jsonl` (see [`crate::mbpp::default_path`]).
//!
//! The checksum is compiled in rather than read from anywhere at run time, so a changed upstream
//! file is caught instead of silently changing every prompt.

use crate::{error::DataError, mbpp::Mbpp, records};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The original MBPP release.
pub const MBPP_URL: &str =
    "https://raw.githubusercontent.com/google-research/google-research/master/mbpp/mbpp.jsonl";
/// SHA-256 of the original `mbpp.jsonl` (as pinned in the project's `data/SHA256SUMS`).
pub const MBPP_SHA256: &str = "143559fa164408d45cab058238471288b0e447507ce55db3057c56113d9dccb4";

/// What [`fetch_mbpp`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// `dest` already held the pinned file; nothing was written.
    AlreadyCached { path: PathBuf },
    /// The file was downloaded or copied from `source` and installed at `path`.
    Installed { path: PathBuf, source: String },
}

/// Where MBPP comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source<'a> {
    /// A local copy (for machines without internet).
    File(&'a Path),
    /// The given URL (normally [`MBPP_URL`]).
    Url(&'a str),
}

/// Installs MBPP at `dest` unless it is already there with the pinned checksum. A file at `dest`
/// with another checksum is replaced.
pub fn fetch_mbpp(source: Source<'_>, dest: &Path) -> Result<Fetched, DataError> {
    if let Ok(existing) = std::fs::read(dest) {
        if sha256_hex(&existing) == MBPP_SHA256 {
            return Ok(Fetched::AlreadyCached {
                path: dest.to_path_buf(),
            });
        }
    }
    let (bytes, origin) = match source {
        Source::File(path) => (
            std::fs::read(path).map_err(|e| DataError::io(path, e))?,
            path.display().to_string(),
        ),
        Source::Url(url) => (download(url)?, url.to_string()),
    };
    install(&bytes, &origin, dest)?;
    Ok(Fetched::Installed {
        path: dest.to_path_buf(),
        source: origin,
    })
}

/// Checks `bytes` (read from `origin`, named in errors) against [`MBPP_SHA256`], validates them as
/// MBPP, and writes them to `dest` atomically.
pub fn install(bytes: &[u8], origin: &str, dest: &Path) -> Result<Mbpp, DataError> {
    let actual = sha256_hex(bytes);
    if actual != MBPP_SHA256 {
        return Err(DataError::Checksum {
            path: PathBuf::from(origin),
            expected: MBPP_SHA256.to_string(),
            actual,
        });
    }
    let mbpp = Mbpp::from_bytes(bytes, Path::new(origin))?;
    records::write_atomically(dest, bytes)?;
    Ok(mbpp.with_path(dest))
}

/// Lowercase hex SHA-256 of a file, read in a stream (model files are gigabytes).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The response body of a GET, with a 60 s overall timeout.
#[cfg(feature = "download")]
fn download(url: &str) -> Result<Vec<u8>, DataError> {
    let error = |message: String| DataError::Download {
        url: url.to_string(),
        message,
    };
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let mut response = agent.get(url).call().map_err(|e| error(e.to_string()))?;
    response
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_vec()
        .map_err(|e| error(e.to_string()))
}

#[cfg(not(feature = "download"))]
fn download(url: &str) -> Result<Vec<u8>, DataError> {
    Err(DataError::Download {
        url: url.to_string(),
        message: "this build of ilf-data has no HTTP client (feature `download`)".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared_mbpp() -> PathBuf {
        std::env::var_os("ILF_MBPP")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mbpp.jsonl")
            })
    }

    #[test]
    fn installs_from_a_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("cache").join("mbpp.jsonl");
        let src = shared_mbpp();
        let first = fetch_mbpp(Source::File(&src), &dest).unwrap();
        assert!(matches!(first, Fetched::Installed { .. }), "{first:?}");
        assert_eq!(std::fs::read(&dest).unwrap(), std::fs::read(&src).unwrap());
        assert_eq!(Mbpp::load(&dest).unwrap().tasks().len(), 974);
        // A second fetch does nothing, even from a source that would fail.
        let again = fetch_mbpp(Source::Url("http://127.0.0.1:9/unreachable"), &dest).unwrap();
        assert_eq!(again, Fetched::AlreadyCached { path: dest.clone() });
    }

    #[test]
    fn rejects_a_file_with_another_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("mbpp.jsonl");
        let mut bytes = std::fs::read(shared_mbpp()).unwrap();
        bytes.extend_from_slice(b"\n");
        std::fs::write(&src, &bytes).unwrap();
        let dest = dir.path().join("installed.jsonl");
        let err = fetch_mbpp(Source::File(&src), &dest)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("checksum mismatch") && err.contains(MBPP_SHA256),
            "{err}"
        );
        assert!(!dest.exists());
    }

    #[test]
    fn unreachable_url_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("mbpp.jsonl");
        let err = fetch_mbpp(Source::Url("http://127.0.0.1:9/mbpp.jsonl"), &dest).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("http://127.0.0.1:9/mbpp.jsonl") && text.contains("--from"),
            "{text}"
        );
        assert!(!dest.exists());
    }

    #[test]
    fn streamed_file_hash_equals_the_in_memory_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(sha256_file(&path).unwrap(), sha256_hex(&bytes));
    }

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
