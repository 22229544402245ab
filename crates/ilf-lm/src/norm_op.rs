//! RMSNorm (`x / sqrt(mean(x²) + eps) · w`) as one op with its own backward.
//!
//! Candle's fused `rms_norm` has no backward pass; composed (square, mean, add, sqrt, recip, two
//! products) it keeps five tensors per norm alive in the graph, two norms per layer. This op
//! keeps only its output and recomputes the per-row scale in backward.

use crate::op_storage::contiguous_f32;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// RMSNorm over the last dimension; `x` `[.., h]`, `weight` `[h]`. CPU and f32 only.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, RmsNorm { eps: eps as f32 })
}

struct RmsNorm {
    eps: f32,
}

impl RmsNorm {
    fn inv(&self, row: &[f32]) -> f32 {
        let mean_sq = row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32;
        1.0 / (mean_sq + self.eps).sqrt()
    }
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (
            contiguous_f32(xs, xl, "rms norm")?,
            contiguous_f32(ws, wl, "rms norm")?,
        );
        let h = w.len();
        if h == 0 || x.len() % h != 0 {
            candle_core::bail!("rms norm: weight of {h} for input {:?}", xl.dims());
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(h)
            .zip(x.par_chunks(h))
            .for_each(|(o, row)| {
                let inv = self.inv(row);
                for ((o, &v), &w) in o.iter_mut().zip(row).zip(w) {
                    *o = v * inv * w;
                }
            });
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let h = w.elem_count();
        let xv = x.flatten_all()?.to_vec1::<f32>()?;
        let wv = w.flatten_all()?.to_vec1::<f32>()?;
        let gv = grad.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let mut dx = vec![0f32; xv.len()];
        dx.par_chunks_mut(h)
            .zip(xv.par_chunks(h).zip(gv.par_chunks(h)))
            .for_each(|(d, (row, g))| {
                let inv = self.inv(row);
                // dx = inv · (g⊙w − x̂ · mean(g⊙w⊙x̂)), x̂ = x · inv.
                let dot = row
                    .iter()
                    .zip(g)
                    .zip(&wv)
                    .map(|((x, g), w)| g * w * x * inv)
                    .sum::<f32>()
                    / h as f32;
                for (((d, &x), &g), &w) in d.iter_mut().zip(row).zip(g).zip(&wv) {
                    *d = inv * (g * w - x * inv * dot);
                }
            });
        let dx = Tensor::from_vec(dx, x.shape(), x.device())?;
        let dw = if w.track_op() {
            // Partial sums over fixed blocks of rows, added in block order: the same bits
            // whatever rayon's scheduling (exact resume depends on it).
            const ROWS: usize = 32;
            let partials: Vec<Vec<f32>> = xv
                .par_chunks(h * ROWS)
                .zip(gv.par_chunks(h * ROWS))
                .map(|(xs, gs)| {
                    let mut acc = vec![0f32; h];
                    for (row, g) in xs.chunks(h).zip(gs.chunks(h)) {
                        let inv = self.inv(row);
                        for ((a, &x), &g) in acc.iter_mut().zip(row).zip(g) {
                            *a += g * x * inv;
                        }
                    }
                    acc
                })
                .collect();
            let mut dw = vec![0f32; h];
            for p in partials {
                dw.iter_mut().zip(p).for_each(|(a, b)| *a += b);
            }
            Some(Tensor::from_vec(dw, w.shape(), w.device())?)
        } else {
            None
        };
        Ok((Some(dx), dw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op_check::assert_same;
    use candle_core::{Device, Var, D};

    #[test]
    fn fused_equals_composed() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 8), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(1f32, 0.2, 8, &dev)?)?;
        let ours = rms_norm(x.as_tensor(), w.as_tensor(), 1e-6)?;
        let inv = (x.as_tensor().sqr()?.mean_keepdim(D::Minus1)? + 1e-6)?
            .sqrt()?
            .recip()?;
        let composed = x
            .as_tensor()
            .broadcast_mul(&inv)?
            .broadcast_mul(w.as_tensor())?;
        assert_same(&ours, &composed, &[&x, &w], 1e-5)?;
        Ok(())
    }

    /// The weight's gradient sums over rows in parallel; it must come out bit-identical every
    /// time (a resumed training run is compared bitwise with an uninterrupted one).
    #[test]
    fn weight_gradient_is_deterministic() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3000, 64), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(1f32, 0.2, 64, &dev)?)?;
        let probe = Tensor::randn(0f32, 1.0, (3000, 64), &dev)?;
        let grad = || -> Result<Vec<f32>> {
            let y = rms_norm(x.as_tensor(), w.as_tensor(), 1e-6)?;
            let g = (y * &probe)?.sum_all()?.backward()?;
            g.get(&w).expect("w gets a gradient").to_vec1::<f32>()
        };
        let first = grad()?;
        for _ in 0..8 {
            assert_eq!(grad()?, first);
        }
        Ok(())
    }
}
