//! LoRA (Hu et al. 2021): trainable low-rank adapters on chosen linear layers, initialised like
//! PEFT (A Kaiming-uniform, B zero, so training starts at the base model), scaled by `alpha / r`.

use crate::error::TrainError;
use anyhow::Result;
use candle_core::{Device, Tensor, Var};
use ilf_lm::linear::{DropoutSeed, Linear, Lora};
use ilf_lm::models::Model;
use rand::{Rng, SeedableRng};

/// PEFT-style LoRA settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoraOptions {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f32,
    /// Module name suffixes (`q_proj`, …) matched against the last segment of each layer's name.
    pub targets: Vec<String>,
}

/// Every linear projection of a decoder block, the usual QLoRA-style choice.
pub const DEFAULT_TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

impl Default for LoraOptions {
    fn default() -> Self {
        Self {
            rank: 16,
            alpha: 32.0,
            dropout: 0.05,
            targets: DEFAULT_TARGETS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl LoraOptions {
    /// `alpha / r`, PEFT's scaling without rsLoRA.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    fn matches(&self, module: &str) -> bool {
        let last = module.rsplit('.').next().unwrap_or(module);
        self.targets.iter().any(|t| t == last)
    }

    /// Checks rank and dropout, and that every target names a linear layer of `modules`.
    pub fn validate<'a>(&self, modules: impl Iterator<Item = &'a str>) -> Result<(), TrainError> {
        if self.rank == 0 {
            return Err(TrainError::InvalidSetting(
                "--rank must be at least 1".into(),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(TrainError::InvalidSetting(format!(
                "--lora-dropout {} is outside [0, 1)",
                self.dropout
            )));
        }
        let modules: Vec<&str> = modules.collect();
        for t in &self.targets {
            if !modules
                .iter()
                .any(|m| m.rsplit('.').next() == Some(t.as_str()))
            {
                let mut kinds: Vec<&str> = modules
                    .iter()
                    .filter_map(|m| m.rsplit('.').next())
                    .collect();
                kinds.sort();
                kinds.dedup();
                return Err(TrainError::InvalidSetting(format!(
                    "--targets names `{t}`, which is no linear layer of this model (it has: {})",
                    kinds.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// An adapter's trainable halves, by the module it adapts.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// Hugging Face module name, e.g. `model.layers.0.self_attn.q_proj`.
    pub module: String,
    /// `[r, in]`.
    pub a: Var,
    /// `[out, r]`.
    pub b: Var,
}

impl Adapter {
    /// PEFT's parameter names, without the `base_model.model.` prefix of its files.
    pub fn a_name(&self) -> String {
        format!("{}.lora_A.weight", self.module)
    }

    pub fn b_name(&self) -> String {
        format!("{}.lora_B.weight", self.module)
    }
}

/// Attaches fresh adapters to every targeted layer of `model`, in the model's layer order. A is
/// drawn from U(−1/√in, 1/√in) (`kaiming_uniform_(a=√5)`, as PEFT does) with a generator seeded
/// by `seed`, so runs are reproducible; B is zero. Dropout masks come from `dropout_seed`, which
/// the trainer sets before each micro-batch.
pub fn attach(
    model: &mut Model,
    options: &LoraOptions,
    seed: u64,
    dropout_seed: &DropoutSeed,
) -> Result<Vec<Adapter>> {
    options.validate(
        model
            .linears()
            .map(|(n, _)| n)
            .collect::<Vec<_>>()
            .iter()
            .map(|s| s.as_str()),
    )?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut adapters = Vec::new();
    for (module, linear) in model.linears_mut() {
        if !options.matches(&module) {
            continue;
        }
        let (inp, out) = (linear.in_features(), linear.out_features());
        let bound = 1.0 / (inp as f64).sqrt();
        let a: Vec<f32> = (0..options.rank * inp)
            .map(|_| rng.random_range(-bound..bound) as f32)
            .collect();
        let a = Var::from_vec(a, (options.rank, inp), &Device::Cpu)?;
        let b = Var::zeros((out, options.rank), candle_core::DType::F32, &Device::Cpu)?;
        set(linear, &a, &b, options, dropout_seed, adapters.len() as u64);
        adapters.push(Adapter { module, a, b });
    }
    Ok(adapters)
}

/// Points `linear` at the adapter `a`/`b` (the Vars themselves, so gradients reach them).
fn set(
    linear: &mut Linear,
    a: &Var,
    b: &Var,
    options: &LoraOptions,
    seed: &DropoutSeed,
    salt: u64,
) {
    linear.set_lora(Some(Lora {
        a: a.as_tensor().clone(),
        b: b.as_tensor().clone(),
        scale: options.scale(),
        dropout: options.dropout,
        dropout_seed: seed.clone(),
        salt,
    }));
}

/// `W + scale · B A`: the dense weight that computes the same as base plus adapter.
pub fn merged_weight(linear: &Linear) -> Result<Tensor> {
    let w = linear
        .weight()
        .ok_or_else(|| anyhow::anyhow!("cannot merge LoRA into a quantized layer"))?;
    Ok(match linear.lora() {
        None => w.clone(),
        Some(l) => (w + (l.b.matmul(&l.a)? * l.scale)?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_must_name_layers_and_rank_must_be_positive() {
        let modules = [
            "model.layers.0.self_attn.q_proj",
            "model.layers.0.mlp.up_proj",
        ];
        let ok = LoraOptions {
            targets: vec!["q_proj".into()],
            ..Default::default()
        };
        assert!(ok.validate(modules.iter().copied()).is_ok());
        let bad = LoraOptions {
            targets: vec!["qkv".into()],
            ..Default::default()
        };
        let err = bad
            .validate(modules.iter().copied())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`qkv`") && err.contains("q_proj, up_proj"),
            "{err}"
        );
        let zero = LoraOptions { rank: 0, ..ok };
        assert!(zero.validate(modules.iter().copied()).is_err());
        assert!(LoraOptions::default().matches("model.layers.3.mlp.down_proj"));
        assert!(!LoraOptions::default().matches("lm_head"));
    }
}
