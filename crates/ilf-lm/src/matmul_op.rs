//! `x Wᵀ` as custom ops whose backward builds only the gradients that are needed, in the
//! weight's own layout.
//!
//! Candle's `matmul` backward always builds both operands' gradients. For a frozen weight (LoRA's
//! base, a tied 150k-row `lm_head`) that was a weight-sized gradient per micro-batch nobody
//! reads, plus the zeros it was accumulated into, and an extra GEMM per layer
//! ([`frozen_matmul_t`]). For a trainable weight, `x.matmul(&w.t())` builds the gradient of
//! the transposed view first and then a transposed copy of it for `w`: two weight-sized
//! temporaries per layer, which set full fine-tuning's peak memory ([`trainable_matmul_t`]
//! computes `dW = dyᵀ x` straight in `[out, in]`).
use crate::bf16_matmul::{Bf16Weight, FrozenBf16};
use crate::op_storage::contiguous_f32;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Storage, Tensor};
use std::sync::Arc;

/// `x Wᵀ` over the last dimension of `x` (any rank), `W` an `[out, in]` tensor that is neither a
/// `Var` nor the result of a tracked op. Gradients flow to `x` only.
pub fn frozen_matmul_t(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    if weight.track_op() {
        candle_core::bail!("frozen_matmul_t: the weight is trainable, its gradient would be lost");
    }
    x.contiguous()?.apply_op1(FrozenMatmul {
        weight: weight.contiguous()?,
    })
}

/// `x Wᵀ` over a frozen bf16 weight (LoRA's base held as bf16, see bf16_matmul.rs): the forward
/// and the input gradient `dy W` both run on the bf16 kernel. CPU only.
pub fn frozen_bf16_matmul_t(x: &Tensor, weight: &Arc<FrozenBf16>) -> Result<Tensor> {
    x.contiguous()?.apply_op1(FrozenBf16Matmul {
        weight: weight.clone(),
    })
}

/// `x Wᵀ` for `x` of any rank through a bf16 weight, on plain CPU tensors (no graph).
pub(crate) fn bf16_matmul_values(x: &Tensor, w: &Bf16Weight) -> Result<Tensor> {
    let x = x.detach().contiguous()?;
    let (storage, layout) = x.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("bf16 matmul: the input must be on the CPU");
    };
    let (y, shape) = bf16_forward(cpu, layout, w)?;
    Tensor::from_vec(y, shape, &candle_core::Device::Cpu)
}

fn bf16_forward(x: &CpuStorage, layout: &Layout, w: &Bf16Weight) -> Result<(Vec<f32>, Shape)> {
    let dims = layout.dims();
    let k = *dims.last().unwrap_or(&0);
    if k != w.cols() {
        candle_core::bail!(
            "matmul: input has {k} features, the weight expects {}",
            w.cols()
        );
    }
    let values = contiguous_f32(x, layout, "bf16 matmul")?;
    let y = w.matmul_t(values, values.len() / k.max(1));
    let mut out = dims.to_vec();
    if let Some(last) = out.last_mut() {
        *last = w.rows();
    }
    Ok((y, Shape::from(out)))
}

struct FrozenBf16Matmul {
    weight: Arc<FrozenBf16>,
}

impl CustomOp1 for FrozenBf16Matmul {
    fn name(&self) -> &'static str {
        "frozen-bf16-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (y, shape) = bf16_forward(storage, layout, &self.weight.w)?;
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        // dx = dy W = dy (Wᵀ)ᵀ: a matmul_t over the transposed copy.
        Ok(Some(
            bf16_matmul_values(grad_res, &self.weight.wt)?.reshape(arg.shape())?,
        ))
    }
}

/// `x Wᵀ` with `W` (`[out, in]`) a `Var`: gradients for both, `dW` built in `W`'s layout.
pub fn trainable_matmul_t(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&weight.contiguous()?, TrainableMatmul)
}

struct FrozenMatmul {
    weight: Tensor,
}

struct TrainableMatmul;

/// The forward on any backend: the weight's transposed view goes to the backend's GEMM as is,
/// the input's leading dimensions flattened into rows.
fn forward<S: BackendStorage>(
    x: &S,
    x_layout: &Layout,
    w: &S,
    w_layout: &Layout,
) -> Result<(S, Shape)> {
    let dims = x_layout.dims();
    let k = *dims.last().unwrap_or(&0);
    let (n, w_in) = w_layout.shape().dims2()?;
    if k != w_in {
        candle_core::bail!("matmul: input has {k} features, the weight expects {w_in}");
    }
    let m = x_layout.shape().elem_count() / k.max(1);
    let Some((start, _)) = x_layout.contiguous_offsets() else {
        candle_core::bail!("matmul: the input must be contiguous");
    };
    let x2 = Layout::contiguous_with_offset((m, k), start);
    let wt = w_layout.transpose(0, 1)?;
    let y = x.matmul(w, (1, m, n, k), &x2, &wt)?;
    let mut out = dims.to_vec();
    if let Some(last) = out.last_mut() {
        *last = n;
    }
    Ok((y, Shape::from(out)))
}

/// `dx = dy W` for `x` of any rank.
fn input_grad(x: &Tensor, weight: &Tensor, grad: &Tensor) -> Result<Tensor> {
    let n = weight.dim(0)?;
    grad.reshape((grad.elem_count() / n.max(1), n))?
        .matmul(weight)?
        .reshape(x.shape())
}

impl CustomOp2 for TrainableMatmul {
    fn name(&self) -> &'static str {
        "trainable-matmul"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        w: &CpuStorage,
        w_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        forward(x, x_layout, w, w_layout)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        x_layout: &Layout,
        w: &candle_core::CudaStorage,
        w_layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        forward(x, x_layout, w, w_layout)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // Detached: candle stores a Var's gradient as given, so a gradient built from the
        // tracked input would keep this micro-batch's whole graph alive in the accumulated sums.
        let (x, w) = (&x.detach(), &w.detach());
        let (n, k) = w.dims2()?;
        let g = grad.reshape((grad.elem_count() / n.max(1), n))?;
        let dw = g.t()?.matmul(&x.reshape((x.elem_count() / k.max(1), k))?)?;
        Ok((Some(input_grad(x, w, grad)?), Some(dw)))
    }
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (w, w_layout) = self.weight.storage_and_layout();
        let Storage::Cpu(w) = &*w else {
            candle_core::bail!("frozen matmul: input on the CPU, weight elsewhere");
        };
        forward(storage, layout, w, w_layout)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (w, w_layout) = self.weight.storage_and_layout();
        let Storage::Cuda(w) = &*w else {
            candle_core::bail!("frozen matmul: input on the GPU, weight elsewhere");
        };
        forward(storage, layout, w, w_layout)
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(input_grad(arg, &self.weight, grad_res)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op_check::assert_same;
    use candle_core::{Device, Var};

    #[test]
    fn forward_and_input_gradient_equal_the_plain_matmul() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (5, 3), &dev)?;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 4, 3), &dev)?)?;
        let ours = frozen_matmul_t(x.as_tensor(), &w)?;
        let plain = x.as_tensor().broadcast_matmul(&w.t()?)?;
        let grads = assert_same(&ours, &plain, &[&x], 1e-5)?;
        // The point of the op: no gradient is built for the frozen weight.
        assert!(grads.get(&w).is_none());
        Ok(())
    }

    #[test]
    fn trainable_matmul_gradients_equal_the_plain_matmul() -> Result<()> {
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (5, 3), &dev)?)?;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 4, 3), &dev)?)?;
        let ours = trainable_matmul_t(x.as_tensor(), w.as_tensor())?;
        let plain = x.as_tensor().broadcast_matmul(&w.as_tensor().t()?)?;
        let grads = assert_same(&ours, &plain, &[&x, &w], 1e-5)?;
        // A Var's gradient must not hold the forward graph (it would stay alive while
        // gradients accumulate over micro-batches).
        assert!(!grads.get(&w).unwrap().track_op());
        Ok(())
    }

    #[test]
    fn the_bf16_op_equals_the_plain_matmul_over_the_rounded_weight() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (37, 45), &dev)?;
        let frozen = Arc::new(FrozenBf16::from_f32(&w.flatten_all()?.to_vec1()?, 37, 45));
        let rounded = Tensor::from_vec(frozen.w.to_f32(), (37, 45), &dev)?;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 5, 45), &dev)?)?;
        let ours = frozen_bf16_matmul_t(x.as_tensor(), &frozen)?;
        let plain = x.as_tensor().broadcast_matmul(&rounded.t()?)?;
        // bf16 activations (AVX512-BF16) round each input to 8 significant bits.
        assert_same(&ours, &plain, &[&x], 0.1)?;
        Ok(())
    }

    #[test]
    fn a_trainable_weight_is_refused() -> Result<()> {
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::zeros((2, 2), candle_core::DType::F32, &dev)?)?;
        let x = Tensor::zeros((1, 2), candle_core::DType::F32, &dev)?;
        assert!(frozen_matmul_t(&x, w.as_tensor()).is_err());
        Ok(())
    }
}
