//! Batched matmul with broadcast batch axes, in one of three loop nests chosen by the operands' layouts:
//!
//! - Dot (A contiguous along k, B stored [N, K] as HF linear weights are, `transpose_b`): each output is a dot
//!   product of two contiguous rows, vectorised along k. A register block of MB rows of A × NB rows of B keeps
//!   MB·NB f32x4 partial sums; the last K % 4 elements are read as a full vector with the extra lanes masked to
//!   zero; each output is the horizontal sum of its partial sums. Threads take blocks of NB columns (all rows), so
//!   each thread streams its own rows of B once while they stay in L1 across the rows of A.
//! - Axpy (B contiguous along n): out[m, n..n+4] += A(m, k) · B(k, n..n+4) over k, MB rows × NV vectors of columns
//!   per register block; threads take blocks of columns.
//! - Strided (Aᵀ with Bᵀ): one scalar dot product per output; no model needs it fast.
//!
//! Rows and columns past the end of a block are computed on the last valid row or column and not stored, so every
//! output is computed by the same instructions wherever its block falls: results do not depend on the thread count.
//!
//! Params: M, N, K, A's strides along m and k, B's along k and n, the batch count, then 4 batch dims, A's 4 batch
//! strides and B's 4 (0 where broadcast), all in elements.

use crate::asm::{Body, I, Local};
use crate::decode::Format;
use crate::{Args, CodegenError, Kernel, Node, broadcast_axes};
use tfc_ir::{Dim, Expr};

const BATCH_AXES: usize = 4;
/// Dot: rows of A and of B per register block.
const DOT_MB: u32 = 4;
const DOT_NB: u32 = 2;
/// Axpy: rows of A and f32x4 column vectors per register block.
const AXPY_MB: u32 = 4;
const AXPY_NV: u32 = 2;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Strategy {
    Dot,
    Axpy,
    Strided,
}

/// The params every strategy reads, loaded into locals.
struct Shape {
    m: Local,
    n: Local,
    k: Local,
    a_m: Local,
    a_k: Local,
    b_k: Local,
    b_n: Local,
    batches: Local,
    dims: Vec<Local>,
    a_batch: Vec<Local>,
    b_batch: Vec<Local>,
}

impl Shape {
    fn load(b: &mut Body, args: &Args) -> Shape {
        let mut p = (0..8 + 3 * BATCH_AXES).map(|i| args.param(b, i));
        let mut next = || p.next().expect("enough params");
        Shape {
            m: next(),
            n: next(),
            k: next(),
            a_m: next(),
            a_k: next(),
            b_k: next(),
            b_n: next(),
            batches: next(),
            dims: (0..BATCH_AXES).map(|_| next()).collect(),
            a_batch: (0..BATCH_AXES).map(|_| next()).collect(),
            b_batch: (0..BATCH_AXES).map(|_| next()).collect(),
        }
    }

    /// Sets `a_off` and `b_off` to the element offsets of batch `batch` in A and B.
    fn batch_offsets(&self, b: &mut Body, batch: Local, a_off: Local, b_off: Local) {
        let (rest, c) = (b.i32(), b.i32());
        b.get(batch).set(rest).i32c(0).set(a_off).i32c(0).set(b_off);
        for axis in (0..BATCH_AXES).rev() {
            b.get(rest).get(self.dims[axis]).op(I::I32RemU).set(c);
            b.get(rest).get(self.dims[axis]).op(I::I32DivU).set(rest);
            b.get(a_off).get(c).get(self.a_batch[axis]).op(I::I32Mul).op(I::I32Add).set(a_off);
            b.get(b_off).get(c).get(self.b_batch[axis]).op(I::I32Mul).op(I::I32Add).set(b_off);
        }
    }
}

pub(crate) fn matmul(node: &Node, transpose_a: bool, transpose_b: bool) -> Result<Kernel, CodegenError> {
    let (a, b) = (&node.inputs[0].shape, &node.inputs[1].shape);
    let (ra, ca) = (&a[a.len() - 2], &a[a.len() - 1]);
    let (rb, cb) = (&b[b.len() - 2], &b[b.len() - 1]);
    let (m, k) = if transpose_a { (ca, ra) } else { (ra, ca) };
    let n = if transpose_b { rb } else { cb };
    let one = Dim::from(1u64);
    let (a_m, a_k) = if transpose_a { (one.clone(), m.clone()) } else { (k.clone(), one.clone()) };
    let (b_k, b_n) = if transpose_b { (one.clone(), k.clone()) } else { (n.clone(), one.clone()) };

    let out_batch = &node.output.shape[..node.output.shape.len() - 2];
    let (mut dims, strides) = broadcast_axes(out_batch, [&a[..a.len() - 2], &b[..b.len() - 2]]);
    if dims.len() > BATCH_AXES {
        return Err(node.error(format!(
            "{} × {} has {} batch axes that broadcast differently; the kernel takes up to {BATCH_AXES}: reshape to merge them",
            node.inputs[0],
            node.inputs[1],
            dims.len()
        )));
    }
    let matrix = [ra * ca, rb * cb];
    let mut batch_strides: Vec<Vec<Dim>> =
        strides.iter().zip(&matrix).map(|(s, size)| s.iter().map(|x| x * size).collect()).collect();
    while dims.len() < BATCH_AXES {
        dims.insert(0, one.clone());
        for s in &mut batch_strides {
            s.insert(0, Dim::from(0u64));
        }
    }
    let mut params: Vec<Expr> = [m, n, k, &a_m, &a_k, &b_k, &b_n].iter().map(|d| d.to_expr()).collect();
    params.push(tfc_ir::dim::product(out_batch).to_expr());
    params.extend(dims.iter().map(Dim::to_expr));
    for s in &batch_strides {
        params.extend(s.iter().map(Dim::to_expr));
    }

    let formats = [node.format(0)?, node.format(1)?];
    let strategy = match (transpose_a, transpose_b) {
        (false, true) => Strategy::Dot,
        (_, false) => Strategy::Axpy,
        (true, true) => Strategy::Strided,
    };
    let (mut body, args) = Args::new(2);
    let shape = Shape::load(&mut body, &args);
    let name = match strategy {
        Strategy::Dot => {
            dot(&mut body, &args, &shape, formats);
            "matmul_dot"
        }
        Strategy::Axpy => {
            axpy(&mut body, &args, &shape, formats);
            "matmul_axpy"
        }
        Strategy::Strided => {
            strided(&mut body, &args, &shape, formats);
            "matmul_strided"
        }
    };
    Ok(Kernel { name: name.into(), body, bindings: 3, params })
}

/// The work units of a column-blocked strategy: (batch, block of `width` columns) pairs. Calls `body` with the
/// batch's offsets in A and B and the block's first column, for this thread's units.
fn for_each_column_block(b: &mut Body, args: &Args, shape: &Shape, width: u32, body: impl FnOnce(&mut Body, Local, Local, Local, Local)) {
    let blocks = b.let_i32(|b| {
        b.get(shape.n).i32c(width as i32 - 1).op(I::I32Add).i32c(width as i32).op(I::I32DivU);
    });
    let units = b.let_i32(|b| {
        b.mul(blocks, shape.batches);
    });
    let (start, end) = args.share(b, units);
    let (unit, batch, n0, a_off, b_off) = (b.i32(), b.i32(), b.i32(), b.i32(), b.i32());
    b.for_range(unit, |b| { b.get(start); }, end, 1, |b| {
        b.get(unit).get(blocks).op(I::I32DivU).set(batch);
        b.get(unit).get(blocks).op(I::I32RemU).i32c(width as i32).op(I::I32Mul).set(n0);
        shape.batch_offsets(b, batch, a_off, b_off);
        body(b, batch, n0, a_off, b_off);
    });
}

/// Pushes `min(first + i, last_valid)`: row or column `first + i`, clamped into the matrix.
fn clamped(b: &mut Body, first: Local, i: u32, count: Local) {
    b.get(first).i32c(i as i32).op(I::I32Add).get(count).i32c(1).op(I::I32Sub).min_u();
}

/// Stores `value(b)` (an f32) at out[batch, row, col] if row < M and col < N.
fn store_output(b: &mut Body, args: &Args, shape: &Shape, batch: Local, row: Local, col: Local, value: impl FnOnce(&mut Body)) {
    b.get(row).get(shape.m).op(I::I32LtU).get(col).get(shape.n).op(I::I32LtU).op(I::I32And).if_(|b| {
        // ((batch · M + row) · N + col) · 4 bytes into the output.
        b.get(args.output());
        b.get(batch).get(shape.m).op(I::I32Mul).get(row).op(I::I32Add).get(shape.n).op(I::I32Mul).get(col).op(I::I32Add);
        b.i32c(2).op(I::I32Shl).op(I::I32Add);
        value(b);
        b.f32_store(0);
    });
}

fn dot(b: &mut Body, args: &Args, shape: &Shape, [fa, fb]: [Format; 2]) {
    let (mb, nb) = (DOT_MB, DOT_NB);
    // Lanes of the last, partial vector of a row: lane < K % 4.
    let tail_mask = b.let_v128(|b| {
        b.op(I::V128Const(0x0000_0003_0000_0002_0000_0001_0000_0000));
        b.get(shape.k).i32c(3).op(I::I32And).op(I::I32x4Splat).op(I::I32x4LtS);
    });
    let main_bytes_a = b.let_i32(|b| {
        b.get(shape.k).i32c(!3).op(I::I32And).i32c(fa.shift()).op(I::I32Shl);
    });
    let a_rows: Vec<Local> = (0..mb).map(|_| b.i32()).collect();
    let b_rows: Vec<Local> = (0..nb).map(|_| b.i32()).collect();
    let acc: Vec<Vec<Local>> = (0..mb).map(|_| (0..nb).map(|_| b.v128()).collect()).collect();
    let a_vec: Vec<Local> = (0..mb).map(|_| b.v128()).collect();
    let b_vec: Vec<Local> = (0..nb).map(|_| b.v128()).collect();
    let (m0, ka, kb, row, col) = (b.i32(), b.i32(), b.i32(), b.i32(), b.i32());

    // One step along k: load MB + NB vectors at byte offsets ka and kb of the rows, masked for the tail; multiply-add.
    let step = |b: &mut Body, masked: bool| {
        for (r, &base) in a_rows.iter().enumerate() {
            b.get(base).get(ka).op(I::I32Add);
            fa.load4(b);
            if masked {
                b.get(tail_mask).op(I::V128And);
            }
            b.set(a_vec[r]);
        }
        for (c, &base) in b_rows.iter().enumerate() {
            b.get(base).get(kb).op(I::I32Add);
            fb.load4(b);
            if masked {
                b.get(tail_mask).op(I::V128And);
            }
            b.set(b_vec[c]);
        }
        for r in 0..mb as usize {
            for c in 0..nb as usize {
                b.get(acc[r][c]).get(a_vec[r]).get(b_vec[c]).op(I::F32x4Mul).op(I::F32x4Add).set(acc[r][c]);
            }
        }
    };

    for_each_column_block(b, args, shape, nb, |b, batch, n0, a_off, b_off| {
        for (c, &base) in b_rows.iter().enumerate() {
            // Byte address of row min(n0 + c, N − 1) of B.
            b.get(args.input(1));
            b.get(b_off);
            clamped(b, n0, c as u32, shape.n);
            b.get(shape.k).op(I::I32Mul).op(I::I32Add).i32c(fb.shift()).op(I::I32Shl).op(I::I32Add).set(base);
        }
        b.for_range(m0, |b| { b.i32c(0); }, shape.m, mb as i32, |b| {
            for (r, &base) in a_rows.iter().enumerate() {
                b.get(args.input(0));
                b.get(a_off);
                clamped(b, m0, r as u32, shape.m);
                b.get(shape.k).op(I::I32Mul).op(I::I32Add).i32c(fa.shift()).op(I::I32Shl).op(I::I32Add).set(base);
            }
            for &a in acc.iter().flatten() {
                b.splat(0.0).set(a);
            }
            b.i32c(0).set(kb);
            b.for_range(ka, |b| { b.i32c(0); }, main_bytes_a, fa.bytes_per_4() as i32, |b| {
                step(b, false);
                b.add_to(kb, fb.bytes_per_4() as i32);
            });
            b.get(shape.k).i32c(3).op(I::I32And).if_(|b| step(b, true));
            for r in 0..mb {
                for c in 0..nb {
                    b.get(m0).i32c(r as i32).op(I::I32Add).set(row);
                    b.get(n0).i32c(c as i32).op(I::I32Add).set(col);
                    let sum = acc[r as usize][c as usize];
                    store_output(b, args, shape, batch, row, col, |b| {
                        b.get(sum).hsum();
                    });
                }
            }
        });
    });
}

fn axpy(b: &mut Body, args: &Args, shape: &Shape, [fa, fb]: [Format; 2]) {
    let (mb, nv) = (AXPY_MB, AXPY_NV);
    let a_rows: Vec<Local> = (0..mb).map(|_| b.i32()).collect();
    let b_cols: Vec<Local> = (0..nv).map(|_| b.i32()).collect();
    let acc: Vec<Vec<Local>> = (0..mb).map(|_| (0..nv).map(|_| b.v128()).collect()).collect();
    let a_vec: Vec<Local> = (0..mb).map(|_| b.v128()).collect();
    let b_vec: Vec<Local> = (0..nv).map(|_| b.v128()).collect();
    let (m0, k, row, col, count) = (b.i32(), b.i32(), b.i32(), b.i32(), b.i32());
    // Byte steps along k in A and in B.
    let a_step = b.let_i32(|b| {
        b.get(shape.a_k).i32c(fa.shift()).op(I::I32Shl);
    });
    let b_step = b.let_i32(|b| {
        b.get(shape.b_k).i32c(fb.shift()).op(I::I32Shl);
    });

    for_each_column_block(b, args, shape, 4 * nv, |b, batch, n0, a_off, b_off| {
        b.for_range(m0, |b| { b.i32c(0); }, shape.m, mb as i32, |b| {
            for (r, &at) in a_rows.iter().enumerate() {
                // Byte address of A(min(m0 + r, M − 1), 0).
                b.get(args.input(0)).get(a_off);
                clamped(b, m0, r as u32, shape.m);
                b.get(shape.a_m).op(I::I32Mul).op(I::I32Add).i32c(fa.shift()).op(I::I32Shl).op(I::I32Add).set(at);
            }
            for (v, &at) in b_cols.iter().enumerate() {
                // Byte address of B(0, min(n0 + 4v, N − 1)).
                b.get(args.input(1)).get(b_off);
                clamped(b, n0, 4 * v as u32, shape.n);
                b.op(I::I32Add).i32c(fb.shift()).op(I::I32Shl).op(I::I32Add).set(at);
            }
            for &a in acc.iter().flatten() {
                b.splat(0.0).set(a);
            }
            b.for_range(k, |b| { b.i32c(0); }, shape.k, 1, |b| {
                for (r, &at) in a_rows.iter().enumerate() {
                    b.get(at);
                    fa.load1(b);
                    b.op(I::F32x4Splat).set(a_vec[r]);
                    b.add_local(at, a_step);
                }
                for (v, &at) in b_cols.iter().enumerate() {
                    b.get(at);
                    fb.load4(b);
                    b.set(b_vec[v]);
                    b.add_local(at, b_step);
                }
                for r in 0..mb as usize {
                    for v in 0..nv as usize {
                        b.get(acc[r][v]).get(a_vec[r]).get(b_vec[v]).op(I::F32x4Mul).op(I::F32x4Add).set(acc[r][v]);
                    }
                }
            });
            for r in 0..mb {
                for v in 0..nv {
                    b.get(m0).i32c(r as i32).op(I::I32Add).set(row);
                    b.get(n0).i32c(4 * v as i32).op(I::I32Add).set(col);
                    let sum = acc[r as usize][v as usize];
                    b.get(row).get(shape.m).op(I::I32LtU).get(col).get(shape.n).op(I::I32LtU).op(I::I32And).if_(|b| {
                        b.get(shape.n).get(col).op(I::I32Sub).i32c(4).min_u().set(count);
                        b.get(args.output());
                        b.get(batch).get(shape.m).op(I::I32Mul).get(row).op(I::I32Add).get(shape.n).op(I::I32Mul).get(col).op(I::I32Add);
                        b.i32c(2).op(I::I32Shl).op(I::I32Add);
                        b.get(sum).store_lanes(count);
                    });
                }
            }
        });
    });
}

fn strided(b: &mut Body, args: &Args, shape: &Shape, [fa, fb]: [Format; 2]) {
    let total = b.let_i32(|b| {
        b.mul(shape.m, shape.n).get(shape.batches).op(I::I32Mul);
    });
    let (start, end) = args.share(b, total);
    let (e, batch, row, col, k, a_off, b_off, at) = (b.i32(), b.i32(), b.i32(), b.i32(), b.i32(), b.i32(), b.i32(), b.i32());
    let sum = b.f32();
    b.for_range(e, |b| { b.get(start); }, end, 1, |b| {
        b.get(e).get(shape.n).op(I::I32RemU).set(col);
        b.get(e).get(shape.n).op(I::I32DivU).get(shape.m).op(I::I32RemU).set(row);
        b.get(e).get(shape.n).op(I::I32DivU).get(shape.m).op(I::I32DivU).set(batch);
        shape.batch_offsets(b, batch, a_off, b_off);
        b.f32c(0.0).set(sum);
        b.for_range(k, |b| { b.i32c(0); }, shape.k, 1, |b| {
            b.get(sum);
            b.get(a_off).get(row).get(shape.a_m).op(I::I32Mul).op(I::I32Add).get(k).get(shape.a_k).op(I::I32Mul).op(I::I32Add).set(at);
            fa.address(b, args.input(0), at);
            fa.load1(b);
            b.get(b_off).get(k).get(shape.b_k).op(I::I32Mul).op(I::I32Add).get(col).get(shape.b_n).op(I::I32Mul).op(I::I32Add).set(at);
            fb.address(b, args.input(1), at);
            fb.load1(b);
            b.op(I::F32Mul).op(I::F32Add).set(sum);
        });
        Format::F32.address(b, args.output(), e);
        b.get(sum).f32_store(0);
    });
}
