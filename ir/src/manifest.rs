//! `manifest.json` of a bundle: what the compiler writes and every runtime reads. docs/bundle-format.md specifies
//! it; a change that a version-1 runtime would misread must bump `FORMAT_VERSION`.

use crate::{DType, Expr, InputDefault};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const FORMAT_NAME: &str = "tfc-bundle";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// Facts about the model: architecture, source file names, the tfc version that compiled it.
    pub model: BTreeMap<String, String>,
    /// Shape symbols and the largest value each may take in this bundle.
    pub symbols: Vec<SymbolDecl>,
    pub inputs: Vec<IoDecl>,
    pub outputs: Vec<IoDecl>,
    pub buffers: Vec<Buffer>,
    /// Each weight lies in exactly one buffer, filled from byte ranges of chunk files.
    pub weights: Vec<WeightDecl>,
    pub chunks: Vec<Chunk>,
    pub shaders: Vec<Shader>,
    /// Run in order; each waits for the ones before it (one compute pass, WebGPU's implicit barriers).
    pub dispatches: Vec<Dispatch>,
    pub requires: Requirements,
    /// File name of the tokenizer in the bundle (HF tokenizer.json format), if the model came with one.
    pub tokenizer: Option<String>,
    /// The WASM SIMD fallback, when the bundle was compiled for it (`--target webgpu,wasm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasm: Option<WasmFallback>,
    /// The model's chat template reduced to fixed texts around each message, when it can be (docs/bundle-format.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<ChatFormat>,
}

/// A conversation's prompt: `system_start`, a leading system message's content and `system_end` (or `default_start`
/// when there is none), then each user or assistant message between its turn's `start` and `end`, then
/// `generation_prompt` to cue the assistant's reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatFormat {
    pub system_start: String,
    pub system_end: String,
    /// What the template puts first when no system message opens the conversation: its BOS text and any default
    /// system turn.
    pub default_start: String,
    pub user: Turn,
    pub assistant: Turn,
    /// Whether each message's content is trimmed of whitespace at both ends first.
    pub trim_content: bool,
    pub generation_prompt: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    pub start: String,
    pub end: String,
}

/// The CPU fallback: one WebAssembly module running the same dispatches on the same buffers (docs/bundle-format.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmFallback {
    /// Relative path, `wasm/fallback-<hash>.wasm`: imports `env.memory` unshared, for one thread.
    pub module: String,
    /// Relative path, `wasm/fallback-shared-<hash>.wasm`: the same code importing a shared memory, for threads.
    pub shared_module: String,
    /// Export names of the kernels.
    pub kernels: Vec<String>,
    /// One per entry of `dispatches`, in the same order.
    pub dispatches: Vec<WasmDispatch>,
    /// Bytes of linear memory the fallback needs at the symbols' maxima (buffers, params and the control block).
    pub memory: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmDispatch {
    /// Index into `WasmFallback::kernels`.
    pub kernel: usize,
    /// The u32 params the kernel reads, evaluated with the run's symbol values.
    pub params: Vec<Expr>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymbolDecl {
    pub name: String,
    pub max: u64,
}

/// A graph input or output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IoDecl {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<Expr>,
    pub buffer: usize,
    /// Inputs only: what to use when the caller gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<InputDefault>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BufferKind {
    /// Written by the runtime from the caller's data before each run.
    Input,
    /// Filled once from the weight chunks at load time.
    Weight,
    /// Scratch for intermediate values and outputs; several values share one buffer when their lifetimes don't overlap.
    Activation,
    /// Kept across runs (a KV cache): zeros when a session starts or is reset.
    State,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Buffer {
    pub kind: BufferKind,
    /// Size in bytes (a multiple of 4, at least 4), as a function of the symbols.
    pub size: Expr,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightDecl {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<u64>,
    pub buffer: usize,
    /// Pieces in order; their sizes add up to the weight's byte size.
    pub pieces: Vec<Piece>,
}

/// `size` bytes at `offset` of chunk `chunk`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Piece {
    pub chunk: usize,
    pub offset: u64,
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chunk {
    /// Relative path, `weights/<sha256>.bin`.
    pub file: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shader {
    /// Relative path, `shaders/<name>-<hash>.wgsl`.
    pub file: String,
    pub entry_point: String,
    pub workgroup_size: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dispatch {
    /// The graph node this dispatch computes (for errors and profiles) and its op kind.
    pub node: String,
    pub op: String,
    pub shader: usize,
    /// Buffer bound at binding i of group 0, in order. The params uniform follows at binding `bindings.len()`.
    pub bindings: Vec<usize>,
    /// u32 values of the params uniform, evaluated with the run's symbol values.
    pub params: Vec<Expr>,
    /// Total workgroups; a runtime lays them out as (x, y) with x ≤ 65535 and the kernel linearises them.
    pub workgroups: Expr,
    /// Indices (into `outputs`) of the graph outputs that need this dispatch; a run that asks for some outputs
    /// only may skip the dispatches none of them needs.
    pub needed_by: Vec<usize>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    /// WebGPU feature names the shaders use.
    pub features: Vec<String>,
    /// WebGPU limit name → the value this bundle needs at its symbols' maxima.
    pub limits: BTreeMap<String, u64>,
}

impl Manifest {
    pub fn symbol_max(&self) -> BTreeMap<String, u64> {
        self.symbols.iter().map(|s| (s.name.clone(), s.max)).collect()
    }

    /// Checks the format tag and version, and that every index points at something.
    pub fn check(&self) -> Result<(), String> {
        if self.format != FORMAT_NAME {
            return Err(format!("not a tfc bundle manifest (format `{}`)", self.format));
        }
        if self.version != FORMAT_VERSION {
            return Err(format!(
                "bundle format version {} is not supported by this runtime (it reads version {FORMAT_VERSION}); recompile the model with this tfc",
                self.version
            ));
        }
        let nb = self.buffers.len();
        let bad = |what: String| Err(format!("manifest is inconsistent: {what}"));
        for io in self.inputs.iter().chain(&self.outputs) {
            if io.buffer >= nb {
                return bad(format!("`{}` names buffer {}", io.name, io.buffer));
            }
        }
        for w in &self.weights {
            if w.buffer >= nb || w.pieces.iter().any(|p| p.chunk >= self.chunks.len()) {
                return bad(format!("weight `{}` names a missing buffer or chunk", w.name));
            }
        }
        for d in &self.dispatches {
            if d.shader >= self.shaders.len() || d.bindings.iter().any(|&b| b >= nb) {
                return bad(format!("dispatch `{}` names a missing shader or buffer", d.node));
            }
        }
        if let Some(wasm) = &self.wasm
            && (wasm.dispatches.len() != self.dispatches.len() || wasm.dispatches.iter().any(|d| d.kernel >= wasm.kernels.len()))
        {
            return bad("the wasm section does not match the dispatches".into());
        }
        Ok(())
    }
}
