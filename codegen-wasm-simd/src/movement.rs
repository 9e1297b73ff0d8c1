//! Ops that move elements: Gather, GatherElements, ScatterND, Transpose, Expand, Pad, Slice, Concat, Range, Bitcast. Elements keep their stored bits where input and output
//! dtypes agree (f16 and bf16 transposes and slices stay 16-bit); float inputs of a different dtype are decoded.

use crate::asm::{I, Local};
use crate::decode::{Blocks, Format};
use crate::elementwise::for_each_vector;
use crate::{Args, CodegenError, Kernel, Node};
use tfc_ir::{BinaryOp, Dim, Expr, PadMode};
use tfc_ir::layout::{broadcast_axes, contiguous_strides, simplify_transpose};

/// The most axes a transpose indexes (after dropping size-1 axes and merging axes that stay together).
const MAX_RANK: usize = 6;

fn product(dims: &[Dim]) -> Expr {
    tfc_ir::dim::product(dims).to_expr()
}

/// `(table [V, …], indices) → [indices…, row]`; an index outside [0, V) gives a row of zeros. Threads take runs of
/// indices. Params: the index count, the row length, V.
pub(crate) fn gather(node: &Node) -> Result<Kernel, CodegenError> {
    match Blocks::of(node.inputs[0].dtype) {
        Some(blocks) => gather_blocks(node, blocks),
        None => gather_dense(node),
    }
}

fn gather_params(node: &Node) -> Vec<Expr> {
    let t = node.inputs[0];
    vec![product(&node.inputs[1].shape), product(&t.shape[1..]), t.shape[0].to_expr()]
}

fn gather_dense(node: &Node) -> Result<Kernel, CodegenError> {
    let (table, indices) = (node.format(0)?, node.format(1)?);
    let (mut b, args) = Args::new(2);
    let (count, row, rows) = (args.param(&mut b, 0), args.param(&mut b, 1), args.param(&mut b, 2));
    let (start, end) = args.share(&mut b, count);
    let (j, index, first, last, source, value) = (b.i32(), b.i32(), b.i32(), b.i32(), b.i32(), b.v128());
    b.for_range(j, |b| { b.get(start); }, end, 1, |b| {
        indices.address(b, args.input(1), j);
        indices.load1_i32(b);
        b.set(index);
        b.mul(j, row).set(first);
        b.get(first).get(row).op(I::I32Add).set(last);
        for_each_vector(b, first, last, args.output(), |b, i| {
            // Element i − first of table row `index`; the unsigned comparison also rejects negative indices.
            b.get(index).get(rows).op(I::I32LtU).if_else(
                |b| {
                    b.mul(index, row).get(i).op(I::I32Add).get(first).op(I::I32Sub).set(source);
                    table.address(b, args.input(0), source);
                    if table == Format::I32 {
                        b.v128_load(0);
                    } else {
                        table.load4(b);
                    }
                    b.set(value);
                },
                |b| {
                    b.splat(0.0).set(value);
                },
            );
            b.get(value);
        });
    });
    Ok(Kernel { name: "gather".into(), body: b, bindings: 3, params: gather_params(node) })
}

/// Gather from a block-quantized table (rows of whole blocks): each row decoded block by block, sub-block by
/// sub-block, as `a · q + o` (exactly the interpreter's values, see `Blocks`).
fn gather_blocks(node: &Node, blocks: Blocks) -> Result<Kernel, CodegenError> {
    let indices = node.format(1)?;
    let (mut b, args) = Args::new(2);
    let (count, row, rows) = (args.param(&mut b, 0), args.param(&mut b, 1), args.param(&mut b, 2));
    let row_bytes = b.let_i32(|b| blocks.row_bytes(b, row));
    let scales_offset = b.let_i32(|b| blocks.scales_offset(b, row));
    let block_count = b.let_i32(|b| blocks.count(b, row));
    let (start, end) = args.share(&mut b, count);
    let (j, index, first, last, base, block, quants, scales, target) = (b.i32(), b.i32(), b.i32(), b.i32(), b.i32(), b.i32(), b.i32(), b.i32(), b.i32());
    let (d, m) = (b.f32(), b.f32());
    let (a, o, scratch) = (b.v128(), b.v128(), b.v128());
    let bytes: Vec<Local> = (0..blocks.sub_elems() / 16).map(|_| b.v128()).collect();
    b.for_range(j, |b| { b.get(start); }, end, 1, |b| {
        indices.address(b, args.input(1), j);
        indices.load1_i32(b);
        b.set(index);
        b.mul(j, row).set(first);
        // The unsigned comparison also rejects negative indices.
        b.get(index).get(rows).op(I::I32LtU).if_else(
            |b| {
                b.get(args.input(0)).get(index).get(row_bytes).op(I::I32Mul).op(I::I32Add).set(base);
                Format::F32.address(b, args.output(), first);
                b.set(target);
                b.for_range(block, |b| { b.i32c(0); }, block_count, 1, |b| {
                    b.get(base).get(block).i32c(blocks.quant_bytes as i32).op(I::I32Mul).op(I::I32Add).set(quants);
                    b.get(base).get(scales_offset).op(I::I32Add).get(block).i32c(2 * blocks.halves as i32).op(I::I32Mul).op(I::I32Add).set(scales);
                    blocks.load_scales(b, scales, d, m);
                    for s in 0..blocks.sub_blocks() {
                        blocks.sub_block_quants(b, quants, s, &bytes, scratch);
                        blocks.sub_block_scales(b, quants, s, (d, m), (a, o));
                        for g in 0..blocks.groups() {
                            b.get(target).get(a);
                            blocks.push_group(b, &bytes, g);
                            b.op(I::F32x4Mul);
                            if blocks.has_offset() {
                                b.get(o).op(I::F32x4Add);
                            }
                            b.v128_store(16 * (s * blocks.groups() + g));
                        }
                    }
                    b.add_to(target, 4 * blocks.elems as i32);
                });
            },
            |b| {
                b.get(first).get(row).op(I::I32Add).set(last);
                for_each_vector(b, first, last, args.output(), |b, _| {
                    b.splat(0.0);
                });
            },
        );
    });
    Ok(Kernel { name: "gather_blocks".into(), body: b, bindings: 3, params: gather_params(node) })
}

/// A permutation of the axes, as a copy of each output row (the innermost output axis) from a strided run of the
/// input. Threads take runs of output rows. Params: the output row count, the row length, the input stride along
/// the row, then the other output axes' dims and input strides.
pub(crate) fn transpose(node: &Node, perm: &[usize]) -> Result<Kernel, CodegenError> {
    let (dims, perm) = simplify_transpose(&node.inputs[0].shape, perm);
    let rank = dims.len();
    if rank > MAX_RANK {
        return Err(node.error(format!("the permutation moves {rank} separate axis groups of {}; kernels handle up to {MAX_RANK}", node.inputs[0])));
    }
    let in_strides = contiguous_strides(&dims);
    let axes: Vec<(Dim, Dim)> = perm.iter().map(|&p| (dims[p].clone(), in_strides[p].clone())).collect();
    strided_copy(node, "transpose", &axes)
}

/// numpy broadcasting of the operand to the output shape: a strided copy with stride 0 along broadcast axes.
pub(crate) fn expand(node: &Node) -> Result<Kernel, CodegenError> {
    let (dims, [strides]) = broadcast_axes(&node.output.shape, [&node.inputs[0].shape[..]]);
    if dims.len() > MAX_RANK {
        return Err(node.error(format!("broadcasting {} to {} needs {} index axes; kernels handle up to {MAX_RANK}", node.inputs[0], node.output, dims.len())));
    }
    strided_copy(node, "expand", &dims.into_iter().zip(strides).collect::<Vec<_>>())
}

/// A copy whose output axes are `axes` (length, input stride), last fastest, as one output row (the innermost
/// axis) at a time from a strided run of the input. Threads take runs of output rows. Params: the output row count,
/// the row length, the input stride along the row, then the other output axes' dims and input strides.
fn strided_copy(node: &Node, name: &str, axes: &[(Dim, Dim)]) -> Result<Kernel, CodegenError> {
    let format = node.format(0)?;
    // A rank-0 copy is one row of one element.
    let (row, outer) = match axes.split_last() {
        Some((last, outer)) => (last.clone(), outer.to_vec()),
        None => ((Dim::from(1u64), Dim::from(1u64)), Vec::new()),
    };
    let mut params = vec![product(&outer.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>()), row.0.to_expr(), row.1.to_expr()];
    params.extend(outer.iter().map(|(d, _)| d.to_expr()));
    params.extend(outer.iter().map(|(_, s)| s.to_expr()));

    let (mut b, args) = Args::new(1);
    let (rows, length, stride) = (args.param(&mut b, 0), args.param(&mut b, 1), args.param(&mut b, 2));
    let outer_dims: Vec<Local> = (0..outer.len()).map(|a| args.param(&mut b, 3 + a)).collect();
    let outer_strides: Vec<Local> = (0..outer.len()).map(|a| args.param(&mut b, 3 + outer.len() + a)).collect();
    let (start, end) = args.share(&mut b, rows);
    let (r, rest, source, target, target_end) = (b.i32(), b.i32(), b.i32(), b.i32(), b.i32());
    let (source_step, size) = (b.i32(), format.size() as i32);
    b.get(stride).i32c(format.shift()).op(I::I32Shl).set(source_step);
    b.for_range(r, |b| { b.get(start); }, end, 1, |b| {
        // The input offset of the row's first element: its coordinates over the outer axes times their strides.
        b.get(r).set(rest).i32c(0).set(source);
        for a in (0..outer.len()).rev() {
            b.get(source).get(rest).get(outer_dims[a]).op(I::I32RemU).get(outer_strides[a]).op(I::I32Mul).op(I::I32Add).set(source);
            b.get(rest).get(outer_dims[a]).op(I::I32DivU).set(rest);
        }
        format.address(b, args.input(0), source);
        b.set(source);
        b.mul(r, length).set(target);
        format.address(b, args.output(), target);
        b.set(target);
        b.get(length).i32c(format.shift()).op(I::I32Shl).get(target).op(I::I32Add).set(target_end);
        b.while_(
            |b| {
                b.get(target).get(target_end).op(I::I32LtU);
            },
            |b| {
                b.get(target).get(source);
                format.load_bits(b);
                format.store_bits(b);
                b.add_to(target, size).add_local(source, source_step);
            },
        );
    });
    Ok(Kernel { name: name.into(), body: b, bindings: 2, params })
}

/// Elements `start..end` of one axis: a copy of one block per index of the axes before it. Threads take runs of
/// blocks. Params: the block count, the output block, the input block, the offset of the range in an input block
/// (all in elements).
pub(crate) fn slice(node: &Node, axis: usize, start: &Dim) -> Result<Kernel, CodegenError> {
    let format = node.format(0)?;
    let (x, y) = (&node.inputs[0].shape, &node.output.shape);
    let inner = tfc_ir::dim::product(&x[axis + 1..]);
    let params = vec![product(&y[..axis]), product(&y[axis..]), product(&x[axis..]), (start * &inner).to_expr()];
    let (mut b, args) = Args::new(1);
    let (blocks, out_block, in_block, offset) = (args.param(&mut b, 0), args.param(&mut b, 1), args.param(&mut b, 2), args.param(&mut b, 3));
    let (first, last) = args.share(&mut b, blocks);
    let (o, at) = (b.i32(), b.i32());
    b.for_range(o, |b| { b.get(first); }, last, 1, |b| {
        b.mul(o, out_block).set(at);
        format.address(b, args.output(), at);
        b.mul(o, in_block).get(offset).op(I::I32Add).set(at);
        format.address(b, args.input(0), at);
        b.get(out_block).i32c(format.shift()).op(I::I32Shl);
        b.op(I::MemoryCopy { src_mem: 0, dst_mem: 0 });
    });
    Ok(Kernel { name: "slice".into(), body: b, bindings: 2, params })
}

/// The inputs' blocks, one after another, per index of the axes before `axis`. Threads take runs of those indices.
/// An input stored as the output is copied; a float input of another dtype is decoded. Params: the outer count, the
/// output block, then each input's block (in elements).
pub(crate) fn concat(node: &Node, axis: usize) -> Result<Kernel, CodegenError> {
    let out = node.output_format()?;
    let formats: Vec<Format> = (0..node.inputs.len()).map(|i| node.format(i)).collect::<Result<_, _>>()?;
    let y = &node.output.shape;
    let mut params = vec![product(&y[..axis]), product(&y[axis..])];
    params.extend(node.inputs.iter().map(|t| product(&t.shape[axis..])));
    let (mut b, args) = Args::new(node.inputs.len());
    let (outer, out_block) = (args.param(&mut b, 0), args.param(&mut b, 1));
    let blocks: Vec<Local> = (0..node.inputs.len()).map(|k| args.param(&mut b, 2 + k)).collect();
    let (first, last) = args.share(&mut b, outer);
    let (o, target, target_end, source, at) = (b.i32(), b.i32(), b.i32(), b.i32(), b.i32());
    b.for_range(o, |b| { b.get(first); }, last, 1, |b| {
        b.mul(o, out_block).set(target);
        for (k, &format) in formats.iter().enumerate() {
            b.mul(o, blocks[k]).set(source);
            b.get(target).get(blocks[k]).op(I::I32Add).set(target_end);
            if format == out {
                out.address(b, args.output(), target);
                format.address(b, args.input(k), source);
                b.get(blocks[k]).i32c(format.shift()).op(I::I32Shl);
                b.op(I::MemoryCopy { src_mem: 0, dst_mem: 0 });
            } else {
                for_each_vector(b, target, target_end, args.output(), |b, i| {
                    b.get(i).get(target).op(I::I32Sub).get(source).op(I::I32Add).set(at);
                    format.address(b, args.input(k), at);
                    format.load4(b);
                });
            }
            b.get(target_end).set(target);
        }
    });
    Ok(Kernel { name: "concat".into(), body: b, bindings: node.inputs.len() as u32 + 1, params })
}

/// `(state, new)`: stores `new` at rows `offset..` of the state's axis 1 (the state has batch 1). The dispatch binds
/// `new` and then the state, as its output. Threads take runs of elements. Params: the element offset of row
/// `offset` in the state, the element count of `new`.
pub(crate) fn cache_write(node: &Node, offset: &Dim) -> Result<Kernel, CodegenError> {
    let (state, new) = (node.format(0)?, node.format(1)?);
    let row = tfc_ir::dim::product(&node.inputs[0].shape[2..]);
    let params = vec![(offset * &row).to_expr(), product(&node.inputs[1].shape)];
    let (mut b, args) = Args::new(1);
    let (first, count) = (args.param(&mut b, 0), args.param(&mut b, 1));
    let (start, end) = args.share(&mut b, count);
    let (target, source) = (b.i32(), b.i32());
    if state == new {
        b.get(first).get(start).op(I::I32Add).set(target);
        state.address(&mut b, args.output(), target);
        new.address(&mut b, args.input(0), start);
        b.get(end).get(start).op(I::I32Sub).i32c(state.shift()).op(I::I32Shl);
        b.op(I::MemoryCopy { src_mem: 0, dst_mem: 0 });
    } else if state == Format::F32 {
        b.get(first).get(start).op(I::I32Add).set(target);
        b.get(first).get(end).op(I::I32Add).set(source);
        for_each_vector(&mut b, target, source, args.output(), |b, i| {
            let at = b.let_i32(|b| {
                b.get(i).get(first).op(I::I32Sub);
            });
            new.address(b, args.input(0), at);
            new.load4(b);
        });
    } else if state == Format::F16 {
        // An f16 cache: each value rounded as it is stored.
        let (i, value) = (b.i32(), b.f32());
        b.for_range(i, |b| { b.get(start); }, end, 1, |b| {
            new.address(b, args.input(0), i);
            new.load1(b);
            b.set(value);
            b.get(first).get(i).op(I::I32Add).set(target);
            state.address(b, args.output(), target);
            state.store1(b, value);
        });
    } else {
        return Err(node.error(format!("writes {} rows into a {} cache; kernels store caches as f32, f16 or their rows' dtype", node.inputs[1].dtype, node.inputs[0].dtype)));
    }
    Ok(Kernel { name: "cache_write".into(), body: b, bindings: 2, params })
}

/// The bits unchanged (f32 ↔ i32): this thread's run copied. Params: the element count.
pub(crate) fn bitcast(node: &Node) -> Result<Kernel, CodegenError> {
    let (mut b, args) = Args::new(1);
    let n = args.param(&mut b, 0);
    let (start, end) = args.share(&mut b, n);
    Format::I32.address(&mut b, args.output(), start);
    Format::I32.address(&mut b, args.input(0), start);
    b.get(end).get(start).op(I::I32Sub).i32c(2).op(I::I32Shl);
    b.op(I::MemoryCopy { src_mem: 0, dst_mem: 0 });
    Ok(Kernel { name: "bitcast".into(), body: b, bindings: 2, params: vec![product(&node.output.shape)] })
}

/// `[len]` of start + i·step, as f32 (computed in f32) or i32. Params: the length.
pub(crate) fn range(node: &Node, start: f64, step: f64) -> Result<Kernel, CodegenError> {
    let int = node.output.dtype == tfc_ir::DType::I32;
    let (mut b, args) = Args::new(0);
    let n = args.param(&mut b, 0);
    let (first, last) = args.share(&mut b, n);
    let i = b.i32();
    b.for_range(i, |b| { b.get(first); }, last, 1, |b| {
        Format::I32.address(b, args.output(), i);
        if int {
            b.i32c(start as i32).get(i).i32c(step as i32).op(I::I32Mul).op(I::I32Add).i32_store(0);
        } else {
            b.f32c(start as f32).get(i).op(I::F32ConvertI32U).f32c(step as f32).op(I::F32Mul).op(I::F32Add).f32_store(0);
        }
    });
    Ok(Kernel { name: "range".into(), body: b, bindings: 1, params: vec![tfc_ir::dim::product(&node.output.shape).to_expr()] })
}

/// Stores element `at` of operand 0, as the output's element type (i32 or f32), at output element `e`.
fn copy_element(b: &mut crate::asm::Body, node: &Node, args: &Args, format: Format, at: Local, e: Local) {
    Format::I32.address(b, args.output(), e);
    format.address(b, args.input(0), at);
    if node.output.dtype == tfc_ir::DType::I32 {
        format.load1_i32(b);
        b.i32_store(0);
    } else {
        format.load1(b);
        b.f32_store(0);
    }
}

/// Stores the fill value, as the output's element type, at output element `e`.
fn store_fill(b: &mut crate::asm::Body, node: &Node, args: &Args, value: f32, e: Local) {
    Format::I32.address(b, args.output(), e);
    if node.output.dtype == tfc_ir::DType::I32 {
        b.i32c(value as i32).i32_store(0);
    } else {
        b.f32c(value).f32_store(0);
    }
}

/// GatherElements, one element at a time. Params: the count, the indices' dims, the data's dims and strides.
pub(crate) fn gather_elements(node: &Node, axis: usize) -> Result<Kernel, CodegenError> {
    let (data, indices) = (node.inputs[0], node.inputs[1]);
    let (format, index_format) = (node.format(0)?, node.format(1)?);
    let rank = indices.rank();
    let mut params = vec![product(&indices.shape)];
    params.extend(indices.shape.iter().chain(&data.shape).map(Dim::to_expr));
    params.extend(contiguous_strides(&data.shape).iter().map(Dim::to_expr));
    let (mut b, args) = Args::new(2);
    let n = args.param(&mut b, 0);
    let dims: Vec<Local> = (0..3 * rank).map(|p| args.param(&mut b, 1 + p)).collect();
    let (index_dims, data_dims, data_strides) = (&dims[..rank], &dims[rank..2 * rank], &dims[2 * rank..]);
    let (start, end) = args.share(&mut b, n);
    let (e, index, inside, offset, rest, c) = (b.i32(), b.i32(), b.i32(), b.i32(), b.i32(), b.i32());
    b.for_range(e, |b| { b.get(start); }, end, 1, |b| {
        index_format.address(b, args.input(1), e);
        index_format.load1_i32(b);
        b.set(index);
        // A negative index counts from the end; the unsigned comparison rejects what is still out of range.
        b.get(index).get(index).get(data_dims[axis]).op(I::I32Add).get(index).i32c(0).op(I::I32GeS).op(I::Select).set(index);
        b.get(index).get(data_dims[axis]).op(I::I32LtU).set(inside);
        b.mul(index, data_strides[axis]).set(offset);
        b.get(e).set(rest);
        for a in (0..rank).rev() {
            b.get(rest).get(index_dims[a]).op(I::I32RemU).set(c);
            b.get(rest).get(index_dims[a]).op(I::I32DivU).set(rest);
            if a != axis {
                b.get(inside).get(c).get(data_dims[a]).op(I::I32LtU).op(I::I32And).set(inside);
                b.get(offset).get(c).get(data_strides[a]).op(I::I32Mul).op(I::I32Add).set(offset);
            }
        }
        b.get(inside).if_else(|b| copy_element(b, node, &args, format, offset, e), |b| store_fill(b, node, &args, 0.0, e));
    });
    Ok(Kernel { name: "gather_elements".into(), body: b, bindings: 3, params })
}

/// Pad, one element at a time. Params: the count, the output's dims, the input's dims, the padding before each
/// axis, the input's strides.
pub(crate) fn pad(node: &Node, pads: &[(usize, usize)], mode: PadMode) -> Result<Kernel, CodegenError> {
    let x = node.inputs[0];
    let format = node.format(0)?;
    let rank = x.rank();
    let mut params = vec![product(&node.output.shape)];
    params.extend(node.output.shape.iter().chain(&x.shape).map(Dim::to_expr));
    params.extend(pads.iter().map(|&(before, _)| Expr::Const(before as u64)));
    params.extend(contiguous_strides(&x.shape).iter().map(Dim::to_expr));
    let (mut b, args) = Args::new(1);
    let n = args.param(&mut b, 0);
    let p: Vec<Local> = (0..4 * rank).map(|i| args.param(&mut b, 1 + i)).collect();
    let (start, end) = args.share(&mut b, n);
    let (e, inside, offset, rest, s) = (b.i32(), b.i32(), b.i32(), b.i32(), b.i32());
    b.for_range(e, |b| { b.get(start); }, end, 1, |b| {
        b.i32c(1).set(inside).i32c(0).set(offset).get(e).set(rest);
        for a in (0..rank).rev() {
            let (out_dim, len, before, stride) = (p[a], p[rank + a], p[2 * rank + a], p[3 * rank + a]);
            b.get(rest).get(out_dim).op(I::I32RemU).get(before).op(I::I32Sub).set(s);
            b.get(rest).get(out_dim).op(I::I32DivU).set(rest);
            match mode {
                PadMode::Constant(_) => {
                    b.get(inside).get(s).get(len).op(I::I32LtU).op(I::I32And).set(inside);
                }
                PadMode::Edge => {
                    // clamp(s, 0, len − 1)
                    b.get(s).i32c(0).get(s).i32c(0).op(I::I32GtS).op(I::Select).set(s);
                    b.get(s).get(len).i32c(1).op(I::I32Sub).get(s).get(len).op(I::I32LtS).op(I::Select).set(s);
                }
                PadMode::Wrap => {
                    b.get(s).get(len).op(I::I32RemS).get(len).op(I::I32Add).get(len).op(I::I32RemS).set(s);
                }
                PadMode::Reflect => {
                    // |s|, then 2(len − 1) − s past the end.
                    b.get(s).i32c(0).get(s).op(I::I32Sub).get(s).i32c(0).op(I::I32GeS).op(I::Select).set(s);
                    b.get(s).get(len).i32c(1).op(I::I32Sub).i32c(1).op(I::I32Shl).get(s).op(I::I32Sub).get(s).get(len).op(I::I32LtS).op(I::Select).set(s);
                }
            }
            b.get(offset).get(s).get(stride).op(I::I32Mul).op(I::I32Add).set(offset);
        }
        let fill = if let PadMode::Constant(v) = mode { v } else { 0.0 };
        b.get(inside).if_else(|b| copy_element(b, node, &args, format, offset, e), |b| store_fill(b, node, &args, fill, e));
    });
    let name = match mode {
        PadMode::Constant(_) => "pad_constant",
        PadMode::Edge => "pad_edge",
        PadMode::Wrap => "pad_wrap",
        PadMode::Reflect => "pad_reflect",
    };
    Ok(Kernel { name: name.into(), body: b, bindings: 2, params })
}

/// ScatterND, one output element at a time: every index tuple in order, the update of each one that names the
/// element's slice taken (or combined). Params: the count, the tuple count, the slice length, the data's first k dims.
pub(crate) fn scatter_nd(node: &Node, reduction: Option<BinaryOp>) -> Result<Kernel, CodegenError> {
    let (data, indices) = (node.inputs[0], node.inputs[1]);
    let k = node.constant(indices.shape.last().expect("the type rule checks the indices' rank"), "the index length")? as usize;
    let formats = [node.format(0)?, node.format(1)?, node.format(2)?];
    let int = node.output.dtype == tfc_ir::DType::I32;
    let mut params = vec![product(&data.shape), product(&indices.shape[..indices.rank() - 1]), product(&data.shape[k..])];
    params.extend(data.shape[..k].iter().map(Dim::to_expr));
    let (mut b, args) = Args::new(3);
    let (n, tuples, slice) = (args.param(&mut b, 0), args.param(&mut b, 1), args.param(&mut b, 2));
    let dims: Vec<Local> = (0..k).map(|a| args.param(&mut b, 3 + a)).collect();
    let (start, end) = args.share(&mut b, n);
    let (o, j, named, inside, index, at) = (b.i32(), b.i32(), b.i32(), b.i32(), b.i32(), b.i32());
    let (v, u) = if int { (b.i32(), b.i32()) } else { (b.f32(), b.f32()) };
    let load = |b: &mut crate::asm::Body, k: usize, at: Local| {
        formats[k].address(b, args.input(k), at);
        if int { formats[k].load1_i32(b) } else { formats[k].load1(b) }
    };
    b.for_range(o, |b| { b.get(start); }, end, 1, |b| {
        load(b, 0, o);
        b.set(v);
        b.for_range(j, |b| { b.i32c(0); }, tuples, 1, |b| {
            b.i32c(0).set(named).i32c(1).set(inside);
            for (a, &d) in dims.iter().enumerate() {
                b.get(j).i32c(k as i32).op(I::I32Mul).i32c(a as i32).op(I::I32Add).set(at);
                formats[1].address(b, args.input(1), at);
                formats[1].load1_i32(b);
                b.set(index);
                // A negative index counts from the end; the unsigned comparison rejects what is still out of range.
                b.get(index).get(index).get(d).op(I::I32Add).get(index).i32c(0).op(I::I32GeS).op(I::Select).set(index);
                b.get(inside).get(index).get(d).op(I::I32LtU).op(I::I32And).set(inside);
                b.get(named).get(d).op(I::I32Mul).get(index).op(I::I32Add).set(named);
            }
            b.get(inside).get(named).get(o).get(slice).op(I::I32DivU).op(I::I32Eq).op(I::I32And).if_(|b| {
                b.get(j).get(slice).op(I::I32Mul).get(o).get(slice).op(I::I32RemU).op(I::I32Add).set(at);
                load(b, 2, at);
                b.set(u);
                match (reduction, int) {
                    (None, _) => b.get(u),
                    (Some(BinaryOp::Add), true) => b.get(v).get(u).op(I::I32Add),
                    (Some(BinaryOp::Mul), true) => b.get(v).get(u).op(I::I32Mul),
                    (Some(BinaryOp::Max), true) => b.get(v).get(u).get(v).get(u).op(I::I32GtS).op(I::Select),
                    (Some(_), true) => b.get(v).get(u).get(v).get(u).op(I::I32LtS).op(I::Select),
                    (Some(BinaryOp::Add), false) => b.get(v).get(u).op(I::F32Add),
                    (Some(BinaryOp::Mul), false) => b.get(v).get(u).op(I::F32Mul),
                    (Some(BinaryOp::Max), false) => b.get(v).get(u).op(I::F32Max),
                    (Some(_), false) => b.get(v).get(u).op(I::F32Min),
                };
                b.set(v);
            });
        });
        Format::I32.address(b, args.output(), o);
        b.get(v);
        if int { b.i32_store(0) } else { b.f32_store(0) };
    });
    Ok(Kernel { name: "scatter_nd".into(), body: b, bindings: 4, params })
}
