//! Tests on the real default model, Qwen2.5-Coder-0.5B-Instruct. CI runs `ilf models fetch`
//! first; without the file these tests fail with instructions, unless `ILF_SKIP_REAL_MODEL=1`.

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use ilf_lm::sampling::{FinishReason, GenRequest, Generator, LocalGenerator, SamplingParams};
use ilf_lm::{load, registry, LoadMode};
use std::path::PathBuf;

/// The paper prompt of MBPP task 11 (ilf-method.md section 3.1).
const TASK_11_PROMPT: &str = "\"\"\"\nWrite a python function to remove first and last occurrence of a given character from the string.\n\n>>> Example: remove_Occ(\"hello\",\"l\") = \"heo\"\n\"\"\"\n\ndef remove_Occ(s,ch):\n";

const TASK_11_IDS: [u32; 43] = [
    7129, 7985, 264, 10135, 729, 311, 4057, 1156, 323, 1537, 31559, 315, 264, 2661, 3668, 504, 279,
    914, 382, 20154, 13383, 25, 4057, 2232, 638, 445, 14990, 2198, 75, 899, 284, 330, 383, 78, 698,
    15075, 750, 4057, 2232, 638, 1141, 69997, 982,
];

/// The fetched default model, or `None` when the user opted out of real-model tests.
fn model_path() -> Option<PathBuf> {
    if std::env::var("ILF_SKIP_REAL_MODEL").is_ok_and(|v| v == "1") {
        return None;
    }
    let entry = registry::find(registry::DEFAULT).unwrap();
    let path = ilf_lm::fetch::model_path(entry);
    assert!(
        path.is_file(),
        "real-model test: {} is missing; run `ilf models fetch` (or set ILF_SKIP_REAL_MODEL=1 to skip these tests)",
        path.display()
    );
    Some(path)
}

#[test]
fn task_11_prompt_tokenizes_to_the_reference_ids() {
    let Some(path) = model_path() else { return };
    let mut file = std::fs::File::open(&path).unwrap();
    let ct = gguf_file::Content::read(&mut file).unwrap();
    let (tok, info) = ilf_lm::tokenizer::from_gguf(&ct).unwrap();
    let ids = ilf_lm::tokenizer::encode(&tok, TASK_11_PROMPT).unwrap();
    assert_eq!(ids, TASK_11_IDS);
    assert_eq!(
        ilf_lm::tokenizer::decode(&tok, &ids).unwrap(),
        TASK_11_PROMPT
    );
    assert!(
        info.eos_token_ids.contains(&151645) && info.eos_token_ids.contains(&151643),
        "{:?}",
        info.eos_token_ids
    );
    assert_eq!(tok.token_to_id("<|im_start|>"), Some(151644));
    let chat = ilf_lm::tokenizer::encode(&tok, "<|im_start|>user\nhi<|im_end|>").unwrap();
    assert_eq!(chat[0], 151644);
    assert_eq!(*chat.last().unwrap(), 151645);
    assert!(info.chat_template.unwrap().contains("im_start"));
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}

#[test]
fn logits_match_candle_transformers_quantized_qwen2() {
    let Some(path) = model_path() else { return };
    let device = Device::Cpu;
    let mut file = std::fs::File::open(&path).unwrap();
    let ct = gguf_file::Content::read(&mut file).unwrap();
    let mut reference = candle_transformers::models::quantized_qwen2::ModelWeights::from_gguf(
        ct, &mut file, &device,
    )
    .unwrap();
    let input = Tensor::new(&TASK_11_IDS, &device)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let expected = reference
        .forward(&input, 0)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    for mode in [LoadMode::F32, LoadMode::Inference, LoadMode::Quantized] {
        let loaded = load(path.to_str().unwrap(), &device, mode).unwrap();
        let mut cache =
            ilf_lm::KvCache::new(&loaded.config, 1, TASK_11_IDS.len(), &device).unwrap();
        let ours = loaded
            .model
            .forward_with_cache(&input, &mut cache)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let diff = max_abs_diff(&ours, &expected);
        eprintln!("{mode:?}: max |logit diff| vs candle-transformers quantized_qwen2 = {diff}");
        assert_eq!(argmax(&ours), argmax(&expected), "{mode:?}");
        // Dequantized f32 weights against quantized matmuls (which also quantize activations to
        // Q8): a few tenths at most on logits of magnitude ~20.
        let bound = 0.5;
        assert!(diff < bound, "{mode:?}: max diff {diff}");
    }
}

#[test]
fn greedy_completion_of_task_11() {
    let Some(path) = model_path() else { return };
    let loaded = load(path.to_str().unwrap(), &Device::Cpu, LoadMode::Inference).unwrap();
    let generator = LocalGenerator {
        model: &loaded.model,
        tokenizer: &loaded.tokenizer,
        eos_token_ids: loaded.info.eos_token_ids.clone(),
        batch_size: 1,
    };
    let params = SamplingParams {
        temperature: 0.0,
        top_p: 1.0,
        top_k: 0,
        max_tokens: 40,
    };
    let stop = |text: &str| text.find("\n#");
    let gens = generator
        .generate_all(&[GenRequest::new(TASK_11_PROMPT, 1, 0, params)], &stop)
        .unwrap();
    let g = &gens[0][0];
    eprintln!("{:?} {:?}", g.finish_reason, g.completion);
    assert!(
        g.completion.starts_with("    s = s.replace(ch,\"\")\n"),
        "{:?}",
        g.completion
    );
    assert!(g.completion.contains("return s"), "{:?}", g.completion);
    assert_eq!(g.finish_reason, FinishReason::Stop);
}

/// A sample's text does not depend on its batch on the real model either: six prompts of
/// different lengths (so rows are padded differently) × 5 samples at T = 0.8, one at a time and
/// 30 together with rows retiring. With attention computed by candle's batched matmuls over the
/// padded length, 6 of 30 completions of MBPP tasks 11–16 changed between these batch sizes.
#[test]
fn sampled_text_does_not_depend_on_the_batch() {
    let Some(path) = model_path() else { return };
    let loaded = load(path.to_str().unwrap(), &Device::Cpu, LoadMode::Inference).unwrap();
    let params = SamplingParams {
        temperature: 0.8,
        top_p: 1.0,
        top_k: 0,
        max_tokens: 96,
    };
    let prompts = [
        TASK_11_PROMPT,
        "def fib(n):\n",
        "\"\"\"\nWrite a function to find the shared elements from the given two lists.\n\n>>> Example: similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) = (4, 5)\n\"\"\"\n\ndef similar_elements(test_tup1, test_tup2):\n",
        "import math\n\ndef is_not_prime(n):\n",
        "# Return the n largest integers from a list, in descending order.\nimport heapq\ndef heap_queue_largest(nums, n):\n",
        "def count_ways(n):\n    \"\"\"Ways to fill a 3 x n board with 2 x 1 dominoes.\"\"\"\n",
    ];
    let requests: Vec<GenRequest> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| GenRequest::new(*p, 5, i as u64, params))
        .collect();
    // Stopping at the first unindented line ends rows at different steps.
    let stop = |text: &str| {
        text.match_indices('\n')
            .find(|(i, _)| {
                let rest = &text[i + 1..];
                !rest.is_empty() && !rest.starts_with([' ', '\t', '\n'])
            })
            .map(|(i, _)| i)
    };
    let run = |batch_size| {
        LocalGenerator {
            model: &loaded.model,
            tokenizer: &loaded.tokenizer,
            eos_token_ids: loaded.info.eos_token_ids.clone(),
            batch_size,
        }
        .generate_all(&requests, &stop)
        .unwrap()
    };
    let alone = run(1);
    let together = run(30);
    let same = alone
        .iter()
        .flatten()
        .zip(together.iter().flatten())
        .filter(|(a, b)| a == b)
        .count();
    assert_eq!(
        same, 30,
        "{same} of 30 samples equal between batch sizes 1 and 30"
    );
    let lengths: std::collections::BTreeSet<usize> =
        alone.iter().flatten().map(|g| g.tokens).collect();
    assert!(
        lengths.len() >= 3,
        "rows should end at different steps: {lengths:?}"
    );
}
