//! AdamW over candle `Var`s, with moments we own so that checkpoints can save and restore them
//! (candle-nn's `AdamW` keeps its moments private).
//!
//! The update is PyTorch's `torch.optim.AdamW`, which Hugging Face's Trainer uses:
//!
//! ```text
//! p ← p · (1 − lr·wd)
//! m ← β1·m + (1 − β1)·g          v ← β2·v + (1 − β2)·g²
//! p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε)
//! ```
//!
//! It runs as one fused in-place pass per parameter on the CPU (the tensor-op version would
//! allocate several parameter-sized temporaries: gigabytes for a 0.5B model). The gradient
//! clipping factor is folded into the same pass.

use crate::tensor_file::{write_f32, F32View};
use anyhow::{bail, Context, Result};
use candle_core::{CpuStorage, Device, Layout, Tensor, Var};
use rayon::prelude::*;
use std::path::Path;
use std::sync::Mutex;

/// AdamW's hyper-parameters; the learning rate comes per step from the schedule.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// Hugging Face Trainer's defaults (`ilf-method.md` section 4).
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// The optimizer: named parameters, their first and second moments, and the step count.
pub struct AdamW {
    params: Vec<(String, Var)>,
    exp_avg: Vec<Vec<f32>>,
    exp_avg_sq: Vec<Vec<f32>>,
    step: u64,
    config: AdamWConfig,
}

impl AdamW {
    /// Zero moments for each parameter; parameters must be contiguous f32 on the CPU.
    pub fn new(params: Vec<(String, Var)>, config: AdamWConfig) -> Result<Self> {
        for (name, var) in &params {
            if var.dtype() != candle_core::DType::F32 || !matches!(var.device(), Device::Cpu) {
                bail!(
                    "parameter {name} is {:?} on {:?}; training needs f32 on the CPU",
                    var.dtype(),
                    var.device()
                );
            }
            if !var.is_contiguous() {
                bail!("parameter {name} is not contiguous");
            }
        }
        let zeros = || {
            params
                .iter()
                .map(|(_, v)| vec![0f32; v.elem_count()])
                .collect()
        };
        Ok(Self {
            exp_avg: zeros(),
            exp_avg_sq: zeros(),
            params,
            step: 0,
            config,
        })
    }

    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// Optimizer steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One update. `grads[i]` is the gradient of `params()[i]`; each is multiplied by
    /// `grad_scale` first (the clipping factor).
    pub fn step(&mut self, grads: &[Tensor], lr: f64, grad_scale: f64) -> Result<()> {
        if grads.len() != self.params.len() {
            bail!(
                "{} gradients for {} parameters",
                grads.len(),
                self.params.len()
            );
        }
        self.step += 1;
        let c = &self.config;
        let t = self.step as i32;
        let update = Update {
            decay: (1.0 - lr * c.weight_decay) as f32,
            beta1: c.beta1 as f32,
            beta2: c.beta2 as f32,
            step_size: (lr / (1.0 - c.beta1.powi(t))) as f32,
            bc2_sqrt: (1.0 - c.beta2.powi(t)).sqrt() as f32,
            eps: c.eps as f32,
            grad_scale: grad_scale as f32,
        };
        for (i, ((name, var), grad)) in self.params.iter().zip(grads).enumerate() {
            let grad = grad.contiguous()?;
            if grad.dims() != var.dims() {
                bail!(
                    "gradient of {name} has shape {:?}, parameter {:?}",
                    grad.dims(),
                    var.dims()
                );
            }
            let op = FusedStep {
                update,
                moments: Mutex::new((&mut self.exp_avg[i], &mut self.exp_avg_sq[i])),
            };
            var.as_tensor()
                .inplace_op2(&grad, &op)
                .with_context(|| format!("AdamW step on {name}"))?;
        }
        Ok(())
    }

    /// Writes the moments to `path` as safetensors (`exp_avg.<name>`, `exp_avg_sq.<name>`),
    /// straight from their buffers.
    pub fn save_state(&self, path: &Path) -> Result<()> {
        let mut entries = Vec::with_capacity(2 * self.params.len());
        for (i, (name, var)) in self.params.iter().enumerate() {
            for (prefix, data) in [
                ("exp_avg", &self.exp_avg[i]),
                ("exp_avg_sq", &self.exp_avg_sq[i]),
            ] {
                entries.push((
                    format!("{prefix}.{name}"),
                    F32View {
                        shape: var.dims().to_vec(),
                        data,
                    },
                ));
            }
        }
        write_f32(path, entries, None)
    }

    /// Restores moments written by [`AdamW::save_state`] and the step count, one tensor at a
    /// time (the file is memory-mapped, not read whole).
    pub fn load_state(&mut self, path: &Path, steps: u64) -> Result<()> {
        // Safety: the checkpoint directory is ours and is not modified while training reads it.
        let file = unsafe { candle_core::safetensors::MmapedSafetensors::new(path) }
            .with_context(|| format!("opening {}", path.display()))?;
        for (i, (name, var)) in self.params.iter().enumerate() {
            for (prefix, slot) in [
                ("exp_avg", &mut self.exp_avg[i]),
                ("exp_avg_sq", &mut self.exp_avg_sq[i]),
            ] {
                let key = format!("{prefix}.{name}");
                let t = file
                    .load(&key, &Device::Cpu)
                    .with_context(|| format!("{} lacks {key}", path.display()))?;
                if t.dims() != var.dims() {
                    bail!(
                        "optimizer state {key} has shape {:?}, parameter {:?}",
                        t.dims(),
                        var.dims()
                    );
                }
                *slot = t.flatten_all()?.to_vec1::<f32>()?;
            }
        }
        self.step = steps;
        Ok(())
    }
}

#[derive(Clone, Copy)]
struct Update {
    decay: f32,
    beta1: f32,
    beta2: f32,
    step_size: f32,
    bc2_sqrt: f32,
    eps: f32,
    grad_scale: f32,
}

/// The in-place op: candle hands us the parameter's storage mutably and the gradient's read-only;
/// the moments live in the optimizer and are lent for the duration of the call.
struct FusedStep<'a> {
    update: Update,
    moments: Mutex<(&'a mut Vec<f32>, &'a mut Vec<f32>)>,
}

/// A contiguous f32 view of a storage, or an error naming the op.
fn f32_slice<'s>(s: &'s CpuStorage, l: &Layout, op: &str) -> candle_core::Result<&'s [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&data[start..end]),
        _ => candle_core::bail!("{op}: expected a contiguous f32 tensor"),
    }
}

fn f32_slice_mut<'s>(
    s: &'s mut CpuStorage,
    l: &Layout,
    op: &str,
) -> candle_core::Result<&'s mut [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&mut data[start..end]),
        _ => candle_core::bail!("{op}: expected a contiguous f32 tensor"),
    }
}

/// Elements per rayon task: large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 1 << 16;

impl candle_core::InplaceOp2 for FusedStep<'_> {
    fn name(&self) -> &'static str {
        "adamw-step"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let param = f32_slice_mut(s1, l1, self.name())?;
        let grad = f32_slice(s2, l2, self.name())?;
        let mut moments = self.moments.lock().expect("moments lock is never poisoned");
        let (m, v) = &mut *moments;
        let u = self.update;
        param
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| {
                for i in 0..p.len() {
                    let g = g[i] * u.grad_scale;
                    m[i] = u.beta1 * m[i] + (1.0 - u.beta1) * g;
                    v[i] = u.beta2 * v[i] + (1.0 - u.beta2) * g * g;
                    let denom = v[i].sqrt() / u.bc2_sqrt + u.eps;
                    p[i] = p[i] * u.decay - u.step_size * m[i] / denom;
                }
            });
        Ok(())
    }
}

/// `dst += scale · src`, in place: gradient accumulation without a new parameter-sized buffer.
pub(crate) struct AddScaled(pub f32);

impl candle_core::InplaceOp2 for AddScaled {
    fn name(&self) -> &'static str {
        "add-scaled"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let dst = f32_slice_mut(s1, l1, self.name())?;
        let src = f32_slice(s2, l2, self.name())?;
        let scale = self.0;
        dst.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, s)| *d += scale * s));
        Ok(())
    }
}

/// The global L2 norm of a set of gradients, as `torch.nn.utils.clip_grad_norm_` computes it.
pub fn global_norm(grads: &[Tensor]) -> Result<f64> {
    let mut sum = 0f64;
    for g in grads {
        let g = g.contiguous()?;
        let (storage, layout) = g.storage_and_layout();
        let candle_core::Storage::Cpu(cpu) = &*storage else {
            bail!("gradient norm needs CPU tensors");
        };
        let data = f32_slice(cpu, layout, "grad-norm")?;
        sum += data
            .par_chunks(CHUNK)
            .map(|c| c.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>())
            .sum::<f64>();
    }
    Ok(sum.sqrt())
}

/// The factor that scales gradients to norm at most `max_norm` (PyTorch's `max_norm / (norm +
/// 1e-6)`, capped at 1).
pub fn clip_factor(norm: f64, max_norm: f64) -> f64 {
    (max_norm / (norm + 1e-6)).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A straight transcription of `torch.optim.AdamW` for one scalar.
    fn reference(p: f64, grads: &[f64], lr: f64, c: &AdamWConfig) -> f64 {
        let (mut p, mut m, mut v) = (p, 0.0, 0.0);
        for (t, g) in grads.iter().enumerate() {
            let t = t as i32 + 1;
            p *= 1.0 - lr * c.weight_decay;
            m = c.beta1 * m + (1.0 - c.beta1) * g;
            v = c.beta2 * v + (1.0 - c.beta2) * g * g;
            let denom = v.sqrt() / (1.0 - c.beta2.powi(t)).sqrt() + c.eps;
            p -= lr / (1.0 - c.beta1.powi(t)) * m / denom;
        }
        p
    }

    #[test]
    fn matches_torch_adamw_with_weight_decay() {
        let config = AdamWConfig {
            weight_decay: 0.1,
            ..Default::default()
        };
        let var = Var::from_slice(&[1.0f32, -2.0, 0.5], 3, &Device::Cpu).unwrap();
        let mut opt = AdamW::new(vec![("w".into(), var.clone())], config).unwrap();
        let grads = [[0.1f32, -0.3, 2.0], [0.2, 0.1, -1.0], [-0.5, 0.0, 0.3]];
        for g in &grads {
            opt.step(&[Tensor::new(g, &Device::Cpu).unwrap()], 0.01, 1.0)
                .unwrap();
        }
        let got = var.as_tensor().to_vec1::<f32>().unwrap();
        for (i, start) in [1.0, -2.0, 0.5].iter().enumerate() {
            let gs: Vec<f64> = grads.iter().map(|g| g[i] as f64).collect();
            let want = reference(*start, &gs, 0.01, &config);
            assert!(
                (got[i] as f64 - want).abs() < 1e-6,
                "{i}: {} vs {want}",
                got[i]
            );
        }
        assert_eq!(opt.steps(), 3);
    }

    #[test]
    fn state_round_trips_so_steps_continue_identically() {
        let config = AdamWConfig::default();
        let make = || Var::from_slice(&[0.3f32, 0.7], 2, &Device::Cpu).unwrap();
        let g = |x: f32| Tensor::new(&[x, -x], &Device::Cpu).unwrap();
        let (a, b) = (make(), make());
        let mut straight = AdamW::new(vec![("w".into(), a.clone())], config).unwrap();
        let mut first = AdamW::new(vec![("w".into(), b.clone())], config).unwrap();
        for x in [0.1, 0.4] {
            straight.step(&[g(x)], 0.1, 1.0).unwrap();
            first.step(&[g(x)], 0.1, 1.0).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let saved = dir.path().join("optimizer.safetensors");
        first.save_state(&saved).unwrap();
        let mut second = AdamW::new(vec![("w".into(), b.clone())], config).unwrap();
        second.load_state(&saved, first.steps()).unwrap();
        straight.step(&[g(-0.2)], 0.1, 1.0).unwrap();
        second.step(&[g(-0.2)], 0.1, 1.0).unwrap();
        assert_eq!(
            a.as_tensor().to_vec1::<f32>().unwrap(),
            b.as_tensor().to_vec1::<f32>().unwrap()
        );
    }

    #[test]
    fn clipping_and_accumulation() {
        let g = Tensor::new(&[3.0f32, 4.0], &Device::Cpu).unwrap();
        let norm = global_norm(std::slice::from_ref(&g)).unwrap();
        assert!((norm - 5.0).abs() < 1e-9);
        assert!((clip_factor(norm, 1.0) - 1.0 / (5.0 + 1e-6)).abs() < 1e-12);
        assert_eq!(clip_factor(0.5, 1.0), 1.0);
        let acc = Tensor::new(&[1.0f32, 1.0], &Device::Cpu).unwrap();
        acc.inplace_op2(&g, &AddScaled(0.5)).unwrap();
        assert_eq!(acc.to_vec1::<f32>().unwrap(), vec![2.5, 3.0]);
    }
}
