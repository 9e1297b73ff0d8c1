//! The GGUF importer: a llama.cpp model file becomes an IR graph whose weights stay memory-mapped in the file, in
//! their stored formats (block-quantized ones included).
//!
//! The hyperparameters in the file's metadata become a transformers-style configuration and the tensors are looked
//! up under transformers' names, so the graph is built by the same builder as a Hugging Face folder of that
//! architecture. Supported `general.architecture`s: `llama` (Llama, Mistral-style and SmolLM models) and `qwen2`.

mod file;
mod tokenizer;

pub use file::{GgufError, GgufFile, SUPPORTED_TYPES, TensorInfo, Value};
pub use tokenizer::tokenizer_json;

use crate::hf::{self, Checkpoint, Config, Entry, ImportError, ImportOptions};
use serde_json::{Map, Value as Json, json};
use std::collections::HashMap;
use std::path::Path;
use tfc_ir::Graph;

/// The values of `general.architecture` that [`import`] builds.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama", "qwen2"];

/// llama.cpp's tensor names of the llama family (per layer `blk.N.<name>`) and transformers' names for them.
const LAYER_NAMES: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_norm", "post_attention_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];
const MODEL_NAMES: &[(&str, &str)] =
    &[("token_embd.weight", "model.embed_tokens.weight"), ("output_norm.weight", "model.norm.weight"), ("output.weight", "lm_head.weight")];

/// transformers' name of a llama-family GGUF tensor (unknown names are kept).
fn transformers_name(gguf: &str) -> String {
    if let Some(&(_, hf)) = MODEL_NAMES.iter().find(|(g, _)| *g == gguf) {
        return hf.to_string();
    }
    let mapped = gguf.strip_prefix("blk.").and_then(|rest| {
        let (layer, tensor) = rest.split_once('.')?;
        let (module, kind) = tensor.rsplit_once('.')?;
        let &(_, hf) = LAYER_NAMES.iter().find(|(g, _)| *g == module)?;
        Some(format!("model.layers.{layer}.{hf}.{kind}"))
    });
    mapped.unwrap_or_else(|| gguf.to_string())
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
pub fn architecture(gguf: &GgufFile) -> Result<String, ImportError> {
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
    let config = Config::from_json(path, llama_config(&meta)?);
    let tensors: HashMap<String, Entry> = gguf
        .tensors
        .iter()
        .map(|t| {
            let entry = Entry { source_name: t.name.clone(), file: 0, dtype: Ok(t.dtype), shape: t.shape(), offset: t.offset, len: t.len };
            (transformers_name(&t.name), entry)
        })
        .collect();
    // llama.cpp's converter reorders the query and key rows of `llama` models so that rotary pairs are adjacent;
    // `qwen2` keeps transformers' order.
    let checkpoint = Checkpoint::from_entries(gguf.map.clone(), tensors, arch == "llama");
    let mut graph = hf::llama::build(&config, &checkpoint, opts, &arch)?;
    let source = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    graph.metadata.insert("architecture".into(), arch);
    graph.metadata.insert("source".into(), source);
    Ok(graph)
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
    if rotary != head_dim {
        let key = format!("{}.rope.dimension_count", meta.arch);
        return Err(meta.error(&key, format!("is {rotary}, less than the head size {head_dim}: partial rotary embeddings are not supported for {}", meta.arch)));
    }
    let embedding = gguf
        .tensor("token_embd.weight")
        .ok_or_else(|| ImportError::Gguf(gguf.error("has no tensor `token_embd.weight`; the file does not hold a complete model")))?;
    let vocab = embedding.shape()[0];
    let mut config = json!({
        "model_type": meta.arch,
        "hidden_size": hidden,
        "num_hidden_layers": meta.arch_u64("block_count")?,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "intermediate_size": meta.arch_u64("feed_forward_length")?,
        "vocab_size": vocab,
        "max_position_embeddings": meta.arch_u64("context_length")?,
        "rms_norm_eps": meta.arch_opt_f64("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5),
        "rope_theta": meta.arch_opt_f64("rope.freq_base")?.unwrap_or(10000.0),
        "hidden_act": "silu",
        "tie_word_embeddings": gguf.tensor("output.weight").is_none(),
        "attention_bias": gguf.tensor("blk.0.attn_q.bias").is_some(),
        "use_sliding_window": false,
    });
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
    fn llama_tensor_names_map_to_transformers_names() {
        assert_eq!(transformers_name("blk.12.attn_q.bias"), "model.layers.12.self_attn.q_proj.bias");
        assert_eq!(transformers_name("blk.0.ffn_down.weight"), "model.layers.0.mlp.down_proj.weight");
        assert_eq!(transformers_name("output.weight"), "lm_head.weight");
        assert_eq!(transformers_name("rope_freqs.weight"), "rope_freqs.weight");
    }
}
