//! The GGUF importer: a llama.cpp model file becomes an IR graph whose weights stay memory-mapped in the file, in
//! their stored formats (block-quantized ones included).
//!
//! The hyperparameters in the file's metadata become a transformers-style configuration and the tensors are looked
//! up under transformers' names, so the graph is built by the same builder as a Hugging Face folder of that
//! architecture. Supported `general.architecture`s: `llama` (Llama, Mistral-style and SmolLM models), `qwen2`,
//! `phi3` (fused matrices read as row ranges), `gemma3` (text decoder), `gpt2` and `bert` (encoders: the output is
//! the last hidden state).

mod file;
mod tokenizer;

pub use file::{GgufError, GgufFile, TensorInfo, Value};
pub use tokenizer::tokenizer_json;

use crate::hf::{self, Checkpoint, Config, Entry, ImportError, ImportOptions};
use serde_json::{Map, Value as Json, json};
use std::collections::HashMap;
use std::path::Path;
use tfc_ir::Graph;

/// The values of `general.architecture` that [`import`] builds.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama", "qwen2", "phi3", "gemma3", "gpt2", "bert"];

/// llama.cpp's tensor names of an architecture family and transformers' names for them.
struct Names {
    /// Whole tensor names outside the layers.
    model: &'static [(&'static str, &'static str)],
    /// What transformers puts before the layer number.
    layers: &'static str,
    /// Module names inside a layer (`blk.N.<module>.weight`).
    layer: &'static [(&'static str, &'static str)],
}

const LLAMA_NAMES: Names = Names {
    model: &[("token_embd.weight", "model.embed_tokens.weight"), ("output_norm.weight", "model.norm.weight"), ("output.weight", "lm_head.weight")],
    layers: "model.layers",
    layer: &[
        ("attn_norm", "input_layernorm"),
        ("attn_q", "self_attn.q_proj"),
        ("attn_k", "self_attn.k_proj"),
        ("attn_v", "self_attn.v_proj"),
        ("attn_output", "self_attn.o_proj"),
        ("ffn_norm", "post_attention_layernorm"),
        ("ffn_gate", "mlp.gate_proj"),
        ("ffn_up", "mlp.up_proj"),
        ("ffn_down", "mlp.down_proj"),
    ],
};

/// Phi-3: the llama family with fused query/key/value and gate/up matrices, named as in transformers' Phi-3.
const PHI3_NAMES: Names = Names {
    model: LLAMA_NAMES.model,
    layers: LLAMA_NAMES.layers,
    layer: &[
        ("attn_norm", "input_layernorm"),
        ("attn_qkv", "self_attn.qkv_proj"),
        ("attn_output", "self_attn.o_proj"),
        ("ffn_norm", "post_attention_layernorm"),
        ("ffn_up", "mlp.gate_up_proj"),
        ("ffn_down", "mlp.down_proj"),
    ],
};

/// Gemma 3: norms after attention and the MLP as well as before, and on each query and key head.
const GEMMA3_NAMES: Names = Names {
    model: &[("token_embd.weight", "model.embed_tokens.weight"), ("output_norm.weight", "model.norm.weight"), ("output.weight", "lm_head.weight")],
    layers: LLAMA_NAMES.layers,
    layer: &[
        ("attn_norm", "input_layernorm"),
        ("attn_q", "self_attn.q_proj"),
        ("attn_k", "self_attn.k_proj"),
        ("attn_v", "self_attn.v_proj"),
        ("attn_q_norm", "self_attn.q_norm"),
        ("attn_k_norm", "self_attn.k_norm"),
        ("attn_output", "self_attn.o_proj"),
        ("post_attention_norm", "post_attention_layernorm"),
        ("ffn_norm", "pre_feedforward_layernorm"),
        ("ffn_gate", "mlp.gate_proj"),
        ("ffn_up", "mlp.up_proj"),
        ("ffn_down", "mlp.down_proj"),
        ("post_ffw_norm", "post_feedforward_layernorm"),
    ],
};

const GPT2_NAMES: Names = Names {
    model: &[
        ("token_embd.weight", "transformer.wte.weight"),
        ("position_embd.weight", "transformer.wpe.weight"),
        ("output_norm.weight", "transformer.ln_f.weight"),
        ("output_norm.bias", "transformer.ln_f.bias"),
        ("output.weight", "lm_head.weight"),
    ],
    layers: "transformer.h",
    layer: &[
        ("attn_norm", "ln_1"),
        ("attn_qkv", "attn.c_attn"),
        ("attn_output", "attn.c_proj"),
        ("ffn_norm", "ln_2"),
        ("ffn_up", "mlp.c_fc"),
        ("ffn_down", "mlp.c_proj"),
    ],
};

const BERT_NAMES: Names = Names {
    model: &[
        ("token_embd.weight", "embeddings.word_embeddings.weight"),
        ("token_types.weight", "embeddings.token_type_embeddings.weight"),
        ("position_embd.weight", "embeddings.position_embeddings.weight"),
        ("token_embd_norm.weight", "embeddings.LayerNorm.weight"),
        ("token_embd_norm.bias", "embeddings.LayerNorm.bias"),
    ],
    layers: "encoder.layer",
    layer: &[
        ("attn_q", "attention.self.query"),
        ("attn_k", "attention.self.key"),
        ("attn_v", "attention.self.value"),
        ("attn_output", "attention.output.dense"),
        ("attn_output_norm", "attention.output.LayerNorm"),
        ("ffn_up", "intermediate.dense"),
        ("ffn_down", "output.dense"),
        ("layer_output_norm", "output.LayerNorm"),
    ],
};

impl Names {
    /// transformers' name of a GGUF tensor (unknown names are kept).
    fn transformers_name(&self, gguf: &str) -> String {
        if let Some(&(_, hf)) = self.model.iter().find(|(g, _)| *g == gguf) {
            return hf.to_string();
        }
        let mapped = layer_tensor(gguf).and_then(|(layer, module, kind)| {
            let &(_, hf) = self.layer.iter().find(|(g, _)| *g == module)?;
            Some(format!("{}.{layer}.{hf}.{kind}", self.layers))
        });
        mapped.unwrap_or_else(|| gguf.to_string())
    }
}

/// (layer, module, `weight` or `bias`) of a layer's tensor, `blk.<layer>.<module>.<kind>`.
fn layer_tensor(name: &str) -> Option<(&str, &str, &str)> {
    let (layer, tensor) = name.strip_prefix("blk.")?.split_once('.')?;
    let (module, kind) = tensor.rsplit_once('.')?;
    Some((layer, module, kind))
}

/// Typed access to the metadata, with errors naming the file and the key.
struct Metadata<'a> {
    gguf: &'a GgufFile,
    arch: String,
}

impl Metadata<'_> {
    fn error(&self, key: &str, message: impl std::fmt::Display) -> ImportError {
        ImportError::Gguf(self.gguf.error(format!("metadata `{key}` {message}")))
    }

    fn opt_u64(&self, key: &str) -> Result<Option<u64>, ImportError> {
        match self.gguf.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| self.error(key, format!("must be a non-negative integer, is {v}"))),
        }
    }

    /// `<architecture>.<key>`, a required positive integer.
    fn arch_u64(&self, key: &str) -> Result<u64, ImportError> {
        let key = format!("{}.{key}", self.arch);
        match self.opt_u64(&key)? {
            None => Err(self.error(&key, "is missing; the file does not describe a complete model")),
            Some(0) => Err(self.error(&key, "is 0; it must be positive")),
            Some(v) => Ok(v),
        }
    }

    fn arch_opt_u64(&self, key: &str) -> Result<Option<u64>, ImportError> {
        self.opt_u64(&format!("{}.{key}", self.arch))
    }

    fn arch_opt_f64(&self, key: &str) -> Result<Option<f64>, ImportError> {
        let key = format!("{}.{key}", self.arch);
        match self.gguf.get(&key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| self.error(&key, format!("must be a number, is {v}"))),
        }
    }

    fn arch_opt_str(&self, key: &str) -> Result<Option<&str>, ImportError> {
        let key = format!("{}.{key}", self.arch);
        match self.gguf.get(&key) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| self.error(&key, format!("must be a string, is {v}"))),
        }
    }
}

/// The architecture named in the file.
fn architecture(gguf: &GgufFile) -> Result<String, ImportError> {
    match gguf.get("general.architecture") {
        Some(Value::String(a)) => Ok(a.clone()),
        Some(v) => Err(ImportError::Gguf(gguf.error(format!("metadata `general.architecture` must be a string, is {v}")))),
        None => Err(ImportError::Gguf(gguf.error("metadata `general.architecture` is missing; this is not a model file"))),
    }
}

/// Imports the model in the GGUF file at `path`.
pub fn import(path: &Path, opts: &ImportOptions) -> Result<Graph, ImportError> {
    let gguf = GgufFile::open(path)?;
    let arch = architecture(&gguf)?;
    if !SUPPORTED_ARCHITECTURES.contains(&arch.as_str()) {
        return Err(ImportError::Gguf(gguf.error(format!(
            "architecture `{arch}` is not supported; tfc imports the GGUF architectures {}",
            SUPPORTED_ARCHITECTURES.join(", ")
        ))));
    }
    let meta = Metadata { gguf: &gguf, arch: arch.clone() };
    let (config, names, build): (_, _, hf::Build) = match arch.as_str() {
        "bert" => (bert_config(&meta)?, &BERT_NAMES, hf::bert::build),
        "phi3" => (llama_config(&meta)?, &PHI3_NAMES, hf::llama::build),
        "gemma3" => (gemma3_config(&meta)?, &GEMMA3_NAMES, hf::gemma3::build),
        "gpt2" => (gpt2_config(&meta)?, &GPT2_NAMES, hf::gpt2::build),
        _ => (llama_config(&meta)?, &LLAMA_NAMES, hf::llama::build),
    };
    let tensors: HashMap<String, Entry> = gguf
        .tensors
        .iter()
        .map(|t| {
            let entry = Entry { source_name: t.name.clone(), file: 0, dtype: Ok(t.dtype), shape: t.shape(), offset: t.offset, len: t.len };
            (names.transformers_name(&t.name), entry)
        })
        .collect();
    let config = Config::from_json(path, config);
    let checkpoint = Checkpoint::from_gguf_entries(gguf.map.clone(), tensors, &arch);
    let model_type = config.model_type()?;
    let mut graph = build(&config, &checkpoint, opts, &model_type)?;
    let source = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    graph.metadata.insert("architecture".into(), arch);
    graph.metadata.insert("source".into(), source);
    graph.metadata.extend(chat_template(&meta)?);
    Ok(graph)
}

/// `tokenizer.chat_template` with the texts of the bos and eos tokens it refers to, as the metadata the HF importer
/// gives too (`chat_template`, `bos_token`, `eos_token`); nothing if the file has no template.
fn chat_template(meta: &Metadata) -> Result<Vec<(String, String)>, ImportError> {
    let Some(Value::String(template)) = meta.gguf.get("tokenizer.chat_template") else { return Ok(Vec::new()) };
    let mut metadata = vec![("chat_template".to_string(), template.clone())];
    let tokens = match meta.gguf.get("tokenizer.ggml.tokens") {
        Some(Value::Array(tokens)) => tokens.as_slice(),
        _ => &[],
    };
    for (key, id_key) in [("bos_token", "tokenizer.ggml.bos_token_id"), ("eos_token", "tokenizer.ggml.eos_token_id")] {
        if let Some(Value::String(token)) = meta.opt_u64(id_key)?.and_then(|id| tokens.get(id as usize)) {
            metadata.push((key.to_string(), token.clone()));
        }
    }
    Ok(metadata)
}

/// The rows of a tensor the file must have.
fn rows(gguf: &GgufFile, name: &str) -> Result<u64, ImportError> {
    let t = gguf
        .tensor(name)
        .ok_or_else(|| ImportError::Gguf(gguf.error(format!("has no tensor `{name}`; the file does not hold a complete model"))))?;
    Ok(t.shape()[0])
}

/// The transformers configuration of a BERT encoder, from the GGUF metadata.
fn bert_config(meta: &Metadata) -> Result<Map<String, Json>, ImportError> {
    let causal = format!("{}.attention.causal", meta.arch);
    if meta.gguf.get(&causal).and_then(Value::as_bool) == Some(true) {
        return Err(meta.error(&causal, "is true; tfc builds BERT as an encoder (bidirectional attention)"));
    }
    let config = json!({
        "model_type": "bert",
        "hidden_size": meta.arch_u64("embedding_length")?,
        "num_hidden_layers": meta.arch_u64("block_count")?,
        "num_attention_heads": meta.arch_u64("attention.head_count")?,
        "intermediate_size": meta.arch_u64("feed_forward_length")?,
        "vocab_size": rows(meta.gguf, "token_embd.weight")?,
        "max_position_embeddings": rows(meta.gguf, "position_embd.weight")?,
        "type_vocab_size": rows(meta.gguf, "token_types.weight")?,
        "layer_norm_eps": meta.arch_opt_f64("attention.layer_norm_epsilon")?.unwrap_or(1e-12),
        "hidden_act": "gelu",
    });
    Ok(config.as_object().expect("an object").clone())
}

/// The transformers configuration of GPT-2, from the GGUF metadata (llama.cpp's GPT-2 uses the tanh GELU).
fn gpt2_config(meta: &Metadata) -> Result<Map<String, Json>, ImportError> {
    let config = json!({
        "model_type": "gpt2",
        "n_embd": meta.arch_u64("embedding_length")?,
        "n_layer": meta.arch_u64("block_count")?,
        "n_head": meta.arch_u64("attention.head_count")?,
        "n_inner": meta.arch_u64("feed_forward_length")?,
        "n_positions": rows(meta.gguf, "position_embd.weight")?,
        "vocab_size": rows(meta.gguf, "token_embd.weight")?,
        "layer_norm_epsilon": meta.arch_opt_f64("attention.layer_norm_epsilon")?.unwrap_or(1e-5),
        "activation_function": "gelu_new",
        "tie_word_embeddings": meta.gguf.tensor("output.weight").is_none(),
    });
    with_scaling_and_eos(meta, config)
}

/// The transformers configuration of a llama-family model, from the GGUF metadata.
fn llama_config(meta: &Metadata) -> Result<Map<String, Json>, ImportError> {
    let gguf = meta.gguf;
    let hidden = meta.arch_u64("embedding_length")?;
    let heads = meta.arch_u64("attention.head_count")?;
    let kv_heads = meta.arch_opt_u64("attention.head_count_kv")?.unwrap_or(heads);
    let head_dim = match meta.arch_opt_u64("attention.key_length")? {
        Some(d) => d,
        None => hidden / heads,
    };
    let rotary = meta.arch_opt_u64("rope.dimension_count")?.unwrap_or(head_dim);
    let vocab = rows(gguf, "token_embd.weight")?;
    if let Some(t) = gguf.tensors.iter().find(|t| t.name.starts_with("rope_factors")) {
        return Err(ImportError::Gguf(gguf.error(format!(
            "has `{}`: rotary embeddings with per-frequency factors (LongRoPE) are not supported yet",
            t.name
        ))));
    }
    let config = json!({
        "model_type": meta.arch,
        "hidden_size": hidden,
        "num_hidden_layers": meta.arch_u64("block_count")?,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "partial_rotary_factor": rotary as f64 / head_dim as f64,
        "intermediate_size": meta.arch_u64("feed_forward_length")?,
        "vocab_size": vocab,
        "max_position_embeddings": meta.arch_u64("context_length")?,
        "sliding_window": meta.arch_opt_u64("attention.sliding_window")?.filter(|&w| w > 0),
        "rms_norm_eps": meta.arch_opt_f64("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5),
        "rope_theta": meta.arch_opt_f64("rope.freq_base")?.unwrap_or(10000.0),
        "hidden_act": "silu",
        "tie_word_embeddings": gguf.tensor("output.weight").is_none(),
        "attention_bias": gguf.tensor("blk.0.attn_q.bias").is_some(),
    });
    with_scaling_and_eos(meta, config)
}

/// The transformers configuration of a Gemma 3 text decoder, from the GGUF metadata, with llama.cpp's defaults for
/// what the converter does not write: local layers use RoPE base `rope.freq_base_swa` (10000) unscaled, every sixth
/// layer is global (or `attention.sliding_window_pattern`: a period or a per-layer list), and attention is scaled by
/// 1/√head_dim (1/√(hidden/heads) for the 62-layer 27B model).
fn gemma3_config(meta: &Metadata) -> Result<Map<String, Json>, ImportError> {
    let gguf = meta.gguf;
    let hidden = meta.arch_u64("embedding_length")?;
    let layers = meta.arch_u64("block_count")?;
    let heads = meta.arch_u64("attention.head_count")?;
    let head_dim = meta.arch_opt_u64("attention.key_length")?.unwrap_or(hidden / heads);
    let query_pre_attn_scalar = if layers == 62 { hidden / heads } else { head_dim };
    let window = meta.arch_opt_u64("attention.sliding_window")?.filter(|&w| w > 0);
    let pattern_key = format!("{}.attention.sliding_window_pattern", meta.arch);
    let layer_types: Vec<&str> = match gguf.get(&pattern_key) {
        Some(Value::Array(flags)) if flags.len() as u64 == layers => flags
            .iter()
            .map(|f| f.as_bool().map(|local| if local { "sliding_attention" } else { "full_attention" }))
            .collect::<Option<_>>()
            .ok_or_else(|| meta.error(&pattern_key, "must list one true or false per layer"))?,
        Some(Value::Array(flags)) => {
            return Err(meta.error(&pattern_key, format!("lists {} layers, the model has {layers}", flags.len())));
        }
        _ => {
            let period = meta.opt_u64(&pattern_key)?.unwrap_or(6);
            (0..layers)
                .map(|i| if period == 0 || i % period < period - 1 { "sliding_attention" } else { "full_attention" })
                .collect()
        }
    };
    let config = json!({
        "model_type": "gemma3_text",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": meta.arch_opt_u64("attention.head_count_kv")?.unwrap_or(heads),
        "head_dim": head_dim,
        "intermediate_size": meta.arch_u64("feed_forward_length")?,
        "vocab_size": rows(gguf, "token_embd.weight")?,
        "max_position_embeddings": meta.arch_u64("context_length")?,
        "rms_norm_eps": meta.arch_opt_f64("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-6),
        "rope_theta": meta.arch_opt_f64("rope.freq_base")?.unwrap_or(1_000_000.0),
        "rope_local_base_freq": meta.arch_opt_f64("rope.freq_base_swa")?.unwrap_or(10_000.0),
        "query_pre_attn_scalar": query_pre_attn_scalar,
        "sliding_window": window,
        "layer_types": layer_types,
        "final_logit_softcapping": meta.arch_opt_f64("final_logit_softcapping")?,
        "hidden_activation": "gelu_pytorch_tanh",
        "tie_word_embeddings": gguf.tensor("output.weight").is_none(),
    });
    with_scaling_and_eos(meta, config)
}

/// A decoder's configuration with transformers' `rope_scaling` for the file's `rope.scaling.type` (if it scales) and
/// its end-of-sequence token.
fn with_scaling_and_eos(meta: &Metadata, mut config: Json) -> Result<Map<String, Json>, ImportError> {
    let config = config.as_object_mut().expect("an object");
    match meta.arch_opt_str("rope.scaling.type")? {
        None | Some("none") => {}
        Some("linear") => {
            let factor = meta.arch_opt_f64("rope.scaling.factor")?.unwrap_or(1.0);
            config.insert("rope_scaling".into(), json!({ "rope_type": "linear", "factor": factor }));
        }
        Some(other) => {
            let key = format!("{}.rope.scaling.type", meta.arch);
            return Err(meta.error(&key, format!("is `{other}`; tfc supports no scaling and linear scaling of rotary positions")));
        }
    }
    if let Some(eos) = meta.opt_u64("tokenizer.ggml.eos_token_id")? {
        config.insert("eos_token_id".into(), json!(eos));
    }
    Ok(config.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_names_map_to_transformers_names() {
        assert_eq!(LLAMA_NAMES.transformers_name("blk.12.attn_q.bias"), "model.layers.12.self_attn.q_proj.bias");
        assert_eq!(LLAMA_NAMES.transformers_name("blk.0.ffn_down.weight"), "model.layers.0.mlp.down_proj.weight");
        assert_eq!(LLAMA_NAMES.transformers_name("output.weight"), "lm_head.weight");
        assert_eq!(LLAMA_NAMES.transformers_name("rope_freqs.weight"), "rope_freqs.weight");
        assert_eq!(BERT_NAMES.transformers_name("blk.3.layer_output_norm.bias"), "encoder.layer.3.output.LayerNorm.bias");
        assert_eq!(BERT_NAMES.transformers_name("token_embd_norm.weight"), "embeddings.LayerNorm.weight");
    }
}
