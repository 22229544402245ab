//! Attention for one new token per row against the KV cache, row by row over each row's own
//! positions only.
//!
//! Why not candle's batched matmuls: rows of a batch are left-padded to a common length, and a
//! GEMM over the padded length sums a row's terms in an order that depends on its padding, that
//! is on the other prompts in the batch. The last-bit differences were enough to change 6 of 30
//! sampled completions between batch sizes 1 and 32 on Qwen2.5-Coder-0.5B. Here each (row, head)
//! reads positions `pad..len` in order, so a sample's text does not depend on its batch, and
//! padding costs nothing.

use crate::op_storage::contiguous_f32;
use candle_core::{Result, Storage, Tensor};
use rayon::prelude::*;

/// `softmax(q·kᵀ · scale) · v` for `q` of `[b, n_head, 1, d]` against the cache's `k`/`v`
/// (`[b, n_kv_head, capacity, d]`, positions `pads[i]..len` valid for row `i`). Returns
/// `[b, n_head, 1, d]`. Query head `h` reads key/value head `h / (n_head / n_kv_head)`.
pub fn decode_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    pads: &[usize],
    len: usize,
    scale: f32,
) -> Result<Tensor> {
    let (b, nh, t, d) = q.dims4()?;
    let (kb, nkv, cap, kd) = k.dims4()?;
    if t != 1 || kb != b || kd != d || pads.len() != b || len > cap || nkv == 0 || nh % nkv != 0 {
        candle_core::bail!(
            "decode_attention: q {:?}, cache {:?}, {} pads, length {len}",
            q.shape(),
            k.shape(),
            pads.len()
        )
    }
    let rep = nh / nkv;
    let q = q.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let (ks, kl) = k.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let (Storage::Cpu(ks), Storage::Cpu(vs)) = (&*ks, &*vs) else {
        candle_core::bail!("decode_attention: the cache must be on the CPU")
    };
    let kc = contiguous_f32(ks, kl, "decode_attention")?;
    let vc = contiguous_f32(vs, vl, "decode_attention")?;
    let mut out = vec![0f32; b * nh * d];
    out.par_chunks_mut(d).enumerate().for_each(|(bh, y)| {
        let (i, h) = (bh / nh, bh % nh);
        let base = (i * nkv + h / rep) * cap * d;
        let qv = &q[bh * d..(bh + 1) * d];
        let start = pads[i].min(len);
        // Scores, then their exponentials in the same buffer.
        let mut weights: Vec<f32> = (start..len)
            .map(|p| {
                let kv = &kc[base + p * d..base + (p + 1) * d];
                qv.iter().zip(kv).map(|(a, b)| a * b).sum::<f32>() * scale
            })
            .collect();
        let max = weights.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for w in &mut weights {
            *w = (*w - max).exp();
        }
        let total: f32 = weights.iter().sum();
        for (w, p) in weights.iter().zip(start..len) {
            let vv = &vc[base + p * d..base + (p + 1) * d];
            let w = w / total;
            for (o, x) in y.iter_mut().zip(vv) {
                *o += w * x;
            }
        }
    });
    Tensor::from_vec(out, (b, nh, 1, d), k.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, D};

    /// Against candle's masked softmax and matmuls, and unchanged by padding.
    #[test]
    fn equals_masked_attention_and_ignores_padding() -> Result<()> {
        let dev = Device::Cpu;
        let (b, nh, nkv, d, cap, len) = (3, 4, 2, 8, 12, 9);
        let q = Tensor::randn(0f32, 1.0, (b, nh, 1, d), &dev)?;
        let k = Tensor::randn(0f32, 1.0, (b, nkv, cap, d), &dev)?;
        let v = Tensor::randn(0f32, 1.0, (b, nkv, cap, d), &dev)?;
        let pads = [0usize, 3, 8];
        let ours = decode_attention(&q, &k, &v, &pads, len, 0.5)?;
        // Reference: masked softmax over the padded length.
        let rep = nh / nkv;
        let kk = k.narrow(2, 0, len)?;
        let vv = v.narrow(2, 0, len)?;
        let qr = q.reshape((b, nkv, rep, d))?;
        let raw = (qr.matmul(&kk.t()?)? * 0.5)?;
        let mask: Vec<f32> = pads
            .iter()
            .flat_map(|&p| (0..len).map(move |j| if j >= p { 0.0 } else { f32::NEG_INFINITY }))
            .collect();
        let mask = Tensor::from_vec(mask, (b, 1, 1, len), &dev)?;
        let probs = candle_nn::ops::softmax(&raw.broadcast_add(&mask)?, D::Minus1)?;
        let want = probs.matmul(&vv.contiguous()?)?.reshape((b, nh, 1, d))?;
        let diff = (&ours - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "differs by {diff}");

        // Row 1 alone, with its content moved to another padding, gives the same bits.
        let row = |t: &Tensor| t.narrow(0, 1, 1);
        let (k1, v1) = (row(&k)?, row(&v)?);
        let shift = |t: &Tensor| -> Result<Tensor> {
            let body = t.narrow(2, pads[1], len - pads[1])?;
            let front = Tensor::zeros((1, nkv, 1, d), candle_core::DType::F32, &dev)?;
            let back = Tensor::zeros(
                (1, nkv, cap - (len - pads[1]) - 1, d),
                candle_core::DType::F32,
                &dev,
            )?;
            Tensor::cat(&[&front, &body, &back], 2)
        };
        let alone = decode_attention(
            &row(&q)?,
            &shift(&k1)?,
            &shift(&v1)?,
            &[1],
            len - pads[1] + 1,
            0.5,
        )?;
        assert_eq!(
            alone.flatten_all()?.to_vec1::<f32>()?,
            row(&ours)?.flatten_all()?.to_vec1::<f32>()?
        );
        Ok(())
    }
}
