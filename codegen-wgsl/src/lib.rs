//! WGSL compute kernels for tfc IR ops. `kernel` turns one graph node into one WGSL module (validated with naga)
//! together with the params and the workgroup count it is dispatched with; the runtime binds the node's operands,
//! its output and the params uniform as described on [`Kernel`].
//!
//! Conventions every kernel follows:
//! - `@group(0) @binding(i)`, i < n: operand i (`var<storage, read>`); binding n: the output
//!   (`var<storage, read_write>`); binding n + 1: `var<uniform> params: Params`, `struct Params { v: array<vec4<u32>, K> }`
//!   with K = max(1, ⌈params / 4⌉), param i at `params.v[i / 4][i % 4]`.
//! - Elements: f32 as `array<f32>`, i32 as `array<i32>`, f16 and bf16 as `array<u32>`, two per word, element 2i in
//!   the low half. Each operand is read through one generated accessor `load_inN(i)` chosen by its dtype.
//! - The runtime dispatches (x, y, 1) workgroups, x = min(total, 65535), y = ⌈total / x⌉; kernels use the linear
//!   index `wid.y * nwg.x + wid.x` and ignore workgroups past their work.
//! - Symbolic sizes only ever appear in `params` and `workgroups`; constant attributes are baked into the text, so
//!   the same op on the same dtypes gives the same text.

mod attention;
mod elementwise;
mod generation;
mod math;
mod matmul;
mod movement;
mod norm;
mod quant;
mod quant_matmul;
mod reduce;
mod rope;
mod shader;
mod window;

use shader::Node;
use tfc_ir::{DType, Expr, Graph, NodeId, Op};

/// One compute shader and how to dispatch it for a node.
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    /// Short and file-name safe, e.g. `matmul`, `layer_norm`, `binary_add`.
    pub name: String,
    /// The whole WGSL module, validated with naga.
    pub wgsl: String,
    pub entry_point: String,
    /// Invocations per workgroup (1-D), at most 256.
    pub workgroup_size: u32,
    /// The u32 values of the params uniform, in order.
    pub params: Vec<Expr>,
    /// The total number of workgroups.
    pub workgroups: Expr,
}

#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    #[error("{node} ({op}): {message}")]
    Unsupported { node: String, op: &'static str, message: String },
    #[error("WGSL of kernel `{name}` does not validate: {message}")]
    Invalid { name: String, message: String },
}

/// The kernel computing `node`, or `None` for nodes that need none: inputs, weights, states and reshapes (a reshape
/// is a view; the runtime aliases its operand's buffer). A `CacheWrite` kernel binds only the new rows as operand;
/// its state is the output binding, written in place.
pub fn kernel(graph: &Graph, node: NodeId) -> Result<Option<Kernel>, CodegenError> {
    let n = graph.node(node);
    if matches!(n.op, Op::Input { .. } | Op::Weight(_) | Op::Reshape { .. } | Op::State { .. }) {
        return Ok(None);
    }
    let mut operands = graph.inputs_of(node);
    if let Op::CacheWrite { .. } = n.op {
        operands.remove(0); // the state is written in place: it is the output binding
    }
    let node = Node {
        name: &n.name,
        op: &n.op,
        inputs: operands.iter().map(|&i| &graph.node(i).ty).collect(),
        output: &n.ty,
    };
    for (i, t) in node.inputs.iter().enumerate() {
        if t.dtype == DType::I64 {
            return Err(node.error(format!("operand {i} is i64 ({t}); tfc kernels take i32 indices, cast them")));
        }
        if t.dtype.is_block() && t.shape.last().and_then(|d| d.as_const()).is_none_or(|k| !k.is_multiple_of(t.dtype.block_elems() as u64)) {
            return Err(node.error(format!("operand {i} ({t}) is block-quantized but its rows are not whole {} blocks", t.dtype)));
        }
    }
    if node.output.dtype == DType::I64 {
        return Err(node.error(format!("the output is i64 ({}); tfc kernels produce i32, cast to i32 instead", node.output)));
    }
    let parts = match &n.op {
        Op::Input { .. } | Op::Weight(_) | Op::Reshape { .. } | Op::State { .. } => unreachable!("handled above"),
        Op::CacheWrite { offset } => generation::cache_write(&node, offset)?,
        Op::ArgMax => generation::argmax(&node)?,
        Op::Sample => generation::sample(&node)?,
        Op::Unary(op) => elementwise::unary(&node, *op)?,
        Op::Binary(op) => elementwise::binary(&node, *op)?,
        Op::Cast { to } => elementwise::cast(&node, *to)?,
        Op::MatMul { transpose_a: false, transpose_b: true } if quant_matmul::applies(&node) => quant_matmul::matmul(&node)?,
        Op::MatMul { transpose_a, transpose_b } => matmul::matmul(&node, *transpose_a, *transpose_b)?,
        Op::LayerNorm { eps } => norm::norm(&node, *eps, true)?,
        Op::RmsNorm { eps } => norm::norm(&node, *eps, false)?,
        Op::Softmax => norm::softmax(&node)?,
        Op::Gather => movement::gather(&node)?,
        Op::Transpose { perm } => movement::transpose(&node, perm)?,
        Op::Slice { axis, start, .. } => movement::slice(&node, *axis, start)?,
        Op::Concat { axis } => movement::concat(&node, *axis)?,
        Op::Rope { interleaved } => rope::rope(&node, *interleaved)?,
        Op::Attention { causal, scale, window } => attention::attention(&node, *causal, *scale, *window)?,
        Op::Compare(op) => elementwise::compare(&node, *op)?,
        Op::Where => elementwise::select(&node)?,
        Op::Reduce { kind, axes, .. } => reduce::reduce(&node, *kind, axes)?,
        Op::Cumulative { op, axis, exclusive, reverse } => reduce::cumulative(&node, *op, *axis, *exclusive, *reverse)?,
        Op::Expand { .. } => movement::expand(&node)?,
        Op::GatherElements { axis } => movement::gather_elements(&node, *axis)?,
        Op::Pad { pads, mode } => movement::pad(&node, pads, *mode)?,
        Op::Conv { window, groups } => window::conv(&node, window, *groups)?,
        Op::Pool { kind, kernel, window } => window::pool(&node, *kind, kernel, window)?,
        Op::Range { start, step, .. } => movement::range(&node, *start, *step)?,
        Op::ArgReduce { axis, largest, last } => reduce::arg_reduce(&node, *axis, *largest, *last)?,
        Op::Classify { nan, pos_inf, neg_inf } => elementwise::classify(&node, *nan, *pos_inf, *neg_inf)?,
        Op::Resize { axes, mode, extrapolation, .. } => window::resize(&node, axes, *mode, *extrapolation)?,
        Op::ConvTranspose { window, groups, .. } => window::conv_transpose(&node, window, *groups)?,
        Op::TopK { axis, k, largest } => reduce::top_k(&node, *axis, *k, *largest)?,
        Op::ScatterND { reduction } => movement::scatter_nd(&node, *reduction)?,
        Op::Bitcast { to } => elementwise::bitcast(&node, *to)?,
        Op::RoundTo { format, saturate } => elementwise::round_to(&node, *format, *saturate)?,
        Op::GridSample { mode, padding, align_corners } => window::grid_sample(&node, *mode, *padding, *align_corners)?,
    };
    if let Some(i) = parts.inputs.iter().position(|&(dtype, access)| dtype.is_block() && access != shader::Access::Float) {
        return Err(node.error(format!(
            "operand {i} is block-quantized ({}); this op moves elements unchanged and takes only f32, f16, bf16 or integer operands",
            node.inputs[i].dtype
        )));
    }
    parts.build(&node.inputs).map(Some)
}

/// Parses and validates a WGSL module with naga against what core WebGPU offers every shader.
pub fn validate(name: &str, wgsl: &str) -> Result<(), CodegenError> {
    use naga::valid::{Capabilities, ValidationFlags, Validator};
    let invalid = |message: String| CodegenError::Invalid { name: name.to_string(), message };
    let module = naga::front::wgsl::parse_str(wgsl).map_err(|e| invalid(e.emit_to_string(wgsl)))?;
    // `unpack2x16float` and `pack2x16float` are core WGSL; naga gates them for downlevel backends.
    let capabilities = Capabilities::default() | Capabilities::SHADER_FLOAT16_IN_FLOAT32;
    Validator::new(ValidationFlags::all(), capabilities)
        .validate(&module)
        .map_err(|e| invalid(e.emit_to_string(wgsl)))?;
    Ok(())
}
