//! Rotary position embedding (the non-interleaved "rotate half" form of `rope_slow`) as one op
//! with its own backward.
//!
//! Candle's fused `rope` has no backward pass; `rope_slow` composes it from narrow, neg, cat and
//! two broadcast products, keeping about five query- and key-sized tensors per layer alive in the
//! graph. This op keeps only its output; the rotation's backward is the inverse rotation.

use crate::op_storage::contiguous_f32;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

/// Rotates `x` (`[b, heads, t, d]`) at positions `0..t`. `cos` and `sin` are the host tables
/// `[positions, d/2]` (row-major), built once with the model. CPU and f32 only (the training
/// path).
pub fn rope(x: &Tensor, cos: &Arc<[f32]>, sin: &Arc<[f32]>) -> Result<Tensor> {
    let (_b, _h, t, d) = x.dims4()?;
    let half = d / 2;
    if d % 2 != 0 || cos.len() < t * half || sin.len() != cos.len() {
        candle_core::bail!("rope: x {:?} with tables of {} values", x.dims(), cos.len());
    }
    x.contiguous()?.apply_op1(Rope {
        cos: cos.clone(),
        sin: sin.clone(),
        t,
        half,
    })
}

struct Rope {
    cos: Arc<[f32]>,
    sin: Arc<[f32]>,
    t: usize,
    half: usize,
}

impl Rope {
    /// Rotates each row of `src` into `dst` by `+angle` (`sign = 1`) or `−angle` (`sign = −1`).
    fn rotate(&self, src: &[f32], sign: f32) -> Vec<f32> {
        let (d, half) = (2 * self.half, self.half);
        let mut dst = vec![0f32; src.len()];
        dst.par_chunks_mut(d)
            .zip(src.par_chunks(d))
            .enumerate()
            .for_each(|(row, (o, x))| {
                let p = row % self.t;
                let (c, s) = (
                    &self.cos[p * half..(p + 1) * half],
                    &self.sin[p * half..(p + 1) * half],
                );
                for i in 0..half {
                    let (x1, x2, s) = (x[i], x[i + half], sign * s[i]);
                    o[i] = x1 * c[i] - x2 * s;
                    o[i + half] = x2 * c[i] + x1 * s;
                }
            });
        dst
    }
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "rope"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, "rope")?;
        Ok((CpuStorage::F32(self.rotate(x, 1.0)), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = grad.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let dx = self.rotate(&g, -1.0);
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op_check::assert_same;
    use candle_core::{Device, Var};

    #[test]
    fn fused_equals_rope_slow() -> Result<()> {
        let dev = Device::Cpu;
        let (b, h, t, d) = (2, 3, 5, 8);
        let cos = Tensor::randn(0f32, 1.0, (7, d / 2), &dev)?;
        let sin = Tensor::randn(0f32, 1.0, (7, d / 2), &dev)?;
        let table =
            |m: &Tensor| -> Result<Arc<[f32]>> { Ok(m.flatten_all()?.to_vec1::<f32>()?.into()) };
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, h, t, d), &dev)?)?;
        let ours = rope(x.as_tensor(), &table(&cos)?, &table(&sin)?)?;
        let slow = candle_nn::rotary_emb::rope_slow(
            x.as_tensor(),
            &cos.narrow(0, 0, t)?,
            &sin.narrow(0, 0, t)?,
        )?;
        assert_same(&ours, &slow, &[&x], 1e-5)?;
        Ok(())
    }
}
