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
    /// The frozen linear weights are bf16 (LoRA with `--base-dtype bf16`); their f32 values
    /// are no longer in `frozen`.
    base_bf16: bool,
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
                    base_bf16: false,
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
                    base_bf16: false,
                })
            }
        }
    }

    /// LoRA only: holds every frozen linear layer (the adapters' bases and the output
    /// projection) as bf16 in both orientations and drops their f32 copies, so memory stays
    /// that of the f32 base while the forward and backward run on the bf16 kernel.
    pub fn freeze_base_to_bf16(&mut self) -> Result<()> {
        if !matches!(self.method, Method::Lora(_)) {
            bail!("a bf16 base is for LoRA: full fine-tuning trains the weights themselves");
        }
        for (module, linear) in self.model.linears_mut() {
            linear.freeze_to_bf16()?;
            // Dropped layer by layer, so f32 and bf16 copies of the whole model never coexist.
            self.frozen.remove(&format!("{module}.weight"));
        }
        self.base_bf16 = true;
        Ok(())
    }

    /// Whether the frozen base is held as bf16 (see [`Self::freeze_base_to_bf16`]).
    pub fn base_is_bf16(&self) -> bool {
        self.base_bf16
    }

    /// [`Self::merged_tensors`], reloading the f32 base from `base_spec` when the model holds it
    /// as bf16: merges add the adapters to the checkpoint's exact weights, not to their bf16
    /// rounding.
    pub fn merged_tensors_for(&self, base_spec: &str) -> Result<Vec<(String, Tensor)>> {
        if !self.base_bf16 {
            return self.merged_tensors();
        }
        let (_, base, _) = ilf_lm::load_f32_weights(base_spec)
            .with_context(|| format!("reloading the f32 base {base_spec} to merge the adapters"))?;
        self.merged_over(Some(&base))
    }

    /// Every tensor of the trained model by Hugging Face name, in the architecture's order, LoRA
    /// merged in: what the Hugging Face and GGUF exports write.
    pub fn merged_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        self.merged_over(None)
    }

    /// The merge, with `base` supplying the f32 linear weights a bf16 model no longer holds.
    fn merged_over(&self, base: Option<&HashMap<String, Tensor>>) -> Result<Vec<(String, Tensor)>> {
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
            let name = format!("{module}.weight");
            if linear.is_bf16() {
                let Some(w) = base.and_then(|b| b.get(&name)).or_else(|| {
                    // A tied output projection is the embedding.
                    (module == "lm_head")
                        .then(|| current.get("model.embed_tokens.weight"))
                        .flatten()
                }) else {
                    bail!("{name} is held as bf16: merging needs the f32 base (merged_tensors_for)")
                };
                let w = w.to_dtype(DType::F32)?;
                let w = match linear.lora() {
                    None => w,
                    Some(l) => (w + (l.b.matmul(&l.a)? * l.scale)?)?,
                };
                merged.insert(name, w);
            } else if linear.lora().is_some() {
                merged.insert(name, lora::merged_weight(linear)?);
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
