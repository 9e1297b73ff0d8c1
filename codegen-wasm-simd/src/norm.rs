//! Row-wise ops over the last axis: LayerNorm, RmsNorm and Softmax. Threads take runs of rows; each pass over a row
//! goes four elements at a time, the lanes past the row's end masked out of the reductions.
//! Params: the row count, the row length.

use crate::asm::{Body, I, Local};
use crate::decode::Format;
use crate::elementwise::for_each_vector;
use crate::math::{Helper, call};
use crate::{Args, CodegenError, Kernel, Node};

/// The lowest f32: the max of nothing, without an infinity that would make exp(−∞ − (−∞)) NaN.
const LOWEST: f32 = f32::MIN;

/// The loop over this thread's rows: `body(b, row, first, end)` gets each row and its element range.
fn for_each_row(b: &mut Body, args: &Args, d: Local, body: impl FnOnce(&mut Body, Local, Local, Local)) {
    let rows = args.param(b, 0);
    let (start, end) = args.share(b, rows);
    let (row, first, last) = (b.i32(), b.i32(), b.i32());
    b.for_range(row, |b| { b.get(start); }, end, 1, |b| {
        b.mul(row, d).set(first);
        b.get(first).get(d).op(I::I32Add).set(last);
        body(b, row, first, last);
    });
}

/// For the vectors of elements `first..end` of a row: `body(b, i, mask)` with `mask` the lanes below `end`.
fn for_each_masked_vector(b: &mut Body, first: Local, end: Local, body: impl FnOnce(&mut Body, Local, Local)) {
    let (i, mask) = (b.i32(), b.v128());
    b.for_range(i, |b| { b.get(first); }, end, 4, |b| {
        b.get(end).get(i).op(I::I32Sub).op(I::I32x4Splat);
        b.op(I::V128Const(0x0000_0003_0000_0002_0000_0001_0000_0000)).op(I::I32x4GtS).set(mask);
        body(b, i, mask);
    });
}

pub(crate) fn norm(node: &Node, eps: f32, centre: bool) -> Result<Kernel, CodegenError> {
    let eps = node.finite(eps, "eps")?;
    let formats: Vec<Format> = (0..node.inputs.len()).map(|i| node.format(i)).collect::<Result<_, _>>()?;
    let beta = node.inputs.len() == 3;
    let (mut b, args) = Args::new(node.inputs.len());
    let d = args.param(&mut b, 1);
    let inv_d = b.let_f32(|b| {
        b.f32c(1.0).get(d).op(I::F32ConvertI32U).op(I::F32Div);
    });
    let (acc, mean, centred, scale, x) = (b.v128(), b.f32(), b.v128(), b.v128(), b.v128());
    let (column, at) = (b.i32(), b.i32());
    let x_format = formats[0];
    let load_x = |b: &mut Body, i: Local| {
        x_format.address(b, args.input(0), i);
        x_format.load4(b);
    };
    for_each_row(&mut b, &args, d, |b, _, first, end| {
        b.f32c(0.0).set(mean);
        if centre {
            b.splat(0.0).set(acc);
            for_each_masked_vector(b, first, end, |b, i, mask| {
                b.get(acc);
                load_x(b, i);
                b.get(mask).op(I::V128And).op(I::F32x4Add).set(acc);
            });
            b.get(acc).hsum().get(inv_d).op(I::F32Mul).set(mean);
        }
        b.splat(0.0).set(acc);
        for_each_masked_vector(b, first, end, |b, i, mask| {
            load_x(b, i);
            b.get(mean).op(I::F32x4Splat).op(I::F32x4Sub).get(mask).op(I::V128And).set(centred);
            b.get(acc).get(centred).get(centred).op(I::F32x4Mul).op(I::F32x4Add).set(acc);
        });
        // 1 / sqrt(mean of squares + eps), in every lane.
        b.splat(1.0);
        b.get(acc).hsum().get(inv_d).op(I::F32Mul).f32c(eps).op(I::F32Add).op(I::F32Sqrt).op(I::F32x4Splat);
        b.op(I::F32x4Div).set(scale);
        for_each_vector(b, first, end, args.output(), |b, i| {
            b.get(i).get(first).op(I::I32Sub).set(column);
            load_x(b, i);
            b.set(x);
            b.get(x).get(mean).op(I::F32x4Splat).op(I::F32x4Sub).get(scale).op(I::F32x4Mul);
            b.get(column).set(at);
            formats[1].address(b, args.input(1), at);
            formats[1].load4(b);
            b.op(I::F32x4Mul);
            if beta {
                formats[2].address(b, args.input(2), at);
                formats[2].load4(b);
                b.op(I::F32x4Add);
            }
        });
    });
    let shape = &node.output.shape;
    let params = vec![tfc_ir::dim::product(&shape[..shape.len() - 1]).to_expr(), shape[shape.len() - 1].to_expr()];
    let name = if centre { "layer_norm" } else { "rms_norm" };
    Ok(Kernel { name: name.into(), body: b, bindings: node.inputs.len() as u32 + 1, params })
}

/// exp(x − max) / Σ exp(x − max) in three passes: the max, the sum, the outputs.
pub(crate) fn softmax(node: &Node) -> Result<Kernel, CodegenError> {
    let format = node.format(0)?;
    let (mut b, args) = Args::new(1);
    let d = args.param(&mut b, 1);
    let (acc, max, sum) = (b.v128(), b.v128(), b.v128());
    let load_x = |b: &mut Body, i: Local| {
        format.address(b, args.input(0), i);
        format.load4(b);
    };
    let exp_shifted = |b: &mut Body, i: Local| {
        load_x(b, i);
        b.get(max).op(I::F32x4Sub);
        call(b, Helper::Exp);
    };
    for_each_row(&mut b, &args, d, |b, _, first, end| {
        b.splat(LOWEST).set(acc);
        for_each_masked_vector(b, first, end, |b, i, mask| {
            b.get(acc);
            load_x(b, i);
            b.splat(LOWEST).get(mask).op(I::V128Bitselect).op(I::F32x4Max).set(acc);
        });
        b.get(acc).hmax().op(I::F32x4Splat).set(max);
        b.splat(0.0).set(acc);
        for_each_masked_vector(b, first, end, |b, i, mask| {
            b.get(acc);
            exp_shifted(b, i);
            b.get(mask).op(I::V128And).op(I::F32x4Add).set(acc);
        });
        b.get(acc).hsum().op(I::F32x4Splat).set(sum);
        for_each_vector(b, first, end, args.output(), |b, i| {
            exp_shifted(b, i);
            b.get(sum).op(I::F32x4Div);
        });
    });
    let shape = &node.output.shape;
    let params = vec![tfc_ir::dim::product(&shape[..shape.len() - 1]).to_expr(), shape[shape.len() - 1].to_expr()];
    Ok(Kernel { name: "softmax".into(), body: b, bindings: 2, params })
}

/// The index of the largest value of each row (the first on ties; NaN never wins), as i32. One element at a time:
/// the op runs once per generated token, on the last row of logits.
pub(crate) fn argmax(node: &Node) -> Result<Kernel, CodegenError> {
    let format = node.format(0)?;
    let (mut b, args) = Args::new(1);
    let d = args.param(&mut b, 1);
    let (i, best, value, best_value) = (b.i32(), b.i32(), b.f32(), b.f32());
    for_each_row(&mut b, &args, d, |b, row, first, end| {
        b.i32c(0).set(best).f32c(f32::NEG_INFINITY).set(best_value);
        b.for_range(i, |b| { b.get(first); }, end, 1, |b| {
            format.address(b, args.input(0), i);
            format.load1(b);
            b.tee(value).get(best_value).op(I::F32Gt).if_(|b| {
                b.get(value).set(best_value);
                b.get(i).get(first).op(I::I32Sub).set(best);
            });
        });
        Format::I32.address(b, args.output(), row);
        b.get(best).i32_store(0);
    });
    let shape = &node.inputs[0].shape;
    let params = vec![tfc_ir::dim::product(&shape[..shape.len() - 1]).to_expr(), shape[shape.len() - 1].to_expr()];
    Ok(Kernel { name: "argmax".into(), body: b, bindings: 2, params })
}
