//! `x · Wᵀ` for a block-quantized weight W `[N, K]` (ggml's matrix layout: rows along K), with x `[…, K]` read as R
//! rows. The packed weight is decoded in the kernel (`decode4_in1`, see `quant.rs`), in two strategies chosen per
//! dispatch from R (a runtime value):
//!
//! - Matrix-vector, for R ≤ 4 (decoding): streams W once. A workgroup takes 8 rows of W: 4 groups of 64
//!   invocations, each invocation 2 rows, so that neighbouring invocations read neighbouring words of a row and each
//!   x value loaded serves 2 rows. Each invocation walks its rows in steps of 4 elements, 64 steps apart, several
//!   steps per iteration (four for one row of x, which needs only dot products; two otherwise); the 64 partial sums
//!   of a row meet in workgroup memory.
//! - Tiled, for R > 4 (prefill): the float matmul's tiled strategy (`matmul.rs`), W decoded as it is staged.
//!
//! The dispatch covers both; workgroups past the chosen strategy's work return at once.
//! Params: those of `matmul.rs` (R, N, K, …), for a 2-D x and no batch axes.

use crate::CodegenError;
use crate::matmul::{BOperand, tile_count, tiled_choice, tiled_decls};
use crate::shader::{Access, Node, Parts, expr, product};
use tfc_ir::Expr;

/// Rows of x up to which the matrix-vector strategy runs.
const VECTOR_ROWS: u32 = 4;
/// Rows of W per matrix-vector workgroup (the WGSL below is written for it).
const ROWS_PER_GROUP: u32 = 8;

/// Whether the quantized kernel computes this MatMul (`transpose_b` is implied by the caller's match): a 2-D block
/// format weight as B, a float A.
pub(crate) fn applies(node: &Node) -> bool {
    let (a, b) = (node.inputs[0], node.inputs[1]);
    b.dtype.is_block() && b.rank() == 2 && !a.dtype.is_block()
}

pub(crate) fn matmul(node: &Node) -> Result<Parts, CodegenError> {
    let (a, w) = (node.inputs[0], node.inputs[1]);
    let k = node.constant(&w.shape[1], "K", u32::MAX as u64)?;
    let rows = product(&a.shape[..a.rank() - 1]);
    let n = expr(&w.shape[0]);
    let mut parts = Parts::new("quant_matmul", 256);
    parts.summary = format!("x · Wᵀ with W {}: for R ≤ {VECTOR_ROWS} {ROWS_PER_GROUP} rows of W per workgroup, else tiles", w.dtype);
    parts.inputs = vec![(a.dtype, Access::Float), (w.dtype, Access::Float)];
    let vector_groups = Expr::ceil_div(n.clone(), Expr::Const(ROWS_PER_GROUP as u64));
    parts.workgroups = Expr::max(vec![vector_groups, tile_count(&rows, &n, 64)]);
    let k = Expr::Const(k as u64);
    let (zero, one) = (Expr::Const(0), Expr::Const(1));
    // x [R, K] and W [N, K] in the float matmul's params: strides of A along m and k, of B along k and n, one batch.
    parts.params = vec![rows, n, k.clone(), k.clone(), one.clone(), one.clone(), k, one.clone()];
    parts.params.extend([one.clone(), one.clone(), one.clone(), one]);
    parts.params.extend(std::iter::repeat_n(zero, 8));
    parts.decls = tiled_decls(BOperand::Block);
    parts.decls.push_str(MATVEC);
    parts.body = format!(
        "    if param(0u) <= {VECTOR_ROWS}u {{
        matvec(group, lid);
    }} else {{
{}    }}
",
        tiled_choice()
    );
    Ok(parts)
}

const MATVEC: &str = "

// x(m, k..k+3) as a vec4 over k, zeros for rows past R.
fn x4(m: u32, k: u32) -> vec4<f32> {
    if m >= param(0u) {
        return vec4<f32>(0.0);
    }
    let at = m * param(2u) + k;
    return vec4<f32>(load_in0(at), load_in0(at + 1u), load_in0(at + 2u), load_in0(at + 3u));
}

fn matvec(group: u32, lid: u32) {
    let n0 = group * 8u;
    if n0 >= param(1u) {
        return;
    }
    let lane = lid % 64u;
    let first = n0 + (lid / 64u) * 2u;
    // Rows past N read the last row and are not stored.
    let row0 = min(first, param(1u) - 1u);
    let row1 = min(first + 1u, param(1u) - 1u);
    // acc0[m] = row0 · x(m), acc1 likewise.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var k = lane * 4u;
    if param(0u) == 1u {
        // One row of x (a decoding step): dot products, four steps of 256 elements per iteration so that each
        // invocation has eight loads of W in flight.
        for (; k + 768u < param(2u); k += 1024u) {
            let x0 = x4(0u, k);
            let x1 = x4(0u, k + 256u);
            let x2 = x4(0u, k + 512u);
            let x3 = x4(0u, k + 768u);
            let a0 = decode4_in1(row0, k);
            let b0 = decode4_in1(row1, k);
            let a1 = decode4_in1(row0, k + 256u);
            let b1 = decode4_in1(row1, k + 256u);
            let a2 = decode4_in1(row0, k + 512u);
            let b2 = decode4_in1(row1, k + 512u);
            let a3 = decode4_in1(row0, k + 768u);
            let b3 = decode4_in1(row1, k + 768u);
            acc0.x += (dot(a0, x0) + dot(a1, x1)) + (dot(a2, x2) + dot(a3, x3));
            acc1.x += (dot(b0, x0) + dot(b1, x1)) + (dot(b2, x2) + dot(b3, x3));
        }
        for (; k < param(2u); k += 256u) {
            let x0 = x4(0u, k);
            acc0.x += dot(decode4_in1(row0, k), x0);
            acc1.x += dot(decode4_in1(row1, k), x0);
        }
    }
    // Up to 4 rows of x: two steps of 256 elements per iteration (four loads of W in flight).
    for (; k + 256u < param(2u); k += 512u) {
        let xa = mat4x4<f32>(x4(0u, k), x4(1u, k), x4(2u, k), x4(3u, k));
        let xb = mat4x4<f32>(x4(0u, k + 256u), x4(1u, k + 256u), x4(2u, k + 256u), x4(3u, k + 256u));
        let wa0 = decode4_in1(row0, k);
        let wa1 = decode4_in1(row1, k);
        let wb0 = decode4_in1(row0, k + 256u);
        let wb1 = decode4_in1(row1, k + 256u);
        acc0 += wa0 * xa + wb0 * xb;
        acc1 += wa1 * xa + wb1 * xb;
    }
    if k < param(2u) {
        let xa = mat4x4<f32>(x4(0u, k), x4(1u, k), x4(2u, k), x4(3u, k));
        acc0 += decode4_in1(row0, k) * xa;
        acc1 += decode4_in1(row1, k) * xa;
    }
    // The partial sums of the first row of each pair, then of the second.
    a_tile[lid] = acc0;
    a_tile[256u + lid] = acc1;
    workgroupBarrier();
    if lid < 8u {
        // Row lid of the 8: row group lid / 2, row lid % 2 of it; four running sums over its 64 partial sums.
        let at = (lid % 2u) * 256u + (lid / 2u) * 64u;
        var s0 = vec4<f32>(0.0);
        var s1 = vec4<f32>(0.0);
        var s2 = vec4<f32>(0.0);
        var s3 = vec4<f32>(0.0);
        for (var l = 0u; l < 64u; l += 4u) {
            s0 += a_tile[at + l];
            s1 += a_tile[at + l + 1u];
            s2 += a_tile[at + l + 2u];
            s3 += a_tile[at + l + 3u];
        }
        let sum = (s0 + s1) + (s2 + s3);
        let n = n0 + lid;
        if n < param(1u) {
            for (var m = 0u; m < param(0u); m++) {
                out[m * param(1u) + n] = sum[m];
            }
        }
    }
}
";
