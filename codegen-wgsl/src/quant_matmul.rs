//! `x · Wᵀ` for a block-quantized weight W `[N, K]` (ggml's matrix layout: rows along K), with x `[…, K]` read as R
//! rows. The packed weight is decoded in the kernel, in two strategies chosen per dispatch from R (a runtime value):
//!
//! - Matrix-vector, for R ≤ 4 (decoding): `matvec.rs`, which streams W once, decoding whole words at a time.
//! - Tiled, for R > 4 (prefill): the float matmul's tiled strategy (`matmul.rs`), W decoded as it is staged
//!   (`decode4_in1`, see `quant.rs`).
//!
//! The dispatch covers both; workgroups past the chosen strategy's work return at once.
//! Params: those of `matmul.rs` (R, N, K, …), for a 2-D x and no batch axes.

use crate::CodegenError;
use crate::matmul::{BOperand, tile_count, tiled_choice, tiled_decls};
use crate::matvec::{MAX_X_ROWS, Matvec};
use crate::shader::{Access, Node, Parts, expr, product};
use tfc_ir::Expr;

/// Whether the quantized kernel computes this MatMul (`transpose_b` is implied by the caller's match): a 2-D block
/// format weight as B, a float A.
pub(crate) fn applies(node: &Node) -> bool {
    let (a, b) = (node.inputs[0], node.inputs[1]);
    b.dtype.is_block() && b.rank() == 2 && !a.dtype.is_block()
}

pub(crate) fn matmul(node: &Node) -> Result<Parts, CodegenError> {
    let (a, w) = (node.inputs[0], node.inputs[1]);
    let row_len = node.constant(&w.shape[1], "K", u32::MAX as u64)?;
    let rows = product(&a.shape[..a.rank() - 1]);
    let n = expr(&w.shape[0]);
    let mut parts = Parts::new("quant_matmul", 256);
    parts.summary = format!("x · Wᵀ with W {}: for R ≤ {MAX_X_ROWS} a matrix-vector product, else tiles", w.dtype);
    parts.inputs = vec![(a.dtype, Access::Float), (w.dtype, Access::Float)];
    parts.workgroups = Expr::max(vec![Matvec::workgroups(n.clone()), tile_count(&rows, &n, 64)]);
    let k = Expr::Const(row_len as u64);
    let (zero, one) = (Expr::Const(0), Expr::Const(1));
    // x [R, K] and W [N, K] in the float matmul's params: strides of A along m and k, of B along k and n, one batch.
    parts.params = vec![rows, n, k.clone(), k.clone(), one.clone(), one.clone(), k, one.clone()];
    parts.params.extend([one.clone(), one.clone(), one.clone(), one]);
    parts.params.extend(std::iter::repeat_n(zero, 8));
    parts.decls = tiled_decls(BOperand::Block);
    Matvec::block(a.dtype, w.dtype, row_len).add_to(&mut parts);
    parts.body = format!(
        "    if param(0u) <= {MAX_X_ROWS}u {{
        matvec(group, lid);
    }} else {{
{}    }}
",
        tiled_choice()
    );
    Ok(parts)
}
