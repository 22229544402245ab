//! Shared by the integration tests: the real data files, a store in a temporary directory.
#![allow(dead_code)]

use ilf_data::mbpp::Mbpp;
use std::path::{Path, PathBuf};

fn shared_data(name: &str, env: &str) -> PathBuf {
    std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data")
            .join(name)
    })
}

/// `$ILF_SURGE_ANNOTATIONS`, else `<root>/shared/data/surge_annotations.jsonl`.
pub fn surge_path() -> PathBuf {
    shared_data("surge_annotations.jsonl", "ILF_SURGE_ANNOTATIONS")
}

/// `$ILF_MBPP`, else `<root>/shared/data/mbpp.jsonl`.
pub fn mbpp() -> Mbpp {
    let path = shared_data("mbpp.jsonl", "ILF_MBPP");
    Mbpp::load(&path).unwrap_or_else(|e| panic!("{e} (set ILF_MBPP to the original mbpp.jsonl)"))
}
