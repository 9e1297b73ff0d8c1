//! The compile driver: model files → IR → passes → kernels and schedule → bundle folder.

use crate::schedule::{Schedule, ScheduleError, schedule};
use crate::writer::{Staging, WriteError, write_web_files, write_weights};
use crate::{gguf, hf, onnx};
use std::collections::BTreeMap;
use std::path::Path;
use tfc_ir::manifest::{FORMAT_NAME, FORMAT_VERSION, Manifest, Requirements, SymbolDecl, WasmDispatch, WasmFallback, WeightDecl};
use tfc_ir::chat::ChatTemplate;
use tfc_ir::{DType, Env, Graph};

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
    /// How a decoder's KV cache stores keys and values: f32 or f16.
    pub kv_dtype: DType,
    /// Whether to emit the WASM SIMD fallback (CPUs, browsers without WebGPU).
    pub wasm: WasmTarget,
    /// Store the weight matrices in this dtype (`--quant`); see `tfc_passes::quantize`.
    pub quant: Option<tfc_ir::DType>,
    /// Symbolic dimensions of an ONNX model fixed to a value (`--dim NAME=VALUE`), by their ONNX names.
    pub dims: BTreeMap<String, u64>,
    /// Graph inputs of an ONNX model given a value at compile time (`--const NAME=FILE.npy`): they become constants,
    /// so shapes, axes or pads that a graph takes as inputs can be folded into a static graph.
    pub constants: BTreeMap<String, tfc_ir::Tensor>,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions { chunk_size: 16 << 20, max_batch: 8, max_sequence: None, max_binding_size: DEFAULT_MAX_BINDING, kv_dtype: DType::F32, wasm: WasmTarget::WhereSupported, quant: None, dims: BTreeMap::new(), constants: BTreeMap::new() }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WasmTarget {
    /// No fallback.
    Off,
    /// The fallback where the bundle's ops and memory allow it; otherwise a note says why there is none.
    WhereSupported,
    /// The fallback, or an error saying why it cannot be built.
    Required,
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("{path}: {message}")]
    Input { path: String, message: String },
    #[error(transparent)]
    Import(#[from] hf::ImportError),
    #[error(transparent)]
    Onnx(#[from] onnx::OnnxError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("{0}")]
    Limits(String),
    #[error(transparent)]
    Wasm(#[from] tfc_codegen_wasm_simd::CodegenError),
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
    let import =
        hf::ImportOptions {
            max_batch: opts.max_batch,
            max_sequence: opts.max_sequence,
            max_binding_size: opts.max_binding_size,
            kv_dtype: opts.kv_dtype,
        };
    if !opts.dims.is_empty() && !onnx::is_onnx(model) {
        return Err(input_err("--dim fixes the symbolic dimensions of ONNX models; this model is not one"));
    }
    if !opts.constants.is_empty() && !onnx::is_onnx(model) {
        return Err(input_err("--const gives graph inputs of ONNX models a value; this model is not one"));
    }
    let mut graph = if onnx::is_onnx(model) {
        let options = onnx::OnnxOptions { max_batch: opts.max_batch, max_sequence: opts.max_sequence, dims: opts.dims.clone(), constants: opts.constants.clone(), ..Default::default() };
        onnx::import(model, &options)?
    } else if model.is_dir() {
        hf::import(model, &import)?
    } else if is_gguf(model) {
        gguf::import(model, &import)?
    } else {
        let ext = model.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        return Err(match ext.as_str() {
            _ if !model.exists() => input_err("no such file or folder"),
            _ => input_err("not a model tfc can read: give a HuggingFace model folder (config.json + *.safetensors), a .gguf file or a .onnx file"),
        });
    };
    tfc_passes::optimize(&mut graph);
    if let Some(target) = opts.quant {
        tfc_passes::quantize(&mut graph, target).map_err(CompileError::Limits)?;
    }
    Ok(graph)
}

fn is_gguf(model: &Path) -> bool {
    model.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// The tokenizer.json for the bundle: the model folder's, or one converted from a GGUF file's metadata. A GGUF
/// tokenizer tfc cannot convert leaves the bundle without one, with a note saying why.
fn load_tokenizer(model: &Path, notes: &mut Vec<String>) -> Result<Option<Vec<u8>>, CompileError> {
    if is_gguf(model) {
        let file = gguf::GgufFile::open(model).map_err(hf::ImportError::from)?;
        return Ok(match gguf::tokenizer_json(&file) {
            Ok(json) => Some(json.into_bytes()),
            Err(why) => {
                notes.push(format!("no tokenizer in the bundle: {why}; give token ids"));
                None
            }
        });
    }
    let path = model.join("tokenizer.json");
    if !path.is_file() {
        return Ok(None);
    }
    std::fs::read(&path).map(Some).map_err(|e| CompileError::Input { path: path.display().to_string(), message: format!("cannot read: {e}") })
}

/// Compiles the model at `model` into a bundle folder at `out`. Nothing is left at `out` unless this succeeds.
pub fn compile(model: &Path, out: &Path, opts: &CompileOptions, progress: &mut dyn Progress) -> Result<CompileReport, CompileError> {
    progress.stage("importing");
    let graph = load_graph(model, opts)?;
    let mut notes = Vec::new();
    let tokenizer = load_tokenizer(model, &mut notes)?;
    let mut report = compile_graph(graph, tokenizer.as_deref(), out, opts, progress)?;
    report.notes.splice(0..0, notes);
    Ok(report)
}

/// Writes the bundle of an imported (and optimised) graph, with its tokenizer.json if there is one.
pub fn compile_graph(
    mut graph: Graph,
    tokenizer: Option<&[u8]>,
    out: &Path,
    opts: &CompileOptions,
    progress: &mut dyn Progress,
) -> Result<CompileReport, CompileError> {
    tfc_passes::split_large_weights(&mut graph, opts.max_binding_size).map_err(CompileError::Limits)?;
    progress.stage("generating kernels");
    let schedule = schedule(&graph)?;
    let mut notes = std::mem::take(&mut graph.notes);
    notes.extend(fit_symbols(&mut graph, &schedule, opts.max_binding_size)?);
    let requires = requirements(&graph, &schedule)?;
    let fallback = match opts.wasm {
        WasmTarget::Off => None,
        target => match wasm_fallback(&graph, &schedule, &mut notes) {
            Ok(fallback) => Some(fallback),
            Err(e) if target == WasmTarget::Required => return Err(e),
            Err(e) => {
                notes.push(format!("no WASM fallback in this bundle, so it needs WebGPU: {e}"));
                None
            }
        },
    };

    progress.stage("writing weights");
    let staging = Staging::new(out)?;
    let (chunks, pieces) = write_weights(&staging, &graph, opts.chunk_size, &mut |d, t| progress.bytes(d, t))?;
    let mut shaders = Vec::new();
    for (decl, text) in &schedule.shaders {
        staging.write(&decl.file, text.as_bytes())?;
        shaders.push(decl.clone());
    }
    let tokenizer = match tokenizer {
        Some(json) => {
            staging.write("tokenizer.json", json)?;
            Some("tokenizer.json".to_string())
        }
        None => None,
    };
    write_web_files(&staging)?;
    let wasm = match fallback {
        Some((fallback, memory)) => {
            let file = |name: &str, bytes: &[u8]| format!("{name}-{}.wasm", &crate::writer::sha256_hex(bytes)[..12]);
            let (module, shared_module) = (file("fallback", &fallback.module), file("fallback-shared", &fallback.shared_module));
            staging.write(&module, &fallback.module)?;
            staging.write(&shared_module, &fallback.shared_module)?;
            let dispatches = fallback.dispatches.into_iter().map(|d| WasmDispatch { kernel: d.kernel, params: d.params }).collect();
            Some(WasmFallback { module, shared_module, kernels: fallback.kernels, dispatches, memory })
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
    let chat = match ChatTemplate::from_metadata(&graph.metadata).map(|t| t.format()) {
        Some(Ok(format)) => Some(format),
        Some(Err(why)) => {
            notes.push(format!("no chat format in the bundle, so tfc.js cannot format conversations (`tfc generate --chat` can): {why}"));
            model_info.insert("chat_format_unavailable".into(), why);
            None
        }
        None => None,
    };
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
        wasm,
        chat,
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

/// Browsers may give WebAssembly less than the 4 GiB wasm32 addresses (mobile and 32-bit ones often do).
const WASM_MEMORY_NOTE: u64 = 2 << 30;

/// The WASM fallback of the schedule and the memory it needs at the symbols' maxima; an error if that is more than
/// a wasm32 module can address.
fn wasm_fallback(graph: &Graph, schedule: &Schedule, notes: &mut Vec<String>) -> Result<(tfc_codegen_wasm_simd::Fallback, u64), CompileError> {
    let ids: BTreeMap<&str, tfc_ir::NodeId> = graph.node_ids().map(|id| (graph.node(id).name.as_str(), id)).collect();
    let nodes: Vec<tfc_ir::NodeId> = schedule.dispatches.iter().map(|d| ids[d.node.as_str()]).collect();
    let fallback = tfc_codegen_wasm_simd::fallback(graph, &nodes)?;
    let env = symbol_env(graph);
    let mut buffers = Vec::new();
    for b in &schedule.buffers {
        let size = b.size.eval(&env).map_err(|e| CompileError::Limits(format!("buffer size `{}`: {e}", b.size)))?;
        buffers.push((b.kind, size));
    }
    let params: Vec<usize> = fallback.dispatches.iter().map(|d| d.params.len()).collect();
    let layout = tfc_codegen_wasm_simd::layout::layout(&buffers, &params);
    let memory = tfc_codegen_wasm_simd::layout::pages(&layout) * tfc_codegen_wasm_simd::layout::PAGE;
    let gib = |bytes: u64| bytes as f64 / (1u64 << 30) as f64;
    let weights: u64 = buffers.iter().filter(|(k, _)| *k == tfc_ir::manifest::BufferKind::Weight).map(|(_, s)| s).sum();
    let limits: Vec<String> = graph.symbols.iter().map(|s| format!("{} ≤ {}", s.name, s.max)).collect();
    if memory > tfc_codegen_wasm_simd::MAX_MEMORY {
        return Err(CompileError::Limits(format!(
            "the WASM fallback would need {:.2} GiB of memory at {} ({:.2} GiB of weights, {:.2} GiB for the rest), more than the 4 GiB a wasm32 module can address; lower --max-sequence or --max-batch, quantize the weights (--quant), or compile with --target webgpu",
            gib(memory),
            limits.join(", "),
            gib(weights),
            gib(memory - weights),
        )));
    }
    if memory > WASM_MEMORY_NOTE {
        notes.push(format!(
            "the WASM fallback needs {:.2} GiB of memory at {}; some browsers (mobile, 32-bit) give WebAssembly less",
            gib(memory),
            limits.join(", ")
        ));
    }
    Ok((fallback, memory))
}
