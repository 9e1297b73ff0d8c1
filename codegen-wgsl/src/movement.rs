//! Ops that move elements: Gather, GatherElements, ScatterND, Transpose, Slice, Concat, Expand, Pad, Range. One invocation per output element, 256 per workgroup,
//! except the tiled transpose; f16/bf16 outputs (Transpose, Slice of half weights) take one invocation per output
//! word, copying the 16-bit patterns.

use crate::CodegenError;
use crate::shader::{Access, Node, Parts, expr, groups_for, is_packed, product, storage_type};
use std::fmt::Write;
use tfc_ir::layout::{broadcast_axes, contiguous_strides, simplify_transpose};
use tfc_ir::{BinaryOp, DType, Dim, Expr, PadMode};

const WORKGROUP: u32 = 256;
/// The most axes the index arithmetic handles (after dropping size-1 axes and merging axes that stay together).
const MAX_RANK: usize = 6;

fn access_for(dtype: DType) -> Access {
    if dtype.is_float() { Access::Float } else { Access::Int }
}

pub(crate) fn gather(node: &Node) -> Result<Parts, CodegenError> {
    let table = node.inputs[0];
    let mut parts = Parts::new("gather", WORKGROUP);
    parts.summary = "out[i] = table[indices[i / row] * row + i % row], zeros for an index out of range".to_string();
    parts.inputs = vec![(table.dtype, access_for(table.dtype)), (node.inputs[1].dtype, Access::Int)];
    parts.output = node.output.dtype;
    let numel = product(&node.output.shape);
    parts.workgroups = groups_for(numel.clone(), WORKGROUP);
    parts.params = vec![numel, product(&table.shape[1..]), expr(&table.shape[0])];
    let zero = if node.output.dtype == DType::I32 { "0" } else { "0.0" };
    writeln!(
        parts.body,
        "    let i = group * 256u + lid;
    if i >= param(0u) {{
        return;
    }}
    let row = param(1u);
    let index = load_in1(i / row);
    var v = {zero};
    if index >= 0 && u32(index) < param(2u) {{
        v = load_in0(u32(index) * row + i % row);
    }}
    out[i] = v;"
    )
    .unwrap();
    Ok(parts)
}

/// A kernel whose output element `o` is input element `source(o)`, with `source` (reading params from index 1) in
/// `decls`. params[0] is the element count.
fn copy(node: &Node, name: &str, source_fn: String, params: Vec<Expr>) -> Parts {
    let dtype = node.output.dtype;
    let mut parts = Parts::new(name, WORKGROUP);
    parts.inputs = vec![(dtype, Access::Copy)];
    parts.output = dtype;
    let numel = product(&node.output.shape);
    parts.params = vec![numel.clone()];
    parts.params.extend(params);
    parts.decls = source_fn;
    if is_packed(dtype) {
        parts.workgroups = groups_for(Expr::ceil_div(numel, Expr::Const(2)), WORKGROUP);
        parts.body.push_str(
            "    // One output word: elements o and o + 1.
    let w = group * 256u + lid;
    let o = 2u * w;
    if o >= param(0u) {
        return;
    }
    var word = load_in0(source(o));
    if o + 1u < param(0u) {
        word |= load_in0(source(o + 1u)) << 16u;
    }
    out[w] = word;
",
        );
    } else {
        parts.workgroups = groups_for(numel, WORKGROUP);
        parts.body.push_str("    let o = group * 256u + lid;\n    if o >= param(0u) {\n        return;\n    }\n    out[o] = load_in0(source(o));\n");
    }
    parts
}

pub(crate) fn slice(node: &Node, axis: usize, start: &Dim) -> Result<Parts, CodegenError> {
    let (x, y) = (&node.inputs[0].shape, &node.output.shape);
    let inner = tfc_ir::dim::product(&x[axis + 1..]);
    let params = vec![product(&y[axis..]), product(&x[axis..]), (start * &inner).to_expr()];
    let source = "\
// Output element o: block o / param(1) of the input's blocks of param(2) elements, offset param(3) into it.
fn source(o: u32) -> u32 {
    return (o / param(1u)) * param(2u) + param(3u) + o % param(1u);
}
"
    .to_string();
    let mut parts = copy(node, "slice", source, params);
    parts.summary = "a range of one axis".to_string();
    Ok(parts)
}

pub(crate) fn transpose(node: &Node, perm: &[usize]) -> Result<Parts, CodegenError> {
    let (dims, perm) = simplify_transpose(&node.inputs[0].shape, perm);
    let rank = dims.len();
    if rank > MAX_RANK {
        return Err(node.error(format!(
            "the permutation moves {rank} separate axis groups of {}; kernels handle up to {MAX_RANK}",
            node.inputs[0]
        )));
    }
    let in_strides = contiguous_strides(&dims);
    let out_dims: Vec<Dim> = perm.iter().map(|&p| dims[p].clone()).collect();
    let moved_strides: Vec<Dim> = perm.iter().map(|&p| in_strides[p].clone()).collect();
    if rank >= 2 && perm[rank - 1] != rank - 1 && !is_packed(node.output.dtype) {
        return Ok(tiled_transpose(node, &perm, &out_dims, &moved_strides));
    }
    let (source, params) = if rank <= 1 {
        ("fn source(o: u32) -> u32 {\n    return o;\n}\n".to_string(), Vec::new())
    } else {
        (strided_source(rank), out_dims.iter().chain(&moved_strides).map(expr).collect())
    };
    let mut parts = copy(node, "transpose", source, params);
    parts.summary = format!("permute {rank} merged axes by {perm:?}");
    Ok(parts)
}

/// `source(o)` for an output over `rank` axes whose dims are param(1..1 + rank), reading the input at the strides
/// param(1 + rank..1 + 2·rank) of those axes (0 where the input broadcasts).
fn strided_source(rank: usize) -> String {
    let (strides_at, last) = (1 + rank, rank.saturating_sub(1));
    format!(
        "\
// The input offset of output element o: its coordinates over the output dims param(1..{strides_at}), last fastest,
// times the input strides of those axes, param({strides_at}..).
fn source(o: u32) -> u32 {{
    var rest = o;
    var offset = 0u;
    for (var k = 0u; k < {rank}u; k++) {{
        let axis = {last}u - k;
        offset += (rest % param(1u + axis)) * param({strides_at}u + axis);
        rest = rest / param(1u + axis);
    }}
    return offset;
}}
"
    )
}

pub(crate) fn expand(node: &Node) -> Result<Parts, CodegenError> {
    let (dims, [strides]) = broadcast_axes(&node.output.shape, [&node.inputs[0].shape[..]]);
    if dims.len() > MAX_RANK {
        return Err(node.error(format!("broadcasting {} to {} needs {} index axes; kernels handle up to {MAX_RANK}", node.inputs[0], node.output, dims.len())));
    }
    let params = dims.iter().chain(&strides).map(expr).collect();
    let mut parts = copy(node, "expand", strided_source(dims.len()), params);
    parts.summary = format!("broadcast over {} merged axes", dims.len());
    Ok(parts)
}

/// The WGSL literal of a fill value in the output's element type.
fn fill_literal(node: &Node, value: f32) -> Result<String, CodegenError> {
    if node.output.dtype.is_float() { node.literal(value, "the fill value") } else { Ok(format!("{}", value as i32)) }
}

pub(crate) fn gather_elements(node: &Node, axis: usize) -> Result<Parts, CodegenError> {
    let (data, indices) = (node.inputs[0], node.inputs[1]);
    let rank = indices.rank();
    let mut parts = Parts::new("gather_elements", WORKGROUP);
    parts.summary = format!("out[c] = data[c with axis {axis} = indices[c]], zeros out of range");
    parts.inputs = vec![(data.dtype, access_for(data.dtype)), (indices.dtype, Access::Int)];
    parts.output = node.output.dtype;
    let numel = product(&node.output.shape);
    parts.workgroups = groups_for(numel.clone(), WORKGROUP);
    // params: the count, the indices' dims, the data's dims, the data's strides.
    parts.params = vec![numel];
    parts.params.extend(indices.shape.iter().chain(&data.shape).chain(&contiguous_strides(&data.shape)).map(expr));
    let zero = fill_literal(node, 0.0)?;
    writeln!(
        parts.body,
        "    let i = group * 256u + lid;
    if i >= param(0u) {{
        return;
    }}
    var index = load_in1(i);
    let len = param({len}u);
    if index < 0 {{
        index += i32(len);
    }}
    var inside = index >= 0 && u32(index) < len;
    var offset = u32(index) * param({stride}u);
    var rest = i;
    for (var k = 0u; k < {rank}u; k++) {{
        let axis = {last}u - k;
        let c = rest % param(1u + axis);
        rest = rest / param(1u + axis);
        if axis != {axis}u {{
            inside = inside && c < param({rank1}u + axis);
            offset += c * param({rank21}u + axis);
        }}
    }}
    var v = {zero};
    if inside {{
        v = load_in0(offset);
    }}
    out[i] = v;",
        len = 1 + rank + axis,
        stride = 1 + 2 * rank + axis,
        last = rank - 1,
        rank1 = 1 + rank,
        rank21 = 1 + 2 * rank,
    )
    .unwrap();
    Ok(parts)
}

pub(crate) fn pad(node: &Node, pads: &[(usize, usize)], mode: PadMode) -> Result<Parts, CodegenError> {
    let x = node.inputs[0];
    let rank = x.rank();
    let name = match mode {
        PadMode::Constant(_) => "pad_constant",
        PadMode::Edge => "pad_edge",
        PadMode::Wrap => "pad_wrap",
        PadMode::Reflect => "pad_reflect",
    };
    let mut parts = Parts::new(name, WORKGROUP);
    parts.summary = format!("{mode:?} padding of {rank} axes");
    parts.inputs = vec![(x.dtype, access_for(x.dtype))];
    parts.output = node.output.dtype;
    let numel = product(&node.output.shape);
    parts.workgroups = groups_for(numel.clone(), WORKGROUP);
    // params: the count, the output's dims, the input's dims, the padding before each axis, the input's strides.
    parts.params = vec![numel];
    parts.params.extend(node.output.shape.iter().chain(&x.shape).map(expr));
    parts.params.extend(pads.iter().map(|&(before, _)| Expr::Const(before as u64)));
    parts.params.extend(contiguous_strides(&x.shape).iter().map(expr));
    let (source, fill) = match mode {
        PadMode::Constant(v) => ("inside = inside && s >= 0 && s < n;", fill_literal(node, v)?),
        PadMode::Edge => ("s = clamp(s, 0, n - 1);", fill_literal(node, 0.0)?),
        PadMode::Wrap => ("s = ((s % n) + n) % n;", fill_literal(node, 0.0)?),
        PadMode::Reflect => ("s = abs(s);\n        s = select(s, 2 * (n - 1) - s, s >= n);", fill_literal(node, 0.0)?),
    };
    writeln!(
        parts.body,
        "    let i = group * 256u + lid;
    if i >= param(0u) {{
        return;
    }}
    var inside = true;
    var offset = 0u;
    var rest = i;
    for (var k = 0u; k < {rank}u; k++) {{
        let axis = {last}u - k;
        let c = rest % param(1u + axis);
        rest = rest / param(1u + axis);
        let n = i32(param({in_dims}u + axis));
        var s = i32(c) - i32(param({before}u + axis));
        {source}
        offset += u32(max(s, 0)) * param({in_strides}u + axis);
    }}
    var v = {fill};
    if inside {{
        v = load_in0(offset);
    }}
    out[i] = v;",
        last = rank.saturating_sub(1),
        in_dims = 1 + rank,
        before = 1 + 2 * rank,
        in_strides = 1 + 3 * rank,
    )
    .unwrap();
    Ok(parts)
}

pub(crate) fn range(node: &Node, start: f64, step: f64) -> Result<Parts, CodegenError> {
    let mut parts = Parts::new("range", WORKGROUP);
    parts.output = node.output.dtype;
    let value = if node.output.dtype == DType::I32 {
        format!("{} + i32(i) * {}", start as i32, step as i32)
    } else {
        format!("{} + f32(i) * {}", node.literal(start as f32, "start")?, node.literal(step as f32, "step")?)
    };
    parts.summary = format!("out[i] = {value}");
    let numel = product(&node.output.shape);
    parts.workgroups = groups_for(numel.clone(), WORKGROUP);
    parts.params = vec![numel];
    writeln!(parts.body, "    let i = group * 256u + lid;\n    if i >= param(0u) {{\n        return;\n    }}\n    out[i] = {value};").unwrap();
    Ok(parts)
}

/// ScatterND: one invocation per output element, which walks every index tuple in order and takes (or combines) the
/// update element of each tuple that names its slice. Params: the count, the tuple count, the slice length, the
/// data's first k dims.
pub(crate) fn scatter_nd(node: &Node, reduction: Option<BinaryOp>) -> Result<Parts, CodegenError> {
    let (data, indices) = (node.inputs[0], node.inputs[1]);
    let k = node.constant(indices.shape.last().expect("the type rule checks the indices' rank"), "the index length", 16)? as usize;
    let int = node.output.dtype == DType::I32;
    let combine = match reduction {
        None => "u",
        Some(BinaryOp::Add) => "v + u",
        Some(BinaryOp::Mul) => "v * u",
        Some(BinaryOp::Max) => "max(v, u)",
        Some(_) => "min(v, u)",
    };
    let mut parts = Parts::new("scatter_nd", WORKGROUP);
    parts.summary = format!("slices of {k} coordinates take v = {combine} with each update u");
    let access = if int { Access::Int } else { Access::Float };
    parts.inputs = vec![(data.dtype, access), (indices.dtype, Access::Int), (node.inputs[2].dtype, access)];
    parts.output = node.output.dtype;
    let numel = product(&data.shape);
    parts.workgroups = groups_for(numel.clone(), WORKGROUP);
    parts.params = vec![numel, product(&indices.shape[..indices.rank() - 1]), product(&data.shape[k..])];
    parts.params.extend(data.shape[..k].iter().map(expr));
    writeln!(
        parts.body,
        "    let o = group * 256u + lid;
    if o >= param(0u) {{
        return;
    }}
    let slice = param(2u);
    let prefix = o / slice;
    var v = load_in0(o);
    for (var j = 0u; j < param(1u); j++) {{
        var named = 0u;
        var inside = true;
        for (var a = 0u; a < {k}u; a++) {{
            let d = param(3u + a);
            var i = load_in1(j * {k}u + a);
            if i < 0 {{
                i += i32(d);
            }}
            inside = inside && i >= 0 && u32(i) < d;
            named = named * d + u32(i);
        }}
        if inside && named == prefix {{
            let u = load_in2(j * slice + o % slice);
            v = {combine};
        }}
    }}
    out[o] = v;"
    )
    .unwrap();
    Ok(parts)
}

/// A transpose whose innermost output axis (x) is not the innermost input axis (y): 32×32 tiles of (x, y) go
/// through workgroup memory so that both the reads (along y) and the writes (along x) are coalesced. 256
/// invocations, 4 elements each; the other axes are the batch. Params: dim x, dim y, tiles along x and y, the batch
/// count, the input stride of x, the output stride of y, then the other axes' dims, input strides and output strides.
fn tiled_transpose(node: &Node, perm: &[usize], out_dims: &[Dim], moved_strides: &[Dim]) -> Parts {
    let rank = perm.len();
    let (x, y) = (rank - 1, perm.iter().position(|&p| p == rank - 1).unwrap());
    let others: Vec<usize> = (0..rank).filter(|&a| a != x && a != y).collect();
    let out_strides = contiguous_strides(out_dims);
    let tiles = |d: &Dim| Expr::ceil_div(expr(d), Expr::Const(32));
    let other_dims: Vec<Dim> = others.iter().map(|&a| out_dims[a].clone()).collect();
    let mut parts = Parts::new("transpose", WORKGROUP);
    parts.summary = format!("permute {rank} merged axes by {perm:?} in 32×32 tiles");
    parts.inputs = vec![(node.output.dtype, Access::Copy)];
    parts.output = node.output.dtype;
    parts.params = vec![
        expr(&out_dims[x]),
        expr(&out_dims[y]),
        tiles(&out_dims[x]),
        tiles(&out_dims[y]),
        product(&other_dims),
        expr(&moved_strides[x]),
        expr(&out_strides[y]),
    ];
    for list in [out_dims, moved_strides, &out_strides[..]] {
        parts.params.extend(others.iter().map(|&a| expr(&list[a])));
    }
    parts.workgroups = Expr::product(vec![parts.params[2].clone(), parts.params[3].clone(), parts.params[4].clone()]);
    writeln!(
        parts.decls,
        "// tile[x * 33 + y]: the padding puts the 32 elements of a column in different banks.\nvar<workgroup> tile: array<{}, 1056>;",
        storage_type(node.output.dtype)
    )
    .unwrap();
    let b = &mut parts.body;
    b.push_str(
        "    let tiles_x = param(2u);
    let tiles_y = param(3u);
    let x0 = (group % tiles_x) * 32u;
    let y0 = ((group / tiles_x) % tiles_y) * 32u;
    let batch = group / tiles_x / tiles_y;
    if batch >= param(4u) {
        return;
    }
    var in_base = 0u;
    var out_base = 0u;
",
    );
    if !others.is_empty() {
        let n = others.len();
        writeln!(
            b,
            "    var rest = batch;
    for (var k = 0u; k < {n}u; k++) {{
        let axis = {}u - k;
        let c = rest % param(7u + axis);
        rest = rest / param(7u + axis);
        in_base += c * param({}u + axis);
        out_base += c * param({}u + axis);
    }}",
            n - 1,
            7 + n,
            7 + 2 * n
        )
        .unwrap();
    }
    b.push_str(
        "    let lx = lid % 32u;
    let ly = lid / 32u;
    for (var j = 0u; j < 32u; j += 8u) {
        let x = x0 + ly + j;
        let y = y0 + lx;
        if x < param(0u) && y < param(1u) {
            tile[(ly + j) * 33u + lx] = load_in0(in_base + x * param(5u) + y);
        }
    }
    workgroupBarrier();
    for (var j = 0u; j < 32u; j += 8u) {
        let x = x0 + lx;
        let y = y0 + ly + j;
        if x < param(0u) && y < param(1u) {
            out[out_base + y * param(6u) + x] = tile[lx * 33u + ly + j];
        }
    }
",
    );
    parts
}

pub(crate) fn concat(node: &Node, axis: usize) -> Result<Parts, CodegenError> {
    let n = node.inputs.len();
    if n > 7 {
        return Err(node.error(format!(
            "concatenates {n} inputs; a kernel binds at most 7 (WebGPU's limit of 8 storage buffers): concatenate in steps of up to 7"
        )));
    }
    let mut parts = Parts::new("concat", WORKGROUP);
    parts.summary = format!("{n} inputs along one axis");
    let access = access_for(node.output.dtype);
    parts.inputs = node.inputs.iter().map(|t| (t.dtype, access)).collect();
    parts.output = node.output.dtype;
    let numel = product(&node.output.shape);
    parts.workgroups = groups_for(numel.clone(), WORKGROUP);
    // params: element count, the output block per outer index, then each input's block.
    parts.params = vec![numel, product(&node.output.shape[axis..])];
    parts.params.extend(node.inputs.iter().map(|t| product(&t.shape[axis..])));
    let b = &mut parts.body;
    b.push_str(
        "    let i = group * 256u + lid;
    if i >= param(0u) {
        return;
    }
    // The outer index and the offset within the output block, which the inputs' blocks fill in order.
    let outer = i / param(1u);
    var r = i % param(1u);
",
    );
    for k in 0..n - 1 {
        let p = 2 + k;
        writeln!(b, "    if r < param({p}u) {{\n        out[i] = load_in{k}(outer * param({p}u) + r);\n        return;\n    }}\n    r -= param({p}u);")
            .unwrap();
    }
    writeln!(b, "    out[i] = load_in{}(outer * param({}u) + r);", n - 1, n + 1).unwrap();
    Ok(parts)
}
