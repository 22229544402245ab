//! Training behaviour on the tiny model: overfitting, masking, LoRA merging, exact resume, and
//! input errors raised before any compute.

mod common;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use ilf_lm::models::{Architecture, Model};
use ilf_train::encode::{encode, MicroBatch, Row};
use ilf_train::lora::LoraOptions;
use ilf_train::loss::{masked_loss, rows_loss};
use ilf_train::metrics::read_metrics;
use ilf_train::trainable::{Method, Trainable};
use ilf_train::trainer::{run, Observer, TrainOptions, Trainer};
use ilf_train::TrainError;
use std::collections::HashMap;

struct Quiet;
impl Observer for Quiet {}

fn options(method: Method) -> TrainOptions {
    TrainOptions {
        method,
        lr: 1e-3,
        epochs: 2,
        batch: 2,
        micro_batch: 1,
        max_len: 64,
        ..Default::default()
    }
}

fn lora() -> Method {
    Method::Lora(LoraOptions {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        ..Default::default()
    })
}

fn trainer(method: Method, examples: &[ilf_train::data::Example]) -> Trainer {
    let cfg = common::config(Architecture::Qwen2);
    Trainer::new(
        &cfg,
        common::weights(&cfg, 7),
        &common::tokenizer(),
        examples,
        options(method),
    )
    .unwrap()
}

#[test]
fn one_example_overfits_to_near_zero_loss() {
    let examples = vec![common::example("def add(a, b):\n", "    return a + b\n", 1)];
    let cfg = common::config(Architecture::Qwen2);
    let opts = TrainOptions {
        lr: 1e-2,
        epochs: 60,
        batch: 1,
        ..options(Method::Full)
    };
    let mut t = Trainer::new(
        &cfg,
        common::weights(&cfg, 1),
        &common::tokenizer(),
        &examples,
        opts,
    )
    .unwrap();
    let first = t.step(&mut |_| {}).unwrap().loss;
    let mut last = first;
    while !t.is_done() {
        last = t.step(&mut |_| {}).unwrap().loss;
    }
    assert!(
        first > 3.0,
        "a random model starts near ln(vocab), got {first}"
    );
    assert!(last < 0.05, "loss after 60 steps on one example: {last}");
}

/// The trainer computes logits only at target positions; loss and every gradient must equal
/// those of the full-sequence logits, for full fine-tuning and for LoRA (fused op included).
#[test]
fn target_row_logits_give_the_full_logits_loss_and_gradients() {
    let tok = common::tokenizer();
    let eot = tok.token_to_id("<|endoftext|>").unwrap();
    let examples = common::examples();
    let seqs: Vec<_> = examples[..2]
        .iter()
        .map(|e| encode(&tok, e, eot, 64).unwrap())
        .collect();
    let rows: Vec<_> = seqs.iter().map(|s| s.row()).collect();
    let batch = MicroBatch::new(&rows, eot, &Device::Cpu).unwrap();
    let cfg = common::config(Architecture::Qwen2);
    for method in [Method::Full, lora()] {
        let t = Trainable::new(&cfg, common::weights(&cfg, 3), method, 0).unwrap();
        let full =
            masked_loss(&t.model.forward_t(&batch.input_ids, true).unwrap(), &batch).unwrap();
        let picked = rows_loss(
            &t.model
                .forward_rows_t(&batch.input_ids, &batch.positions, true)
                .unwrap(),
            &batch,
        )
        .unwrap();
        let (a, b) = (
            full.to_scalar::<f32>().unwrap(),
            picked.to_scalar::<f32>().unwrap(),
        );
        assert!((a - b).abs() < 1e-5, "loss {a} vs {b}");
        let (ga, gb) = (full.backward().unwrap(), picked.backward().unwrap());
        for (name, var) in &t.params {
            let d = common::max_diff(ga.get(var).unwrap(), gb.get(var).unwrap());
            assert!(d < 1e-5, "{name}: gradients differ by {d}");
        }
    }
}

#[test]
fn labels_of_prompt_positions_do_not_change_the_loss() {
    let tok = common::tokenizer();
    let eot = tok.token_to_id("<|endoftext|>").unwrap();
    let seq = encode(&tok, &common::examples()[0], eot, 64).unwrap();
    let cfg = common::config(Architecture::Qwen2);
    let t = Trainable::new(&cfg, common::weights(&cfg, 3), Method::Full, 0).unwrap();
    let loss_with = |labels: &[u32]| {
        let row = Row {
            inputs: &seq.ids,
            labels,
            prompt_len: seq.prompt_len,
        };
        let batch = MicroBatch::new(&[row], eot, &Device::Cpu).unwrap();
        let logits = t.model.forward(&batch.input_ids).unwrap();
        masked_loss(&logits, &batch)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    let base = loss_with(&seq.ids);
    // Every prompt label (what prompt positions' predecessors would predict) scrambled.
    let mut scrambled = seq.ids.clone();
    for (i, id) in scrambled[..seq.prompt_len].iter_mut().enumerate() {
        *id = (*id + 7 + i as u32) % cfg.vocab_size as u32;
    }
    assert_eq!(loss_with(&scrambled), base);
    // The first completion label does count.
    let mut changed = seq.ids.clone();
    changed[seq.prompt_len] = (changed[seq.prompt_len] + 1) % cfg.vocab_size as u32;
    assert_ne!(loss_with(&changed), base);
}

#[test]
fn merged_lora_weights_give_the_logits_of_base_plus_adapter() {
    let cfg = common::config(Architecture::Qwen2);
    let mut t = trainer(lora(), &common::examples());
    for _ in 0..2 {
        t.step(&mut |_| {}).unwrap();
    }
    let adapters = &t.trainable.adapters;
    assert!(adapters.iter().any(|a| a
        .b
        .as_tensor()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
        > 0.0));
    let ids = Tensor::new(&[[5u32, 17, 42, 99, 3, 250]], &Device::Cpu).unwrap();
    let adapted = t.trainable.model.forward(&ids).unwrap();
    let merged: HashMap<String, Tensor> =
        t.trainable.merged_tensors().unwrap().into_iter().collect();
    let plain = Model::new(
        &cfg,
        VarBuilder::from_tensors(merged, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let diff = common::max_diff(&adapted, &plain.forward(&ids).unwrap());
    assert!(diff < 1e-4, "merged vs adapter logits differ by {diff}");
    let base = Model::new(
        &cfg,
        VarBuilder::from_tensors(common::weights(&cfg, 7), DType::F32, &Device::Cpu),
    )
    .unwrap();
    assert!(
        common::max_diff(&adapted, &base.forward(&ids).unwrap()) > 1e-4,
        "training changed nothing"
    );
}

/// Trains `method` straight to the end, and again stopped half-way, dropped, rebuilt from
/// scratch and resumed from the checkpoint; the parameters and logged losses must agree.
fn resume_equals_uninterrupted(method: Method) {
    let examples = common::examples();
    let straight_dir = tempfile::tempdir().unwrap();
    let mut straight = trainer(method.clone(), &examples);
    assert_eq!(
        straight.total_steps(),
        6,
        "5 examples, batch 2, 2 epochs: 3 steps an epoch"
    );
    run(&mut straight, straight_dir.path(), false, 1, &mut Quiet).unwrap();

    let split_dir = tempfile::tempdir().unwrap();
    let mut first = trainer(method.clone(), &examples);
    for _ in 0..4 {
        let m = first.step(&mut |_| {}).unwrap();
        ilf_train::metrics::MetricsLog::open(&split_dir.path().join("metrics.jsonl"), m.step - 1)
            .unwrap()
            .append(&m)
            .unwrap();
        if m.step == 2 {
            first.save_checkpoint(split_dir.path()).unwrap();
        }
    }
    // Steps 3 and 4 ran after the checkpoint and are lost, as after `kill -9`.
    drop(first);
    let mut second = trainer(method, &examples);
    run(&mut second, split_dir.path(), true, 1, &mut Quiet).unwrap();
    assert_eq!(second.steps_done(), 6);
    for ((name, a), (_, b)) in straight
        .trainable
        .params
        .iter()
        .zip(&second.trainable.params)
    {
        let diff = common::max_diff(a.as_tensor(), b.as_tensor());
        assert!(diff <= 1e-6, "{name} differs by {diff} after resume");
    }
    let losses = |dir: &std::path::Path| -> Vec<(usize, f64)> {
        read_metrics(&dir.join("metrics.jsonl"))
            .unwrap()
            .iter()
            .map(|r| (r.step, r.loss))
            .collect()
    };
    assert_eq!(losses(straight_dir.path()), losses(split_dir.path()));
    assert!(split_dir.path().join("loss.svg").is_file());
    let checkpoints: Vec<_> = std::fs::read_dir(split_dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("checkpoint-"))
        .collect();
    assert_eq!(checkpoints.len(), 1, "only the last checkpoint is kept");
}

#[test]
fn full_fine_tuning_resume_equals_uninterrupted() {
    resume_equals_uninterrupted(Method::Full);
}

#[test]
fn lora_resume_equals_uninterrupted() {
    resume_equals_uninterrupted(lora());
}

/// LoRA dropout draws seeded masks, so even with dropout a resumed run is bitwise the same.
#[test]
fn lora_with_dropout_resume_equals_uninterrupted() {
    resume_equals_uninterrupted(Method::Lora(LoraOptions {
        rank: 4,
        alpha: 8.0,
        dropout: 0.3,
        ..Default::default()
    }));
}

/// Dropout is really applied: the same run with and without it ends at different adapters.
#[test]
fn lora_dropout_changes_training() {
    let examples = common::examples();
    let with = |dropout: f32| {
        let mut t = trainer(
            Method::Lora(LoraOptions {
                rank: 4,
                alpha: 8.0,
                dropout,
                ..Default::default()
            }),
            &examples,
        );
        t.step(&mut |_| {}).unwrap();
        t.step(&mut |_| {}).unwrap();
        t.trainable.params[1].1.as_tensor().clone()
    };
    assert!(common::max_diff(&with(0.0), &with(0.3)) > 1e-7);
}

#[test]
fn resuming_with_other_settings_or_without_flag_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let examples = common::examples();
    let mut t = trainer(Method::Full, &examples);
    t.step(&mut |_| {}).unwrap();
    t.save_checkpoint(dir.path()).unwrap();
    let mut again = trainer(Method::Full, &examples);
    let err = run(&mut again, dir.path(), false, 1, &mut Quiet)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--resume"), "{err}");
    let mut other = trainer(Method::Full, &examples[..4]);
    let err = other.resume(dir.path()).unwrap_err().to_string();
    assert!(err.contains("other settings, data or base model"), "{err}");
}

#[test]
fn bad_input_is_refused_before_training() {
    let cfg = common::config(Architecture::Qwen2);
    let tok = common::tokenizer();
    let build = |examples: &[ilf_train::data::Example], opts: TrainOptions| {
        Trainer::new(&cfg, common::weights(&cfg, 1), &tok, examples, opts)
            .err()
            .expect("must fail")
    };
    let long_prompt = "x = 1\n".repeat(40);
    let err = build(
        &[common::example(&long_prompt, "y = 2\n", 9)],
        options(Method::Full),
    );
    match err.downcast_ref::<TrainError>() {
        Some(TrainError::CompletionTruncatedAway {
            origin,
            max_len: 64,
            ..
        }) => assert_eq!(origin.line, 9),
        other => panic!("expected a truncation error, got {other:?} ({err})"),
    }
    let err = build(
        &common::examples(),
        TrainOptions {
            batch: 3,
            micro_batch: 2,
            ..options(Method::Full)
        },
    );
    assert!(
        err.to_string().contains("multiple of --micro-batch"),
        "{err}"
    );
    let err = build(
        &common::examples(),
        TrainOptions {
            max_len: 4096,
            ..options(Method::Full)
        },
    );
    assert!(
        err.to_string()
            .contains("exceeds the model's 512 positions"),
        "{err}"
    );
    let bad_target = Method::Lora(LoraOptions {
        targets: vec!["c_attn".into()],
        ..Default::default()
    });
    let err = build(&common::examples(), options(bad_target));
    assert!(err.to_string().contains("`c_attn`"), "{err}");
}
