//! Reading and writing f32 tensors as safetensors without holding a second copy of a model.
//!
//! candle's `safetensors::save` wants owned tensors; here parameters and optimizer moments are
//! written straight from their buffers, one tensor's bytes at a time.

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

/// Borrowed f32 data with its shape; serialised as little-endian F32.
pub struct F32View<'a> {
    pub shape: Vec<usize>,
    pub data: &'a [f32],
}

impl safetensors::View for F32View<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        safetensors::Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.data.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    fn data_len(&self) -> usize {
        self.data.len() * 4
    }
}

/// Writes `entries` to `path` with optional string metadata (`__metadata__`).
pub fn write_f32(
    path: &Path,
    entries: Vec<(String, F32View<'_>)>,
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    safetensors::tensor::serialize_to_file(entries, metadata, path)
        .with_context(|| format!("writing {}", path.display()))
}

/// Runs `f` on the contiguous f32 data of a CPU tensor, without copying it.
pub fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(candle_core::CpuStorage::F32(data)) = &*storage else {
        bail!(
            "expected an f32 tensor on the CPU, got {:?} on {:?}",
            t.dtype(),
            t.device()
        );
    };
    let (start, end) = layout
        .contiguous_offsets()
        .context("tensor is not contiguous")?;
    Ok(f(&data[start..end]))
}

/// Writes named CPU f32 tensors, borrowing each tensor's buffer while it is written.
pub fn write_tensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let contiguous: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| {
            Ok((
                n.clone(),
                t.to_dtype(candle_core::DType::F32)?.contiguous()?,
            ))
        })
        .collect::<Result<_>>()?;
    let guards: Vec<_> = contiguous
        .iter()
        .map(|(_, t)| t.storage_and_layout())
        .collect();
    let mut entries = Vec::with_capacity(contiguous.len());
    for ((name, t), (storage, layout)) in contiguous.iter().zip(&guards) {
        let candle_core::Storage::Cpu(candle_core::CpuStorage::F32(data)) = &**storage else {
            bail!("tensor {name} is not on the CPU");
        };
        let (start, end) = layout.contiguous_offsets().context("contiguous tensor")?;
        entries.push((
            name.clone(),
            F32View {
                shape: t.dims().to_vec(),
                data: &data[start..end],
            },
        ));
    }
    write_f32(path, entries, metadata)
}

/// Every tensor of a safetensors file, on the CPU, keeping its stored dtype.
pub fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, &Device::Cpu)
        .with_context(|| format!("reading {}", path.display()))
}

/// Flushes a file or directory to disk, so a rename after it cannot expose a torn write.
pub fn fsync(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("fsync {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let a = Tensor::new(&[[1.0f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[0.5f32], &Device::Cpu).unwrap();
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        write_tensors(
            &path,
            &[("a".into(), a.t().unwrap()), ("b".into(), b)],
            Some(meta),
        )
        .unwrap();
        let back = read_tensors(&path).unwrap();
        assert_eq!(
            back["a"].to_vec2::<f32>().unwrap(),
            vec![vec![1.0, 3.0], vec![2.0, 4.0]]
        );
        assert_eq!(back["b"].to_vec1::<f32>().unwrap(), vec![0.5]);
        let bytes = std::fs::read(&path).unwrap();
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(header.metadata().as_ref().unwrap()["format"], "pt");
    }
}
