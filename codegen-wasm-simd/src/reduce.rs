//! Reduce over any axes: one output element at a time, its elements walked in order with an f32 accumulator (the
//! order of the WGSL kernel). Threads take runs of output elements.

use crate::asm::{Body, I, Local};
use crate::decode::Format;
use crate::math::{Helper, call};
use crate::{Args, CodegenError, Kernel, Node};
use tfc_ir::layout::reduce_axes;
use tfc_ir::{Dim, Expr, ReduceKind};

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
