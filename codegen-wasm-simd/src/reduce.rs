//! Reduce over any axes, ArgReduce, TopK and Cumulative: one output element (line) at a time, its elements walked in order with an f32 accumulator (the
//! order of the WGSL kernel). Threads take runs of output elements.

use crate::asm::{Body, I, Local};
use crate::decode::Format;
use crate::math::{Helper, call};
use crate::{Args, CodegenError, Kernel, Node};
use tfc_ir::layout::reduce_axes;
use tfc_ir::{BinaryOp, DType, Dim, Expr, ReduceKind};

/// The most kept and the most reduced axes after merging neighbours.
const MAX_RANK: usize = 6;

/// Pushes the offset of coordinate `index` over `dims` (last fastest) at `strides`, plus `base`.
fn offset(b: &mut Body, index: Local, base: Local, dims: &[Local], strides: &[Local]) {
    let (rest, at) = (b.i32(), b.i32());
    b.get(index).set(rest).get(base).set(at);
    for a in (0..dims.len()).rev() {
        b.get(at).get(rest).get(dims[a]).op(I::I32RemU).get(strides[a]).op(I::I32Mul).op(I::I32Add).set(at);
        b.get(rest).get(dims[a]).op(I::I32DivU).set(rest);
    }
    b.get(at);
}

/// Applies a vector helper to the f32 on the stack.
fn scalar(b: &mut Body, helper: Helper) {
    b.op(I::F32x4Splat);
    call(b, helper);
    b.op(I::F32x4ExtractLane(0));
}

/// Params: the output count, the reduced count, the kept dims and strides, the reduced dims and strides.
pub(crate) fn reduce(node: &Node, kind: ReduceKind, axes: &[usize]) -> Result<Kernel, CodegenError> {
    let x = node.inputs[0];
    let format = node.format(0)?;
    let ((kept_dims, kept_strides), (red_dims, red_strides)) = reduce_axes(&x.shape, axes);
    if kept_dims.len() > MAX_RANK || red_dims.len() > MAX_RANK {
        return Err(node.error(format!("reducing {x} over {axes:?} needs more than {MAX_RANK} merged axes")));
    }
    let product = |dims: &[Dim]| tfc_ir::dim::product(dims).to_expr();
    let mut params: Vec<Expr> = vec![product(&node.output.shape), product(&red_dims)];
    params.extend(kept_dims.iter().chain(&kept_strides).chain(&red_dims).chain(&red_strides).map(Dim::to_expr));
    let (kr, rr) = (kept_dims.len(), red_dims.len());

    let (mut b, args) = Args::new(1);
    let (count, reduced) = (args.param(&mut b, 0), args.param(&mut b, 1));
    let load = |b: &mut Body, from: usize, n: usize| -> Vec<Local> { (from..from + n).map(|p| args.param(b, p)).collect() };
    let (kd, ks) = (load(&mut b, 2, kr), load(&mut b, 2 + kr, kr));
    let (rd, rs) = (load(&mut b, 2 + 2 * kr, rr), load(&mut b, 2 + 2 * kr + rr, rr));
    let zero = b.let_i32(|b| {
        b.i32c(0);
    });
    let (start, end) = args.share(&mut b, count);
    let (o, base, r, at) = (b.i32(), b.i32(), b.i32(), b.i32());
    let (acc, m, value) = (b.f32(), b.f32(), b.f32());
    // Walks the reduced elements: `update` combines `value` into the accumulator it names.
    let walk = |b: &mut Body, update: &dyn Fn(&mut Body)| {
        b.for_range(r, |b| { b.i32c(0); }, reduced, 1, |b| {
            b.assign(at, |b| offset(b, r, base, &rd, &rs));
            format.address(b, args.input(0), at);
            format.load1(b);
            b.set(value);
            update(b);
        });
    };
    b.for_range(o, |b| { b.get(start); }, end, 1, |b| {
        b.assign(base, |b| offset(b, o, zero, &kd, &ks));
        Format::F32.address(b, args.output(), o);
        let init = match kind {
            ReduceKind::Max => f32::NEG_INFINITY,
            ReduceKind::Min => f32::INFINITY,
            ReduceKind::Prod => 1.0,
            _ => 0.0,
        };
        b.f32c(init).set(acc);
        if kind == ReduceKind::LogSumExp {
            // The maximum first, then the sum of exp(x − max), which cannot overflow.
            b.f32c(f32::NEG_INFINITY).set(m);
            walk(b, &|b| {
                b.get(m).get(value).op(I::F32Max).set(m);
            });
        }
        walk(b, &|b| {
            b.get(acc);
            match kind {
                ReduceKind::Sum | ReduceKind::Mean | ReduceKind::LogSum => b.get(value).op(I::F32Add),
                ReduceKind::Max => b.get(value).op(I::F32Max),
                ReduceKind::Min => b.get(value).op(I::F32Min),
                ReduceKind::Prod => b.get(value).op(I::F32Mul),
                ReduceKind::L1 => b.get(value).op(I::F32Abs).op(I::F32Add),
                ReduceKind::L2 | ReduceKind::SumSquare => b.get(value).get(value).op(I::F32Mul).op(I::F32Add),
                ReduceKind::LogSumExp => {
                    b.get(value).get(m).op(I::F32Sub);
                    scalar(b, Helper::Exp);
                    b.op(I::F32Add)
                }
            };
            b.set(acc);
        });
        b.get(acc);
        match kind {
            ReduceKind::Mean => {
                b.get(reduced).op(I::F32ConvertI32U).op(I::F32Div);
            }
            ReduceKind::L2 => {
                b.op(I::F32Sqrt);
            }
            ReduceKind::LogSum => scalar(b, Helper::Log),
            ReduceKind::LogSumExp => {
                // m + ln(acc), or m itself when it is infinite.
                scalar(b, Helper::Log);
                b.get(m).op(I::F32Add).get(m).get(m).op(I::F32Abs).f32c(f32::MAX).op(I::F32Le).op(I::Select);
            }
            _ => {}
        }
        b.f32_store(0);
    });
    Ok(Kernel { name: format!("reduce_{}", format!("{kind:?}").to_lowercase()), body: b, bindings: 2, params })
}

/// `target` = the first element of line `index` along an axis of `len` with `inner` elements after it:
/// (index / inner)·len·inner + index % inner.
fn line_start(b: &mut Body, index: Local, len: Local, inner: Local, target: Local) {
    b.get(index).get(inner).op(I::I32DivU).get(len).op(I::I32Mul).get(inner).op(I::I32Mul);
    b.get(index).get(inner).op(I::I32RemU).op(I::I32Add).set(target);
}

/// ArgReduce: one output element at a time, walking its line. Params: the output count, the axis length, the inner
/// count.
pub(crate) fn arg_reduce(node: &Node, axis: usize, largest: bool, last: bool) -> Result<Kernel, CodegenError> {
    let x = node.inputs[0];
    let format = node.format(0)?;
    let product = |dims: &[Dim]| tfc_ir::dim::product(dims).to_expr();
    let params = vec![product(&node.output.shape), x.shape[axis].to_expr(), product(&x.shape[axis + 1..])];
    let (mut b, args) = Args::new(1);
    let (count, len, inner) = (args.param(&mut b, 0), args.param(&mut b, 1), args.param(&mut b, 2));
    let (start, end) = args.share(&mut b, count);
    let (o, base, k, at, index) = (b.i32(), b.i32(), b.i32(), b.i32(), b.i32());
    let (best, value) = (b.f32(), b.f32());
    b.for_range(o, |b| { b.get(start); }, end, 1, |b| {
        line_start(b, o, len, inner, base);
        format.address(b, args.input(0), base);
        format.load1(b);
        b.set(best).i32c(0).set(index);
        b.for_range(k, |b| { b.i32c(1); }, len, 1, |b| {
            b.get(k).get(inner).op(I::I32Mul).get(base).op(I::I32Add).set(at);
            format.address(b, args.input(0), at);
            format.load1(b);
            b.set(value);
            b.get(value).get(best).op(if largest { I::F32Gt } else { I::F32Lt });
            if last {
                b.get(value).get(best).op(I::F32Eq).op(I::I32Or);
            }
            b.if_(|b| {
                b.get(value).set(best).get(k).set(index);
            });
        });
        Format::I32.address(b, args.output(), o);
        b.get(index).i32_store(0);
    });
    Ok(Kernel { name: "arg_reduce".into(), body: b, bindings: 2, params })
}

/// Cumulative: one line along the axis at a time, in f32 or wrapping i32. Params: the line count, the axis length,
/// the inner count.
pub(crate) fn cumulative(node: &Node, op: BinaryOp, axis: usize, exclusive: bool, reverse: bool) -> Result<Kernel, CodegenError> {
    let x = node.inputs[0];
    let format = node.format(0)?;
    let int = node.output.dtype == DType::I32;
    let product = |dims: &[Dim]| tfc_ir::dim::product(dims).to_expr();
    let inner_expr = product(&x.shape[axis + 1..]);
    let params = vec![Expr::product(vec![product(&x.shape[..axis]), inner_expr.clone()]), x.shape[axis].to_expr(), inner_expr];
    let (mut b, args) = Args::new(1);
    let (lines, len, inner) = (args.param(&mut b, 0), args.param(&mut b, 1), args.param(&mut b, 2));
    let (start, end) = args.share(&mut b, lines);
    let (line, base, k, at) = (b.i32(), b.i32(), b.i32(), b.i32());
    let (acc, value, next) = if int { (b.i32(), b.i32(), b.i32()) } else { (b.f32(), b.f32(), b.f32()) };
    b.for_range(line, |b| { b.get(start); }, end, 1, |b| {
        line_start(b, line, len, inner, base);
        match (op, int) {
            (BinaryOp::Add, true) => b.i32c(0),
            (BinaryOp::Mul, true) => b.i32c(1),
            (BinaryOp::Max, true) => b.i32c(i32::MIN),
            (_, true) => b.i32c(i32::MAX),
            (BinaryOp::Add, false) => b.f32c(0.0),
            (BinaryOp::Mul, false) => b.f32c(1.0),
            (BinaryOp::Max, false) => b.f32c(f32::NEG_INFINITY),
            (_, false) => b.f32c(f32::INFINITY),
        };
        b.set(acc);
        b.for_range(k, |b| { b.i32c(0); }, len, 1, |b| {
            if reverse {
                b.get(len).i32c(1).op(I::I32Sub).get(k).op(I::I32Sub);
            } else {
                b.get(k);
            }
            b.get(inner).op(I::I32Mul).get(base).op(I::I32Add).set(at);
            format.address(b, args.input(0), at);
            if int { format.load1_i32(b) } else { format.load1(b) }
            b.set(value);
            b.get(acc).get(value);
            match (op, int) {
                (BinaryOp::Add, true) => b.op(I::I32Add),
                (BinaryOp::Mul, true) => b.op(I::I32Mul),
                (BinaryOp::Max, true) => b.get(acc).get(value).op(I::I32GtS).op(I::Select),
                (_, true) => b.get(acc).get(value).op(I::I32LtS).op(I::Select),
                (BinaryOp::Add, false) => b.op(I::F32Add),
                (BinaryOp::Mul, false) => b.op(I::F32Mul),
                (BinaryOp::Max, false) => b.op(I::F32Max),
                (_, false) => b.op(I::F32Min),
            };
            b.set(next);
            Format::I32.address(b, args.output(), at);
            b.get(if exclusive { acc } else { next });
            if int { b.i32_store(0) } else { b.f32_store(0) };
            b.get(next).set(acc);
        });
    });
    Ok(Kernel { name: format!("cumulative_{}", format!("{op:?}").to_lowercase()), body: b, bindings: 2, params })
}

/// TopK, one input element at a time: its rank is the count of elements of its line that go before it (better, or
/// equal at a lower index); below k, its index is written there. Params: the input count, the axis length, the inner
/// count, k.
pub(crate) fn top_k(node: &Node, axis: usize, k: usize, largest: bool) -> Result<Kernel, CodegenError> {
    let x = node.inputs[0];
    let format = node.format(0)?;
    let product = |dims: &[Dim]| tfc_ir::dim::product(dims).to_expr();
    let params = vec![product(&x.shape), x.shape[axis].to_expr(), product(&x.shape[axis + 1..]), Expr::Const(k as u64)];
    let (mut b, args) = Args::new(1);
    let (count, len, inner, top) = (args.param(&mut b, 0), args.param(&mut b, 1), args.param(&mut b, 2), args.param(&mut b, 3));
    let (start, end) = args.share(&mut b, count);
    let (e, position, line, j, at, rank) = (b.i32(), b.i32(), b.i32(), b.i32(), b.i32(), b.i32());
    let (value, other) = (b.f32(), b.f32());
    b.for_range(e, |b| { b.get(start); }, end, 1, |b| {
        b.get(e).get(inner).op(I::I32DivU).get(len).op(I::I32RemU).set(position);
        // The line's first element: (e / (inner·len))·len·inner + e % inner.
        b.get(e).get(inner).get(len).op(I::I32Mul).op(I::I32DivU).get(len).op(I::I32Mul).get(inner).op(I::I32Mul);
        b.get(e).get(inner).op(I::I32RemU).op(I::I32Add).set(line);
        format.address(b, args.input(0), e);
        format.load1(b);
        b.set(value).i32c(0).set(rank);
        b.for_range(j, |b| { b.i32c(0); }, len, 1, |b| {
            b.get(j).get(inner).op(I::I32Mul).get(line).op(I::I32Add).set(at);
            format.address(b, args.input(0), at);
            format.load1(b);
            b.set(other);
            b.get(other).get(value).op(if largest { I::F32Gt } else { I::F32Lt });
            b.get(other).get(value).op(I::F32Eq).get(j).get(position).op(I::I32LtU).op(I::I32And).op(I::I32Or);
            b.if_(|b| {
                b.add_to(rank, 1);
            });
        });
        b.get(rank).get(top).op(I::I32LtU).if_(|b| {
            // Output element (e / (inner·len))·k·inner + rank·inner + e % inner.
            b.get(e).get(inner).get(len).op(I::I32Mul).op(I::I32DivU).get(top).op(I::I32Mul).get(inner).op(I::I32Mul);
            b.get(rank).get(inner).op(I::I32Mul).op(I::I32Add).get(e).get(inner).op(I::I32RemU).op(I::I32Add).set(at);
            Format::I32.address(b, args.output(), at);
            b.get(position).i32_store(0);
        });
    });
    Ok(Kernel { name: "top_k".into(), body: b, bindings: 2, params })
}
