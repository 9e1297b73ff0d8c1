//! Scaled dot-product attention with an online softmax (Milakov & Gimelshein, 2018). Threads take runs of
//! (batch, query, head) rows. A row walks its visible keys four at a time: the four scores (dot products vectorised
//! along the head size d, with the query in registers), their max against the running one, and
//! p = exp(score − max); the running Σ p·v, one f32x4 register per four features of e, is rescaled when the max
//! grows and divided by Σ p at the end. Keys past the visible ones are read on the last visible row and, like
//! masked keys, scored as LOWEST, so the walk has no branch per key. The head sizes d and e are baked in, so the
//! loops along them are unrolled with constant offsets.
//! Params: batch, query count s, query heads H, key count t, key/value heads G.

use crate::asm::{Body, I, Local};
use crate::decode::Format;
use crate::math::{Helper, call};
use crate::{Args, CodegenError, Kernel, Node};

/// The score of a key that is not seen, and the running max before any key is seen.
const LOWEST: f32 = f32::MIN;
/// Keys scored together.
const KEYS: u32 = 4;

/// The lanes below `count` (0 to 4), as an i32x4 mask constant.
fn lane_mask(count: u32) -> i128 {
    (0..4).filter(|&l| l < count).fold(0i128, |m, l| m | (0xffff_ffffi128 << (32 * l)))
}

/// Pushes the f32x4 of partial sums of q·k over `len` elements: `q` holds the query's f32x4 vectors (lanes past
/// `len` zero), `row` the byte address of the key row.
fn dot(b: &mut Body, q: &[Local], (format, row): (Format, Local), len: u32) {
    for (v, &q) in q.iter().enumerate() {
        b.get(q);
        b.get(row);
        format.load4_at(b, v as u32 * format.bytes_per_4());
        b.op(I::F32x4Mul);
        if 4 * v as u32 + 4 > len {
            // The key's lanes past its row may hold anything, even NaN, which 0·NaN would keep.
            b.op(I::V128Const(lane_mask(len - 4 * v as u32))).op(I::V128And);
        }
        if v > 0 {
            b.op(I::F32x4Add);
        }
    }
}

/// i32x4 lanes 0, 1, 2, 3.
const LANE_INDICES: i128 = 0x0000_0003_0000_0002_0000_0001_0000_0000;

/// Pushes the f32x4 whose lane k is the sum of the lanes of `partials[k]`, as ((x0 + x2) + (x1 + x3)) like
/// `Body::hsum`: two rounds of interleaving and adding.
fn lane_sums(b: &mut Body, partials: &[Local]) {
    const LOW: [u8; 16] = [0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23];
    const HIGH: [u8; 16] = [8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31];
    const FIRST_HALVES: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23];
    const SECOND_HALVES: [u8; 16] = [8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31];
    // Per pair (a, c): [a0 + a2, c0 + c2, a1 + a3, c1 + c3].
    let pair = |b: &mut Body, a: Local, c: Local| {
        b.get(a).get(c).op(I::I8x16Shuffle(LOW)).get(a).get(c).op(I::I8x16Shuffle(HIGH)).op(I::F32x4Add);
    };
    let (low, high) = (b.v128(), b.v128());
    pair(b, partials[0], partials[1]);
    b.set(low);
    pair(b, partials[2], partials[3]);
    b.set(high);
    b.get(low).get(high).op(I::I8x16Shuffle(FIRST_HALVES)).get(low).get(high).op(I::I8x16Shuffle(SECOND_HALVES)).op(I::F32x4Add);
}

/// Sets `row` to the byte address of key (or value) row min(j0 + lane, visible − 1): `first` is row 0's address,
/// `stride` the bytes between rows.
fn clamped_row(b: &mut Body, (j0, lane, visible): (Local, i32, Local), (first, stride): (Local, Local), row: Local) {
    b.get(j0).i32c(lane).op(I::I32Add).get(visible).i32c(1).op(I::I32Sub).min_u();
    b.get(stride).op(I::I32Mul).get(first).op(I::I32Add).set(row);
}

pub(crate) fn attention(node: &Node, causal: bool, scale: f32, window: Option<u64>) -> Result<Kernel, CodegenError> {
    let (q, k, v) = (node.inputs[0], node.inputs[1], node.inputs[2]);
    let d = node.constant(&q.shape[3], "the head size d of q and k")?;
    let e = node.constant(&v.shape[3], "the head size e of v")?;
    if d == 0 || e == 0 {
        return Err(node.error("heads of size 0 have nothing to attend with"));
    }
    let scale = node.finite(scale, "scale")?;
    let formats: Vec<Format> = (0..node.inputs.len()).map(|i| node.format(i)).collect::<Result<_, _>>()?;
    let masked = node.inputs.len() == 4;
    let params = [&q.shape[0], &q.shape[1], &q.shape[2], &k.shape[1], &k.shape[2]].iter().map(|d| d.to_expr()).collect();

    let (mut b, args) = Args::new(node.inputs.len());
    let (batch, s, heads, t, groups) =
        (args.param(&mut b, 0), args.param(&mut b, 1), args.param(&mut b, 2), args.param(&mut b, 3), args.param(&mut b, 4));
    let units = b.let_i32(|b| {
        b.mul(batch, s).get(heads).op(I::I32Mul);
    });
    let per_group = b.let_i32(|b| {
        b.get(heads).get(groups).op(I::I32DivU);
    });
    // Bytes from one key (value) row of a head group to the next key's.
    let k_stride = b.let_i32(|b| {
        b.get(groups).i32c((d * formats[1].size()) as i32).op(I::I32Mul);
    });
    let v_stride = b.let_i32(|b| {
        b.get(groups).i32c((e * formats[2].size()) as i32).op(I::I32Mul);
    });
    let (start, end) = args.share(&mut b, units);
    let (unit, i, bi, visible, first_key, j0, at) = (b.i32(), b.i32(), b.i32(), b.i32(), b.i32(), b.i32(), b.i32());
    let (k_first, v_first, row, out_row) = (b.i32(), b.i32(), b.i32(), b.i32());
    let (m, l, m_new, correction) = (b.f32(), b.f32(), b.f32(), b.f32());
    let (scores, seen, p, weight) = (b.v128(), b.v128(), b.v128(), b.v128());
    let partials: Vec<Local> = (0..KEYS).map(|_| b.v128()).collect();
    let q_vec: Vec<Local> = (0..d.div_ceil(4)).map(|_| b.v128()).collect();
    let acc: Vec<Local> = (0..e.div_ceil(4)).map(|_| b.v128()).collect();

    b.for_range(unit, |b| { b.get(start); }, end, 1, |b| {
        b.get(unit).get(heads).op(I::I32DivU).get(s).op(I::I32RemU).set(i);
        b.get(unit).get(heads).op(I::I32DivU).get(s).op(I::I32DivU).set(bi);
        // Byte addresses of key and value row (bi, 0, g), g = h / (H / G).
        for (first, input, size) in [(k_first, 1, d), (v_first, 2, e)] {
            b.get(bi).get(t).op(I::I32Mul).get(groups).op(I::I32Mul);
            b.get(unit).get(heads).op(I::I32RemU).get(per_group).op(I::I32DivU).op(I::I32Add);
            b.i32c(size as i32).op(I::I32Mul).set(at);
            formats[input].address(b, args.input(input), at);
            b.set(first);
        }
        // Row (bi, i, h) of q and of the output: the unit index is that row.
        b.get(unit).i32c(d as i32).op(I::I32Mul).set(at);
        formats[0].address(b, args.input(0), at);
        b.set(row);
        for (v, &q) in q_vec.iter().enumerate() {
            b.get(row);
            formats[0].load4_at(b, v as u32 * formats[0].bytes_per_4());
            if 4 * v as u32 + 4 > d {
                b.op(I::V128Const(lane_mask(d - 4 * v as u32))).op(I::V128And);
            }
            b.set(q);
        }
        if causal {
            // Query i sees key j iff j + s ≤ i + t.
            b.get(i).get(t).op(I::I32Add).i32c(1).op(I::I32Add).get(s).op(I::I32Sub).get(t).min_u();
            b.i32c(0);
            b.get(i).get(t).op(I::I32Add).i32c(1).op(I::I32Add).get(s).op(I::I32GtU);
            b.op(I::Select).set(visible);
        } else {
            b.get(t).set(visible);
        }
        match window {
            // The first key query i sees: j + s + window > i + t.
            Some(w) => {
                // Below 2^30 (the type rule's bound), so it fits an i32.
                let w = w as i32;
                b.get(i).get(t).op(I::I32Add).i32c(1).op(I::I32Add).get(s).op(I::I32Sub).i32c(w).op(I::I32Sub);
                b.i32c(0);
                b.get(i).get(t).op(I::I32Add).i32c(1).op(I::I32Add).get(s).i32c(w).op(I::I32Add).op(I::I32GtU);
                b.op(I::Select).set(first_key);
            }
            None => {
                b.i32c(0).set(first_key);
            }
        }
        for &a in &acc {
            b.splat(0.0).set(a);
        }
        b.f32c(LOWEST).set(m);
        b.f32c(0.0).set(l);
        b.for_range(j0, |b| { b.get(first_key); }, visible, KEYS as i32, |b| {
            // The four keys' scores, on rows clamped into the visible ones; the lanes past them, and masked keys,
            // become LOWEST.
            for (lane, &partial) in partials.iter().enumerate() {
                clamped_row(b, (j0, lane as i32, visible), (k_first, k_stride), row);
                dot(b, &q_vec, (formats[1], row), d);
                b.set(partial);
            }
            lane_sums(b, &partials);
            b.f32c(scale).op(I::F32x4Splat).op(I::F32x4Mul).set(scores);
            b.get(visible).get(j0).op(I::I32Sub).op(I::I32x4Splat).op(I::V128Const(LANE_INDICES)).op(I::I32x4GtS);
            if masked {
                b.get(bi).get(t).op(I::I32Mul).get(j0).op(I::I32Add).set(at);
                formats[3].address(b, args.input(3), at);
                formats[3].load4(b);
                b.splat(0.0).op(I::F32x4Ne).op(I::V128And);
            }
            b.set(seen);
            b.get(scores).splat(LOWEST).get(seen).op(I::V128Bitselect).set(scores);
            // A new max rescales what was summed so far by exp(old max − new max).
            b.get(m).get(scores).hmax().op(I::F32Max).tee(m_new).get(m).op(I::F32Gt).if_(|b| {
                b.get(m).get(m_new).op(I::F32Sub).op(I::F32x4Splat);
                call(b, Helper::Exp);
                b.op(I::F32x4ExtractLane(0)).set(correction);
                b.get(l).get(correction).op(I::F32Mul).set(l);
                for &a in &acc {
                    b.get(a).get(correction).op(I::F32x4Splat).op(I::F32x4Mul).set(a);
                }
                b.get(m_new).set(m);
            });
            b.get(scores).get(m).op(I::F32x4Splat).op(I::F32x4Sub);
            call(b, Helper::Exp);
            b.splat(0.0).get(seen).op(I::V128Bitselect).set(p);
            b.get(l).get(p).hsum().op(I::F32Add).set(l);
            for lane in 0..KEYS as u8 {
                b.get(p).op(I::F32x4ExtractLane(lane)).op(I::F32x4Splat).set(weight);
                clamped_row(b, (j0, lane as i32, visible), (v_first, v_stride), row);
                // Lanes past e pick up whatever follows the value row; they are never stored.
                for (v, &a) in acc.iter().enumerate() {
                    b.get(a).get(row);
                    formats[2].load4_at(b, v as u32 * formats[2].bytes_per_4());
                    b.get(weight).op(I::F32x4Mul).op(I::F32x4Add).set(a);
                }
            }
        });
        // Σ p·v / Σ p; a query that sees no key outputs zeros.
        b.get(unit).i32c(e as i32).op(I::I32Mul).set(at);
        Format::F32.address(b, args.output(), at);
        b.set(out_row);
        b.get(l).f32c(0.0).op(I::F32Gt).if_else(
            |b| {
                b.f32c(1.0).get(l).op(I::F32Div).set(l);
            },
            |b| {
                b.f32c(0.0).set(l);
            },
        );
        for (v, &a) in acc.iter().enumerate() {
            let lanes = (e - 4 * v as u32).min(4);
            b.get(a).get(l).op(I::F32x4Splat).op(I::F32x4Mul).set(a);
            for lane in 0..if lanes == 4 { 0 } else { lanes as u8 } {
                b.get(out_row).get(a).op(I::V128Store32Lane { memarg: crate::asm::mem(16 * v as u32 + 4 * lane as u32, 0), lane });
            }
            if lanes == 4 {
                b.get(out_row).get(a).v128_store(16 * v as u32);
            }
        }
    });
    Ok(Kernel { name: "attention".into(), body: b, bindings: node.inputs.len() as u32 + 1, params })
}
