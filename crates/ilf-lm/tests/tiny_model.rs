//! The decoder on tiny random models (no download): shapes, the cached path against the
//! training path, left-padded batches, and gradients reaching every parameter.

use candle_core::{DType, Device, IndexOp, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use ilf_lm::models::{Architecture, Config, KvCache, Model};
use ilf_lm::{tiny_random, tiny_random_weights, Lora};

const VOCAB: usize = 97;

fn ids(v: &[u32]) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap().unsqueeze(0).unwrap()
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

#[test]
fn forward_returns_full_sequence_logits() {
    for arch in [Architecture::Qwen2, Architecture::Llama] {
        let cfg = Config::tiny(arch, VOCAB);
        let model = tiny_random(&cfg, 1, &Device::Cpu).unwrap();
        let input = Tensor::new(&[[1u32, 2, 3, 4, 5], [6, 7, 8, 9, 10]], &Device::Cpu).unwrap();
        let logits = model.forward(&input).unwrap();
        assert_eq!(logits.dims(), &[2, 5, VOCAB]);
        assert_eq!(logits.dtype(), DType::F32);
        // Rows are independent: row 1 alone gives the same logits.
        let alone = model.forward(&input.i(1..2).unwrap()).unwrap();
        assert!(max_diff(&alone, &logits.i(1..2).unwrap()) < 1e-5);
    }
}

#[test]
fn cached_decoding_matches_the_training_forward() {
    for arch in [Architecture::Qwen2, Architecture::Llama] {
        let cfg = Config::tiny(arch, VOCAB);
        let model = tiny_random(&cfg, 2, &Device::Cpu).unwrap();
        let seq = [5u32, 17, 3, 44, 9, 60, 2, 81];
        let full = model.forward(&ids(&seq)).unwrap().squeeze(0).unwrap();
        let mut cache = KvCache::new(&cfg, 1, 16, &Device::Cpu).unwrap();
        let prefill = model
            .forward_with_cache(&ids(&seq[..4]), &mut cache)
            .unwrap();
        assert!(
            max_diff(&prefill.squeeze(0).unwrap(), &full.i(3).unwrap()) < 1e-4,
            "{arch:?} prefill"
        );
        for (p, &t) in seq.iter().enumerate().skip(4) {
            let step = model.forward_with_cache(&ids(&[t]), &mut cache).unwrap();
            let d = max_diff(&step.squeeze(0).unwrap(), &full.i(p).unwrap());
            assert!(d < 1e-4, "{arch:?} position {p}: max diff {d}");
        }
        assert_eq!(cache.len(), seq.len());
        assert!(
            model.forward_with_cache(&ids(&[1; 9]), &mut cache).is_err(),
            "overflowing the cache must fail"
        );
    }
}

#[test]
fn left_padded_batches_match_each_sequence_alone() {
    let cfg = Config::tiny(Architecture::Qwen2, VOCAB);
    let model = tiny_random(&cfg, 3, &Device::Cpu).unwrap();
    let a = [4u32, 8, 15, 16, 23, 42];
    let b = [7u32, 1, 9];
    let mut ca = KvCache::new(&cfg, 1, a.len(), &Device::Cpu).unwrap();
    let mut cb = KvCache::new(&cfg, 1, b.len(), &Device::Cpu).unwrap();
    model.forward_with_cache(&ids(&a), &mut ca).unwrap();
    model.forward_with_cache(&ids(&b), &mut cb).unwrap();
    // Two copies of `a`, one of `b`; then the middle row is dropped as if finished.
    let mut batch = KvCache::from_prefixes(&[(&ca, 2), (&cb, 1)], a.len() + 4).unwrap();
    let next = [[30u32], [30], [50]];
    let logits = model
        .forward_with_cache(&Tensor::new(&next, &Device::Cpu).unwrap(), &mut batch)
        .unwrap();
    let fa = model
        .forward(&ids(&[&a[..], &[30]].concat()))
        .unwrap()
        .squeeze(0)
        .unwrap();
    let fb = model
        .forward(&ids(&[&b[..], &[50]].concat()))
        .unwrap()
        .squeeze(0)
        .unwrap();
    assert!(max_diff(&logits.i(0).unwrap(), &fa.i(a.len()).unwrap()) < 1e-4);
    assert!(max_diff(&logits.i(1).unwrap(), &fa.i(a.len()).unwrap()) < 1e-4);
    assert!(max_diff(&logits.i(2).unwrap(), &fb.i(b.len()).unwrap()) < 1e-4);
    batch.select_rows(&[0, 2]).unwrap();
    let logits = model
        .forward_with_cache(
            &Tensor::new(&[[31u32], [51]], &Device::Cpu).unwrap(),
            &mut batch,
        )
        .unwrap();
    let fa = model
        .forward(&ids(&[&a[..], &[30, 31]].concat()))
        .unwrap()
        .squeeze(0)
        .unwrap();
    let fb = model
        .forward(&ids(&[&b[..], &[50, 51]].concat()))
        .unwrap()
        .squeeze(0)
        .unwrap();
    assert!(max_diff(&logits.i(0).unwrap(), &fa.i(a.len() + 1).unwrap()) < 1e-4);
    assert!(max_diff(&logits.i(1).unwrap(), &fb.i(b.len() + 1).unwrap()) < 1e-4);
}

fn varmap_model(cfg: &Config) -> (VarMap, Model) {
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().unwrap();
        for (name, t) in tiny_random_weights(cfg, 4, &Device::Cpu).unwrap() {
            data.insert(name, Var::from_tensor(&t).unwrap());
        }
    }
    let model = Model::new(
        cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    (varmap, model)
}

fn loss(model: &Model, train: bool) -> Tensor {
    let input = Tensor::new(
        &[[3u32, 14, 15, 92, 65, 35], [8, 9, 7, 9, 3, 2]],
        &Device::Cpu,
    )
    .unwrap();
    let logits = model
        .forward_t(&input.narrow(1, 0, 5).unwrap(), train)
        .unwrap();
    let targets = input.narrow(1, 1, 5).unwrap();
    candle_nn::loss::cross_entropy(
        &logits.flatten_to(1).unwrap(),
        &targets.flatten_all().unwrap(),
    )
    .unwrap()
}

#[test]
fn every_parameter_receives_a_gradient() {
    for arch in [Architecture::Qwen2, Architecture::Llama] {
        let cfg = Config::tiny(arch, VOCAB);
        let (varmap, model) = varmap_model(&cfg);
        let grads = loss(&model, true).backward().unwrap();
        let data = varmap.data().lock().unwrap();
        assert_eq!(
            data.len(),
            ilf_lm::models::decoder::tensor_shapes(&cfg).len()
        );
        for (name, var) in data.iter() {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{arch:?}: no gradient for {name}"));
            let norm = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(norm > 0.0, "{arch:?}: zero gradient for {name}");
        }
    }
}

#[test]
fn lora_adapters_change_the_output_and_receive_gradients() {
    let cfg = Config::tiny(Architecture::Qwen2, VOCAB);
    let (_varmap, mut model) = varmap_model(&cfg);
    let before = loss(&model, false).to_scalar::<f32>().unwrap();
    let mut adapters = Vec::new();
    for (name, linear) in model.linears_mut() {
        if !name.ends_with("q_proj") && !name.ends_with("v_proj") {
            continue;
        }
        let r = 4;
        let a = Var::from_tensor(
            &(Tensor::ones((r, linear.in_features()), DType::F32, &Device::Cpu).unwrap() * 0.01)
                .unwrap(),
        )
        .unwrap();
        let b = Var::from_tensor(
            &(Tensor::ones((linear.out_features(), r), DType::F32, &Device::Cpu).unwrap() * 0.01)
                .unwrap(),
        )
        .unwrap();
        linear.set_lora(Some(Lora {
            a: a.as_tensor().clone(),
            b: b.as_tensor().clone(),
            scale: 2.0,
            dropout: 0.1,
            dropout_seed: Default::default(),
            salt: adapters.len() as u64,
        }));
        adapters.push((name, a, b));
    }
    assert_eq!(adapters.len(), 2 * cfg.num_hidden_layers);
    let l = loss(&model, true);
    assert_ne!(l.to_scalar::<f32>().unwrap(), before);
    let grads = l.backward().unwrap();
    for (name, a, b) in &adapters {
        for (which, v) in [("a", a), ("b", b)] {
            let g = grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}.lora_{which}"));
            assert!(
                g.abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
                    > 0.0,
                "{name}.lora_{which}"
            );
        }
    }
    let names: Vec<String> = model.linears_mut().map(|(n, _)| n).collect();
    assert_eq!(names[0], "model.layers.0.self_attn.q_proj");
    assert_eq!(names.last().unwrap(), "lm_head");
    assert_eq!(names.len(), 7 * cfg.num_hidden_layers + 1);
}

#[test]
fn config_round_trips_through_hf_json() {
    for arch in [Architecture::Qwen2, Architecture::Llama] {
        let mut cfg = Config::tiny(arch, VOCAB);
        cfg.eos_token_ids = vec![0, 5];
        let json = cfg.to_hf_json();
        assert_eq!(json["model_type"], arch.name());
        let back = Config::from_hf_json(&json.to_string()).unwrap();
        assert_eq!(back, cfg);
    }
    let err = Config::from_hf_json(r#"{"model_type": "gpt_neox"}"#).unwrap_err();
    assert!(err.to_string().contains("gpt_neox"), "{err}");
}
