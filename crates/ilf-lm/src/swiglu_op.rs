//! The SwiGLU product `silu(gate) ⊙ up` of the MLP as one op with its own backward.
//!
//! Composed, candle keeps `silu(gate)` (and its own intermediates) alive beside the product until
//! backward ends: one 4,864-wide tensor per layer and token for Qwen2.5-Coder-0.5B. This op keeps
//! only its output; backward recomputes the sigmoid from `gate`.

use crate::op_storage::contiguous_f32;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `silu(gate) ⊙ up`, same shapes. CPU and f32 only (the training path).
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if gate.dims() != up.dims() {
        candle_core::bail!("swiglu: gate {:?} and up {:?}", gate.dims(), up.dims());
    }
    gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu)
}

struct SwiGlu;

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        us: &CpuStorage,
        ul: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (g, u) = (
            contiguous_f32(gs, gl, "swiglu")?,
            contiguous_f32(us, ul, "swiglu")?,
        );
        let out: Vec<f32> = g
            .par_iter()
            .zip(u.par_iter())
            .map(|(&g, &u)| g * sigmoid(g) * u)
            .collect();
        Ok((CpuStorage::F32(out), gl.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = gate.flatten_all()?.to_vec1::<f32>()?;
        let u = up.flatten_all()?.to_vec1::<f32>()?;
        let d = grad.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let (dgate, dup): (Vec<f32>, Vec<f32>) = g
            .par_iter()
            .zip(u.par_iter().zip(d.par_iter()))
            .map(|(&g, (&u, &d))| {
                let s = sigmoid(g);
                // silu'(g) = s · (1 + g · (1 − s))
                (d * u * s * (1.0 + g * (1.0 - s)), d * g * s)
            })
            .unzip();
        Ok((
            Some(Tensor::from_vec(dgate, gate.shape(), gate.device())?),
            Some(Tensor::from_vec(dup, up.shape(), up.device())?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op_check::assert_same;
    use candle_core::{Device, Var};

    #[test]
    fn fused_equals_composed() -> Result<()> {
        let dev = Device::Cpu;
        let gate = Var::from_tensor(&(Tensor::randn(0f32, 1.0, (2, 3, 7), &dev)? * 3.0)?)?;
        let up = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 7), &dev)?)?;
        let ours = swiglu(gate.as_tensor(), up.as_tensor())?;
        let composed = (candle_nn::ops::silu(gate.as_tensor())? * up.as_tensor())?;
        assert_same(&ours, &composed, &[&gate, &up], 1e-5)?;
        Ok(())
    }
}
