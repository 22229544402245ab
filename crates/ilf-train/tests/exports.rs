//! Exports of a trained tiny model load back through `ilf-lm` with the same logits, and the PEFT
//! adapter has PEFT's layout.

mod common;

use candle_core::{Device, Tensor};
use ilf_lm::load::{load, LoadMode};
use ilf_lm::models::Architecture;
use ilf_train::export::{export, ExportFormat, ExportSource};
use ilf_train::lora::LoraOptions;
use ilf_train::trainable::Method;
use ilf_train::trainer::{TrainOptions, Trainer};

fn trained(arch: Architecture, method: Method) -> Trainer {
    trained_with(
        arch,
        TrainOptions {
            method,
            ..options()
        },
    )
}

/// The tests' settings: one epoch of the common examples, 2 per step, lr 1e-2.
fn options() -> TrainOptions {
    TrainOptions {
        lr: 1e-2,
        epochs: 1,
        batch: 2,
        micro_batch: 1,
        max_len: 64,
        ..Default::default()
    }
}

/// Trains the tiny model of `arch` (weights seed 11) to the end of `options`.
fn trained_with(arch: Architecture, options: TrainOptions) -> Trainer {
    let cfg = common::config(arch);
    let mut t = Trainer::new(
        &cfg,
        common::weights(&cfg, 11),
        &common::tokenizer(),
        &common::examples(),
        options,
    )
    .unwrap();
    while !t.is_done() {
        t.step(&mut |_| {}).unwrap();
    }
    t
}

fn lora() -> Method {
    Method::Lora(LoraOptions {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        ..Default::default()
    })
}

fn source<'a>(t: &'a Trainer, tokenizer: &'a tokenizers::Tokenizer) -> ExportSource<'a> {
    ExportSource::new(&t.trainable, tokenizer, t.end_of_text(), "tiny", None)
}

fn ids() -> Tensor {
    Tensor::new(&[[3u32, 77, 150, 42, 9, 300, 12]], &Device::Cpu).unwrap()
}

#[test]
fn hf_directory_and_gguf_reload_with_the_trained_logits() {
    let tokenizer = common::tokenizer();
    for (arch, method) in [
        (Architecture::Qwen2, Method::Full),
        (Architecture::Llama, lora()),
    ] {
        let t = trained(arch, method);
        let want = t.trainable.model.forward(&ids()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let src = source(&t, &tokenizer);
        for format in [ExportFormat::Hf, ExportFormat::Gguf, ExportFormat::GgufF16] {
            let path = export(&src, format, dir.path()).unwrap();
            let loaded = load(path.to_str().unwrap(), &Device::Cpu, LoadMode::F32).unwrap();
            assert_eq!(loaded.config.architecture, arch);
            let got = loaded.model.forward(&ids()).unwrap();
            let diff = common::max_diff(&want, &got);
            let tolerance = if format == ExportFormat::GgufF16 {
                5e-2
            } else {
                1e-4
            };
            assert!(
                diff < tolerance,
                "{arch:?} {format:?}: logits differ by {diff}"
            );
            let text = "def f(x):\n    return x + 1\n";
            assert_eq!(
                loaded.tokenizer.encode(text, false).unwrap().get_ids(),
                tokenizer.encode(text, false).unwrap().get_ids(),
                "{format:?} tokenizer"
            );
        }
        let hf = dir.path().join("hf");
        for file in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
            "generation_config.json",
        ] {
            assert!(hf.join(file).is_file(), "missing {file}");
        }
        let generation: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(hf.join("generation_config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(generation["eos_token_id"][0], t.end_of_text());
    }
}

#[test]
fn peft_adapter_has_peft_keys_shapes_and_config() {
    let tokenizer = common::tokenizer();
    let t = trained(Architecture::Qwen2, lora());
    let dir = tempfile::tempdir().unwrap();
    let path = export(&source(&t, &tokenizer), ExportFormat::Peft, dir.path()).unwrap();
    let tensors =
        candle_core::safetensors::load(path.join("adapter_model.safetensors"), &Device::Cpu)
            .unwrap();
    assert_eq!(
        tensors.len(),
        2 * 7 * 2,
        "A and B for 7 modules in 2 layers"
    );
    let a = &tensors["base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"];
    let b = &tensors["base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"];
    assert_eq!(a.dims(), &[4, 64]);
    assert_eq!(b.dims(), &[64, 4]);
    let adapter = t
        .trainable
        .adapters
        .iter()
        .find(|a| a.module == "model.layers.1.mlp.down_proj")
        .unwrap();
    assert_eq!(common::max_diff(b, adapter.b.as_tensor()), 0.0);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 4);
    assert_eq!(config["lora_alpha"], 8.0);
    assert_eq!(config["target_modules"].as_array().unwrap().len(), 7);

    let full = trained(Architecture::Qwen2, Method::Full);
    let err = export(&source(&full, &tokenizer), ExportFormat::Peft, dir.path()).unwrap_err();
    assert!(err.to_string().contains("needs a LoRA run"), "{err}");
}

/// `--model ADAPTER_DIR` works like any model: the base named in `adapter_config.json` (here an
/// HF export of the untrained base, given by a path relative to the adapter) is loaded, the
/// adapter attached (inference) or merged (f32 weights for training): both give the trained
/// model's logits.
#[test]
fn peft_adapter_directory_loads_as_a_model() {
    let tokenizer = common::tokenizer();
    let t = trained(Architecture::Qwen2, lora());
    let want = t.trainable.model.forward(&ids()).unwrap();
    let root = tempfile::tempdir().unwrap();

    let cfg = common::config(Architecture::Qwen2);
    let untrained = Trainer::new(
        &cfg,
        common::weights(&cfg, 11),
        &tokenizer,
        &common::examples(),
        TrainOptions {
            method: Method::Full,
            max_len: 64,
            ..Default::default()
        },
    )
    .unwrap();
    let base_dir = root.path().join("base");
    export(&source(&untrained, &tokenizer), ExportFormat::Hf, &base_dir).unwrap();

    let run_dir = root.path().join("run");
    let mut src = source(&t, &tokenizer);
    src.base_spec = "../../base/hf";
    let adapter = export(&src, ExportFormat::Peft, &run_dir).unwrap();
    let spec = adapter.to_str().unwrap();
    // Not the untrained base: the adapter changes the logits.
    let base_only = load(
        base_dir.join("hf").to_str().unwrap(),
        &Device::Cpu,
        LoadMode::F32,
    )
    .unwrap();
    assert!(common::max_diff(&want, &base_only.model.forward(&ids()).unwrap()) > 1e-4);

    let loaded = load(spec, &Device::Cpu, LoadMode::F32).unwrap();
    let diff = common::max_diff(&want, &loaded.model.forward(&ids()).unwrap());
    assert!(diff < 1e-4, "attached adapter: logits differ by {diff}");

    let (cfg2, weights, _) = ilf_lm::load::load_f32_weights(spec).unwrap();
    let merged = ilf_lm::models::Model::new(
        &cfg2,
        candle_nn::VarBuilder::from_tensors(weights, candle_core::DType::F32, &Device::Cpu),
    )
    .unwrap();
    let diff = common::max_diff(&want, &merged.forward(&ids()).unwrap());
    assert!(diff < 1e-4, "merged adapter: logits differ by {diff}");

    // A broken adapter names its file.
    std::fs::write(
        adapter.join("adapter_config.json"),
        r#"{"peft_type": "IA3"}"#,
    )
    .unwrap();
    let err = load(spec, &Device::Cpu, LoadMode::Inference).err().unwrap();
    assert!(format!("{err:#}").contains("IA3"), "{err:#}");
}

/// LoRA over a bf16 base (`--base-dtype bf16`) drops the f32 base from memory; its merged
/// export reloads the f32 base, so the merged weights are the checkpoint's exact values plus
/// the adapters, not their bf16 rounding.
#[test]
fn a_merged_export_over_a_bf16_base_adds_the_adapters_to_the_f32_base() {
    use ilf_lm::bf16_matmul::Kernel;
    use ilf_train::trainer::BaseDtype;
    if Kernel::best() == Kernel::Scalar {
        // Without AVX2 `--base-dtype bf16` keeps the base f32 (with a warning).
        return;
    }
    let tokenizer = common::tokenizer();
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(Architecture::Qwen2);
    let base_weights = common::weights(&cfg, 11);
    // The base on disk: the same weights, untrained (built, never stepped), as a
    // Hugging Face directory.
    let untrained = Trainer::new(
        &cfg,
        base_weights.clone(),
        &tokenizer,
        &common::examples(),
        options(),
    )
    .unwrap();
    let base_dir = export(
        &source(&untrained, &tokenizer),
        ExportFormat::Hf,
        &dir.path().join("base"),
    )
    .unwrap();
    drop(untrained);

    let t = trained_with(
        Architecture::Qwen2,
        TrainOptions {
            method: lora(),
            base_dtype: BaseDtype::Bf16,
            ..options()
        },
    );
    assert!(t.trainable.base_is_bf16());
    // Without the base the merge cannot be exact, and says so.
    assert!(t.trainable.merged_tensors().is_err());
    let base_spec = base_dir.to_str().unwrap().to_string();
    let mut src = source(&t, &tokenizer);
    src.base_spec = &base_spec;
    let out = export(&src, ExportFormat::Hf, &dir.path().join("merged")).unwrap();
    let (_, merged, _) = ilf_lm::load_f32_weights(out.to_str().unwrap()).unwrap();
    // A second format from the same source reuses the merge: the GGUF holds the same weights.
    let gguf = export(&src, ExportFormat::Gguf, &dir.path().join("merged")).unwrap();
    let (_, from_gguf, _) = ilf_lm::load_f32_weights(gguf.to_str().unwrap()).unwrap();
    for (name, w) in &merged {
        assert_eq!(
            common::max_diff(w, &from_gguf[name]),
            0.0,
            "{name} in the GGUF"
        );
    }
    let scale = 8.0 / 4.0;
    for adapter in &t.trainable.adapters {
        let name = format!("{}.weight", adapter.module);
        let want = (&base_weights[&name]
            + (adapter.b.as_tensor().matmul(adapter.a.as_tensor()).unwrap() * scale).unwrap())
        .unwrap();
        let d = common::max_diff(&want, &merged[&name]);
        assert!(d < 1e-6, "{name}: merged differs by {d}");
    }
    // A trained adapter moved the weights.
    let q = "model.layers.0.self_attn.q_proj.weight";
    assert!(common::max_diff(&base_weights[q], &merged[q]) > 1e-4);
    // A layer without an adapter is the base, exactly.
    let head = "lm_head.weight";
    if let Some(w) = base_weights.get(head) {
        assert_eq!(common::max_diff(w, &merged[head]), 0.0);
    }
}
