//! Examples to token sequences, and sequences to padded micro-batches with a loss mask.
//!
//! A training sequence is `prompt tokens + completion tokens + end-of-text`, truncated from the
//! right to `max_len` tokens, with loss only on the completion and the end-of-text token
//! (`ilf-method.md` sections 3.2–3.3). Prompt and completion are tokenized separately, so the mask
//! boundary falls exactly between them (joint tokenization could merge a token across it).

use crate::data::Example;
use crate::error::TrainError;
use candle_core::{Device, Tensor};
use tokenizers::Tokenizer;

/// One tokenized example: `ids[..prompt_len]` is context, `ids[prompt_len..]` is learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    pub ids: Vec<u32>,
    pub prompt_len: usize,
}

impl Sequence {
    /// How many tokens carry loss: each target token needs a position before it to predict it.
    pub fn target_tokens(&self) -> usize {
        self.ids.len() - self.prompt_len.max(1)
    }

    /// The row for a [`MicroBatch`] whose labels are the sequence itself (the normal case).
    pub fn row(&self) -> Row<'_> {
        Row {
            inputs: &self.ids,
            labels: &self.ids,
            prompt_len: self.prompt_len,
        }
    }
}

/// Token names tried, in order, for the end-of-text token that ends every target.
pub const END_OF_TEXT_CANDIDATES: [&str; 4] = ["<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>"];

/// The end-of-text token id: `explicit` if given (it must be in the vocabulary), else the first of
/// [`END_OF_TEXT_CANDIDATES`] the tokenizer knows, else the model's configured EOS id.
pub fn resolve_end_of_text(
    tokenizer: &Tokenizer,
    explicit: Option<&str>,
    config_eos: Option<u32>,
) -> Result<u32, TrainError> {
    if let Some(token) = explicit {
        return tokenizer.token_to_id(token).ok_or_else(|| {
            TrainError::InvalidSetting(format!(
                "--eos-token `{token}` is not in the tokenizer's vocabulary"
            ))
        });
    }
    END_OF_TEXT_CANDIDATES
        .iter()
        .find_map(|t| tokenizer.token_to_id(t))
        .or(config_eos)
        .ok_or_else(|| TrainError::NoEndOfText {
            tried: END_OF_TEXT_CANDIDATES.join(", "),
        })
}

/// Tokenizes one example into a training sequence; fails when truncation would leave no
/// completion token to learn.
pub fn encode(
    tokenizer: &Tokenizer,
    example: &Example,
    end_of_text: u32,
    max_len: usize,
) -> Result<Sequence, TrainError> {
    let tokens = |text: &str| -> Result<Vec<u32>, TrainError> {
        Ok(tokenizer
            .encode(text, false)
            .map_err(|e| TrainError::BadRecord {
                origin: example.origin.clone(),
                reason: format!("the tokenizer failed on it ({e})"),
            })?
            .get_ids()
            .to_vec())
    };
    let prompt = tokens(&example.prompt)?;
    let completion = tokens(&example.completion)?;
    let prompt_len = prompt.len();
    let mut ids = prompt;
    ids.extend(completion);
    ids.push(end_of_text);
    ids.truncate(max_len);
    let sequence = Sequence { ids, prompt_len };
    if sequence.ids.len() <= prompt_len || sequence.target_tokens() == 0 {
        return Err(TrainError::CompletionTruncatedAway {
            origin: example.origin.clone(),
            prompt_tokens: prompt_len,
            max_len,
        });
    }
    Ok(sequence)
}

/// One row of a micro-batch. `labels` is what each position's predecessor should predict; it
/// equals `inputs` in training and differs only in tests that prove masked labels are ignored.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub inputs: &'a [u32],
    pub labels: &'a [u32],
    pub prompt_len: usize,
}

/// Padded input ids plus the flat positions whose next-token prediction carries loss.
#[derive(Debug, Clone)]
pub struct MicroBatch {
    /// `[batch, time]` u32, right-padded: causal attention keeps padding invisible to real tokens.
    pub input_ids: Tensor,
    /// `[targets]` u32: row-major indices into the `[batch * time]` flattened positions.
    pub positions: Tensor,
    /// `[targets]` u32: the token each of those positions should predict.
    pub labels: Tensor,
    /// Real (non-padding) tokens in the batch: the "tokens" of tokens per second.
    pub tokens: usize,
    /// Positions carrying loss.
    pub targets: usize,
}

impl MicroBatch {
    /// Pads `rows` to the longest with `pad_id` and collects the loss positions.
    pub fn new(rows: &[Row<'_>], pad_id: u32, device: &Device) -> candle_core::Result<Self> {
        let time = rows.iter().map(|r| r.inputs.len()).max().unwrap_or(0);
        let mut input_ids = Vec::with_capacity(rows.len() * time);
        let mut positions = Vec::new();
        let mut labels = Vec::new();
        let mut tokens = 0;
        for (r, row) in rows.iter().enumerate() {
            assert_eq!(
                row.inputs.len(),
                row.labels.len(),
                "labels must align with inputs"
            );
            input_ids.extend_from_slice(row.inputs);
            input_ids.extend(std::iter::repeat_n(pad_id, time - row.inputs.len()));
            tokens += row.inputs.len();
            for j in row.prompt_len.max(1)..row.inputs.len() {
                positions.push((r * time + j - 1) as u32);
                labels.push(row.labels[j]);
            }
        }
        let targets = positions.len();
        Ok(Self {
            input_ids: Tensor::from_vec(input_ids, (rows.len(), time), device)?,
            positions: Tensor::from_vec(positions, targets, device)?,
            labels: Tensor::from_vec(labels, targets, device)?,
            tokens,
            targets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Origin;
    use std::collections::HashMap;
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;

    /// A word-level tokenizer: one id per whitespace-separated word, so counts are obvious.
    fn words() -> Tokenizer {
        let vocab: HashMap<String, u32> = ["<unk>", "<|endoftext|>", "a", "b", "c", "d"]
            .iter()
            .enumerate()
            .map(|(i, w)| (w.to_string(), i as u32))
            .collect();
        let model = WordLevel::builder()
            .vocab(vocab.into_iter().collect())
            .unk_token("<unk>".into())
            .build()
            .unwrap();
        let mut tokenizer = Tokenizer::new(model);
        tokenizer.with_pre_tokenizer(Some(WhitespaceSplit));
        tokenizer
    }

    fn example(prompt: &str, completion: &str) -> Example {
        Example {
            prompt: prompt.into(),
            completion: completion.into(),
            origin: Origin {
                file: "t.jsonl".into(),
                line: 4,
                task_id: Some("11".into()),
            },
        }
    }

    #[test]
    fn sequence_is_prompt_completion_end_of_text() {
        let tok = words();
        let eos = resolve_end_of_text(&tok, None, None).unwrap();
        assert_eq!(eos, 1);
        let s = encode(&tok, &example("a b", "c d"), eos, 1024).unwrap();
        assert_eq!(s.ids, vec![2, 3, 4, 5, 1]);
        assert_eq!(s.prompt_len, 2);
        assert_eq!(s.target_tokens(), 3);
    }

    #[test]
    fn truncation_cuts_from_the_right_and_refuses_to_empty_the_completion() {
        let tok = words();
        let s = encode(&tok, &example("a b", "c d"), 1, 3).unwrap();
        assert_eq!(s.ids, vec![2, 3, 4]);
        let err = encode(&tok, &example("a b c", "d"), 1, 3).unwrap_err();
        let text = err.to_string();
        assert!(matches!(
            err,
            TrainError::CompletionTruncatedAway {
                prompt_tokens: 3,
                max_len: 3,
                ..
            }
        ));
        assert!(text.contains("t.jsonl:4 (task 11)"), "{text}");
    }

    #[test]
    fn explicit_end_of_text_must_exist() {
        let tok = words();
        assert_eq!(resolve_end_of_text(&tok, Some("d"), None).unwrap(), 5);
        assert!(resolve_end_of_text(&tok, Some("<nope>"), None).is_err());
    }

    #[test]
    fn micro_batch_pads_right_and_masks_prompt_predictions() {
        let a = Sequence {
            ids: vec![2, 3, 4, 1],
            prompt_len: 2,
        };
        let b = Sequence {
            ids: vec![5, 1],
            prompt_len: 1,
        };
        let batch = MicroBatch::new(&[a.row(), b.row()], 0, &Device::Cpu).unwrap();
        assert_eq!(
            batch.input_ids.to_vec2::<u32>().unwrap(),
            vec![vec![2, 3, 4, 1], vec![5, 1, 0, 0]]
        );
        // Row 0 positions 1 and 2 predict tokens 4 and 1; row 1 position 0 (flat 4) predicts 1.
        assert_eq!(batch.positions.to_vec1::<u32>().unwrap(), vec![1, 2, 4]);
        assert_eq!(batch.labels.to_vec1::<u32>().unwrap(), vec![4, 1, 1]);
        assert_eq!((batch.tokens, batch.targets), (6, 3));
    }
}
