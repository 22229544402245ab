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
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Storage, Tensor};

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
    fn a_trainable_weight_is_refused() -> Result<()> {
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::zeros((2, 2), candle_core::DType::F32, &dev)?)?;
        let x = Tensor::zeros((1, 2), candle_core::DType::F32, &dev)?;
        assert!(frozen_matmul_t(&x, w.as_tensor()).is_err());
        Ok(())
    }
}
