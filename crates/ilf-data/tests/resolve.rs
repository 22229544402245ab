//! `Mbpp::resolve`'s search order. One test in its own process, because it sets environment
//! variables.

use ilf_data::mbpp::Mbpp;
use std::path::{Path, PathBuf};

#[test]
fn explicit_then_ilf_mbpp_then_cache() {
    let real = std::env::var_os("ILF_MBPP")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mbpp.jsonl")
        });
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere.jsonl");
    let cache = dir.path().join("cache");

    std::env::set_var("ILF_CACHE", &cache);
    std::env::remove_var("ILF_MBPP");
    assert_eq!(ilf_data::cache_dir(), cache);
    let err = Mbpp::resolve(None).unwrap_err().to_string();
    assert!(
        err.contains("ilf data fetch") && err.contains("--mbpp"),
        "{err}"
    );
    assert!(
        err.contains(&cache.join("mbpp.jsonl").display().to_string()),
        "{err}"
    );

    std::fs::create_dir_all(&cache).unwrap();
    std::fs::copy(&real, cache.join("mbpp.jsonl")).unwrap();
    assert_eq!(
        Mbpp::resolve(None).unwrap().path(),
        cache.join("mbpp.jsonl")
    );

    std::env::set_var("ILF_MBPP", &missing);
    let err = Mbpp::resolve(None).unwrap_err().to_string();
    assert!(
        err.contains("nowhere.jsonl"),
        "$ILF_MBPP comes before the cache: {err}"
    );

    assert_eq!(Mbpp::resolve(Some(&real)).unwrap().path(), real);
    std::env::set_var("ILF_MBPP", &real);
    let err = Mbpp::resolve(Some(&missing)).unwrap_err().to_string();
    assert!(err.contains("nowhere.jsonl"), "--mbpp comes first: {err}");
}
