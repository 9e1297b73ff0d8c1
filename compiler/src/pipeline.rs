//! The compile driver: model files → IR → passes → kernels and schedule → bundle folder.

use crate::schedule::{Schedule, ScheduleError, schedule};
use crate::writer::{Staging, WriteError, write_weights};
use crate::hf;
use std::collections::BTreeMap;
use std::path::Path;
use tfc_ir::manifest::{FORMAT_NAME, FORMAT_VERSION, Manifest, Requirements, SymbolDecl, WeightDecl};
use tfc_ir::{Env, Graph};

/// The WebGPU default for `maxStorageBufferBindingSize`, which every conformant adapter offers.
pub const DEFAULT_MAX_BINDING: u64 = 128 << 20;

#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// Largest weight chunk file, in bytes.
    pub chunk_size: u64,
    pub max_batch: u64,
    /// Longest sequence; `None` takes the model's maximum, lowered if needed to fit `max_binding_size`.
    pub max_sequence: Option<u64>,
    /// The largest storage binding the bundle may need.
    pub max_binding_size: u64,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions { chunk_size: 16 << 20, max_batch: 8, max_sequence: None, max_binding_size: DEFAULT_MAX_BINDING }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("{path}: {message}")]
    Input { path: String, message: String },
    #[error(transparent)]
    Import(#[from] hf::ImportError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("{0}")]
    Limits(String),
}

/// What happened, for the CLI to report.
pub struct CompileReport {
    pub manifest: Manifest,
    /// Decisions the user should know about (e.g. a sequence limit lowered to fit the binding limit).
    pub notes: Vec<String>,
}

/// Progress of a compile: a stage name, then (done, total) bytes of weights written.
pub trait Progress {
    fn stage(&mut self, name: &str);
    fn bytes(&mut self, done: u64, total: u64);
}

/// A `Progress` that ignores everything.
pub struct Quiet;
impl Progress for Quiet {
    fn stage(&mut self, _: &str) {}
    fn bytes(&mut self, _: u64, _: u64) {}
}

/// Reads the model at `model` and builds its graph, passes applied.
pub fn load_graph(model: &Path, opts: &CompileOptions) -> Result<Graph, CompileError> {
    let input_err = |message: &str| CompileError::Input { path: model.display().to_string(), message: message.to_string() };
    let mut graph = if model.is_dir() {
        let import = hf::ImportOptions { max_batch: opts.max_batch, max_sequence: opts.max_sequence };
        hf::import(model, &import)?
    } else {
        let ext = model.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        return Err(match ext.as_str() {
            "onnx" => input_err("ONNX import is not available in this version of tfc; export the model as a HuggingFace folder (config.json + safetensors)"),
            "gguf" => input_err("GGUF import is not available in this version of tfc; use the HuggingFace folder (config.json + safetensors) of the model"),
            _ if !model.exists() => input_err("no such file or folder"),
            _ => input_err("not a model tfc can read: give a HuggingFace model folder (config.json + *.safetensors)"),
        });
    };
    tfc_passes::optimize(&mut graph);
    Ok(graph)
}

/// Compiles the model at `model` into a bundle folder at `out`. Nothing is left at `out` unless this succeeds.
pub fn compile(model: &Path, out: &Path, opts: &CompileOptions, progress: &mut dyn Progress) -> Result<CompileReport, CompileError> {
    progress.stage("importing");
    let graph = load_graph(model, opts)?;
    let tokenizer = Some(model.join("tokenizer.json")).filter(|p| p.is_file());
    compile_graph(graph, tokenizer.as_deref(), out, opts, progress)
}

/// Writes the bundle of an imported (and optimised) graph, with the tokenizer file if there is one.
pub fn compile_graph(
    mut graph: Graph,
    tokenizer: Option<&Path>,
    out: &Path,
    opts: &CompileOptions,
    progress: &mut dyn Progress,
) -> Result<CompileReport, CompileError> {
    tfc_passes::split_large_weights(&mut graph, opts.max_binding_size).map_err(CompileError::Limits)?;
    progress.stage("generating kernels");
    let schedule = schedule(&graph)?;
    let notes = fit_symbols(&mut graph, &schedule, opts.max_binding_size)?;
    let requires = requirements(&graph, &schedule)?;

    progress.stage("writing weights");
    let staging = Staging::new(out)?;
    let (chunks, pieces) = write_weights(&staging, &graph, opts.chunk_size, &mut |d, t| progress.bytes(d, t))?;
    let mut shaders = Vec::new();
    for (decl, text) in &schedule.shaders {
        staging.write(&decl.file, text.as_bytes())?;
        shaders.push(decl.clone());
    }
    let tokenizer = match tokenizer {
        Some(src) => {
            std::fs::copy(src, staging.dir.join("tokenizer.json")).map_err(crate::writer::io_err(src))?;
            Some("tokenizer.json".to_string())
        }
        None => None,
    };
    let weights = graph
        .weights
        .iter()
        .zip(pieces)
        .enumerate()
        .map(|(i, (w, pieces))| WeightDecl {
            name: w.name.clone(),
            dtype: w.dtype,
            shape: w.shape.clone(),
            buffer: schedule.weight_buffers[&i],
            pieces,
        })
        .collect();
    let mut model_info = graph.metadata.clone();
    model_info.insert("compiler".into(), format!("tfc {}", env!("CARGO_PKG_VERSION")));
    let manifest = Manifest {
        format: FORMAT_NAME.into(),
        version: FORMAT_VERSION,
        model: model_info,
        symbols: graph.symbols.iter().map(|s| SymbolDecl { name: s.name.clone(), max: s.max }).collect(),
        inputs: schedule.inputs.clone(),
        outputs: schedule.outputs.clone(),
        buffers: schedule.buffers.clone(),
        weights,
        chunks,
        shaders,
        dispatches: schedule.dispatches.clone(),
        requires,
        tokenizer,
    };
    let mut json = serde_json::to_vec_pretty(&manifest).expect("the manifest serialises");
    json.push(b'\n');
    staging.write("manifest.json", &json)?;
    staging.finish()?;
    Ok(CompileReport { manifest, notes })
}

fn symbol_env(graph: &Graph) -> Env {
    graph.symbols.iter().map(|s| (s.name.clone(), s.max)).collect()
}

/// The size in bytes of the largest buffer with the symbols at `env`.
fn largest_buffer(schedule: &Schedule, env: &Env) -> Result<u64, CompileError> {
    let mut largest = 0;
    for b in &schedule.buffers {
        let size = b.size.eval(env).map_err(|e| CompileError::Limits(format!("buffer size `{}`: {e}", b.size)))?;
        largest = largest.max(size);
    }
    Ok(largest)
}

/// Lowers the `sequence` maximum until every buffer fits `max_binding` (weights were split to fit before).
fn fit_symbols(graph: &mut Graph, schedule: &Schedule, max_binding: u64) -> Result<Vec<String>, CompileError> {
    let mut notes = Vec::new();
    let size = largest_buffer(schedule, &symbol_env(graph))?;
    if size <= max_binding {
        return Ok(notes);
    }
    let Some(seq) = graph.symbols.iter().position(|s| s.name == "sequence") else {
        return Err(CompileError::Limits(format!("an intermediate buffer needs {size} bytes, more than the binding limit {max_binding}")));
    };
    let (mut lo, mut hi) = (0u64, graph.symbols[seq].max);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        graph.symbols[seq].max = mid;
        if largest_buffer(schedule, &symbol_env(graph))? <= max_binding { lo = mid } else { hi = mid - 1 }
    }
    if lo == 0 {
        return Err(CompileError::Limits(format!(
            "even one token needs a buffer larger than the binding limit of {max_binding} bytes; lower --max-batch or raise --max-binding-size"
        )));
    }
    graph.symbols[seq].max = lo;
    notes.push(format!("sequence length limited to {lo} tokens so that every buffer fits the {max_binding}-byte binding limit"));
    Ok(notes)
}

fn requirements(graph: &Graph, schedule: &Schedule) -> Result<Requirements, CompileError> {
    let largest = largest_buffer(schedule, &symbol_env(graph))?.next_multiple_of(4);
    let operands = schedule.dispatches.iter().map(|d| d.bindings.len() as u64).max().unwrap_or(1);
    let workgroup = schedule.shaders.iter().map(|(s, _)| s.workgroup_size as u64).max().unwrap_or(1);
    let mut limits = BTreeMap::new();
    limits.insert("maxStorageBufferBindingSize".to_string(), largest);
    limits.insert("maxBufferSize".to_string(), largest);
    limits.insert("maxStorageBuffersPerShaderStage".to_string(), operands);
    limits.insert("maxComputeInvocationsPerWorkgroup".to_string(), workgroup);
    limits.insert("maxComputeWorkgroupSizeX".to_string(), workgroup);
    Ok(Requirements { features: Vec::new(), limits })
}
