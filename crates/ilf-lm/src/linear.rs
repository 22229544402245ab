//! A linear layer that is either trainable f32 or a frozen quantized matmul, with an optional
//! LoRA adapter: `y = x Wᵀ + b + scale · (dropout(x) Aᵀ) Bᵀ`.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Module, Result, Tensor, D};
use std::sync::Arc;

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
}

#[derive(Debug, Clone)]
enum Weight {
    /// `[out, in]` f32; may be a `Var` for full fine-tuning.
    Dense(Tensor),
    /// Frozen quantized weight (GGUF); inference only, no gradient.
    Quantized(QMatMul),
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

    pub fn in_features(&self) -> usize {
        self.in_features
    }

    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// The dense `[out, in]` weight; `None` for a quantized layer.
    pub fn weight(&self) -> Option<&Tensor> {
        match &self.weight {
            Weight::Dense(w) => Some(w),
            Weight::Quantized(QMatMul::Tensor(w)) => Some(w),
            Weight::Quantized(_) => None,
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
        let y = match &self.weight {
            Weight::Dense(w) => matmul_t(x, w)?,
            Weight::Quantized(q) => q.forward(x)?,
        };
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        match &self.lora {
            None => Ok(y),
            Some(lora) => {
                let xd = if train && lora.dropout > 0.0 {
                    candle_nn::ops::dropout(x, lora.dropout)?
                } else {
                    x.clone()
                };
                let delta = matmul_t(&matmul_t(&xd, &lora.a)?, &lora.b)?;
                y + (delta * lora.scale)?
            }
        }
    }
}

/// Up to this many rows, `x Wᵀ` is computed as `(W xᵀ)ᵀ`: with few rows (decoding) the GEMM
/// kernel streams the weight far better in that orientation (measured 2–4× on the 0.5B model's
/// shapes at 10 rows); with many rows (training, prefill) the usual orientation is as fast.
const FEW_ROWS: usize = 48;

/// `x Wᵀ` for `x` of any rank: the leading dimensions are flattened into one matrix so a single
/// GEMM runs over the whole batch (the transposed views cost no copy of the weight).
fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
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
