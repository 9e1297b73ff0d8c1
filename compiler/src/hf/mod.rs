//! The Hugging Face importer: a model folder (`config.json` plus safetensors weights) becomes an IR graph whose
//! weights stay memory-mapped in their source files.
//!
//! Supported `model_type`s: `bert` and `roberta` (encoders, output `last_hidden_state`), `gpt2`, `llama`, `mistral`,
//! `qwen2`, `phi3`, `gemma3_text` and `gemma3` (decoders, output `logits`; of the multimodal Gemma 3, its text
//! decoder).

pub(crate) mod bert;
mod builder;
mod checkpoint;
mod config;
pub(crate) mod gemma3;
pub(crate) mod gpt2;
pub(crate) mod llama;

pub(crate) use checkpoint::{Checkpoint, Entry};
pub(crate) use config::Config;
use std::path::{Path, PathBuf};
use tfc_ir::{DType, Graph};

/// The model types [`import`] understands.
pub const SUPPORTED_MODEL_TYPES: &[&str] =
    &["bert", "roberta", "gpt2", "llama", "mistral", "qwen2", "phi3", "gemma3_text", "gemma3"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportOptions {
    /// The largest batch the graph is built for.
    pub max_batch: u64,
    /// The longest sequence the graph is built for (for a decoder, its context: prompt and generated tokens);
    /// `None` takes the model's maximum positions, for a decoder lowered until each layer's KV cache fits
    /// `max_binding_size`.
    pub max_sequence: Option<u64>,
    /// The largest storage binding the bundle may need.
    pub max_binding_size: u64,
    /// How a decoder's KV cache stores keys and values: f32, or f16 (half the memory, values rounded).
    pub kv_dtype: DType,
}

impl Default for ImportOptions {
    fn default() -> ImportOptions {
        ImportOptions { max_batch: 8, max_sequence: None, max_binding_size: 128 << 20, kv_dtype: DType::F32 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {}: {source}; {hint}", path.display())]
    Io { path: PathBuf, source: std::io::Error, hint: &'static str },
    /// A problem with `config.json` (or the shard index): a missing or malformed key, an unsupported model type or
    /// feature. The message names the key and says what to do.
    #[error("{}: {message}", file.display())]
    Config { file: PathBuf, message: String },
    #[error(
        "{}: not a valid safetensors file ({reason}); it is truncated or corrupt, download it again",
        file.display()
    )]
    Safetensors { file: PathBuf, reason: String },
    #[error(
        "tensor `{}` not found in {}; the weights do not match config.json (wrong folder or incomplete download?)",
        names.join("` or `"),
        list_paths(searched)
    )]
    MissingTensor { names: Vec<String>, searched: Vec<PathBuf> },
    #[error(
        "{}: tensor `{name}` has shape {actual:?}, config.json implies {expected:?}; the weights do not match config.json",
        file.display()
    )]
    Shape { file: PathBuf, name: String, expected: Vec<u64>, actual: Vec<u64> },
    #[error(
        "{}: tensor `{name}` is stored as {dtype}; tfc reads F32, F16 and BF16 weights: convert the checkpoint",
        file.display()
    )]
    Dtype { file: PathBuf, name: String, dtype: String },
    #[error("{}: the {model_type} importer built an ill-typed graph, a bug in tfc: {source}", file.display())]
    Graph { file: PathBuf, model_type: String, source: tfc_ir::GraphError },
    #[error("invalid import options: {0}")]
    Options(String),
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// An architecture's graph builder; the model type picks among the variants one builder handles.
pub(crate) type Build = fn(&Config, &Checkpoint, &ImportOptions, &str) -> Result<Graph, ImportError>;

/// Imports the Hugging Face model in `dir` (a folder with `config.json` and `model.safetensors` or a sharded
/// `model.safetensors.index.json`).
pub fn import(dir: &Path, opts: &ImportOptions) -> Result<Graph, ImportError> {
    if opts.max_batch == 0 || opts.max_sequence == Some(0) {
        return Err(ImportError::Options(format!("max_batch and max_sequence must be at least 1, got {opts:?}")));
    }
    let config = Config::load(&dir.join("config.json"))?;
    let model_type = config.model_type()?;
    let build: Build = match model_type.as_str() {
        "bert" | "roberta" => bert::build,
        "gpt2" => gpt2::build,
        "llama" | "mistral" | "qwen2" | "phi3" => llama::build,
        "gemma3_text" | "gemma3" => gemma3::build,
        other => {
            return Err(config.error(
                "model_type",
                format!(
                    "= \"{other}\" is not supported; tfc imports the model types {}: pick a model of one of these",
                    SUPPORTED_MODEL_TYPES.join(", ")
                ),
            ));
        }
    };
    let checkpoint = Checkpoint::open(dir)?;
    let mut graph = build(&config, &checkpoint, opts, &model_type)?;
    let source = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let source = source.file_name().map_or_else(|| source.display().to_string(), |n| n.to_string_lossy().into_owned());
    graph.metadata.insert("architecture".into(), model_type);
    graph.metadata.insert("source".into(), source);
    graph.metadata.extend(chat_template(dir)?);
    Ok(graph)
}

/// The model's chat template with the special tokens it refers to, as metadata (`chat_template`, `bos_token`,
/// `eos_token`): from `chat_template.jinja` or else `tokenizer_config.json`'s `chat_template` (a string, or a list
/// of named templates of which `default` is taken). Nothing if the folder has neither.
fn chat_template(dir: &Path) -> Result<Vec<(String, String)>, ImportError> {
    let config_file = dir.join("tokenizer_config.json");
    let tokenizer_config = if config_file.is_file() { Some(Config::load(&config_file)?) } else { None };
    let jinja = dir.join("chat_template.jinja");
    let template = if jinja.is_file() {
        let text = std::fs::read_to_string(&jinja)
            .map_err(|source| ImportError::Io { path: jinja, source, hint: "restore the model's chat_template.jinja" })?;
        Some(text)
    } else {
        match &tokenizer_config {
            Some(c) => c.chat_template()?,
            None => None,
        }
    };
    let Some(template) = template else { return Ok(Vec::new()) };
    let mut metadata = vec![("chat_template".to_string(), template)];
    for key in ["bos_token", "eos_token"] {
        if let Some(token) = tokenizer_config.as_ref().map(|c| c.special_token(key)).transpose()?.flatten() {
            metadata.push((key.to_string(), token));
        }
    }
    Ok(metadata)
}
