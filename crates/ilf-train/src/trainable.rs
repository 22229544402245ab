//! The model being trained: an `ilf-lm` decoder over f32 weights, with either every weight a
//! trainable `Var` (full fine-tuning) or frozen weights plus LoRA adapters.

use crate::lora::{self, Adapter, LoraOptions};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use ilf_lm::linear::DropoutSeed;
use ilf_lm::models::decoder::tensor_shapes;
use ilf_lm::models::{Config, Model};
use std::collections::HashMap;

/// Full fine-tuning or LoRA.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Method {
    Full,
    Lora(LoraOptions),
}

/// A model with its trainable parameters named for checkpoints and exports.
pub struct Trainable {
    pub model: Model,
    /// Trainable parameters in a fixed order: Hugging Face tensor names (full) or PEFT adapter
    /// names `<module>.lora_A.weight` / `lora_B.weight` (LoRA).
    pub params: Vec<(String, Var)>,
    /// The adapters (LoRA only).
    pub adapters: Vec<Adapter>,
    /// The frozen base weights (LoRA only; under full fine-tuning the Vars are the weights).
    frozen: HashMap<String, Tensor>,
    pub method: Method,
    /// The seed of the adapters' dropout masks; the trainer sets it per micro-batch.
    pub dropout_seed: DropoutSeed,
}

impl Trainable {
    /// Builds the model over `weights` (Hugging Face names, f32). Every tensor the architecture
    /// needs must be present with the right shape; extra tensors are ignored. `seed` seeds the
    /// LoRA initialisation.
    pub fn new(
        config: &Config,
        mut weights: HashMap<String, Tensor>,
        method: Method,
        seed: u64,
    ) -> Result<Self> {
        let shapes = tensor_shapes(config);
        for (name, shape) in &shapes {
            let t = weights
                .get(name)
                .with_context(|| format!("the base model has no tensor {name}"))?;
            if t.dims() != shape.as_slice() {
                bail!(
                    "tensor {name} has shape {:?}, the config implies {shape:?}",
                    t.dims()
                );
            }
        }
        let needed: std::collections::HashSet<&str> =
            shapes.iter().map(|(n, _)| n.as_str()).collect();
        weights.retain(|name, _| needed.contains(name.as_str()));
        match method {
            Method::Full => {
                let varmap = VarMap::new();
                let mut params = Vec::with_capacity(shapes.len());
                {
                    let mut data = varmap.data().lock().expect("fresh VarMap lock");
                    for (name, _) in &shapes {
                        // Removing as we go keeps one copy of the model in memory, not two.
                        let t = weights
                            .remove(name)
                            .expect("checked above")
                            .to_dtype(DType::F32)?;
                        let var = Var::from_tensor(&t)?;
                        drop(t);
                        data.insert(name.clone(), var.clone());
                        params.push((name.clone(), var));
                    }
                }
                let model = Model::new(
                    config,
                    VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
                )?;
                Ok(Self {
                    model,
                    params,
                    adapters: Vec::new(),
                    frozen: HashMap::new(),
                    method: Method::Full,
                    dropout_seed: DropoutSeed::default(),
                })
            }
            Method::Lora(ref options) => {
                let dropout_seed = DropoutSeed::default();
                for t in weights.values_mut() {
                    *t = t.to_dtype(DType::F32)?;
                }
                let vb = VarBuilder::from_tensors(weights.clone(), DType::F32, &Device::Cpu);
                let mut model = Model::new(config, vb)?;
                let adapters = lora::attach(&mut model, options, seed, &dropout_seed)?;
                let params = adapters
                    .iter()
                    .flat_map(|a| [(a.a_name(), a.a.clone()), (a.b_name(), a.b.clone())])
                    .collect();
                Ok(Self {
                    model,
                    params,
                    adapters,
                    frozen: weights,
                    method,
                    dropout_seed,
                })
            }
        }
    }

    /// Every tensor of the trained model by Hugging Face name, in the architecture's order, LoRA
    /// merged in: what the Hugging Face and GGUF exports write.
    pub fn merged_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let config = self.model.config();
        let current: HashMap<&str, Tensor> = match self.method {
            Method::Full => self
                .params
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_tensor().clone()))
                .collect(),
            Method::Lora(_) => self
                .frozen
                .iter()
                .map(|(n, t)| (n.as_str(), t.clone()))
                .collect(),
        };
        let mut merged: HashMap<String, Tensor> = HashMap::new();
        for (module, linear) in self.model.linears() {
            if linear.lora().is_some() {
                merged.insert(format!("{module}.weight"), lora::merged_weight(linear)?);
            }
        }
        tensor_shapes(config)
            .into_iter()
            .map(|(name, _)| {
                let t = match merged.remove(&name) {
                    Some(t) => t,
                    None => current
                        .get(name.as_str())
                        .cloned()
                        .with_context(|| format!("no tensor {name} in the trained model"))?,
                };
                Ok((name, t))
            })
            .collect()
    }

    /// Trainable parameter count.
    pub fn trainable_count(&self) -> usize {
        self.params.iter().map(|(_, v)| v.elem_count()).sum()
    }
}
