//! Batched matmul with broadcast batch axes, in one of three loop nests chosen by the operands' layouts:
//!
//! - Dot (A contiguous along k, B stored [N, K] as HF linear weights are, `transpose_b`): each output is a dot
//!   product of two contiguous rows, vectorised along k. A register block of MB rows of A × NB rows of B keeps
//!   MB·NB f32x4 partial sums; the last K % 4 elements are read as a full vector with the extra lanes masked to
//!   zero; each output is the horizontal sum of its partial sums. Threads take blocks of NB columns (all rows), so
//!   each thread streams its own rows of B once while they stay in L1 across the rows of A. A block-quantized B
//!   (the only layout it comes in) is walked a block at a time: its scales, then sub-block by sub-block, each
//!   contributing `a · Σ q·x + o · Σ x` (see `decode::Blocks`), so the inner loop is a conversion, a multiply and
//!   an add per four weights.
//! - Axpy (B contiguous along n): out[m, n..n+4] += A(m, k) · B(k, n..n+4) over k, MB rows × NV vectors of columns
//!   per register block; threads take blocks of columns.
//! - Strided (Aᵀ with Bᵀ): one scalar dot product per output; no model needs it fast.
//!
//! Columns past the end of a block are computed on the last valid column and not stored (Dot takes rows in pairs and
//! an odd last row alone; Axpy computes rows past the end on the last valid one), so every output is computed by
//! the same instructions wherever its block falls: results do not depend on the thread count.
//!
//! Params: M, N, K, A's strides along m and k, B's along k and n, the batch count, then 4 batch dims, A's 4 batch
//! strides and B's 4 (0 where broadcast), all in elements.

use crate::asm::{Body, I, Local};
use crate::decode::{Blocks, Format};
use crate::{Args, CodegenError, Kernel, Node};
use tfc_ir::layout::MatmulLayout;
use tfc_ir::{Dim, Expr};

const BATCH_AXES: usize = 4;
/// Dot: rows of A and of B per register block. Eight f32x4 partial sums, with the four B vectors and an A vector,
/// are what V8's x64 code keeps in its 16 vector registers; larger blocks spill and run slower.
const DOT_MB: u32 = 2;
const DOT_NB: u32 = 4;
/// Dot with block-quantized B: rows of B per register block. One: with two or four (sharing the loads of x and its
/// sums) V8 spills, and decoding SmolLM2 measured slower.
const BLOCK_DOT_NB: u32 = 1;
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
    let b = &node.inputs[1].shape;
    let out_batch = &node.output.shape[..node.output.shape.len() - 2];
    let layout = MatmulLayout::new(&node.inputs[0].shape, b, &node.output.shape, transpose_a, transpose_b, BATCH_AXES)
        .map_err(|e| node.error(format!("{} × {}: {e}", node.inputs[0], node.inputs[1])))?;
    let MatmulLayout { m, n, k, a_m, a_k, b_k, b_n, batch_dims: dims, batch_strides } = &layout;
    let mut params: Vec<Expr> = [m, n, k, a_m, a_k, b_k, b_n].iter().map(|d| d.to_expr()).collect();
    params.push(tfc_ir::dim::product(out_batch).to_expr());
    params.extend(dims.iter().map(Dim::to_expr));
    for s in batch_strides {
        params.extend(s.iter().map(Dim::to_expr));
    }

    let blocks = Blocks::of(node.inputs[1].dtype);
    if let Some(blocks) = blocks
        && (transpose_a || !transpose_b || b.len() != 2)
    {
        return Err(node.error(format!("{} weights are read as a plain [N, K] matrix (x · Wᵀ); got {}", blocks.dtype, node.inputs[1])));
    }
    let strategy = match (transpose_a, transpose_b) {
        (false, true) => Strategy::Dot,
        (_, false) => Strategy::Axpy,
        (true, true) => Strategy::Strided,
    };
    let fa = node.format(0)?;
    let (mut body, args) = Args::new(2);
    let shape = Shape::load(&mut body, &args);
    let name = match (strategy, blocks) {
        (Strategy::Dot, Some(blocks)) => {
            dot(&mut body, &args, &shape, fa, Rows::Blocks(blocks));
            "matmul_dot_blocks"
        }
        (Strategy::Dot, None) => {
            dot(&mut body, &args, &shape, fa, Rows::Dense(node.format(1)?));
            "matmul_dot"
        }
        (Strategy::Axpy, _) => {
            axpy(&mut body, &args, &shape, [fa, node.format(1)?]);
            "matmul_axpy"
        }
        (Strategy::Strided, _) => {
            strided(&mut body, &args, &shape, [fa, node.format(1)?]);
            "matmul_strided"
        }
    };
    Ok(Kernel { name: name.into(), body, bindings: 3, params })
}

/// The work units of a column-blocked strategy: (batch, block of `width` columns) pairs. Calls `body` with the
/// batch's offsets in A and B and the block's first column, for this thread's units. The batch and its offsets are
/// found by division once, then followed from unit to unit (divisions cost tens of cycles, and a matrix-vector
/// product has a unit per row or few rows of B).
fn for_each_column_block(b: &mut Body, args: &Args, shape: &Shape, width: u32, body: impl FnOnce(&mut Body, Local, Local, Local, Local)) {
    let blocks = b.let_i32(|b| {
        b.get(shape.n).i32c(width as i32 - 1).op(I::I32Add).i32c(width as i32).op(I::I32DivU);
    });
    let units = b.let_i32(|b| {
        b.mul(blocks, shape.batches);
    });
    let (start, end) = args.share(b, units);
    let (unit, batch, n0, a_off, b_off) = (b.i32(), b.i32(), b.i32(), b.i32(), b.i32());
    let next_batch = b.i32();
    b.get(start).get(blocks).op(I::I32DivU).set(batch);
    b.get(start).get(blocks).op(I::I32RemU).i32c(width as i32).op(I::I32Mul).set(n0);
    b.get(batch).i32c(1).op(I::I32Add).get(blocks).op(I::I32Mul).set(next_batch);
    shape.batch_offsets(b, batch, a_off, b_off);
    b.for_range(unit, |b| { b.get(start); }, end, 1, |b| {
        // Past the last block of the batch: the first block of the next one.
        b.get(unit).get(next_batch).op(I::I32Eq).if_(|b| {
            b.add_to(batch, 1).i32c(0).set(n0);
            b.add_local(next_batch, blocks);
            shape.batch_offsets(b, batch, a_off, b_off);
        });
        body(b, batch, n0, a_off, b_off);
        b.add_to(n0, width as i32);
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

/// How the dot strategy reads B's rows.
#[derive(Clone, Copy)]
enum Rows {
    Dense(Format),
    Blocks(Blocks),
}

impl Rows {
    /// B rows per register block: block formats keep each row's scales in registers too, so they take fewer rows.
    fn per_block(self) -> u32 {
        match self {
            Rows::Dense(_) => DOT_NB,
            Rows::Blocks(_) => BLOCK_DOT_NB,
        }
    }
}

fn dot(b: &mut Body, args: &Args, shape: &Shape, fa: Format, rows_b: Rows) {
    let nb = rows_b.per_block();
    // Bytes per row of B, and for block formats where a row's scales begin.
    let (row_bytes, scales_offset) = match rows_b {
        Rows::Dense(fb) => (
            b.let_i32(|b| {
                b.get(shape.k).i32c(fb.shift()).op(I::I32Shl);
            }),
            None,
        ),
        Rows::Blocks(blocks) => (b.let_i32(|b| blocks.row_bytes(b, shape.k)), Some(b.let_i32(|b| blocks.scales_offset(b, shape.k)))),
    };
    let b_shift = match rows_b {
        Rows::Dense(fb) => fb.shift(),
        Rows::Blocks(_) => 0,
    };
    let b_rows: Vec<Local> = (0..nb).map(|_| b.i32()).collect();
    let (m0, last_pair) = (b.i32(), b.i32());
    let k_loop = KLoop::new(b, shape, fa, rows_b, scales_offset);

    for_each_column_block(b, args, shape, nb, |b, batch, n0, a_off, b_off| {
        for (c, &base) in b_rows.iter().enumerate() {
            // Byte address of row min(n0 + c, N − 1) of B (block formats have no batch axes: b_off is 0).
            b.get(args.input(1));
            b.get(b_off).i32c(b_shift).op(I::I32Shl);
            clamped(b, n0, c as u32, shape.n);
            b.get(row_bytes).op(I::I32Mul).op(I::I32Add).op(I::I32Add).set(base);
        }
        let block = |b: &mut Body, rows: u32| {
            let block = DotBlock::new(b, rows, &b_rows);
            block.emit(b, args, shape, &k_loop, (batch, m0, n0, a_off));
        };
        // Pairs of rows, then the last row alone if M is odd.
        b.get(shape.m).i32c(!1).op(I::I32And).set(last_pair);
        b.for_range(m0, |b| { b.i32c(0); }, last_pair, DOT_MB as i32, |b| block(b, DOT_MB));
        b.get(shape.m).i32c(1).op(I::I32And).if_(|b| {
            b.get(last_pair).set(m0);
            block(b, 1);
        });
    });
}

/// The walk along k of the dot strategy, for one register block.
struct KLoop {
    fa: Format,
    rows_b: Rows,
    /// Lanes of the last, partial vector of a dense row: lane < K % 4.
    tail_mask: Local,
    /// Bytes of A's rows covered by whole vectors.
    main_bytes_a: Local,
    /// Block formats: the number of blocks per row, and the offset of a row's scales.
    block_count: Local,
    scales_offset: Option<Local>,
}

impl KLoop {
    fn new(b: &mut Body, shape: &Shape, fa: Format, rows_b: Rows, scales_offset: Option<Local>) -> KLoop {
        let tail_mask = b.let_v128(|b| {
            b.op(I::V128Const(0x0000_0003_0000_0002_0000_0001_0000_0000));
            b.get(shape.k).i32c(3).op(I::I32And).op(I::I32x4Splat).op(I::I32x4LtS);
        });
        let main_bytes_a = b.let_i32(|b| {
            b.get(shape.k).i32c(!3).op(I::I32And).i32c(fa.shift()).op(I::I32Shl);
        });
        let block_count = b.let_i32(|b| match rows_b {
            Rows::Blocks(blocks) => blocks.count(b, shape.k),
            Rows::Dense(_) => {
                b.i32c(0);
            }
        });
        KLoop { fa, rows_b, tail_mask, main_bytes_a, block_count, scales_offset }
    }
}

/// One register block of the dot strategy: `rows` rows of A (from m0) against the rows of B at `b_rows`.
struct DotBlock<'a> {
    a_rows: Vec<Local>,
    b_rows: &'a [Local],
    acc: Vec<Vec<Local>>,
    a_vec: Local,
    b_vec: Vec<Local>,
    ka: Local,
    kb: Local,
}

impl<'a> DotBlock<'a> {
    fn new(b: &mut Body, rows: u32, b_rows: &'a [Local]) -> DotBlock<'a> {
        DotBlock {
            a_rows: (0..rows).map(|_| b.i32()).collect(),
            b_rows,
            acc: (0..rows).map(|_| b_rows.iter().map(|_| b.v128()).collect()).collect(),
            a_vec: b.v128(),
            b_vec: b_rows.iter().map(|_| b.v128()).collect(),
            ka: b.i32(),
            kb: b.i32(),
        }
    }

    /// Multiplies the A vectors at byte offset ka (+ `offset`) of their rows, masked by `mask` if given, with the B
    /// vectors in `b_vec`, into the partial sums.
    fn multiply(&self, b: &mut Body, fa: Format, offset: u32, mask: Option<Local>) {
        for (r, &base) in self.a_rows.iter().enumerate() {
            b.get(base).get(self.ka).op(I::I32Add);
            fa.load4_at(b, offset);
            if let Some(mask) = mask {
                b.get(mask).op(I::V128And);
            }
            b.set(self.a_vec);
            for (c, &sum) in self.acc[r].iter().enumerate() {
                b.get(sum).get(self.a_vec).get(self.b_vec[c]).op(I::F32x4Mul).op(I::F32x4Add).set(sum);
            }
        }
    }

    /// Dense B: one step of four elements at byte offsets ka and kb, masked to the lanes below K % 4 for the tail.
    fn dense_step(&self, b: &mut Body, (fa, fb): (Format, Format), mask: Option<Local>) {
        for (c, &base) in self.b_rows.iter().enumerate() {
            b.get(base).get(self.kb).op(I::I32Add);
            fb.load4(b);
            if let Some(mask) = mask {
                b.get(mask).op(I::V128And);
            }
            b.set(self.b_vec[c]);
        }
        self.multiply(b, fa, 0, mask);
    }

    /// The partial sums over all of k.
    fn walk(&self, b: &mut Body, k: &KLoop) {
        let fa = k.fa;
        match k.rows_b {
            Rows::Dense(fb) => {
                b.i32c(0).set(self.kb);
                b.for_range(self.ka, |b| { b.i32c(0); }, k.main_bytes_a, fa.bytes_per_4() as i32, |b| {
                    self.dense_step(b, (fa, fb), None);
                    b.add_to(self.kb, fb.bytes_per_4() as i32);
                });
                b.get(k.tail_mask).op(I::V128AnyTrue).if_(|b| self.dense_step(b, (fa, fb), Some(k.tail_mask)));
            }
            Rows::Blocks(blocks) => self.walk_blocks(b, k, blocks),
        }
    }

    /// The partial sums over all of k for block-quantized B: block by block (the scales of each row of B), sub-block
    /// by sub-block. Per sub-block and row of B, `part` collects Σ q·x over its groups for each row of A, then the
    /// partial sums take `a · part + o · Σ x` (see `Blocks`).
    fn walk_blocks(&self, b: &mut Body, k: &KLoop, blocks: Blocks) {
        let fa = k.fa;
        let scales_offset = k.scales_offset.expect("block formats have a scales offset");
        let (quants, scales): (Vec<Local>, Vec<Local>) = self.b_rows.iter().map(|_| (b.i32(), b.i32())).unzip();
        let (d, m): (Vec<Local>, Vec<Local>) = self.b_rows.iter().map(|_| (b.f32(), b.f32())).unzip();
        let (a, o, scratch, x) = (b.v128(), b.v128(), b.v128(), b.v128());
        let bytes: Vec<Vec<Local>> = self.b_rows.iter().map(|_| (0..blocks.sub_elems() / 16).map(|_| b.v128()).collect()).collect();
        let part: Vec<Vec<Local>> = self.a_rows.iter().map(|_| self.b_rows.iter().map(|_| b.v128()).collect()).collect();
        let x_sum: Vec<Local> = self.a_rows.iter().map(|_| b.v128()).collect();
        b.i32c(0).set(self.ka);
        b.for_range(self.kb, |b| { b.i32c(0); }, k.block_count, 1, |b| {
            for (c, &row) in self.b_rows.iter().enumerate() {
                b.get(row).get(self.kb).i32c(blocks.quant_bytes as i32).op(I::I32Mul).op(I::I32Add).set(quants[c]);
                b.get(row).get(scales_offset).op(I::I32Add).get(self.kb).i32c(2 * blocks.halves as i32).op(I::I32Mul).op(I::I32Add);
                b.set(scales[c]);
                blocks.load_scales(b, scales[c], d[c], m[c]);
            }
            for s in 0..blocks.sub_blocks() {
                for c in 0..self.b_rows.len() {
                    blocks.sub_block_quants(b, quants[c], s, &bytes[c], scratch);
                }
                // Each vector of x is loaded once for every row of B, and summed once for the offsets.
                for g in 0..blocks.groups() {
                    let first = g == 0;
                    for (r, &base) in self.a_rows.iter().enumerate() {
                        b.get(base).get(self.ka).op(I::I32Add);
                        fa.load4_at(b, (s * blocks.groups() + g) * fa.bytes_per_4());
                        b.set(x);
                        for c in 0..self.b_rows.len() {
                            blocks.push_group(b, &bytes[c], g);
                            b.get(x).op(I::F32x4Mul);
                            if !first {
                                b.get(part[r][c]).op(I::F32x4Add);
                            }
                            b.set(part[r][c]);
                        }
                        if blocks.has_offset() {
                            b.get(x);
                            if !first {
                                b.get(x_sum[r]).op(I::F32x4Add);
                            }
                            b.set(x_sum[r]);
                        }
                    }
                }
                for c in 0..self.b_rows.len() {
                    blocks.sub_block_scales(b, quants[c], s, (d[c], m[c]), (a, o));
                    for r in 0..self.a_rows.len() {
                        let sum = self.acc[r][c];
                        b.get(sum).get(a).get(part[r][c]).op(I::F32x4Mul).op(I::F32x4Add);
                        if blocks.has_offset() {
                            b.get(o).get(x_sum[r]).op(I::F32x4Mul).op(I::F32x4Add);
                        }
                        b.set(sum);
                    }
                }
            }
            b.add_to(self.ka, (blocks.elems / 4 * fa.bytes_per_4()) as i32);
        });
    }

    fn emit(&self, b: &mut Body, args: &Args, shape: &Shape, k: &KLoop, (batch, m0, n0, a_off): (Local, Local, Local, Local)) {
        for (r, &base) in self.a_rows.iter().enumerate() {
            // Byte address of row m0 + r of A.
            b.get(args.input(0)).get(a_off).get(m0).i32c(r as i32).op(I::I32Add);
            b.get(shape.k).op(I::I32Mul).op(I::I32Add).i32c(k.fa.shift()).op(I::I32Shl).op(I::I32Add).set(base);
        }
        for &sum in self.acc.iter().flatten() {
            b.splat(0.0).set(sum);
        }
        self.walk(b, k);
        let (row, col) = (b.i32(), b.i32());
        for (r, sums) in self.acc.iter().enumerate() {
            for (c, &sum) in sums.iter().enumerate() {
                b.get(m0).i32c(r as i32).op(I::I32Add).set(row);
                b.get(n0).i32c(c as i32).op(I::I32Add).set(col);
                store_output(b, args, shape, batch, row, col, |b| {
                    b.get(sum).hsum();
                });
            }
        }
    }
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
