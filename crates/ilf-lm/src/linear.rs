//! A linear layer that is either trainable f32, a frozen bf16 weight (sampling on the CPU) or a
//! frozen quantized matmul, with an optional LoRA adapter: `y = x Wᵀ + b + scale · (dropout(x) Aᵀ) Bᵀ`.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Result, Tensor, D};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The seed of LoRA dropout masks, shared by all adapters of a model and set by the trainer
/// before each micro-batch; each adapter mixes in its own salt. Masks are then a function of
/// (seed, step, micro-batch, module), so a resumed run draws the same ones.
#[derive(Debug, Clone, Default)]
pub struct DropoutSeed(Arc<AtomicU64>);

impl DropoutSeed {
    pub fn set(&self, seed: u64) {
        self.0.store(seed, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A low-rank adapter (Hu et al. 2021, LoRA): `a` is `[r, in]`, `b` is `[out, r]`.
///
/// The trainer makes `a` and `b` candle `Var`s; `b` usually starts at zero so the adapted
/// model starts equal to the base model.
#[derive(Debug, Clone)]
pub struct Lora {
    pub a: Tensor,
    pub b: Tensor,
    /// `alpha / r` in the paper's notation.
    pub scale: f64,
    /// Dropout on the adapter's input, applied only by [`Linear::forward_t`] with `train = true`.
    pub dropout: f32,
    /// Where this adapter's dropout masks come from: the shared seed, mixed with `salt`
    /// (distinct per adapter).
    pub dropout_seed: DropoutSeed,
    pub salt: u64,
}

impl Lora {
    /// `(p, mask seed)` when dropout is active in this forward pass.
    fn dropout_now(&self, train: bool) -> Option<(f32, u64)> {
        (train && self.dropout > 0.0).then(|| {
            let salt = self
                .salt
                .wrapping_add(1)
                .wrapping_mul(0xD1B5_4A32_D192_ED03);
            (self.dropout, self.dropout_seed.get() ^ salt)
        })
    }
}

#[derive(Debug, Clone)]
enum Weight {
    /// `[out, in]` f32; may be a `Var` for full fine-tuning.
    Dense(Tensor),
    /// Frozen quantized weight (GGUF); inference only, no gradient.
    Quantized(QMatMul),
    /// Frozen bf16 weight multiplied by ilf's own CPU kernel (see bf16_matmul.rs); inference
    /// only, no gradient.
    Bf16(Arc<crate::bf16_matmul::Bf16Weight>),
    /// Frozen bf16 weight in both orientations, for training adapters over it (LoRA with a bf16
    /// base): the gradient reaches the input through the bf16 kernel.
    FrozenBf16(Arc<crate::bf16_matmul::FrozenBf16>),
}

/// A linear layer named as in the Hugging Face checkpoint (`model.layers.0.self_attn.q_proj`).
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
    lora: Option<Lora>,
    in_features: usize,
    out_features: usize,
}

impl Linear {
    /// A dense layer from an `[out, in]` weight and an optional `[out]` bias.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let (out_features, in_features) = weight.dims2()?;
        Ok(Self {
            weight: Weight::Dense(weight),
            bias,
            lora: None,
            in_features,
            out_features,
        })
    }

    /// A frozen layer over a quantized `[out, in]` tensor. Candle's Q4_1 and Q5_0 CPU kernels are
    /// scalar and slow (models.md, pitfall 3), so those are requantized to Q8_0 here.
    pub fn quantized(weight: QTensor, bias: Option<Tensor>) -> Result<Self> {
        let (out_features, in_features) = weight.shape().dims2()?;
        let weight = match weight.dtype() {
            GgmlDType::Q4_0 | GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1 => {
                let dense = weight.dequantize(&weight.device())?;
                QTensor::quantize(&dense, GgmlDType::Q8_0)?
            }
            _ => weight,
        };
        Ok(Self {
            weight: Weight::Quantized(QMatMul::from_arc(Arc::new(weight))?),
            bias,
            lora: None,
            in_features,
            out_features,
        })
    }

    /// A frozen layer whose `[out, in]` f32 weight is rounded to bf16 for the CPU kernel of
    /// bf16_matmul.rs. Sampling only: it has no backward pass.
    pub fn bf16(weight: &Tensor, bias: Option<Tensor>) -> Result<Self> {
        let (out_features, in_features) = weight.dims2()?;
        let packed = with_f32_values(weight, "Linear::bf16", |v| {
            crate::bf16_matmul::Bf16Weight::from_f32(v, out_features, in_features)
        })?;
        Ok(Self {
            weight: Weight::Bf16(Arc::new(packed)),
            bias,
            lora: None,
            in_features,
            out_features,
        })
    }

    /// Turns a frozen dense weight into bf16 in both orientations (see [`Weight::FrozenBf16`]):
    /// the same memory as f32, with the forward and the input gradient on the bf16 kernel. The
    /// f32 weight is no longer held by this layer.
    pub fn freeze_to_bf16(&mut self) -> Result<()> {
        let Weight::Dense(w) = &self.weight else {
            candle_core::bail!("freeze_to_bf16: the layer is not dense f32")
        };
        if w.track_op() || !w.device().is_cpu() {
            candle_core::bail!("freeze_to_bf16: only a frozen weight on the CPU can become bf16")
        }
        let (out, inp) = (self.out_features, self.in_features);
        let frozen = with_f32_values(w, "freeze_to_bf16", |v| {
            crate::bf16_matmul::FrozenBf16::from_f32(v, out, inp)
        })?;
        self.weight = Weight::FrozenBf16(Arc::new(frozen));
        Ok(())
    }

    /// Whether the weight is held as bf16 (for sampling or as a frozen training base).
    pub fn is_bf16(&self) -> bool {
        matches!(self.weight, Weight::Bf16(_) | Weight::FrozenBf16(_))
    }

    pub fn in_features(&self) -> usize {
        self.in_features
    }

    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// The dense `[out, in]` weight; `None` for a quantized or bf16 layer.
    pub fn weight(&self) -> Option<&Tensor> {
        match &self.weight {
            Weight::Dense(w) => Some(w),
            Weight::Quantized(QMatMul::Tensor(w)) => Some(w),
            Weight::Quantized(_) | Weight::Bf16(_) | Weight::FrozenBf16(_) => None,
        }
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    pub fn lora(&self) -> Option<&Lora> {
        self.lora.as_ref()
    }

    /// Attaches (or with `None` removes) a LoRA adapter.
    pub fn set_lora(&mut self, lora: Option<Lora>) {
        self.lora = lora;
    }

    /// Replaces the dense weight (for example with a `Var` for full fine-tuning).
    pub fn set_weight(&mut self, weight: Tensor) -> Result<()> {
        let dims = weight.dims2()?;
        if dims != (self.out_features, self.in_features) {
            candle_core::bail!(
                "set_weight: expected [{}, {}], got {:?}",
                self.out_features,
                self.in_features,
                weight.shape()
            );
        }
        self.weight = Weight::Dense(weight);
        Ok(())
    }

    /// Inference forward: no dropout.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_t(x, false)
    }

    /// Forward with LoRA dropout active when `train` is set.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if let Some(lora) = &self.lora {
            // Training an adapter over a frozen layer: one fused op (see lora_op.rs).
            let frozen_bias = self.bias.as_ref().is_none_or(|b| !b.track_op());
            let base = match &self.weight {
                Weight::Dense(w) if !w.track_op() && x.device().is_cpu() => {
                    Some(crate::lora_op::LoraBase::F32(w.clone()))
                }
                Weight::FrozenBf16(w) => Some(crate::lora_op::LoraBase::Bf16(w.clone())),
                _ => None,
            };
            if let Some(base) =
                base.filter(|_| x.track_op() && frozen_bias && x.dtype() == DType::F32)
            {
                return crate::lora_op::lora_linear(
                    x,
                    base,
                    self.bias.as_ref(),
                    &lora.a,
                    &lora.b,
                    lora.scale,
                    lora.dropout_now(train),
                );
            }
        }
        let y = match &self.weight {
            Weight::FrozenBf16(w) if x.track_op() => crate::matmul_op::frozen_bf16_matmul_t(x, w)?,
            Weight::FrozenBf16(w) => crate::matmul_op::bf16_matmul_values(x, &w.w)?,
            Weight::Dense(w) => matmul_t(x, w)?,
            Weight::Quantized(q) => q.forward(x)?,
            Weight::Bf16(_) if x.track_op() => {
                // Silently stopping the gradient is the pitfall the trainer's tests guard against.
                candle_core::bail!(
                    "a bf16 inference weight has no backward pass: load the model for training (LoadMode::Trainable)"
                )
            }
            Weight::Bf16(w) => crate::matmul_op::bf16_matmul_values(x, w)?,
        };
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        match &self.lora {
            None => Ok(y),
            Some(lora) => {
                let xd = crate::lora_op::apply_dropout(x, lora.dropout_now(train))?;
                // Scaling the rank-r product, not the output-sized one.
                let delta = matmul_t(&(matmul_t(&xd, &lora.a)? * lora.scale)?, &lora.b)?;
                y + delta
            }
        }
    }
}

/// `f` over a CPU tensor's f32 values, read in place: a copy of the f32 output projection
/// (545 MB for 0.5B) would set the load's peak memory.
fn with_f32_values<R>(t: &Tensor, op: &str, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.to_dtype(DType::F32)?.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(cpu) => {
            Ok(f(crate::op_storage::contiguous_f32(cpu, layout, op)?))
        }
        _ => candle_core::bail!("{op}: the weight must be on the CPU"),
    }
}

/// Up to this many rows, `x Wᵀ` is computed as `(W xᵀ)ᵀ`: with few rows (decoding) the GEMM
/// kernel streams the weight far better in that orientation (measured 2–4× on the 0.5B model's
/// shapes at 10 rows); with many rows (training, prefill) the usual orientation is as fast.
const FEW_ROWS: usize = 48;

/// `x Wᵀ` for `x` of any rank: the leading dimensions are flattened into one matrix so a single
/// GEMM runs over the whole batch (the transposed views cost no copy of the weight).
fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if x.track_op() && !w.track_op() {
        // Training through a frozen weight (LoRA's base, a tied lm_head): no weight gradient.
        return crate::matmul_op::frozen_matmul_t(x, w);
    }
    if w.is_variable() {
        // Training a weight: its gradient built in its own layout (see matmul_op.rs).
        return crate::matmul_op::trainable_matmul_t(x, w);
    }
    let dims = x.dims();
    let in_features = x.dim(D::Minus1)?;
    let rows = x.elem_count() / in_features.max(1);
    let x2 = x.reshape((rows, in_features))?;
    let y = if rows <= FEW_ROWS {
        w.matmul(&x2.t()?)?.t()?
    } else {
        x2.matmul(&w.t()?)?
    };
    let mut out_dims = dims[..dims.len() - 1].to_vec();
    out_dims.push(w.dim(0)?);
    y.reshape(out_dims)
}
