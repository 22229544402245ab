//! A frozen linear layer plus its LoRA adapter as one op: `y = x Wᵀ + b + s·(drop(x) Aᵀ) Bᵀ`.
//!
//! Composed from candle ops this keeps four output-sized tensors per projection alive until
//! backward ends (the frozen product, the adapter's product, its scaling, the sum), because
//! candle's graph holds every intermediate whether its backward needs it or not. Fused, the
//! graph holds only the output; backward recomputes the rank-`r` product, which is cheap. On
//! Qwen2.5-Coder-0.5B (4 MBPP examples, micro-batch 1) it cut a LoRA step's peak above the
//! loaded weights from 2.5 GB to 1.65 GB. The dropout mask is a function of a seed, so a
//! resumed run draws the same masks (candle's own dropout cannot be seeded).

use crate::bf16_matmul::FrozenBf16;
use crate::matmul_op::bf16_matmul_values;
use crate::op_storage::contiguous_f32;
use candle_core::{CpuStorage, CustomOp3, Device, Layout, Result, Shape, Tensor};
use std::sync::Arc;

/// `drop(x)`'s mask as multipliers (`0` or `1/(1-p)`), element `i` drawn from
/// `splitmix64(seed ⊕ i)`: counter-based, so any element can be regenerated without a stream.
pub fn dropout_mask(seed: u64, n: usize, p: f32) -> Vec<f32> {
    use rayon::prelude::*;
    let keep = 1.0 / (1.0 - p);
    let mut mask = vec![0f32; n];
    // Each element depends only on its index, so the parallel fill is deterministic.
    mask.par_chunks_mut(1 << 14)
        .enumerate()
        .for_each(|(c, chunk)| {
            let start = (c << 14) as u64;
            for (j, m) in chunk.iter_mut().enumerate() {
                let i = start + j as u64;
                let u = (splitmix64(seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 40) as f32
                    / (1u64 << 24) as f32;
                *m = if u < p { 0.0 } else { keep };
            }
        });
    mask
}

/// The seeded mask as a tensor shaped like `x` (`None` when dropout is off).
fn mask_like(x: &Tensor, dropout: Option<(f32, u64)>) -> Result<Option<Tensor>> {
    dropout
        .map(|(p, seed)| {
            Tensor::from_vec(dropout_mask(seed, x.elem_count(), p), x.shape(), x.device())
        })
        .transpose()
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `x` with dropout applied by the seeded mask, or `x` itself when `dropout` is `None`.
pub fn apply_dropout(x: &Tensor, dropout: Option<(f32, u64)>) -> Result<Tensor> {
    match mask_like(x, dropout)? {
        None => Ok(x.clone()),
        Some(mask) => x.mul(&mask),
    }
}

/// The frozen weight under an adapter: f32 (`[out, in]`), or bf16 in both orientations (see
/// bf16_matmul.rs).
pub enum LoraBase {
    F32(Tensor),
    Bf16(Arc<FrozenBf16>),
}

impl LoraBase {
    fn out_features(&self) -> Result<usize> {
        match self {
            LoraBase::F32(w) => w.dim(0),
            LoraBase::Bf16(w) => Ok(w.w.rows()),
        }
    }

    /// `x Wᵀ` for `[m, in]` rows.
    fn forward(&self, x2: &Tensor) -> Result<Tensor> {
        match self {
            LoraBase::F32(w) => x2.matmul(&w.t()?),
            LoraBase::Bf16(w) => bf16_matmul_values(x2, &w.w),
        }
    }

    /// `dy W` for `[m, out]` rows.
    fn input_grad(&self, g: &Tensor) -> Result<Tensor> {
        match self {
            LoraBase::F32(w) => g.matmul(w),
            LoraBase::Bf16(w) => bf16_matmul_values(g, &w.wt),
        }
    }
}

/// The fused frozen-linear-plus-adapter; `x` is `[.., in]`, `a` `[r, in]`, `b` `[out, r]`.
/// The base and `bias` must be frozen. CPU and f32 only: callers fall back to the composed form
/// elsewhere.
pub fn lora_linear(
    x: &Tensor,
    base: LoraBase,
    bias: Option<&Tensor>,
    a: &Tensor,
    b: &Tensor,
    scale: f64,
    dropout: Option<(f32, u64)>,
) -> Result<Tensor> {
    let base = match base {
        LoraBase::F32(w) => LoraBase::F32(w.contiguous()?),
        bf16 => bf16,
    };
    x.contiguous()?.apply_op3(
        &a.contiguous()?,
        &b.contiguous()?,
        LoraLinear {
            base,
            bias: bias.cloned(),
            scale,
            dropout,
        },
    )
}

struct LoraLinear {
    base: LoraBase,
    bias: Option<Tensor>,
    scale: f64,
    dropout: Option<(f32, u64)>,
}

/// A fresh tensor holding a copy of a contiguous f32 storage view (no graph).
fn tensor_of(s: &CpuStorage, l: &Layout) -> Result<Tensor> {
    Tensor::from_slice(contiguous_f32(s, l, "lora op")?, l.shape(), &Device::Cpu)
}

/// `[rows, features]` view of `[.., features]`.
fn rows(t: &Tensor) -> Result<Tensor> {
    let f = t.dim(candle_core::D::Minus1)?;
    t.reshape((t.elem_count() / f.max(1), f))
}

impl CustomOp3 for LoraLinear {
    fn name(&self) -> &'static str {
        "lora-linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        as_: &CpuStorage,
        al: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = tensor_of(xs, xl)?;
        let (a, b) = (tensor_of(as_, al)?, tensor_of(bs, bl)?);
        let x2 = rows(&x)?;
        let mut y = self.base.forward(&x2)?;
        if let Some(bias) = &self.bias {
            y = y.broadcast_add(bias)?;
        }
        let h = (apply_dropout(&x2, self.dropout)?.matmul(&a.t()?)? * self.scale)?;
        let y = (y + h.matmul(&b.t()?)?)?;
        let mut dims = xl.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = self.base.out_features()?;
        }
        Ok((
            CpuStorage::F32(y.flatten_all()?.to_vec1::<f32>()?),
            Shape::from(dims),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // Detached: candle stores a Var's gradient as given, so gradients built from tracked
        // inputs would keep this micro-batch's whole graph alive (see matmul_op.rs).
        let (x, a, b) = (&x.detach(), &a.detach(), &b.detach());
        let g = rows(grad)?;
        let x2 = rows(x)?;
        // One mask for both uses (the same seed gives the forward's mask).
        let mask = mask_like(&x2, self.dropout)?;
        let drop = |t: Tensor| match &mask {
            None => Ok(t),
            Some(m) => t.mul(m),
        };
        let xd = drop(x2.clone())?;
        let gb = (g.matmul(b)? * self.scale)?; // [m, r]
        let through_adapter = drop(gb.matmul(a)?)?; // [m, in]
        let dx = (self.base.input_grad(&g)? + through_adapter)?.reshape(x.shape())?;
        let da = gb.t()?.matmul(&xd)?;
        let h = (xd.matmul(&a.t()?)? * self.scale)?;
        let db = g.t()?.matmul(&h)?;
        Ok((Some(dx), Some(da), Some(db)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op_check::assert_same;
    use candle_core::Var;

    /// The fused op against the same arithmetic composed from candle ops: values and the
    /// gradients of `x`, `A` and `B`, with and without dropout.
    #[test]
    fn fused_equals_composed() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (6, 4), &dev)?;
        let bias = Tensor::randn(0f32, 1.0, 6, &dev)?;
        for dropout in [None, Some((0.3f32, 7u64))] {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 4), &dev)?)?;
            let a = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 4), &dev)?)?;
            let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, (6, 2), &dev)?)?;
            let fused = lora_linear(
                x.as_tensor(),
                LoraBase::F32(w.clone()),
                Some(&bias),
                &a,
                &b,
                1.5,
                dropout,
            )?;
            let xd = apply_dropout(x.as_tensor(), dropout)?;
            let composed = (x
                .as_tensor()
                .broadcast_matmul(&w.t()?)?
                .broadcast_add(&bias)?
                + (xd.broadcast_matmul(&a.t()?)?.broadcast_matmul(&b.t()?)? * 1.5)?)?;
            let grads = assert_same(&fused, &composed, &[&x, &a, &b], 1e-5)?;
            for v in [&a, &b] {
                // A Var's gradient must not hold the forward graph.
                assert!(!grads.get(v).unwrap().track_op());
            }
        }
        Ok(())
    }

    /// Over a bf16 base: the same as the composed ops over the bf16-rounded weight, within the
    /// rounding of the activations.
    #[test]
    fn fused_over_a_bf16_base_equals_composed() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (33, 40), &dev)?;
        let frozen = Arc::new(FrozenBf16::from_f32(&w.flatten_all()?.to_vec1()?, 33, 40));
        let rounded = Tensor::from_vec(frozen.w.to_f32(), (33, 40), &dev)?;
        let bias = Tensor::randn(0f32, 1.0, 33, &dev)?;
        let dropout = Some((0.2f32, 9u64));
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 40), &dev)?)?;
        let a = Var::from_tensor(&Tensor::randn(0f32, 1.0, (4, 40), &dev)?)?;
        let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, (33, 4), &dev)?)?;
        let fused = lora_linear(
            x.as_tensor(),
            LoraBase::Bf16(frozen.clone()),
            Some(&bias),
            &a,
            &b,
            0.5,
            dropout,
        )?;
        let xd = apply_dropout(x.as_tensor(), dropout)?;
        let composed = (x
            .as_tensor()
            .broadcast_matmul(&rounded.t()?)?
            .broadcast_add(&bias)?
            + (xd.broadcast_matmul(&a.t()?)?.broadcast_matmul(&b.t()?)? * 0.5)?)?;
        assert_same(&fused, &composed, &[&x, &a, &b], 0.1)?;
        Ok(())
    }

    #[test]
    fn the_mask_is_a_function_of_the_seed_and_drops_about_p() {
        let m1 = dropout_mask(3, 100_000, 0.1);
        assert_eq!(m1, dropout_mask(3, 100_000, 0.1));
        assert_ne!(m1, dropout_mask(4, 100_000, 0.1));
        let dropped = m1.iter().filter(|&&v| v == 0.0).count() as f64 / 1e5;
        assert!((dropped - 0.1).abs() < 0.01, "dropped {dropped}");
    }
}
