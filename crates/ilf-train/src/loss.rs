//! The masked next-token loss: mean cross-entropy over the micro-batch's target positions only.
//!
//! Cross-entropy is one fused op with its own backward (`softmax − one-hot`): composed from
//! candle ops (`log_softmax`, `gather`) it makes about ten passes over the `[targets, vocab]`
//! logits (150k columns for Qwen2), forward and backward; fused it makes three.

use crate::encode::MicroBatch;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Mean negative log-likelihood of `batch.labels` at `batch.positions` under `logits`
/// (`[batch, time, vocab]`). Positions outside the mask never enter the graph, so their logits
/// get exactly zero gradient. Computed in f32 whatever the logits' dtype.
pub fn masked_loss(logits: &Tensor, batch: &MicroBatch) -> Result<Tensor> {
    let (b, t, vocab) = logits.dims3()?;
    let picked = logits
        .reshape((b * t, vocab))?
        .index_select(&batch.positions, 0)?
        .to_dtype(candle_core::DType::F32)?
        .contiguous()?;
    let labels = batch.labels.to_vec1::<u32>()?;
    picked.apply_op1(CrossEntropy { labels })?.mean_all()
}

/// Mean negative log-likelihood of `batch.labels` under `logits` that are already the target
/// positions' rows (`[targets, vocab]`, from [`ilf_lm::models::Model::forward_rows_t`]).
pub fn rows_loss(logits: &Tensor, batch: &MicroBatch) -> Result<Tensor> {
    let labels = batch.labels.to_vec1::<u32>()?;
    logits
        .to_dtype(candle_core::DType::F32)?
        .contiguous()?
        .apply_op1(CrossEntropy { labels })?
        .mean_all()
}

/// Per-row `logsumexp(x) − x[label]` of `[rows, vocab]` logits.
struct CrossEntropy {
    labels: Vec<u32>,
}

fn rows_of<'a>(s: &'a CpuStorage, l: &Layout, vocab: usize) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) if (end - start) % vocab == 0 => {
            Ok(&data[start..end])
        }
        _ => candle_core::bail!("cross-entropy: expected contiguous f32 logits"),
    }
}

/// `(max, ln Σ exp(x − max))` of one row, summed in f64 (150k terms).
fn log_sum_exp(row: &[f32]) -> (f32, f32) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&x| ((x - max) as f64).exp()).sum();
    (max, sum.ln() as f32)
}

impl CustomOp1 for CrossEntropy {
    fn name(&self) -> &'static str {
        "cross-entropy"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (rows, vocab) = layout.shape().dims2()?;
        if rows != self.labels.len() {
            candle_core::bail!(
                "cross-entropy: {rows} rows but {} labels",
                self.labels.len()
            );
        }
        let data = rows_of(storage, layout, vocab)?;
        let losses: Vec<f32> = data
            .par_chunks(vocab)
            .zip(self.labels.par_iter())
            .map(|(row, &label)| {
                let (max, lse) = log_sum_exp(row);
                max + lse - row[label as usize]
            })
            .collect();
        Ok((CpuStorage::F32(losses), Shape::from(rows)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (rows, vocab) = arg.dims2()?;
        let upstream = grad_res.to_vec1::<f32>()?;
        let (storage, layout) = arg.storage_and_layout();
        let candle_core::Storage::Cpu(cpu) = &*storage else {
            candle_core::bail!("cross-entropy backward runs on the CPU");
        };
        let data = rows_of(cpu, layout, vocab)?;
        let mut grad = vec![0f32; rows * vocab];
        grad.par_chunks_mut(vocab)
            .zip(data.par_chunks(vocab))
            .zip(self.labels.par_iter().zip(upstream.par_iter()))
            .for_each(|((g, row), (&label, &up))| {
                let (max, lse) = log_sum_exp(row);
                let shift = max + lse;
                for (g, &x) in g.iter_mut().zip(row) {
                    *g = up * (x - shift).exp();
                }
                g[label as usize] -= up;
            });
        drop(storage);
        Ok(Some(Tensor::from_vec(grad, (rows, vocab), arg.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::Sequence;
    use candle_core::{Device, Var, D};

    #[test]
    fn equals_hand_computed_cross_entropy_on_target_positions() {
        let dev = Device::Cpu;
        let seq = Sequence {
            ids: vec![0, 1, 2],
            prompt_len: 1,
        };
        let batch = MicroBatch::new(&[seq.row()], 0, &dev).unwrap();
        let rows = [[0.5f32, 1.0, -1.0], [2.0, 0.0, 0.1], [0.3, 0.2, 0.9]];
        let logits = Tensor::new(&rows, &dev).unwrap().unsqueeze(0).unwrap();
        let loss = masked_loss(&logits, &batch)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let nll = |row: &[f32; 3], target: usize| {
            let lse = row.iter().map(|x| x.exp()).sum::<f32>().ln();
            lse - row[target]
        };
        // Position 0 predicts id 1, position 1 predicts id 2; position 2 predicts nothing.
        let expected = (nll(&rows[0], 1) + nll(&rows[1], 2)) / 2.0;
        assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
    }

    #[test]
    fn fused_gradient_equals_candles_composed_one() {
        let dev = Device::Cpu;
        let seq = Sequence {
            ids: vec![3, 1, 4, 1, 5],
            prompt_len: 2,
        };
        let batch = MicroBatch::new(&[seq.row()], 0, &dev).unwrap();
        let values: Vec<f32> = (0..5 * 7)
            .map(|i| ((i * 13 % 11) as f32 - 5.0) * 0.3)
            .collect();
        let logits = Var::from_vec(values, (1, 5, 7), &dev).unwrap();
        let fused = masked_loss(logits.as_tensor(), &batch).unwrap();
        let g_fused = fused
            .backward()
            .unwrap()
            .get(logits.as_tensor())
            .unwrap()
            .clone();
        let picked = logits
            .as_tensor()
            .reshape((5, 7))
            .unwrap()
            .index_select(&batch.positions, 0)
            .unwrap();
        let composed = candle_nn::ops::log_softmax(&picked, D::Minus1)
            .unwrap()
            .gather(&batch.labels.unsqueeze(1).unwrap(), 1)
            .unwrap()
            .mean_all()
            .unwrap()
            .neg()
            .unwrap();
        let g_composed = composed
            .backward()
            .unwrap()
            .get(logits.as_tensor())
            .unwrap()
            .clone();
        let loss_diff =
            (fused.to_scalar::<f32>().unwrap() - composed.to_scalar::<f32>().unwrap()).abs();
        assert!(loss_diff < 1e-6, "{loss_diff}");
        let grad_diff = (g_fused - g_composed)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(grad_diff < 1e-6, "{grad_diff}");
    }
}
