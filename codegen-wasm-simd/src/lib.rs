//! WebAssembly SIMD128 kernels for tfc IR ops: the CPU fallback of a bundle, for browsers without WebGPU.
//!
//! `fallback` turns the nodes of a schedule into one module, validated with wasmparser, that holds one exported
//! function per distinct kernel. The module imports its memory (`env.memory`); it comes in two variants that differ
//! only in whether that memory is shared (for threads). Every kernel has the same calling convention:
//!
//! `kernel(binding_0, …, binding_n, params, thread, threads)`, all i32:
//! - `binding_i`: the byte offset in memory of the buffer bound to operand i (the output last), as the dispatch's
//!   `bindings` list them;
//! - `params`: the byte offset of the dispatch's u32 params (its `wasm.params`, evaluated for the run);
//! - `thread`, `threads`: this thread's index and the thread count. Each thread computes a disjoint part of the
//!   output, chosen so that every element is computed by the same instructions whatever the thread count: results
//!   are bit-identical for 1 or N threads.
//!
//! Kernels read up to 16 bytes past the end of a buffer (the last vector of a row) and ignore those lanes: a runtime
//! must leave at least 16 readable bytes after every buffer, as the layout in docs/bundle-format.md does.

mod asm;
mod attention;
mod decode;
mod elementwise;
pub mod layout;
mod math;
mod matmul;
mod movement;
mod norm;
mod reduce;
mod rope;
mod sample;
mod window;

use asm::{Body, I, Local};
use decode::Format;
use tfc_ir::{Expr, Graph, NodeId, Op, TensorType};
use wasm_encoder::{
    CodeSection, EntityType, ExportKind, ExportSection, FunctionSection, ImportSection, MemoryType, Module, TypeSection, ValType,
};

/// The largest memory a wasm32 module can address: 65536 pages of 64 KiB.
pub const MAX_MEMORY: u64 = 1 << 32;

#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    #[error("{node} ({op}): {message}")]
    Unsupported { node: String, op: &'static str, message: String },
    #[error("the WASM fallback module does not validate: {0}")]
    Invalid(String),
}

/// The fallback of a schedule: the module in both memory variants, its kernels, and what each node dispatches.
#[derive(Clone, Debug)]
pub struct Fallback {
    /// Imports `env.memory` unshared: single-threaded runs.
    pub module: Vec<u8>,
    /// Imports `env.memory` shared (maximum 4 GiB): runs on several threads.
    pub shared_module: Vec<u8>,
    /// Export names of the kernels; `Dispatch::kernel` indexes this.
    pub kernels: Vec<String>,
    /// One per node given to `fallback`, in order.
    pub dispatches: Vec<Dispatch>,
}

/// How one node runs on the fallback.
#[derive(Clone, Debug, PartialEq)]
pub struct Dispatch {
    pub kernel: usize,
    /// The u32 params the kernel reads, as functions of the symbols.
    pub params: Vec<Expr>,
}

/// One kernel as a generator builds it.
pub(crate) struct Kernel {
    /// Short, for the export name: `matmul_dot`, `binary_add`, …
    pub name: String,
    pub body: Body,
    /// Operand bindings, the output included.
    pub bindings: u32,
    pub params: Vec<Expr>,
}

/// The parameters every kernel function receives (see the crate documentation).
pub(crate) struct Args {
    /// Byte offsets of the operands, then of the output.
    pub bindings: Vec<Local>,
    pub params: Local,
    pub thread: Local,
    pub threads: Local,
}

impl Args {
    /// A kernel body with `operands` inputs and one output, and its parameters.
    pub fn new(operands: usize) -> (Body, Args) {
        let n = operands as u32 + 1;
        let b = Body::new(n + 3);
        let args = Args { bindings: (0..n).map(|i| b.param(i)).collect(), params: b.param(n), thread: b.param(n + 1), threads: b.param(n + 2) };
        (b, args)
    }

    pub fn input(&self, i: usize) -> Local {
        self.bindings[i]
    }

    pub fn output(&self) -> Local {
        *self.bindings.last().expect("a kernel has an output")
    }

    /// A new local holding param `index`.
    pub fn param(&self, b: &mut Body, index: usize) -> Local {
        let p = self.params;
        b.let_i32(|b| {
            b.get(p).i32_load(4 * index as u32);
        })
    }

    /// This thread's part `[start, end)` of `total` work items, a contiguous run of ⌈total / threads⌉ of them
    /// (fewer for the last threads).
    pub fn share(&self, b: &mut Body, total: Local) -> (Local, Local) {
        let (thread, threads) = (self.thread, self.threads);
        let per = b.let_i32(|b| {
            b.get(total).get(threads).op(I::I32Add).i32c(1).op(I::I32Sub).get(threads).op(I::I32DivU);
        });
        let start = b.let_i32(|b| {
            b.mul(thread, per).get(total).min_u();
        });
        let end = b.let_i32(|b| {
            b.get(start).get(per).op(I::I32Add).get(total).min_u();
        });
        (start, end)
    }
}

/// The node a kernel is generated for: its op and the types of its operands and output.
pub(crate) struct Node<'a> {
    pub name: &'a str,
    pub op: &'a Op,
    pub inputs: Vec<&'a TensorType>,
    pub output: &'a TensorType,
}

impl Node<'_> {
    pub fn error(&self, message: impl Into<String>) -> CodegenError {
        CodegenError::Unsupported { node: self.name.to_string(), op: self.op.kind(), message: message.into() }
    }

    /// The storage format of operand `i`.
    pub fn format(&self, i: usize) -> Result<Format, CodegenError> {
        Format::of(self.inputs[i].dtype).map_err(|m| self.error(format!("operand {i}: {m}")))
    }

    pub fn output_format(&self) -> Result<Format, CodegenError> {
        Format::of(self.output.dtype).map_err(|m| self.error(format!("output: {m}")))
    }

    /// A dimension the kernel needs as a constant (baked into the code), or an error naming what it is.
    pub fn constant(&self, dim: &tfc_ir::Dim, what: &str) -> Result<u32, CodegenError> {
        match dim.as_const() {
            Some(v) if v <= u32::MAX as u64 => Ok(v as u32),
            Some(v) => Err(self.error(format!("{what} is {v}, more than 32 bits"))),
            None => Err(self.error(format!("{what} is `{dim}`; this kernel needs it to be a constant"))),
        }
    }

    /// An f32 attribute the kernel bakes in, which must be finite.
    pub fn finite(&self, value: f32, what: &str) -> Result<f32, CodegenError> {
        if value.is_finite() { Ok(value) } else { Err(self.error(format!("{what} is {value}; kernels need a finite value"))) }
    }
}

/// The kernel computing `node`. Inputs, weights and reshapes (views) have none and are an error here.
fn kernel(graph: &Graph, id: NodeId) -> Result<Kernel, CodegenError> {
    let n = graph.node(id);
    let operands = graph.inputs_of(id);
    let node = Node { name: &n.name, op: &n.op, inputs: operands.iter().map(|&i| &graph.node(i).ty).collect(), output: &n.ty };
    match &n.op {
        Op::Input { .. } | Op::Weight(_) | Op::State { .. } | Op::Reshape { .. } => Err(node.error("has no kernel: it is not dispatched")),
        Op::CacheWrite { offset } => movement::cache_write(&node, offset),
        Op::ArgMax => norm::argmax(&node),
        Op::Sample => sample::sample(&node),
        Op::Unary(op) => elementwise::unary(&node, *op),
        Op::Binary(op) => elementwise::binary(&node, *op),
        Op::Cast { to } => elementwise::cast(&node, *to),
        Op::MatMul { transpose_a, transpose_b } => matmul::matmul(&node, *transpose_a, *transpose_b),
        Op::LayerNorm { eps } => norm::norm(&node, *eps, true),
        Op::RmsNorm { eps } => norm::norm(&node, *eps, false),
        Op::Softmax => norm::softmax(&node),
        Op::Gather => movement::gather(&node),
        Op::Transpose { perm } => movement::transpose(&node, perm),
        Op::Slice { axis, start, .. } => movement::slice(&node, *axis, start),
        Op::Concat { axis } => movement::concat(&node, *axis),
        Op::Rope { interleaved } => rope::rope(&node, *interleaved),
        Op::Attention { causal, scale, window } => attention::attention(&node, *causal, *scale, *window),
        Op::Compare(op) => elementwise::compare(&node, *op),
        Op::Where => elementwise::select(&node),
        Op::Expand { .. } => movement::expand(&node),
        Op::Reduce { kind, axes, .. } => reduce::reduce(&node, *kind, axes),
        Op::Range { start, step, .. } => movement::range(&node, *start, *step),
        Op::Bitcast { .. } => movement::bitcast(&node),
        Op::Classify { nan, pos_inf, neg_inf } => elementwise::classify(&node, *nan, *pos_inf, *neg_inf),
        Op::RoundTo { format, saturate } => elementwise::round_to(&node, *format, *saturate),
        Op::ArgReduce { axis, largest, last } => reduce::arg_reduce(&node, *axis, *largest, *last),
        Op::Cumulative { op, axis, exclusive, reverse } => reduce::cumulative(&node, *op, *axis, *exclusive, *reverse),
        Op::GatherElements { axis } => movement::gather_elements(&node, *axis),
        Op::Pad { pads, mode } => movement::pad(&node, pads, *mode),
        Op::Conv { window, groups } => window::conv(&node, window, *groups),
        Op::Pool { kind, kernel, window } => window::pool(&node, *kind, kernel, window),
        Op::ConvTranspose { window, groups, .. } => window::conv_transpose(&node, window, *groups),
        Op::ScatterND { reduction } => movement::scatter_nd(&node, *reduction),
        Op::TopK { axis, k, largest } => reduce::top_k(&node, *axis, *k, *largest),
        Op::Resize { axes, mode, extrapolation, .. } => window::resize(&node, axes, *mode, *extrapolation),
        Op::GridSample { .. } => {
            Err(no_kernel(&node))
        }
    }
}

/// The error for an op the fallback has no kernel for yet; `has_kernel` is false for it.
pub(crate) fn no_kernel(node: &Node) -> CodegenError {
    node.error(format!("{NO_KERNEL} for this op yet"))
}

/// The start of the error message for an op without a WASM kernel.
pub const NO_KERNEL: &str = "the WASM fallback has no kernel";

/// The fallback module for the dispatched `nodes`, in order. Identical kernels are emitted once.
pub fn fallback(graph: &Graph, nodes: &[NodeId]) -> Result<Fallback, CodegenError> {
    // Distinct kernels: (name, bindings, encoded function).
    let mut functions: Vec<(String, u32, wasm_encoder::Function, Vec<u8>)> = Vec::new();
    let mut dispatches = Vec::new();
    for &id in nodes {
        let k = kernel(graph, id)?;
        let function = k.body.finish();
        let encoded = function.clone().into_raw_body();
        let index = match functions.iter().position(|(_, bindings, _, e)| *bindings == k.bindings && *e == encoded) {
            Some(i) => i,
            None => {
                functions.push((k.name, k.bindings, function, encoded));
                functions.len() - 1
            }
        };
        dispatches.push(Dispatch { kernel: index, params: k.params });
    }
    let kernels: Vec<String> = functions.iter().enumerate().map(|(i, (name, ..))| format!("{name}_{i}")).collect();
    let assemble = |shared: bool| -> Result<Vec<u8>, CodegenError> {
        let mut types = TypeSection::new();
        let mut imports = ImportSection::new();
        let mut declared = FunctionSection::new();
        let mut exports = ExportSection::new();
        let mut code = CodeSection::new();
        imports.import(
            "env",
            "memory",
            EntityType::Memory(MemoryType {
                minimum: 1,
                maximum: shared.then_some(MAX_MEMORY >> 16),
                memory64: false,
                shared,
                page_size_log2: None,
            }),
        );
        for helper in math::Helper::ALL {
            let (params, results) = helper.signature();
            types.ty().function(params, results);
            declared.function(helper.index());
            code.function(&helper.body().finish());
        }
        let helpers = math::Helper::ALL.len() as u32;
        for (i, (_, bindings, function, _)) in functions.iter().enumerate() {
            let index = helpers + i as u32;
            types.ty().function(vec![ValType::I32; *bindings as usize + 3], []);
            declared.function(index);
            exports.export(&kernels[i], ExportKind::Func, index);
            code.function(function);
        }
        let mut module = Module::new();
        module.section(&types).section(&imports).section(&declared).section(&exports).section(&code);
        let bytes = module.finish();
        validate(&bytes, shared)?;
        Ok(bytes)
    };
    Ok(Fallback { module: assemble(false)?, shared_module: assemble(true)?, kernels, dispatches })
}

/// Validates a module against what browsers with SIMD128 accept (threads only for the shared variant).
fn validate(bytes: &[u8], shared: bool) -> Result<(), CodegenError> {
    use wasmparser::WasmFeatures as F;
    let mut features = F::MUTABLE_GLOBAL | F::SATURATING_FLOAT_TO_INT | F::SIGN_EXTENSION | F::MULTI_VALUE | F::BULK_MEMORY | F::SIMD | F::FLOATS;
    if shared {
        features |= F::THREADS;
    }
    wasmparser::Validator::new_with_features(features)
        .validate_all(bytes)
        .map(|_| ())
        .map_err(|e| CodegenError::Invalid(e.to_string()))
}
