//! PEFT LoRA adapter directories (`adapter_config.json` + `adapter_model.safetensors`, what
//! `ilf train --lora` exports and `peft`/vLLM load) usable wherever a model is: the base named in
//! `base_model_name_or_path` is loaded and the adapters are attached to its linear layers
//! (sampling) or merged into its f32 weights (training on top of them).

use crate::linear::Lora;
use crate::models::Model;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// PEFT's prefix for the adapter keys of a causal LM.
const PREFIX: &str = "base_model.model.";

/// A loaded LoRA adapter: `(A [r, in], B [out, r])` per module, scale `alpha / r`.
pub struct PeftAdapter {
    pub dir: PathBuf,
    /// `base_model_name_or_path`, resolved against the adapter's directory when relative and
    /// not found from the working directory.
    pub base: String,
    pub scale: f64,
    pub modules: BTreeMap<String, (Tensor, Tensor)>,
}

/// Whether `spec` names a PEFT adapter directory (and not a full model directory).
pub fn is_adapter_dir(spec: &str) -> bool {
    let p = Path::new(spec);
    p.join("adapter_config.json").is_file() && !p.join("config.json").is_file()
}

/// What `adapter_config.json` says: the base to load and the adapters' scale.
pub struct AdapterConfig {
    /// `base_model_name_or_path`, resolved as [`PeftAdapter::base`] is.
    pub base: String,
    /// `lora_alpha / r`.
    pub scale: f64,
}

impl AdapterConfig {
    /// Reads `dir/adapter_config.json` only (not the weights); unsupported PEFT variants are
    /// refused by name.
    pub fn read(dir: &Path) -> Result<Self> {
        let config_path = dir.join("adapter_config.json");
        let text = std::fs::read_to_string(&config_path)
            .with_context(|| format!("reading {}", config_path.display()))?;
        let config: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", config_path.display()))?;
        let peft_type = config["peft_type"].as_str().unwrap_or("(none)");
        if peft_type != "LORA" {
            bail!(
                "{}: peft_type {peft_type:?} is not supported (LORA only)",
                config_path.display()
            );
        }
        for flag in ["use_rslora", "use_dora"] {
            if config[flag].as_bool() == Some(true) {
                bail!("{}: {flag} is not supported", config_path.display());
            }
        }
        for pattern in ["rank_pattern", "alpha_pattern"] {
            if config[pattern].as_object().is_some_and(|m| !m.is_empty()) {
                bail!(
                    "{}: per-module {pattern} is not supported",
                    config_path.display()
                );
            }
        }
        let r = config["r"]
            .as_f64()
            .filter(|r| *r > 0.0)
            .with_context(|| format!("{}: no positive `r`", config_path.display()))?;
        let alpha = config["lora_alpha"]
            .as_f64()
            .with_context(|| format!("{}: no `lora_alpha`", config_path.display()))?;
        let base = config["base_model_name_or_path"]
            .as_str()
            .filter(|s| !s.is_empty())
            .with_context(|| {
                format!(
                    "{}: no base_model_name_or_path: which model does this adapter adapt?",
                    config_path.display()
                )
            })?;
        Ok(Self {
            base: resolve_base(base, dir),
            scale: alpha / r,
        })
    }
}

impl PeftAdapter {
    /// Reads the adapter in `dir`: its config ([`AdapterConfig::read`]) and its weights.
    pub fn open(dir: &Path) -> Result<Self> {
        let AdapterConfig { base, scale } = AdapterConfig::read(dir)?;
        let weights_path = dir.join("adapter_model.safetensors");
        let tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu)
            .with_context(|| format!("reading {}", weights_path.display()))?;
        let mut halves: BTreeMap<String, (Option<Tensor>, Option<Tensor>)> = BTreeMap::new();
        for (key, t) in tensors {
            let name = key.strip_prefix(PREFIX).unwrap_or(&key);
            let (module, which) = if let Some(m) = name.strip_suffix(".lora_A.weight") {
                (m, 0)
            } else if let Some(m) = name.strip_suffix(".lora_B.weight") {
                (m, 1)
            } else {
                bail!(
                    "{}: tensor {key} is not a LoRA A or B weight",
                    weights_path.display()
                );
            };
            let t = t.to_dtype(DType::F32)?;
            let slot = halves.entry(module.to_string()).or_default();
            if which == 0 {
                slot.0 = Some(t);
            } else {
                slot.1 = Some(t);
            }
        }
        let mut modules = BTreeMap::new();
        for (module, pair) in halves {
            match pair {
                (Some(a), Some(b)) => {
                    modules.insert(module, (a, b));
                }
                _ => bail!(
                    "{}: module {module} has only one of lora_A and lora_B",
                    weights_path.display()
                ),
            }
        }
        if modules.is_empty() {
            bail!("{}: no LoRA weights", weights_path.display());
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            base,
            scale,
            modules,
        })
    }

    /// Attaches every module's adapter to `model` (on `device`); an adapter for a layer the
    /// model lacks, or of the wrong shape, is an error.
    pub fn attach(&self, model: &mut Model, device: &Device) -> Result<()> {
        let mut linears: HashMap<String, &mut crate::linear::Linear> =
            model.linears_mut().collect();
        for (module, (a, b)) in &self.modules {
            let linear = linears.get_mut(module).with_context(|| {
                format!(
                    "{}: the base model has no layer {module}",
                    self.dir.display()
                )
            })?;
            let (r, inp) = a.dims2()?;
            let (out, r_b) = b.dims2()?;
            if inp != linear.in_features() || out != linear.out_features() || r != r_b {
                bail!(
                    "{}: {module}: A {:?} and B {:?} do not fit a [{}, {}] layer",
                    self.dir.display(),
                    a.dims(),
                    b.dims(),
                    linear.out_features(),
                    linear.in_features()
                );
            }
            linear.set_lora(Some(Lora {
                a: a.to_device(device)?,
                b: b.to_device(device)?,
                scale: self.scale,
                dropout: 0.0,
                dropout_seed: Default::default(),
                salt: 0,
            }));
        }
        Ok(())
    }

    /// `W + scale · B A` into the f32 weights (Hugging Face names).
    pub fn merge(&self, weights: &mut HashMap<String, Tensor>) -> Result<()> {
        for (module, (a, b)) in &self.modules {
            let name = format!("{module}.weight");
            let w = weights.get_mut(&name).with_context(|| {
                format!(
                    "{}: the base model has no tensor {name}",
                    self.dir.display()
                )
            })?;
            let delta = (b.matmul(a)? * self.scale)?.to_device(w.device())?;
            if delta.dims() != w.dims() {
                bail!(
                    "{}: {module}: B·A is {:?}, the weight {:?}",
                    self.dir.display(),
                    delta.dims(),
                    w.dims()
                );
            }
            *w = (&*w + delta)?;
        }
        Ok(())
    }
}

/// A base spec as written: a registry name or an existing path stays; a relative path that does
/// not exist from here is taken relative to the adapter's directory.
fn resolve_base(base: &str, dir: &Path) -> String {
    let p = Path::new(base);
    if crate::registry::find(base).is_some() || p.is_absolute() || p.exists() {
        return base.to_string();
    }
    let beside = dir.join(p);
    if beside.exists() {
        return beside.to_string_lossy().into_owned();
    }
    base.to_string()
}
