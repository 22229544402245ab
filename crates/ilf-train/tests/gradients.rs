//! Gradients on the tiny model: analytic against finite differences for every kind of
//! parameter, and every trainable parameter reached (candle's fused ops would silently stop it).

mod common;

use candle_core::{Device, Tensor, Var};
use ilf_lm::models::Architecture;
use ilf_train::encode::{encode, MicroBatch};
use ilf_train::lora::LoraOptions;
use ilf_train::loss::masked_loss;
use ilf_train::trainable::{Method, Trainable};

fn batch() -> MicroBatch {
    let tok = common::tokenizer();
    let eot = tok.token_to_id("<|endoftext|>").unwrap();
    let seqs: Vec<_> = common::examples()[..2]
        .iter()
        .map(|e| encode(&tok, e, eot, 64).unwrap())
        .collect();
    let rows: Vec<_> = seqs.iter().map(|s| s.row()).collect();
    MicroBatch::new(&rows, eot, &Device::Cpu).unwrap()
}

fn loss(t: &Trainable, b: &MicroBatch) -> Tensor {
    masked_loss(&t.model.forward(&b.input_ids).unwrap(), b).unwrap()
}

/// Gives each LoRA B random values: at PEFT's initialisation B = 0, so A's gradient is exactly
/// zero and a gradient check on A would test nothing.
fn randomize_lora_b(t: &Trainable) {
    for (i, a) in t.adapters.iter().enumerate() {
        let shape = a.b.shape().clone();
        let n = shape.elem_count();
        let values: Vec<f32> = (0..n)
            .map(|j| (((i * 31 + j * 17) % 23) as f32 - 11.0) * 0.01)
            .collect();
        a.b.set(&Tensor::from_vec(values, shape, &Device::Cpu).unwrap())
            .unwrap();
    }
}

/// Checks the directional derivative along the analytic gradient, (f(p + εd) − f(p − εd)) / 2ε
/// with d = g/|g|, against |g|: a wrong gradient has the wrong norm or the wrong direction.
fn check(t: &Trainable, b: &MicroBatch, var: &Var, name: &str) {
    let grads = loss(t, b).backward().unwrap();
    let g = grads
        .get(var.as_tensor())
        .unwrap_or_else(|| panic!("{name}: no gradient"))
        .clone();
    let norm = g
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
        .sqrt() as f64;
    assert!(norm > 0.0, "{name}: zero gradient");
    let d = (&g / norm).unwrap();
    let original = var.as_tensor().copy().unwrap();
    let eps = 1e-2;
    let f = |sign: f64| {
        var.set(&(&original + (&d * (sign * eps)).unwrap()).unwrap())
            .unwrap();
        loss(t, b).to_scalar::<f32>().unwrap() as f64
    };
    let numeric = (f(1.0) - f(-1.0)) / (2.0 * eps);
    var.set(&original).unwrap();
    let rel = (numeric - norm).abs() / norm;
    assert!(
        rel < 0.01,
        "{name}: analytic |g| = {norm:.6}, finite difference {numeric:.6} (rel {rel:.4})"
    );
}

#[test]
fn full_fine_tuning_gradients_match_finite_differences_for_every_kind() {
    let cfg = common::config(Architecture::Qwen2);
    let t = Trainable::new(&cfg, common::weights(&cfg, 1), Method::Full, 0).unwrap();
    let b = batch();
    let kinds = [
        "model.embed_tokens.weight",
        "model.layers.0.input_layernorm.weight",
        "model.layers.1.post_attention_layernorm.weight",
        "model.norm.weight",
        "model.layers.0.self_attn.q_proj.bias",
        "model.layers.0.self_attn.k_proj.bias",
        "model.layers.1.self_attn.v_proj.bias",
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.self_attn.o_proj.weight",
        "model.layers.0.mlp.gate_proj.weight",
        "model.layers.0.mlp.up_proj.weight",
        "model.layers.1.mlp.down_proj.weight",
        "lm_head.weight",
    ];
    for name in kinds {
        let (_, var) = t
            .params
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no {name}"));
        check(&t, &b, var, name);
    }
}

#[test]
fn lora_gradients_match_finite_differences() {
    let cfg = common::config(Architecture::Qwen2);
    let options = LoraOptions {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        ..Default::default()
    };
    let t = Trainable::new(&cfg, common::weights(&cfg, 2), Method::Lora(options), 3).unwrap();
    randomize_lora_b(&t);
    let b = batch();
    for a in [&t.adapters[0], &t.adapters[5], &t.adapters[13]] {
        check(&t, &b, &a.a, &a.a_name());
        check(&t, &b, &a.b, &a.b_name());
    }
}

#[test]
fn every_trainable_parameter_gets_a_nonzero_gradient() {
    let b = batch();
    for arch in [Architecture::Qwen2, Architecture::Llama] {
        let cfg = common::config(arch);
        let lora = LoraOptions {
            rank: 2,
            alpha: 4.0,
            dropout: 0.0,
            ..Default::default()
        };
        for method in [Method::Full, Method::Lora(lora)] {
            let t = Trainable::new(&cfg, common::weights(&cfg, 4), method.clone(), 5).unwrap();
            randomize_lora_b(&t);
            assert!(!t.params.is_empty());
            let grads = loss(&t, &b).backward().unwrap();
            for (name, var) in &t.params {
                let g = grads
                    .get(var.as_tensor())
                    .unwrap_or_else(|| panic!("{arch:?} {method:?}: {name} got no gradient"));
                let norm = g
                    .abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(norm > 0.0, "{arch:?}: {name} got an all-zero gradient");
            }
        }
    }
}

/// LoRA over a bf16 base (`--base-dtype bf16`): every adapter is reached, and the loss and the
/// gradients stay within bf16's rounding of those over the f32 base.
#[test]
fn lora_over_a_bf16_base_follows_the_f32_base() {
    use ilf_lm::bf16_matmul::Kernel;
    if Kernel::best() == Kernel::Scalar {
        return; // without AVX2 the trainer keeps the base f32
    }
    let b = batch();
    for arch in [Architecture::Qwen2, Architecture::Llama] {
        let cfg = common::config(arch);
        let lora = LoraOptions {
            rank: 4,
            alpha: 8.0,
            dropout: 0.0,
            ..Default::default()
        };
        let f32_base = Trainable::new(
            &cfg,
            common::weights(&cfg, 6),
            Method::Lora(lora.clone()),
            7,
        )
        .unwrap();
        let mut bf16_base =
            Trainable::new(&cfg, common::weights(&cfg, 6), Method::Lora(lora), 7).unwrap();
        bf16_base.freeze_base_to_bf16().unwrap();
        assert!(bf16_base.base_is_bf16());
        randomize_lora_b(&f32_base);
        randomize_lora_b(&bf16_base);
        let (l32, lbf) = (loss(&f32_base, &b), loss(&bf16_base, &b));
        let (v32, vbf) = (
            l32.to_scalar::<f32>().unwrap(),
            lbf.to_scalar::<f32>().unwrap(),
        );
        assert!(
            (v32 - vbf).abs() < 0.01 * v32.abs(),
            "{arch:?}: loss {vbf} over bf16 against {v32} over f32"
        );
        let (g32, gbf) = (l32.backward().unwrap(), lbf.backward().unwrap());
        for ((name, p32), (_, pbf)) in f32_base.params.iter().zip(&bf16_base.params) {
            let a = g32.get(p32.as_tensor()).unwrap();
            let g = gbf
                .get(pbf.as_tensor())
                .unwrap_or_else(|| panic!("{arch:?}: {name} got no gradient over bf16"));
            let scale = a
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(scale > 0.0, "{arch:?}: {name} has a zero gradient");
            let rel = common::max_diff(a, g) / scale;
            assert!(
                rel < 0.05,
                "{arch:?}: {name} gradient differs by {rel} (relative)"
            );
        }
    }
}

#[test]
fn a_bf16_base_is_only_for_lora() {
    use ilf_train::trainer::{BaseDtype, TrainOptions};
    let options = TrainOptions {
        base_dtype: BaseDtype::Bf16,
        ..Default::default()
    };
    let err = options.validate().unwrap_err().to_string();
    assert!(err.contains("--lora"), "{err}");
    let cfg = common::config(Architecture::Qwen2);
    let mut full = Trainable::new(&cfg, common::weights(&cfg, 1), Method::Full, 0).unwrap();
    assert!(full.freeze_base_to_bf16().is_err());
}
