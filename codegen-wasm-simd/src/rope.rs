//! Rotary position embedding. Threads take runs of (batch, position) rows; for each row the rotations of four pairs
//! at a time are computed once and applied to every head; features past the rotated ones are copied.
//! Params: the row count b·s, the head count, the head size d, the number of rotated pairs r/2.

use crate::asm::{Body, I, Local};
use crate::decode::Format;
use crate::elementwise::for_each_vector;
use crate::math::{Helper, call};
use crate::{Args, CodegenError, Kernel, Node};

/// Byte shuffles of two f32x4: the even lanes of (a, b), the odd lanes, and the two interleavings back.
const EVENS: [u8; 16] = lanes([0, 2, 4, 6]);
const ODDS: [u8; 16] = lanes([1, 3, 5, 7]);
const LOW_PAIRS: [u8; 16] = lanes([0, 4, 1, 5]);
const HIGH_PAIRS: [u8; 16] = lanes([2, 6, 3, 7]);

/// The `i8x16.shuffle` bytes picking f32 lanes (0–3 from the first operand, 4–7 from the second).
const fn lanes(picks: [u8; 4]) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        bytes[i] = picks[i / 4] * 4 + (i % 4) as u8;
        i += 1;
    }
    bytes
}

pub(crate) fn rope(node: &Node, interleaved: bool) -> Result<Kernel, CodegenError> {
    let (x_format, positions, freqs) = (node.format(0)?, node.format(1)?, node.format(2)?);
    let x = node.inputs[0];
    let params = vec![
        tfc_ir::dim::product(&x.shape[..2]).to_expr(),
        x.shape[2].to_expr(),
        x.shape[3].to_expr(),
        node.inputs[2].shape[0].to_expr(),
    ];
    let (mut b, args) = Args::new(3);
    let (rows, heads, d, half) = (args.param(&mut b, 0), args.param(&mut b, 1), args.param(&mut b, 2), args.param(&mut b, 3));
    let (start, end) = args.share(&mut b, rows);
    let (row, position, p, count, head, base, at) = (b.i32(), b.i32(), b.i32(), b.i32(), b.i32(), b.i32(), b.i32());
    let (cos, sin, x1, x2, first, second) = (b.v128(), b.v128(), b.v128(), b.v128(), b.v128(), b.v128());
    let (copy_from, copy_to, second_count) = (b.i32(), b.i32(), b.i32());
    let out = args.output();
    let load_x = |b: &mut Body, element: Local| {
        x_format.address(b, args.input(0), element);
        x_format.load4(b);
    };
    // Pushes x1·cos − x2·sin into `first` and x2·cos + x1·sin into `second`.
    let rotate = |b: &mut Body| {
        b.get(x1).get(cos).op(I::F32x4Mul).get(x2).get(sin).op(I::F32x4Mul).op(I::F32x4Sub).set(first);
        b.get(x2).get(cos).op(I::F32x4Mul).get(x1).get(sin).op(I::F32x4Mul).op(I::F32x4Add).set(second);
    };
    let store = |b: &mut Body, element: Local, value: Local, lanes: Local| {
        Format::F32.address(b, out, element);
        b.get(value).store_lanes(lanes);
    };
    b.for_range(row, |b| { b.get(start); }, end, 1, |b| {
        positions.address(b, args.input(1), row);
        positions.load1_i32(b);
        b.set(position);
        b.for_range(p, |b| { b.i32c(0); }, half, 4, |b| {
            b.get(half).get(p).op(I::I32Sub).i32c(4).min_u().set(count);
            b.get(position).op(I::I32x4Splat);
            freqs.address(b, args.input(2), p);
            freqs.load4(b);
            call(b, Helper::Rotation);
            b.set(sin).set(cos);
            b.for_range(head, |b| { b.i32c(0); }, heads, 1, |b| {
                b.get(row).get(heads).op(I::I32Mul).get(head).op(I::I32Add).get(d).op(I::I32Mul).set(base);
                if interleaved {
                    // Pairs (2i, 2i + 1): eight features from 2p, split into evens and odds and interleaved back.
                    b.get(base).get(p).get(p).op(I::I32Add).op(I::I32Add).set(at);
                    load_x(b, at);
                    b.set(first);
                    b.get(at).i32c(4).op(I::I32Add).set(copy_from);
                    load_x(b, copy_from);
                    b.set(second);
                    b.get(first).get(second).op(I::I8x16Shuffle(EVENS)).set(x1);
                    b.get(first).get(second).op(I::I8x16Shuffle(ODDS)).set(x2);
                    rotate(b);
                    b.get(first).get(second).op(I::I8x16Shuffle(LOW_PAIRS)).set(x1);
                    b.get(first).get(second).op(I::I8x16Shuffle(HIGH_PAIRS)).set(x2);
                    b.get(count).get(count).op(I::I32Add).i32c(4).min_u().set(second_count);
                    store(b, at, x1, second_count);
                    b.get(count).i32c(2).op(I::I32GtU).if_(|b| {
                        b.get(count).get(count).op(I::I32Add).i32c(4).op(I::I32Sub).set(second_count);
                        store(b, copy_from, x2, second_count);
                    });
                } else {
                    // Pairs (i, i + r/2).
                    b.get(base).get(p).op(I::I32Add).set(at);
                    load_x(b, at);
                    b.set(x1);
                    b.get(at).get(half).op(I::I32Add).set(copy_from);
                    load_x(b, copy_from);
                    b.set(x2);
                    rotate(b);
                    store(b, at, first, count);
                    store(b, copy_from, second, count);
                }
            });
        });
        // The features past the rotated ones pass through, head by head.
        b.for_range(head, |b| { b.i32c(0); }, heads, 1, |b| {
            b.get(row).get(heads).op(I::I32Mul).get(head).op(I::I32Add).get(d).op(I::I32Mul).set(base);
            b.get(base).get(half).get(half).op(I::I32Add).op(I::I32Add).set(copy_from);
            b.get(base).get(d).op(I::I32Add).set(copy_to);
            for_each_vector(b, copy_from, copy_to, out, |b, i| load_x(b, i));
        });
    });
    Ok(Kernel { name: "rope".into(), body: b, bindings: 4, params })
}
