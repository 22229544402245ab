//! The masked next-token loss: mean cross-entropy over the micro-batch's target positions only.

use crate::encode::MicroBatch;
use candle_core::{Result, Tensor, D};

/// Mean negative log-likelihood of `batch.labels` at `batch.positions` under `logits`
/// (`[batch, time, vocab]`). Positions outside the mask never enter the graph, so their logits
/// get exactly zero gradient. Computed in f32 whatever the logits' dtype.
pub fn masked_loss(logits: &Tensor, batch: &MicroBatch) -> Result<Tensor> {
    let (b, t, vocab) = logits.dims3()?;
    let picked = logits
        .reshape((b * t, vocab))?
        .index_select(&batch.positions, 0)?
        .to_dtype(candle_core::DType::F32)?;
    let log_probs = candle_nn::ops::log_softmax(&picked, D::Minus1)?;
    log_probs
        .gather(&batch.labels.unsqueeze(1)?, 1)?
        .mean_all()?
        .neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::Sequence;
    use candle_core::Device;

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
}
