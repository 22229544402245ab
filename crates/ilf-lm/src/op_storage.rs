//! Reading the CPU storage that candle hands the custom ops' forward passes.

use candle_core::{CpuStorage, Layout, Result};

/// The f32 values of a contiguous view, or an error naming `op`.
pub(crate) fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((start, end))) => Ok(&v[start..end]),
        _ => candle_core::bail!("{op}: expected a contiguous f32 tensor"),
    }
}
