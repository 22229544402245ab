//! Device selection (`--device cpu|cuda`).

use anyhow::{bail, Result};
use candle_core::Device;

/// `cpu`, `cuda` (GPU 0) or `cuda:N`. CUDA needs the crate's `cuda` feature.
pub fn parse(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        _ if name == "cuda" || name.starts_with("cuda:") => {
            let ordinal: usize = match name.strip_prefix("cuda:") {
                Some(n) => n
                    .parse()
                    .map_err(|_| anyhow::anyhow!("bad CUDA device {name:?}; use cuda or cuda:N"))?,
                None => 0,
            };
            if !cfg!(feature = "cuda") {
                bail!("device {name:?} needs a build with the `cuda` feature (cargo build --features cuda)");
            }
            Ok(Device::new_cuda(ordinal)?)
        }
        other => bail!("unknown device {other:?}; use cpu, cuda or cuda:N"),
    }
}
