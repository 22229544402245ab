//! The pre-norm decoder shared by Qwen2 and Llama, built from differentiable operations.
//!
//! Two paths share the weights and the arithmetic:
//! - [`Model::forward`] / [`Model::forward_t`]: full-sequence logits, no cache, only operations
//!   with a backward pass, for training. On the CPU in f32 the memory-hungry pieces are custom
//!   ops that keep only their outputs in candle's graph (`norm_op`, `rope_op`, `softmax_op`,
//!   `swiglu_op`, `matmul_op`, `lora_op`); elsewhere they are composed from candle ops.
//! - [`Model::forward_with_cache`]: last-position logits with an external [`KvCache`], using
//!   candle's fused (forward-only) kernels for speed. A test keeps both paths numerically equal.
//!
//! Attention handles grouped-query attention without copying K/V per head: the query heads of a
//! group are folded into the query length (`[b, n_kv, rep·t, d]`), so one matmul per group serves
//! all its heads.

use super::Config;
use crate::linear::Linear;
use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Result, Tensor, D};
use candle_nn::VarBuilder;

/// Score added to masked attention positions. Finite so that a fully masked row (a padding
/// query) yields a uniform distribution instead of NaNs; `exp(-1e9)` still underflows to exactly
/// zero, so padded keys contribute nothing.
const MASKED: f32 = -1e9;

#[derive(Debug, Clone)]
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn new(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(size, "weight", candle_nn::Init::Const(1.0))?;
        Ok(Self { weight, eps })
    }

    fn forward(&self, x: &Tensor, fused: bool) -> Result<Tensor> {
        if fused {
            return candle_nn::ops::rms_norm(x, &self.weight, self.eps as f32);
        }
        if x.device().is_cpu() && x.dtype() == DType::F32 && self.weight.dtype() == DType::F32 {
            // Training: one op with its own backward (see norm_op.rs).
            return crate::norm_op::rms_norm(x, &self.weight, self.eps);
        }
        let mean_sq = x.sqr()?.mean_keepdim(D::Minus1)?;
        let inv = (mean_sq + self.eps)?.sqrt()?.recip()?;
        x.broadcast_mul(&inv)?.broadcast_mul(&self.weight)
    }
}

/// Token embeddings: f32 (trainable) or quantized rows dequantized on lookup (inference).
#[derive(Debug, Clone)]
enum Embedding {
    Dense(Tensor),
    Quantized(std::sync::Arc<QTensor>),
}

impl Embedding {
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        match self {
            Self::Dense(w) => {
                let (b, t) = ids.dims2()?;
                let hidden = w.dim(1)?;
                w.index_select(&ids.flatten_all()?, 0)?
                    .reshape((b, t, hidden))
            }
            Self::Quantized(q) => q.embedding(ids),
        }
    }
}

#[derive(Debug, Clone)]
struct Rope {
    cos: Tensor,
    sin: Tensor,
    /// The same tables on the host, for the training path's rope op (built once here, not
    /// copied out of the tensors per layer).
    cos_host: std::sync::Arc<[f32]>,
    sin_host: std::sync::Arc<[f32]>,
}

impl Rope {
    fn new(cfg: &Config, device: &Device) -> Result<Self> {
        let half = cfg.head_dim / 2;
        let inv_freq: Vec<f64> = (0..half)
            .map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / cfg.head_dim as f64))
            .collect();
        let n = cfg.max_position_embeddings;
        let mut cos = Vec::with_capacity(n * half);
        let mut sin = Vec::with_capacity(n * half);
        for p in 0..n {
            for f in &inv_freq {
                let angle = p as f64 * f;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Ok(Self {
            cos: Tensor::from_slice(&cos, (n, half), device)?,
            sin: Tensor::from_slice(&sin, (n, half), device)?,
            cos_host: cos.into(),
            sin_host: sin.into(),
        })
    }

    /// Rotates `x` (`[b, h, t, d]`) at `positions` (`[b, t]`, or `None` for `0..t` in every row).
    fn apply(&self, x: &Tensor, positions: Option<&Tensor>, fused: bool) -> Result<Tensor> {
        let (b, _h, t, _d) = x.dims4()?;
        match positions {
            None if !fused && x.track_op() && x.device().is_cpu() && x.dtype() == DType::F32 => {
                // Training: one op with its own backward (see rope_op.rs).
                crate::rope_op::rope(x, &self.cos_host, &self.sin_host)
            }
            None if !fused => {
                let cos = self.cos.narrow(0, 0, t)?;
                let sin = self.sin.narrow(0, 0, t)?;
                candle_nn::rotary_emb::rope_slow(x, &cos, &sin)
            }
            None => {
                let cos = self.cos.narrow(0, 0, t)?;
                let sin = self.sin.narrow(0, 0, t)?;
                candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)
            }
            Some(pos) => {
                let flat = pos.flatten_all()?;
                let half = self.cos.dim(1)?;
                let cos = self.cos.index_select(&flat, 0)?.reshape((b, t, half))?;
                let sin = self.sin.index_select(&flat, 0)?.reshape((b, t, half))?;
                if fused {
                    candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)
                } else {
                    let cos = Tensor::cat(&[&cos, &cos], D::Minus1)?.unsqueeze(1)?;
                    let sin = Tensor::cat(&[&sin, &sin], D::Minus1)?.unsqueeze(1)?;
                    let d = x.dim(D::Minus1)?;
                    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
                    let x2 = x.narrow(D::Minus1, d / 2, d - d / 2)?;
                    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
                    x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
}

/// What one forward pass needs besides the hidden states.
struct Step<'a> {
    rope: &'a Rope,
    positions: Option<&'a Tensor>,
    /// Additive mask `[b or 1, 1, 1, t, keys]`; `None` for one token per row on the CPU.
    mask: Option<&'a Tensor>,
    /// The same mask on the host when it is shared by the batch (`[t, keys]`), for the
    /// training path's softmax op; built once per forward pass, not per layer.
    mask_host: Option<&'a std::sync::Arc<[f32]>>,
    /// Decoding with a cache: each row's left padding (see decode_attention.rs).
    pads: Option<&'a [usize]>,
    train: bool,
    fused: bool,
}

impl Attention {
    fn forward(
        &self,
        x: &Tensor,
        step: &Step,
        cache: Option<(&mut LayerCache, usize)>,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (nh, nkv, hd) = (self.n_head, self.n_kv_head, self.head_dim);
        let q = self.q_proj.forward_t(x, step.train)?;
        let k = self.k_proj.forward_t(x, step.train)?;
        let v = self.v_proj.forward_t(x, step.train)?;
        let q = q.reshape((b, t, nh, hd))?.transpose(1, 2)?.contiguous()?;
        let k = k.reshape((b, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
        let v = v.reshape((b, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
        let q = step.rope.apply(&q, step.positions, step.fused)?;
        let k = step.rope.apply(&k, step.positions, step.fused)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let (k, v) = match cache {
            None => (k, v),
            Some((layer, offset)) => {
                layer.k.slice_set(&k.contiguous()?, 2, offset)?;
                layer.v.slice_set(&v, 2, offset)?;
                if let (1, Some(pads), true) = (
                    t,
                    step.pads,
                    layer.k.device().is_cpu() && layer.k.dtype() == DType::F32,
                ) {
                    // One new token per row: row by row over its own positions, so a row's
                    // result does not depend on the others' padding.
                    let y = crate::decode_attention::decode_attention(
                        &q,
                        &layer.k,
                        &layer.v,
                        pads,
                        offset + 1,
                        scale as f32,
                    )?;
                    let y = y.transpose(1, 2)?.reshape((b, 1, nh * hd))?;
                    return self.o_proj.forward_t(&y, step.train);
                }
                (
                    layer.k.narrow(2, 0, offset + t)?,
                    layer.v.narrow(2, 0, offset + t)?,
                )
            }
        };
        let mask = step.mask.ok_or_else(|| {
            candle_core::Error::Msg("attention over many positions needs a mask".into())
        })?;
        let keys = k.dim(2)?;
        let rep = nh / nkv;
        let q = q.reshape((b, nkv, rep * t, hd))?;
        let raw = q.matmul(&k.t()?)?.reshape((b, nkv, rep, t, keys))?;
        let probs = if step.fused {
            candle_nn::ops::softmax_last_dim(&(raw * scale)?.broadcast_add(mask)?)?
        } else if let (Some(host), true) = (
            step.mask_host,
            raw.device().is_cpu() && raw.dtype() == DType::F32,
        ) {
            // Training: one op that keeps only the probabilities (see softmax_op.rs).
            crate::softmax_op::masked_softmax(&raw, host, 1, scale)?
        } else {
            candle_nn::ops::softmax(&(raw * scale)?.broadcast_add(mask)?, D::Minus1)?
        };
        let probs = probs.reshape((b, nkv, rep * t, keys))?;
        let y = probs.matmul(&v.contiguous()?)?;
        let y = y
            .reshape((b, nh, t, hd))?
            .transpose(1, 2)?
            .reshape((b, t, nh * hd))?;
        self.o_proj.forward_t(&y, step.train)
    }
}

#[derive(Debug, Clone)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let gate = self.gate_proj.forward_t(x, train)?;
        let up = self.up_proj.forward_t(x, train)?;
        let training = gate.track_op() || up.track_op();
        let h = if training && gate.device().is_cpu() && gate.dtype() == DType::F32 {
            // One op that keeps only the product (see swiglu_op.rs).
            crate::swiglu_op::swiglu(&gate, &up)?
        } else {
            (candle_nn::ops::silu(&gate)? * up)?
        };
        self.down_proj.forward_t(&h, train)
    }
}

#[derive(Debug, Clone)]
struct DecoderLayer {
    self_attn: Attention,
    mlp: Mlp,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
}

/// A dense linear layer named `name` (`…/q_proj`) from `vb`.
pub(crate) fn dense_linear(
    name: &str,
    inp: usize,
    out: usize,
    bias: bool,
    vb: &VarBuilder,
) -> Result<Linear> {
    let w = vb.pp(name).get((out, inp), "weight")?;
    Linear::new(w, linear_bias(name, out, bias, vb)?)
}

/// The `[out]` bias of the linear layer `name` from `vb`, when it has one.
pub(crate) fn linear_bias(
    name: &str,
    out: usize,
    bias: bool,
    vb: &VarBuilder,
) -> Result<Option<Tensor>> {
    bias.then(|| vb.pp(name).get(out, "bias")).transpose()
}

/// Builds each linear layer: from a `VarBuilder` (dense) or from quantized GGUF tensors.
pub(crate) type LinearFactory<'a> =
    dyn FnMut(&str, usize, usize, bool, &VarBuilder) -> Result<Linear> + 'a;

/// A decoder-only causal language model (Qwen2 or Llama), tensors named as in the Hugging Face
/// checkpoint (`model.layers.N.self_attn.q_proj.weight`, …).
#[derive(Debug, Clone)]
pub struct Model {
    cfg: Config,
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: Rope,
    device: Device,
}

/// The K/V of one layer, preallocated to the cache's capacity: `[b, n_kv, capacity, d]`.
#[derive(Debug, Clone)]
struct LayerCache {
    k: Tensor,
    v: Tensor,
}

/// A key/value cache that lives outside the model, preallocated so decoding never reallocates.
///
/// Rows may hold prompts of different lengths, left-padded to a common length: row `i` starts at
/// cache position `pads[i]`, and its token at cache position `p` has RoPE position `p - pads[i]`.
/// All rows advance together, so each step writes one column for the whole batch.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    len: usize,
    pads: Vec<usize>,
    capacity: usize,
}

impl KvCache {
    /// An empty cache for `batch` rows and up to `capacity` positions.
    pub fn new(cfg: &Config, batch: usize, capacity: usize, device: &Device) -> Result<Self> {
        let shape = (batch, cfg.num_key_value_heads, capacity, cfg.head_dim);
        let layers = (0..cfg.num_hidden_layers)
            .map(|_| {
                Ok(LayerCache {
                    k: Tensor::zeros(shape, DType::F32, device)?,
                    v: Tensor::zeros(shape, DType::F32, device)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            layers,
            len: 0,
            pads: vec![0; batch],
            capacity,
        })
    }

    /// Positions filled so far (including left padding).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn batch(&self) -> usize {
        self.pads.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Positions still free.
    pub fn remaining(&self) -> usize {
        self.capacity - self.len
    }

    /// A batch cache from single-row prefixes, each repeated `copies` times (the n samples of a
    /// prompt share its prefill), left-padded to the longest, with room up to `capacity`.
    pub fn from_prefixes(parts: &[(&KvCache, usize)], capacity: usize) -> Result<Self> {
        if parts.iter().any(|(c, _)| c.batch() != 1 || c.pads[0] != 0) {
            candle_core::bail!("KvCache::from_prefixes takes unpadded single-row caches")
        }
        let longest = parts.iter().map(|(c, _)| c.len).max().unwrap_or(0);
        if longest > capacity {
            candle_core::bail!("prefix of {longest} positions exceeds the capacity {capacity}")
        }
        let rows: Vec<(&KvCache, usize)> = parts
            .iter()
            .flat_map(|(c, copies)| std::iter::repeat_n((*c, 0), *copies))
            .collect();
        Self::gather(&rows, capacity - longest)
    }

    /// A batch cache from rows of other caches: each `(cache, row)` keeps its content (the
    /// positions after its padding) and RoPE positions, right-aligned so that every row ends at
    /// the new length (the longest content). Continuous batching uses it
    /// to merge running rows with newly prefilled prompts; `room` is the positions left for
    /// decoding.
    pub fn gather(rows: &[(&KvCache, usize)], room: usize) -> Result<Self> {
        let Some((first, _)) = rows.first() else {
            candle_core::bail!("KvCache::gather needs at least one row")
        };
        let content = |c: &KvCache, r: usize| c.len - c.pads[r];
        let longest = rows.iter().map(|(c, r)| content(c, *r)).max().unwrap_or(0);
        let capacity = longest + room;
        for (c, r) in rows {
            if c.layers.len() != first.layers.len() || *r >= c.batch() {
                candle_core::bail!("KvCache::gather: row {r} is not in a cache of this model")
            }
        }
        let pads = rows.iter().map(|(c, r)| longest - content(c, *r)).collect();
        let mut layers = Vec::with_capacity(first.layers.len());
        for l in 0..first.layers.len() {
            let mut kv = [
                Vec::with_capacity(rows.len()),
                Vec::with_capacity(rows.len()),
            ];
            for (c, r) in rows {
                let n = content(c, *r);
                for (which, src) in [&c.layers[l].k, &c.layers[l].v].into_iter().enumerate() {
                    let (_, h, _, d) = src.dims4()?;
                    let body = src.narrow(0, *r, 1)?.narrow(2, c.pads[*r], n)?;
                    let front = Tensor::zeros((1, h, longest - n, d), DType::F32, src.device())?;
                    let back =
                        Tensor::zeros((1, h, capacity - longest, d), DType::F32, src.device())?;
                    kv[which].push(Tensor::cat(&[&front, &body, &back], 2)?);
                }
            }
            let [k, v] = kv.map(|parts| Tensor::cat(&parts, 0)?.contiguous());
            layers.push(LayerCache { k: k?, v: v? });
        }
        Ok(Self {
            layers,
            len: longest,
            pads,
            capacity,
        })
    }

    /// Keeps only `rows` (in that order), dropping finished sequences from the batch.
    pub fn select_rows(&mut self, rows: &[usize]) -> Result<()> {
        let Some(first) = self.layers.first() else {
            self.pads = rows.iter().map(|&r| self.pads[r]).collect();
            return Ok(());
        };
        let idx = Tensor::from_vec(
            rows.iter().map(|&r| r as u32).collect::<Vec<_>>(),
            rows.len(),
            first.k.device(),
        )?;
        for layer in &mut self.layers {
            layer.k = layer.k.index_select(&idx, 0)?;
            layer.v = layer.v.index_select(&idx, 0)?;
        }
        self.pads = rows.iter().map(|&r| self.pads[r]).collect();
        Ok(())
    }

    /// RoPE positions `[b, t]` and, when `with_mask`, the additive mask `[b, 1, 1, t, len + t]`
    /// for `t` new tokens (decode attention on the CPU reads the pads instead).
    fn step_inputs(
        &self,
        t: usize,
        device: &Device,
        with_mask: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let b = self.batch();
        let keys = self.len + t;
        let mut positions = Vec::with_capacity(b * t);
        let mut mask = Vec::with_capacity(if with_mask { b * t * keys } else { 0 });
        for &pad in &self.pads {
            for j in 0..t {
                let q = self.len + j;
                positions.push(q.saturating_sub(pad) as u32);
                if with_mask {
                    mask.extend((0..keys).map(|p| if p >= pad && p <= q { 0.0 } else { MASKED }));
                }
            }
        }
        let mask = with_mask
            .then(|| Tensor::from_vec(mask, (b, 1, 1, t, keys), device))
            .transpose()?;
        Ok((Tensor::from_vec(positions, (b, t), device)?, mask))
    }
}

impl Model {
    /// Builds the model over a `VarBuilder` (a `VarMap` for training, loaded tensors for
    /// inference). Names follow the Hugging Face checkpoint.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Self::build(cfg, vb, None, &mut dense_linear)
    }

    /// Builds the model with each linear layer (and optionally the embeddings) supplied by the
    /// caller; everything else (norms, biases) comes from `vb`.
    pub(crate) fn build(
        cfg: &Config,
        vb: VarBuilder,
        quantized_embeddings: Option<QTensor>,
        linear: &mut LinearFactory,
    ) -> Result<Self> {
        if !cfg
            .num_attention_heads
            .is_multiple_of(cfg.num_key_value_heads)
        {
            candle_core::bail!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                cfg.num_attention_heads,
                cfg.num_key_value_heads
            )
        }
        let device = vb.device().clone();
        let (h, nh, nkv, hd) = (
            cfg.hidden_size,
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let vb_m = vb.pp("model");
        let embed_tokens = match quantized_embeddings {
            Some(q) => Embedding::Quantized(std::sync::Arc::new(q)),
            None => Embedding::Dense(vb_m.pp("embed_tokens").get((cfg.vocab_size, h), "weight")?),
        };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let vb_l = vb_m.pp(format!("layers.{i}"));
            let p = format!("model.layers.{i}");
            let self_attn = Attention {
                q_proj: linear(
                    &format!("{p}.self_attn.q_proj"),
                    h,
                    nh * hd,
                    cfg.attention_bias,
                    &vb,
                )?,
                k_proj: linear(
                    &format!("{p}.self_attn.k_proj"),
                    h,
                    nkv * hd,
                    cfg.attention_bias,
                    &vb,
                )?,
                v_proj: linear(
                    &format!("{p}.self_attn.v_proj"),
                    h,
                    nkv * hd,
                    cfg.attention_bias,
                    &vb,
                )?,
                o_proj: linear(&format!("{p}.self_attn.o_proj"), nh * hd, h, false, &vb)?,
                n_head: nh,
                n_kv_head: nkv,
                head_dim: hd,
            };
            let mlp = Mlp {
                gate_proj: linear(
                    &format!("{p}.mlp.gate_proj"),
                    h,
                    cfg.intermediate_size,
                    false,
                    &vb,
                )?,
                up_proj: linear(
                    &format!("{p}.mlp.up_proj"),
                    h,
                    cfg.intermediate_size,
                    false,
                    &vb,
                )?,
                down_proj: linear(
                    &format!("{p}.mlp.down_proj"),
                    cfg.intermediate_size,
                    h,
                    false,
                    &vb,
                )?,
            };
            layers.push(DecoderLayer {
                self_attn,
                mlp,
                input_layernorm: RmsNorm::new(h, cfg.rms_norm_eps, vb_l.pp("input_layernorm"))?,
                post_attention_layernorm: RmsNorm::new(
                    h,
                    cfg.rms_norm_eps,
                    vb_l.pp("post_attention_layernorm"),
                )?,
            });
        }
        let norm = RmsNorm::new(h, cfg.rms_norm_eps, vb_m.pp("norm"))?;
        let lm_head = match (&embed_tokens, cfg.tie_word_embeddings) {
            (Embedding::Dense(w), true) => Linear::new(w.clone(), None)?,
            _ => linear("lm_head", h, cfg.vocab_size, false, &vb)?,
        };
        Ok(Self {
            cfg: cfg.clone(),
            embed_tokens,
            layers,
            norm,
            lm_head,
            rope: Rope::new(cfg, &device)?,
            device,
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Full-sequence logits `[b, t, vocab]` for `input_ids` `[b, t]` (u32), differentiable, no
    /// dropout. Every row starts at position 0 with a causal mask.
    pub fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        self.forward_t(input_ids, false)
    }

    /// [`Model::forward`] with LoRA dropout active when `train` is set.
    pub fn forward_t(&self, input_ids: &Tensor, train: bool) -> Result<Tensor> {
        let x = self.hidden_t(input_ids, train)?;
        self.lm_head.forward_t(&x, train)
    }

    /// The logits of only some positions: `rows` indexes the flattened `[b·t]` positions, the
    /// result is `[rows, vocab]`. Training needs logits only where there is a label; with a
    /// 150k vocabulary the full `[b, t, vocab]` logits (and their gradient) would be most of a
    /// short sequence's activation memory.
    pub fn forward_rows_t(&self, input_ids: &Tensor, rows: &Tensor, train: bool) -> Result<Tensor> {
        let x = self.hidden_t(input_ids, train)?;
        let (b, t, h) = x.dims3()?;
        let picked = x.reshape((b * t, h))?.index_select(rows, 0)?;
        self.lm_head.forward_t(&picked, train)
    }

    /// The final-norm hidden states `[b, t, hidden]`.
    fn hidden_t(&self, input_ids: &Tensor, train: bool) -> Result<Tensor> {
        let (_b, t) = input_ids.dims2()?;
        let mut mask = Vec::with_capacity(t * t);
        for q in 0..t {
            mask.extend((0..t).map(|k| if k <= q { 0.0 } else { MASKED }));
        }
        let mask_host: std::sync::Arc<[f32]> = mask.into();
        let mask = Tensor::from_slice(&mask_host, (1, 1, 1, t, t), &self.device)?;
        let step = Step {
            rope: &self.rope,
            positions: None,
            mask: Some(&mask),
            mask_host: Some(&mask_host),
            pads: None,
            train,
            fused: false,
        };
        let mut x = self.embed_tokens.forward(input_ids)?;
        for layer in &self.layers {
            x = self.layer_forward(layer, &x, &step, None)?;
        }
        self.norm.forward(&x, false)
    }

    /// Appends `input_ids` (`[b, t]`) to `cache` and returns the logits of the last position of
    /// each row, `[b, vocab]`. Inference only: uses fused kernels that have no backward pass.
    pub fn forward_with_cache(&self, input_ids: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        if b != cache.batch() {
            candle_core::bail!(
                "input batch {b} does not match the cache batch {}",
                cache.batch()
            )
        }
        if t > cache.remaining() {
            candle_core::bail!(
                "{t} new positions do not fit in the cache ({} of {} used)",
                cache.len,
                cache.capacity
            )
        }
        // One new token per row on the CPU: decode attention needs no mask (see Attention).
        let decode_on_cpu = t == 1 && self.device.is_cpu();
        let (positions, mask) = cache.step_inputs(t, &self.device, !decode_on_cpu)?;
        let step = Step {
            rope: &self.rope,
            positions: Some(&positions),
            mask: mask.as_ref(),
            mask_host: None,
            pads: Some(&cache.pads),
            train: false,
            fused: true,
        };
        let offset = cache.len;
        let mut x = self.embed_tokens.forward(input_ids)?;
        for (layer, lc) in self.layers.iter().zip(cache.layers.iter_mut()) {
            x = self.layer_forward(layer, &x, &step, Some((lc, offset)))?;
        }
        cache.len += t;
        let x = x.narrow(1, t - 1, 1)?.squeeze(1)?;
        let x = self.norm.forward(&x, true)?;
        self.lm_head.forward(&x)
    }

    fn layer_forward(
        &self,
        layer: &DecoderLayer,
        x: &Tensor,
        step: &Step,
        cache: Option<(&mut LayerCache, usize)>,
    ) -> Result<Tensor> {
        let h = layer.input_layernorm.forward(x, step.fused)?;
        let x = (x + layer.self_attn.forward(&h, step, cache)?)?;
        let h = layer.post_attention_layernorm.forward(&x, step.fused)?;
        x + layer.mlp.forward(&h, step.train)?
    }

    /// Every linear layer with its Hugging Face name (`model.layers.0.self_attn.q_proj`, …,
    /// `lm_head`), for attaching LoRA adapters. A tied `lm_head` is listed too.
    pub fn linears_mut(&mut self) -> impl Iterator<Item = (String, &mut Linear)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let p = format!("model.layers.{i}");
            let a = &mut layer.self_attn;
            out.push((format!("{p}.self_attn.q_proj"), &mut a.q_proj));
            out.push((format!("{p}.self_attn.k_proj"), &mut a.k_proj));
            out.push((format!("{p}.self_attn.v_proj"), &mut a.v_proj));
            out.push((format!("{p}.self_attn.o_proj"), &mut a.o_proj));
            let m = &mut layer.mlp;
            out.push((format!("{p}.mlp.gate_proj"), &mut m.gate_proj));
            out.push((format!("{p}.mlp.up_proj"), &mut m.up_proj));
            out.push((format!("{p}.mlp.down_proj"), &mut m.down_proj));
        }
        out.push(("lm_head".to_string(), &mut self.lm_head));
        out.into_iter()
    }

    /// Every linear layer with its Hugging Face name, read-only (for exports).
    pub fn linears(&self) -> impl Iterator<Item = (String, &Linear)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            let a = &layer.self_attn;
            out.push((format!("{p}.self_attn.q_proj"), &a.q_proj));
            out.push((format!("{p}.self_attn.k_proj"), &a.k_proj));
            out.push((format!("{p}.self_attn.v_proj"), &a.v_proj));
            out.push((format!("{p}.self_attn.o_proj"), &a.o_proj));
            let m = &layer.mlp;
            out.push((format!("{p}.mlp.gate_proj"), &m.gate_proj));
            out.push((format!("{p}.mlp.up_proj"), &m.up_proj));
            out.push((format!("{p}.mlp.down_proj"), &m.down_proj));
        }
        out.push(("lm_head".to_string(), &self.lm_head));
        out.into_iter()
    }
}

/// The Hugging Face name and shape of every tensor of a model with this configuration.
pub fn tensor_shapes(cfg: &Config) -> Vec<(String, Vec<usize>)> {
    let (h, nh, nkv, hd, ff) = (
        cfg.hidden_size,
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.head_dim,
        cfg.intermediate_size,
    );
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![cfg.vocab_size, h],
    )];
    for i in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{i}");
        out.push((format!("{p}.input_layernorm.weight"), vec![h]));
        out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
        for (name, rows, cols) in [
            ("q_proj", nh * hd, h),
            ("k_proj", nkv * hd, h),
            ("v_proj", nkv * hd, h),
            ("o_proj", h, nh * hd),
        ] {
            out.push((format!("{p}.self_attn.{name}.weight"), vec![rows, cols]));
            if cfg.attention_bias && name != "o_proj" {
                out.push((format!("{p}.self_attn.{name}.bias"), vec![rows]));
            }
        }
        out.push((format!("{p}.mlp.gate_proj.weight"), vec![ff, h]));
        out.push((format!("{p}.mlp.up_proj.weight"), vec![ff, h]));
        out.push((format!("{p}.mlp.down_proj.weight"), vec![h, ff]));
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    if !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![cfg.vocab_size, h]));
    }
    out
}
