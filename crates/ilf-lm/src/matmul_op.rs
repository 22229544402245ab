//! `x Wᵀ` for a frozen weight `W`, with a backward pass for `x` only.
//!
//! Candle's `matmul` backward always builds both operands' gradients, even when one is a plain
//! tensor that no optimizer will ever read: under LoRA every frozen projection (and the tied
//! 150k-row `lm_head`) got a weight-sized gradient per micro-batch, plus the zeros it was
//! accumulated into, and an extra GEMM per layer. This op is the matmul with the weight held
//! outside the graph, so backward computes `dx = dy W` and nothing else.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor};

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

struct FrozenMatmul {
    weight: Tensor,
}

impl FrozenMatmul {
    /// The forward on any backend: the weight's transposed view goes to the backend's GEMM
    /// as is, the input's leading dimensions flattened into rows.
    fn forward<S: BackendStorage>(
        &self,
        x: &S,
        x_layout: &Layout,
        w: &S,
        w_layout: &Layout,
    ) -> Result<(S, Shape)> {
        let dims = x_layout.dims();
        let k = *dims.last().unwrap_or(&0);
        let (n, w_in) = w_layout.shape().dims2()?;
        if k != w_in {
            candle_core::bail!("frozen matmul: input has {k} features, the weight expects {w_in}");
        }
        let m = x_layout.shape().elem_count() / k.max(1);
        let Some((start, _)) = x_layout.contiguous_offsets() else {
            candle_core::bail!("frozen matmul: the input must be contiguous");
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
        self.forward(storage, layout, w, w_layout)
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
        self.forward(storage, layout, w, w_layout)
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let n = self.weight.dim(0)?;
        let rows = grad_res.elem_count() / n.max(1);
        let dx = grad_res
            .reshape((rows, n))?
            .matmul(&self.weight)?
            .reshape(arg.shape())?;
        Ok(Some(dx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn forward_and_input_gradient_equal_the_plain_matmul() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (5, 3), &dev)?;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 4, 3), &dev)?)?;
        let probe = Tensor::randn(0f32, 1.0, (2, 4, 5), &dev)?;

        let ours = frozen_matmul_t(x.as_tensor(), &w)?;
        let plain = x.as_tensor().broadcast_matmul(&w.t()?)?;
        let diff = (&ours - &plain)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "forward differs by {diff}");

        let g_ours = (ours * &probe)?.sum_all()?.backward()?;
        let g_plain = (plain * &probe)?.sum_all()?.backward()?;
        let (a, b) = (
            g_ours.get(x.as_tensor()).expect("x gets a gradient"),
            g_plain.get(x.as_tensor()).expect("x gets a gradient"),
        );
        let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "input gradient differs by {diff}");
        // The point of the op: no gradient is built for the frozen weight.
        assert!(g_ours.get(&w).is_none());
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
