//! Loading a model and its tokenizer from a registry name, a `.gguf` file or a Hugging Face
//! directory, and building tiny random models for tests.

use crate::linear::Linear;
use crate::models::decoder::linear_bias;
use crate::models::{llama, Architecture, Config, Model};
use crate::tokenizer::{self, TokenizerInfo};
use anyhow::{bail, Context, Result};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// How the weights are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// The fastest format for sampling on this device. On a CPU with AVX2 (or AVX512-BF16):
    /// linear weights as bf16 for ilf's own kernel (bf16_matmul.rs), half the memory of f32 and
    /// 3–5× faster per layer at 10 rows (bench_linear); elsewhere, as [`Self::F32`].
    Inference,
    /// Frozen f32 linear weights multiplied by candle's GEMM: the checkpoint's exact numerics,
    /// for reference checks and comparisons.
    F32,
    /// Frozen quantized matmuls (Q8_0 and the k-quants as stored), about a quarter of the f32
    /// memory; for large models or single-stream decoding.
    Quantized,
    /// Every tensor f32, ready to become a trainable `Var`.
    Trainable,
}

/// A loaded model with everything needed to sample from it.
pub struct Loaded {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub config: Config,
    pub info: TokenizerInfo,
    /// The file or directory it came from.
    pub source: PathBuf,
}

/// Where a `--model` value points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    Gguf(PathBuf),
    HfDir(PathBuf),
}

/// Resolves a registry name (fetching it if missing), a `.gguf` path or a Hugging Face directory.
///
/// A PEFT adapter directory resolves to its base model (whose files hold the tokenizer and the
/// architecture); [`load`] and [`load_f32_weights`] then apply the adapter.
pub fn resolve(spec: &str) -> Result<ModelSource> {
    if crate::peft::is_adapter_dir(spec) {
        let adapter_dir = Path::new(spec);
        let base = crate::peft::AdapterConfig::read(adapter_dir)?.base;
        return resolve(&base)
            .with_context(|| format!("the base model of the adapter {}", adapter_dir.display()));
    }
    if let Some(entry) = crate::registry::find(spec) {
        return Ok(ModelSource::Gguf(crate::fetch::ensure(entry, &mut |_| {})?));
    }
    let path = PathBuf::from(spec);
    if path.is_dir() {
        if !path.join("config.json").is_file() {
            bail!(
                "{} is a directory without config.json: not a Hugging Face model directory",
                path.display()
            );
        }
        return Ok(ModelSource::HfDir(path));
    }
    if path.is_file() {
        return Ok(ModelSource::Gguf(path));
    }
    bail!(
        "model {spec:?} is neither a known name ({}), nor a .gguf file, nor a Hugging Face directory",
        crate::registry::names().join(", ")
    )
}

/// Loads `spec` (see [`resolve`]) onto `device`.
pub fn load(spec: &str, device: &Device, mode: LoadMode) -> Result<Loaded> {
    if crate::peft::is_adapter_dir(spec) {
        let adapter = crate::peft::PeftAdapter::open(Path::new(spec))?;
        let mut loaded = load(&adapter.base, device, mode)
            .with_context(|| format!("the base model of the adapter {}", adapter.dir.display()))?;
        adapter.attach(&mut loaded.model, device)?;
        loaded.source = adapter.dir;
        return Ok(loaded);
    }
    match resolve(spec)? {
        ModelSource::Gguf(path) => load_gguf(&path, device, mode),
        ModelSource::HfDir(dir) => load_hf_dir(&dir, device, mode),
    }
}

/// Whether [`LoadMode::Inference`] holds linear weights as bf16 on `device`: on a CPU with a
/// vector kernel for them (the portable one is slower than candle's f32 GEMM).
fn bf16_kernel_on(device: &Device) -> bool {
    use crate::bf16_matmul::Kernel;
    device.is_cpu() && Kernel::best() != Kernel::Scalar
}

/// A bf16 linear layer (see [`LoadMode::Inference`]) from the f32 weight in `vb`.
fn bf16_linear(
    name: &str,
    inp: usize,
    out: usize,
    bias: bool,
    vb: &VarBuilder,
) -> candle_core::Result<Linear> {
    let dense = crate::models::decoder::dense_linear(name, inp, out, bias, vb)?;
    Linear::bf16(
        dense.weight().expect("a dense layer"),
        dense.bias().cloned(),
    )
}

/// f32 weights by Hugging Face name, for the trainer's `VarMap` and for exports.
pub fn load_f32_weights(spec: &str) -> Result<(Config, HashMap<String, Tensor>, Tokenizer)> {
    if crate::peft::is_adapter_dir(spec) {
        let adapter = crate::peft::PeftAdapter::open(Path::new(spec))?;
        let (config, mut weights, tok) = load_f32_weights(&adapter.base)?;
        adapter.merge(&mut weights)?;
        return Ok((config, weights, tok));
    }
    match resolve(spec)? {
        ModelSource::Gguf(path) => {
            let mut gguf = GgufFile::open(&path)?;
            let (tok, _) = tokenizer::from_gguf(&gguf.content)?;
            let config = gguf.config.clone();
            Ok((config, gguf.f32_tensors(&Device::Cpu, &[])?, tok))
        }
        ModelSource::HfDir(dir) => {
            let (cfg, tensors) = hf_tensors(&dir, &Device::Cpu)?;
            Ok((
                cfg,
                tensors,
                tokenizer::from_file(&dir.join("tokenizer.json"))?,
            ))
        }
    }
}

/// An open GGUF file: its header, the config derived from it, and a reader for its tensors.
struct GgufFile {
    path: PathBuf,
    content: gguf_file::Content,
    reader: BufReader<File>,
    config: Config,
}

/// GGUF tensor name → Hugging Face name.
fn hf_name(gguf: &str) -> Option<String> {
    let fixed = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, kind) = rest.rsplit_once('.')?;
    let hf = match module {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

impl GgufFile {
    fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let file_len = file.metadata()?.len();
        let mut reader = BufReader::new(file);
        let content = gguf_file::Content::read(&mut reader).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a readable GGUF file ({e}); re-fetch or re-export it",
                path.display()
            )
        })?;
        let config = gguf_config(&content)
            .with_context(|| format!("reading the model configuration of {}", path.display()))?;
        // Check every tensor before reading any, so a truncated or mislabelled file names the
        // tensor instead of failing with a bare I/O error half-way through.
        let mut expected: HashMap<String, Vec<usize>> =
            crate::models::decoder::tensor_shapes(&config)
                .into_iter()
                .collect();
        for (name, info) in &content.tensor_infos {
            let dtype = info.ggml_dtype;
            let bytes = info.shape.elem_count() / dtype.block_size() * dtype.type_size();
            let start = content.tensor_data_offset + info.offset;
            if start + bytes as u64 > file_len {
                bail!(
                    "{} is truncated: tensor {name} ({dtype:?}, shape {:?}) needs bytes {start}..{} but the file has {file_len}; delete it and run `ilf models fetch` again",
                    path.display(),
                    info.shape.dims(),
                    start + bytes as u64
                );
            }
            if let Some(hf) = hf_name(name) {
                if let Some(shape) = expected.remove(&hf) {
                    if info.shape.dims() != shape.as_slice() {
                        bail!("{}: tensor {name} has shape {:?}, expected {shape:?} for this configuration", path.display(), info.shape.dims());
                    }
                }
            }
        }
        if let Some((missing, shape)) = expected.into_iter().min() {
            let gguf = gguf_name(&missing).unwrap_or_else(|| missing.clone());
            bail!("{} lacks tensor {gguf} ({missing}, shape {shape:?}); the file is incomplete or not a {} model", path.display(), config.architecture.name());
        }
        Ok(Self {
            path: path.to_path_buf(),
            content,
            reader,
            config,
        })
    }

    fn qtensor(&mut self, gguf: &str, device: &Device) -> Result<QTensor> {
        self.content
            .tensor(&mut self.reader, gguf, device)
            .map_err(|e| anyhow::anyhow!("{}: reading tensor {gguf}: {e}", self.path.display()))
    }

    /// Every tensor dequantized to f32 under its Hugging Face name (llama q/k un-permuted).
    fn f32_tensors(&mut self, device: &Device, skip: &[&str]) -> Result<HashMap<String, Tensor>> {
        let mut names: Vec<String> = self.content.tensor_infos.keys().cloned().collect();
        names.sort();
        let mut out = HashMap::new();
        for name in names {
            if skip.contains(&name.as_str()) {
                continue;
            }
            let Some(hf) = hf_name(&name) else { continue };
            let t = self.qtensor(&name, device)?.dequantize(device)?;
            out.insert(hf.clone(), self.fix_layout(&hf, t)?);
        }
        Ok(out)
    }

    /// The rank-1 tensors (norms, biases) as f32 under their Hugging Face names: what the
    /// inference and quantized modes keep dense while linear weights are loaded one by one.
    fn small_tensors(&mut self, device: &Device) -> Result<HashMap<String, Tensor>> {
        let mut names: Vec<String> = self.content.tensor_infos.keys().cloned().collect();
        names.sort();
        let mut out = HashMap::new();
        for name in &names {
            let Some(hf) = hf_name(name) else { continue };
            if self.content.tensor_infos[name].shape.rank() == 1 {
                let t = self.qtensor(name, device)?.dequantize(device)?;
                out.insert(hf.clone(), self.fix_layout(&hf, t)?);
            }
        }
        Ok(out)
    }

    /// The GGUF tensor holding the weight of linear layer `name` (`lm_head` is the token
    /// embedding when tied).
    fn linear_weight_name(&self, name: &str) -> String {
        if name == "lm_head" && self.config.tie_word_embeddings {
            return "token_embd.weight".to_string();
        }
        let hf = format!("{name}.weight");
        gguf_name(&hf).unwrap_or(hf)
    }

    /// llama.cpp permutes Llama's q/k rows for its interleaved RoPE; undo that.
    fn fix_layout(&self, hf: &str, t: Tensor) -> Result<Tensor> {
        if self.config.architecture != Architecture::Llama {
            return Ok(t);
        }
        let heads = if hf.contains("self_attn.q_proj") {
            self.config.num_attention_heads
        } else if hf.contains("self_attn.k_proj") {
            self.config.num_key_value_heads
        } else {
            return Ok(t);
        };
        if t.rank() == 1 {
            let n = t.dim(0)?;
            return Ok(llama::unpermute_qk(&t.reshape((n, 1))?, heads)?.reshape(n)?);
        }
        Ok(llama::unpermute_qk(&t, heads)?)
    }
}

/// Hugging Face tensor name → llama.cpp's GGUF name (`None` for a tensor GGUF does not have).
pub fn gguf_name(hf: &str) -> Option<String> {
    let fixed = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ];
    if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
        return Some(g.to_string());
    }
    let modules = [
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
    if let Some(rest) = hf.strip_prefix("model.layers.") {
        if let Some((layer, rest)) = rest.split_once('.') {
            for (h, g) in modules {
                if let Some(kind) = rest.strip_prefix(h) {
                    return Some(format!("blk.{layer}.{g}{kind}"));
                }
            }
        }
    }
    None
}

fn gguf_config(ct: &gguf_file::Content) -> Result<Config> {
    let arch_name = ct
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .context("no general.architecture in the GGUF metadata")?
        .clone();
    let architecture = Architecture::from_name(&arch_name).with_context(|| {
        format!("unsupported architecture {arch_name:?} (supported: qwen2, llama)")
    })?;
    let get = |key: &str| -> Result<&gguf_file::Value> {
        ct.metadata
            .get(&format!("{arch_name}.{key}"))
            .with_context(|| format!("GGUF metadata lacks {arch_name}.{key}"))
    };
    let u = |key: &str| -> Result<usize> { Ok(get(key)?.to_u32()? as usize) };
    let hidden_size = u("embedding_length")?;
    let num_attention_heads = u("attention.head_count")?;
    let num_key_value_heads = u("attention.head_count_kv").unwrap_or(num_attention_heads);
    let head_dim = u("attention.key_length").unwrap_or(hidden_size / num_attention_heads);
    let vocab_size = match ct.metadata.get("tokenizer.ggml.tokens") {
        Some(v) => v.to_vec()?.len(),
        None => u("vocab_size")?,
    };
    let eos = ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"]
        .iter()
        .filter_map(|k| ct.metadata.get(*k).and_then(|v| v.to_u32().ok()))
        .collect();
    Ok(Config {
        architecture,
        vocab_size,
        hidden_size,
        intermediate_size: u("feed_forward_length")?,
        num_hidden_layers: u("block_count")?,
        num_attention_heads,
        num_key_value_heads,
        head_dim,
        max_position_embeddings: u("context_length")?,
        rms_norm_eps: get("attention.layer_norm_rms_epsilon")?.to_f32()? as f64,
        rope_theta: get("rope.freq_base")
            .and_then(|v| Ok(v.to_f32()? as f64))
            .unwrap_or(10_000.0),
        tie_word_embeddings: !ct.tensor_infos.contains_key("output.weight"),
        attention_bias: ct.tensor_infos.contains_key("blk.0.attn_q.bias"),
        bos_token_id: ct
            .metadata
            .get("tokenizer.ggml.bos_token_id")
            .and_then(|v| v.to_u32().ok()),
        eos_token_ids: eos,
    })
}

fn load_gguf(path: &Path, device: &Device, mode: LoadMode) -> Result<Loaded> {
    let mut gguf = GgufFile::open(path)?;
    let (tok, mut info) = tokenizer::from_gguf(&gguf.content)
        .with_context(|| format!("rebuilding the tokenizer of {}", path.display()))?;
    let mut config = gguf.config.clone();
    info.eos_token_ids
        .extend(config.eos_token_ids.iter().copied());
    info.eos_token_ids.sort_unstable();
    info.eos_token_ids.dedup();
    config.eos_token_ids = info.eos_token_ids.clone();
    let model = match mode {
        LoadMode::Inference if bf16_kernel_on(device) => {
            // Each linear weight is dequantized and rounded to bf16 one at a time, so the f32
            // copy of the whole model (2 GB for 0.5B) never exists. Norms and biases: f32.
            let mut small = gguf.small_tensors(device)?;
            // Sampling only looks rows of the embedding up: it stays quantized unless the
            // output projection shares it.
            let embeddings = if config.tie_word_embeddings {
                let t = gguf
                    .qtensor("token_embd.weight", device)?
                    .dequantize(device)?;
                small.insert("model.embed_tokens.weight".to_string(), t);
                None
            } else {
                Some(gguf.qtensor("token_embd.weight", device)?)
            };
            let vb = VarBuilder::from_tensors(small, DType::F32, device);
            let mut packed = |name: &str,
                              _inp: usize,
                              out: usize,
                              bias: bool,
                              vb: &VarBuilder|
             -> candle_core::Result<Linear> {
                let err = |e: anyhow::Error| candle_core::Error::Msg(format!("{e:#}"));
                let g = gguf.linear_weight_name(name);
                let dense = gguf.qtensor(&g, device).map_err(err)?.dequantize(device)?;
                let dense = gguf
                    .fix_layout(&format!("{name}.weight"), dense)
                    .map_err(err)?;
                Linear::bf16(&dense, linear_bias(name, out, bias, vb)?)
            };
            Model::build(&config, vb, embeddings, &mut packed)?
        }
        // Sampling only looks rows of the embedding up: keeping it quantized saves ~450 MB on
        // the 0.5B model (a tied output projection needs it dense).
        LoadMode::Inference | LoadMode::F32 if !config.tie_word_embeddings => {
            let embeddings = gguf.qtensor("token_embd.weight", device)?;
            let tensors = gguf.f32_tensors(device, &["token_embd.weight"])?;
            let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
            Model::build(
                &config,
                vb,
                Some(embeddings),
                &mut crate::models::decoder::dense_linear,
            )?
        }
        LoadMode::Inference | LoadMode::F32 | LoadMode::Trainable => {
            let tensors = gguf.f32_tensors(device, &[])?;
            Model::new(
                &config,
                VarBuilder::from_tensors(tensors, DType::F32, device),
            )?
        }
        LoadMode::Quantized => {
            // Norms and biases are small: f32. Linear weights stay quantized.
            let small = gguf.small_tensors(device)?;
            let embeddings = gguf.qtensor("token_embd.weight", device)?;
            let vb = VarBuilder::from_tensors(small, DType::F32, device);
            let mut quantized = |name: &str,
                                 _inp: usize,
                                 out: usize,
                                 bias: bool,
                                 vb: &VarBuilder|
             -> candle_core::Result<Linear> {
                let g = gguf.linear_weight_name(name);
                let q = gguf
                    .qtensor(&g, device)
                    .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
                let q = if config.architecture == Architecture::Llama
                    && (name.ends_with("q_proj") || name.ends_with("k_proj"))
                {
                    let dense = gguf
                        .fix_layout(&format!("{name}.weight"), q.dequantize(device)?)
                        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
                    QTensor::quantize(&dense, GgmlDType::Q8_0)?
                } else {
                    q
                };
                Linear::quantized(q, linear_bias(name, out, bias, vb)?)
            };
            Model::build(&config, vb, Some(embeddings), &mut quantized)?
        }
    };
    Ok(Loaded {
        model,
        tokenizer: tok,
        config,
        info,
        source: path.to_path_buf(),
    })
}

/// `config.json` and all weights of a Hugging Face directory, as f32.
fn hf_tensors(dir: &Path, device: &Device) -> Result<(Config, HashMap<String, Tensor>)> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path)
        .with_context(|| format!("reading {}", cfg_path.display()))?;
    let config =
        Config::from_hf_json(&text).with_context(|| format!("parsing {}", cfg_path.display()))?;
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    let files: Vec<PathBuf> = if single.is_file() {
        vec![single]
    } else if index.is_file() {
        let idx: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&index)?)
            .with_context(|| format!("parsing {}", index.display()))?;
        let mut shards: Vec<String> = idx["weight_map"]
            .as_object()
            .with_context(|| format!("{} has no weight_map", index.display()))?
            .values()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        shards.sort();
        shards.dedup();
        shards.into_iter().map(|s| dir.join(s)).collect()
    } else {
        bail!(
            "{} has neither model.safetensors nor model.safetensors.index.json",
            dir.display()
        );
    };
    let mut tensors = HashMap::new();
    for f in files {
        let part = candle_core::safetensors::load(&f, device)
            .with_context(|| format!("reading {}", f.display()))?;
        for (name, t) in part {
            tensors.insert(name, t.to_dtype(DType::F32)?);
        }
    }
    for (name, shape) in crate::models::decoder::tensor_shapes(&config) {
        match tensors.get(&name) {
            None => bail!("{} lacks tensor {name} (shape {shape:?})", dir.display()),
            Some(t) if t.dims() != shape.as_slice() => {
                bail!(
                    "{}: tensor {name} has shape {:?}, expected {shape:?}",
                    dir.display(),
                    t.dims()
                )
            }
            Some(_) => {}
        }
    }
    Ok((config, tensors))
}

fn load_hf_dir(dir: &Path, device: &Device, mode: LoadMode) -> Result<Loaded> {
    let (mut config, tensors) = hf_tensors(dir, device)?;
    let tok = tokenizer::from_file(&dir.join("tokenizer.json"))?;
    if let Some(t) = tok.token_to_id("<|endoftext|>") {
        config.eos_token_ids.push(t);
        config.eos_token_ids.sort_unstable();
        config.eos_token_ids.dedup();
    }
    let chat_template = std::fs::read_to_string(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["chat_template"].as_str().map(String::from));
    let info = TokenizerInfo {
        bos_token_id: config.bos_token_id,
        eos_token_ids: config.eos_token_ids.clone(),
        chat_template,
    };
    let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
    // The f32 tensors are dropped with `vb` once the bf16 layers are built. A Hugging Face
    // directory has no quantized weights, so `Quantized` loads it as f32.
    let model = if mode == LoadMode::Inference && bf16_kernel_on(device) {
        Model::build(&config, vb, None, &mut bf16_linear)?
    } else {
        Model::new(&config, vb)?
    };
    Ok(Loaded {
        model,
        tokenizer: tok,
        config,
        info,
        source: dir.to_path_buf(),
    })
}

/// Random weights (seeded, normal with std 0.1; norms at 1) for every tensor of `cfg`.
pub fn tiny_random_weights(
    cfg: &Config,
    seed: u64,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut out = HashMap::new();
    for (name, shape) in crate::models::decoder::tensor_shapes(cfg) {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = if name.ends_with("norm.weight") {
            (0..n)
                .map(|_| 1.0 + 0.1 * (rng.random::<f32>() - 0.5))
                .collect()
        } else {
            (0..n)
                .map(|_| {
                    // Box–Muller: two uniforms give one standard normal.
                    let u1: f32 = rng.random::<f32>().max(1e-12);
                    let u2: f32 = rng.random();
                    0.1 * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
                })
                .collect()
        };
        out.insert(name, Tensor::from_vec(data, shape, device)?);
    }
    Ok(out)
}

/// A tiny random model of `cfg`'s architecture (see [`Config::tiny`]) for tests.
pub fn tiny_random(cfg: &Config, seed: u64, device: &Device) -> Result<Model> {
    let weights = tiny_random_weights(cfg, seed, device)?;
    Ok(Model::new(
        cfg,
        VarBuilder::from_tensors(weights, DType::F32, device),
    )?)
}
