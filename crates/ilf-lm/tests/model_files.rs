//! Loading GGUF files and Hugging Face directories, written here from tiny random models with a
//! tokenizer trained in the test: the loaders must reproduce the model exactly (Llama's GGUF q/k
//! permutation included) and name what is wrong with a bad file.

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use ilf_lm::models::{Architecture, Config};
use ilf_lm::{load, tiny_random_weights, tokenizer, LoadMode, Model, Tokenizer};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn tok() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        tokenizer::train_byte_level_bpe(&tokenizer::stdlib_corpus(300_000).unwrap(), 400).unwrap()
    })
}

fn gguf_name(hf: &str) -> String {
    let fixed = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ];
    if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
        return g.to_string();
    }
    let rest = hf.strip_prefix("model.layers.").unwrap();
    let (layer, rest) = rest.split_once('.').unwrap();
    let map = [
        ("input_layernorm", "attn_norm"),
        ("post_attention_layernorm", "ffn_norm"),
        ("self_attn.q_proj", "attn_q"),
        ("self_attn.k_proj", "attn_k"),
        ("self_attn.v_proj", "attn_v"),
        ("self_attn.o_proj", "attn_output"),
        ("mlp.gate_proj", "ffn_gate"),
        ("mlp.up_proj", "ffn_up"),
        ("mlp.down_proj", "ffn_down"),
    ];
    let (h, g) = map.iter().find(|(h, _)| rest.starts_with(h)).unwrap();
    format!("blk.{layer}.{g}{}", &rest[h.len()..])
}

/// llama.cpp's `permute` of q/k rows (the inverse of what the loader undoes).
fn permute(w: &Tensor, heads: usize) -> Tensor {
    let (rows, cols) = w.dims2().unwrap();
    w.reshape((heads, 2, rows / heads / 2, cols))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape((rows, cols))
        .unwrap()
}

struct Options<'a> {
    architecture_name: &'a str,
    matrix_dtype: GgmlDType,
    skip: Option<&'a str>,
}

fn write_gguf(cfg: &Config, weights: &HashMap<String, Tensor>, path: &Path, opts: Options) {
    use gguf_file::Value;
    let arch = opts.architecture_name;
    let mut vocab: Vec<(String, u32)> = tok().get_vocab(true).into_iter().collect();
    vocab.sort_by_key(|(_, id)| *id);
    let spec: serde_json::Value = serde_json::from_str(&tok().to_string(false).unwrap()).unwrap();
    let merges: Vec<Value> = spec["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => Value::String(s.clone()),
            pair => Value::String(format!(
                "{} {}",
                pair[0].as_str().unwrap(),
                pair[1].as_str().unwrap()
            )),
        })
        .collect();
    let u = |v: usize| Value::U32(v as u32);
    let metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        (format!("{arch}.embedding_length"), u(cfg.hidden_size)),
        (format!("{arch}.block_count"), u(cfg.num_hidden_layers)),
        (
            format!("{arch}.feed_forward_length"),
            u(cfg.intermediate_size),
        ),
        (
            format!("{arch}.attention.head_count"),
            u(cfg.num_attention_heads),
        ),
        (
            format!("{arch}.attention.head_count_kv"),
            u(cfg.num_key_value_heads),
        ),
        (
            format!("{arch}.context_length"),
            u(cfg.max_position_embeddings),
        ),
        (
            format!("{arch}.attention.layer_norm_rms_epsilon"),
            Value::F32(cfg.rms_norm_eps as f32),
        ),
        (
            format!("{arch}.rope.freq_base"),
            Value::F32(cfg.rope_theta as f32),
        ),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("qwen2".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(
                vocab
                    .iter()
                    .map(|(t, _)| Value::String(t.clone()))
                    .collect(),
            ),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(
                vocab
                    .iter()
                    .map(|(_, id)| Value::I32(if *id == 0 { 3 } else { 1 }))
                    .collect(),
            ),
        ),
        ("tokenizer.ggml.merges".into(), Value::Array(merges)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(0)),
    ];
    let mut names: Vec<&String> = weights.keys().collect();
    names.sort();
    let mut tensors = Vec::new();
    for hf in names {
        let g = gguf_name(hf);
        if opts.skip == Some(g.as_str()) {
            continue;
        }
        let mut t = weights[hf].clone();
        if cfg.architecture == Architecture::Llama && hf.ends_with("q_proj.weight") {
            t = permute(&t, cfg.num_attention_heads);
        } else if cfg.architecture == Architecture::Llama && hf.ends_with("k_proj.weight") {
            t = permute(&t, cfg.num_key_value_heads);
        }
        let dtype = if t.rank() == 2 {
            opts.matrix_dtype
        } else {
            GgmlDType::F32
        };
        tensors.push((g, QTensor::quantize(&t, dtype).unwrap()));
    }
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut file = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut file, &md, &ts).unwrap();
}

fn reference(arch: Architecture) -> (Config, HashMap<String, Tensor>, Model) {
    let cfg = Config::tiny(arch, tok().get_vocab_size(true));
    let weights = tiny_random_weights(&cfg, 21, &Device::Cpu).unwrap();
    let model = ilf_lm::tiny_random(&cfg, 21, &Device::Cpu).unwrap();
    (cfg, weights, model)
}

const TEXT: &str = "def add(a, b):\n    return a + b\n";

fn logits(model: &Model) -> Tensor {
    let ids = tokenizer::encode(tok(), TEXT).unwrap();
    model
        .forward(
            &Tensor::new(ids.as_slice(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap(),
        )
        .unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn spec(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn gguf_files_load_to_the_same_model_and_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    for arch in [Architecture::Qwen2, Architecture::Llama] {
        let (cfg, weights, model) = reference(arch);
        let path = dir.path().join(format!("{}.gguf", arch.name()));
        write_gguf(
            &cfg,
            &weights,
            &path,
            Options {
                architecture_name: arch.name(),
                matrix_dtype: GgmlDType::F32,
                skip: None,
            },
        );
        let loaded = load(spec(&path), &Device::Cpu, LoadMode::F32).unwrap();
        assert_eq!(
            loaded.config.tie_word_embeddings, cfg.tie_word_embeddings,
            "{arch:?}"
        );
        assert_eq!(loaded.config.attention_bias, cfg.attention_bias, "{arch:?}");
        let d = max_diff(&logits(&loaded.model), &logits(&model));
        assert!(
            d < 1e-5,
            "{arch:?}: GGUF model differs from the original by {d}"
        );
        // The sampling format (bf16 linear weights where the CPU has a kernel for them) stays
        // within bf16's rounding of the f32 model.
        let fast = load(spec(&path), &Device::Cpu, LoadMode::Inference).unwrap();
        let d = max_diff(&logits(&fast.model), &logits(&model));
        assert!(d < 0.1, "{arch:?}: inference weights differ by {d}");
        assert_eq!(
            tokenizer::encode(&loaded.tokenizer, TEXT).unwrap(),
            tokenizer::encode(tok(), TEXT).unwrap()
        );
        assert_eq!(loaded.info.eos_token_ids, vec![0]);

        // Quantized matmuls (Q8_0 weights) stay close to the f32 model.
        let qpath = dir.path().join(format!("{}-q8.gguf", arch.name()));
        write_gguf(
            &cfg,
            &weights,
            &qpath,
            Options {
                architecture_name: arch.name(),
                matrix_dtype: GgmlDType::Q8_0,
                skip: None,
            },
        );
        let q = load(spec(&qpath), &Device::Cpu, LoadMode::Quantized).unwrap();
        let ids = tokenizer::encode(tok(), TEXT).unwrap();
        let mut cache = ilf_lm::KvCache::new(&cfg, 1, ids.len(), &Device::Cpu).unwrap();
        let input = Tensor::new(ids.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let ql = q
            .model
            .forward_with_cache(&input, &mut cache)
            .unwrap()
            .squeeze(0)
            .unwrap();
        let fl = logits(&model)
            .squeeze(0)
            .unwrap()
            .get(ids.len() - 1)
            .unwrap();
        let scale = fl
            .abs()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let d = max_diff(&ql, &fl);
        assert!(
            d < 0.05 * scale,
            "{arch:?}: quantized logits differ by {d} (scale {scale})"
        );

        let (f32_cfg, tensors, _) = ilf_lm::load_f32_weights(spec(&path)).unwrap();
        assert_eq!(f32_cfg.architecture, arch);
        for (name, t) in &weights {
            assert!(
                max_diff(&tensors[name], t) == 0.0,
                "{arch:?}: {name} differs after the round trip"
            );
        }
    }
}

#[test]
fn bad_gguf_files_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, weights, _) = reference(Architecture::Qwen2);
    let path = dir.path().join("model.gguf");
    write_gguf(
        &cfg,
        &weights,
        &path,
        Options {
            architecture_name: "qwen2",
            matrix_dtype: GgmlDType::F32,
            skip: None,
        },
    );

    let truncated = dir.path().join("truncated.gguf");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 1000]).unwrap();
    let err = load(spec(&truncated), &Device::Cpu, LoadMode::Inference)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("is truncated: tensor ") && err.contains("needs bytes"),
        "{err}"
    );

    let header_only = dir.path().join("header.gguf");
    std::fs::write(&header_only, &bytes[..64]).unwrap();
    let err = format!(
        "{:#}",
        load(spec(&header_only), &Device::Cpu, LoadMode::Inference)
            .err()
            .unwrap()
    );
    assert!(err.contains("not a readable GGUF file"), "{err}");

    let missing = dir.path().join("missing.gguf");
    write_gguf(
        &cfg,
        &weights,
        &missing,
        Options {
            architecture_name: "qwen2",
            matrix_dtype: GgmlDType::F32,
            skip: Some("blk.1.ffn_down.weight"),
        },
    );
    let err = load(spec(&missing), &Device::Cpu, LoadMode::Inference)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("blk.1.ffn_down.weight") && err.contains("[64, 128]"),
        "{err}"
    );

    let other = dir.path().join("gptj.gguf");
    write_gguf(
        &cfg,
        &weights,
        &other,
        Options {
            architecture_name: "gptj",
            matrix_dtype: GgmlDType::F32,
            skip: None,
        },
    );
    let err = format!(
        "{:#}",
        load(spec(&other), &Device::Cpu, LoadMode::Inference)
            .err()
            .unwrap()
    );
    assert!(err.contains("unsupported architecture \"gptj\""), "{err}");

    let err = format!(
        "{:#}",
        load("no-such-model", &Device::Cpu, LoadMode::Inference)
            .err()
            .unwrap()
    );
    assert!(
        err.contains("qwen2.5-coder-0.5b-instruct"),
        "the error lists the known names: {err}"
    );
}

fn write_hf_dir(
    dir: &Path,
    cfg: &Config,
    weights: &HashMap<String, Tensor>,
    sharded: bool,
) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), cfg.to_hf_json().to_string()).unwrap();
    tok().save(dir.join("tokenizer.json"), false).unwrap();
    if sharded {
        let mut names: Vec<&String> = weights.keys().collect();
        names.sort();
        let (a, b) = names.split_at(names.len() / 2);
        let mut map = serde_json::Map::new();
        for (file, part) in [
            ("model-00001-of-00002.safetensors", a),
            ("model-00002-of-00002.safetensors", b),
        ] {
            let tensors: HashMap<String, Tensor> = part
                .iter()
                .map(|n| ((*n).clone(), weights[*n].clone()))
                .collect();
            candle_core::safetensors::save(&tensors, dir.join(file)).unwrap();
            for n in part {
                map.insert((*n).clone(), file.into());
            }
        }
        std::fs::write(
            dir.join("model.safetensors.index.json"),
            serde_json::json!({"weight_map": map}).to_string(),
        )
        .unwrap();
    } else {
        candle_core::safetensors::save(weights, dir.join("model.safetensors")).unwrap();
    }
    dir.to_path_buf()
}

#[test]
fn hugging_face_directories_load_single_and_sharded() {
    let tmp = tempfile::tempdir().unwrap();
    for (arch, sharded) in [(Architecture::Qwen2, false), (Architecture::Llama, true)] {
        let (cfg, weights, model) = reference(arch);
        let dir = write_hf_dir(
            &tmp.path().join(format!("{arch:?}")),
            &cfg,
            &weights,
            sharded,
        );
        let loaded = load(spec(&dir), &Device::Cpu, LoadMode::F32).unwrap();
        assert_eq!(loaded.config.architecture, arch);
        assert!(max_diff(&logits(&loaded.model), &logits(&model)) < 1e-6);
        let fast = load(spec(&dir), &Device::Cpu, LoadMode::Inference).unwrap();
        let d = max_diff(&logits(&fast.model), &logits(&model));
        assert!(d < 0.1, "{arch:?}: inference weights differ by {d}");
    }
    let (cfg, mut weights, _) = reference(Architecture::Qwen2);
    weights.remove("model.layers.0.mlp.up_proj.weight");
    let dir = write_hf_dir(&tmp.path().join("broken"), &cfg, &weights, false);
    let err = load(spec(&dir), &Device::Cpu, LoadMode::Inference)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("lacks tensor model.layers.0.mlp.up_proj.weight"),
        "{err}"
    );
}
