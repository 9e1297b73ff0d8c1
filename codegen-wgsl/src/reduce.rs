//! Reduce (over any axes), ArgReduce and Cumulative (along one axis): one invocation per output element (per line
//! for Cumulative) that walks its elements in order, accumulating in f32. 256 invocations per workgroup.

use crate::CodegenError;
use crate::math::Helper;
use crate::shader::{Access, Node, Parts, expr, groups_for, product};
use std::fmt::Write;
use tfc_ir::layout::reduce_axes;
use tfc_ir::{BinaryOp, DType, Expr, ReduceKind};

const WORKGROUP: u32 = 256;
/// The most kept and the most reduced axes after merging neighbours.
const MAX_RANK: usize = 6;

/// `-inf` and `+inf`, which WGSL has no literals for.
const NEG_INF: &str = "bitcast<f32>(0xff800000u)";
const INF: &str = "bitcast<f32>(0x7f800000u)";

/// WGSL that adds the offset of coordinate `index` over `dims` (params from `dims_at`, strides after them) to
/// `target`.
fn add_offset(body: &mut String, index: &str, target: &str, rank: usize, dims_at: usize, indent: &str) {
    if rank == 0 {
        return;
    }
    writeln!(
        body,
        "{indent}var rest_{target} = {index};
{indent}for (var k = 0u; k < {rank}u; k++) {{
{indent}    let axis = {last}u - k;
{indent}    {target} += (rest_{target} % param({dims_at}u + axis)) * param({strides_at}u + axis);
{indent}    rest_{target} = rest_{target} / param({dims_at}u + axis);
{indent}}}",
        last = rank - 1,
        strides_at = dims_at + rank,
    )
    .unwrap();
}

pub(crate) fn reduce(node: &Node, kind: ReduceKind, axes: &[usize]) -> Result<Parts, CodegenError> {
    let x = node.inputs[0];
    let ((kept_dims, kept_strides), (red_dims, red_strides)) = reduce_axes(&x.shape, axes);
    if kept_dims.len() > MAX_RANK || red_dims.len() > MAX_RANK {
        return Err(node.error(format!("reducing {x} over {axes:?} needs more than {MAX_RANK} merged axes")));
    }
    let name = format!("{kind:?}").to_lowercase();
    let mut parts = Parts::new(format!("reduce_{name}"), WORKGROUP);
    parts.summary = format!("{kind:?} over {} merged axes, {} kept", red_dims.len(), kept_dims.len());
    parts.inputs = vec![(x.dtype, Access::Float)];
    let numel = product(&node.output.shape);
    parts.workgroups = groups_for(numel.clone(), WORKGROUP);
    // params: the output count, the reduced count, the kept dims and strides, the reduced dims and strides.
    parts.params = vec![numel, product(&red_dims)];
    let kept_at = parts.params.len();
    parts.params.extend(kept_dims.iter().chain(&kept_strides).map(expr));
    let red_at = parts.params.len();
    parts.params.extend(red_dims.iter().chain(&red_strides).map(expr));

    let mut offset_fn = "// The input offset of reduced element r of the output whose first element is at `base`.\nfn element(base: u32, r: u32) -> u32 {\n    var offset = base;\n".to_string();
    add_offset(&mut offset_fn, "r", "offset", red_dims.len(), red_at, "    ");
    offset_fn.push_str("    return offset;\n}\n");
    parts.decls = offset_fn;

    let b = &mut parts.body;
    b.push_str("    let o = group * 256u + lid;\n    if o >= param(0u) {\n        return;\n    }\n    var base = 0u;\n");
    add_offset(b, "o", "base", kept_dims.len(), kept_at, "    ");
    let walk = |b: &mut String, init: &str, update: &str| {
        writeln!(b, "    var acc = {init};\n    for (var r = 0u; r < param(1u); r++) {{\n        let x = load_in0(element(base, r));\n        acc = {update};\n    }}").unwrap();
    };
    let result = match kind {
        ReduceKind::Sum => ("0.0", "acc + x", "acc"),
        ReduceKind::Mean => ("0.0", "acc + x", "acc / f32(param(1u))"),
        ReduceKind::Max => (NEG_INF, "max(acc, x)", "acc"),
        ReduceKind::Min => (INF, "min(acc, x)", "acc"),
        ReduceKind::Prod => ("1.0", "acc * x", "acc"),
        ReduceKind::L1 => ("0.0", "acc + abs(x)", "acc"),
        ReduceKind::L2 => ("0.0", "acc + x * x", "sqrt(acc)"),
        ReduceKind::LogSum => ("0.0", "acc + x", "log_f32(acc)"),
        ReduceKind::SumSquare => ("0.0", "acc + x * x", "acc"),
        ReduceKind::LogSumExp => {
            parts.helpers = vec![Helper::Exp, Helper::Log];
            // The maximum first, then the sum of exp(x − max), which cannot overflow.
            writeln!(b, "    var m = {NEG_INF};\n    for (var r = 0u; r < param(1u); r++) {{\n        m = max(m, load_in0(element(base, r)));\n    }}").unwrap();
            walk(b, "0.0", "acc + exp_f32(x - m)");
            b.push_str("    out[o] = select(m + log_f32(acc), m, abs(m) > 3.4028235e38);\n");
            return Ok(parts);
        }
    };
    if kind == ReduceKind::LogSum {
        parts.helpers = vec![Helper::Log];
    }
    walk(b, result.0, result.1);
    writeln!(b, "    out[o] = {};", result.2).unwrap();
    Ok(parts)
}

pub(crate) fn cumulative(node: &Node, op: BinaryOp, axis: usize, exclusive: bool, reverse: bool) -> Result<Parts, CodegenError> {
    let x = node.inputs[0];
    let int = node.output.dtype == DType::I32;
    let (identity, combine) = match (op, int) {
        (BinaryOp::Add, false) => ("0.0", "acc + x"),
        (BinaryOp::Add, true) => ("0", "acc + x"),
        (BinaryOp::Mul, false) => ("1.0", "acc * x"),
        (BinaryOp::Mul, true) => ("1", "acc * x"),
        (BinaryOp::Max, false) => (NEG_INF, "max(acc, x)"),
        (BinaryOp::Max, true) => ("bitcast<i32>(0x80000000u)", "max(acc, x)"),
        (BinaryOp::Min, false) => (INF, "min(acc, x)"),
        (BinaryOp::Min, true) => ("0x7fffffff", "min(acc, x)"),
        (other, _) => return Err(node.error(format!("{other:?} is not a running op"))),
    };
    let mut parts = Parts::new(format!("cumulative_{}", format!("{op:?}").to_lowercase()), WORKGROUP);
    parts.summary = format!("running {op:?} along axis {axis}, exclusive {exclusive}, reverse {reverse}");
    parts.inputs = vec![(x.dtype, if int { Access::Int } else { Access::Float })];
    parts.output = node.output.dtype;
    let inner = product(&x.shape[axis + 1..]);
    let lines = Expr::product(vec![product(&x.shape[..axis]), inner.clone()]);
    parts.workgroups = groups_for(lines.clone(), WORKGROUP);
    parts.params = vec![lines, expr(&x.shape[axis]), inner];
    let position = if reverse { "len - 1u - k" } else { "k" };
    let store = if exclusive { "out[at] = acc;\n        acc = next;" } else { "acc = next;\n        out[at] = acc;" };
    writeln!(
        parts.body,
        "    let line = group * 256u + lid;
    if line >= param(0u) {{
        return;
    }}
    let len = param(1u);
    let inner = param(2u);
    let base = (line / inner) * len * inner + line % inner;
    var acc = {identity};
    for (var k = 0u; k < len; k++) {{
        let at = base + ({position}) * inner;
        let x = load_in0(at);
        let next = {combine};
        {store}
    }}"
    )
    .unwrap();
    Ok(parts)
}

pub(crate) fn arg_reduce(node: &Node, axis: usize, largest: bool, last: bool) -> Result<Parts, CodegenError> {
    let x = node.inputs[0];
    let mut parts = Parts::new("arg_reduce", WORKGROUP);
    parts.summary = format!("index of the {} along axis {axis}, {} on ties", if largest { "largest" } else { "smallest" }, if last { "last" } else { "first" });
    parts.inputs = vec![(x.dtype, Access::Float)];
    parts.output = DType::I32;
    let numel = product(&node.output.shape);
    parts.workgroups = groups_for(numel.clone(), WORKGROUP);
    parts.params = vec![numel, expr(&x.shape[axis]), product(&x.shape[axis + 1..])];
    let better = format!("v {} best{}", if largest { ">" } else { "<" }, if last { " || v == best" } else { "" });
    writeln!(
        parts.body,
        "    let o = group * 256u + lid;
    if o >= param(0u) {{
        return;
    }}
    let len = param(1u);
    let inner = param(2u);
    let base = (o / inner) * len * inner + o % inner;
    var best = load_in0(base);
    var index = 0u;
    for (var k = 1u; k < len; k++) {{
        let v = load_in0(base + k * inner);
        if {better} {{
            best = v;
            index = k;
        }}
    }}
    out[o] = i32(index);"
    )
    .unwrap();
    Ok(parts)
}

/// TopK: one invocation per input element, which counts the elements of its line that go before it (better, or
/// equal at a lower index) and, if that rank is below k, writes its index there. Params: the input count, the axis
/// length, the inner count, k.
pub(crate) fn top_k(node: &Node, axis: usize, k: usize, largest: bool) -> Result<Parts, CodegenError> {
    let x = node.inputs[0];
    let mut parts = Parts::new("top_k", WORKGROUP);
    parts.summary = format!("indices of the top {k} ({}) along axis {axis}", if largest { "largest" } else { "smallest" });
    parts.inputs = vec![(x.dtype, Access::Float)];
    parts.output = DType::I32;
    let numel = product(&x.shape);
    parts.workgroups = groups_for(numel.clone(), WORKGROUP);
    parts.params = vec![numel, expr(&x.shape[axis]), product(&x.shape[axis + 1..]), Expr::Const(k as u64)];
    let better = if largest { ">" } else { "<" };
    writeln!(
        parts.body,
        "    let e = group * 256u + lid;
    if e >= param(0u) {{
        return;
    }}
    let len = param(1u);
    let inner = param(2u);
    let k = param(3u);
    let position = (e / inner) % len;
    let line = (e / (inner * len)) * len * inner + e % inner;
    let v = load_in0(e);
    var rank = 0u;
    for (var j = 0u; j < len; j++) {{
        let other = load_in0(line + j * inner);
        if other {better} v || (other == v && j < position) {{
            rank += 1u;
        }}
    }}
    if rank < k {{
        out[(e / (inner * len)) * k * inner + rank * inner + e % inner] = i32(position);
    }}"
    )
    .unwrap();
    Ok(parts)
}
